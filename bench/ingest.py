"""A. Ingest throughput and latency, over HTTP to the real server, against a naive ORM baseline.

Figures, per backend (SQLite, PostgreSQL) and per ``--workers`` (1, 2), each on a fresh store:

* POST /api/v1/lineage, one 2-4 KB Airflow-style event per request, 8 concurrent keep-alive clients
  -> events/s (target >= 3,000 on SQLite);
* the same endpoint from a single client, sequential -> latency p50/p95/p99 (target p99 <= 10 ms);
* POST /api/v1/lineage/batch with arrays of 1,000 events, 1 client, then 2 concurrent clients three
  times (the median is reported) -> events/s acknowledged (target >= 10,000 on SQLite); then how
  long until the graph shows them all (the store's projected watermark: the projection trails
  acknowledgement, most in a burst), and the 2-client rate counted until then.

Every measured run starts with the graph caught up and the server's processes idle (the derivations
trail the graph), so a run is not charged with what the run before it left.

The load generator (bench/loadgen.py) is a separate process with pre-serialised requests; its CPU use
and the server's are reported (they share the machine's cores).

CALIBRATION, measured in this run: the issue's lean stand-in (bench/lean_standin.py: bare ASGI, the
compiled validator, one SQLite insert per event, two processes) under the same 8-client load. The
issue's goals were set where such a stand-in reached 4,200-4,900 events/s; this machine's speed varies
by a factor of two or more from day to day, and A1 / stand-in says how much of today's machine the
service reaches.

BASELINE, measured in this run: the naive way, in-process: one transaction per event through the
SQLAlchemy ORM (session.query / session.merge per row for events, jobs, datasets, runs and job I/O).
It runs on the same SQLite PRAGMAs as the store (WAL, synchronous=NORMAL), so the ratio measures the
code path, not an fsync per commit. Target: batch endpoint >= 10x the baseline's events/s.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, String, Text, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from bench.common import (
    LoadResult,
    Server,
    Target,
    finish_section,
    log,
    pg_available,
    run_info,
    run_load,
    store,
    summary,
    write_bodies,
)

BATCH_SIZE = 1_000
BATCH_REPEATS = 3  # runs with two clients posting batches; the median is reported
SIZES = {
    # events prepared per phase, and a time cap per phase (whichever ends first): warm-up, 8-client run,
    # single-client run, batches per batch run (two runs), naive baseline, in-process reference
    "full": {"warm": 300, "http8": 24_000, "single": 2_000, "batches": 12, "naive": 2_000, "inproc": 12_000,
             "http8_s": 10.0, "single_s": 8.0, "batch_s": 10.0, "naive_s": 10.0},
    "quick": {"warm": 200, "http8": 6_000, "single": 600, "batches": 4, "naive": 600, "inproc": 4_000,
              "http8_s": 4.0, "single_s": 3.0, "batch_s": 4.0, "naive_s": 3.0},
}


# ------------------------------------------------------------------------------------------ naive baseline
class NaiveBase(DeclarativeBase):
    pass


class NaiveEvent(NaiveBase):
    __tablename__ = "naive_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    event_hash: Mapped[str] = mapped_column(String(64), unique=True)
    event_type: Mapped[str | None] = mapped_column(String(16))
    event_time: Mapped[str] = mapped_column(String(40))
    run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    job_namespace: Mapped[str] = mapped_column(String(1024))
    job_name: Mapped[str] = mapped_column(String(1024))
    payload: Mapped[str] = mapped_column(Text)


class NaiveJob(NaiveBase):
    __tablename__ = "naive_jobs"
    namespace: Mapped[str] = mapped_column(String(1024), primary_key=True)
    name: Mapped[str] = mapped_column(String(1024), primary_key=True)
    created_at: Mapped[str] = mapped_column(String(40))
    updated_at: Mapped[str] = mapped_column(String(40))
    facets: Mapped[str] = mapped_column(Text)


class NaiveDataset(NaiveBase):
    __tablename__ = "naive_datasets"
    namespace: Mapped[str] = mapped_column(String(1024), primary_key=True)
    name: Mapped[str] = mapped_column(String(1024), primary_key=True)
    created_at: Mapped[str] = mapped_column(String(40))
    updated_at: Mapped[str] = mapped_column(String(40))
    facets: Mapped[str] = mapped_column(Text)


class NaiveRun(NaiveBase):
    __tablename__ = "naive_runs"
    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_namespace: Mapped[str] = mapped_column(String(1024))
    job_name: Mapped[str] = mapped_column(String(1024))
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[str] = mapped_column(String(40))
    updated_at: Mapped[str] = mapped_column(String(40))


class NaiveJobIO(NaiveBase):
    __tablename__ = "naive_job_io"
    job_namespace: Mapped[str] = mapped_column(String(255), primary_key=True)
    job_name: Mapped[str] = mapped_column(String(640), primary_key=True)
    dataset_namespace: Mapped[str] = mapped_column(String(255), primary_key=True)
    dataset_name: Mapped[str] = mapped_column(String(640), primary_key=True)
    direction: Mapped[str] = mapped_column(String(8), primary_key=True)
    updated_at: Mapped[str] = mapped_column(String(40))


_STATES = {"START": "RUNNING", "RUNNING": "RUNNING", "COMPLETE": "COMPLETED", "FAIL": "FAILED",
           "ABORT": "ABORTED"}


def naive_ingest_one(engine: Engine, body: bytes) -> bool:
    """The naive way: parse, then ORM query/merge per row, one transaction (commit) per event."""
    event = json.loads(body)
    digest = hashlib.sha256(json.dumps(event, sort_keys=True).encode()).hexdigest()
    t = event["eventTime"]
    job, run = event["job"], event["run"]
    with Session(engine) as session:
        if session.query(NaiveEvent).filter_by(event_hash=digest).first() is not None:
            return False
        session.add(NaiveEvent(event_hash=digest, event_type=event.get("eventType"), event_time=t,
                               run_id=run["runId"], job_namespace=job["namespace"], job_name=job["name"],
                               payload=json.dumps(event)))
        row = session.query(NaiveJob).filter_by(namespace=job["namespace"], name=job["name"]).first()
        if row is None:
            session.add(NaiveJob(namespace=job["namespace"], name=job["name"], created_at=t, updated_at=t,
                                 facets=json.dumps(job.get("facets", {}))))
        else:
            row.updated_at = max(row.updated_at, t)
            row.facets = json.dumps({**json.loads(row.facets), **job.get("facets", {})})
        existing = session.get(NaiveRun, run["runId"])
        session.merge(NaiveRun(
            run_id=run["runId"], job_namespace=job["namespace"], job_name=job["name"],
            state=_STATES.get(str(event.get("eventType")), "NEW"),
            created_at=existing.created_at if existing is not None else t, updated_at=t,
        ))
        for direction, key in (("INPUT", "inputs"), ("OUTPUT", "outputs")):
            for ds in event.get(key) or []:
                found = (session.query(NaiveDataset)
                         .filter_by(namespace=ds["namespace"], name=ds["name"]).first())
                if found is None:
                    session.add(NaiveDataset(namespace=ds["namespace"], name=ds["name"], created_at=t,
                                             updated_at=t, facets=json.dumps(ds.get("facets", {}))))
                else:
                    found.updated_at = max(found.updated_at, t)
                    found.facets = json.dumps({**json.loads(found.facets), **ds.get("facets", {})})
                session.merge(NaiveJobIO(job_namespace=job["namespace"], job_name=job["name"],
                                         dataset_namespace=ds["namespace"], dataset_name=ds["name"],
                                         direction=direction, updated_at=t))
        session.commit()
    return True


def naive_baseline(backend: str, bodies: list[bytes], max_seconds: float) -> dict[str, Any]:
    """Events/s of :func:`naive_ingest_one` over ``bodies`` (or as many as fit in ``max_seconds``, at
    least 200), on a fresh store of ``backend``."""
    from lineage.store.db import create_store_engine

    with store(backend, "naive") as url:
        engine = create_store_engine(url)  # same engine set-up (SQLite PRAGMAs) as the service
        NaiveBase.metadata.create_all(engine)
        naive_ingest_one(engine, bodies[0])  # warm the ORM (mapper configuration, statement caches)
        started = time.perf_counter()
        created = 0
        for n, body in enumerate(bodies[1:]):
            if n >= 200 and time.perf_counter() - started > max_seconds:
                break
            created += naive_ingest_one(engine, body)
        wall = time.perf_counter() - started
        with engine.connect() as connection:
            stored = connection.execute(select(func.count()).select_from(NaiveEvent)).scalar()
        engine.dispose()
    return {"events": created, "wall_s": round(wall, 3), "events_per_s": round(created / wall, 1),
            "stored": stored}


# --------------------------------------------------------------------------------------- in-process path
def inprocess_path(bodies: list[bytes]) -> dict[str, Any]:
    """Our ingest path without HTTP (SQLite): parse+validate+fingerprint, then the writer's transaction."""
    from lineage.context import LineageContext
    from lineage.settings import LineageSettings

    with store("sqlite", "inproc") as url, tempfile.TemporaryDirectory() as root:
        ctx = LineageContext.build(LineageSettings(db_url=url, data_root=Path(root)))
        prepare_s = write_s = 0.0
        n = 0
        for start in range(0, len(bodies), BATCH_SIZE):
            t0 = time.perf_counter()
            events = orjson.loads(b"[" + b",".join(bodies[start:start + BATCH_SIZE]) + b"]")
            prepared, _ = ctx.ingest.prepare_all(events)
            t1 = time.perf_counter()
            flags = ctx.ingest.writer._write(prepared)
            t2 = time.perf_counter()
            prepare_s += t1 - t0
            write_s += t2 - t1
            n += sum(flags)
        ctx.close()
    total = prepare_s + write_s
    return {
        "events": n, "chunk": BATCH_SIZE,
        "parse_validate_s": round(prepare_s, 3), "write_s": round(write_s, 3),
        "parse_validate_events_per_s": round(n / prepare_s, 1),
        "write_events_per_s": round(n / write_s, 1),
        "events_per_s": round(n / total, 1),
    }


