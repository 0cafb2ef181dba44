// Build a captured product's model on the station (the "Learn a new product" card, Recipes screen).
// When a capture is done an operator builds its model here (POST /capture/build: the build template, ONNX
// Runtime and numpy, at low priority while the line judges). GET /capture/build is polled while the screen
// is shown: progress, then the check on the captures held back from fitting (false-reject rate, a histogram
// of their scores against the threshold, the least normal ones) and the next steps for an admin: try the
// model in the shadow (POST /shadow) or fill the recipe form with it. recipes.js drives it through
// `window.productBuild` (show, hide, offer).
"use strict";

(() => {
  const SVG = "http://www.w3.org/2000/svg";
  let build = null;  // GET /capture/build: null before the first build
  let buildJson = "";
  let offered = null;  // the finished capture whose product can be built

  function buildMessage(text, kind) {
    $("build-message").textContent = text;
    $("build-message").className = "message " + (kind || "");
  }

  async function load(force = false) {
    const next = await (await api("/capture/build")).json();
    const json = JSON.stringify(next);
    build = next;
    if (force || json !== buildJson) {
      buildJson = json;
      render();
    }
  }

  function render() {
    const canBuild = !!offered && hasRole("operator") && !(build && build.state === "running");
    $("build-start").hidden = !offered;
    $("build-start").disabled = !canBuild;
    $("build-start").title = hasRole("operator") ? "" : "Needs the operator role";
    $("build-job").hidden = !build;
    if (!build) return;
    $("build-job").dataset.state = build.state;
    const running = build.state === "running";
    $("build-progress").hidden = !running;
    $("build-progress").max = Math.max(1, build.total);
    $("build-progress").value = build.done;
    $("build-progress-text").textContent = running
      ? `Building ${build.product}: ${build.stage} ${build.done} of ${build.total} · ${build.seconds} s`
      : `${build.product}: ${build.state} after ${build.seconds} s`;
    $("build-error").hidden = build.state !== "failed";
    $("build-error").textContent = build.error ? `Build failed: ${build.error}` : "";
    $("build-result").hidden = build.state !== "done";
    if (build.state === "done") renderResult();
  }

  function renderResult() {
    const held = build.held_back_scores.length;
    const rejected = Math.round(build.false_reject_rate * held);
    $("build-summary").textContent =
      `Model ${build.model_id}: fitted on ${build.fit_images} parts; of the ${held} good parts held back it ` +
      `would reject ${rejected} (${(100 * build.false_reject_rate).toFixed(1)} %) at threshold ` +
      `${build.threshold.toPrecision(4)}.` + (build.head_choice ? ` Head ${build.head_choice}.` : "");
    drawHistogram($("build-histogram"), build.held_back_scores, build.threshold);
    $("build-worst").replaceChildren(...build.worst.map(worstItem));
  }

  // Bars of the held-back scores (10 bins up to a little past the threshold) and the threshold line.
  function drawHistogram(svg, scores, threshold) {
    const width = 320, height = 90, bins = 10;
    const top = Math.max(threshold * 1.1, ...scores) || 1;
    const counts = new Array(bins).fill(0);
    for (const s of scores) counts[Math.min(bins - 1, Math.floor((s / top) * bins))] += 1;
    const most = Math.max(1, ...counts);
    const node = (tag, attrs) => {
      const n = document.createElementNS(SVG, tag);
      for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
      return n;
    };
    const bars = counts.map((count, i) => node("rect", {
      x: (i * width) / bins + 1, y: height - (count / most) * (height - 12), width: width / bins - 2,
      height: (count / most) * (height - 12), class: "build-bar", "data-count": count,
    }));
    const x = (threshold / top) * width;
    const line = node("line", { x1: x, x2: x, y1: 0, y2: height, class: "build-threshold" });
    const label = node("text", { x: Math.min(x + 4, width - 70), y: 10, class: "build-threshold-label" });
    label.textContent = "threshold";
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("aria-label", `Scores of ${scores.length} held-back good parts against the threshold`);
    svg.replaceChildren(...bars, line, label);
  }

  function worstItem(entry) {
    const img = el("img", { alt: `Held-back part ${entry.image}`, loading: "lazy" });
    api(`/capture/images/${encodeURIComponent(entry.image)}`)
      .then((response) => response.blob())
      .then((blob) => { img.src = URL.createObjectURL(blob); })
      .catch(() => { img.alt = `${entry.image}: no image`; });
    return el("figure", { className: "capture-image", testid: "build-worst-image", dataset: { image: entry.image } },
      img, el("figcaption", {}, `${entry.image} · ${entry.score.toPrecision(4)}`));
  }

  async function command(path, options, done) {
    try {
      const result = await (await api(path, options)).json();
      buildMessage(result.message || done, "ok");
    } catch (err) {
      if (err.status !== 401) buildMessage(`Refused: ${err.message}`, "bad");
    } finally {
      await load(true).catch(() => {});
    }
  }

  async function start() {
    if (!offered) return;
    $("build-start").disabled = true;
    await command("/capture/build", { method: "POST", json: { product: offered.product } },
      `Building the model of ${offered.product}`);
  }

  async function shadow() {
    if (!build || !build.model_id) return;
    await command("/shadow", { method: "POST", json: { model_id: build.model_id } },
      `${build.model_id} judges the next parts in the shadow (Models screen)`);
  }

  function fillRecipe() {
    if (!build || !build.model_id) return;
    $("recipe-name-input").value = build.product;
    $("recipe-name-input").dispatchEvent(new Event("input"));
    const select = $("recipe-model");
    if (!Array.from(select.options).some((o) => o.value === build.model_id)) {
      select.append(el("option", { value: build.model_id, textContent: build.model_id }));
    }
    select.value = build.model_id;
    $("recipe-name-input").scrollIntoView({ block: "center" });
    buildMessage(`The recipe form holds ${build.product} with its new model: check the ROI and threshold, then save.`, "ok");
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("build-start").addEventListener("click", start);
    $("build-shadow").addEventListener("click", shadow);
    $("build-recipe").addEventListener("click", fillRecipe);
  });

  window.productBuild = {
    show() { buildMessage("", ""); buildJson = ""; return load(true); },
    poll() { return load(); },
    offer(captureStatus) {  // the finished capture (or null): its product is what "Build" builds
      offered = captureStatus && captureStatus.state === "done" ? captureStatus : null;
      render();
    },
  };
})();
