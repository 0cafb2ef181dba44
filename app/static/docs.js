// Renders /openapi.json as a readable list of endpoints, without Swagger UI (which would need a CDN).
"use strict";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function resolve(schema, spec) {
  if (schema && schema.$ref) return spec.components.schemas[schema.$ref.split("/").pop()] || schema;
  return schema;
}

function renderOperation(path, method, op, spec) {
  const summary = el("summary", {}, el("span", { class: `method ${method}` }, method.toUpperCase()),
    el("span", { class: "path" }, path), el("span", { class: "muted" }, op.summary || ""));
  const body = el("div", { class: "body" });
  if (op.description) body.append(el("p", {}, op.description));
  const params = op.parameters || [];
  if (params.length) {
    const table = el("table", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "in"), el("th", {}, "type"),
      el("th", {}, "required")));
    for (const p of params) {
      const schema = p.schema || {};
      const type = schema.type || (schema.anyOf || []).map((s) => s.type || s.format).join(" | ");
      table.append(el("tr", {}, el("td", {}, p.name), el("td", {}, p.in), el("td", {}, type || ""),
        el("td", {}, p.required ? "yes" : "")));
    }
    body.append(table);
  }
  const content = op.requestBody && op.requestBody.content;
  if (content) {
    for (const [media, item] of Object.entries(content)) {
      body.append(el("p", {}, `Body (${media}):`),
        el("pre", {}, JSON.stringify(resolve(item.schema, spec), null, 2)));
    }
  }
  const codes = Object.entries(op.responses || {}).map(([code, r]) => `${code}: ${r.description || ""}`);
  body.append(el("p", { class: "muted" }, "Responses — " + codes.join(" · ")));
  return el("details", { class: "op", "data-testid": "operation" }, summary, body);
}

async function main() {
  const target = document.getElementById("endpoints");
  try {
    const spec = await (await fetch("/openapi.json")).json();
    target.textContent = "";
    target.append(el("h1", {}, `${spec.info.title} ${spec.info.version}`));
    for (const [path, methods] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(methods)) target.append(renderOperation(path, method, op, spec));
    }
  } catch (err) {
    target.textContent = `Cannot load /openapi.json: ${err}`;
  }
}

document.addEventListener("DOMContentLoaded", main);
