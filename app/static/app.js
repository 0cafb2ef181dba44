// EdgeInspect operator panel. Plain JS, no build step, no network beyond this box's own API.
// The API key lives in sessionStorage: it is gone when the tab closes and is never put in a URL.
"use strict";

const KEY_STORAGE = "edgeinspect.apiKey";
const ROLE_RANK = { viewer: 1, operator: 2, admin: 3 };
const POLL_MS = { status: 1000, alerts: 2000, frame: 200, health: 5000 };
const ALERT_PAGE = 20;
const FRAME_STALE_MS = 5000;  // no new frame for this long: the verdict shown is no longer the current part

const state = { key: null, role: null, timers: [], frameEtag: null, frameUrl: null, thumbs: new Map(),
  status: null, frame: null, frameSeenAt: 0 };

const $ = (id) => document.getElementById(id);

// Build an element: el("td", { className: "x", dataset: { id: "1" }, testid: "cell" }, "text", child).
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "testid") node.setAttribute("data-testid", value);
    else if (name in node) node[name] = value;
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const hasRole = (role) => (ROLE_RANK[state.role] || 0) >= ROLE_RANK[role];

// ---- screens (tabs) --------------------------------------------------------------------------------
// Each screen file registers { show(), hide() }; only the visible screen polls its data.
const screens = {};
let currentScreen = null;

function registerScreen(name, screen) {
  screens[name] = screen;
}

function showScreen(name) {
  const tab = document.querySelector(`[data-tab="${CSS.escape(name)}"]`);
  if (!tab || tab.hidden) name = "live";
  if (currentScreen && currentScreen !== name && screens[currentScreen]) screens[currentScreen].hide();
  document.querySelectorAll("[data-screen]").forEach((section) => {
    section.hidden = section.dataset.screen !== name;
  });
  document.querySelectorAll("[data-tab]").forEach((button) => {
    const active = button.dataset.tab === name;
    button.classList.toggle("active", active);
    button.setAttribute("aria-selected", String(active));
  });
  currentScreen = name;
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  if (screens[name]) screens[name].show();
}

function hideScreens() {
  if (currentScreen && screens[currentScreen]) screens[currentScreen].hide();
  currentScreen = null;
}

// Save a blob the way a download link would (fetches carry the key header, plain links cannot).
function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

const fmtTime = (iso) => {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
};

class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({ "X-API-Key": state.key }, options.headers || {});
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const response = await fetch(path, { method: options.method || "GET", headers, body: options.body,
    cache: "no-store" });
  if (response.status === 401) {
    logout("Your key was not accepted. Please sign in again.");
    throw new ApiError(401, "unauthorized");
  }
  if (!response.ok && response.status !== 304) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      detail = body.detail !== undefined ? body.detail : (body.message || detail);
      if (Array.isArray(detail)) detail = detail.map((d) => d.msg).join("; ");
    } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, detail);
  }
  return response;
}

function setLink(ok) {
  const pill = $("link-state");
  pill.textContent = ok ? "online" : "offline";
  pill.className = "pill " + (ok ? "pill-ok" : "pill-offline");
}

function showMessage(text, kind) {
  const el = $("message");
  el.textContent = text;
  el.className = "message " + (kind || "");
}

// ---- login ---------------------------------------------------------------------------------------
async function login(key) {
  state.key = key;
  const who = await (await api("/auth/whoami")).json();
  sessionStorage.setItem(KEY_STORAGE, key);
  state.role = who.role;
  const label = who.name === who.role ? who.role : `${who.name} · ${who.role}`;
  $("role").textContent = who.auth_enabled ? label : "auth disabled";
  $("role").dataset.role = who.role;
  $("role").hidden = false;
  $("logout").hidden = false;
  $("login").hidden = true;
  $("dashboard").hidden = false;
  applyRole();
  startPolling();
  loadStation().catch(() => {});
  showScreen(location.hash.slice(1) || "live");
}

function logout(reason) {
  sessionStorage.removeItem(KEY_STORAGE);
  state.key = null;
  state.role = null;
  state.timers.forEach(clearInterval);
  state.timers = [];
  hideScreens();
  $("dashboard").hidden = true;
  $("login").hidden = false;
  $("role").hidden = true;
  $("logout").hidden = true;
  $("login-error").textContent = reason || "";
  setLink(false);
}

