"""Bulk node loaders (lineage.store.nodes): many keys at once, chunking, missing keys, job version ids."""

from __future__ import annotations

import uuid
from typing import Any

from lineage.context import LineageContext
from lineage.store.nodes import job_version_id, load_datasets, load_jobs, load_runs

PRODUCER = "https://github.com/chaintrace/tests"


def run_event(
    job: str, minute: int, outputs: list[dict[str, Any]], inputs: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "eventType": "COMPLETE", "eventTime": f"2026-03-01T10:{minute:02d}:00Z", "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": str(uuid.uuid4())}, "job": {"namespace": "bulk", "name": job},
        "inputs": inputs, "outputs": outputs,
    }


def test_loaders_answer_many_keys_across_chunks_and_skip_missing(context: LineageContext) -> None:
    # 1,200 datasets and 600 jobs: more than two IN-list chunks of 500 each.
    events = []
    for j in range(600):
        outputs = [{"namespace": "wh", "name": f"t{j}_{k}"} for k in range(2)]
        inputs = [{"namespace": "wh", "name": f"t{j - 1}_0"}] if j else []
        events.append(run_event(f"job{j}", j % 60, outputs, inputs))
    results = context.ingest.ingest_sync(events)
    assert all(r.accepted for r in results)
    dataset_keys = [("wh", f"t{j}_{k}") for j in range(600) for k in range(2)]
    job_keys = [("bulk", f"job{j}") for j in range(600)]
    with context.engine.connect() as connection:
        datasets = load_datasets(connection, [*dataset_keys, ("wh", "missing"), ("nope", "t0_0")])
        jobs = load_jobs(connection, {*job_keys, ("bulk", "missing")})
        single = load_datasets(connection, [("wh", "t7_1")])
        run_ids = [job["latestRun"]["id"] for job in jobs.values()]
        runs = load_runs(connection, [*run_ids, str(uuid.uuid4())])
    assert set(datasets) == set(dataset_keys)
    assert set(jobs) == set(job_keys)
    assert datasets[("wh", "t7_1")] == single[("wh", "t7_1")]
    assert all(d["currentVersion"] is not None for d in datasets.values())
    job = jobs[("bulk", "job5")]
    assert job["inputs"] == [{"namespace": "wh", "name": "t4_0"}]
    assert job["outputs"] == [{"namespace": "wh", "name": "t5_0"}, {"namespace": "wh", "name": "t5_1"}]
    assert len(job["latestRuns"]) == 1 and job["latestRun"]["state"] == "COMPLETED"
    assert set(runs) == set(run_ids)
    # A job's input is the version its upstream job wrote before it ran (same minute -> same time).
    upstream = jobs[("bulk", "job4")]["latestRun"]["outputVersions"][0]
    assert runs[job["latestRun"]["id"]]["inputVersions"] == [upstream]


def test_job_version_id_is_deterministic_and_order_insensitive() -> None:
    a, b, c = ("ns", "a"), ("ns", "b"), ("ns", "c")
    version = job_version_id("etl", "j", [a, b], [c])
    assert version == job_version_id("etl", "j", [b, a, a], [c])
    assert uuid.UUID(version).version == 5
    assert version != job_version_id("etl", "j", [a], [b, c])  # an input is not an output
    assert version != job_version_id("etl", "j2", [a, b], [c])
    assert version != job_version_id("etl2", "j", [a, b], [c])
