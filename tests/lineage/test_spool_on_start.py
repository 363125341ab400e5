"""The service ingests the producers' spool (``spool_dir``) on start, in process, off the start-up path."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from lineage.api.app import create_app
from lineage.context import LineageContext
from lineage.settings import LineageSettings
from lineage.spool_format import list_events, list_rejected, write_event

PRODUCER = "https://github.com/chaintrace/chaintrace/tests/spool"


def run_event(job: str, namespace: str = "spool") -> dict[str, Any]:
    return {
        "eventType": "COMPLETE", "eventTime": "2026-01-02T03:04:05.000Z", "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": str(uuid.uuid4())}, "job": {"namespace": namespace, "name": job},
        "inputs": [], "outputs": [{"namespace": "file", "name": f"/zones/{job}"}],
    }


def count_events(context: LineageContext) -> int:
    with context.engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM events")).scalar_one())


def start_with_spool(context: LineageContext, spool_dir: Path) -> None:
    """Start and stop the app once with ``spool_dir`` set; wait for the spool thread it started."""
    context.settings.spool_dir = spool_dir
    with TestClient(create_app(context)) as client:
        assert client.get("/healthz").status_code == 200  # serving while (or after) the spool is read
        assert context.spool_thread is not None
        context.spool_thread.join(timeout=60)
        assert not context.spool_thread.is_alive()


def test_spool_dir_comes_from_the_environment(monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.setenv("CHAINTRACE_SPOOL_DIR", str(tmp_path / "spool"))
    assert LineageSettings().spool_dir == tmp_path / "spool"


def test_start_ingests_the_spool_and_removes_delivered_files(context: LineageContext, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    events = [run_event(f"task-{i}") for i in range(25)]
    for event in events:
        write_event(spool_dir, json.dumps(event).encode())
    bad = write_event(spool_dir, json.dumps(run_event("bad", namespace="")).encode())

    start_with_spool(context, spool_dir)

    summary = context.spool_summary
    assert summary is not None
    assert (summary.delivered, summary.already_present, summary.rejected, summary.left) == (25, 0, 1, 0)
    assert count_events(context) == 25
    assert list_events(spool_dir) == []
    assert [p.name for p in list_rejected(spool_dir)] == [bad.name]
    reason = json.loads((spool_dir / "rejected" / bad.name.replace(".json", ".error.json")).read_text())
    assert "job.namespace" in reason["message"]


def test_events_already_stored_are_not_stored_twice(context: LineageContext, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    events = [run_event(f"task-{i}") for i in range(10)]
    context.ingest.ingest_sync(events[:4])  # delivered before, but their files were never deleted
    for event in events:
        write_event(spool_dir, json.dumps(event).encode())

    start_with_spool(context, spool_dir)

    summary = context.spool_summary
    assert summary is not None
    assert (summary.delivered, summary.already_present, summary.left) == (6, 4, 0)
    assert count_events(context) == 10


def test_an_empty_or_missing_spool_is_fine_and_no_spool_dir_starts_nothing(
    context: LineageContext, tmp_path: Path
) -> None:
    with TestClient(create_app(context)):
        assert context.spool_thread is None
    start_with_spool(context, tmp_path / "never-created")
    assert context.spool_summary is not None
    assert context.spool_summary.delivered == 0 and context.spool_summary.left == 0