function applyRole() {
  const rank = ROLE_RANK[state.role] || 0;
  document.querySelectorAll("[data-needs]").forEach((node) => {
    const allowed = rank >= ROLE_RANK[node.dataset.needs];
    node.disabled = !allowed;
    node.title = allowed ? "" : `Needs the ${node.dataset.needs} role`;
  });
  // ...and say why next to them (a tablet has no hover tooltip).
  document.querySelectorAll("[data-needs-note]").forEach((node) => {
    node.hidden = rank >= ROLE_RANK[node.dataset.needsNote];
  });
  // Controls a role may not use at all are not shown (the server refuses them anyway).
  document.querySelectorAll("[data-show-for]").forEach((node) => {
    node.hidden = rank < ROLE_RANK[node.dataset.showFor];
  });
  updateLineButtons();
}

// ---- polling -------------------------------------------------------------------------------------
function every(ms, fn) {
  const run = () => fn().catch(() => {});
  run();
  state.timers.push(setInterval(run, ms));
}

function startPolling() {
  state.timers.forEach(clearInterval);
  state.timers = [];
  every(POLL_MS.status, refreshStatus);
  every(POLL_MS.frame, refreshFrame);
  every(POLL_MS.alerts, refreshAlerts);
  every(POLL_MS.health, refreshHealth);
}

// Thresholds as typed: 0.77 stays "0.77", float noise beyond 6 significant digits is dropped.
const fmtThreshold = (value) => String(Number(Number(value).toPrecision(6)));
const fmt = (value, digits = 0) => (value === null || value === undefined ? "—" : Number(value).toFixed(digits));

async function refreshStatus() {
  try {
    const s = await (await api("/status")).json();
    state.status = s;
    setLink(true);
    const pill = $("line-state");
    pill.textContent = s.state;
    pill.className = "pill pill-" + s.state;
    $("counter-fps").textContent = fmt(s.fps, 1);
    $("counter-frames").textContent = s.frames;
    $("counter-defects").textContent = s.defects;
    $("counter-defect-rate").textContent = s.frames > 0 ? ((100 * s.defects) / s.frames).toFixed(1) + " %" : "—";
    $("counter-p50").textContent = fmt(s.latency.p50_ms, 1);
    $("counter-p99").textContent = fmt(s.latency.p99_ms, 1);
    $("counter-dropped").textContent = s.dropped_frames;
    $("counter-spool").textContent = s.spool_depth;
    $("threshold-current").textContent = fmtThreshold(s.threshold);
    $("threshold-model").textContent = s.model ? `(model: ${fmtThreshold(s.model.calibrated_threshold)})` : "";
    $("model-name").textContent = s.model ? `${s.model.name} ${s.model.version} · ${s.model.sha256.slice(0, 12)}` : "none";
    $("recipe-name").textContent = s.recipe || "none";
    setDot("broker", s.broker_connected, "connected", "disconnected");
    setDot("camera", s.camera_connected, "connected", "disconnected");
    $("uptime").textContent = formatDuration(s.uptime_s);
    showEscalation(s.escalation);
    updateLineButtons();
    renderVerdict();
  } catch (err) {
    if (err.status !== 401) setLink(false);
    throw err;
  }
}

// The big OK / NG for the part in the live view, from the verdict headers of that very image; when the line
// is stopped or paused, or no new frame came for FRAME_STALE_MS, it says so instead of an old verdict.
const fmtScore = (value) => (value === null || value === undefined ? "—" : String(Number(Number(value).toPrecision(4))));
const fmtClock = (iso) => {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "—" : date.toLocaleTimeString();
};

function renderVerdict() {
  const frame = state.frame;
  const line = state.status ? state.status.state : null;
  const age = frame ? Date.now() - state.frameSeenAt : Infinity;
  const last = frame ? `Last frame ${frame.id} at ${fmtClock(frame.capturedAt)}.` : "";
  let kind, word, detail;
  if (line === "stopped") {
    [kind, word, detail] = ["stopped", "STOPPED", `Line stopped: no parts are judged. ${last}`];
  } else if (line === "paused") {
    [kind, word, detail] = ["paused", "PAUSED", `Inspection paused: parts are not judged. ${last}`];
  } else if (!frame) {
    [kind, word, detail] = ["waiting", "—", "Waiting for the first judged part…"];
  } else if (age > FRAME_STALE_MS) {
    [kind, word, detail] = ["stale", "NO FRAMES", `No new frame for ${Math.round(age / 1000)} s. ${last}`];
  } else if (frame.verdict === "OK" || frame.verdict === "NG") {
    kind = frame.verdict.toLowerCase();
    word = frame.verdict;
    detail = `score ${fmtScore(frame.score)} · threshold ${fmtScore(frame.threshold)} · ` +
      `frame ${frame.id} · ${fmtClock(frame.capturedAt)}`;
  } else {
    [kind, word, detail] = ["paused", "NOT JUDGED", `Frame ${frame.id} was shown but not judged.`];
  }
  const box = $("verdict");
  box.dataset.verdict = kind;
  box.dataset.frameId = kind === "ok" || kind === "ng" ? frame.id : "";
  $("verdict-word").textContent = word;
  $("verdict-detail").textContent = detail.trim();
}

