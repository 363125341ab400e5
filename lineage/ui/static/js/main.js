// The page: login, routing (#/graph?..., #/columns?..., #/run/<id>), the top bar, the side panel, the
// live feed and the report overlay. Everything the page shows comes from the API with the caller's key,
// redacted to the caller's clearance by the service.
import { AuthError, apiKey, getJson, getText, setApiKey } from "./api.js";
import { ColumnView } from "./columns.js";
import { LiveFeed } from "./feed.js";
import { esc } from "./graph.js";
import { LineageView } from "./lineage.js";
import { Panel } from "./panel.js";
import { RunView } from "./runview.js";

const $ = (id) => document.getElementById(id);

class App {
  constructor() {
    this.view = $("view");
    this.panel = new Panel(this, $("panel"));
    this.lineage = new LineageView(this, this.view);
    this.columns = new ColumnView(this, this.view);
    this.runs = new RunView(this, this.view);
    this.feed = new LiveFeed($("feed-items"), $("feed-state"), { onItem: (type, body) => this.onLive(type, body) });
    this.session = null;
    this.current = null;
  }

  async start() {
    this.wire();
    await this.login();
  }

  async login() {
    this.prefetchGraph();
    try {
      this.session = await getJson("/api/v1/ui/session");
    } catch (error) {
      this.prefetched = null;
      if (error instanceof AuthError) { this.askKey(apiKey() ? "That key is not valid (unknown, revoked or malformed)." : ""); return; }
      this.error(error.message);
      return;
    }
    const s = this.session;
    $("whoami").textContent = s.auth === "off" ? "auth off (admin)" : `${s.name} · ${s.role} · clearance ${s.clearance}`;
    $("logout-button").hidden = s.auth === "off";
    this.feed.start();
    await this.route();
  }

  graphQuery(params) {
    return { nodeId: params.get("nodeId"), depth: params.get("depth") || $("depth-input").value,
      direction: params.get("direction") || $("direction-select").value };
  }

