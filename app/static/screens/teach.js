// Teach card on the Models screen: "teach normal" (the reviewed false alarms not yet taught) and "teach
// confirmed defects" (the alerts reviewed as confirmed defects), each a background job on the box
// (POST /models/teach-normal | /models/teach-defects), its progress, then the candidate's before/after
// figures under readable labels. The candidate is never active: activating it stays the admin's Activate in
// the model list (and Roll back undoes it). Admin only; the server enforces it too.
"use strict";

const TeachCard = (() => {
  const POLL_MS = 1000;
  const pct = (value) => `${Number((value * 100).toFixed(1))}%`;
  const num = (value) => String(Number(Number(value).toPrecision(4)));
  const count = (n, one, many) => `${n} ${n === 1 ? one : many}`;

  // Per kind of job: where it starts, what the confirmation says, and its figures in the order a person
  // weighs them: [report key, label, format, what a null means].
  const KINDS = {
    normal: {
      path: "/models/teach-normal",
      title: "Teach normal: reviewed false alarms",
      confirm: "Build a new model version that takes every reviewed false alarm not yet taught as normal? " +
        "It runs in the background on this box; the line keeps its current model until you activate the new one.",
      figures: [
        ["false_reject_rate_taught", "Taught false alarms still rejected", pct],
        ["false_reject_rate_good", "False rejects on good parts", pct, "not measured (too few archived good parts)"],
        ["defect_detection_rate", "Confirmed defects caught", pct, "not measured (no confirmed defects)"],
        ["defect_auroc", "Defects told apart from good parts (AUROC)", num, "not measured"],
        ["threshold", "Threshold", num],
      ],
    },
    defects: {
      path: "/models/teach-defects",
      title: "Teach confirmed defects",
      confirm: "Build a new model version that also learns the alerts reviewed as confirmed defects (every " +
        "fifth is kept out to test it)? It runs in the background on this box; the line keeps its current " +
        "model until you activate the new one.",
      figures: [
        ["detection_rate_check", "Confirmed defects caught (held out)", pct,
          "none held out (fewer than 5 confirmed defects)"],
        ["false_reject_rate_good", "False rejects on good parts", pct],
        ["detection_rate_taught", "Confirmed defects caught (the taught ones: an upper bound)", pct],
        ["threshold", "Threshold", num],
      ],
    },
  };

  let job = null;  // the last job started from this panel, as GET /models/teach-*/{id} gave it
  let timer = null;
  let hooks = { modelsChanged: () => {}, showModel: () => {} };

  const running = () => job !== null && (job.state === "queued" || job.state === "running");

  function message(text, kind) {
    $("teach-message").textContent = text;
    $("teach-message").className = "message " + (kind || "");
  }

  function summary(kind, report) {
    const skipped = job.skipped_alert_ids.length
      ? ` ${job.skipped_alert_ids.length} left out: their frame is no longer archived.` : "";
    if (kind === "defects") {
      return `Taught ${count(report.defects_taught, "confirmed defect", "confirmed defects")} ` +
        `(${report.defects_with_mask} with a drawn mask), ${job.check_alert_ids.length} held out to test it. ` +
        `Threshold set on ${count(report.good_images_calibration, "good part", "good parts")}, figures ` +
        `measured on ${report.good_images_evaluation} others.${skipped}`;
    }
    return `Taught ${count(report.taught_examples, "false alarm", "false alarms")} as normal. Figures measured ` +
      `on ${count(report.good_images_evaluation, "good part", "good parts")} and ` +
      `${count(report.confirmed_defects, "confirmed defect", "confirmed defects")}.${skipped}`;
  }

  function figureRow([key, label, format, ifNull], report) {
    const value = report[key];
    const cells = value === null || value === undefined
      ? [el("td", { colSpan: 2, className: "muted" }, ifNull || "—")]
      : [el("td", {}, format(value.before)), el("td", { className: "strong" }, format(value.after))];
    return el("tr", { testid: "teach-figure", dataset: { key } }, el("th", { scope: "row" }, label), ...cells);
  }

  function render() {
    $("teach-normal").disabled = running();
    $("teach-defects").disabled = running();
    $("teach-job").hidden = job === null;
    if (job === null) return;
    const kind = KINDS[job.kind];
    $("teach-title").textContent = kind.title;
    $("teach-progress").value = job.progress;
    const stage = job.state === "failed" ? `failed: ${job.error}` : job.stage;
    $("teach-stage").textContent = `${Math.round(job.progress * 100)}% · ${stage}`;
    const report = job.state === "done" ? job.report : null;
    $("teach-summary").textContent = report ? summary(job.kind, report) : "";
    $("teach-figures").hidden = !report;
    $("teach-figure-rows").replaceChildren(...(report ? kind.figures.map((f) => figureRow(f, report)) : []));
    $("teach-notes").replaceChildren(...(report ? report.notes.map((note) => el("li", {}, note)) : []));
    $("teach-show-model").hidden = !job.model_id;
  }

  async function loadCounts() {
    try {
      const counts = await (await api("/alerts/reviews/summary")).json();
      $("teach-counts").textContent = `${count(counts.confirmed, "confirmed defect", "confirmed defects")} · ` +
        `${count(Math.max(0, counts.false_alarm - counts.taught), "false alarm", "false alarms")} not yet taught`;
    } catch (err) {
      if (err.status !== 401) $("teach-counts").textContent = "—";
    }
  }

  async function poll() {
    timer = null;
    if (!running()) return;
    try {
      job = await (await api(`${KINDS[job.kind].path}/${encodeURIComponent(job.job_id)}`)).json();
    } catch (err) {
      if (err.status === 401) return;
      message(`Cannot read the teach job: ${err.message}`, "bad");
    }
    render();
    if (running()) {
      timer = setTimeout(poll, POLL_MS);
    } else if (job.state === "done") {
      message(`New model ${job.model_id} registered, not active: compare it, then activate it in the list above.`, "ok");
      hooks.modelsChanged();
      loadCounts();
    } else {
      message(`Teaching failed: ${job.error}`, "bad");
    }
  }

  async function teach(kindName) {
    const kind = KINDS[kindName];
    if (!(await confirmAction(kind.title, kind.confirm))) return;
    message("", "");
    try {
      job = await (await api(kind.path, { method: "POST" })).json();
    } catch (err) {
      if (err.status !== 401) message(`Refused: ${err.message}`, "bad");
      return;
    }
    render();
    clearTimeout(timer);
    timer = setTimeout(poll, POLL_MS / 2);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("teach-normal").addEventListener("click", () => teach("normal"));
    $("teach-defects").addEventListener("click", () => teach("defects"));
    $("teach-show-model").addEventListener("click", () => { if (job && job.model_id) hooks.showModel(job.model_id); });
  });

  return {
    // `modelsChanged()`: a candidate was registered; `showModel(id)`: bring its row into view.
    start(callbacks) {
      hooks = callbacks;
      if (!hasRole("admin")) return;
      loadCounts();
      render();
      if (running() && timer === null) poll();
    },
    stop() { clearTimeout(timer); timer = null; },
  };
})();
