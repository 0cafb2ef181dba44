// Trends screen: defect rate, score distribution (with the threshold), latency p50/p99 and per-shift
// figures from GET /trends, drawn with the vendored uPlot (static/vendor/, no CDN).
"use strict";

(() => {
  const REFRESH_MS = 30_000;
  const COLORS = { grid: "#2c3742", axis: "#8e9bab", bad: "#e5484d", accent: "#2f8fff", warn: "#f2b233", ok: "#2fbf71" };
  const charts = {};
  let windowName = "8h";
  let timer = null;
  let report = null;

  // Markers on lines with few points: a fresh line has one or two buckets, which a bare line cannot show.
  const sparse = (values) => ({ show: values.filter((v) => v !== null).length <= 40, size: 7 });
  const fmtMs = (value) => (value === null || value === undefined ? "—" : `${Number(value).toFixed(1)} ms`);
  const pct = (rate) => (rate === null || rate === undefined ? null : 100 * rate);
  const fmtNum = (value, digits) => (value === null || value === undefined ? "—" : Number(value).toFixed(digits));

  function axis(extra = {}) {
    return { stroke: COLORS.axis, grid: { stroke: COLORS.grid, width: 1 }, ticks: { stroke: COLORS.grid, width: 1 },
      font: "12px DejaVu Sans, sans-serif", ...extra };
  }

  function size(container) {
    return { width: Math.max(280, container.clientWidth), height: 210 };
  }

  function replaceChart(name, container, options, data) {
    if (charts[name]) charts[name].destroy();
    container.replaceChildren();
    charts[name] = new uPlot({ ...size(container), ...options }, data, container);
  }

  function drawRate() {
    const s = report.series;
    replaceChart("rate", $("chart-defect-rate"), {
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.15)] } },
      series: [{}, { label: "Defect rate", stroke: COLORS.bad, fill: "rgba(229,72,77,.15)", width: 2,
        points: sparse(s.defect_rate), value: (u, v) => (v === null ? "—" : v.toFixed(1) + " %") }],
      axes: [axis(), axis({ values: (u, vals) => vals.map((v) => v + " %"), size: 56 })],
    }, [s.t, s.defect_rate.map(pct)]);
  }

  function drawLatency() {
    const s = report.series;
    replaceChart("latency", $("chart-latency"), {
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, (max || 0) * 1.15)] } },
      series: [{},
        { label: "p50", stroke: COLORS.accent, width: 2, points: sparse(s.latency_p50_ms), value: (u, v) => fmtMs(v) },
        { label: "p99", stroke: COLORS.warn, width: 2, points: sparse(s.latency_p99_ms), value: (u, v) => fmtMs(v) }],
      axes: [axis(), axis({ values: (u, vals) => vals.map((v) => v + " ms"), size: 64 })],
    }, [s.t, s.latency_p50_ms, s.latency_p99_ms]);
  }

  // Log-binned histogram as a stepped area on a log x axis; the threshold is a DOM line over the plot,
  // placed by uPlot's own value-to-pixel mapping on every redraw.
  function drawScores() {
    const { edges, counts } = report.score_histogram;
    const threshold = report.threshold;
    const container = $("chart-scores");
    if (!counts.length) {
      if (charts.scores) { charts.scores.destroy(); delete charts.scores; }
      container.replaceChildren(el("p", { className: "muted chart-empty" }, "No scores in this window."));
      return;
    }
    const placeThreshold = (u) => {
      let line = u.over.querySelector(".threshold-line");
      if (!line) {
        line = el("div", { className: "threshold-line", testid: "threshold-line" },
          el("span", { className: "threshold-label" }, `threshold ${fmtThreshold(threshold)}`));
        u.over.append(line);
      }
      const left = u.valToPos(threshold, "x");
      line.hidden = !(left >= 0 && left <= u.over.clientWidth);
      line.style.left = `${left}px`;
      line.dataset.value = String(threshold);
    };
    replaceChart("scores", container, {
      scales: { x: { time: false, distr: 3, log: 10 }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      series: [{ label: "score", value: (u, v) => (v === null ? "—" : Number(v.toPrecision(3))) },
        { label: "parts", stroke: COLORS.accent, fill: "rgba(47,143,255,.25)", width: 2,
          paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } }],
      axes: [axis({ values: (u, vals) => vals.map((v) => (v === null ? "" : Number(v.toPrecision(2)))) }),
        axis({ size: 56 })],
      hooks: { draw: [placeThreshold] },
    }, [edges, [...counts, 0]]);
  }

  function shiftName(shift) {
    const start = new Date(shift.start);
    const day = start.toLocaleDateString(undefined, { weekday: "short", day: "numeric", month: "short" });
    return `${day} ${shift.label}`;
  }

  function drawShifts() {
    const shifts = report.shifts;
    const labels = shifts.map((s) => {
      const start = new Date(s.start);
      return `${start.toLocaleDateString(undefined, { weekday: "short" })} ${s.label.split("-")[0]}`;
    });
    const xs = shifts.map((_, i) => i);
    replaceChart("shifts", $("chart-shifts"), {
      scales: { x: { time: false, range: () => [-0.5, Math.max(0.5, shifts.length - 0.5)] },
        y: { range: (u, min, max) => [0, Math.max(1, (max || 0) * 1.15)] } },
      series: [{ label: "shift", value: (u, i) => (i === null || labels[i] === undefined ? "—" : labels[i]) },
        { label: "Defect rate", stroke: COLORS.bad, fill: "rgba(229,72,77,.55)", width: 1,
          paths: uPlot.paths.bars({ size: [0.6, 90] }), points: { show: false },
          value: (u, v) => (v === null ? "—" : v.toFixed(1) + " %") }],
      axes: [axis({ splits: () => xs, values: (u, splits) => splits.map((i) => labels[i] || ""), grid: { show: false } }),
        axis({ values: (u, vals) => vals.map((v) => v + " %"), size: 56 })],
    }, [xs, shifts.map((s) => pct(s.defect_rate))]);
    $("shift-zone").textContent = `(${report.timezone}; shifts start ${report.shift_starts.join(", ")})`;
    $("shift-rows").replaceChildren(...shifts.slice().reverse().map((s) => el("tr", { testid: "shift-row" },
      el("td", { className: "strong" }, shiftName(s), s.complete ? "" : el("span", { className: "muted small" }, " (part)")),
      el("td", {}, s.frames), el("td", {}, s.defects),
      el("td", {}, s.defect_rate === null ? "—" : `${(100 * s.defect_rate).toFixed(1)} %`),
      el("td", {}, fmtMs(s.latency_p50_ms)), el("td", {}, fmtMs(s.latency_p99_ms)),
      el("td", {}, s.score_p50 === null ? "—" : Number(s.score_p50.toPrecision(3))))));
  }

  function drawTotals() {
    const t = report.totals;
    $("trend-frames").textContent = t.frames;
    $("trend-defects").textContent = t.defects;
    $("trend-rate").textContent = t.defect_rate === null ? "—" : `${(100 * t.defect_rate).toFixed(1)} %`;
    $("trend-p50").textContent = fmtNum(t.latency_p50_ms, 1);
    $("trend-p99").textContent = fmtNum(t.latency_p99_ms, 1);
    $("trend-empty").hidden = t.frames > 0;
    $("trend-updated").textContent = `updated ${new Date(report.until * 1000).toLocaleTimeString()}`;
  }

  function drawAll() {
    if (!report) return;
    drawTotals();
    drawRate();
    drawScores();
    drawLatency();
    drawShifts();
  }

  async function load() {
    report = await (await api(`/trends?window=${encodeURIComponent(windowName)}`)).json();
    drawAll();
  }

  const reload = () => load().catch((err) => { $("trend-updated").textContent = `Cannot load trends: ${err.message}`; });

  function selectWindow(name) {
    windowName = name;
    document.querySelectorAll("#trend-windows [data-window]").forEach((button) => {
      button.classList.toggle("active", button.dataset.window === name);
      button.setAttribute("aria-pressed", String(button.dataset.window === name));
    });
    reload();
  }

  let resizeTimer = null;
  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("#trend-windows [data-window]").forEach((button) => {
      button.setAttribute("data-testid", `trend-window-${button.dataset.window}`);
      button.addEventListener("click", () => selectWindow(button.dataset.window));
    });
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => { if (timer) drawAll(); }, 200);
    });
  });

  registerScreen("trends", {
    show() {
      selectWindow(windowName);
      clearInterval(timer);
      timer = setInterval(reload, REFRESH_MS);
    },
    hide() { clearInterval(timer); timer = null; },
  });
})();
