"""The projector's merges are commutative and idempotent: order and duplicates never change the graph."""

from __future__ import annotations

import itertools
import random
import uuid
from typing import Any

from sqlalchemy import select

from lineage.store import schema as s
from lineage.store.db import create_store_engine, migrate
from lineage.store.events import PreparedEvent, append_events, graph_hash, rebuild
from lineage.store.projector import dataset_version_id, run_key
from lineage.store.times import normalize_time

PRODUCER = "https://example.org/producer"


def facet(**fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": "https://example.org/schema.json", **fields}


def run_event(event_type: str, when: str, run_id: str, *, job: str = "job", outputs: Any = (),
              inputs: Any = (), run_facets: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "eventType": event_type, "eventTime": when, "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run_id, "facets": run_facets or {}},
        "job": {"namespace": "ns", "name": job},
        "inputs": list(inputs), "outputs": list(outputs),
    }


def prepared(event: dict[str, Any], index: int) -> PreparedEvent:
    import hashlib

    import orjson

    return PreparedEvent(
        event_hash=hashlib.sha256(orjson.dumps(event, option=orjson.OPT_SORT_KEYS)).hexdigest(),
        kind="RunEvent", event_type=event.get("eventType"), event_time=normalize_time(event["eventTime"]),
        run_id=event["run"]["runId"], job_namespace="ns", job_name=event["job"]["name"],
        payload=orjson.dumps(event).decode(), facet_warnings=None, event=event,
    )


def store(tmp_path: Any, name: str, events: list[dict[str, Any]], *, batch: int = 1) -> Any:
    engine = create_store_engine(f"sqlite:///{tmp_path / name}")
    migrate(engine)
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        with engine.begin() as connection:
            append_events(connection, [prepared(e, i) for i, e in enumerate(chunk)], "2026-01-01T00:00:00Z")
    return engine


def corpus() -> list[dict[str, Any]]:
    run_a, run_b = str(uuid.uuid4()), str(uuid.uuid4())
    src = {"namespace": "file", "name": "/data/raw/flights",
           "facets": {"schema": facet(fields=[{"name": "dep_delay", "type": "double"}])}}
    out_v1 = {"namespace": "file", "name": "/data/processed/flights", "facets": {
        "schema": facet(fields=[{"name": "dep_delay", "type": "double"}]),
        "tags": facet(tags=[{"key": "classification", "value": "L2", "field": "dep_delay"}]),
        "columnLineage": facet(fields={"dep_delay": {"inputFields": [
            {"namespace": "file", "name": "/data/raw/flights", "field": "dep_delay",
             "transformations": [{"type": "DIRECT", "subtype": "IDENTITY", "masking": False}]}]}}),
    }}
    out_v2 = {"namespace": "file", "name": "/data/processed/flights", "facets": {
        "schema": facet(fields=[{"name": "dep_delay", "type": "double"}, {"name": "x", "type": "int"}]),
        "tags": facet(tags=[{"key": "classification", "value": "L3", "field": "dep_delay"}]),
    }}
    return [
        run_event("START", "2026-01-01T00:00:00Z", run_a, inputs=[src]),
        run_event("COMPLETE", "2026-01-01T00:05:00Z", run_a, inputs=[src], outputs=[out_v1]),
        run_event("START", "2026-01-02T00:00:00Z", run_b, inputs=[src],
                  run_facets={"parent": facet(run={"runId": run_a}, job={"namespace": "ns", "name": "dag"})}),
        run_event("FAIL", "2026-01-02T00:05:00Z", run_b, inputs=[src], outputs=[out_v2]),
        run_event("OTHER", "2026-01-02T00:06:00Z", run_b),
    ]


def test_any_order_and_duplicates_give_the_same_graph(tmp_path: Any) -> None:
    events = corpus()
    reference = graph_hash(store(tmp_path, "ordered.db", events))
    rng = random.Random(7)
    for attempt in range(4):
        shuffled = events * 2
        rng.shuffle(shuffled)
        engine = store(tmp_path, f"shuffled{attempt}.db", shuffled, batch=1 + attempt * 3)
        assert graph_hash(engine) == reference


def test_every_permutation_of_one_run_gives_the_same_state(tmp_path: Any) -> None:
    events = corpus()[:2] + corpus()[2:4]  # two runs, START + terminal each
    hashes = set()
    for number, order in enumerate(itertools.permutations(events)):
        engine = store(tmp_path, f"p{number}.db", list(order))
        hashes.add(graph_hash(engine))
        engine.dispose()
    assert len(hashes) == 1


def test_late_start_does_not_reopen_a_finished_run(tmp_path: Any) -> None:
    run_id = str(uuid.uuid4())
    events = [
        run_event("COMPLETE", "2026-01-01T00:05:00Z", run_id),
        run_event("START", "2026-01-01T00:00:00Z", run_id),
        run_event("RUNNING", "2026-01-01T00:03:00Z", run_id),
    ]
    engine = store(tmp_path, "late.db", events)
    with engine.connect() as connection:
        row = connection.execute(select(s.runs)).one()
    assert row.state == "COMPLETED"
    assert row.started_at == "2026-01-01T00:00:00.000000Z"
    assert row.ended_at == "2026-01-01T00:05:00.000000Z"


def test_fail_then_other_keeps_failed_and_facets_take_the_newest_event(tmp_path: Any) -> None:
    engine = store(tmp_path, "s.db", corpus())
    with engine.connect() as connection:
        states = dict(connection.execute(select(s.runs.c.run_id, s.runs.c.state)).all())
        tags = connection.execute(select(s.dataset_tags.c.tag_value)).scalars().all()
        versions = connection.execute(select(s.dataset_versions.c.version)).scalars().all()
        parents = connection.execute(select(s.runs.c.parent_run_id)).scalars().all()
        edges = connection.execute(select(s.column_lineage)).all()
    assert sorted(states.values()) == ["COMPLETED", "FAILED"]
    assert tags == ["L3"]  # the newer event's classification wins
    assert len(versions) == 2  # one version per output write (per run)
    assert set(versions) == {dataset_version_id("file", "/data/processed/flights", r) for r in states}
    assert sorted(p for p in parents if p) == [min(states, key=lambda r: states[r] != "COMPLETED")]
    assert len(edges) == 1 and edges[0].transformation_subtype == "IDENTITY"


def test_rebuild_reproduces_the_graph(tmp_path: Any) -> None:
    engine = store(tmp_path, "r.db", corpus(), batch=2)
    before = graph_hash(engine)
    assert rebuild(engine) == len(corpus())
    assert graph_hash(engine) == before


def test_run_ids_are_case_insensitive() -> None:
    value = "6F9619FF-8B86-D011-B42D-00C04FC964FF"
    assert run_key(value) == run_key(value.lower()) == value.lower()
