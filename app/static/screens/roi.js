// ROI screen: drag a rectangle over the camera frame; it is sent in the camera's source pixels.
//
// Capture crops the raw frame to the ROI first and then resizes the crop to camera.width x height, so the
// frame shown here is the current ROI (or the whole source frame) stretched. A point at fraction (fx, fy)
// of the shown frame is at source pixel (view.x + fx * view.w, view.y + fy * view.h), where `view` is the
// current ROI clipped to the source frame (as device/camera/transform.clip_roi does), or the whole frame.
// The frame is shown at the view's own aspect ratio so the part is not distorted while drawing.
"use strict";

(() => {
  const MIN_DRAG_PX = 6;
  let snapshot = null; // { view: {x, y, w, h}, source: [w, h], roi, seq }
  let draft = null; // the drawn ROI in source pixels
  let drag = null;
  let frameUrl = null;
  let visible = false;

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const clamp = (value, lo, hi) => Math.min(Math.max(value, lo), hi);

  function message(text, kind) {
    $("roi-message").textContent = text;
    $("roi-message").className = "message " + (kind || "");
  }

  function viewOf(roi, [width, height]) {
    if (roi) {
      const x0 = Math.min(roi.x, width), y0 = Math.min(roi.y, height);
      const x1 = Math.min(roi.x + roi.width, width), y1 = Math.min(roi.y + roi.height, height);
      if (x1 > x0 && y1 > y0) return { x: x0, y: y0, w: x1 - x0, h: y1 - y0 };
    }
    return { x: 0, y: 0, w: width, h: height };
  }

  const canDraw = () => snapshot !== null && hasRole("operator");

  // Status first, then a frame at least as new as `minSeq` (frames already queued under an older ROI
  // are skipped after a change).
  async function loadSnapshot(minSeq = 0) {
    const status = await (await api("/status")).json();
    $("roi-current").textContent = status.roi
      ? `x ${status.roi.x}, y ${status.roi.y}, ${status.roi.width} × ${status.roi.height} px`
      : "whole frame";
    if (!status.source_size) {
      snapshot = null;
      $("roi-hint").textContent = "The camera is not delivering frames (is the line stopped?). Start it to draw a region.";
      updateButtons();
      return;
    }
    let response = null;
    for (let attempt = 0; attempt < 40 && visible; attempt++) {
      response = await api("/frames/latest.jpg?overlay=0");
      if (Number(response.headers.get("X-Frame-Seq")) >= minSeq) break;
      await sleep(150);
    }
    if (!response || !visible) return;
    const url = URL.createObjectURL(await response.blob());
    $("roi-frame").src = url;
    if (frameUrl) URL.revokeObjectURL(frameUrl);
    frameUrl = url;
    snapshot = { view: viewOf(status.roi, status.source_size), source: status.source_size, roi: status.roi,
      seq: Number(response.headers.get("X-Frame-Seq")) };
    const [sw, sh] = status.source_size;
    $("roi-hint").textContent = hasRole("operator")
      ? `Drag a rectangle over the part; only that region is inspected. Camera frame ${sw} × ${sh} px` +
        (status.roi ? "; shown: the current region (clear it to draw on the whole frame)." : ".")
      : `Camera frame ${sw} × ${sh} px. Changing the region needs the operator role.`;
    setDraft(null);
    layout();
  }

  // Size the stage to the view's aspect ratio within the space the screen has.
  function layout() {
    if (!snapshot) return;
    const stage = $("roi-stage");
    const width = stage.parentElement.clientWidth - 32;
    const height = Math.max(240, window.innerHeight - stage.getBoundingClientRect().top - 150);
    const scale = Math.min(width / snapshot.view.w, height / snapshot.view.h);
    stage.style.width = `${Math.floor(snapshot.view.w * scale)}px`;
    stage.style.height = `${Math.floor(snapshot.view.h * scale)}px`;
    if (draft) drawDraft();
  }

  function local(event) {
    const box = $("roi-stage").getBoundingClientRect();
    return { x: clamp(event.clientX - box.left, 0, box.width), y: clamp(event.clientY - box.top, 0, box.height) };
  }

  function showRect(x, y, w, h) {
    const rect = $("roi-rect");
    rect.style.left = `${x}px`;
    rect.style.top = `${y}px`;
    rect.style.width = `${w}px`;
    rect.style.height = `${h}px`;
    rect.hidden = false;
  }

  // Shown pixels -> source pixels.
  function toSource(x0, y0, x1, y1) {
    const box = $("roi-stage").getBoundingClientRect();
    const { view } = snapshot;
    const sx = (x) => Math.round(view.x + (x / box.width) * view.w);
    const sy = (y) => Math.round(view.y + (y / box.height) * view.h);
    const left = sx(Math.min(x0, x1)), right = sx(Math.max(x0, x1));
    const top = sy(Math.min(y0, y1)), bottom = sy(Math.max(y0, y1));
    return { x: left, y: top, width: Math.max(1, right - left), height: Math.max(1, bottom - top) };
  }

  // Source pixels -> shown pixels (to redraw the draft after a resize).
  function drawDraft() {
    const box = $("roi-stage").getBoundingClientRect();
    const { view } = snapshot;
    const px = (x) => ((x - view.x) / view.w) * box.width;
    const py = (y) => ((y - view.y) / view.h) * box.height;
    showRect(px(draft.x), py(draft.y), px(draft.x + draft.width) - px(draft.x),
      py(draft.y + draft.height) - py(draft.y));
  }

  function setDraft(roi) {
    draft = roi;
    if (!roi) $("roi-rect").hidden = true;
    $("roi-draft").textContent = roi ? `new region: x ${roi.x}, y ${roi.y}, ${roi.width} × ${roi.height} px` : "";
    updateButtons();
  }

  function updateButtons() {
    $("roi-apply").disabled = !(draft && hasRole("operator"));
    $("roi-clear").disabled = !hasRole("operator");
    $("roi-stage").classList.toggle("drawable", canDraw());
  }

  function wireDrawing() {
    const stage = $("roi-stage");
    stage.addEventListener("pointerdown", (event) => {
      if (!canDraw() || event.button !== 0) return;
      event.preventDefault();
      stage.setPointerCapture(event.pointerId);
      const start = local(event);
      drag = { x0: start.x, y0: start.y };
      showRect(start.x, start.y, 0, 0);
    });
    stage.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const at = local(event);
      showRect(Math.min(drag.x0, at.x), Math.min(drag.y0, at.y), Math.abs(at.x - drag.x0), Math.abs(at.y - drag.y0));
    });
    const finish = (event) => {
      if (!drag) return;
      const at = local(event);
      const start = drag;
      drag = null;
      if (Math.abs(at.x - start.x0) < MIN_DRAG_PX || Math.abs(at.y - start.y0) < MIN_DRAG_PX) {
        setDraft(null);
        return;
      }
      setDraft(toSource(start.x0, start.y0, at.x, at.y));
    };
    stage.addEventListener("pointerup", finish);
    stage.addEventListener("pointercancel", () => { drag = null; setDraft(null); });
  }

  async function send(method, body, done) {
    const seq = snapshot ? snapshot.seq : 0;
    try {
      const result = await (await api("/inspection/roi", { method, json: body })).json();
      message(result.message || done, "ok");
    } catch (err) {
      if (err.status !== 401) message(`Refused: ${err.message}`, "bad");
      return;
    }
    setDraft(null);
    refreshStatus().catch(() => {});
    // Frames already in the capture queue were cropped with the old region: wait them out.
    let queued = 4;
    try {
      const config = await (await api("/config")).json();
      queued = (config.camera && config.camera.queue_size) || queued;
    } catch (_) { /* keep the default queue size */ }
    await loadSnapshot(seq + queued + 2);
  }

  document.addEventListener("DOMContentLoaded", () => {
    wireDrawing();
    $("roi-apply").addEventListener("click", async () => {
      if (!draft) return;
      const roi = draft;
      const ok = await confirmAction("Apply region",
        `Inspect only x ${roi.x}, y ${roi.y}, ${roi.width} × ${roi.height} px of the camera frame?`);
      if (ok) await send("POST", roi, "Region applied");
    });
    $("roi-clear").addEventListener("click", async () => {
      const ok = await confirmAction("Clear region", "Inspect the whole camera frame again?");
      if (ok) await send("DELETE", undefined, "Region cleared");
    });
    $("roi-refresh").addEventListener("click", () => loadSnapshot().catch((err) => message(err.message, "bad")));
    window.addEventListener("resize", layout);
  });

  registerScreen("roi", {
    show() {
      visible = true;
      message("", "");
      loadSnapshot().catch((err) => message(`No frame: ${err.message}`, "bad"));
    },
    hide() { visible = false; drag = null; },
  });
})();
