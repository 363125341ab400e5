// The side panel of a node: at once its name, gate verdict, level or run state (from the graph), then
// what GET /api/v1/ui/node adds: schema with levels, versions, runs, quality history with links to the
// HTML reports, and purpose-of-use records.
import { enc, getJson } from "./api.js";
import { esc } from "./graph.js";

const pill = (cls, text) => `<span class="pill ${esc(cls)}">${esc(text)}</span>`;
const when = (t) => (t ? esc(String(t).replace("T", " ").replace(/\.\d+/, "").replace("Z", "")) : "–");

export class Panel {
  constructor(app, element) {
    this.app = app;
    this.el = element;
    this.token = 0;
  }

  hide() {
    this.el.hidden = true;
    this.el.replaceChildren();
  }

  open(node) {
    const token = ++this.token;
    this.el.hidden = false;
    this.el.dataset.node = node.id;
    const head = node.kind === "dataset"
      ? (node.withheld ? pill("withheld", "withheld")
        : `gate ${pill(node.gate, node.gate)} level ${pill(node.level || "none", node.level || "unclassified")}`)
      : `latest run ${pill(node.state || "none", node.state || "none")}`;
    this.el.innerHTML =
      `<button class="close" type="button" aria-label="Close">×</button>` +
      `<div class="muted">${esc(node.kind)} · ${esc(node.namespace)}</div>` +
      `<h2 id="panel-title">${esc(node.withheld ? "withheld dataset" : node.name)}</h2>` +
      `<div id="panel-head">${head}</div><div id="panel-body"><p class="muted">loading…</p></div>`;
    this.el.querySelector(".close").addEventListener("click", () => this.hide());
    if (node.withheld) {
      this.el.querySelector("#panel-body").innerHTML =
        `<p>This dataset is above your clearance (${esc(this.app.session?.clearance || "")}); its name, ` +
        `schema and facets are withheld. It stays in the graph so that the graph keeps its shape.</p>`;
      return;
    }
    getJson("/api/v1/ui/node", { kind: node.kind, namespace: node.namespace, name: node.name })
      .then((body) => { if (token === this.token) this.fill(body); })
      .catch((error) => {
        if (token === this.token) this.el.querySelector("#panel-body").innerHTML = `<p class="error">${esc(error.message)}</p>`;
      });
  }

  fill(body) {
    const target = this.el.querySelector("#panel-body");
    target.innerHTML = body.kind === "dataset" ? datasetHtml(body) : jobHtml(body);
    target.dataset.loaded = "true";
    for (const button of target.querySelectorAll("[data-report]")) {
      button.addEventListener("click", () => this.app.openReport(button.dataset.report, button.dataset.title));
    }
  }
}

function datasetHtml(d) {
  const fieldId = (f) => `datasetField:${d.namespace}:${d.name}:${f}`;
  const rows = d.fields.map((f) =>
    `<tr><td><a href="#/columns?${new URLSearchParams({ nodeId: fieldId(f.name) })}" title="column lineage">${esc(f.name)}</a></td>` +
    `<td class="muted">${esc(f.type || "")}</td><td>${f.level ? pill(f.level, f.level) : "–"}</td>` +
    `<td class="muted">${esc(f.declared || "")}</td></tr>`).join("");
  const reportPath = `/api/v1/reports/datasets/${enc(d.namespace)}/${enc(d.name)}.html`;
  let quality = "<p class='muted'>No gate has validated this dataset.</p>";
  if (d.quality) {
    const points = [...d.quality.points].reverse().map((p) =>
      `<tr><td>${when(p.time)}</td><td>${pill(p.success ? "pass" : "fail", p.success ? "pass" : "fail")}</td>` +
      `<td>${p.passed}/${p.evaluated}</td><td>${p.rowCount ?? "–"}</td>` +
      `<td>${p.parentRunId ? `<button type="button" data-report="/api/v1/reports/runs/${enc(p.parentRunId)}.html" ` +
        `data-title="run ${esc(p.parentRunId)}">run report</button> <a href="#/run/${enc(p.parentRunId)}">run view</a>` : ""}</td></tr>`).join("");
    quality = `<p><button type="button" data-report="${esc(reportPath)}" data-title="quality of ${esc(d.name)}">` +
      `Quality report (charts)</button></p><table class="quality"><tr><th>when</th><th>gate</th><th>passed</th>` +
      `<th>rows</th><th></th></tr>${points}</table>`;
  }
  const versions = d.versions.map((v) => `<tr><td>${when(v.createdAt)}</td><td class="muted">${esc(v.version)}</td></tr>`).join("");
  const runs = d.runs.map((r) =>
    `<tr><td>${when(r.startedAt)}</td><td>${esc(r.job)}</td><td>${r.direction === "INPUT" ? "read" : "wrote"}</td>` +
    `<td>${pill(r.state, r.state)}</td><td><a href="#/run/${enc(r.parentRunId || r.runId)}">run view</a></td></tr>`).join("");
  const uses = d.purposeOfUse.map((u) =>
    `<tr><td>${when(u.at)}</td><td>${esc(u.consumer || u.job)}</td><td>${esc(u.purpose || "–")}</td><td>${u.rows ?? "–"}</td></tr>`).join("");
  const product = d.product
    ? `<p>Product <b>${esc(d.product.product || "")}</b>: audience ${esc(d.product.audience || "–")}, allowed level ` +
      `${esc(d.product.allowedLevel || "–")}, purposes ${esc((d.product.allowedPurposes || d.product.purposes || []).join(", ") || "–")}</p>`
    : "";
  return (d.description ? `<p>${esc(d.description)}</p>` : "") +
    `<h3>Schema (${d.fields.length} columns)</h3><table class="schema"><tr><th>column</th><th>type</th><th>level</th>` +
    `<th>declared</th></tr>${rows}</table>` +
    `<h3>Quality history</h3>${quality}` +
    `<h3>Versions (${d.versionCount ?? d.versions.length})</h3><table>${versions}</table>` +
    `<h3>Runs</h3><table class="runs">${runs}</table>` +
    `<h3>Purpose of use</h3>${product}` +
    (uses ? `<table class="uses"><tr><th>when</th><th>consumer</th><th>purpose</th><th>rows</th></tr>${uses}</table>`
      : "<p class='muted'>No recorded downloads.</p>");
}

function jobHtml(j) {
  const list = (items) => items.map((d) => `<li>${esc(d.namespace)}:${esc(d.name)}</li>`).join("") || "<li class='muted'>none</li>";
  const runs = j.runs.map((r) =>
    `<tr><td>${when(r.startedAt)}</td><td>${pill(r.state, r.state)}</td>` +
    `<td><a href="#/run/${enc(r.parentRunId || r.runId)}">run view</a></td></tr>`).join("");
  return `<h3>Inputs</h3><ul>${list(j.inputs)}</ul><h3>Outputs</h3><ul>${list(j.outputs)}</ul>` +
    `<h3>Latest runs</h3><table class="runs">${runs || "<tr><td class='muted'>none</td></tr>"}</table>`;
}
