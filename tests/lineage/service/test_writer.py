"""The writer acknowledges once events are in the raw log and projects them after; nothing is lost between."""

from __future__ import annotations

from pathlib import Path

from lineage.context import LineageContext
from lineage.service.ingest import IngestService
from lineage.service.validation import EventValidator
from lineage.settings import LineageSettings
from lineage.store import times
from lineage.store.db import create_store_engine, migrate
from lineage.store.events import PreparedEvent, append_raw, counts, graph_hash, projected_upto, rebuild
from lineage.synthetic import five_stage_chain_events


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
