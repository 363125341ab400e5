"""Two Celery workers: every dataset DAG and a 10-date backfill of flights run green, on both workers,
and the lineage store holds a complete, correct lineage of every run."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from chaintrace_chain.stages import load_report
from chaintrace_chain.zones import STAGES, Zones, run_key

if TYPE_CHECKING:
    from conftest import ScaleOut

# The first test waits for the session: the stack and all its runs (minutes, longer on a busy machine).
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(1800)]
TASKS_PER_RUN = 2 * len(STAGES)  # a run and a gate per stage


def _all_runs(runs: dict[str, dict[str, str]]) -> list[tuple[str, str]]:
    return [(dag_id, run_id) for dag_id, by_run in runs.items() for run_id in by_run]


def test_every_dataset_dag_and_every_backfill_date_succeeds(
    scaleout: ScaleOut, scaleout_runs: dict[str, dict[str, str]]
) -> None:
    assert set(scaleout_runs) == set(scaleout.datasets)
    backfill = [run_id for run_id in scaleout_runs["flights"] if run_id.startswith("backfill__")]
    assert len(backfill) == scaleout.backfill_days, sorted(scaleout_runs["flights"])
    # The flights run of "every dataset DAG" is the scheduled one its unpausing created.
    assert any(run_id.startswith("scheduled__") for run_id in scaleout_runs["flights"])
    failed = {(dag, run): state for dag, by_run in scaleout_runs.items() for run, state in by_run.items()
              if state != "success"}
    assert not failed


def test_tasks_ran_on_both_celery_workers(
    scaleout: ScaleOut, scaleout_runs: dict[str, dict[str, str]]
) -> None:
    hosts: dict[str, int] = defaultdict(int)
    for dag_id, run_id in _all_runs(scaleout_runs):
        for ti in scaleout.client.task_instances(dag_id, run_id):
            hosts[str(ti["hostname"])] += 1
    assert set(hosts) == {"worker-1", "worker-2"}, dict(hosts)
    assert sum(hosts.values()) == TASKS_PER_RUN * len(_all_runs(scaleout_runs))


def _events_by_airflow_run(scaleout: ScaleOut) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in scaleout.events():
        grouped[f"{event['job']['name'].split('.')[0]}/{scaleout.airflow_run_id(event)}"].append(event)
    return grouped


def test_every_run_has_its_events_counted_and_every_openlineage_run_ended(
    scaleout: ScaleOut, scaleout_runs: dict[str, dict[str, str]]
) -> None:
    grouped = _events_by_airflow_run(scaleout)
    for dag_id, run_id in _all_runs(scaleout_runs):
        events = grouped[f"{dag_id}/{run_id}"]
        tries = sum(int(ti["try_number"]) for ti in scaleout.client.task_instances(dag_id, run_id))
        by_ol_run: dict[str, list[str]] = defaultdict(list)
        jobs: dict[str, set[str]] = defaultdict(set)
        for event in events:
            by_ol_run[event["run"]["runId"]].append(event["eventType"])
            jobs[event["job"]["name"]].add(event["run"]["runId"])
        # One OpenLineage run for the DAG run and one per task try, each a START and one terminal event.
        assert len(by_ol_run) == 1 + tries, (dag_id, run_id, dict(jobs))
        assert len(events) == 2 * (1 + tries), (dag_id, run_id, len(events))
        for ol_run, types in by_ol_run.items():
            assert sorted(types) == ["COMPLETE", "START"], (dag_id, run_id, ol_run, types)
        expected_jobs = {dag_id} | {f"{dag_id}.{stage}.{kind}" for stage in STAGES
                                    for kind in ("run", "gate")}
        assert set(jobs) == expected_jobs


def test_the_store_agrees_every_run_ended(
    scaleout: ScaleOut, scaleout_runs: dict[str, dict[str, str]]
) -> None:
    """The projected graph, not only the raw log: no run of any chain job is left without a terminal state."""
    with scaleout.lineage() as client:
        for dag_id in scaleout.datasets:
            for stage in STAGES:
                job = quote(f"{dag_id}.{stage}.run", safe="")
                runs = client.get(f"/api/v1/namespaces/chaintrace/jobs/{job}/runs", params={"limit": 100})
                runs.raise_for_status()
                states = [run["state"] for run in runs.json()["runs"]]
                assert states and set(states) == {"COMPLETED"}, (dag_id, stage, states)
                assert len(states) == len(scaleout_runs[dag_id]), (dag_id, stage, len(states))


def test_the_graph_has_every_stage_output_of_every_run(
    scaleout: ScaleOut, scaleout_runs: dict[str, dict[str, str]]
) -> None:
    zones = Zones.at(scaleout.session.data_root)
    grouped = _events_by_airflow_run(scaleout)
    with scaleout.lineage() as client:
        seen_datasets: set[str] = set()
        for dag_id, run_id in _all_runs(scaleout_runs):
            completes = {e["job"]["name"]: e for e in grouped[f"{dag_id}/{run_id}"]
                         if e["eventType"] == "COMPLETE"}
            for stage in STAGES:
                report = load_report(zones, dag_id, run_key(run_id), stage)
                expected = {output.folder for output in report.outputs}
                event = completes[f"{dag_id}.{stage}.run"]
                assert {output["name"] for output in event["outputs"]} >= expected, (dag_id, run_id, stage)
                seen_datasets |= expected
        for name in sorted(seen_datasets):
            found = client.get(f"/api/v1/namespaces/file/datasets/{quote(name, safe='')}")
            assert found.status_code == 200, name
