"""Real chain events for the report tests: two DAG runs of covid_testing run in-process.

The ``good`` run passes every gate. The ``bad`` run gets nulls written into its analyze output before the
analyze gate, which fails (not-null on ``n_tests``), quarantines the batch and stops the chain, as in
Airflow: serve never runs. The events are the operators' own (``stage_lineage``/``gate_lineage``), with
the parent facet the Airflow provider adds pointing at the DAG run, and one START/COMPLETE (or FAIL) of
the DAG itself. They are built once per session and ingested into each backend once per module.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.serde import Serde
from sqlalchemy import create_engine, text

from chaintrace_chain.lineage_build import gate_lineage, stage_lineage
from chaintrace_chain.quality import GateFailed, gate_stage
from chaintrace_chain.spec import all_specs
from chaintrace_chain.stages import run_stage
from chaintrace_chain.zones import STAGES, Zones
from lineage.api import routes_reports
from lineage.api.app import create_app
from lineage.context import LineageContext
from lineage.settings import LineageSettings
from lineage.store.keys import create_key
from lineage.synthetic_chain import parent_facet

DATASET = "covid_testing"
FAILING_STAGE = "analyze"
FAILING_COLUMN = "n_tests"
PRODUCER = "https://example.org/chaintrace-tests"


@dataclass
class ChainRuns:
    events: list[dict[str, Any]]
    good: str  # DAG run ids
    bad: str
    failed_gate: str  # the job name of the gate that failed
    zones: Zones
    dataset: str = DATASET
    failing_stage: str = FAILING_STAGE
    failing_column: str = FAILING_COLUMN


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)

    def tick(self) -> str:
        self.now += timedelta(seconds=1)
        return self.now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _event(clock: _Clock, job: str, state: RunState, lineage: Any, run_id: str,
           dag_run: str) -> dict[str, Any]:
    event = RunEvent(
        eventType=state, eventTime=clock.tick(), run=Run(runId=run_id, facets=lineage.run_facets),
        job=Job(namespace="chaintrace", name=job, facets=lineage.job_facets),
        inputs=lineage.inputs, outputs=lineage.outputs, producer=PRODUCER,
    )
    out: dict[str, Any] = orjson.loads(Serde.to_json(event))
    out["run"]["facets"]["parent"] = parent_facet(dag_run, ("chaintrace", DATASET))
    return out


def _dag_event(clock: _Clock, state: str, dag_run: str) -> dict[str, Any]:
    return {"eventType": state, "eventTime": clock.tick(), "producer": PRODUCER,
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
            "run": {"runId": dag_run, "facets": {}}, "job": {"namespace": "chaintrace", "name": DATASET},
            "inputs": [], "outputs": []}


def _corrupt(zones: Zones, run: str) -> None:
    """Nulls in the first table the analyze gate validates: its not-null check must fail."""
    from chaintrace_chain.stages import load_report

    report = load_report(zones, DATASET, run, FAILING_STAGE)
    path = Path(report.outputs[0].file)
    frame = pd.read_parquet(path)
    frame[FAILING_COLUMN] = frame[FAILING_COLUMN].astype("Float64")
    frame.loc[frame.index[:3], FAILING_COLUMN] = None
    frame.to_parquet(path)


def _dag_run(zones: Zones, clock: _Clock, run: str, *, fail: bool) -> tuple[str, list[dict[str, Any]], str]:
    spec = {s.name: s for s in all_specs()}[DATASET]
    dag_run = str(uuid.uuid4())
    events = [_dag_event(clock, "START", dag_run)]
    failed_gate = ""
    for stage in STAGES:
        report = run_stage(spec, stage, zones=zones, run=run)
        events.append(_event(clock, f"{DATASET}.{stage}.run", RunState.COMPLETE,
                             stage_lineage(spec, report, zones), str(uuid.uuid4()), dag_run))
        if fail and stage == FAILING_STAGE:
            _corrupt(zones, run)
        try:
            gate_stage(spec, stage, zones=zones, run=run)
            state = RunState.COMPLETE
        except GateFailed:
            state = RunState.FAIL
        job = f"{DATASET}.{stage}.gate"
        events.append(_event(clock, job, state, gate_lineage(spec, stage, run, zones), str(uuid.uuid4()),
                             dag_run))
        if state == RunState.FAIL:
            failed_gate = job
            break
    events.append(_dag_event(clock, "FAIL" if failed_gate else "COMPLETE", dag_run))
    return dag_run, events, failed_gate


@pytest.fixture(scope="session")
def chain_runs(tmp_path_factory: pytest.TempPathFactory) -> ChainRuns:
    zones = Zones.at(tmp_path_factory.mktemp("report-zones"))
    clock = _Clock()
    good, good_events, none_failed = _dag_run(zones, clock, "good", fail=False)
    assert not none_failed
    bad, bad_events, failed_gate = _dag_run(zones, clock, "bad", fail=True)
    assert failed_gate == f"{DATASET}.{FAILING_STAGE}.gate"
    return ChainRuns(good_events + bad_events, good, bad, failed_gate, zones)


@dataclass
class ReportService:
    client: TestClient  # sends an admin key
    context: LineageContext


def build_report_app(context: LineageContext) -> Any:
    app = create_app(context)
    app.include_router(routes_reports.router)
    return app


def _store_url(backend: str, root: Path, request: pytest.FixtureRequest) -> str:
    """A SQLite file, or the session's PostgreSQL database emptied (as tests/conftest.py does)."""
    if backend == "sqlite":
        return f"sqlite:///{root / 'lineage.db'}"
    url: str = request.getfixturevalue("pg_database_url")
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            chain_runs: ChainRuns) -> Iterator[ReportService]:
    """The lineage service with the reports router, every chain event ingested; once per backend."""
    root = tmp_path_factory.mktemp(f"report-store-{request.param}")
    url = _store_url(request.param, root, request)
    context = LineageContext.build(LineageSettings(db_url=url, data_root=root))
    context.start()
    _key, token = create_key(context.engine, name=f"report-admin-{uuid.uuid4().hex[:6]}", role="admin")
    with TestClient(build_report_app(context), headers={"Authorization": f"Bearer {token}"}) as client:
        for event in chain_runs.events:
            answer = client.post("/api/v1/lineage", json=event)
            assert answer.status_code == 201, answer.text
        yield ReportService(client, context)
    context.close()