# ------------------------------------------------------------------------------------------ HTTP runs
def _stored_events(url: str) -> int:
    from lineage.store.db import create_store_engine
    from lineage.store.schema import events

    engine = create_store_engine(url)
    with engine.connect() as connection:
        n = int(connection.execute(select(func.count()).select_from(events)).scalar() or 0)
    engine.dispose()
    return n


def _graph_caught_up(engine: Engine, timeout: float = 120.0) -> float:
    """Seconds until the store's ``projected`` watermark reaches its newest raw event: how far the
    graph trails acknowledgement (read from the store, so it covers every worker's events)."""
    from lineage.store.events import projected_upto
    from lineage.store.schema import events

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        with engine.connect() as connection:
            newest = int(connection.execute(select(func.max(events.c.id))).scalar() or 0)
            if projected_upto(connection) >= newest:
                break
        time.sleep(0.01)
    return time.perf_counter() - started


def lean_standin(single_file: Path, size: dict[str, Any]) -> dict[str, Any]:
    """The calibration stand-in under the A1 load (see bench/lean_standin.py)."""
    from bench.lean_standin import WORKERS, running, stored_count

    warm, n8 = size["warm"], size["http8"]
    with running() as (port, db):
        w = run_load(port, "/api/v1/lineage", single_file, clients=8, start=0, count=warm,
                     events_per_body=1, expect=(201,))
        _check(w, "stand-in warm-up")
        r8 = run_load(port, "/api/v1/lineage", single_file, clients=8, start=warm, count=n8,
                      events_per_body=1, expect=(201,), max_seconds=size["http8_s"])
        _check(r8, "stand-in 8 clients")
        stored = stored_count(db)
    return {"workers": WORKERS, "http_8_clients": r8.brief(), "stored_events": stored,
            "all_acknowledged_stored": stored == w.events + r8.events}