// One line under the live view while escalation to plant verifiers is on (docs/ESCALATION.md).
function showEscalation(e) {
  const line = $("escalation-line");
  line.hidden = !e;
  if (!e) return;
  const pct = (value) => (value === null || value === undefined ? "—" : (100 * value).toFixed(1) + " %");
  const fallbacks = Object.values(e.fallbacks || {}).reduce((a, b) => a + b, 0);
  const link = !e.connected ? "verify link down" : e.breaker_open ? "verifiers not answering" : "verifiers reachable";
  line.textContent =
    `Escalation: ${link} · escalated ${pct(e.escalation_rate)} (target ${pct(e.target_rate)}) · ` +
    `verified ${e.verified} · agreement ${pct(e.agreement)} · verifier p50 ${fmt(e.verifier_p50_ms, 0)} ms ` +
    `· fallbacks ${fallbacks} · deadline ${e.deadline_ms} ms`;
  line.dataset.ok = String(e.connected && !e.breaker_open);
}

async function refreshHealth() {
  const response = await fetch("/health", { cache: "no-store" });
  const report = await response.json();
  const bad = Object.entries(report.components || {}).filter(([, c]) => !c.ok).map(([name]) => name);
  $("health").textContent = report.status + (bad.length ? ` (${bad.join(", ")})` : "");
  $("health").dataset.status = report.status;
}

function setDot(name, ok, yes, no) {
  $(`${name}-state`).className = "dot " + (ok ? "ok" : "bad");
  $(`${name}-state`).dataset.ok = String(ok);
  $(`${name}-text`).textContent = ok ? yes : no;
}

