// Review queue: alerts, each confirmed as a real defect or marked a false alarm (with an optional comment),
// filtered by review state (unreviewed by default: a reviewed alert leaves that view).
//
// What the operator is doing is never re-rendered away:
// - While an edit is in progress (a comment focused or changed, the pointer over the list, a review being
//   sent), page 1 is pinned at its newest alert (`until_id`): alerts that arrive meanwhile wait behind a
//   "N new alerts — show" button, which the operator applies when ready. An item being edited stays even
//   when a refresh would drop it.
// - Pages after the first follow a cursor (`before_id` = the last alert of the page before), so page 2
//   shows the same alerts however many new ones arrive.
// - Unsaved comments are drafts per alert id, in memory and in sessionStorage: a refresh, a page change, a
//   filter change or a reload brings them back. The filter is kept in sessionStorage too.
// The tab's badge counts the current shift's unreviewed alerts (`/alerts/reviews/summary?current_shift=true`).
"use strict";

(() => {
  const PAGE = 20;
  const BADGE_MS = 10_000;
  const REFRESH_MS = 5_000;
  const DRAFTS_KEY = "edgeinspect.review.drafts";
  const FILTER_KEY = "edgeinspect.review.filter";
  const FILTERS = ["unreviewed", "all", "confirmed", "false_alarm"];
  const MAX_DRAFTS = 200;
  const STATE_TEXT = { confirmed: "Confirmed defect", false_alarm: "False alarm" };
  const thumbs = new Map();
  const drafts = new Map(readDrafts());
  let timer = null;
  let available = null; // unknown until the summary answers
  let filter = readFilter();
  let cursors = [null]; // `before_id` of each page shown so far; page 1 has none
  let pin = null; // page 1's newest alert while held: what arrives after it waits behind the banner
  let nextCursor = null; // `before_id` of the page after this one, null on the last
  let pointerInList = false;
  let sending = 0; // reviews in flight
  let generation = 0; // a slower, older load never overwrites a newer one

  function message(text, kind) {
    $("review-message").textContent = text;
    $("review-message").className = "message " + (kind || "");
  }

  // ---- drafts and filter, kept for the tab's life ------------------------------------------------
  function readDrafts() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(DRAFTS_KEY) || "{}");
      return Object.entries(saved).filter(([, text]) => typeof text === "string");
    } catch (_) {
      return [];
    }
  }

  function saveDrafts() {
    while (drafts.size > MAX_DRAFTS) drafts.delete(drafts.keys().next().value);
    try {
      sessionStorage.setItem(DRAFTS_KEY, JSON.stringify(Object.fromEntries(drafts)));
    } catch (_) { /* storage full or off: the drafts still live in memory */ }
  }

  // A draft is a comment that differs from the one saved with the alert's review.
  function setDraft(alertId, text, saved) {
    drafts.delete(alertId); // re-inserted last: the oldest drafts go first when there are too many
    if (text !== saved) drafts.set(alertId, text);
    saveDrafts();
  }

  function readFilter() {
    const saved = sessionStorage.getItem(FILTER_KEY);
    return FILTERS.includes(saved) ? saved : "unreviewed";
  }

  // ---- summary and badge --------------------------------------------------------------------------
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

  // The tab's badge: the current shift's unreviewed alerts, so a busy line does not swamp it.
  async function refreshBadge() {
    if (!state.key || available === false) return;
    if (available === null) await refreshSummary();
    const summary = await (await api("/alerts/reviews/summary?current_shift=true")).json();
    const what = summary.shift ? `unreviewed alerts this shift (${summary.shift.label})` : "unreviewed alerts";
    const badge = $("review-badge");
    badge.textContent = summary.unreviewed;
    badge.hidden = !summary.unreviewed;
    badge.title = what[0].toUpperCase() + what.slice(1);
    badge.setAttribute("aria-label", `${summary.unreviewed} ${what}`);
    badge.dataset.counts = summary.shift ? "shift" : "all";
    $("review-badge-note").textContent = `The tab's badge counts ${what}: ${summary.unreviewed}.`;
  }

  // ---- the list ---------------------------------------------------------------------------------
  function query(extra) {
    const params = new URLSearchParams({ limit: String(PAGE), defects_only: "true", ...extra });
    if (filter !== "all") params.set("review_state", filter);
    return `/alerts?${params}`;
  }

  const list = () => $("review-list");
  const itemOf = (alertId) => list().querySelector(`[data-alert-id="${CSS.escape(alertId)}"]`);
  const isEdited = (li) =>
    li.contains(document.activeElement) || drafts.has(li.dataset.alertId) || li.dataset.sending === "true";
  const editing = () => sending > 0 || pointerInList || Array.from(list().children).some(isEdited);

  // `keep`: items being edited stay even when the answer no longer holds them (a periodic refresh);
  // `latest`: drop the pin and show the newest alerts (the banner, the filter, page 1 when idle).
  async function loadQueue({ keep = true, latest = false } = {}) {
    const gen = ++generation;
    const pageIndex = cursors.length - 1;
    if (latest || (pageIndex === 0 && !editing())) pin = null;
    const cursor = pageIndex > 0 ? { before_id: cursors[pageIndex] } : pin ? { until_id: pin } : {};
    let page;
    try {
      page = await (await api(query(cursor))).json();
    } catch (err) {
      if (err.status === 422 && (pin || pageIndex > 0)) {
        // The alert a page was anchored at has left the history (pushed out by newer ones): start over.
        if (gen !== generation) return;
        cursors = [null];
        pin = null;
        return loadQueue({ keep, latest: true });
      }
      throw err;
    }
    if (pageIndex === 0 && pin === null && page.items.length) pin = page.items[0].alert_id;
    const anchor = pin;
    const arrived = anchor ? (await (await api(query({ after_id: anchor, limit: "1" }))).json()).total : 0;
    if (gen !== generation) return;
    render(page.items, keep);
    nextCursor = page.next_before_id || null;
    $("review-prev").disabled = pageIndex === 0;
    $("review-next").disabled = !nextCursor;
    const older = page.total - page.items.length;
    $("review-page").textContent = `page ${pageIndex + 1}` + (older > 0 ? ` · ${older} older` : "");
    const banner = $("review-new");
    banner.hidden = arrived === 0;
    banner.dataset.count = String(arrived);
    banner.textContent = `${arrived} new alert${arrived === 1 ? "" : "s"} — show`;
  }

  function render(items, keep) {
    const ul = list();
    const wanted = new Set(items.map((a) => a.alert_id));
    for (const li of Array.from(ul.children)) {
      if (!wanted.has(li.dataset.alertId) && !(keep && isEdited(li))) li.remove();
    }
    // Newest first: a new alert goes before the first existing older one; existing items are never moved
    // (moving a node would take the focus out of a comment being typed).
    let anchor = ul.firstChild;
    for (const alert of items) {
      const existing = itemOf(alert.alert_id);
      if (existing) {
        updateItem(existing, alert);
        anchor = existing.nextSibling;
        continue;
      }
      ul.insertBefore(renderItem(alert), anchor);
    }
    const shown = new Set(Array.from(ul.children, (li) => li.dataset.alertId));
    for (const id of Array.from(thumbs.keys())) {
      if (!shown.has(id)) { URL.revokeObjectURL(thumbs.get(id)); thumbs.delete(id); }
    }
    $("review-empty").textContent = filter === "unreviewed" ? "Nothing to review." : "No alerts in this view.";
    $("review-empty").hidden = ul.children.length > 0;
  }

  function stateText(review) {
    if (!review) return "Unreviewed";
    return `${STATE_TEXT[review.state] || review.state} · by ${review.reviewer}` +
      (review.ts ? ` · ${fmtTime(review.ts)}` : "");
  }

  // Refresh what the server says about an item; the comment box is left alone while it holds a draft.
  function updateItem(li, alert) {
    const review = alert.review || null;
    const saved = review ? review.comment || "" : "";
    li.dataset.state = review ? review.state : "unreviewed";
    li.dataset.saved = saved;
    li.querySelector(".review-state").textContent = stateText(review);
    li.querySelectorAll("[data-verdict]").forEach((button) => {
      button.setAttribute("aria-pressed", String(review !== null && button.dataset.verdict === review.state));
    });
    const comment = li.querySelector("input");
    if (!drafts.has(alert.alert_id) && document.activeElement !== comment) comment.value = saved;
  }

  function renderItem(alert) {
    const img = el("img", { alt: "Defect thumbnail", testid: "review-thumb" });
    api(`/alerts/${encodeURIComponent(alert.alert_id)}/thumbnail.jpg`)
      .then((response) => response.blob())
      .then((blob) => { const url = URL.createObjectURL(blob); thumbs.set(alert.alert_id, url); img.src = url; })
      .catch(() => { img.alt = "no thumbnail"; });
    const comment = el("input", { type: "text", placeholder: "comment (optional)", maxLength: 500,
      testid: "review-comment", ariaLabel: "Comment" });
    const confirmButton = el("button", { className: "btn btn-stop", type: "button", testid: "review-confirm",
      dataset: { verdict: "confirmed" } }, "Real defect");
    const falseButton = el("button", { className: "btn", type: "button", testid: "review-false-alarm",
      dataset: { verdict: "false_alarm" } }, "False alarm");
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
        el("div", { className: "review-state muted", testid: "review-state" }),
        comment),
      el("div", { className: "review-buttons" }, confirmButton, falseButton));
    updateItem(li, alert);
    if (drafts.has(alert.alert_id)) comment.value = drafts.get(alert.alert_id);
    comment.addEventListener("input", () => setDraft(alert.alert_id, comment.value, li.dataset.saved || ""));
    confirmButton.addEventListener("click", () => review(alert, "confirmed", li));
    falseButton.addEventListener("click", () => review(alert, "false_alarm", li));
    return li;
  }

  async function review(alert, verdict, li) {
    const controls = li.querySelectorAll("button, input");
    const comment = li.querySelector("input").value;
    controls.forEach((control) => { control.disabled = true; });
    li.dataset.sending = "true";
    sending += 1;
    const body = { state: verdict };
    if (comment.trim()) body.comment = comment.trim();
    try {
      await api(`/alerts/${encodeURIComponent(alert.alert_id)}/review`, { method: "POST", json: body });
      drafts.delete(alert.alert_id);
      saveDrafts();
      if (li.contains(document.activeElement)) document.activeElement.blur();
      if (filter !== "all" && filter !== verdict) li.remove();
      message(`Frame ${alert.frame_id}: ${verdict === "confirmed" ? "confirmed as a defect" : "marked a false alarm"}.`, "ok");
    } catch (err) {
      if (err.status !== 401) message(`Refused: ${err.message}`, "bad");
    } finally {
      sending -= 1;
      delete li.dataset.sending;
      controls.forEach((control) => { control.disabled = false; });
    }
    await refresh();
  }

  async function refresh(options) {
    try {
      await refreshSummary();
    } catch (err) {
      $("review-unavailable").hidden = available !== false;
      $("review-empty").hidden = true;
      return;
    }
    $("review-unavailable").hidden = true;
    await Promise.all([loadQueue(options), refreshBadge().catch(() => {})]);
  }

  function reload(options) {
    refresh(options).catch((err) => message(`Cannot load the queue: ${err.message}`, "bad"));
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
    $("review-filter").value = filter;
    $("review-filter").addEventListener("change", () => {
      filter = FILTERS.includes($("review-filter").value) ? $("review-filter").value : "unreviewed";
      sessionStorage.setItem(FILTER_KEY, filter);
      cursors = [null];
      list().replaceChildren();
      reload({ keep: false, latest: true });
    });
    $("review-new").addEventListener("click", () => {
      cursors = [null];
      reload({ keep: true, latest: true });
    });
    $("review-prev").addEventListener("click", () => {
      if (cursors.length > 1) cursors.pop();
      reload({ keep: false });
    });
    $("review-next").addEventListener("click", () => {
      if (!nextCursor) return;
      cursors.push(nextCursor);
      reload({ keep: false });
    });
    list().addEventListener("pointerenter", () => { pointerInList = true; });
    list().addEventListener("pointerleave", () => { pointerInList = false; });
  });

  registerScreen("review", {
    show() {
      message("", "");
      reload();
      clearInterval(timer);
      timer = setInterval(() => refresh().catch(() => {}), REFRESH_MS);
    },
    hide() { clearInterval(timer); timer = null; },
  });
})();
