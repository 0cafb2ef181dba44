// Fleet rollout card on the Models screen: the signed releases this station heard about and how each ended
// (GET /fleet/rollout, docs/FLEET_ROLLOUT.md). Read-only: releases arrive over MQTT, never from the panel.
"use strict";

const RolloutCard = (() => {
  const POLL_MS = 5000;
  const OUTCOME_PILL = {
    activated: "pill-ok", staged: "pill-ok", waiting: "pill-paused", installing: "pill-paused",
    refused: "pill-stopped", failed: "pill-stopped", rolled_back: "pill-stopped",
  };
  let timer = null;
  let shownModel;  // the model id of the last view: a release that swaps it refreshes the models table
  let onModelChange = () => {};

  function summary(view) {
    const model = view.model_version ? `model version ${view.model_version}` : "no model";
    if (!view.enabled) return `Off (rollout.enabled is false) · station ${view.station_id} · ${model}`;
    const newest = view.newest_release_at ? ` · newest release acted on ${fmtTime(view.newest_release_at)}` : "";
    return `On · station ${view.station_id} · ${model}${newest}`;
  }

  function renderRow(release) {
    const pill = OUTCOME_PILL[release.outcome] || "pill-unknown";
    return el("tr", { testid: "rollout-row", dataset: { outcome: release.outcome } },
      el("td", { className: "mono" }, release.release_id || "(unnamed)"),
      el("td", {}, release.model_version || "—"),
      el("td", {}, el("span", { className: `pill ${pill}`, testid: "rollout-outcome" }, release.outcome.replace("_", " "))),
      el("td", { className: "small clip", title: release.reason }, release.reason || "—"),
      el("td", { className: "small" }, fmtTime(release.first_seen)),
      el("td", { className: "small" }, fmtTime(release.updated)));
  }

  function render(view) {
    $("rollout-summary").textContent = summary(view);
    const keys = view.trusted_key_fingerprints;
    $("rollout-keys").textContent = keys.length
      ? "Trusted signing keys (sha256): " + keys.map((k) => k.slice(0, 16) + "…").join(", ")
      : (view.enabled ? "No trusted signing key." : "");
    $("rollout-keys").title = keys.join("\n");
    $("rollout-rows").replaceChildren(...view.releases.map(renderRow));
    $("rollout-empty").hidden = view.releases.length > 0;
  }

  async function load() {
    try {
      const view = await (await api("/fleet/rollout")).json();
      render(view);
      if (shownModel !== undefined && view.model_id !== shownModel) onModelChange();
      shownModel = view.model_id;
    } catch (err) {
      if (err.status !== 401) $("rollout-summary").textContent = `Cannot read the rollout state: ${err.message}`;
    }
  }

  return {
    start(modelChanged) {
      onModelChange = modelChanged;
      shownModel = undefined;
      load();
      timer = timer || setInterval(load, POLL_MS);
    },
    stop() { clearInterval(timer); timer = null; },
  };
})();