function formatDuration(seconds) {
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h} h ${m} min` : `${m} min ${s % 60} s`;
}

async function refreshFrame() {
  const headers = state.frameEtag ? { "If-None-Match": state.frameEtag } : {};
  let response;
  try {
    response = await api("/frames/latest.jpg?overlay=1", { headers });
  } catch (err) {
    if (err.status === 503) $("frame-empty").hidden = false;
    renderVerdict();
    throw err;
  }
  if (response.status === 304) { renderVerdict(); return; }
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const img = $("live-frame");
  img.src = url;
  if (state.frameUrl) URL.revokeObjectURL(state.frameUrl);
  state.frameUrl = url;
  state.frameEtag = response.headers.get("ETag");
  $("frame-seq").textContent = response.headers.get("X-Frame-Seq") || "—";
  $("frame-empty").hidden = true;
  const header = (name) => response.headers.get(`X-Frame-${name}`);
  state.frame = { id: header("Id") || header("Seq"), capturedAt: header("Captured-At"), verdict: header("Verdict"),
    score: header("Score"), threshold: header("Threshold") };
  state.frameSeenAt = Date.now();
  renderVerdict();
}

async function refreshAlerts() {
  const page = await (await api(`/alerts?limit=${ALERT_PAGE}&defects_only=true`)).json();
  $("alert-total").textContent = page.total;
  $("alert-empty").hidden = page.items.length > 0;
  const list = $("alert-list");
  const wanted = new Set(page.items.map((a) => a.alert_id));
  for (const item of Array.from(list.children)) {
    if (!wanted.has(item.dataset.alertId)) item.remove();
  }
  // Newest first: insert each new alert before the first existing older one.
  let anchor = list.firstChild;
  for (const alert of page.items) {
    const existing = list.querySelector(`[data-alert-id="${CSS.escape(alert.alert_id)}"]`);
    if (existing) { anchor = existing.nextSibling; continue; }
    list.insertBefore(renderAlert(alert), anchor);
  }
  for (const id of Array.from(state.thumbs.keys())) {
    if (!wanted.has(id)) { URL.revokeObjectURL(state.thumbs.get(id)); state.thumbs.delete(id); }
  }
}

function renderAlert(alert) {
  const li = document.createElement("li");
  li.className = "alert-item";
  li.dataset.alertId = alert.alert_id;
  li.setAttribute("data-testid", "alert-item");
  const img = document.createElement("img");
  img.alt = "Defect thumbnail";
  img.setAttribute("data-testid", "alert-thumb");
  loadThumbnail(alert.alert_id, img);
  const text = document.createElement("div");
  const what = document.createElement("div");
  what.className = "what";
  what.textContent = alert.defect_class || alert.defect_type || "defect";
  const when = document.createElement("div");
  when.className = "when";
  const boxes = Array.isArray(alert.boxes) ? alert.boxes.length : 0;
  when.textContent = `${new Date(alert.ts).toLocaleTimeString()} · frame ${alert.frame_id} · ${boxes} region(s)`;
  text.append(what, when);
  const score = document.createElement("div");
  score.className = "score";
  score.textContent = Number(alert.score).toFixed(3);
  score.title = `threshold ${Number(alert.threshold).toFixed(3)}`;
  li.append(img, text, score);
  return li;
}

async function loadThumbnail(alertId, img) {
  try {
    const response = await api(`/alerts/${encodeURIComponent(alertId)}/thumbnail.jpg`);
    const url = URL.createObjectURL(await response.blob());
    state.thumbs.set(alertId, url);
    img.src = url;
  } catch (_) {
    img.alt = "no thumbnail";
  }
}

// ---- controls ------------------------------------------------------------------------------------
function confirmAction(title, text) {
  const dialog = $("confirm-dialog");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

async function sendCommand(path, body, done) {
  try {
    const result = await (await api(path, { method: "POST", json: body })).json();
    showMessage(result.message || done, "ok");
    await refreshStatus();
  } catch (err) {
    if (err.status !== 401) showMessage(`Refused: ${err.message}`, "bad");
  }
}

// `when`: the line states in which the button does something (from the polled /status).
const LINE_COMMANDS = {
  start: { confirm: null, done: "Line started", when: ["stopped"] },
  stop: { confirm: "Stop the line? Capture and inspection stop until it is started again.", done: "Line stopped",
    when: ["starting", "running", "paused"] },
  pause: { confirm: null, done: "Inspection paused", when: ["running"] },
  resume: { confirm: null, done: "Inspection resumed", when: ["paused"] },
};
const LINE_HINTS = {
  starting: "Line starting…",
  running: "Line running. Pause stops judging; Stop stops the camera too.",
  paused: "Inspection paused. Resume to judge parts again.",
  stopped: "Line stopped. Start to run it.",
};

function updateLineButtons() {
  const line = state.status ? state.status.state : null;
  document.querySelectorAll("[data-command]").forEach((button) => {
    const fits = LINE_COMMANDS[button.dataset.command].when.includes(line);
    button.disabled = !hasRole(button.dataset.needs) || !fits;
  });
  $("line-hint").textContent = LINE_HINTS[line] || "Waiting for the line's status…";
}

function wireControls() {
  document.querySelectorAll("[data-command]").forEach((button) => {
    button.addEventListener("click", async () => {
      const command = LINE_COMMANDS[button.dataset.command];
      if (command.confirm && !(await confirmAction("Stop line", command.confirm))) return;
      await sendCommand(`/line/${button.dataset.command}`, undefined, command.done);
    });
  });

  $("threshold-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = Number($("threshold-input").value);
    if (!Number.isFinite(value) || value <= 0) {
      showMessage("Enter a threshold greater than 0.", "bad");
      return;
    }
    const current = state.status ? fmtThreshold(state.status.threshold) : "?";
    const ok = await confirmAction("Change threshold",
      `Change the defect threshold from ${current} to ${value}? Parts scoring above it are rejected.`);
    if (!ok) { showMessage("Threshold unchanged.", ""); return; }
    await sendCommand("/inspection/threshold", { threshold: value }, `Threshold set to ${value}`);
  });

  $("threshold-reset").addEventListener("click", async () => {
    const ok = await confirmAction("Reset threshold", "Go back to the threshold calibrated with the model?");
    if (ok) await sendCommand("/inspection/threshold/reset", undefined, "Threshold reset");
  });

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("login-error").textContent = "";
    try {
      await login($("login-key").value.trim());
      $("login-key").value = "";
    } catch (err) {
      sessionStorage.removeItem(KEY_STORAGE);
      $("login-error").textContent = err.status === 401 || err.message === "unauthorized"
        ? "That key was not accepted." : `Cannot sign in: ${err.message}`;
    }
  });

  $("logout").addEventListener("click", () => logout(""));

  document.querySelectorAll("[data-tab]").forEach((button) => {
    button.addEventListener("click", () => showScreen(button.dataset.tab));
  });
  window.addEventListener("hashchange", () => {
    if (state.key && location.hash.slice(1) !== currentScreen) showScreen(location.hash.slice(1));
  });
}

async function loadStation() {
  const config = await (await api("/config")).json();
  if (config.line) $("station").textContent = `${config.line.line_id} / ${config.line.station_id}`;
}

document.addEventListener("DOMContentLoaded", () => {
  wireControls();
  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (saved) login(saved).catch(() => logout(""));
});
