// ROI screen: drag a rectangle over the camera frame; it is sent in the camera's source pixels.
//
// Capture crops the raw frame to the ROI first and then resizes the crop to camera.width x height, so the
// frame shown here is the current ROI (or the whole source frame) stretched. A point at fraction (fx, fy)
// of the shown frame is at source pixel (view.x + fx * view.w, view.y + fy * view.h), where `view` is the
// current ROI clipped to the source frame (as device/station/camera/transform.clip_roi does), or the whole frame.
// The frame is shown at the view's own aspect ratio so the part is not distorted while drawing.
"use strict";

(() => {
  const MIN_DRAG_PX = 6;
  let snapshot = null; // { view: {x, y, w, h}, source: [w, h], roi, seq }
  let draft = null; // the drawn ROI in source pixels
  let drag = null;
  let frameUrl = null;
  let visible = false;
  let preview = null; // the ROI preview of `draft` (POST /inspection/roi/preview), null while loading
  let previewToken = 0; // answers to an older draft are dropped

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
    preview = null;
    showPreview(null);
    if (roi && hasRole("operator")) loadPreview(roi);
    updateButtons();
  }

  // Before applying: what this region would do to judging, scored by the station on its recent frames.
  async function loadPreview(roi) {
    const token = ++previewToken;
    $("roi-preview").hidden = false;
    $("roi-preview").dataset.verdict = "loading";
    $("roi-preview-verdict").textContent = "Checking this region on recent frames…";
    try {
      const result = await (await api("/inspection/roi/preview", { method: "POST", json: roi })).json();
      if (token !== previewToken) return;
      preview = result;
      showPreview(result);
    } catch (err) {
      if (token !== previewToken) return;
      preview = { verdict: "unknown", reasons: [`No preview: ${err.message}`], failed: true };
      showPreview(preview);
    }
    updateButtons();
  }

  const pct = (share) => `${(share * 100).toFixed(0)} %`;
  const num = (summary, key) => (summary ? summary[key].toPrecision(3) : "—");

  function showPreview(p) {
    const box = $("roi-preview");
    $("roi-force").hidden = true;
    $("roi-preview-rebuild").hidden = true;
    if (!p) {
      box.hidden = true;
      box.dataset.verdict = "";
      return;
    }
    box.hidden = false;
    box.dataset.verdict = p.verdict;
    $("roi-preview-verdict").textContent = {
      ok: "Judging stays as it is with this region.",
      warn: "Warning: this region would change judging. The model was built on whole frames.",
      unknown: "Not previewed: nothing to check this region on.",
    }[p.verdict];
    const has = p.frames !== undefined;
    $("roi-preview-share-now").textContent = has ? pct(p.reject_share_now) : "—";
    $("roi-preview-share-new").textContent = has ? pct(p.reject_share_proposed) : "—";
    $("roi-preview-median-now").textContent = num(p.scores_now, "median");
    $("roi-preview-median-new").textContent = num(p.scores_proposed, "median");
    $("roi-preview-p95-now").textContent = num(p.scores_now, "p95");
    $("roi-preview-p95-new").textContent = num(p.scores_proposed, "p95");
    $("roi-preview-frames").textContent = has
      ? `${p.frames} recent frames scored with the active model (threshold ${p.threshold.toPrecision(3)}).`
      : "";
    const reasons = $("roi-preview-reasons");
    reasons.replaceChildren(...(p.reasons || []).map((text) => {
      const item = document.createElement("li");
      item.textContent = text;
      return item;
    }));
    if (p.verdict === "warn") {
      $("roi-preview-rebuild").hidden = false;
      $("roi-preview-rebuild").textContent = p.rebuild_available
        ? "This station can build a model for this region."
        : p.rebuild_hint;
      $("roi-force").hidden = !hasRole("operator");
    }
  }

  function updateButtons() {
    const warned = preview !== null && preview.verdict === "warn";
    $("roi-apply").disabled = !(draft && preview && !warned && hasRole("operator"));
    $("roi-force").disabled = !(draft && warned && hasRole("operator"));
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
    $("roi-force").addEventListener("click", async () => {
      if (!draft || !preview) return;
      const roi = draft;
      const ok = await confirmAction("Apply region anyway",
        `With this region ${pct(preview.reject_share_proposed)} of recent parts would be rejected ` +
        `(now ${pct(preview.reject_share_now)}). Apply x ${roi.x}, y ${roi.y}, ${roi.width} × ${roi.height} px anyway?`);
      if (ok) await send("POST", { ...roi, force: true }, "Region applied with force");
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
