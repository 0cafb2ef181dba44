// Models screen: the models on the box, their figures side by side, upload (sha256 computed in the
// browser), activate and roll back. Changing models needs the admin role; the server enforces it too.
// The Shadow card: an admin runs an inactive model in the shadow of the active one (POST /shadow) for a
// number of parts; the card (GET /shadow, polled every SHADOW_POLL_MS while the screen is shown) shows the
// progress, the agreement, each kind of disagreement and the parts they disagreed on with the candidate's
// view; Stop ends it early (POST /shadow/stop) and Promote is the ordinary activation of the candidate.
"use strict";

(() => {
  const BASE_FIELDS = new Set(["id", "name", "version", "sha256", "size_bytes", "created_at", "active",
    "rollback_target"]);
  const selected = new Set();
  let models = [];
  let candidateId = null;  // the model a teach job just built (Teach card's "Show the candidate model")
  const SHADOW_POLL_MS = 1500;
  let shadow = null;  // GET /shadow: null before the first shadow run on this station
  let shadowJson = "";
  let shadowTimer = null;
  let shadowBusy = false;  // a shadow command in flight: its own reload follows, the poll waits
  const shadowThumbs = new Map();  // frame id -> object URL of the candidate's view
  const shadowItems = new Map();  // frame id -> its <figure> in the disagreement list
  let shadowKey = "";  // which run the cached items belong to

  // A {before, after} pair (e.g. teach.false_reject_rate_taught) is one figure, shown as "before → after".
  const isBeforeAfter = (value) => value && typeof value === "object" && !Array.isArray(value) &&
    "before" in value && "after" in value && Object.keys(value).length === 2;

  // Nested figures (e.g. teach.threshold) as flat "dotted.key" -> value pairs.
  function flatten(value, prefix, out) {
    if (isBeforeAfter(value)) {
      out[prefix] = value;
    } else if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [key, inner] of Object.entries(value)) flatten(inner, prefix ? `${prefix}.${key}` : key, out);
    } else if (prefix) {
      out[prefix] = value;
    }
    return out;
  }

  // Whatever a model entry carries beyond the registry's own fields (metrics, figures, ...).
  function figures(model) {
    const extra = {};
    for (const [key, value] of Object.entries(model)) {
      if (!BASE_FIELDS.has(key) && value !== null && value !== undefined) extra[key] = value;
    }
    return flatten(extra, "", {});
  }

  function fmtValue(value) {
    if (value === null || value === undefined) return "—";
    if (isBeforeAfter(value)) return `${fmtValue(value.before)} → ${fmtValue(value.after)}`;
    if (typeof value === "number") return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(4)));
    if (Array.isArray(value)) return value.map(fmtValue).join(", ");
    return String(value);
  }

  // "teach.false_reject_rate_taught" -> "false reject rate taught" (the full key is in the comparison).
  const shortKey = (key) => key.split(".").slice(-1)[0].replace(/_/g, " ");

  function fmtBytes(bytes) {
    if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
    if (bytes >= 1 << 10) return `${(bytes / (1 << 10)).toFixed(1)} KiB`;
    return `${bytes} B`;
  }

  function message(text, kind) {
    $("models-message").textContent = text;
    $("models-message").className = "message " + (kind || "");
  }

  async function load() {
    models = await (await api("/models")).json();
    for (const id of Array.from(selected)) if (!models.some((m) => m.id === id)) selected.delete(id);
    render();
  }

  function render() {
    const rows = $("model-rows");
    rows.replaceChildren(...models.map(renderRow));
    $("models-compare").disabled = selected.size < 2;
    // Roll back only when there is a model to go back to (the API marks it `rollback_target`), named beside it.
    const target = models.find((m) => m.rollback_target);
    $("models-rollback").hidden = $("models-rollback-note").hidden = !hasRole("admin");
    $("models-rollback").disabled = !target;
    $("models-rollback-note").textContent = target
      ? `to ${target.name} ${target.version}` : "Nothing to roll back to";
    if (!$("compare-card").hidden) renderCompare();
    renderShadow();
  }

  function renderRow(model) {
    // Before/after figures first: they are what an admin weighs before activating a taught model.
    const extra = Object.entries(figures(model)).sort(([, a], [, b]) => isBeforeAfter(b) - isBeforeAfter(a));
    const summary = extra.slice(0, 3).map(([key, value]) => `${shortKey(key)}: ${fmtValue(value)}`).join(" · ");
    const pick = el("input", { type: "checkbox", checked: selected.has(model.id), testid: "model-select",
      ariaLabel: `Compare ${model.name} ${model.version}` });
    pick.addEventListener("change", () => {
      if (pick.checked) selected.add(model.id); else selected.delete(model.id);
      $("models-compare").disabled = selected.size < 2;
    });
    const actions = el("td", { className: "actions" });
    if (model.active) {
      actions.append(el("span", { className: "pill pill-ok", testid: "model-active" }, "active"));
    } else if (hasRole("admin")) {
      const button = el("button", { className: "btn btn-small btn-primary", testid: "model-activate" }, "Activate");
      button.addEventListener("click", () => activate(model));
      const inShadow = el("button", { className: "btn btn-small", testid: "model-shadow",
        title: "Judge the next parts with this model beside the active one, without deciding anything" },
      "Run in shadow");
      inShadow.addEventListener("click", () => startShadow(model, inShadow));
      actions.append(button, inShadow);
    }
    const className = [model.active ? "active" : "", model.id === candidateId ? "candidate" : ""].join(" ").trim();
    return el("tr", { dataset: { modelId: model.id }, testid: "model-row", className },
      el("td", {}, pick),
      el("td", { className: "strong" }, `${model.name} ${model.version}`),
      el("td", { className: "mono" }, model.id),
      el("td", { className: "mono", title: model.sha256 }, model.sha256.slice(0, 12) + "…"),
      el("td", {}, fmtBytes(model.size_bytes)),
      el("td", {}, fmtTime(model.created_at)),
      el("td", { className: "small", testid: "model-figures" },
        summary + (extra.length > 3 ? ` · +${extra.length - 3} more` : "") || "—"),
      actions);
  }

  function renderCompare() {
    const chosen = models.filter((m) => selected.has(m.id));
    const flat = chosen.map((m) => ({
      version: m.version, added: fmtTime(m.created_at), size: fmtBytes(m.size_bytes),
      sha256: m.sha256.slice(0, 12) + "…", active: m.active ? "yes" : "no", ...figures(m),
    }));
    const keys = [];
    for (const entry of flat) for (const key of Object.keys(entry)) if (!keys.includes(key)) keys.push(key);
    const head = el("tr", {}, el("th", {}, ""), ...chosen.map((m) => el("th", {}, `${m.name} ${m.version}`)));
    const body = keys.map((key) => {
      const values = flat.map((entry) => fmtValue(entry[key]));
      const differs = new Set(values).size > 1;
      return el("tr", { className: differs ? "differs" : "", testid: "compare-row", dataset: { key } },
        el("th", { scope: "row" }, key), ...values.map((value) => el("td", {}, value)));
    });
    $("compare-table").replaceChildren(el("thead", {}, head), el("tbody", {}, body));
  }

  // Bring a model's row into view and mark it (a candidate a teach job built), and pick it and the active
  // model for the side-by-side comparison.
  async function showModel(modelId) {
    if (!models.some((m) => m.id === modelId)) await load();
    candidateId = modelId;
    selected.add(modelId);
    const active = models.find((m) => m.active);
    if (active) selected.add(active.id);
    render();
    const row = document.querySelector(`[data-testid=model-row][data-model-id="${CSS.escape(modelId)}"]`);
    if (row) row.scrollIntoView({ behavior: "smooth", block: "center" });
  }

  async function activate(model) {
    const ok = await confirmAction("Activate model",
      `Activate ${model.name} ${model.version} (${model.id})? The line swaps to it without stopping, and the ` +
      "threshold goes back to the new model's calibrated one.");
    if (!ok) return;
    await change(`/models/${encodeURIComponent(model.id)}/activate`, `Activated ${model.name} ${model.version}`);
  }

  async function rollback() {
    const target = models.find((m) => m.rollback_target);
    const name = target ? ` ${target.name} ${target.version} (${target.id})` : "";
    const ok = await confirmAction("Roll back model",
      `Go back to the previously active model${name}? The threshold goes back to that model's calibrated one.`);
    if (ok) await change("/models/rollback", "Rolled back");
  }

  async function change(path, done) {
    try {
      const result = await (await api(path, { method: "POST" })).json();
      message(result.message || done, "ok");
    } catch (err) {
      if (err.status !== 401) message(`Refused: ${err.message}`, "bad");
    }
    await load();
    refreshStatus().catch(() => {});
  }

  // ---- shadow mode ------------------------------------------------------------------------------------
  function shadowMessage(text, kind) {
    $("shadow-message").textContent = text;
    $("shadow-message").className = "message " + (kind || "");
  }

  const modelName = (id) => {
    const model = models.find((m) => m.id === id);
    return model ? `${model.name} ${model.version}` : id;
  };

  async function loadShadow(force = false) {
    const next = await (await api("/shadow")).json();
    const json = JSON.stringify(next);
    shadow = next;
    if (force || json !== shadowJson) {
      shadowJson = json;
      renderShadow();
    }
  }

  function renderShadow() {
    const status = shadow;
    const pill = $("shadow-state");
    pill.hidden = !status;
    $("shadow-job").hidden = !status;
    $("shadow-empty").hidden = !!status;
    if (!status) { forgetShadowThumbs(); return; }
    const running = status.state === "running";
    pill.textContent = status.state;
    pill.className = "pill pill-small " + ({ running: "pill-running", done: "pill-ok", stopped: "pill-paused",
      failed: "pill-stopped" }[status.state] || "pill-unknown");
    const candidate = models.find((m) => m.id === status.model_id);
    const job = $("shadow-job");
    job.dataset.state = status.state;
    job.dataset.modelId = status.model_id;
    const threshold = status.candidate_threshold === null || status.candidate_threshold === undefined
      ? "" : ` · threshold ${fmtThreshold(status.candidate_threshold)}`;
    $("shadow-title").textContent = `Candidate ${modelName(status.model_id)} (${status.model_id})${threshold}` +
      (candidate && candidate.active ? " · now active" : "");
    $("shadow-progress").max = status.target;
    $("shadow-progress").value = Math.min(status.compared, status.target);
    $("shadow-progress-text").textContent = `${status.compared} of ${status.target} compared · ${status.state}`;
    $("shadow-agreement").textContent = status.compared
      ? `${(100 * status.agreed / status.compared).toFixed(1)} % (${status.agreed} of ${status.compared})` : "—";
    $("shadow-candidate-ng").textContent = String(status.candidate_ng_active_ok);
    $("shadow-candidate-ok").textContent = String(status.candidate_ok_active_ng);
    $("shadow-skipped").textContent = String(status.skipped);
    $("shadow-error").hidden = !status.error;
    $("shadow-error").textContent = status.error ? `Shadow failed: ${status.error}` : "";
    $("shadow-stop").hidden = !running || !hasRole("admin");
    $("shadow-promote").hidden = !hasRole("admin") || !candidate || candidate.active ||
      !["done", "stopped"].includes(status.state);
    renderDisagreements(status);
  }

  function forgetShadowThumbs() {
    for (const url of shadowThumbs.values()) URL.revokeObjectURL(url);
    shadowThumbs.clear();
    shadowItems.clear();
    $("shadow-list").replaceChildren();
  }

  // The most recent disagreements first; each figure is kept across polls (its view fetched once, with the key).
  function renderDisagreements(status) {
    const key = `${status.model_id}|${status.target}`;
    if (key !== shadowKey) { forgetShadowThumbs(); shadowKey = key; }
    const wanted = new Set(status.disagreements.map((d) => d.frame_id));
    for (const [frameId, item] of Array.from(shadowItems)) {
      if (wanted.has(frameId)) continue;
      shadowItems.delete(frameId);
      item.remove();
      if (shadowThumbs.has(frameId)) { URL.revokeObjectURL(shadowThumbs.get(frameId)); shadowThumbs.delete(frameId); }
    }
    $("shadow-list").replaceChildren(...status.disagreements.map((d) => shadowItems.get(d.frame_id) || disagreementItem(d)));
    const total = status.candidate_ng_active_ok + status.candidate_ok_active_ng;
    $("shadow-disagreement-count").textContent = total > status.disagreements.length
      ? `(the ${status.disagreements.length} most recent of ${total})` : `(${total})`;
    $("shadow-list-empty").hidden = status.disagreements.length > 0;
  }

  function verdictLine(who, verdict, score, threshold) {
    return el("span", {}, `${who}: `,
      el("span", { className: "shadow-verdict", dataset: { verdict } }, verdict),
      ` ${fmtScore(score)} (threshold ${fmtThreshold(threshold)})`);
  }

  function disagreementItem(d) {
    const img = el("img", { alt: `The candidate's view of frame ${d.frame_id}`, testid: "shadow-thumb", loading: "lazy" });
    const item = el("figure", { className: "shadow-disagreement", testid: "shadow-disagreement",
      dataset: { frameId: String(d.frame_id), active: d.active_verdict, candidate: d.candidate_verdict } },
    img,
    el("figcaption", {},
      el("strong", { testid: "shadow-frame" }, `Frame ${d.frame_id}`),
      el("span", { className: "muted" }, new Date(d.captured_at * 1000).toLocaleTimeString()),
      el("span", { testid: "shadow-active" },
        verdictLine("Line", d.active_verdict, d.active_score, d.active_threshold)),
      el("span", { testid: "shadow-candidate" },
        verdictLine("Candidate", d.candidate_verdict, d.candidate_score, d.candidate_threshold))));
    api(`/shadow/disagreements/${encodeURIComponent(d.frame_id)}.jpg`)
      .then((response) => response.blob())
      .then((blob) => {
        if (shadowItems.get(d.frame_id) !== item) return;  // dropped from the list meanwhile
        const url = URL.createObjectURL(blob);
        shadowThumbs.set(d.frame_id, url);
        img.src = url;
      })
      .catch(() => { img.alt = `Frame ${d.frame_id}: no view kept`; });
    shadowItems.set(d.frame_id, item);
    return item;
  }

  // A shadow command (or the promotion); the reason of a refusal goes in the card, then a fresh status.
  async function shadowCommand(path, options, done) {
    shadowBusy = true;
    try {
      const result = await (await api(path, options)).json();
      shadowMessage(result.message || done, "ok");
      return true;
    } catch (err) {
      if (err.status !== 401) shadowMessage(`Refused: ${err.message}`, "bad");
      return false;
    } finally {
      shadowBusy = false;
      await loadShadow(true).catch(() => {});
    }
  }

  async function startShadow(model, button) {
    const parts = Number($("shadow-parts").value);
    if (!Number.isInteger(parts) || parts < 1 || parts > 100000) {
      shadowMessage("Compare a whole number of parts from 1 to 100000.", "bad");
      return;
    }
    button.disabled = true;
    try {
      await shadowCommand("/shadow", { method: "POST", json: { model_id: model.id, parts } },
        `${model.name} ${model.version} judges the next ${parts} parts in the shadow`);
    } finally {
      button.disabled = false;
    }
    document.querySelector("[data-testid=shadow-card]").scrollIntoView({ behavior: "smooth", block: "nearest" });
  }

  async function stopShadow() {
    if (!shadow) return;
    $("shadow-stop").disabled = true;
    try {
      await shadowCommand("/shadow/stop", { method: "POST" }, `Shadow of ${modelName(shadow.model_id)} stopped`);
    } finally {
      $("shadow-stop").disabled = false;
    }
  }

  async function promote() {
    if (!shadow) return;
    const model = models.find((m) => m.id === shadow.model_id);
    if (!model) return;
    const agreement = shadow.compared
      ? ` In the shadow it agreed with the line on ${shadow.agreed} of ${shadow.compared} parts ` +
        `(it would have rejected ${shadow.candidate_ng_active_ok} the line passed, and passed ` +
        `${shadow.candidate_ok_active_ng} the line rejected).` : "";
    const ok = await confirmAction("Promote model",
      `Activate ${model.name} ${model.version} (${model.id})?${agreement} The line swaps to it without stopping, ` +
      "and the threshold goes back to the new model's calibrated one.");
    if (!ok) return;
    const done = await shadowCommand(`/models/${encodeURIComponent(model.id)}/activate`, { method: "POST" },
      `Promoted ${model.name} ${model.version}`);
    if (done) {
      await load().catch(() => {});
      refreshStatus().catch(() => {});
    }
  }

  function pollShadow() {
    if (!shadowBusy) {
      loadShadow().catch((err) => { if (err.status !== 401) shadowMessage(`Cannot read the shadow: ${err.message}`, "bad"); });
    }
  }

  // crypto.subtle exists only in a secure context (HTTPS, or localhost); elsewhere the user pastes it.
  const canHash = () => window.isSecureContext && window.crypto && window.crypto.subtle;

  async function fileChosen() {
    const file = $("upload-file").files[0];
    if (!file) return;
    if (!canHash()) return;
    $("upload-hint").textContent = `Computing the sha256 of ${file.name}…`;
    const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
    $("upload-sha").value = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
    $("upload-hint").textContent = `sha256 computed in this browser from ${file.name} (${fmtBytes(file.size)}). ` +
      "If the model's supplier gave you one, check that it matches.";
  }

  async function upload(event) {
    event.preventDefault();
    const file = $("upload-file").files[0];
    const sha = $("upload-sha").value.trim().toLowerCase();
    if (!file || !/^[0-9a-f]{64}$/.test(sha)) {
      message("Choose a file and give its sha256 (64 hex digits).", "bad");
      return;
    }
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("sha256", sha);
    try {
      const model = await (await api("/models", { method: "POST", body: form })).json();
      message(`Uploaded ${model.name} ${model.version} as ${model.id}. Activate it to use it.`, "ok");
      $("upload-form").reset();
      uploadHint();
    } catch (err) {
      if (err.status !== 401) message(`Upload refused: ${err.message}`, "bad");
    }
    await load();
  }

  function uploadHint() {
    $("upload-hint").textContent = canHash()
      ? "The sha256 is computed in this browser when you choose the file."
      : "This page is not in a secure context (plain HTTP to another host), so the browser cannot compute " +
        "the sha256: paste the one that came with the model.";
    $("upload-sha").readOnly = false;
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("models-compare").addEventListener("click", () => {
      $("compare-card").hidden = false;
      renderCompare();
      $("compare-card").scrollIntoView({ behavior: "smooth", block: "nearest" });
    });
    $("models-rollback").addEventListener("click", rollback);
    $("shadow-stop").addEventListener("click", () => stopShadow().catch((err) => shadowMessage(err.message, "bad")));
    $("shadow-promote").addEventListener("click", () => promote().catch((err) => shadowMessage(err.message, "bad")));
    $("upload-file").addEventListener("change", () => fileChosen().catch((err) => message(err.message, "bad")));
    $("upload-form").addEventListener("submit", upload);
    uploadHint();
  });

  registerScreen("models", {
    show() {
      message("", "");
      load().catch((err) => message(`Cannot list models: ${err.message}`, "bad"));
      shadowMessage("", "");
      shadowJson = "";
      loadShadow(true).catch((err) => shadowMessage(`Cannot read the shadow: ${err.message}`, "bad"));
      shadowTimer = shadowTimer || setInterval(pollShadow, SHADOW_POLL_MS);
      RolloutCard.start(() => load().catch(() => {}));  // a fleet release swapped the model
      TeachCard.start({
        modelsChanged: () => load().catch(() => {}),
        showModel: (id) => showModel(id).catch((err) => message(err.message, "bad")),
      });
    },
    hide() {
      RolloutCard.stop();
      TeachCard.stop();
      clearInterval(shadowTimer);
      shadowTimer = null;
    },
  });
})();
