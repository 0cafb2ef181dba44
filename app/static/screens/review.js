// Review queue: unreviewed alerts, each confirmed as a real defect or marked a false alarm (with an
// optional comment). A reviewed alert leaves the queue; the summary counts what has been decided.
"use strict";

(() => {
  const PAGE = 20;
  const BADGE_MS = 10_000;
  const REFRESH_MS = 5_000;
  const thumbs = new Map();
  let timer = null;
  let available = null; // unknown until the summary answers

  function message(text, kind) {
    $("review-message").textContent = text;
    $("review-message").className = "message " + (kind || "");
  }

  const LABELS = { total: "alerts", false_alarm: "false alarms", taught: "taught to model" };
  const label = (key) => LABELS[key] || key.replace(/_/g, " ");

  function renderSummary(summary) {
    const decided = (summary.confirmed || 0) + (summary.false_alarm || 0);
    if (decided > 0 && summary.false_alarm_rate === undefined) {
      summary = { ...summary, false_alarm_rate: summary.false_alarm / decided };
    }
    const chips = [];
    for (const [key, value] of Object.entries(summary)) {
      if (value === null || typeof value === "object") continue;
      const shown = typeof value === "number" && !Number.isInteger(value)
        ? (key.includes("rate") || key.includes("share") ? `${(100 * value).toFixed(1)} %` : value.toFixed(3))
        : String(value);
      chips.push(el("div", { className: "chip", dataset: { key } },
        el("span", { className: "label" }, label(key)), el("span", { className: "value" }, shown)));
    }
    $("review-summary").replaceChildren(...chips);
  }

  async function refreshSummary() {
    try {
      const summary = await (await api("/alerts/reviews/summary")).json();
      available = true;
      renderSummary(summary);
      return summary;
    } catch (err) {
      if (err.status === 404 || err.status === 405) available = false;
      throw err;
    }
  }

  async function loadQueue() {
    const page = await (await api(`/alerts?review_state=unreviewed&limit=${PAGE}&defects_only=true`)).json();
    setBadge(page.total);
    const list = $("review-list");
    const wanted = new Set(page.items.map((a) => a.alert_id));
    for (const item of Array.from(list.children)) if (!wanted.has(item.dataset.alertId)) item.remove();
    let anchor = list.firstChild;
    for (const alert of page.items) {
      const existing = list.querySelector(`[data-alert-id="${CSS.escape(alert.alert_id)}"]`);
      if (existing) { anchor = existing.nextSibling; continue; }
      list.insertBefore(renderItem(alert), anchor);
    }
    for (const id of Array.from(thumbs.keys())) {
      if (!wanted.has(id)) { URL.revokeObjectURL(thumbs.get(id)); thumbs.delete(id); }
    }
    $("review-empty").hidden = page.items.length > 0;
  }

  function setBadge(count) {
    $("review-badge").textContent = count;
    $("review-badge").hidden = !count;
  }

  function renderItem(alert) {
    const img = el("img", { alt: "Defect thumbnail", testid: "review-thumb" });
    api(`/alerts/${encodeURIComponent(alert.alert_id)}/thumbnail.jpg`)
      .then((response) => response.blob())
      .then((blob) => { const url = URL.createObjectURL(blob); thumbs.set(alert.alert_id, url); img.src = url; })
      .catch(() => { img.alt = "no thumbnail"; });
    const comment = el("input", { type: "text", placeholder: "comment (optional)", maxLength: 500,
      testid: "review-comment", ariaLabel: "Comment" });
    const confirmButton = el("button", { className: "btn btn-stop", type: "button", testid: "review-confirm" }, "Real defect");
    const falseButton = el("button", { className: "btn", type: "button", testid: "review-false-alarm" }, "False alarm");
    const canReview = hasRole("operator");
    for (const control of [comment, confirmButton, falseButton]) {
      control.disabled = !canReview;
      if (!canReview) control.title = "Needs the operator role";
    }
    const li = el("li", { className: "review-item", testid: "review-item", dataset: { alertId: alert.alert_id } },
      img,
      el("div", {},
        el("div", { className: "what" }, alert.defect_class || "defect"),
        el("div", { className: "when" },
          `${new Date(alert.ts).toLocaleString()} · frame ${alert.frame_id} · score ${Number(alert.score).toFixed(3)} ` +
          `(threshold ${Number(alert.threshold).toFixed(3)})`),
        comment),
      el("div", { className: "review-buttons" }, confirmButton, falseButton));
    confirmButton.addEventListener("click", () => review(alert, "confirmed", comment.value, li));
    falseButton.addEventListener("click", () => review(alert, "false_alarm", comment.value, li));
    return li;
  }

  async function review(alert, verdict, comment, li) {
    li.querySelectorAll("button, input").forEach((control) => { control.disabled = true; });
    const body = { state: verdict };
    if (comment.trim()) body.comment = comment.trim();
    try {
      await api(`/alerts/${encodeURIComponent(alert.alert_id)}/review`, { method: "POST", json: body });
      li.remove();
      message(`Frame ${alert.frame_id}: ${verdict === "confirmed" ? "confirmed as a defect" : "marked a false alarm"}.`, "ok");
    } catch (err) {
      li.querySelectorAll("button, input").forEach((control) => { control.disabled = false; });
      if (err.status !== 401) message(`Refused: ${err.message}`, "bad");
    }
    await refresh();
  }

  async function refresh() {
    try {
      await refreshSummary();
    } catch (err) {
      $("review-unavailable").hidden = available !== false;
      $("review-empty").hidden = true;
      return;
    }
    $("review-unavailable").hidden = true;
    await loadQueue();
  }

  // The tab's badge shows the queue length wherever the operator is.
  async function refreshBadge() {
    if (!state.key || available === false) return;
    if (available === null) await refreshSummary();
    const page = await (await api("/alerts?review_state=unreviewed&limit=1&defects_only=true")).json();
    setBadge(page.total);
  }

  async function exportCsv() {
    try {
      const response = await api("/alerts/reviews/export.csv");
      saveBlob(await response.blob(), "alert-reviews.csv");
    } catch (err) {
      if (err.status !== 401) message(`Export failed: ${err.message}`, "bad");
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    setInterval(() => { refreshBadge().catch(() => {}); }, BADGE_MS);
    $("review-export").addEventListener("click", exportCsv);
  });

  registerScreen("review", {
    show() {
      message("", "");
      refresh().catch((err) => message(`Cannot load the queue: ${err.message}`, "bad"));
      clearInterval(timer);
      timer = setInterval(() => refresh().catch(() => {}), REFRESH_MS);
    },
    hide() { clearInterval(timer); timer = null; },
  });
})();
