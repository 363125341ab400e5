// The column view: GET /api/v1/column-lineage around one column (upstream and downstream), drawn with
// the same layered layout. An edge whose transformation masks the data (masking: true) is drawn dashed
// and labelled "masking": past it the producer's declared level applies, not the inputs'.
import { getJson } from "./api.js";
import { GraphView, shortName } from "./graph.js";

export class ColumnView {
  constructor(app, container) {
    this.app = app;
    this.container = container;
  }

  async show({ nodeId, depth }) {
    const body = await getJson("/api/v1/column-lineage", { nodeId, depth: depth ?? 10, withDownstream: "true" });
    const graph = body.graph || [];
    const index = new Map(graph.map((n, i) => [n.id, i]));
    const nodes = graph.map((n) => {
      const d = n.data || {};
      const hidden = String(d.field || "").startsWith("withheld:") || String(d.dataset || "").startsWith("withheld:");
      return {
        id: n.id, classes: `dataset column gate-none${hidden ? " withheld" : ""}${n.id === nodeId ? " match" : ""}`,
        label: hidden ? "withheld column" : `${shortName(d.dataset, 1)}.${d.field}`,
        title: `${d.namespace}:${d.dataset}\ncolumn ${d.field}${d.fieldType ? ` (${d.fieldType})` : ""}`,
        data: { kind: "column", ...d, id: n.id },
      };
    });
    const edges = [];
    graph.forEach((n, to) => {
      const inputs = (n.data && n.data.inputFields) || [];
      for (const edge of n.inEdges || []) {
        const from = index.get(edge.origin);
        if (from === undefined) continue;
        const input = inputs.find((f) => edge.origin === `datasetField:${f.namespace}:${f.dataset}:${f.field}`) || {};
        const transformations = input.transformations || [];
        const masking = transformations.some((t) => t.masking);
        const kinds = transformations.map((t) => [t.type, t.subtype].filter(Boolean).join("/")).join(", ");
        edges.push(masking
          ? { from, to, classes: "masking", label: "masking", title: `masking: ${kinds}` }
          : { from, to, classes: "plain", title: kinds });
      }
    });
    this.container.replaceChildren();
    const title = document.createElement("div");
    title.className = "view-title";
    const masked = edges.filter((e) => e.classes === "masking").length;
    title.textContent = `column lineage of ${nodeId}: ${nodes.length} columns, ${masked} masking edge(s)`;
    this.container.appendChild(title);
    this.view = new GraphView(this.container, { onSelect: () => {} });
    this.view.render(nodes, edges);
    this.app.showWithheld(body.withheld);
    this.container.dataset.ready = "columns";
    return body;
  }

  fit() {
    if (this.view) this.view.fit();
  }
}
