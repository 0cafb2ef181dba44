// Audit screen (admin): every change to the line, newest first, a page at a time.
"use strict";

(() => {
  const PAGE = 25;
  let offset = 0;
  let total = 0;

  // Numbers to 8 significant digits: 0.68 rather than 0.6799999999999999 from float arithmetic.
  const show = (value) => (value === null || value === undefined ? "—"
    : typeof value === "number" ? String(Number(value.toPrecision(8)))
      : typeof value === "object" ? JSON.stringify(value) : String(value));

  async function load() {
    const page = await (await api(`/audit?limit=${PAGE}&offset=${offset}`)).json();
    total = page.total;
    $("audit-rows").replaceChildren(...page.items.map((entry) => el("tr",
      { testid: "audit-row", className: entry.ok ? "" : "refused" },
      el("td", { className: "nowrap" }, fmtTime(entry.ts)),
      el("td", {}, entry.actor, el("span", { className: "muted small" }, ` ${entry.role}`)),
      el("td", { className: "strong" }, entry.action),
      el("td", { className: "mono small" }, entry.target),
      el("td", { className: "mono small clip", title: show(entry.old_value) }, show(entry.old_value)),
      el("td", { className: "mono small clip", title: show(entry.new_value) }, show(entry.new_value)),
      el("td", { className: entry.ok ? "ok" : "bad", title: entry.message || "" },
        entry.ok ? "ok" : `refused${entry.message ? ": " + entry.message : ""}`))));
    const last = Math.min(offset + PAGE, total);
    $("audit-page").textContent = total ? `${offset + 1}–${last} of ${total}` : "no entries";
    $("audit-prev").disabled = offset === 0;
    $("audit-next").disabled = last >= total;
  }

  const reload = () => load().catch((err) => { $("audit-page").textContent = `Cannot read: ${err.message}`; });

  document.addEventListener("DOMContentLoaded", () => {
    $("audit-prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); reload(); });
    $("audit-next").addEventListener("click", () => { if (offset + PAGE < total) { offset += PAGE; reload(); } });
  });

  registerScreen("audit", { show() { offset = 0; reload(); }, hide() {} });
})();
