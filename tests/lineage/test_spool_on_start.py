"""The service ingests the producers' spool (``spool_dir``) on start, in process, off the start-up path,
then keeps watching it (``spool_poll_ms``) for the files of spool-first producers."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from lineage.api.app import create_app
from lineage.context import LineageContext
from lineage.settings import LineageSettings
from lineage.spool_format import LOCK_NAME, list_events, list_rejected, replay_lock, write_event

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
    """Start and stop the app once with ``spool_dir`` set (replay at start only); wait for the spool
    thread it started."""
    context.settings.spool_dir = spool_dir
    context.settings.spool_poll_ms = 0
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


# ---------------------------------------------------------------------------------------- watching
def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(0.02)


def test_the_watcher_ingests_files_written_after_start_exactly_once(
    context: LineageContext, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    context.settings.spool_dir = spool_dir
    context.settings.spool_poll_ms = 20
    events = [run_event(f"later-{i}") for i in range(12)]
    with TestClient(create_app(context)) as client:
        assert client.get("/healthz").status_code == 200
        for event in events:
            write_event(spool_dir, json.dumps(event).encode(), fsync=False)
        wait_until(lambda: list_events(spool_dir) == [], "the spool emptied")
        assert count_events(context) == 12

        # The same event again (a producer retried it): its file goes, the store keeps one copy.
        write_event(spool_dir, json.dumps(events[0]).encode())
        bad = write_event(spool_dir, json.dumps(run_event("bad", namespace="")).encode())
        wait_until(lambda: list_events(spool_dir) == [], "the duplicate and the invalid event taken")
        assert count_events(context) == 12
        assert [p.name for p in list_rejected(spool_dir)] == [bad.name]
        summary = context.spool_summary
        assert summary is not None
        assert (summary.delivered, summary.already_present, summary.rejected) == (12, 1, 1)
        thread = context.spool_thread
        assert thread is not None and thread.is_alive()

    assert not thread.is_alive()  # the app's shutdown stopped the watcher
    late = write_event(spool_dir, json.dumps(run_event("after-stop")).encode())
    time.sleep(0.1)  # several poll periods: nothing is watching any more
    assert list_events(spool_dir) == [late]
    assert count_events(context) == 12


def test_a_spool_locked_by_another_replayer_is_left_to_it(context: LineageContext, tmp_path: Path) -> None:
    """The watcher of a second worker (here: this test holding the lock) skips the round; nothing is
    ingested twice, and the files are taken once the lock is free."""
    spool_dir = tmp_path / "spool"
    context.settings.spool_dir = spool_dir
    context.settings.spool_poll_ms = 20
    with TestClient(create_app(context)):
        with replay_lock(spool_dir, timeout_s=30) as locked:
            assert locked
            for i in range(5):
                write_event(spool_dir, json.dumps(run_event(f"locked-{i}")).encode())
            time.sleep(0.15)  # the watcher tries several rounds meanwhile
            assert len(list_events(spool_dir)) == 5
            assert count_events(context) == 0
        wait_until(lambda: list_events(spool_dir) == [], "the spool emptied once the lock was free")
        assert count_events(context) == 5
        summary = context.spool_summary
        assert summary is not None
        assert (summary.delivered, summary.already_present) == (5, 0)
    assert (spool_dir / LOCK_NAME).exists()


def test_two_workers_watching_one_spool_store_each_event_once(
    context: LineageContext, store_url: str, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    context.settings.spool_dir = spool_dir
    context.settings.spool_poll_ms = 10
    second = LineageContext.build(
        LineageSettings(db_url=store_url, data_root=tmp_path / "second", spool_dir=spool_dir,
                        spool_poll_ms=10, projector_process=False),
        run_migrations=False,
    )
    second.start()
    try:
        context.replay_spool_in_background()
        second.replay_spool_in_background()
        for i in range(40):
            write_event(spool_dir, json.dumps(run_event(f"worker-{i}")).encode(), fsync=False)
        wait_until(lambda: list_events(spool_dir) == [], "the spool emptied")
    finally:
        second.close()
        context.close()
    assert count_events(context) == 40
    summaries = [s for s in (context.spool_summary, second.spool_summary) if s is not None]
    assert sum(s.delivered for s in summaries) == 40
    assert sum(s.already_present for s in summaries) == 0  # no file was ingested by both


def test_spool_poll_ms_comes_from_the_environment_and_must_not_be_negative(monkeypatch: Any) -> None:
    monkeypatch.setenv("CHAINTRACE_SPOOL_POLL_MS", "250")
    assert LineageSettings().spool_poll_ms == 250
    monkeypatch.setenv("CHAINTRACE_SPOOL_POLL_MS", "-1")
    try:
        LineageSettings()
    except ValueError as exc:
        assert "spool_poll_ms" in str(exc)
    else:
        raise AssertionError("a negative spool_poll_ms was accepted")