  prefetchGraph() {
    // A graph link's data is asked for beside the session, not after it: one round trip less.
    const hash = location.hash.replace(/^#\/?/, "");
    const params = this.params();
    if (!hash.startsWith("graph") || !params.get("nodeId")) return;
    const query = this.graphQuery(params);
    performance.mark("ct-graph-requested");
    const promise = getJson("/api/v1/ui/graph", query);
    promise.catch(() => {}); // a refused prefetch is asked again (and reported) by the view itself
    this.prefetched = { key: JSON.stringify(query), promise };
  }

  takePrefetched(query) {
    const found = this.prefetched;
    this.prefetched = null;
    return found && found.key === JSON.stringify(query) ? found.promise.catch(() => null) : null;
  }

  askKey(message) {
    const dialog = $("login-dialog");
    $("login-error").hidden = !message;
    $("login-error").textContent = message;
    $("login-key").value = "";
    if (!dialog.open) dialog.showModal();
  }

  wire() {
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      setApiKey($("login-key").value.trim());
      $("login-dialog").close();
      this.login();
    });
    $("logout-button").addEventListener("click", () => {
      setApiKey(null);
      this.feed.stop();
      this.view.replaceChildren();
      this.panel.hide();
      this.askKey("");
    });
    window.addEventListener("hashchange", () => this.route());
    $("fit-button").addEventListener("click", () => this.current && this.current.fit && this.current.fit());
    for (const id of ["depth-input", "direction-select"]) {
      $(id).addEventListener("change", () => {
        const params = this.params();
        if (params.has("nodeId")) this.go("graph", { nodeId: params.get("nodeId") });
      });
    }
    this.wireSearch();
    $("feed-toggle").addEventListener("click", () => {
      const collapsed = $("feed").classList.toggle("collapsed");
      $("feed-toggle").textContent = collapsed ? "show" : "hide";
    });
    $("report-close").addEventListener("click", () => { $("report-overlay").hidden = true; $("report-frame").srcdoc = ""; });
  }

  wireSearch() {
    const input = $("search-input");
    const list = $("search-results");
    let timer = 0;
    let seq = 0;
    const run = async () => {
      const q = input.value.trim();
      if (this.current === this.lineage) this.lineage.highlight(q);
      if (!q) { list.hidden = true; return; }
      const mine = ++seq;
      try {
        const body = await getJson("/api/v1/search", { q, limit: 30 });
        if (mine !== seq) return;
        list.innerHTML = body.results.map((r) =>
          `<li data-node-id="${esc(r.nodeId)}"><span class="kind">${esc(r.type)}</span>${esc(r.name)}` +
          ` <span class="muted">${esc(r.namespace)}</span></li>`).join("") ||
          "<li class='muted'>nothing found</li>";
        if (body.withheld) list.insertAdjacentHTML("beforeend", `<li class="muted">${esc(body.withheld.message)}</li>`);
        list.hidden = false;
      } catch (error) {
        this.error(error.message);
      }
    };
    input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(run, 200); });
    $("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); clearTimeout(timer); run(); });
    list.addEventListener("click", (ev) => {
      const item = ev.target.closest("li[data-node-id]");
      if (!item) return;
      list.hidden = true;
      this.go("graph", { nodeId: item.dataset.nodeId });
    });
    document.addEventListener("click", (ev) => { if (!$("search-form").contains(ev.target)) list.hidden = true; });
  }

  params() {
    const hash = location.hash.replace(/^#\/?/, "");
    return new URLSearchParams(hash.includes("?") ? hash.slice(hash.indexOf("?") + 1) : "");
  }

  go(view, params) {
    const query = new URLSearchParams(params);
    if (view === "graph") {
      query.set("depth", $("depth-input").value || "20");
      query.set("direction", $("direction-select").value);
    }
    location.hash = `#/${view}?${query}`;
  }

  async route() {
    if (!this.session) return;
    const hash = location.hash.replace(/^#\/?/, "");
    const name = hash.split(/[?/]/)[0];
    const params = this.params();
    this.error(null);
    this.showWithheld(null);
    this.panel.hide();
    this.view.dataset.ready = "";
    try {
      if (name === "graph" && params.get("nodeId")) {
        if (params.get("depth")) $("depth-input").value = params.get("depth");
        if (params.get("direction")) $("direction-select").value = params.get("direction");
        this.current = this.lineage;
        await this.lineage.show(this.graphQuery(params));
      } else if (name === "columns" && params.get("nodeId")) {
        this.current = this.columns;
        await this.columns.show({ nodeId: params.get("nodeId"), depth: params.get("depth") || 10 });
      } else if (name === "run") {
        this.current = this.runs;
        await this.runs.show(decodeURIComponent(hash.slice("run/".length).split("?")[0]));
      } else {
        this.current = null;
        await this.home();
      }
    } catch (error) {
      if (error instanceof AuthError) { this.askKey("Your key is no longer valid."); return; }
      this.error(error.message);
    }
  }

  async home() {
    const body = await getJson("/api/v1/namespaces", { limit: 50 });
    const sections = await Promise.all(body.namespaces.map(async (ns) => {
      const datasets = await getJson(`/api/v1/namespaces/${encodeURIComponent(ns.name)}/datasets`, { limit: 30 });
      const items = datasets.datasets.map((d) => {
        const nodeId = `dataset:${d.namespace}:${d.name}`;
        return `<li><a href="#/graph?${new URLSearchParams({ nodeId, depth: 20, direction: "both" })}">${esc(d.name)}</a></li>`;
      }).join("");
      return items ? `<h2>${esc(ns.name)}</h2><ul>${items}</ul>` : "";
    }));
    this.view.innerHTML = `<div class="page"><h1>Lineage</h1><p>Search a dataset or job above, or start from ` +
      `one of these datasets.</p>${sections.join("") || "<p class='muted'>The store is empty.</p>"}</div>`;
    this.view.dataset.ready = "home";
  }

  openPanel(node) {
    this.panel.open(node);
  }

  async openReport(path, title) {
    try {
      // Fetched with the key and shown from memory: a link would need the key in its URL.
      const html = await getText(path);
      $("report-title").textContent = title || path;
      $("report-frame").srcdoc = html;
      $("report-overlay").hidden = false;
    } catch (error) {
      this.error(error.message);
    }
  }

  showWithheld(withheld) {
    const banner = $("withheld-banner");
    banner.hidden = !withheld;
    banner.textContent = withheld ? `Withheld: ${withheld.message}` : "";
  }

  error(message) {
    $("error-banner").hidden = !message;
    $("error-banner").textContent = message || "";
  }

  onLive(type, body) {
    // A new event about a node on screen: offer a refresh rather than re-laying out under the reader.
    if (type !== "event" || this.current !== this.lineage || !this.lineage.body) return;
    const names = new Set(this.lineage.body.nodes.map((n) => `${n.namespace}:${n.name}`));
    const touched = [body.job, ...(body.inputs || []), ...(body.outputs || [])]
      .some((d) => d && names.has(`${d.namespace}:${d.name}`));
    if (touched && !$("refresh-note")) {
      const note = document.createElement("button");
      note.id = "refresh-note";
      note.type = "button";
      note.className = "view-title";
      note.style.top = "34px";
      note.textContent = "New events touch this graph: refresh";
      note.addEventListener("click", () => this.route());
      this.view.appendChild(note);
    }
  }
}

const app = new App();
window.chaintraceApp = app; // for debugging in the browser console
app.start();
