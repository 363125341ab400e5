"""B. Lineage graph queries: GET /api/v1/lineage?nodeId=dataset:<ns>:<name>&depth=N over HTTP.

A synthetic layered graph (lineage.synthetic.layered_graph, ~100,000 nodes / ~200,000 edges) is loaded
into a fresh SQLite store in-process (the group-commit writer, chunks of 2,000 events), then the real
server answers depth-20 queries from ~50 varied start datasets (one keep-alive client, sequential).

FLOOR, same run: an in-memory BFS over the same graph with Marquez's semantics, built from the
LayeredGraph lists, plus building the same answer (same nodes, edges; node ``data`` dicts shaped like
those of a real response) and orjson-serialising it. Target: HTTP p95 <= 2x the floor's p95.

Scaling: depth-5 medians on the 100,000-node graph vs a 10,000-node graph of the same generator and
layer structure (target <= 1.5x).

Reference line: a recursive CTE over the store's ``job_io`` table (SQLite) for a few of the queries.

Marquez semantics: depth counts job hops; two jobs are adjacent when they share a dataset (as input or
output of either); the graph is the reached jobs plus all their inputs and outputs. A dataset start is
resolved to one job, as Marquez's getJobFromInputOrOutput does: its producer, else its latest consumer.
The floor also knows the variant "every job touching the start dataset is at depth 0" and uses the
variant whose node counts match the server's answers (reported).
"""

from __future__ import annotations

import gc
import http.client
import random
import time
import urllib.parse
from typing import Any

import orjson

from bench.common import (
    Server,
    Target,
    fill_store,
    finish_section,
    log,
    median,
    percentile,
    run_info,
    store,
    summary,
)

SIZES = {
    "full": {"big": 100_000, "small": 10_000, "queries": 50, "scaling_queries": 60, "cte_queries": 3,
             "floor_gc_queries": 5, "floor_frag_queries": 20, "floor_scaling_queries": 12},
    "quick": {"big": 20_000, "small": 2_000, "queries": 20, "scaling_queries": 20, "cte_queries": 2,
              "floor_gc_queries": 3, "floor_frag_queries": 10, "floor_scaling_queries": 8},
}
DEPTH, SCALING_DEPTH, LOCAL_DEPTH = 20, 5, 1
CHUNK = 2_000
SEED = 1
CTE_BUDGET_S = 25.0

# Used only when no real response is at hand to copy node data from (Marquez's shape).
_DEFAULT_JOB_DATA = {"type": "BATCH", "id": {"namespace": "", "name": ""}, "name": "", "namespace": "",
                     "simpleName": "", "parentJobName": None, "createdAt": "2026-01-01T00:00:00.000000Z",
                     "updatedAt": "2026-01-01T00:00:00.000000Z", "inputs": [], "outputs": [],
                     "location": None, "description": None, "latestRun": None}
_DEFAULT_DATASET_DATA = {"type": "DB_TABLE", "id": {"namespace": "", "name": ""}, "name": "", "namespace": "",
                         "physicalName": "", "createdAt": "2026-01-01T00:00:00.000000Z",
                         "updatedAt": "2026-01-01T00:00:00.000000Z", "sourceName": "file",
                         "fields": [{"name": "id", "type": "bigint", "tags": [], "description": None}],
                         "tags": [], "lastModifiedAt": None, "description": None}


