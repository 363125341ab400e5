"""Synthetic DAG runs of a chain dataset with gate results, shaped like the chain's events.

For the report benchmark (10,000 stored gate results) and tests that need many runs fast: each DAG run
has a START and a COMPLETE/FAIL of the DAG, and per stage a stage task (``stageCounts``) and a gate task
whose validated input carries ``dataQualityAssertions``, ``dataQualityMetrics`` and ``gateResult``,
with the ``parent`` facet pointing at the DAG run. Every ``fail_every``-th DAG run fails its process
gate (a not-null check) and quarantines the batch (``lifecycleStateChange`` RENAME), which stops it.
Deterministic for a given seed.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from lineage.synthetic_chain import PRODUCER, facet, parent_facet, run_event, stable_uuid

STAGES = ("collect", "store", "process", "analyze", "serve")
FAILING_STAGE = "process"
NAMESPACE = "chaintrace"
SCHEMA_BASE = "https://openlineage.io/spec/facets"
CHAIN_SCHEMA = "https://chaintrace.dev/spec/facets/1-0-0"
COLUMNS = ("id", "carrier", "origin", "dest", "dep_delay", "arr_delay", "distance", "tailnum")


def _std(name: str, version: str, **fields: Any) -> dict[str, Any]:
    url = f"{SCHEMA_BASE}/{version}/{name}.json#/$defs/{name}"
    return {"_producer": PRODUCER, "_schemaURL": url, **fields}


def _custom(name: str, **fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": f"{CHAIN_SCHEMA}/{name}.json#/$defs/{name}", **fields}


def dataset_name(root: str, dataset: str, stage: str) -> str:
    return f"{root}/{stage}/{dataset}/{dataset}"


def _gate_input(rng: random.Random, name: str, dataset: str, stage: str, rows: int, fail: bool,
                run_key: str) -> dict[str, Any]:
    assertions: list[dict[str, Any]] = []
    for column in COLUMNS:
        failed = fail and column == "carrier"
        assertions.append({"assertion": "not_null", "success": not failed, "column": column,
                           "severity": "error", "name": "expect_column_values_to_not_be_null",
                           "actual": '{"unexpected_count": 3, "unexpected_percent": 0.1}' if failed else "0"})
        assertions.append({"assertion": "type", "success": True, "column": column, "severity": "error",
                           "name": "expect_column_values_to_be_of_type", "expected": '{"type_": "int64"}',
                           "actual": "int64"})
    assertions.append({"assertion": "row_count", "success": True, "severity": "error",
                       "name": "expect_table_row_count_to_be_between",
                       "expected": f'{{"max_value": {rows * 2}, "min_value": {rows // 2}}}',
                       "actual": str(rows)})
    metrics = {column: {"nullCount": 3 if fail and column == "carrier" else rng.randint(0, 2),
                        "distinctCount": rng.randint(10, 1_000), "min": 0.0,
                        "max": float(rng.randint(10, 99))}
               for column in COLUMNS}
    passed = sum(bool(a["success"]) for a in assertions)
    return {"namespace": "file", "name": name, "facets": {}, "inputFacets": {
        "dataQualityAssertions": _std("DataQualityAssertionsDatasetFacet", "1-1-0", assertions=assertions),
        "dataQualityMetrics": _std("DataQualityMetricsInputDatasetFacet", "1-0-3", rowCount=rows,
                                   columnMetrics=metrics),
        "gateResult": _custom("GateResultInputDatasetFacet", suite=f"{dataset}__{stage}", success=not fail,
                              stage=stage, evaluated=len(assertions), successful=passed,
                              docsPage=f"file:///data/docs/{dataset}__{stage}/{run_key}.html"),
    }}


def dag_run_events(dataset: str, index: int, start: datetime, *, fail: bool, root: str = "/data",
                   seed: int = 0) -> list[dict[str, Any]]:
    """The events of DAG run ``index`` of ``dataset``, starting at ``start``."""
    rng = random.Random(f"{seed}/{dataset}/{index}")
    dag_run = stable_uuid(dataset, "dag", str(index))
    parent = {"parent": parent_facet(dag_run, (NAMESPACE, dataset))}
    clock = iter(start + timedelta(seconds=s) for s in range(100))
    events = [run_event("START", next(clock), dag_run, {}, (NAMESPACE, dataset), {}, [], [])]
    rows = 10_000 + rng.randint(-500, 500)
    stopped = False
    for stage in STAGES:
        name = dataset_name(root, dataset, stage)
        before = STAGES.index(stage) - 1
        previous = dataset_name(root, dataset, STAGES[before]) if before >= 0 else None
        counts = _custom("StageCountsRunFacet", dataset=dataset, stage=stage, counts={"rows_dropped": 0},
                         rowsIn=rows if previous else None, rowsOut=rows)
        stage_run = stable_uuid(dataset, stage, "run", str(index))
        inputs = [{"namespace": "file", "name": previous, "facets": {}}] if previous else []
        events.append(run_event("COMPLETE", next(clock), stage_run, {**parent, "stageCounts": counts},
                                (NAMESPACE, f"{dataset}.{stage}.run"), {}, inputs,
                                [{"namespace": "file", "name": name, "facets": {}}]))
        failing = fail and stage == FAILING_STAGE
        outputs = []
        if failing:
            moved = f"{root}/quarantine/{dataset}/{stage}/run={index}/{dataset}"
            outputs = [{"namespace": "file", "name": moved,
                        "facets": {"lifecycleStateChange": facet(
                            "LifecycleStateChangeDatasetFacet", lifecycleStateChange="RENAME",
                            previousIdentifier={"namespace": "file", "name": name})}}]
        gate_run = stable_uuid(dataset, stage, "gate", str(index))
        events.append(run_event("FAIL" if failing else "COMPLETE", next(clock), gate_run, parent,
                                (NAMESPACE, f"{dataset}.{stage}.gate"), {},
                                [_gate_input(rng, name, dataset, stage, rows, failing, str(index))], outputs))
        if failing:
            stopped = True
            break
    events.append(run_event("FAIL" if stopped else "COMPLETE", next(clock), dag_run, {},
                            (NAMESPACE, dataset), {}, [], []))
    return events


def chain_events(dataset: str, dag_runs: int, *, fail_every: int = 10, seed: int = 0,
                 start: datetime | None = None) -> list[dict[str, Any]]:
    """``dag_runs`` DAG runs of ``dataset`` an hour apart; every ``fail_every``-th one (0: none) fails."""
    first = start or datetime(2026, 1, 1, tzinfo=UTC)
    return [event for i in range(dag_runs)
            for event in dag_run_events(dataset, i, first + timedelta(hours=i),
                                        fail=bool(fail_every) and i % fail_every == fail_every - 1,
                                        seed=seed)]


def dag_run_id(dataset: str, index: int) -> str:
    """The runId of DAG run ``index`` of ``dataset`` in :func:`chain_events`."""
    return stable_uuid(dataset, "dag", str(index))
