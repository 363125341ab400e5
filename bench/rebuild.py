"""C. Rebuild the derived graph from the raw event log (lineage.store.events.rebuild).

On SQLite (target >= 10,000 events/s) and PostgreSQL (reference): a store is filled with realistic
Airflow-style events (in-process, chunks of 2,000 through the group-commit writer), then ``rebuild``
empties every derived table and replays the log in one transaction; the graph hash must not change.

The rebuild runs twice: as ``rebuild`` chooses (a helper process builds part of the log, see
lineage.store.parallel_rebuild), then serial (``parallel_min_events=None``) for the in-run comparison; CPU
is this process's plus the helper's.

BASELINE, same run: the same events ingested incrementally one by one through ``append_events``, one
transaction per event, into a fresh store (the cost a replay would have without batching).
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import (
    Target,
    fill_store,
    finish_section,
    log,
    pg_available,
    run_info,
    store,
)

SIZES = {"full": {"events": 30_000, "baseline": 2_000}, "quick": {"events": 8_000, "baseline": 600}}
CHUNK = 2_000


def _fill(url: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    fill = fill_store(url, events, CHUNK)
    return {**fill, "events": fill["created"]}


def _one_by_one(url: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Baseline: append_events per event, one transaction each (prepared outside the timing)."""
    from lineage.service.ingest import IngestService
    from lineage.service.validation import EventValidator
    from lineage.store import times
    from lineage.store.db import create_store_engine, migrate
    from lineage.store.events import append_events

    engine = create_store_engine(url)
    migrate(engine)
    service = IngestService(engine, EventValidator.from_spec_dir(None))
    prepared, _ = service.prepare_all(events)
    started = time.perf_counter()
    created = 0
    for p in prepared:
        with engine.begin() as connection:
            created += sum(append_events(connection, [p], times.now()))
    wall = time.perf_counter() - started
    engine.dispose()
    return {"events": created, "wall_s": round(wall, 3), "events_per_s": round(created / wall, 1)}


def _rebuild(url: str, *, serial: bool = False) -> dict[str, Any]:
    """Time one rebuild: wall, and CPU of this process plus the helper process (parallel path)."""
    from lineage.store import parallel_rebuild
    from lineage.store.db import create_store_engine
    from lineage.store.events import counts, graph_hash, rebuild

    engine = create_store_engine(url)
    before = graph_hash(engine)
    rows = counts(engine)
    parallel_rebuild.last_replay = None
    cpu0 = time.process_time()
    started = time.perf_counter()
    replayed = rebuild(engine, parallel_min_events=None) if serial else rebuild(engine)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    replay = parallel_rebuild.last_replay
    helper_cpu = replay.helper_cpu_s if replay is not None else 0.0
    after = graph_hash(engine)
    engine.dispose()
    return {"events": replayed, "wall_s": round(wall, 3), "events_per_s": round(replayed / wall, 1),
            "cpu_s": round(cpu + helper_cpu, 3), "parent_cpu_s": round(cpu, 3),
            "helper_cpu_s": round(helper_cpu, 3),
            "segments": replay.segments if replay else None,
            "parent_segments": replay.parent_segments if replay else None,
            "graph_hash_unchanged": before == after, "rows": rows}


def _describe(result: dict[str, Any]) -> str:
    split = (f"; parent built {result['parent_segments']} of {result['segments']} segments"
             if result["segments"] else "")
    return (f"{result['events']:,} events in {result['wall_s']} s = {result['events_per_s']:,.0f} ev/s; "
            f"CPU {result['cpu_s']} s (parent {result['parent_cpu_s']}, helper {result['helper_cpu_s']})"
            f"{split}; "
            f"graph hash unchanged: {result['graph_hash_unchanged']}")


def run(quick: bool = False) -> dict[str, Any]:
    info = run_info()  # the code measured is the code at the start of the section
    from lineage.synthetic import airflow_style_events

    size = SIZES["quick" if quick else "full"]
    log(f"rebuild: generating {size['events']:,} Airflow-style events")
    events = airflow_style_events(size["events"], seed=11)
    backends = ["sqlite"] + (["postgres"] if pg_available() else [])
    figures: dict[str, Any] = {"sizes": size}
    targets: list[Target] = []
    for backend in backends:
        name = "SQLite" if backend == "sqlite" else "PostgreSQL"
        with store(backend, "rebuild") as url:
            log(f"rebuild: filling a {name} store with {len(events):,} events")
            fill = _fill(url, events)
            log(f"  fill (ingest_sync, chunks of {CHUNK}): {fill['events_per_s']:,.0f} ev/s")
            result = _rebuild(url)
            log(f"  rebuild: {_describe(result)}")
            serial = _rebuild(url, serial=True)
            log(f"  rebuild, serial (no helper process): {_describe(serial)}")
        with store(backend, "rebuild-base") as url:
            base = _one_by_one(url, events[: size["baseline"]])
            log(f"  baseline one-by-one append_events: {base['events_per_s']:,.0f} ev/s "
                f"over {base['events']:,}")
        figures[backend] = {"fill": fill, "rebuild": result, "rebuild_serial": serial,
                            "baseline_one_by_one": base}
        same = result["graph_hash_unchanged"] and serial["graph_hash_unchanged"]
        unchanged = "graph hash unchanged" if same else "GRAPH HASH CHANGED"
        targets.append(Target(f"C1.{backend}", f"C rebuild from raw events ({name})", result["events_per_s"],
                              10_000 if backend == "sqlite" else None, "events/s",
                              note=f"{result['events']:,} events in {result['wall_s']} s, "
                                   f"CPU {result['cpu_s']} s (parent + helper process); {unchanged}"))
        targets.append(Target(f"C3.{backend}", f"C rebuild with a helper process / serial rebuild ({name})",
                              round(result["events_per_s"] / serial["events_per_s"], 2), None, "x",
                              note=f"serial {serial['events_per_s']:,.0f} ev/s, CPU {serial['cpu_s']} s"))
        targets.append(Target(f"C2.{backend}", f"C rebuild / one-by-one append_events ({name})",
                              round(result["events_per_s"] / base["events_per_s"], 2), None, "x",
                              note=f"one-by-one {base['events_per_s']:,.0f} ev/s over {base['events']:,}"))
    return finish_section("rebuild", "C. rebuild", figures, targets, quick=quick, info=info)