# ------------------------------------------------------------------------------------------------ floor
class Floor:
    """The in-memory floor: adjacency lists of a LayeredGraph, Marquez BFS, answer build + orjson."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        n_ds = len(graph.datasets)
        self.producers: list[list[int]] = [[] for _ in range(n_ds)]
        self.consumers: list[list[int]] = [[] for _ in range(n_ds)]
        for j, outs in enumerate(graph.job_outputs):
            for d in outs:
                self.producers[d].append(j)
        for j, ins in enumerate(graph.job_inputs):
            for d in ins:
                self.consumers[d].append(j)
        self.touching = [p + c for p, c in zip(self.producers, self.consumers, strict=True)]
        self.job_io = [ins + outs for ins, outs in zip(graph.job_inputs, graph.job_outputs, strict=True)]
        self.job_ids = [f"job:{ns}:{name}" for ns, name in graph.jobs]
        self.ds_ids = [f"dataset:{ns}:{name}" for ns, name in graph.datasets]
        self.ds_index = {ds: i for i, ds in enumerate(graph.datasets)}
        self.job_tmpl: dict[str, Any] = dict(_DEFAULT_JOB_DATA)
        self.ds_tmpl: dict[str, Any] = dict(_DEFAULT_DATASET_DATA)
        self._job_data: dict[int, Any] = {}
        self._ds_data: dict[int, Any] = {}
        self._job_edges: dict[int, Any] = {}
        self._ds_edges: dict[int, Any] = {}

    def use_templates(self, response: dict[str, Any]) -> bool:
        """Copy node ``data`` shapes from a real response (so the floor's dicts are as big): the first JOB,
        and the first DATASET that has schema fields (most datasets of the layered graph have)."""
        job = next((n["data"] for n in response.get("graph", []) if n.get("type") == "JOB"), None)
        datasets = [n["data"] for n in response.get("graph", []) if n.get("type") == "DATASET"]
        dataset = next((d for d in datasets if isinstance(d, dict) and d.get("fields")),
                       datasets[0] if datasets else None)
        if isinstance(job, dict):
            self.job_tmpl = dict(job)
        if isinstance(dataset, dict):
            self.ds_tmpl = dict(dataset)
        self._job_data.clear()
        self._ds_data.clear()
        return isinstance(job, dict) and isinstance(dataset, dict)

    def start_jobs(self, d: int, variant: str) -> list[int]:
        if variant == "all":
            return list(dict.fromkeys(self.touching[d]))
        if self.producers[d]:
            return [self.producers[d][-1]]
        # latest consumer: layered_graph_events emits jobs in index order, eventTime increasing
        return [max(self.consumers[d])] if self.consumers[d] else []

    def reach(self, d: int, depth: int, variant: str) -> list[int]:
        seen = dict.fromkeys(self.start_jobs(d, variant))
        frontier = list(seen)
        touching, job_io = self.touching, self.job_io
        expanded: set[int] = set()  # a dataset expanded once has put all its jobs in ``seen`` already
        for _ in range(depth):
            nxt: list[int] = []
            for j in frontier:
                for ds in job_io[j]:
                    if ds in expanded:
                        continue
                    expanded.add(ds)
                    for j2 in touching[ds]:
                        if j2 not in seen:
                            seen[j2] = None
                            nxt.append(j2)
            if not nxt:
                break
            frontier = nxt
        return list(seen)

    def _data(self, tmpl: dict[str, Any], ns: str, name: str) -> dict[str, Any]:
        data = dict(tmpl)
        if "id" in data:
            data["id"] = {"namespace": ns, "name": name}
        if "name" in data:
            data["name"] = name
        if "namespace" in data:
            data["namespace"] = ns
        if "simpleName" in data:
            data["simpleName"] = name
        if "physicalName" in data:
            data["physicalName"] = name
        return data

    def answer(self, d: int, depth: int, variant: str) -> bytes:
        """BFS + the whole response body, serialised: what the floor times."""
        g = self.graph
        jobs = self.reach(d, depth, variant)
        job_set = set(jobs)
        job_ids, ds_ids = self.job_ids, self.ds_ids
        nodes: list[dict[str, Any]] = []
        datasets: dict[int, None] = {}
        dt = self.ds_tmpl
        for j in jobs:
            jid = job_ids[j]
            ins, outs = g.job_inputs[j], g.job_outputs[j]
            data = self._job_node_data(j)
            nodes.append({
                "id": jid, "type": "JOB", "data": data,
                "inEdges": [{"origin": ds_ids[i], "destination": jid} for i in ins],
                "outEdges": [{"origin": jid, "destination": ds_ids[o]} for o in outs],
            })
            datasets.update(dict.fromkeys(ins))
            datasets.update(dict.fromkeys(outs))
        if not jobs:
            datasets[d] = None
        for i in datasets:
            did = ds_ids[i]
            ns, name = g.datasets[i]
            nodes.append({
                "id": did, "type": "DATASET", "data": self._data(dt, ns, name),
                "inEdges": [{"origin": job_ids[j], "destination": did}
                            for j in self.producers[i] if j in job_set],
                "outEdges": [{"origin": did, "destination": job_ids[j]} for j in self.consumers[i]
                             if j in job_set],
            })
        return orjson.dumps({"graph": nodes})

    def _frag(self, cache: dict[int, Any], i: int, build: Any) -> Any:
        found = cache.get(i)
        if found is None:
            found = cache[i] = orjson.Fragment(orjson.dumps(build()))
        return found

    def answer_fragments(self, d: int, depth: int, variant: str) -> bytes:
        """Like :meth:`answer`, but node data and complete edge lists are pre-serialised once
        (orjson.Fragment), as a caching server would: a tighter, reference-only floor."""
        g = self.graph
        jobs = self.reach(d, depth, variant)
        job_set = set(jobs)
        job_ids, ds_ids = self.job_ids, self.ds_ids
        jd, dd, je, de = self._job_data, self._ds_data, self._job_edges, self._ds_edges
        nodes: list[dict[str, Any]] = []
        datasets: dict[int, None] = {}
        for j in jobs:
            ins, outs = g.job_inputs[j], g.job_outputs[j]
            data = self._frag(jd, j, lambda j=j: self._job_node_data(j))
            edges = je.get(j)
            if edges is None:
                jid = job_ids[j]
                edges = je[j] = (orjson.Fragment(orjson.dumps([{"origin": ds_ids[i], "destination": jid}
                                                                for i in ins])),
                                 orjson.Fragment(orjson.dumps([{"origin": jid, "destination": ds_ids[o]}
                                                                for o in outs])))
            nodes.append({"id": job_ids[j], "type": "JOB", "data": data, "inEdges": edges[0],
                          "outEdges": edges[1]})
            datasets.update(dict.fromkeys(ins))
            datasets.update(dict.fromkeys(outs))
        if not jobs:
            datasets[d] = None
        for i in datasets:
            did = ds_ids[i]
            data = self._frag(dd, i, lambda i=i: self._data(self.ds_tmpl, *g.datasets[i]))
            prod, cons = self.producers[i], self.consumers[i]
            if job_set.issuperset(prod) and job_set.issuperset(cons):
                edges = de.get(i)
                if edges is None:
                    edges = de[i] = (
                        orjson.Fragment(orjson.dumps([{"origin": job_ids[j], "destination": did}
                                                      for j in prod])),
                        orjson.Fragment(orjson.dumps([{"origin": did, "destination": job_ids[j]}
                                                      for j in cons])),
                    )
            else:
                edges = ([{"origin": job_ids[j], "destination": did} for j in prod if j in job_set],
                         [{"origin": did, "destination": job_ids[j]} for j in cons if j in job_set])
            nodes.append({"id": did, "type": "DATASET", "data": data, "inEdges": edges[0],
                          "outEdges": edges[1]})
        return orjson.dumps({"graph": nodes})

    def _job_node_data(self, j: int) -> dict[str, Any]:
        g = self.graph
        data = self._data(self.job_tmpl, *g.jobs[j])
        if "inputs" in data:
            data["inputs"] = [{"namespace": g.datasets[i][0], "name": g.datasets[i][1]}
                              for i in g.job_inputs[j]]
        if "outputs" in data:
            data["outputs"] = [{"namespace": g.datasets[o][0], "name": g.datasets[o][1]}
                               for o in g.job_outputs[j]]
        return data

    def node_count(self, d: int, depth: int, variant: str) -> int:
        jobs = self.reach(d, depth, variant)
        if not jobs:
            return 1
        return len(jobs) + len({ds for j in jobs for ds in self.job_io[j]})


# ------------------------------------------------------------------------------------------------ store
def load_store(url: str, graph: Any) -> dict[str, Any]:
    from lineage.synthetic import layered_graph_events

    return fill_store(url, list(layered_graph_events(graph)), CHUNK)


def starts(graph: Any, n: int, seed: int) -> list[int]:
    """``n`` start datasets touched by some job, spread over the layers (same layer picks for any size)."""
    rng = random.Random(seed)
    touched = set()
    for ins in graph.job_inputs:
        touched.update(ins)
    for outs in graph.job_outputs:
        touched.update(outs)
    by_layer: dict[str, list[int]] = {}
    for i, (_ns, name) in enumerate(graph.datasets):
        if i in touched:
            by_layer.setdefault(name.split("/")[2], []).append(i)
    layers = sorted(by_layer)
    picks: list[int] = []
    for _ in range(n):
        layer = by_layer[layers[int(rng.random() * len(layers))]]
        picks.append(layer[int(rng.random() * len(layer))])
    return picks


def node_query(graph: Any, d: int, depth: int) -> str:
    ns, name = graph.datasets[d]
    return "/api/v1/lineage?" + urllib.parse.urlencode({"nodeId": f"dataset:{ns}:{name}", "depth": depth})


class Client:
    """One keep-alive HTTP connection with a reader key; times request -> last body byte."""

    def __init__(self, port: int, api_key: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def get(self, path: str) -> tuple[int, bytes, float]:
        for attempt in range(2):
            t0 = time.perf_counter()
            try:
                self.connection.request("GET", path, headers=self.headers)
                response = self.connection.getresponse()
                body = response.read()
                return response.status, body, (time.perf_counter() - t0) * 1000.0
            except (OSError, http.client.HTTPException):
                # the server drops a keep-alive connection idle for a few seconds (uvicorn's
                # timeout_keep_alive) while we parse a big answer: reconnect once, retime the request
                self.connection.close()
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.connection.close()


def count_nodes(body: bytes) -> int:
    """Nodes of a ``{"graph": [...]}`` answer without parsing it (each node opens with its string id;
    ``data.id`` is an object). Checked against a full parse of the first answer."""
    return body.count(b'{"id":"job:') + body.count(b'{"id":"dataset:')


def http_queries(client: Client, graph: Any, picks: list[int], depth: int) -> dict[str, Any]:
    times_ms: list[float] = []
    per_pick: list[float | None] = []
    nodes: list[int] = []
    sizes: list[int] = []
    statuses: dict[str, int] = {}
    first: dict[str, Any] | None = None
    count_check: tuple[int, int] | None = None
    errors: list[str] = []
    for d in picks:
        status, body, ms = client.get(node_query(graph, d, depth))
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status != 200:
            if len(errors) < 3:
                errors.append(f"HTTP {status}: {body[:200]!r}")
            nodes.append(-1)
            per_pick.append(None)
            continue
        count = count_nodes(body)
        if first is None:
            first = orjson.loads(body)
            count_check = (len(first.get("graph", [])), count)
        times_ms.append(ms)
        per_pick.append(ms)
        nodes.append(count)
        sizes.append(len(body))
        del body
    return {"times_ms": times_ms, "per_pick": per_pick, "nodes": nodes, "bytes": sizes,
            "statuses": statuses, "errors": errors, "first": first, "count_check": count_check}


def floor_queries(floor: Floor, picks: list[int], depth: int, variant: str, *,
                  pause_gc: bool = True, fragments: bool = False) -> dict[str, Any]:
    """Time the floor per query. With ``pause_gc`` the cyclic GC is off while an answer is built (its
    objects are acyclic and die by reference counting; a server can do the same), so the floor is not
    inflated by generation-2 sweeps over ~10^6 fresh dicts."""
    times_ms: list[float] = []
    sizes: list[int] = []
    for d in picks:
        if pause_gc:
            gc.disable()
        try:
            t0 = time.perf_counter()
            body = (floor.answer_fragments if fragments else floor.answer)(d, depth, variant)
            times_ms.append((time.perf_counter() - t0) * 1000.0)
        finally:
            gc.enable()
        sizes.append(len(body))
        del body
    return {"times_ms": times_ms, "bytes": sizes,
            "nodes": [floor.node_count(d, depth, variant) for d in picks]}


def cte_reference(url: str, graph: Any, picks: list[int], depth: int) -> dict[str, Any]:
    """A recursive CTE over job_io (SQLite), Marquez's shape: reached jobs, then their inputs/outputs."""
    import sqlite3

    path = url.removeprefix("sqlite:///")
    con = sqlite3.connect(path)
    sql = """
    WITH RECURSIVE
      start(ns, name) AS (
        SELECT job_namespace, job_name FROM job_io
        WHERE dataset_namespace = :dns AND dataset_name = :dname
        ORDER BY direction DESC, last_seen DESC LIMIT 1),
      lineage(ns, name, depth) AS (
        SELECT ns, name, 0 FROM start
        UNION
        SELECT b.job_namespace, b.job_name, l.depth + 1
        FROM lineage l
        JOIN job_io a ON a.job_namespace = l.ns AND a.job_name = l.name
        JOIN job_io b ON b.dataset_namespace = a.dataset_namespace AND b.dataset_name = a.dataset_name
        WHERE l.depth < :depth),
      jobs(ns, name) AS (SELECT DISTINCT ns, name FROM lineage)
    SELECT 'J', ns, name FROM jobs
    UNION ALL
    SELECT DISTINCT 'D', io.dataset_namespace, io.dataset_name
    FROM jobs j JOIN job_io io ON io.job_namespace = j.ns AND io.job_name = j.name
    """
    times_ms: list[float] = []
    nodes: list[int] = []
    error = None
    budget = time.perf_counter() + CTE_BUDGET_S
    # abort a statement that runs past the budget (the handler's non-zero return interrupts it)
    con.set_progress_handler(lambda: int(time.perf_counter() > budget), 100_000)
    try:
        for d in picks:
            if time.perf_counter() > budget:
                break
            ns, name = graph.datasets[d]
            t0 = time.perf_counter()
            rows = con.execute(sql, {"dns": ns, "dname": name, "depth": depth}).fetchall()
            times_ms.append((time.perf_counter() - t0) * 1000.0)
            nodes.append(len(rows))
    except sqlite3.Error as exc:
        error = f"{exc} (budget {CTE_BUDGET_S:.0f} s)" if "interrupt" in str(exc) else str(exc)
    finally:
        con.close()
    return {"times_ms": [round(t, 1) for t in times_ms], "nodes": nodes, "error": error}


# ------------------------------------------------------------------------------------------------- run
def _graph_stats(graph: Any) -> dict[str, int]:
    edges = sum(map(len, graph.job_inputs)) + sum(map(len, graph.job_outputs))
    return {"jobs": len(graph.jobs), "datasets": len(graph.datasets),
            "nodes": len(graph.jobs) + len(graph.datasets), "edges": edges}


def _choose_variant(floor: Floor, picks: list[int], depth: int, server_nodes: list[int]) -> tuple[str, int]:
    """The start semantics whose node counts match the server's answers most often (ties: "all")."""
    best, best_hits = "all", -1
    # a tie goes to "all", the semantics lineage/service/graph.py documents
    for variant in ("all", "marquez"):
        hits = sum(floor.node_count(d, depth, variant) == n for d, n in zip(picks, server_nodes, strict=True))
        if hits > best_hits:
            best, best_hits = variant, hits
    return best, best_hits


def _server_queries(url: str, graph: Any, picks: list[int], depth: int, figures: dict[str, Any],
                    tag: str, extra: list[tuple[list[int], int]] = ()) -> tuple[dict[str, Any], ...]:
    """Start the server on ``url``; one cold query, 3 warm-up queries, then the timed ones."""
    with Server(url) as server:
        client = Client(server.port, server.reader_key)
        try:
            status, body, ms = client.get(node_query(graph, picks[0], depth))
            figures[f"first_query_ms_{tag}"] = round(ms, 1)
            if status != 200:
                raise RuntimeError(f"GET /api/v1/lineage answered {status}: {body[:300]!r}")
            del body
            log(f"  {tag}: first (cold) depth-{depth} query {ms:.0f} ms")
            for d in picks[1:4]:
                client.get(node_query(graph, d, depth))
            results = [http_queries(client, graph, picks, depth)]
            for more, more_depth in extra:
                results.append(http_queries(client, graph, more, more_depth))
        finally:
            client.close()
    return tuple(results)


NODES_PER_LAYER = 625


def _layers(n_nodes: int) -> int:
    return max(8, n_nodes // NODES_PER_LAYER)


def run(quick: bool = False) -> dict[str, Any]:
    info = run_info()  # the code measured is the code at the start of the section
    from lineage.synthetic import layered_graph

    size = SIZES["quick" if quick else "full"]
    figures: dict[str, Any] = {"sizes": size, "depth": DEPTH, "scaling_depth": SCALING_DEPTH}
    targets: list[Target] = []
    log(f"graph: generating layered graphs of {size['big']:,} and {size['small']:,} nodes")
    # Both graphs have the same layer width (NODES_PER_LAYER) and the same local wiring; the big one
    # has ten times the layers. A depth-5 neighbourhood then has the same shape in both, so the
    # scaling figure compares query cost, not answer size (answer sizes are printed alongside).
    big = layered_graph(size["big"], edges_per_node=2.0, seed=SEED, layers=_layers(size["big"]))
    small = layered_graph(size["small"], edges_per_node=2.0, seed=SEED, layers=_layers(size["small"]))
    figures["graph_big"], figures["graph_small"] = _graph_stats(big), _graph_stats(small)
    log(f"  big {figures['graph_big']}, small {figures['graph_small']}")
    picks = starts(big, size["queries"], seed=101)
    scale_big = starts(big, size["scaling_queries"], seed=202)
    scale_small = starts(small, size["scaling_queries"], seed=202)

    with store("sqlite", "graph-small") as small_url, store("sqlite", "graph-big") as big_url:
        log("graph: loading the stores (in-process ingest_sync, chunks of 2,000)")
        figures["load_big"] = load_store(big_url, big)
        figures["load_small"] = load_store(small_url, small)
        log(f"  big: {figures['load_big']}; small: {figures['load_small']}")
        log(f"graph: {len(picks)} depth-{DEPTH} and {len(scale_big)} depth-{SCALING_DEPTH} queries, "
            "big graph")
        deep, shallow_big, local_big = _server_queries(big_url, big, picks, DEPTH, figures, "big",
                                                       [(scale_big, SCALING_DEPTH), (scale_big, LOCAL_DEPTH)])
        log(f"graph: {len(scale_small)} depth-{SCALING_DEPTH} and depth-{LOCAL_DEPTH} queries, small graph")
        shallow_small, local_small = _server_queries(small_url, small, scale_small, SCALING_DEPTH, figures,
                                                     "small", [(scale_small, LOCAL_DEPTH)])
        log(f"graph: recursive CTE reference ({size['cte_queries']} depth-{DEPTH} queries on the "
            f"{size['small']:,}-node store, SQLite; {CTE_BUDGET_S:.0f} s budget)")
        cte_picks = scale_small[: size["cte_queries"]]
        figures["cte_depth20_small"] = cte_reference(small_url, small, cte_picks, DEPTH)
        log(f"  CTE: {figures['cte_depth20_small']}")
    if deep["errors"]:
        log(f"  HTTP errors: {deep['errors']}")

    # ---- the floor, shaped like the real answers
    log("graph: in-memory floor")
    floor_big, floor_small = Floor(big), Floor(small)
    templated = deep["first"] is not None and floor_big.use_templates(deep["first"])
    floor_small.job_tmpl, floor_small.ds_tmpl = floor_big.job_tmpl, floor_big.ds_tmpl
    deep["first"] = None
    ok = [(d, n) for d, n in zip(picks, deep["nodes"], strict=True) if n >= 0]
    variant, hits = _choose_variant(floor_big, [d for d, _ in ok], DEPTH, [n for _, n in ok])
    log(f"  floor variant {variant!r}: node counts match the server on {hits}/{len(ok)} queries")
    for d in picks[:3]:  # warm-up (and fill the fragment caches, as the server's warm-up does)
        floor_big.answer(d, DEPTH, variant)
        floor_big.answer_fragments(d, DEPTH, variant)
    floor = floor_queries(floor_big, picks, DEPTH, variant)
    log(f"  floor depth {DEPTH}: {summary(floor['times_ms'])}")
    floor_gc = floor_queries(floor_big, picks[: size["floor_gc_queries"]], DEPTH, variant, pause_gc=False)
    floor_frag = floor_queries(floor_big, picks[: size["floor_frag_queries"]], DEPTH, variant, fragments=True)
    n_fs = size["floor_scaling_queries"]
    for d in scale_small[:3]:
        floor_small.answer(d, SCALING_DEPTH, variant)
    floor_d5_big = floor_queries(floor_big, scale_big[:n_fs], SCALING_DEPTH, variant)
    floor_d5_small = floor_queries(floor_small, scale_small[:n_fs], SCALING_DEPTH, variant)
    mismatches = [
        {"start": big.datasets[d][1], "server": n, "floor": f}
        for d, n, f in zip(picks, deep["nodes"], floor["nodes"], strict=True) if n != f
    ]

    http_p95, floor_p95 = percentile(deep["times_ms"], 95), percentile(floor["times_ms"], 95)
    med_big, med_small = median(shallow_big["times_ms"]), median(shallow_small["times_ms"])
    figures.update({
        "http_depth20_ms": summary(deep["times_ms"]),
        "http_depth20_nodes": summary([n for n in deep["nodes"] if n >= 0]),
        "http_depth20_bytes": summary(deep["bytes"]),
        "http_statuses": deep["statuses"], "http_errors": deep["errors"],
        "node_count_check_first_answer": {"parsed": deep["count_check"][0], "counted": deep["count_check"][1]}
        if deep["count_check"] else None,
        "floor_depth20_ms": summary(floor["times_ms"]),
        "floor_depth20_nodes": summary(floor["nodes"]),
        "floor_depth20_bytes": summary(floor["bytes"]),
        "floor_depth20_gc_on_ms": summary(floor_gc["times_ms"]),
        "floor_depth20_fragments_ms": summary(floor_frag["times_ms"]),
        "floor_variant": variant, "floor_node_count_matches": f"{hits}/{len(ok)}",
        "floor_templates_from_real_response": templated,
        "node_count_mismatches": mismatches[:10],
        "http_depth5_big_ms": summary(shallow_big["times_ms"]),
        "http_depth5_big_nodes": summary([n for n in shallow_big["nodes"] if n >= 0]),
        "http_depth5_small_ms": summary(shallow_small["times_ms"]),
        "http_depth5_small_nodes": summary([n for n in shallow_small["nodes"] if n >= 0]),
        "floor_depth5_big_ms": summary(floor_d5_big["times_ms"]),
        "floor_depth5_small_ms": summary(floor_d5_small["times_ms"]),
        "per_query_depth20": [
            {"start": big.datasets[d][1], "nodes": n, "floor_nodes": fn,
             "http_ms": None if h is None else round(h, 2), "floor_ms": round(f, 2)}
            for d, n, fn, h, f in zip(picks, deep["nodes"], floor["nodes"], deep["per_pick"],
                                      floor["times_ms"], strict=True)
        ],
    })
    nodes, g = figures["http_depth20_nodes"], figures["graph_big"]
    mb = figures["http_depth20_bytes"].get("p50", 0) / 1e6
    log(f"  depth {DEPTH}: HTTP p95 {http_p95:.1f} ms, floor p95 {floor_p95:.1f} ms, "
        f"answer nodes p50 {nodes.get('p50')} max {nodes.get('max')}, {mb:.1f} MB")
    targets.append(Target("B1", f"B depth-{DEPTH} GET /lineage p95 / in-memory floor p95 "
                                f"({g['nodes']:,} nodes, {g['edges']:,} edges)",
                          round(http_p95 / floor_p95, 2), 2, "x", higher_is_better=False,
                          note=f"HTTP p95 {http_p95:.1f} ms vs floor p95 {floor_p95:.1f} ms over "
                               f"{len(deep['times_ms'])} queries; answers p50 {nodes.get('p50')} / max "
                               f"{nodes.get('max')} nodes, {mb:.0f} MB; node counts match {hits}/{len(ok)}"))
    targets.append(Target("B1.http", f"B depth-{DEPTH} GET /lineage p95 (HTTP)", round(http_p95, 1),
                          None, "ms",
                          note=f"p50 {figures['http_depth20_ms'].get('p50')} ms; first (cold) query "
                               f"{figures.get('first_query_ms_big')} ms"))
    targets.append(Target("B1.floor", f"B depth-{DEPTH} floor p95 (BFS + answer dicts + orjson, GC paused)",
                          round(floor_p95, 1), None, "ms",
                          note=f"p50 {figures['floor_depth20_ms'].get('p50')} ms"))
    fgc = percentile(floor_gc["times_ms"], 95)
    targets.append(Target("B1.gc", f"B depth-{DEPTH} HTTP p95 / floor p95 with the GC left on",
                          round(http_p95 / fgc, 2), None, "x",
                          note=f"floor with GC on: p95 {fgc:.1f} ms over "
                               f"{len(floor_gc['times_ms'])} queries"))
    ffr = percentile(floor_frag["times_ms"], 95)
    targets.append(Target("B1.frag",
                          f"B depth-{DEPTH} HTTP p95 / tighter floor (pre-serialised node fragments)",
                          round(http_p95 / ffr, 2), None, "x", note=f"fragment floor p95 {ffr:.1f} ms"))
    targets.append(Target("B2", f"B depth-{SCALING_DEPTH} median, {size['big']:,} / {size['small']:,} nodes",
                          round(med_big / med_small, 2), 1.5, "x", higher_is_better=False,
                          note=f"{med_big:.2f} ms vs {med_small:.2f} ms; answers p50 "
                               f"{figures['http_depth5_big_nodes'].get('p50')} vs "
                               f"{figures['http_depth5_small_nodes'].get('p50')} nodes"))
    fmb, fms = median(floor_d5_big["times_ms"]), median(floor_d5_small["times_ms"])
    targets.append(Target("B2.floor", f"B depth-{SCALING_DEPTH} floor median, {size['big']:,} / "
                                      f"{size['small']:,} nodes (what the data allows)",
                          round(fmb / fms, 2), None, "x", note=f"{fmb:.2f} ms vs {fms:.2f} ms"))
    lmb, lms = median(local_big["times_ms"]), median(local_small["times_ms"])
    figures.update({"http_depth1_big_ms": summary(local_big["times_ms"]),
                    "http_depth1_big_nodes": summary([n for n in local_big["nodes"] if n >= 0]),
                    "http_depth1_small_ms": summary(local_small["times_ms"]),
                    "http_depth1_small_nodes": summary([n for n in local_small["nodes"] if n >= 0])})
    targets.append(Target("B2.local", f"B depth-{LOCAL_DEPTH} median (local answers), {size['big']:,} / "
                                      f"{size['small']:,} nodes", round(lmb / lms, 2), None, "x",
                          note=f"{lmb:.2f} ms vs {lms:.2f} ms; answers p50 "
                               f"{figures['http_depth1_big_nodes'].get('p50')} vs "
                               f"{figures['http_depth1_small_nodes'].get('p50')} nodes"))
    cte = figures["cte_depth20_small"]
    if cte["times_ms"]:
        targets.append(Target("B.cte", f"B depth-{DEPTH} recursive CTE on SQLite, "
                                       f"{size['small']:,}-node store (reference, median)",
                              round(median(cte["times_ms"]), 1), None, "ms",
                              note=f"{len(cte['times_ms'])} queries, answers {cte['nodes']} rows"
                                   + (f"; {cte['error']}" if cte["error"] else "")))
    elif cte["error"]:
        targets.append(Target("B.cte", f"B depth-{DEPTH} recursive CTE on SQLite, "
                                       f"{size['small']:,}-node store (reference)", None, None, "ms",
                              note=cte["error"]))
    return finish_section("graph", "B. graph", figures, targets, quick=quick, info=info)
