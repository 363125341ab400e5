"""A rebuild with a helper process gives exactly the graph a serial replay gives (both backends).

The helper builds segments from the front of the log while the parent builds them from the back; the
knob ``ROW_WRITE_IN_EVENTS`` (how early the parent stops building to leave time for writing) moves the
meeting point, so the tests pin it at both extremes: the helper builds nearly everything, or the parent
builds as much as it can.
"""

from __future__ import annotations

import hashlib
import multiprocessing.context
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, select, text

from lineage.context import LineageContext
from lineage.settings import LineageSettings
from lineage.store import parallel_rebuild
from lineage.store import schema as s
from lineage.store.db import create_store_engine, migrate
from lineage.store.events import PreparedEvent, append_events, counts, graph_hash, rebuild, retention
from lineage.store.times import normalize_time
from lineage.synthetic import airflow_style_events, five_stage_chain_events

PRODUCER = "https://example.org/producer"
RUN_EVENT = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
SEGMENT = 40  # events per segment: the corpus below spans about ten


@pytest.fixture(params=[10_000.0, 0.0], ids=["helper-builds-most", "parent-builds-most"])
def parent_reserve(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> float:
    value: float = request.param
    monkeypatch.setattr(parallel_rebuild, "ROW_WRITE_IN_EVENTS", value)
    return value


@pytest.fixture
def filled(store_url: str, tmp_path: Path) -> Iterator[Engine]:
    """A store holding the five-stage chain and 360 Airflow-style events, ingested as the service does."""
    ctx = LineageContext.build(LineageSettings(db_url=store_url, data_root=tmp_path))
    ctx.start()
    try:
        results = ctx.ingest.ingest_sync(five_stage_chain_events() + airflow_style_events(360, seed=5))
        assert all(r.status == "created" for r in results)
    finally:
        ctx.close()
    engine = create_store_engine(store_url)
    yield engine
    engine.dispose()


def _replay(engine: Engine) -> parallel_rebuild.ParallelReplay:
    parallel_rebuild.last_replay = None
    replayed = rebuild(engine, batch_size=SEGMENT, parallel_min_events=0)
    replay = parallel_rebuild.last_replay
    assert replay is not None, "the parallel path did not run"
    assert replay.events == replayed
    return replay


def test_parallel_rebuild_gives_the_ingested_graph(filled: Engine, parent_reserve: float) -> None:
    before, rows_before = graph_hash(filled), counts(filled)
    replay = _replay(filled)
    assert replay.events == rows_before["events"]
    assert 1 <= replay.parent_segments <= replay.segments
    if parent_reserve > 1:  # the parent stops after its first segment: the helper built the rest
        assert replay.parent_segments == 1 and replay.segments > 5
    assert graph_hash(filled) == before
    assert counts(filled) == rows_before
    # Same as a serial replay, and the watermark covers the whole log either way.
    assert rebuild(filled, parallel_min_events=None) == replay.events
    assert graph_hash(filled) == before
    with filled.connect() as connection:
        last = connection.execute(text("SELECT max(id) FROM events")).scalar()
        projected = connection.execute(select(s.store_meta.c.value).where(s.store_meta.c.key == "projected"))
        assert int(projected.scalar() or 0) == last


def test_below_the_threshold_the_rebuild_is_serial(filled: Engine) -> None:
    before = graph_hash(filled)
    parallel_rebuild.last_replay = None
    rebuild(filled, batch_size=SEGMENT, parallel_min_events=1_000_000)
    assert parallel_rebuild.last_replay is None
    assert graph_hash(filled) == before


def _event(when: str, run_id: str, job: str, event_type: str, output: str) -> dict[str, Any]:
    return {
        "eventType": event_type, "eventTime": when, "producer": PRODUCER, "schemaURL": RUN_EVENT,
        "run": {"runId": run_id, "facets": {}}, "job": {"namespace": "ns", "name": job},
        "inputs": [], "outputs": [{"namespace": "ds", "name": output}],
    }


def _prepared(event: dict[str, Any]) -> PreparedEvent:
    return PreparedEvent(
        event_hash=hashlib.sha256(orjson.dumps(event, option=orjson.OPT_SORT_KEYS)).hexdigest(),
        kind="RunEvent", event_type=event["eventType"], event_time=normalize_time(event["eventTime"]),
        run_id=event["run"]["runId"], job_namespace="ns", job_name=event["job"]["name"],
        payload=orjson.dumps(event).decode(), facet_warnings=None, event=event,
    )


def test_a_run_named_by_two_jobs_keeps_the_earliest_events_job(store_url: str, parent_reserve: float) -> None:
    """runs.job_name is taken from the run's first event (by id), whoever builds which segment."""
    engine = create_store_engine(store_url)
    migrate(engine)
    shared = [str(uuid.uuid4()) for _ in range(4)]
    events = []
    for i in range(12 * SEGMENT):
        # Each shared run is first named by job "first-<k>", then renamed in later segments (and, for
        # event times, the later events are the OLDER ones: the constant follows ids, not times).
        k = i % 4
        run_id = shared[k] if i % 7 == 0 else str(uuid.uuid4())
        job = f"first-{k}" if i < 4 * 7 else f"renamed-{i}"
        events.append(_event(f"2026-02-{28 - i // 40:02d}T00:00:{i % 60:02d}Z", run_id, job,
                             "START" if i % 2 else "COMPLETE", f"out-{i % 9}"))
    for start in range(0, len(events), 50):
        with engine.begin() as connection:
            batch = [_prepared(e) for e in events[start : start + 50]]
            append_events(connection, batch, "2026-03-01T00:00:00Z")
    before = graph_hash(engine)
    _replay(engine)
    assert graph_hash(engine) == before
    with engine.connect() as connection:
        names = dict(connection.execute(
            select(s.runs.c.run_id, s.runs.c.job_name).where(s.runs.c.run_id.in_(shared))
        ).all())
    assert names == {run_id: f"first-{k}" for k, run_id in enumerate(shared)}
    engine.dispose()


def test_a_helper_that_fails_fails_the_rebuild_and_keeps_the_graph(filled: Engine, monkeypatch: Any) -> None:
    monkeypatch.setattr(parallel_rebuild, "ROW_WRITE_IN_EVENTS", 10_000.0)  # the helper reads event 1
    before, rows_before = graph_hash(filled), counts(filled)
    with filled.begin() as connection:
        first = connection.execute(text("SELECT min(id) FROM events")).scalar()
        connection.execute(text("UPDATE events SET payload = '{not json' WHERE id = :id"), {"id": first})
    with pytest.raises(parallel_rebuild.HelperFailed, match="JSONDecodeError"):
        rebuild(filled, batch_size=SEGMENT, parallel_min_events=0)
    assert graph_hash(filled) == before
    assert counts(filled) == rows_before


def test_retention_still_rebuilds_what_it_keeps(filled: Engine) -> None:
    """Retention deletes events in its own transaction first, so it replays serially."""
    with filled.connect() as connection:
        times = sorted(t for (t,) in connection.execute(select(s.events.c.event_time)))
    cutoff = times[len(times) // 2]
    result = retention(filled, cutoff)
    assert result.events_deleted > 0 and result.events_kept > 0
    kept = graph_hash(filled)
    _replay(filled)
    assert graph_hash(filled) == kept


def test_segments_cover_the_id_range_once() -> None:
    bounds = parallel_rebuild.segment_bounds(5, 23, 4)
    assert bounds[0] == (4, 8) and bounds[-1] == (20, 23)
    covered = [i for lo, hi in bounds for i in range(lo + 1, hi + 1)]
    assert covered == list(range(5, 24))


def test_without_a_helper_process_the_rebuild_replays_serially(filled: Engine, monkeypatch: Any) -> None:
    def cannot_start(self: Any) -> None:
        raise OSError("no more processes")

    monkeypatch.setattr(multiprocessing.context.ForkServerProcess, "start", cannot_start)
    before = graph_hash(filled)
    parallel_rebuild.last_replay = None
    assert rebuild(filled, batch_size=SEGMENT, parallel_min_events=0) == counts(filled)["events"]
    assert parallel_rebuild.last_replay is None
    assert graph_hash(filled) == before