def _check(result: LoadResult, what: str) -> None:
    if result.error:
        log(f"  WARNING {what}: {result.error}")


def _quiet(server: Server, timeout: float = 30.0, window_s: float = 0.5, idle_cores: float = 0.05) -> float:
    """Seconds until the server's processes (service, projector, derivations, batch processes) use less
    than ``idle_cores`` over ``window_s``: what the previous run left (the derivations trail the graph
    by up to a second or two) is done before the next run is measured."""
    started = time.perf_counter()
    last = server.cpu_seconds()
    while time.perf_counter() - started < timeout:
        time.sleep(window_s)
        now = server.cpu_seconds()
        if now - last < idle_cores * window_s:
            break
        last = now
    return time.perf_counter() - started


def _settled(server: Server, watermarks: Engine) -> None:
    """Each run starts with nothing left to project and nothing left to derive."""
    _graph_caught_up(watermarks)
    _quiet(server)


def http_config(backend: str, workers: int, single_file: Path, batch_file: Path,
                size: dict[str, int]) -> dict[str, Any]:
    """All HTTP figures for one (backend, workers) on a fresh store."""
    warm, n8, n1, nb = size["warm"], size["http8"], size["single"], size["batches"]
    with store(backend, f"w{workers}") as url:
        server = Server(url, workers=workers)
        from lineage.store.db import create_store_engine

        watermarks = create_store_engine(url)
        started = time.perf_counter()
        server.start()
        startup = time.perf_counter() - started
        try:
            port = server.port
            w = run_load(port, "/api/v1/lineage", single_file, clients=8, start=0, count=warm,
                         events_per_body=1, expect=(201,), server=server)
            _check(w, "warm-up")
            _settled(server, watermarks)
            r8 = run_load(port, "/api/v1/lineage", single_file, clients=8, start=warm, count=n8,
                          events_per_body=1, expect=(201,), server=server, max_seconds=size["http8_s"])
            _check(r8, "8 clients")
            log(f"  {backend} w{workers} 8 clients: {r8.events_per_s:,.0f} ev/s, "
                f"p99 {summary(r8.latencies_ms).get('p99')} ms, "
                f"server CPU {r8.server_cpu_s / r8.wall_s:.2f}, "
                f"loadgen CPU {r8.cpu_s / r8.wall_s:.2f} cores")
            _settled(server, watermarks)
            r1 = run_load(port, "/api/v1/lineage", single_file, clients=1, start=warm + n8, count=n1,
                          events_per_body=1, expect=(201,), server=server, max_seconds=size["single_s"])
            _check(r1, "1 client")
            s1 = summary(r1.latencies_ms)
            log(f"  {backend} w{workers} 1 client: p50 {s1['p50']} p95 {s1['p95']} p99 {s1['p99']} ms, "
                f"{r1.events_per_s:,.0f} ev/s")
            _settled(server, watermarks)
            b1 = run_load(port, "/api/v1/lineage/batch", batch_file, clients=1, start=0, count=nb,
                          events_per_body=BATCH_SIZE, expect=(200,), server=server,
                          max_seconds=size["batch_s"])
            _check(b1, "batch 1 client")
            # Two clients, BATCH_REPEATS times: whether the projector's burst deadline (1 s) falls
            # inside a run moves a run's figure by a third, so the median of several is reported.
            b2_runs: list[tuple[LoadResult, float]] = []
            for repeat in range(BATCH_REPEATS):
                _settled(server, watermarks)
                b2 = run_load(port, "/api/v1/lineage/batch", batch_file, clients=2, start=nb * (1 + repeat),
                              count=nb, events_per_body=BATCH_SIZE, expect=(200,), server=server,
                              max_seconds=size["batch_s"])
                _check(b2, "batch 2 clients")
                b2_runs.append((b2, _graph_caught_up(watermarks)))
            b2, caught_up = sorted(b2_runs, key=lambda run: run[0].events_per_s)[len(b2_runs) // 2]
            log(f"  {backend} w{workers} batch x{BATCH_SIZE}: 1 client {b1.events_per_s:,.0f} ev/s, "
                f"2 clients {' / '.join(f'{r.events_per_s:,.0f}' for r, _ in b2_runs)} ev/s; "
                f"graph caught up {caught_up:.2f} s later")
            log_tail = server.log_tail(15)
        finally:
            server.stop()
            watermarks.dispose()
        stored = _stored_events(url)
    expected = w.events + r8.events + r1.events + b1.events + sum(r.events for r, _ in b2_runs)
    return {
        "backend": backend, "workers": workers, "server_startup_s": round(startup, 2),
        "http_8_clients": r8.brief(), "http_1_client": r1.brief(),
        "batch_1_client": b1.brief(), "batch_2_clients": b2.brief(),
        "batch_2_clients_runs_events_per_s": [round(r.events_per_s, 1) for r, _ in b2_runs],
        "graph_caught_up_after_batches_s": round(caught_up, 3),
        "batch_2_clients_through_graph_events_per_s": round(b2.events / (b2.wall_s + caught_up), 1),
        "acknowledged_events": expected, "stored_events": stored,
        "all_acknowledged_stored": stored == expected,
        "server_log_tail": (log_tail if (r8.error or r1.error or b1.error or any(r.error for r, _ in b2_runs))
                            else None),
    }


def _best_batch(cfg: dict[str, Any]) -> tuple[float, str]:
    one, two = cfg["batch_1_client"]["events_per_s"], cfg["batch_2_clients"]["events_per_s"]
    runs = " / ".join(f"{r:,.0f}" for r in cfg.get("batch_2_clients_runs_events_per_s", [two]))
    return max(one, two), (f"1 client {one:,.0f}, 2 clients {two:,.0f} ev/s (median of {runs}); graph "
                           f"caught up {cfg['graph_caught_up_after_batches_s']:.2f} s after the last answer "
                           f"(2 clients through the graph: "
                           f"{cfg['batch_2_clients_through_graph_events_per_s']:,.0f} ev/s)")


def run(quick: bool = False) -> dict[str, Any]:
    info = run_info()  # the code measured is the code at the start of the section
    from lineage.synthetic import airflow_style_events

    size = SIZES["quick" if quick else "full"]
    backends = ["sqlite"] + (["postgres"] if pg_available() else [])
    n_single_total = size["warm"] + size["http8"] + size["single"]
    n_batch_total = (1 + BATCH_REPEATS) * size["batches"] * BATCH_SIZE
    log(f"ingest: generating {n_single_total + n_batch_total:,} Airflow-style events")
    events = airflow_style_events(n_single_total + n_batch_total, seed=7)
    bodies = [orjson.dumps(e) for e in events]
    del events
    lengths = sorted(len(b) for b in bodies)
    event_bytes = {"min": lengths[0], "p50": lengths[len(lengths) // 2], "max": lengths[-1],
                   "mean": round(sum(lengths) / len(lengths))}
    log(f"ingest: event sizes {event_bytes}")

    figures: dict[str, Any] = {"event_bytes": event_bytes, "sizes": size, "batch_size": BATCH_SIZE}
    measured = bodies[size["warm"]:]
    log(f"ingest: naive ORM baseline over up to {size['naive']:,} events / {size['naive_s']:.0f} s (SQLite)")
    figures["naive_sqlite"] = naive_baseline("sqlite", measured[: size["naive"]], size["naive_s"])
    log(f"  naive ORM SQLite: {figures['naive_sqlite']['events_per_s']:,.0f} ev/s")
    if "postgres" in backends:
        figures["naive_postgres"] = naive_baseline("postgres", measured[: size["naive"]], size["naive_s"])
        log(f"  naive ORM PostgreSQL: {figures['naive_postgres']['events_per_s']:,.0f} ev/s")

    batch_bodies = bodies[n_single_total:]
    log(f"ingest: in-process path (SQLite), {size['inproc']:,} events in chunks of {BATCH_SIZE}")
    figures["inprocess_sqlite"] = inprocess_path(batch_bodies[: size["inproc"]])
    log(f"  in-process: {figures['inprocess_sqlite']}")

    configs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="chaintrace-bench-bodies-") as folder:
        single_file = Path(folder) / "single.ndjson"
        batch_file = Path(folder) / "batch.ndjson"
        write_bodies(single_file, bodies[:n_single_total])
        write_bodies(batch_file, [b"[" + b",".join(batch_bodies[i:i + BATCH_SIZE]) + b"]"
                                  for i in range(0, len(batch_bodies), BATCH_SIZE)])
        del bodies
        log("ingest: the lean stand-in (calibration), 8 clients")
        try:
            figures["lean_standin"] = lean_standin(single_file, size)
            log(f"  stand-in: {figures['lean_standin']['http_8_clients']['events_per_s']:,.0f} ev/s")
        except Exception as exc:  # report and go on: the service's figures do not depend on it
            log(f"  stand-in FAILED: {exc}")
            figures["lean_standin"] = {"error": str(exc)}
        for backend in backends:
            for workers in (1, 2):
                log(f"ingest: HTTP on {backend}, --workers {workers}")
                try:
                    configs.append(http_config(backend, workers, single_file, batch_file, size))
                except Exception as exc:  # report and go on with the other configurations
                    log(f"  FAILED: {exc}")
                    configs.append({"backend": backend, "workers": workers, "error": str(exc)})
    figures["http"] = configs

    naive = figures["naive_sqlite"]["events_per_s"]
    standin = figures["lean_standin"].get("http_8_clients", {}).get("events_per_s")
    targets: list[Target] = [Target(
        "A0.standin", "A0 lean stand-in, 8 clients (calibration; issue: 4,200-4,900 events/s)", standin,
        None, "events/s", note=figures["lean_standin"].get("error", "bare ASGI + compiled validation + "
                                                           "one SQLite insert per event, 2 processes"))]
    for cfg in configs:
        backend, workers = cfg["backend"], cfg["workers"]
        tag = f"{'SQLite' if backend == 'sqlite' else 'PostgreSQL'}, --workers {workers}"
        ok = "error" not in cfg
        on_sqlite = backend == "sqlite"
        ev8 = cfg["http_8_clients"]["events_per_s"] if ok else None
        p99 = cfg["http_1_client"]["latency_ms"]["p99"] if ok else None
        best, note = _best_batch(cfg) if ok else (None, cfg.get("error", ""))
        cpu = (f"server CPU {cfg['http_8_clients']['server_cpu_share']} cores, load generator "
               f"{cfg['http_8_clients']['loadgen_cpu_share']} cores") if ok else cfg.get("error", "")
        targets.append(Target(f"A1.{backend}.w{workers}", f"A1 HTTP ingest, 8 clients ({tag})", ev8,
                              3000 if on_sqlite else None, "events/s", note=cpu))
        targets.append(Target(f"A2.{backend}.w{workers}", f"A2 single-client p99 latency ({tag})", p99,
                              10 if on_sqlite else None, "ms", higher_is_better=False,
                              note=(f"p50 {cfg['http_1_client']['latency_ms']['p50']} ms" if ok else "")))
        targets.append(Target(f"A3.{backend}.w{workers}", f"A3 batch endpoint x{BATCH_SIZE} ({tag})", best,
                              10_000 if on_sqlite else None, "events/s", note=note))
        if on_sqlite and ok:
            targets.append(Target(f"A4.{backend}.w{workers}",
                                  f"A4 batch endpoint / naive ORM baseline ({tag})",
                                  round(best / naive, 2), 10, "x",
                                  note=f"naive ORM {naive:,.0f} ev/s over "
                                       f"{figures['naive_sqlite']['events']:,} events"))
            targets.append(Target(f"A4h.{backend}.w{workers}",
                                  f"A4 HTTP 8 clients / naive ORM baseline ({tag})",
                                  round(ev8 / naive, 2), None, "x"))
            if standin:
                targets.append(Target(f"A1s.{backend}.w{workers}",
                                      f"A1 / lean stand-in, same load and machine ({tag})",
                                      round(ev8 / standin, 2), None, "x"))
    if "naive_postgres" in figures:
        naive_pg = figures["naive_postgres"]["events_per_s"]
        for cfg in configs:
            if cfg["backend"] == "postgres" and "error" not in cfg:
                best, _ = _best_batch(cfg)
                targets.append(Target(f"A4.postgres.w{cfg['workers']}",
                                      f"A4 batch / naive ORM on PostgreSQL (--workers {cfg['workers']})",
                                      round(best / naive_pg, 2), None, "x",
                                      note=f"naive ORM PostgreSQL {naive_pg:,.0f} ev/s"))
    inproc = figures["inprocess_sqlite"]
    targets.append(Target("A.inproc", "in-process batch path, SQLite (no HTTP)",
                          figures["inprocess_sqlite"]["events_per_s"], None, "events/s",
                          note=(f"parse+validate {inproc['parse_validate_events_per_s']:,.0f} ev/s, "
                                f"store transaction {inproc['write_events_per_s']:,.0f} ev/s")))
    return finish_section("ingest", "A. ingest", figures, targets, quick=quick, info=info)
