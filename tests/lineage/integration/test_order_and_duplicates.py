"""Arrival order and duplicates do not change the store (both backends).

* A corpus sent twice, in random order (or fully reversed), split into a random mix of single-event and
  batch requests, leaves the same events count and the same graph hash as one ordered send.
* The run state does not depend on the order START / RUNNING / COMPLETE arrive in: COMPLETED, with
  startedAt the START's time and endedAt the COMPLETE's.
* Idempotency over HTTP (a real server): the same event twice is 201 both times, the second reply says
  "duplicate", and the store has one row.
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from lineage.context import LineageContext
from lineage.store.events import graph_hash
from lineage.synthetic import airflow_style_events, five_stage_chain_events

CORE = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _other_kinds() -> list[dict[str, Any]]:
    """JobEvents and DatasetEvents, which the generators do not make."""
    events: list[dict[str, Any]] = []
    for i in range(6):
        when = (T0 + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        events.append({
            "eventTime": when, "producer": "https://example.com/it", "schemaURL": CORE + "JobEvent",
            "job": {"namespace": "it-jobs", "name": f"static_job_{i % 3}"},
            "inputs": [{"namespace": "it-ds", "name": f"in_{i}"}],
            "outputs": [{"namespace": "it-ds", "name": f"out_{i % 2}"}],
        })
        events.append({
            "eventTime": when, "producer": "https://example.com/it", "schemaURL": CORE + "DatasetEvent",
            "dataset": {"namespace": "it-ds", "name": f"out_{i % 2}", "facets": {
                "documentation": {"_producer": "https://example.com/it",
                                  "_schemaURL": "https://openlineage.io/spec/facets/1-1-0/"
                                  "DocumentationDatasetFacet.json#/$defs/DocumentationDatasetFacet",
                                  "description": f"revision {i}"}}},
        })
    return events


@pytest.fixture(scope="module")
def corpus() -> list[dict[str, Any]]:
    return five_stage_chain_events() + airflow_style_events(400, seed=11) + _other_kinds()


def _send_mixed(client: TestClient, events: list[dict[str, Any]], rng: random.Random) -> list[str]:
    """Send ``events`` in order as a random mix of single and batch requests; per-event statuses."""
    statuses: list[str] = []
    i = 0
    while i < len(events):
        if rng.random() < 0.4:
            reply = client.post("/api/v1/lineage", content=orjson.dumps(events[i]),
                                headers={"Content-Type": "application/json"})
            assert reply.status_code == 201, reply.text
            statuses.append(reply.json()["status"])
            i += 1
            continue
        chunk = events[i : i + rng.randint(2, 60)]
        i += len(chunk)
        reply = client.post("/api/v1/lineage/batch", content=orjson.dumps(chunk),
                            headers={"Content-Type": "application/json"})
        assert reply.status_code == 200, reply.text
        statuses.extend(r["status"] for r in reply.json()["results"])
    return statuses


@pytest.mark.parametrize("arrival", ["shuffled", "reversed"])
def test_corpus_twice_in_any_order_gives_the_graph_of_one_ordered_send(
    arrival: str, corpus: list[dict[str, Any]], client: TestClient, context: LineageContext, it: Any,
    store_url: str,
) -> None:
    backend = "sqlite" if store_url.startswith("sqlite") else "postgres"
    distinct = {it.event_hash(e) for e in corpus}
    assert len(distinct) == len(corpus)

    rng = random.Random(f"order-{arrival}")
    if arrival == "shuffled":
        doubled = corpus + corpus
        rng.shuffle(doubled)
    else:  # every terminal event before its START, the newest first
        doubled = corpus[::-1] + corpus[::-1]
    statuses = _send_mixed(client, doubled, rng)
    assert statuses.count("created") == len(corpus)
    assert statuses.count("duplicate") == len(corpus)

    reference = it.fill(it.store_url(backend, "ordered"), corpus, chunk=1)
    assert it.count_events(context.engine) == len(corpus) == it.count_events(reference.engine)
    assert it.stored_hashes(context.engine) == distinct
    assert graph_hash(context.engine) == graph_hash(reference.engine)


def _lifecycle(run_id: str, job: str) -> dict[str, dict[str, Any]]:
    inputs = [("it-ds", "source_table")]
    outputs = [("it-ds", f"{job}_output")]
    return {
        "START": _order_event("START", T0, run_id, job, inputs, outputs),
        "RUNNING": _order_event("RUNNING", T0 + timedelta(seconds=30), run_id, job, inputs, []),
        "COMPLETE": _order_event("COMPLETE", T0 + timedelta(minutes=5, microseconds=123), run_id, job,
                                 inputs, outputs),
    }


def _order_event(
    kind: str, when: datetime, run_id: str, job: str, inputs: Any, outputs: Any
) -> dict[str, Any]:
    return {
        "eventType": kind, "eventTime": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "producer": "https://example.com/it", "schemaURL": CORE + "RunEvent",
        "run": {"runId": run_id}, "job": {"namespace": "it-order", "name": job},
        "inputs": [{"namespace": n, "name": d} for n, d in inputs],
        "outputs": [{"namespace": n, "name": d} for n, d in outputs],
    }


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_run_state_does_not_depend_on_event_order(
    client: TestClient, context: LineageContext, it: Any, store_url: str
) -> None:
    """Every permutation of START/RUNNING/COMPLETE (its own run each) ends COMPLETED with START's time."""
    backend = "sqlite" if store_url.startswith("sqlite") else "postgres"
    orders = list(itertools.permutations(("START", "RUNNING", "COMPLETE")))
    runs = {order: it.stable_run_id("order", *order) for order in orders}
    for order, run_id in runs.items():
        events = _lifecycle(run_id, "job_" + "_".join(k.lower() for k in order))
        for kind in order:  # one request per event, in this order
            reply = client.post("/api/v1/lineage", content=orjson.dumps(events[kind]),
                                headers={"Content-Type": "application/json"})
            assert reply.status_code == 201, reply.text

    started, ended = T0, T0 + timedelta(minutes=5, microseconds=123)
    assert context.ingest.writer.wait_projected()  # the graph trails the acknowledged log by a few ms
    with context.engine.connect() as connection:
        rows = connection.execute(text("SELECT run_id, state, started_at, ended_at FROM runs")).all()
    by_id = {row.run_id: row for row in rows}
    for order, run_id in runs.items():
        row = by_id[run_id]
        assert row.state == "COMPLETED", (order, row)
        assert _instant(row.started_at) == started, (order, row)
        assert _instant(row.ended_at) == ended, (order, row)
        api = client.get(f"/api/v1/jobs/runs/{run_id}")
        assert api.status_code == 200, api.text
        body = api.json()
        assert body["state"] == "COMPLETED", (order, body)
        assert _instant(body["startedAt"]) == started, (order, body)

    # The same runs sent in their natural order give the same graph.
    natural = [e for order, run_id in runs.items()
               for e in _lifecycle(run_id, "job_" + "_".join(k.lower() for k in order)).values()]
    reference = it.fill(it.store_url(backend, "natural"), natural, chunk=1)
    assert graph_hash(context.engine) == graph_hash(reference.engine)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_same_event_twice_over_http_is_stored_once(backend: str, it: Any, server_factory: Any) -> None:
    url = it.store_url(backend, "idempotency")
    server = server_factory(url)
    event = it.run_event("START", T0, it.stable_run_id("idem"), "idempotent_job",
                         inputs=[("it-ds", "a")], outputs=[("it-ds", "b")])
    conn = server.connection()
    try:
        first = it.http_post(conn, "/api/v1/lineage", orjson.dumps(event))
        second = it.http_post(conn, "/api/v1/lineage", orjson.dumps(event))
        # Same event, other key order and whitespace: the canonical JSON is what identifies it.
        reordered = dict(reversed(list(event.items())))
        third = it.http_post(conn, "/api/v1/lineage", orjson.dumps(reordered, option=orjson.OPT_INDENT_2))
        batch = it.http_post(conn, "/api/v1/lineage/batch", orjson.dumps([event, reordered]))
    finally:
        conn.close()
    assert (first.status, first.json["status"]) == (201, "created")
    assert (second.status, second.json["status"]) == (201, "duplicate")
    assert (third.status, third.json["status"]) == (201, "duplicate")
    assert batch.status == 200, batch.body
    assert [r["status"] for r in batch.json["results"]] == ["duplicate", "duplicate"]
    engine = it.engine(url)
    assert it.count_events(engine) == 1
    assert it.stored_hashes(engine) == {it.event_hash(event)}

    # Two copies of a new event in one batch: the first is created, the copy is a duplicate.
    fresh = it.run_event("COMPLETE", T0 + timedelta(minutes=1), it.stable_run_id("idem"), "idempotent_job")
    reply = server.post("/api/v1/lineage/batch", orjson.dumps([fresh, fresh]))
    assert reply.status == 200, reply.body
    assert [r["status"] for r in reply.json["results"]] == ["created", "duplicate"]
    assert it.count_events(engine) == 2
