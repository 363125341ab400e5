"""K. A backfill of the flights DAG on Celery: task runs per minute with two Celery workers versus the
LocalExecutor on the same machine, and the lineage service's ingest lag while it runs.

Both sessions run the same backfill (``BACKFILL_DAYS`` logical dates of ``flights``, at most
``MAX_ACTIVE_RUNS`` runs at once) in a fresh data root, with the lineage service on its own process:

- celery: docker-compose.yml's shape outside Docker (``AirflowStack(executor="celery")``): Redis broker
  (a database of its own on 127.0.0.1:6379), throw-away PostgreSQL databases for Airflow's metadata and
  for the lineage store, two ``airflow celery worker`` processes (concurrency ``CONCURRENCY`` each);
- BASELINE, measured in this run: LocalExecutor on SQLite as ``chaintrace demo`` runs it, with the same
  task slots (parallelism = workers x concurrency) and a SQLite lineage store.

Throughput: task instances that ended (success) per minute of wall time, from the backfill's creation
to its last run terminal. Before that, the DAG is unpaused (a paused DAG's backfill runs stay queued)
and the scheduled run this creates is left to finish, so only the backfill's runs share the workers.
Ingest lag: a poller asks ``/api/v1/events/lineage`` every ``POLL_S`` for the events stamped since it
began and records when each was first queryable; lag = that moment minus the event's ``eventTime``
(the provider stamps it as it builds the event; a START's is the try's start). The poll interval
bounds the resolution (a figure is up to ``POLL_S`` late).

``celery_chain`` and ``local_chain`` are also what tests/scaleout starts.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    Target,
    log,
    print_targets,
    run_info,
    targets_json,
    throwaway_pg_database,
    write_section,
)
from chaintrace_chain.spec_copies import triggered_spec_dir

BACKFILL_DAG = "flights"
BACKFILL_DAYS = 10
BACKFILL_FROM = datetime(2026, 1, 1, tzinfo=UTC)
MAX_ACTIVE_RUNS = 4
WORKERS = 2
CONCURRENCY = 1  # the solo pool: one task per worker (see AirflowStack CELERY_SETTINGS)
POLL_S = 0.25
PG_ADMIN_URL = os.environ.get(
    "CHAINTRACE_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("CHAINTRACE_TEST_REDIS_URL", "redis://127.0.0.1:6379")


# ------------------------------------------------------------------------------------- the two stacks
def make_spec_dir(target: Path, *, flights_file: Path | None = None) -> Path:
    """The shipped specs run only when triggered, except the backfilled DAG, which keeps its daily
    schedule (a backfill follows the schedule)."""
    return triggered_spec_dir(target, scheduled={BACKFILL_DAG}, flights_file=flights_file)


@contextlib.contextmanager
def throwaway_redis_db() -> Iterator[str]:
    """A broker URL on an empty Redis database (1-15; 0 is left to others), emptied on exit, so that two
    stacks on one machine never take each other's task messages."""
    import redis

    for index in range(1, 16):
        client = redis.Redis.from_url(f"{REDIS_URL}/{index}")
        # SETNX of a claim key: two sessions starting at once cannot pick the same database.
        if client.dbsize() == 0 and client.set("chaintrace:claimed", str(os.getpid()), nx=True):
            try:
                yield f"{REDIS_URL}/{index}"
            finally:
                client.flushdb()
                client.close()
            return
        client.close()
    raise RuntimeError(f"no empty Redis database left on {REDIS_URL} (1-15 all hold keys)")


@contextlib.contextmanager
def celery_chain(root: Path, spec_dir: Path, dag_ids: list[str], *, workers: int = WORKERS,
                 concurrency: int = CONCURRENCY) -> Iterator[Any]:
    """docker-compose.yml's services outside Docker, started and healthy: a ``ChainSession`` whose
    Airflow runs on Celery (Redis, PostgreSQL) and whose lineage service stores in PostgreSQL."""
    from chaintrace_cli.airflow_stack import AirflowStack, CeleryBackends
    from chaintrace_cli.chain_session import ChainSession

    with (throwaway_pg_database("ct_airflow", PG_ADMIN_URL) as airflow_db,
          throwaway_pg_database("ct_lineage", PG_ADMIN_URL) as lineage_db, throwaway_redis_db() as broker):
        session = ChainSession(root, spec_dir=spec_dir, parallelism=workers * concurrency)
        session.lineage.db_url = lineage_db
        local = session.stack
        session.stack = AirflowStack(
            home=local.home, data_root=local.data_root, api_port=local.api_port,
            lineage_url=local.lineage_url, spool_dir=local.spool_dir, spec_dir=local.spec_dir,
            parallelism=local.parallelism,
            executor="celery",
            celery=CeleryBackends(airflow_db, broker, workers=workers, worker_concurrency=concurrency),
        )
        session.client.close()
        session.client = session.stack.client()
        try:
            session.start(dag_ids)
            yield session
        finally:
            session.stop()


