"""The writer acknowledges once events are in the raw log and projects them after; nothing is lost between."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from lineage.context import LineageContext
from lineage.service.ingest import IngestService
from lineage.service.validation import EventValidator
from lineage.settings import LineageSettings
from lineage.store import times
from lineage.store.db import WriterLock, create_store_engine, migrate
from lineage.store.events import PreparedEvent, append_raw, counts, graph_hash, projected_upto, rebuild
from lineage.synthetic import airflow_style_events, five_stage_chain_events


def _prepared(url: str) -> tuple[IngestService, list[PreparedEvent]]:
    engine = create_store_engine(url)
    migrate(engine)
    service = IngestService(engine, EventValidator.from_spec_dir())
    prepared, results = service.prepare_all(five_stage_chain_events())
    assert not any(r.errors for r in results)
    return service, prepared


def test_events_left_unprojected_by_a_crash_are_projected_on_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    service, prepared = _prepared(url)
    # What a process killed right after acknowledging leaves behind: raw events, no graph.
    with service.engine.begin() as connection:
        flags, stored = append_raw(connection, prepared, times.now())
    assert all(flags) and len(stored) == len(prepared)
    with service.engine.connect() as connection:
        assert projected_upto(connection) == 0
    assert counts(service.engine)["jobs"] == 0

    context = LineageContext.build(LineageSettings(db_url=url, data_root=tmp_path))
    context.start()
    try:
        with context.engine.connect() as connection:
            assert projected_upto(connection) == stored[-1].id
        assert counts(context.engine)["jobs"] == 5
        projected = graph_hash(context.engine)
        rebuild(context.engine)
        assert graph_hash(context.engine) == projected
    finally:
        context.close()


def test_acknowledged_events_reach_the_graph_and_readers_wait_for_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lag.db'}"
    service, prepared = _prepared(url)
    writer = service.writer
    futures = [writer.submit([p]) for p in prepared]
    assert all(f.result(timeout=30) == [True] for f in futures)
    assert writer.acknowledged == len(prepared)
    assert writer.wait_projected(timeout=30)
    assert writer.projected == writer.acknowledged
    with service.engine.connect() as connection:
        assert projected_upto(connection) == len(prepared)
    assert counts(service.engine)["runs"] == 5
    # The same events again: acknowledged as duplicates, nothing new to project.
    again = writer.submit(prepared).result(timeout=30)
    assert again == [False] * len(prepared)
    assert writer.wait_projected(timeout=30)
    writer.stop()


def _loop_service(tmp_path: Path) -> IngestService:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'loop.db'}")
    migrate(engine)
    service = IngestService(engine, EventValidator.from_spec_dir())
    service.writer.start()
    assert service.writer._projector is not None, "a file store: the projector process must run"
    return service


def test_concurrent_small_requests_commit_together_on_the_event_loop(tmp_path: Path) -> None:
    service = _loop_service(tmp_path)
    events = airflow_style_events(40, seed=11)

    async def requests() -> list[list[Any]]:
        return await asyncio.gather(*(service.ingest([event]) for event in events))

    try:
        before = service.writer.commits
        answers = asyncio.run(requests())
        assert [r.status for (r,) in answers] == ["created"] * len(events)
        # The loop commits what it has parsed by then in one transaction: fewer commits than requests.
        assert service.writer.commits - before < len(events)
        assert service.writer.loop_commits == service.writer.commits - before > 0
        assert service.writer.wait_projected(timeout=60)
        # Sent again: each is a duplicate, nothing stored twice.
        again = asyncio.run(requests())
        assert [r.status for (r,) in again] == ["duplicate"] * len(events)
    finally:
        service.writer.stop()
    assert counts(service.engine)["events"] == len(events)
    projected = graph_hash(service.engine)
    rebuild(service.engine)
    assert graph_hash(service.engine) == projected


def test_requests_wait_on_the_writer_thread_while_another_process_holds_the_lock(tmp_path: Path) -> None:
    service = _loop_service(tmp_path)
    other = WriterLock(service.engine)  # another holder of the store's lock (a projector, say)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with other.hold():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    events = airflow_style_events(5, seed=12)

    async def requests() -> list[list[Any]]:
        tasks = [asyncio.ensure_future(service.ingest([event])) for event in events]
        await asyncio.sleep(0.3)
        assert not any(task.done() for task in tasks), "acknowledged while the lock was held elsewhere"
        release.set()  # the event loop was free all along: this coroutine ran while they waited
        return list(await asyncio.gather(*tasks))

    try:
        answers = asyncio.run(requests())
        assert [r.status for (r,) in answers] == ["created"] * len(events)
        assert service.writer.loop_commits == 0 and service.writer.commits >= 1
    finally:
        release.set()
        holder.join(10)
        service.writer.stop()
    assert counts(service.engine)["events"] == len(events)
