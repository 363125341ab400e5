// The run view: GET /api/v1/ui/runs/{runId}, a DAG run's tasks on a timeline with their states, inputs
// and outputs, gate verdicts, links into Airflow (when the service knows Airflow's URL) and to the
// run's quality report.
import { enc, getJson } from "./api.js";
import { esc } from "./graph.js";

const pill = (cls, text) => `<span class="pill ${esc(cls)}">${esc(text)}</span>`;
const ms = (t) => (t ? Date.parse(t) : NaN);

export class RunView {
  constructor(app, container) {
    this.app = app;
    this.container = container;
  }

  async show(runId) {
    const run = await getJson(`/api/v1/ui/runs/${enc(runId)}`);
    const starts = run.tasks.map((t) => ms(t.startedAt)).filter(Number.isFinite);
    const ends = run.tasks.map((t) => ms(t.endedAt || t.startedAt)).filter(Number.isFinite);
    const t0 = Math.min(...starts);
    const span = Math.max(1, Math.max(...ends) - t0);
    const rows = run.tasks.map((t) => {
      const start = ms(t.startedAt);
      const end = ms(t.endedAt || t.startedAt);
      const left = Number.isFinite(start) ? ((start - t0) / span) * 100 : 0;
      const width = Number.isFinite(end) ? Math.max(0.5, ((end - start) / span) * 100) : 0.5;
      const seconds = Number.isFinite(end) && Number.isFinite(start) ? `${((end - start) / 1000).toFixed(1)} s` : "";
      const io = (items) => items.map((d) => esc(d.name)).join(", ") || "–";
      return `<div class="row task" data-job="${esc(t.job)}" data-state="${esc(t.state)}">` +
        `<div><b>${esc(t.taskId || t.job)}</b> ${pill(t.state, t.state)}${t.gate ? ` gate ${pill(t.gate, t.gate)}` : ""}` +
        `${t.airflowUrl ? ` <a href="${esc(t.airflowUrl)}" target="_blank" rel="noopener">Airflow</a>` : ""}</div>` +
        `<div class="track" title="${esc(t.startedAt || "")} → ${esc(t.endedAt || "")} ${seconds}">` +
        `<div class="bar ${esc(t.state)}" style="left:${left}%;width:${width}%"></div></div>` +
        `<div class="io">in: ${io(t.inputs)}<br>out: ${io(t.outputs)}</div></div>`;
    }).join("");
    const dag = run.dag || {};
    this.container.innerHTML =
      `<div class="page"><h1>DAG run ${esc(dag.dagId || "")} ${pill(dag.state || "none", dag.state || "unknown")}</h1>` +
      `<p class="muted">run ${esc(run.runId)}${dag.airflowRunId ? ` · Airflow run ${esc(dag.airflowRunId)}` : ""} · ` +
      `${esc(dag.startedAt || "")} → ${esc(dag.endedAt || "")}</p>` +
      `<p>${run.airflowUrl ? `<a id="airflow-link" href="${esc(run.airflowUrl)}" target="_blank" rel="noopener">Open in Airflow</a> · ` : ""}` +
      `<button type="button" id="run-report">Quality report of this run</button></p>` +
      `<div class="timeline">${rows}</div></div>`;
    this.container.querySelector("#run-report").addEventListener("click", () =>
      this.app.openReport(`/api/v1/reports/runs/${enc(run.runId)}.html`, `quality of run ${run.runId}`));
    this.app.showWithheld(run.withheld);
    this.container.dataset.ready = "run";
    return run;
  }
}
