// Recipes screen: the products this station switches between (GET /recipes). Operators prepare a recipe
// (load its model ahead of a product change) and switch to it; admins save and delete recipes. The runtime
// refuses (409, reason in `message`) what it cannot do, e.g. deleting the active recipe; the reason is shown
// in the card. The same commands also arrive from the PLC (MQTT / OPC UA), so the list is polled while shown.
// The "Learn a new product" card captures good parts of a new product from the camera (POST /capture), shows
// its progress and a contact sheet of the images (GET /capture, polled every CAPTURE_POLL_MS while the screen
// is shown) where an operator strikes bad ones (DELETE /capture/images/{image}), and when done, the folder
// and the `edgeinspect train` command for a plant build; building on the station is product_build.js.
"use strict";

(() => {
  const POLL_MS = 3000;
  const CAPTURE_POLL_MS = 1500;
  const NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;
  let view = { active: null, recipes: [], loaded_models: [] };
  let models = [];
  let shownJson = "";
  let timer = null;
  let busy = false;  // a command in flight: its own reload follows, the poll waits

  function message(text, kind) {
    $("recipes-message").textContent = text;
    $("recipes-message").className = "message " + (kind || "");
  }

  const fmtRoi = (roi) => (roi ? `${roi.x},${roi.y} ${roi.width}×${roi.height}` : "whole frame");

  function modelLabel(modelId) {
    const model = models.find((m) => m.id === modelId);
    return model ? `${model.name} ${model.version}` : modelId;
  }

  async function loadModels() {
    models = await (await api("/models")).json();
    const select = $("recipe-model");
    const chosen = select.value;
    select.replaceChildren(...models.map((m) =>
      el("option", { value: m.id }, `${m.name} ${m.version} (${m.id})${m.active ? " · active" : ""}`)));
    if (models.some((m) => m.id === chosen)) select.value = chosen;
    else if (models.some((m) => m.active)) select.value = models.find((m) => m.active).id;
  }

  async function load(force = false) {
    const next = await (await api("/recipes")).json();
    const json = JSON.stringify(next);
    view = next;
    if (force || json !== shownJson) {
      shownJson = json;
      render();
    }
  }

  function render() {
    $("recipes-active").textContent = view.active || "none";
    $("recipe-rows").replaceChildren(...view.recipes.map(renderRow));
    $("recipes-empty").hidden = view.recipes.length > 0;
    fillRoiChoices();
  }

  function button(label, testid, className, onClick, needs) {
    const node = el("button", { className: `btn btn-small ${className}`, testid, type: "button" }, label);
    if (needs && !hasRole(needs)) {
      node.disabled = true;
      node.title = `Needs the ${needs} role`;
    }
    node.addEventListener("click", onClick);
    return node;
  }

  function renderRow(recipe) {
    const active = recipe.name === view.active;
    const loaded = view.loaded_models.includes(recipe.model_id);
    const actions = el("td", { className: "actions" });
    if (active) {
      actions.append(el("span", { className: "pill pill-ok", testid: "recipe-active" }, "active"));
    } else {
      actions.append(
        button("Prepare", "recipe-prepare", "", () => prepare(recipe), "operator"),
        button("Switch to", "recipe-select", "btn-primary", () => select(recipe), "operator"));
    }
    if (hasRole("admin")) {
      actions.append(
        button("Edit", "recipe-edit", "", () => edit(recipe)),
        button("Delete", "recipe-delete", "btn-stop", () => remove(recipe)));
    }
    const threshold = recipe.threshold === null || recipe.threshold === undefined
      ? el("span", { className: "muted" }, "calibrated") : fmtThreshold(recipe.threshold);
    return el("tr", { testid: "recipe-row", dataset: { recipe: recipe.name, active: String(active) },
      className: active ? "active" : "" },
      el("td", { className: "strong", testid: "recipe-name-cell" }, recipe.name),
      el("td", { title: recipe.model_id, testid: "recipe-model" }, modelLabel(recipe.model_id)),
      el("td", { testid: "recipe-threshold" }, threshold),
      el("td", { testid: "recipe-roi" }, fmtRoi(recipe.roi)),
      el("td", { testid: "recipe-gate-delay" }, `${recipe.gate_delay_ms} ms`),
      el("td", { testid: "recipe-loaded" }, loaded
        ? el("span", { className: "pill pill-ok pill-small" }, "loaded")
        : el("span", { className: "muted" }, "not loaded")),
      actions);
  }

  // POST a recipe command; the runtime's message on success, its reason on a refusal, then a fresh list.
  async function command(path, options, done) {
    busy = true;
    try {
      const result = await (await api(path, options)).json();
      message(result.message || done, "ok");
      return true;
    } catch (err) {
      if (err.status !== 401) message(`Refused: ${err.message}`, "bad");
      return false;
    } finally {
      busy = false;
      await load(true).catch(() => {});
      refreshStatus().catch(() => {});
    }
  }

  async function prepare(recipe) {
    await command(`/recipes/${encodeURIComponent(recipe.name)}/prepare`, { method: "POST" },
      `Recipe ${recipe.name} prepared: its model ${modelLabel(recipe.model_id)} is loaded`);
  }

  async function select(recipe) {
    const ok = await confirmAction("Switch recipe",
      `Switch the line from ${view.active || "no recipe"} to ${recipe.name}? Parts captured from now on are ` +
      `judged with ${modelLabel(recipe.model_id)}, its region of interest and threshold.`);
    if (!ok) return;
    await command(`/recipes/${encodeURIComponent(recipe.name)}/select`, { method: "POST" },
      `Switched to recipe ${recipe.name}`);
  }

  async function remove(recipe) {
    const ok = await confirmAction("Delete recipe", `Delete the recipe ${recipe.name}? This cannot be undone.`);
    if (!ok) return;
    await command(`/recipes/${encodeURIComponent(recipe.name)}`, { method: "DELETE" },
      `Recipe ${recipe.name} deleted`);
  }

  // ---- the admin's form ------------------------------------------------------------------------------
  const existing = () => view.recipes.find((r) => r.name === $("recipe-name-input").value.trim());

  // Where the recipe's region comes from: the one saved with it (when replacing), the station's current
  // one (GET /status), or none (the whole frame).
  function fillRoiChoices() {
    const select = $("recipe-roi");
    const chosen = select.value;
    const saved = existing();
    const current = state.status ? state.status.roi : null;
    const options = [];
    if (saved) options.push(el("option", { value: "keep" }, `as saved: ${fmtRoi(saved.roi)}`));
    if (current) options.push(el("option", { value: "current" }, `station's current: ${fmtRoi(current)}`));
    options.push(el("option", { value: "none" }, "none (whole frame)"));
    select.replaceChildren(...options);
    const values = options.map((o) => o.value);
    select.value = values.includes(chosen) ? chosen : values[0];
  }

  function edit(recipe) {
    $("recipe-name-input").value = recipe.name;
    if (!models.some((m) => m.id === recipe.model_id)) {
      $("recipe-model").append(el("option", { value: recipe.model_id }, `${recipe.model_id} (not on this station)`));
    }
    $("recipe-model").value = recipe.model_id;
    $("recipe-threshold").value = recipe.threshold === null || recipe.threshold === undefined
      ? "" : fmtThreshold(recipe.threshold);
    $("recipe-gate-delay").value = String(recipe.gate_delay_ms);
    $("recipe-roi").value = "";
    fillRoiChoices();
    $("recipe-name-input").focus();
    $("recipe-form").scrollIntoView({ behavior: "smooth", block: "nearest" });
  }

  async function save(event) {
    event.preventDefault();
    const name = $("recipe-name-input").value.trim();
    if (!NAME_RE.test(name)) {
      message("A recipe name is 1 to 64 letters, digits, _ or -.", "bad");
      return;
    }
    const body = { name, model_id: $("recipe-model").value, gate_delay_ms: Number($("recipe-gate-delay").value) };
    if (!body.model_id) { message("Choose a model.", "bad"); return; }
    if (!Number.isInteger(body.gate_delay_ms) || body.gate_delay_ms < 0 || body.gate_delay_ms > 60000) {
      message("The gate delay is a whole number of milliseconds from 0 to 60000.", "bad");
      return;
    }
    const threshold = $("recipe-threshold").value.trim();
    if (threshold !== "") {
      body.threshold = Number(threshold);
      if (!Number.isFinite(body.threshold) || body.threshold <= 0) {
        message("Enter a threshold greater than 0, or leave it empty for the model's calibrated one.", "bad");
        return;
      }
    }
    // A save replaces the recipe whole: keep what this form does not edit.
    const saved = existing();
    const roiChoice = $("recipe-roi").value;
    if (roiChoice === "keep" && saved && saved.roi) body.roi = saved.roi;
    if (roiChoice === "current" && state.status && state.status.roi) body.roi = state.status.roi;
    if (saved && saved.exposure_us !== null && saved.exposure_us !== undefined) body.exposure_us = saved.exposure_us;
    if (saved && saved.gain_db !== null && saved.gain_db !== undefined) body.gain_db = saved.gain_db;
    const ok = await command("/recipes", { method: "POST", json: body },
      `Recipe ${name} ${saved ? "replaced" : "saved"}`);
    if (ok) {
      $("recipe-form").reset();
      fillRoiChoices();
      await loadModels().catch(() => {});
    }
  }


  // ---- learn a new product (capture) -----------------------------------------------------------------
  let capture = null;  // GET /capture: null before the first capture on this station
  let captureJson = "";
  let captureTimer = null;
  let captureBusy = false;  // a capture command in flight: its own reload follows, the poll waits
  let thumbKey = "";  // which capture the cached thumbnails belong to (names restart at 0000 for a new one)
  const thumbs = new Map();  // image name -> object URL
  const sheetItems = new Map();  // image name -> its <figure> on the contact sheet

  function captureMessage(text, kind) {
    $("capture-message").textContent = text;
    $("capture-message").className = "message " + (kind || "");
  }

  // The --data argument of `edgeinspect train`: the folder less `/<product>/train/good`.
  function trainCommand(status) {
    const folder = status.folder.replace(/[\\/]+$/, "");
    const suffix = `/${status.product}/train/good`;
    const data = folder.endsWith(suffix) ? folder.slice(0, -suffix.length) : folder.replace(/\/[^/]*\/train\/good$/, "");
    const quote = (arg) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`);
    return `edgeinspect train --data ${quote(data)} --category ${quote(status.product)}`;
  }

  function forgetThumbs() {
    for (const url of thumbs.values()) URL.revokeObjectURL(url);
    thumbs.clear();
    sheetItems.clear();
    $("capture-sheet").replaceChildren();
  }

  async function loadCapture(force = false) {
    const next = await (await api("/capture")).json();
    const json = JSON.stringify(next);
    capture = next;
    if (force || json !== captureJson) {
      captureJson = json;
      renderCapture();
    }
  }

  function renderCapture() {
    const status = capture;
    const running = !!status && status.state === "running";
    const cancel = $("capture-cancel");
    cancel.disabled = !running || !hasRole("operator");
    cancel.title = hasRole("operator") ? "" : "Needs the operator role";
    const pill = $("capture-state");
    pill.hidden = !status;
    $("capture-job").hidden = !status;
    if (!status) { forgetThumbs(); window.productBuild.offer(null); return; }
    pill.textContent = status.state;
    pill.className = "pill pill-small " + ({ running: "pill-running", done: "pill-ok", cancelled: "pill-paused",
      failed: "pill-stopped" }[status.state] || "pill-unknown");
    $("capture-job").dataset.state = status.state;
    $("capture-title").textContent = `Product ${status.product}`;
    $("capture-progress").max = status.target;
    $("capture-progress").value = Math.min(status.kept, status.target);
    $("capture-progress-text").textContent = `${status.kept} of ${status.target} kept · ${status.state}`;
    $("capture-figures").textContent = `${status.captured} captured · ${status.struck} struck` +
      (status.skipped_frames ? ` · ${status.skipped_frames} frames skipped (the writer could not keep up)` : "");
    $("capture-error").hidden = !status.error;
    $("capture-error").textContent = status.error ? `Capture failed: ${status.error}` : "";
    const finished = status.state === "done";
    $("capture-done").hidden = !finished;
    window.productBuild.offer(status);
    if (finished) {
      $("capture-done-text").textContent =
        `Done: ${status.kept} good parts of ${status.product} in ${status.folder}. Build the model here, or on ` +
        "the plant with:";
      $("capture-train-command").textContent = trainCommand(status);
    }
    renderSheet(status);
  }

  // The contact sheet: one figure per image, kept across polls (its thumbnail is fetched once, with the key).
  function renderSheet(status) {
    const key = `${status.folder}|${status.product}`;
    if (key !== thumbKey) { forgetThumbs(); thumbKey = key; }
    const wanted = new Set(status.images);
    for (const [name, item] of Array.from(sheetItems)) {
      if (wanted.has(name)) continue;
      sheetItems.delete(name);
      item.remove();
      if (thumbs.has(name)) { URL.revokeObjectURL(thumbs.get(name)); thumbs.delete(name); }
    }
    $("capture-sheet").replaceChildren(...status.images.map((name) => sheetItems.get(name) || sheetItem(name)));
    $("capture-sheet-empty").hidden = status.images.length > 0 || status.state !== "running";
  }

  function sheetItem(name) {
    const img = el("img", { alt: `Captured image ${name}`, testid: "capture-thumb", loading: "lazy" });
    api(`/capture/images/${encodeURIComponent(name)}`)
      .then((response) => response.blob())
      .then((blob) => {
        if (sheetItems.get(name) !== item) return;  // struck or a new capture meanwhile
        const url = URL.createObjectURL(blob);
        thumbs.set(name, url);
        img.src = url;
      })
      .catch(() => { img.alt = `${name}: no image`; });
    const item = el("figure", { className: "capture-image", testid: "capture-image", dataset: { image: name } },
      img, el("figcaption", {}, name));
    if (hasRole("operator")) {
      item.append(button("Strike", "capture-strike", "btn-stop", () => strike(name, item)));
    }
    sheetItems.set(name, item);
    return item;
  }

  // POST/DELETE a capture command; the reason of a refusal goes in the card, then a fresh status.
  async function captureCommand(path, options, done) {
    captureBusy = true;
    try {
      const result = await (await api(path, options)).json();
      captureMessage(result.message || done, "ok");
      return true;
    } catch (err) {
      if (err.status !== 401) captureMessage(`Refused: ${err.message}`, "bad");
      return false;
    } finally {
      captureBusy = false;
      await loadCapture(true).catch(() => {});
    }
  }

  async function startCapture(event) {
    event.preventDefault();
    const product = $("capture-product").value.trim();
    const count = Number($("capture-count").value);
    const everyN = Number($("capture-every-n").value);
    if (!NAME_RE.test(product)) {
      captureMessage("A product name is 1 to 64 letters, digits, _ or -.", "bad");
      return;
    }
    if (!Number.isInteger(count) || count < 2 || count > 5000) {
      captureMessage("Keep a whole number of parts from 2 to 5000.", "bad");
      return;
    }
    if (!Number.isInteger(everyN) || everyN < 1 || everyN > 1000) {
      captureMessage("Keep one frame in a whole number from 1 to 1000.", "bad");
      return;
    }
    $("capture-start").disabled = true;
    try {
      await captureCommand("/capture", { method: "POST", json: { product, count, every_n: everyN } },
        `Capturing ${count} parts of ${product}: run good parts past the camera`);
    } finally {
      $("capture-start").disabled = !hasRole("operator");
    }
  }

  async function cancelCapture() {
    if (!capture) return;
    const ok = await confirmAction("Cancel capture",
      `Stop capturing ${capture.product}? The ${capture.kept} images kept so far stay in ${capture.folder}.`);
    if (!ok) return;
    await captureCommand("/capture/cancel", { method: "POST" }, `Capture of ${capture.product} cancelled`);
  }

  async function strike(name, item) {
    item.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    const running = capture && capture.state === "running";
    const ok = await captureCommand(`/capture/images/${encodeURIComponent(name)}`, { method: "DELETE" },
      `Image ${name} struck${running ? ": the capture keeps one more part instead" : ""}`);
    if (!ok) item.querySelectorAll("button").forEach((b) => { b.disabled = !hasRole("operator"); });
  }

  function pollCapture() {
    if (!captureBusy) {
      loadCapture().catch((err) => { if (err.status !== 401) captureMessage(`Cannot read the capture: ${err.message}`, "bad"); });
    }
    window.productBuild.poll().catch(() => {});
  }

  function poll() {
    if (!busy) load().catch((err) => { if (err.status !== 401) message(`Cannot list recipes: ${err.message}`, "bad"); });
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("recipe-form").addEventListener("submit", save);
    $("recipe-name-input").addEventListener("input", fillRoiChoices);
    $("capture-form").addEventListener("submit", startCapture);
    $("capture-cancel").addEventListener("click", cancelCapture);
  });

  registerScreen("recipes", {
    show() {
      message("", "");
      shownJson = "";
      loadModels()
        .catch((err) => message(`Cannot list models: ${err.message}`, "bad"))
        .then(() => load(true))
        .catch((err) => message(`Cannot list recipes: ${err.message}`, "bad"));
      timer = timer || setInterval(poll, POLL_MS);
      captureMessage("", "");
      captureJson = "";
      loadCapture(true).catch((err) => captureMessage(`Cannot read the capture: ${err.message}`, "bad"));
      window.productBuild.show().catch(() => {});
      captureTimer = captureTimer || setInterval(pollCapture, CAPTURE_POLL_MS);
    },
    hide() {
      clearInterval(timer);
      timer = null;
      clearInterval(captureTimer);
      captureTimer = null;
    },
  });
})();
