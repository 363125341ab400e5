"""A Celery worker SIGKILLed in the middle of a task: Airflow retries the task on another worker, the
lineage shows the lost try and the retry as two runs of one job, both ended, and no product is left
half written.

"Worker killed" is read as the machine or container going away: the worker's whole process group (the
Celery main process and the task process it forked) gets SIGKILL, so nothing can report. A replacement
worker starts, as an orchestrator would restart the container. The scheduler notices the lost task
after its heartbeat timeout (30 s here, CELERY_TEST_TIMING) and puts it up for retry (retries=1 on every
stage's run task, dag_factory.py).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest

if TYPE_CHECKING:
    from conftest import ScaleOut

# The first test waits for the session: the stack and all its runs (minutes, longer on a busy machine).
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(1800)]
DAG = "flights"
KILL_RUN = "scaleout_worker_killed"
# flights' store stage: about 2 s of work (reading the landed CSVs, writing five Parquet tables into the
# raw zone) between its START event and its end, the longest window of the stage tasks (gates are
# longer but have retries=0, so a lost gate fails the run). Killed right after its START is emitted.
VICTIM = "store.run"
START_LINE = "Successfully emitted OpenLineage `START` event"


def _wait_started(scaleout: ScaleOut, timeout: float = 600) -> dict[str, Any]:
    """The victim's task instance, as soon as its first try has emitted START (read from its log)."""
    log = (scaleout.session.stack.home / "logs" / f"dag_id={DAG}" / f"run_id={KILL_RUN}"
           / f"task_id={VICTIM}" / "attempt=1.log")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and START_LINE in log.read_text(errors="replace"):
            ti = next(t for t in scaleout.client.task_instances(DAG, KILL_RUN) if t["task_id"] == VICTIM)
            assert ti["state"] == "running" and ti["hostname"], f"{VICTIM} is {ti['state']}, not running"
            return ti
        time.sleep(0.05)
    scaleout.session.stack.check_alive()
    raise TimeoutError(f"{VICTIM} of {KILL_RUN} never started")


@pytest.fixture(scope="module")
def killed(scaleout: ScaleOut, scaleout_runs: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Trigger a flights run, SIGKILL the worker running its serve task, start a replacement, wait."""
    session = scaleout.session
    session.client.trigger(DAG, KILL_RUN)
    victim = _wait_started(scaleout)
    worker = str(victim["hostname"])
    session.stack.kill_worker(worker)
    session.stack.start_worker("worker-3")
    final = session.wait_runs({DAG: KILL_RUN}, timeout=600)[DAG]
    session.lineage.wait_projected(timeout=120)
    return {"worker": worker, "victim": victim, "run": final}


def test_the_run_succeeds_after_the_task_is_retried_elsewhere(
    scaleout: ScaleOut, killed: dict[str, Any]
) -> None:
    assert killed["run"]["state"] == "success"
    tries = scaleout.client.task_instance_tries(DAG, KILL_RUN, VICTIM)
    by_number = {int(t["try_number"]): t for t in tries}
    assert sorted(by_number) == [1, 2], tries
    assert by_number[1]["hostname"] == killed["worker"]
    assert by_number[1]["state"] != "success"
    assert by_number[2]["state"] == "success"
    assert by_number[2]["hostname"] != killed["worker"]


def _provider_run_id(scaleout: ScaleOut, try_number: int) -> str:
    """The OpenLineage run id the provider gives a try (openlineage provider utils, same inputs)."""
    from airflow.sdk.timezone import parse
    from openlineage.client.uuid import generate_static_uuid

    run = scaleout.client.dag_run(DAG, KILL_RUN)
    date = parse(run["logical_date"] or run["run_after"])
    namespace = scaleout.session.stack.environment()["AIRFLOW__OPENLINEAGE__NAMESPACE"]
    data = f"{namespace}.{DAG}.{VICTIM}.{try_number}.-1".encode()
    return str(generate_static_uuid(instant=date, data=data))


def test_the_lineage_shows_the_lost_try_and_the_retry_as_two_ended_runs_of_one_job(
    scaleout: ScaleOut, killed: dict[str, Any]
) -> None:
    job = f"{DAG}.{VICTIM}"
    lost, retry = _provider_run_id(scaleout, 1), _provider_run_id(scaleout, 2)
    events = [e for e in scaleout.events() if e["job"]["name"] == job
              and (scaleout.airflow_run_id(e) == KILL_RUN or e["run"]["runId"] in (lost, retry))]
    by_run: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_run.setdefault(event["run"]["runId"], []).append(event)
    assert set(by_run) == {lost, retry}, {run: [e["eventType"] for e in evs] for run, evs in by_run.items()}
    assert sorted(e["eventType"] for e in by_run[retry]) == ["COMPLETE", "START"]
    lost_types = sorted(e["eventType"] for e in by_run[lost])
    # START from the try itself; FAIL from the scheduler's heartbeat-timeout handling (its OpenLineage
    # listener), and from the retry's previous_try when its ledger shows the try never ended.
    assert lost_types.count("START") == 1 and set(lost_types) == {"START", "FAIL"}, lost_types
    fails = [e for e in by_run[lost] if e["eventType"] == "FAIL"]
    assert any("errorMessage" in e["run"]["facets"] for e in fails), "no FAIL says why the try failed"
    latest_fail = max(fails, key=lambda e: datetime.fromisoformat(e["eventTime"].replace("Z", "+00:00")))
    with scaleout.lineage() as client:
        states = {}
        for run_id in (lost, retry):
            answer = client.get(f"/api/v1/jobs/runs/{run_id}")
            answer.raise_for_status()
            states[run_id] = answer.json()
        assert {run_id: run["state"] for run_id, run in states.items()} == {
            lost: "FAILED", retry: "COMPLETED"}
        # The store keeps the latest terminal event: a FAIL previous_try sends never hides a real one.
        ended = datetime.fromisoformat(states[lost]["endedAt"].replace("Z", "+00:00"))
        assert ended == datetime.fromisoformat(latest_fail["eventTime"].replace("Z", "+00:00"))
        # One job holds both runs.
        path = f"/api/v1/namespaces/chaintrace/jobs/{quote(job, safe='')}/runs"
        runs = client.get(path, params={"limit": 100}).json()["runs"]
        assert {lost, retry} <= {run["id"] for run in runs}


def test_no_product_is_left_half_written(scaleout: ScaleOut, killed: dict[str, Any]) -> None:
    """Every file a reader can see in the zones the chain writes as Parquet (the killed try was writing
    the raw zone; the service zone holds the published products) opens whole; temporary files, if a
    killed write left any, are hidden (a dot name) and never taken for a product."""
    root = scaleout.session.data_root
    checked = 0
    for zone in ("raw", "processed", "analysis", "service"):
        for path in (root / zone).rglob("*"):
            if not path.is_file() or any(part.startswith(".") for part in path.relative_to(root).parts):
                continue
            assert path.suffix == ".parquet", f"not a product: {path}"
            assert "tmp" not in path.name, f"a temporary file is visible as a product: {path}"
            pq.read_metadata(path)  # a half-written file has no footer and fails here
            checked += 1
    assert checked
    # The retry wrote this run's raw tables, and the run published its products.
    assert list((root / "raw" / DAG).glob(f"*/run={KILL_RUN}/part.parquet"))
    assert list((root / "service" / DAG).glob(f"*/run={KILL_RUN}/part.parquet"))