@contextlib.contextmanager
def local_chain(root: Path, spec_dir: Path, dag_ids: list[str], *, parallelism: int) -> Iterator[Any]:
    """The baseline: LocalExecutor on SQLite, as ``chaintrace demo`` runs it."""
    from chaintrace_cli.chain_session import ChainSession

    session = ChainSession(root, spec_dir=spec_dir, parallelism=parallelism)
    try:
        session.start(dag_ids)
        yield session
    finally:
        session.stop()


# ------------------------------------------------------------------------------------------ backfill
def backfill_run_ids(client: Any, dag_id: str) -> list[str]:
    return sorted(run["dag_run_id"] for run in client.dag_runs(dag_id) if run["run_type"] == "backfill")


def run_backfill(session: Any, *, days: int = BACKFILL_DAYS, max_active_runs: int = MAX_ACTIVE_RUNS,
                 timeout: float = 1800) -> dict[str, dict[str, Any]]:
    """Backfill ``days`` daily logical dates of the flights DAG and wait for every run; run id -> run."""
    client = session.client
    last = BACKFILL_FROM + timedelta(days=days - 1)
    client.create_backfill(BACKFILL_DAG, BACKFILL_FROM.isoformat(), last.isoformat(), max_active_runs)
    # Airflow 3.3 leaves the runs of a paused DAG's backfill queued (the DAG starts paused).
    client.set_paused(BACKFILL_DAG, False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session.stack.check_alive()
        runs = {run["dag_run_id"]: run for run in client.dag_runs(BACKFILL_DAG)
                if run["run_type"] == "backfill"}
        if len(runs) >= days and all(run["state"] in ("success", "failed") for run in runs.values()):
            return runs
        time.sleep(2)
    raise TimeoutError(f"the backfill of {BACKFILL_DAG} did not finish within {timeout:.0f} s")


class IngestLagProbe:
    """Polls the lineage API in a thread; records when each event was first queryable."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self._http = httpx.Client(base_url=url, headers=headers, timeout=30)
        self._stop = threading.Event()
        # Events stamped before the probe began were stored before it could see them: not counted.
        self.since = datetime.now(UTC)
        self.first_seen: dict[tuple[str, str, str], tuple[float, datetime]] = {}
        self._thread = threading.Thread(target=self._loop, name="ingest-lag-probe", daemon=True)

    def __enter__(self) -> IngestLagProbe:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._http.close()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            after = self.since.isoformat()
            with contextlib.suppress(httpx.HTTPError, ValueError):
                page = self._http.get("/api/v1/events/lineage", params={"after": after, "limit": 2000}).json()
                now = time.time()
                for event in page["events"]:
                    key = (event["run"]["runId"], event["eventType"], event["eventTime"])
                    if key not in self.first_seen:
                        self.first_seen[key] = (now, datetime.fromisoformat(event["eventTime"]))

    def lags_ms(self) -> list[float]:
        return sorted(max(0.0, (seen - stamped.timestamp()) * 1000)
                      for seen, stamped in self.first_seen.values())


def _percentile(values: list[float], percent: int) -> float:
    """Nearest-rank percentile of sorted ``values`` (NaN when there are none)."""
    if not values:
        return float("nan")
    rank = max(1, -(-percent * len(values) // 100))  # ceil(percent/100 * n)
    return values[rank - 1]


def _wait_scheduled_run(session: Any, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session.stack.check_alive()
        scheduled = [run for run in session.client.dag_runs(BACKFILL_DAG) if run["run_type"] == "scheduled"]
        if scheduled and all(run["state"] in ("success", "failed") for run in scheduled):
            return
        time.sleep(2)
    raise TimeoutError(f"the scheduled run of {BACKFILL_DAG} did not finish within {timeout:.0f} s")


def measure(label: str, chain: Any) -> dict[str, Any]:
    """Start a stack, backfill, measure; the figures of one session."""
    with chain as session:
        # Unpausing the DAG (a backfill's runs wait while it is paused) makes its latest scheduled run:
        # let that one finish first, so only the backfill's runs share the workers while it is timed.
        session.client.set_paused(BACKFILL_DAG, False)
        _wait_scheduled_run(session)
        log(f"  {label}: stack up; backfilling {BACKFILL_DAYS} dates of {BACKFILL_DAG}")
        with IngestLagProbe(session.lineage.url, session.lineage.headers()) as probe:
            t0 = time.perf_counter()
            runs = run_backfill(session)
            wall_s = time.perf_counter() - t0
            session.lineage.wait_projected()
            time.sleep(3 * POLL_S)  # the probe sees the last events
        tasks = [ti for run_id in runs for ti in session.client.task_instances(BACKFILL_DAG, run_id)]
        hosts = sorted({str(ti.get("hostname")) for ti in tasks})
    states = {run_id: run["state"] for run_id, run in runs.items()}
    done = [ti for ti in tasks if ti["state"] == "success"]
    lags = probe.lags_ms()
    lag = {"p50": round(_percentile(lags, 50), 1), "p99": round(_percentile(lags, 99), 1),
           "max": round(lags[-1], 1) if lags else None}
    result: dict[str, Any] = {
        "wall_s": round(wall_s, 1), "runs": len(runs), "states": states, "task_runs": len(done),
        "task_runs_per_min": round(len(done) / wall_s * 60, 2), "hosts": hosts, "events_seen": len(lags),
        "ingest_lag_ms": lag}
    log(f"  {label}: {result['task_runs']} task runs in {wall_s:.1f} s = {result['task_runs_per_min']}/min; "
        f"ingest lag p50 {result['ingest_lag_ms']['p50']} ms, p99 {result['ingest_lag_ms']['p99']} ms "
        f"over {len(lags)} events; task hosts {hosts}")
    failed = {run_id: state for run_id, state in states.items() if state != "success"}
    if failed or len(runs) != BACKFILL_DAYS:
        raise AssertionError(f"{label}: backfill runs {states} (want {BACKFILL_DAYS}, all success)")
    return result


def run(quick: bool = False) -> dict[str, Any]:
    info = run_info()
    from chaintrace_chain.spec import all_specs

    dag_ids = [spec.name for spec in all_specs()]
    slots = WORKERS * CONCURRENCY
    log(f"backfill: {BACKFILL_DAYS} dates of {BACKFILL_DAG}, max {MAX_ACTIVE_RUNS} runs at once; "
        f"Celery ({WORKERS} workers x {CONCURRENCY}) vs LocalExecutor (parallelism {slots})")
    with tempfile.TemporaryDirectory(prefix="chaintrace-bench-backfill-") as folder:
        root = Path(folder)
        spec_dir = make_spec_dir(root / "specs")
        celery = measure("celery", celery_chain(root / "celery", spec_dir, dag_ids))
        local = measure("local", local_chain(root / "local", spec_dir, dag_ids, parallelism=slots))
    ratio = celery["task_runs_per_min"] / local["task_runs_per_min"]
    log(f"  throughput: Celery {celery['task_runs_per_min']}/min vs LocalExecutor "
        f"{local['task_runs_per_min']}/min = {ratio:.2f}x on {os.cpu_count()} CPUs shared with other work")
    targets = [
        Target("K.celery", "K backfill task runs per minute, 2 Celery workers", celery["task_runs_per_min"],
               None, "/min", note=f"{BACKFILL_DAYS} runs of {BACKFILL_DAG}, {celery['wall_s']} s wall, "
               f"{WORKERS} workers x {CONCURRENCY} slots, PostgreSQL + Redis"),
        Target("K.ratio", "K backfill throughput, Celery / LocalExecutor (same slots, same machine)",
               round(ratio, 2), None, "x", note=f"LocalExecutor on SQLite: {local['task_runs_per_min']}/min, "
               f"{local['wall_s']} s wall"),
        Target("K.lag_p99", "K lineage ingest lag p99 during the Celery backfill",
               celery["ingest_lag_ms"]["p99"], None, "ms", higher_is_better=False,
               note=f"p50 {celery['ingest_lag_ms']['p50']} ms over {celery['events_seen']} events; polled "
               f"every {POLL_S * 1000:.0f} ms; LocalExecutor session p99 {local['ingest_lag_ms']['p99']} ms"),
    ]
    print_targets("K. backfill on Celery", targets)
    data = {"figures": {"celery": celery, "local": local, "ratio": round(ratio, 3)},
            "targets": targets_json(targets)}
    path = write_section("backfill", data, quick=quick, info=info)
    log(f"backfill: results merged into {path}")
    return data
