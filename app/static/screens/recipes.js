// Recipes screen: the products this station switches between (GET /recipes). Operators prepare a recipe
// (load its model ahead of a product change) and switch to it; admins save and delete recipes. The runtime
// refuses (409, reason in `message`) what it cannot do, e.g. deleting the active recipe; the reason is shown
// in the card. The same commands also arrive from the PLC (MQTT / OPC UA), so the list is polled while shown.
"use strict";

(() => {
  const POLL_MS = 3000;
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
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) {
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

  function poll() {
    if (!busy) load().catch((err) => { if (err.status !== 401) message(`Cannot list recipes: ${err.message}`, "bad"); });
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("recipe-form").addEventListener("submit", save);
    $("recipe-name-input").addEventListener("input", fillRoiChoices);
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
    },
    hide() { clearInterval(timer); timer = null; },
  });
})();
