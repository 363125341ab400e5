"""Derivations in a child process (settings.derivations_in = "process"): the child derives the alerts,
the audit rows of governance facets and of classification levels; the service process derives none of
them, still streams, and takes over when the child stops."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from lineage.context import LineageContext
from lineage.monitoring.store import alerts
from lineage.store import schema as s
from tests.conftest import build_context, wait_for

PRODUCER = "https://github.com/chaintrace/chaintrace/tests/child-derivations"
RUN_EVENT = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
GOVERNANCE_URL = "https://chaintrace.dev/spec/facets/1-0-0/GovernanceRunFacet.json#/$defs/GovernanceRunFacet"
TAGS_URL = "https://openlineage.io/spec/facets/1-0-0/TagsDatasetFacet.json#/$defs/TagsDatasetFacet"


def run_event(event_type: str, job: str, minute: int, **run_facets: Any) -> dict[str, Any]:
    return {
        "eventType": event_type, "eventTime": f"2026-05-01T08:{minute:02d}:00Z", "producer": PRODUCER,
        "schemaURL": RUN_EVENT, "run": {"runId": str(uuid.uuid4()), "facets": run_facets},
        "job": {"namespace": "etl", "name": job}, "inputs": [], "outputs": [],
    }


def governed_output(minute: int) -> dict[str, Any]:
    """A run whose governance facet records a decision and whose output is tagged L3."""
    event = run_event("COMPLETE", "etl.publish", minute, governance={
        "_producer": PRODUCER, "_schemaURL": GOVERNANCE_URL, "policyVersion": 1, "k": 10,
        "decisions": [{"kind": "publish_allowed", "dataset": {"namespace": "file", "name": "people"},
                       "reason": "L3 inside the policy"}]})
    event["outputs"] = [{"namespace": "file", "name": "people", "facets": {"tags": {
        "_producer": PRODUCER, "_schemaURL": TAGS_URL,
        "tags": [{"key": "classification", "value": "L3", "source": "test"}]}}}]
    return event


def alert_kinds(context: LineageContext) -> list[str]:
    with context.engine.connect() as connection:
        return [str(k) for k in connection.execute(select(alerts.c.kind).order_by(alerts.c.id)).scalars()]


def audit_kinds(context: LineageContext) -> list[str]:
    with context.engine.connect() as connection:
        rows = connection.execute(select(s.audit_log.c.kind, s.audit_log.c.dedup_key)
                                  .order_by(s.audit_log.c.id)).all()
    return [f"{kind}:{'event' if (key or '').startswith('event:') else 'level'}" for kind, key in rows]


def ingest(context: LineageContext, *events: dict[str, Any]) -> None:
    results = context.ingest.ingest_sync(list(events))
    assert all(r.accepted for r in results), [r.errors for r in results]


@pytest.fixture
def served(store_url: str, tmp_path: Path) -> Iterator[LineageContext]:
    context = build_context(store_url, tmp_path, derivations_in="process")
    context.start()
    try:
        yield context
    finally:
        context.close()


def test_the_child_derives_alerts_and_audit_rows_the_service_process_none(served: LineageContext) -> None:
    child = served._derivations
    assert child is not None and child.alive(), "a file or PostgreSQL store: the child must run"
    ingest(served, run_event("FAIL", "etl.load", 1), governed_output(2))

    assert wait_for(lambda: "run_failed" in alert_kinds(served))
    wait_for(lambda: {"publish_allowed:event", "level_assigned:level"} <= set(audit_kinds(served)))
    assert served.monitoring.raised == 0 and served.audit.derived == 0, "the service process derived"
    # Reads in the service process still see the levels (refreshed on demand there).
    assert served.classification.dataset_level("file", "people") == "L3"
    # Nothing twice: the child derived each once, and the service process wrote no level rows.
    time.sleep(0.5)
    assert alert_kinds(served).count("run_failed") == 1
    assert audit_kinds(served).count("level_assigned:level") == 1


def test_the_service_process_takes_over_when_the_child_stops(served: LineageContext) -> None:
    ingest(served, run_event("FAIL", "etl.first", 1))
    wait_for(lambda: alert_kinds(served).count("run_failed") == 1)
    child = served._derivations
    assert child is not None
    child.process.kill()
    wait_for(lambda: served._derivations is None)

    ingest(served, run_event("ABORT", "etl.second", 3), governed_output(4))
    wait_for(lambda: alert_kinds(served).count("run_failed") == 2)
    wait_for(lambda: {"publish_allowed:event", "level_assigned:level"} <= set(audit_kinds(served)))
    assert served.monitoring.raised >= 1, "the service process derives after the child stopped"
    time.sleep(0.5)
    assert alert_kinds(served).count("run_failed") == 2, "no alert twice across the hand-over"


def test_by_default_an_embedded_context_derives_in_its_own_process(sqlite_url: str, tmp_path: Path) -> None:
    context = build_context(sqlite_url, tmp_path)
    context.start()
    try:
        assert context._derivations is None
        ingest(context, run_event("FAIL", "etl.load", 1))
        wait_for(lambda: context.monitoring.raised >= 1)
    finally:
        context.close()
