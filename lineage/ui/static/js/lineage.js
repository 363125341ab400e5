// The lineage graph view: GET /api/v1/ui/graph drawn as dataset and job nodes. A dataset shows its last
// gate verdict (the stripe: green pass, red fail, grey none) and its classification level (the badge);
// a job the state of its latest run (the stripe). Withheld datasets are placeholders marked "withheld".
import { getJson } from "./api.js";
import { GraphView, shortName } from "./graph.js";

export function graphNodes(body) {
  return body.nodes.map((n) => {
    if (n.kind === "dataset") {
      const level = n.withheld ? "withheld" : (n.level || "–");
      return {
        id: n.id, classes: `dataset gate-${n.withheld ? "none" : n.gate}${n.withheld ? " withheld" : ""}`,
        label: n.withheld ? "withheld dataset" : shortName(n.name),
        title: n.withheld
          ? "withheld: above your clearance"
          : `${n.namespace}:${n.name}\nlast gate: ${n.gate}\nlevel: ${n.level || "unclassified"}`,
        badge: n.withheld ? "W" : (n.level || "–"), badgeClass: `lvl-${level}`,
        attrs: ` data-gate="${n.withheld ? "none" : n.gate}" data-level="${level}"`,
        data: n,
      };
    }
    const state = n.state || "none";
    return {
      id: n.id, classes: `job state-${state}`, label: n.name,
      title: `${n.namespace}:${n.name}\nlatest run: ${n.state || "none"}`,
      attrs: ` data-state="${state}"`, data: n,
    };
  });
}

export class LineageView {
  constructor(app, container) {
    this.app = app;
    this.container = container;
  }

  async show({ nodeId, depth, direction }) {
    const query = { nodeId, depth: String(depth), direction };
    let body = await this.app.takePrefetched(query);
    if (!body) {
      performance.mark("ct-graph-requested");
      body = await getJson("/api/v1/ui/graph", query);
    }
    performance.mark("ct-graph-fetched");
    this.container.replaceChildren();
    const title = document.createElement("div");
    title.className = "view-title";
    title.textContent = `${body.nodes.length} nodes around ${nodeId}`;
    this.container.appendChild(title);
    const legend = document.createElement("div");
    legend.className = "legend";
    legend.innerHTML = "stripe: last gate (datasets: <b style='color:var(--pass)'>pass</b> / " +
      "<b style='color:var(--fail)'>fail</b> / none) or latest run state (jobs); badge: level L1–L4, W withheld. " +
      "Drag to pan, wheel to zoom.";
    this.container.appendChild(legend);
    this.body = body;
    this.nodes = graphNodes(body);
    this.view = new GraphView(this.container, { onSelect: (i, node) => this.app.openPanel(node.data) });
    this.view.render(this.nodes, body.edges.map(([from, to]) => ({ from, to })));
    this.app.showWithheld(body.withheld);
    const start = this.nodes.findIndex((n) => n.id === nodeId);
    if (start >= 0) this.view.mark([start], "match");
    this.container.dataset.nodes = String(body.nodes.length);
    performance.mark("ct-graph-drawn");
    // "ready" once the browser has painted the drawing (a frame later), not when the markup is set.
    await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
    performance.mark("ct-graph-painted");
    this.container.dataset.ready = "graph";
    return body;
  }

  fit() {
    if (this.view) this.view.fit();
  }

  highlight(query) {
    // Search also marks the matching nodes already on screen (yellow), to find them among 2,000.
    if (!this.view || !this.body) return;
    const q = query.toLowerCase();
    const hits = [];
    this.body.nodes.forEach((n, i) => { if (q && !n.withheld && n.name.toLowerCase().includes(q)) hits.push(i); });
    this.view.mark(hits, "match");
  }
}
