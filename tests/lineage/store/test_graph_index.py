"""The in-memory graph index: loading, incremental refresh, generation reloads, other writers, threads."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine

from lineage.context import LineageContext
from lineage.service.graph import GraphService
from lineage.store.db import create_store_engine
from lineage.store.events import rebuild, retention
from lineage.store.graph_index import GraphIndex, compact_dumps, split_key
from lineage.store.nodes import load_datasets, load_jobs

PRODUCER = "https://github.com/chaintrace/tests"


def run_event(
    job: str, minute: int, inputs: list[str], outputs: list[str], *, columns: dict[str, str] | None = None
) -> dict[str, Any]:
    """A COMPLETE run of ``job`` reading/writing datasets of namespace ``wh``; ``columns`` maps an
    output column of the first output to an input column of the first input."""
    outs: list[dict[str, Any]] = [{"namespace": "wh", "name": name} for name in outputs]
    if columns:
        fields = {
            out: {"inputFields": [{"namespace": "wh", "name": inputs[0], "field": src,
                                   "transformations": [{"type": "DIRECT", "subtype": "IDENTITY"}]}]}
            for out, src in columns.items()
        }
        outs[0]["facets"] = {"columnLineage": {
            "_producer": PRODUCER,
            "_schemaURL": "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json"
                          "#/$defs/ColumnLineageDatasetFacet",
            "fields": fields,
        }}
    return {
        "eventType": "COMPLETE", "eventTime": f"2026-03-01T10:{minute:02d}:00Z", "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": str(uuid.uuid4())}, "job": {"namespace": "etl", "name": job},
        "inputs": [{"namespace": "wh", "name": name} for name in inputs], "outputs": outs,
    }


def ingest(context: LineageContext, *events: dict[str, Any]) -> None:
    results = context.ingest.ingest_sync(list(events))
    assert all(r.accepted for r in results), [r.to_json() for r in results]


def graph(service: GraphService, node: str, depth: int = 20, direction: str = "both") -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(service.lineage(node, depth, direction))  # type: ignore[arg-type]
    return body


def ids(body: dict[str, Any]) -> set[str]:
    return {n["id"] for n in body["graph"]}


@pytest.fixture
def other_engine(store_url: str) -> Iterator[Engine]:
    """A second engine on the same store: what another server process would have."""
    engine = create_store_engine(store_url)
    yield engine
    engine.dispose()


def test_split_key_tries_every_colon_and_prefers_the_longest_known_namespace() -> None:
    known = {("postgres://db", "5432:orders"), ("postgres://db:5432", "orders"), ("a", "b:c")}
    assert split_key("postgres://db:5432:orders", known.__contains__) == ("postgres://db:5432", "orders")
    assert split_key("a:b:c", known.__contains__) == ("a", "b:c")
    assert split_key("nothing:here", known.__contains__) is None
    assert split_key("nocolon", known.__contains__) is None


def test_compact_dumps_is_orjson_dumps() -> None:
    value = {"a": [1, 2.5, None, "é"], "b": {"c": True}}
    assert compact_dumps(value) == orjson.dumps(value)


def test_index_loads_once_then_refreshes_incrementally(context: LineageContext) -> None:
    service = context.graph
    index = service.index
    ingest(context, run_event("extract", 1, ["src"], ["raw"]))
    assert ids(graph(service, "job:etl:extract")) == {"job:etl:extract", "dataset:wh:src", "dataset:wh:raw"}
    assert (index.full_loads, index.incremental_loads) == (1, 0)

    graph(service, "job:etl:extract")  # nothing new: a probe, no reload
    assert (index.full_loads, index.incremental_loads) == (1, 0)

    ingest(context, run_event("clean", 2, ["raw"], ["clean"]))
    body = graph(service, "dataset:wh:raw")
    assert (index.full_loads, index.incremental_loads) == (1, 1)
    assert ids(body) == {
        "job:etl:extract", "job:etl:clean", "dataset:wh:src", "dataset:wh:raw", "dataset:wh:clean"
    }
    raw = next(n for n in body["graph"] if n["id"] == "dataset:wh:raw")
    # the edge JSON cached for raw was dropped when the new edge came in
    assert raw["outEdges"] == [{"origin": "dataset:wh:raw", "destination": "job:etl:clean"}]

    # A new run of an existing job changes its node data (outputs, latest run) and its edges.
    before = next(n for n in body["graph"] if n["id"] == "job:etl:extract")["data"]
    ingest(context, run_event("extract", 3, ["src"], ["raw", "raw_audit"]))
    after_body = graph(service, "job:etl:extract", depth=0)
    after = next(n for n in after_body["graph"] if n["id"] == "job:etl:extract")
    assert after["data"]["latestRun"]["id"] != before["latestRun"]["id"]
    assert {"namespace": "wh", "name": "raw_audit"} in after["data"]["outputs"]
    assert {e["destination"] for e in after["outEdges"]} == {"dataset:wh:raw", "dataset:wh:raw_audit"}
    assert (index.full_loads, index.incremental_loads) == (1, 2)

    # the cached bytes are exactly the loaders' objects
    with context.engine.connect() as connection:
        # graph job nodes carry the latest run only (Marquez's graph shows latestRun, not latestRuns)
        job = load_jobs(connection, [("etl", "extract")], latest_runs=1)[("etl", "extract")]
        dataset = load_datasets(connection, [("wh", "raw")])[("wh", "raw")]
    assert after["data"] == orjson.loads(orjson.dumps(job))
    raw_node = next(n for n in after_body["graph"] if n["id"] == "dataset:wh:raw")
    assert raw_node["data"] == orjson.loads(orjson.dumps(dataset))


def test_a_rebuild_bumps_the_generation_and_forces_a_full_reload(context: LineageContext) -> None:
    service, index = context.graph, context.graph.index
    ingest(context, run_event("a", 1, ["s"], ["t"]), run_event("b", 2, ["t"], ["u"]))
    before = service.lineage("dataset:wh:t", 20)
    assert index.full_loads == 1
    rebuild(context.engine)
    assert service.lineage("dataset:wh:t", 20) == before
    assert index.full_loads == 2


def test_retention_drops_what_only_old_events_said(context: LineageContext) -> None:
    service = context.graph
    ingest(context, run_event("old", 1, ["s"], ["t"]), run_event("new", 30, ["t"], ["u"]))
    assert ids(graph(service, "dataset:wh:t")) == {
        "job:etl:old", "job:etl:new", "dataset:wh:s", "dataset:wh:t", "dataset:wh:u"
    }
    result = retention(context.engine, "2026-03-01T10:10:00.000000Z")
    assert result.events_deleted == 1
    assert ids(graph(service, "dataset:wh:t")) == {"job:etl:new", "dataset:wh:t", "dataset:wh:u"}
    with pytest.raises(LookupError):
        service.lineage("job:etl:old", 1)


def test_a_second_service_sees_writes_made_through_another(
    context: LineageContext, other_engine: Engine
) -> None:
    # ``other`` gets no on_commit calls, like a service in another worker process
    other = GraphService(other_engine)
    ingest(context, run_event("a", 1, ["s"], ["t"]))
    assert ids(graph(other, "job:etl:a")) == {"job:etl:a", "dataset:wh:s", "dataset:wh:t"}
    ingest(context, run_event("b", 2, ["t"], ["u"]))
    assert ids(graph(other, "dataset:wh:t")) == {
        "job:etl:a", "job:etl:b", "dataset:wh:s", "dataset:wh:t", "dataset:wh:u"
    }
    assert (other.index.full_loads, other.index.incremental_loads) == (1, 1)
    assert other.lineage("dataset:wh:t", 20) == context.graph.lineage("dataset:wh:t", 20)
    rebuild(context.engine)
    assert other.lineage("dataset:wh:t", 20) == context.graph.lineage("dataset:wh:t", 20)
    assert other.index.full_loads == 2


def test_with_a_probe_interval_only_local_commits_trigger_a_refresh(
    context: LineageContext, other_engine: Engine
) -> None:
    index = GraphIndex(other_engine, probe_interval=3600.0)
    ingest(context, run_event("a", 1, ["s"], ["t"]))
    index.ensure_fresh()
    probes = index.probes
    ingest(context, run_event("b", 2, ["t"], ["u"]))
    index.ensure_fresh()  # within the interval and not dirty: no probe, the write is not seen yet
    assert index.probes == probes and ("etl", "b") not in index.jobs.ids
    index.mark_dirty()  # what on_commit does
    index.ensure_fresh()
    assert index.probes == probes + 1 and ("etl", "b") in index.jobs.ids


def test_column_index_is_loaded_on_first_use_and_refreshed(context: LineageContext) -> None:
    service, index = context.graph, context.graph.index
    ingest(context, run_event("a", 1, ["s"], ["t"], columns={"x": "id"}))
    graph(service, "job:etl:a")
    assert index._columns is None  # /lineage alone never loads column edges
    body = orjson.loads(service.column_lineage("datasetField:wh:t:x", 10, False))
    assert ids(body) == {"datasetField:wh:t:x", "datasetField:wh:s:id"}
    ingest(context, run_event("b", 2, ["t"], ["u"], columns={"y": "x"}))
    body = orjson.loads(service.column_lineage("datasetField:wh:t:x", 10, True))
    assert ids(body) == {"datasetField:wh:t:x", "datasetField:wh:s:id", "datasetField:wh:u:y"}
    rebuild(context.engine)
    assert orjson.loads(service.column_lineage("datasetField:wh:t:x", 10, True)) == body


def test_queries_while_the_writer_commits(context: LineageContext) -> None:
    service = context.graph
    ingest(context, run_event("j0", 0, ["d0"], ["d1"]))
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        try:
            while not done.is_set():
                body = graph(service, "dataset:wh:d1")
                for node in body["graph"]:  # every edge ends at a node of the answer
                    for edge in node["inEdges"] + node["outEdges"]:
                        assert {edge["origin"], edge["destination"]} <= ids(body)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for thread in readers:
        thread.start()
    try:
        for i in range(1, 40):
            ingest(context, run_event(f"j{i}", i % 60, [f"d{i}"], [f"d{i + 1}"]))
    finally:
        done.set()
        for thread in readers:
            thread.join()
    assert not errors, errors[0]
    body = graph(service, "dataset:wh:d1", depth=100)
    assert len([n for n in body["graph"] if n["type"] == "JOB"]) == 40
    fresh = GraphService(context.engine)
    assert fresh.lineage("dataset:wh:d1", 100) == service.lineage("dataset:wh:d1", 100)


def test_a_failed_refresh_is_redone_from_scratch(context: LineageContext) -> None:
    service, index = context.graph, context.graph.index
    ingest(context, run_event("a", 1, ["s"], ["t"]))
    graph(service, "job:etl:a")
    calls = {"n": 0}

    def failing_loader(connection: Any, keys: Any) -> dict[Any, dict[str, Any]]:
        calls["n"] += 1
        raise RuntimeError("store went away")

    index._load_jobs = failing_loader
    ingest(context, run_event("a", 2, ["s"], ["t", "t2"]))
    with pytest.raises(RuntimeError):
        graph(service, "job:etl:a")
    index._load_jobs = load_jobs
    body = graph(service, "job:etl:a", depth=0)
    assert calls["n"] == 1 and index.full_loads == 2
    job = next(n for n in body["graph"] if n["type"] == "JOB")
    assert {"namespace": "wh", "name": "t2"} in job["data"]["outputs"]
