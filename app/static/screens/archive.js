// Archive screen: archived parts (every NG and a sample of OK) filtered by time, score, verdict and class;
// images with the overlay, one-image download, and a ZIP export in the MVTec layout for retraining.
// The export selection outlives searches, filter changes and paging: only "Clear selection" empties it.
"use strict";

(() => {
  const PAGE = 24;
  // id -> what the summary shows of a selected part (it may be on no page the current search shows).
  const selected = new Map();
  const imageUrls = [];
  let offset = 0;
  let total = 0;
  let filters = {};

  function message(text, kind) {
    $("archive-message").textContent = text;
    $("archive-message").className = "message " + (kind || "");
  }

  // The form as API filters: local date-times become UTC ISO strings, empty fields are left out.
  function readFilters() {
    const form = new FormData($("archive-filters"));
    const out = {};
    for (const [name, raw] of form.entries()) {
      const value = String(raw).trim();
      if (!value) continue;
      if (name === "since" || name === "until") out[name] = new Date(value).toISOString();
      else if (name === "min_score" || name === "max_score") out[name] = Number(value);
      else out[name] = value;
    }
    return out;
  }

  async function load() {
    const query = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
    for (const [name, value] of Object.entries(filters)) query.set(name, String(value));
    let page;
    try {
      page = await (await api(`/archive?${query}`)).json();
    } catch (err) {
      $("archive-unavailable").hidden = err.status !== 404;
      if (err.status !== 404 && err.status !== 401) message(`Cannot search: ${err.message}`, "bad");
      return;
    }
    $("archive-unavailable").hidden = true;
    total = page.total;
    imageUrls.splice(0).forEach((url) => URL.revokeObjectURL(url));
    $("archive-grid").replaceChildren(...page.items.map(renderItem));
    $("archive-total").textContent = total;
    $("archive-empty").hidden = page.items.length > 0;
    const last = Math.min(offset + PAGE, total);
    $("archive-page").textContent = total ? `${offset + 1}–${last} of ${total}` : "";
    $("archive-prev").disabled = offset === 0;
    $("archive-next").disabled = last >= total;
    updateExport();
  }

  function renderItem(item) {
    const img = el("img", { alt: `Part ${item.frame_id}, ${item.verdict}`, testid: "archive-image", loading: "lazy" });
    loadImage(item.overlay_url, img);
    img.addEventListener("click", () => openViewer(item));
    const pick = el("input", { type: "checkbox", checked: selected.has(item.id), testid: "archive-select",
      ariaLabel: `Select part ${item.frame_id} for export` });
    pick.addEventListener("change", () => {
      if (pick.checked) {
        selected.set(item.id, { verdict: item.verdict, defect_class: item.defect_class || "", frame_id: item.frame_id });
      } else {
        selected.delete(item.id);
      }
      updateExport();
    });
    const download = el("button", { className: "btn btn-small", testid: "archive-download", type: "button" }, "Download");
    download.addEventListener("click", () => downloadItem(item));
    return el("li", { className: `archive-item verdict-${item.verdict}`, testid: "archive-item", dataset: { id: item.id } },
      img,
      el("div", { className: "archive-meta" },
        el("span", { className: `pill pill-${item.verdict === "NG" ? "stopped" : "running"}` }, item.verdict),
        el("span", { className: "score" }, Number(item.score).toFixed(3)),
        el("span", { className: "muted small" }, item.defect_class || "")),
      el("div", { className: "muted small" }, `${fmtTime(item.ts)} · frame ${item.frame_id}`),
      el("div", { className: "archive-actions" }, el("label", { className: "small" }, pick, " select"), download));
  }

  async function loadImage(path, img) {
    try {
      const url = URL.createObjectURL(await (await api(path)).blob());
      imageUrls.push(url);
      img.src = url;
    } catch (_) {
      img.alt = "image pruned";
    }
  }

  function openViewer(item) {
    const dialog = $("archive-viewer");
    const img = $("archive-viewer-image");
    $("archive-viewer-title").textContent =
      `${item.verdict} · score ${Number(item.score).toFixed(3)} (threshold ${Number(item.threshold).toFixed(3)}) · ` +
      `${item.defect_class || "no defect"} · ${fmtTime(item.ts)}`;
    img.removeAttribute("src");
    loadImage(item.overlay_url, img);
    $("archive-viewer-download").onclick = () => downloadItem(item);
    dialog.showModal();
  }

  async function downloadItem(item) {
    try {
      const response = await api(item.download_url);
      const disposition = response.headers.get("Content-Disposition") || "";
      const match = /filename="([^"]+)"/.exec(disposition);
      saveBlob(await response.blob(), match ? match[1] : `part-${item.frame_id}.jpg`);
    } catch (err) {
      if (err.status !== 401) message(`Download failed: ${err.message}`, "bad");
    }
  }

  // "4 selected (2 NG, 2 OK)", and the NG parts' classes in the tooltip.
  function selectionText() {
    let ng = 0;
    const classes = new Map();
    for (const part of selected.values()) {
      if (part.verdict !== "NG") continue;
      ng += 1;
      const name = part.defect_class || "no class";
      classes.set(name, (classes.get(name) || 0) + 1);
    }
    return {
      ng,
      ok: selected.size - ng,
      text: `${selected.size} selected (${ng} NG, ${selected.size - ng} OK)`,
      title: classes.size ? "NG: " + Array.from(classes, ([name, n]) => `${name} ${n}`).join(", ") : "",
    };
  }

  function updateExport() {
    $("archive-export").textContent = selected.size ? `Export ${selected.size} (ZIP)` : "Export all (ZIP)";
    $("archive-export").disabled = !hasRole("operator") || (!selected.size && !total);
    const { text, title } = selectionText();
    $("archive-selection").textContent = text;
    $("archive-selection").title = title;
    $("archive-clear-selection").disabled = !selected.size;
  }

  function clearSelection() {
    selected.clear();
    document.querySelectorAll("#archive-grid [data-testid=archive-select]").forEach((box) => { box.checked = false; });
    updateExport();
  }

  const UNREVIEWED_TEXT = {
    defect: "unreviewed NG parts as test/<class>",
    good: "unreviewed NG parts as test/good",
    skip: "unreviewed NG parts left out",
  };

  // "6 image(s): train/good 3, test/good 1, test/linear 2" from the server's X-Export-Summary header.
  function exportedText(response, fallbackCount) {
    let summary;
    try {
      summary = JSON.parse(response.headers.get("X-Export-Summary") || "");
    } catch (_) {
      return `Exported ${fallbackCount} image(s).`;
    }
    const folders = Object.entries(summary.destinations || {}).map(([folder, n]) => `${folder} ${n}`);
    let text = `Exported ${summary.items} image(s)` + (folders.length ? `: ${folders.join(", ")}` : "");
    if (summary.skipped_unreviewed) text += `; ${summary.skipped_unreviewed} unreviewed NG left out`;
    return text + ".";
  }

  async function exportZip() {
    const unreviewed = $("archive-unreviewed").value || "defect";
    // The ids are taken now, so the dialog names exactly what is sent, whatever changes behind it.
    const ids = Array.from(selected.keys());
    const body = ids.length ? { ids } : { filters: { ...filters, limit: 5000 } };
    body.unreviewed = unreviewed;
    const count = ids.length || Math.min(total, 5000);
    const parts = selectionText();
    const what = ids.length ? `${count} selected image(s) (${parts.ng} NG, ${parts.ok} OK)` : `${count} image(s)`;
    const ok = await confirmAction("Export images",
      `Export ${what} as a ZIP in the MVTec layout (OK parts as train/good, confirmed NG as ` +
      `test/<class>, false alarms as test/good, ${UNREVIEWED_TEXT[unreviewed]})?`);
    if (!ok) return;
    message("Preparing the ZIP…", "");
    try {
      const response = await api("/archive/export", { method: "POST", json: body });
      const match = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
      const text = exportedText(response, count);
      saveBlob(await response.blob(), match ? match[1] : "archive.zip");
      message(text, "ok");
    } catch (err) {
      if (err.status !== 401) message(`Export refused: ${err.message}`, "bad");
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("archive-filters").addEventListener("submit", (event) => {
      event.preventDefault();
      filters = readFilters();
      offset = 0;
      message("", "");
      load();
    });
    $("archive-prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
    $("archive-next").addEventListener("click", () => { if (offset + PAGE < total) { offset += PAGE; load(); } });
    $("archive-export").addEventListener("click", exportZip);
    $("archive-clear-selection").addEventListener("click", clearSelection);
  });

  registerScreen("archive", {
    show() {
      $("archive-export").hidden = $("archive-unreviewed-field").hidden = $("archive-selection-bar").hidden =
        !hasRole("operator");
      load();
    },
    hide() {},
  });
})();
