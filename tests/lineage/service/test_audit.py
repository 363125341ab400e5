"""The audit service: decisions derived from the ``governance`` run facet exactly once (also across a
restart), off the writer thread, surviving a graph rebuild; and the log refuses UPDATE and DELETE."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from lineage.context import LineageContext
from lineage.service.audit import WATERMARK_KEY, AuditService, decisions_of
from lineage.settings import LineageSettings
from lineage.store import audit as audit_store
from lineage.store import events as event_store
from lineage.store import schema as s
from lineage.store.audit import AuditEntry

PRODUCER = "https://github.com/chaintrace/chaintrace/tests/audit"
GOVERNANCE_URL = "https://chaintrace.dev/spec/facets/1-0-0/GovernanceRunFacet.json#/$defs/GovernanceRunFacet"


def stage_event(job: str, decisions: list[dict[str, Any]], *, minute: int = 0) -> dict[str, Any]:
    return {
        "eventType": "COMPLETE", "eventTime": f"2026-05-01T08:{minute:02d}:00+02:00", "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": str(uuid.uuid4()), "facets": {"governance": {
            "_producer": PRODUCER, "_schemaURL": GOVERNANCE_URL, "policyVersion": 3, "k": 10,
            "decisions": decisions}}},
        "job": {"namespace": "chaintrace", "name": job}, "inputs": [], "outputs": [],
    }


def decision(kind: str, name: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "dataset": {"namespace": "file", "name": name}, "reason": reason, **extra}


def ingest(context: LineageContext, *events: dict[str, Any]) -> None:
    results = context.ingest.ingest_sync(list(events))
    assert all(r.accepted for r in results), [r.errors for r in results]


def derived_rows(context: LineageContext) -> list[dict[str, Any]]:
    with context.engine.connect() as connection:
        rows = connection.execute(select(s.audit_log).order_by(s.audit_log.c.id)).mappings().all()
    return [dict(row) for row in rows if row["dedup_key"] and row["dedup_key"].startswith("event:")]


def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def test_decisions_of_a_governance_facet() -> None:
    event = stage_event("flights.serve", [
        decision("level_assigned", "/d/raw/flights", "policy rule 'names of people'", field="name",
                 level="L4"),
        {"kind": "access_granted", "reason": "not the chain's to say"},  # skipped: not a chain decision
        "not a decision",
        decision("publish_refused", "/d/service/flights/x.parquet", "column name is L4 above L1",
                 product="x", details={"columns": ["name"]}),
    ])
    entries = decisions_of("abc", "2026-05-01T06:00:00.000000Z", event)
    assert [(e.kind, e.dedup_key) for e in entries] == [
        ("level_assigned", "event:abc:0"), ("publish_refused", "event:abc:3")]
    first, refused = entries
    assert first.field == "name" and first.subject == "flights.serve"
    assert first.details["level"] == "L4" and first.details["policyVersion"] == 3 and first.details["k"] == 10
    assert refused.details["product"] == "x" and refused.details["columns"] == ["name"]
    assert refused.dataset_name == "/d/service/flights/x.parquet"
    assert refused.at == "2026-05-01T06:00:00.000000Z"
    assert decisions_of("h", "t", {"run": {"facets": {}}}) == []
    assert decisions_of("h", "t", ["not", "an", "event"]) == []


def test_the_worker_derives_each_decision_once(context: LineageContext) -> None:
    events = [stage_event("flights.classify", [
        decision("level_assigned", "/d/raw/flights", f"rule {i}", field=f"c{i}", level="L2"),
        decision("violation", "/d/raw/flights", f"declared L1 below L3 ({i})", field=f"c{i}"),
    ], minute=i) for i in range(3)]
    plain = {**stage_event("other", []), "run": {"runId": str(uuid.uuid4())}}
    ingest(context, *events, plain)
    # No one asks: the writer's commit alone wakes the worker.
    wait_for(lambda: len(derived_rows(context)) == 6)
    rows = derived_rows(context)
    assert {row["kind"] for row in rows} == {"level_assigned", "violation"}
    assert all(row["subject"] == "flights.classify" for row in rows)
    assert rows[0]["at"] == "2026-05-01T06:00:00.000000Z"  # eventTime, in UTC
    # Posting the same events again, and catching up again, adds nothing.
    ingest(context, *events)
    context.audit.catch_up()
    assert len(derived_rows(context)) == 6


def test_no_decision_is_lost_or_repeated_across_a_restart(store_url: str, tmp_path: Path) -> None:
    settings = LineageSettings(db_url=store_url, data_root=tmp_path)
    first = LineageContext.build(settings)
    first.start()
    ingest(first, stage_event("a.serve", [decision("publish_allowed", "/d/a.parquet", "all at or below L1")]))
    first.audit.catch_up()
    # Events stored while nothing derives them: a process whose worker stopped before they came.
    first.audit.close()
    ingest(first, stage_event("b.serve", [decision("publish_refused", "/d/b.parquet", "L3 above L1"),
                                          decision("violation", "/d/b.parquet", "L3 above L1")], minute=1))
    first.close()
    with first.engine.connect() as connection:
        assert int(connection.execute(select(s.store_meta.c.value).where(
            s.store_meta.c.key == WATERMARK_KEY)).scalar_one()) >= 1
    assert [row["kind"] for row in derived_rows(first)] == ["publish_allowed"]

    second = LineageContext.build(settings)
    second.start()
    try:
        second.audit.start()
        wait_for(lambda: len(derived_rows(second)) == 3)
        second.audit.catch_up()
        ingest(second, stage_event("c.serve", [decision("publish_allowed", "/d/c.parquet", "ok")], minute=2))
        second.audit.catch_up()
        rows = derived_rows(second)
        assert [row["kind"] for row in rows] == ["publish_allowed", "publish_refused", "violation",
                                                 "publish_allowed"]
        assert len({row["dedup_key"] for row in rows}) == 4
    finally:
        second.close()


def test_a_fresh_service_replaying_from_zero_writes_nothing_twice(context: LineageContext) -> None:
    ingest(context, stage_event("a.serve", [decision("publish_allowed", "/d/a.parquet", "ok")]))
    context.audit.catch_up()
    other = AuditService(context.engine)  # a second process with no memory of the first
    with context.engine.begin() as connection:
        connection.execute(s.store_meta.delete().where(s.store_meta.c.key == WATERMARK_KEY))
    assert other.catch_up() == 0
    assert len(derived_rows(context)) == 1


def test_derivation_stays_off_the_writer_thread(context: LineageContext) -> None:
    seen: list[str] = []
    original = context.audit.catch_up

    def spy() -> int:
        seen.append(threading.current_thread().name)
        return original()

    context.audit.catch_up = spy  # type: ignore[method-assign]
    ingest(context, stage_event("a.serve", [decision("publish_allowed", "/d/a.parquet", "ok")]))
    wait_for(lambda: len(derived_rows(context)) == 1)
    assert seen and "lineage-writer" not in seen and set(seen) == {"audit-derive"}


def test_a_graph_rebuild_keeps_the_audit_log(context: LineageContext) -> None:
    ingest(context, stage_event("a.serve", [decision("publish_allowed", "/d/a.parquet", "ok")]))
    context.audit.catch_up()
    context.audit.record([AuditEntry(kind="access_granted", reason="test", subject="alice")])
    before, total = audit_store.query(context.engine)
    assert total == 2
    event_store.rebuild(context.engine)
    context.audit.catch_up()
    assert audit_store.query(context.engine) == (before, 2)


def test_the_audit_log_refuses_update_and_delete(context: LineageContext) -> None:
    context.audit.record([AuditEntry(kind="violation", reason="kept forever", subject="x")])
    for statement in ("UPDATE audit_log SET reason = 'rewritten'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), context.engine.begin() as connection:
            connection.execute(text(statement))
    entries, total = audit_store.query(context.engine)
    assert total == 1 and entries[0]["reason"] == "kept forever"
