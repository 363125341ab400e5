"""H. Data-quality reports: a DAG run's report rendered from a store holding 10,000 gate results.

Input: synthetic DAG runs of one chain dataset (lineage.reports.synthetic: a stage task and a gate task
per stage, the gate's input carrying dataQualityAssertions with 17 assertions, dataQualityMetrics of 8
columns and gateResult; every 10th DAG run fails its process gate and quarantines the batch), enough
runs for 10,000 gate events (2,000 runs quick), ingested in-process into a fresh store.

Measured, in this process, for ~60 DAG runs picked at random (failed ones included): the report as the
API builds it (``ReportService.run`` then orjson for JSON, ``render_run`` for HTML), each repeated, p95.
Target (issue 5): p95 <= 100 ms at 10,000 stored gate results.

BASELINE, same run, same store: a naive report that reads and parses every raw event, keeps those whose
``parent`` facet names the DAG run, merges their facets and builds the same report with the same section
builders (so the answers are compared equal; the bench fails when they differ). Fewer repetitions: it
is slow by design. Reported: both p95s and the ratio baseline / ours.
"""

from __future__ import annotations

import random
import time
from typing import Any

import orjson

from bench.common import (
    Target,
    fill_store,
    finish_section,
    log,
    percentile,
    pg_available,
    run_info,
    store,
    summary,
)

SIZES = {"full": {"gates": 10_000, "picks": 60, "repeat": 3, "naive_picks": 5},
         "quick": {"gates": 2_000, "picks": 20, "repeat": 2, "naive_picks": 3}}
DATASET = "bench_reports"
SEED = 5
TARGET_MS = 100.0


def naive_run_report(engine: Any, run_id: str) -> dict[str, Any]:
    """The report from a scan of every raw event (what a store without the runs index would do)."""
    from sqlalchemy import select

    from lineage.reports.runs import GATE_SUFFIX, TaskRun, assemble, gate_section, stage_section
    from lineage.store import schema as s
    from lineage.store.event_facets import RunFacets

    states = {"START": "RUNNING", "RUNNING": "RUNNING", "COMPLETE": "COMPLETED", "FAIL": "FAILED",
              "ABORT": "ABORTED"}
    tasks: dict[str, dict[str, Any]] = {}
    header: dict[str, Any] = {}
    with engine.connect() as connection:
        rows = connection.execute(select(s.events.c.payload).order_by(s.events.c.event_time,
                                                                      s.events.c.event_hash))
        for (payload,) in rows:
            event = orjson.loads(payload)
            run = event.get("run") or {}
            if run.get("runId") == run_id:  # the DAG's own events
                header = {"namespace": event["job"]["namespace"], "name": event["job"]["name"],
                          "state": states.get(event.get("eventType"), "NEW"),
                          "startedAt": header.get("startedAt", event["eventTime"]),
                          "endedAt": event["eventTime"]}
            parent = ((run.get("facets") or {}).get("parent") or {}).get("run") or {}
            if parent.get("runId") != run_id:
                continue
            task = tasks.setdefault(run["runId"], {"job": event["job"], "facets": RunFacets(), "times": []})
            task["state"] = states.get(event.get("eventType"), task.get("state", "NEW"))
            task["times"].append(event["eventTime"])
            merged: RunFacets = task["facets"]
            merged.run.update(run.get("facets") or {})
            for key, io_key, target in (("inputs", "inputFacets", merged.inputs),
                                        ("outputs", "outputFacets", merged.outputs)):
                for ds in event.get(key) or []:
                    combined = target.setdefault((ds["namespace"], ds["name"]), {})
                    combined.update(ds.get("facets") or {})
                    combined.update(ds.get(io_key) or {})
    gates, stages = [], []
    for rid, task in sorted(tasks.items(), key=lambda kv: (min(kv[1]["times"]), kv[1]["job"]["name"])):
        job = task["job"]
        run = TaskRun(rid, job["namespace"], job["name"], task["state"], None, None, min(task["times"]))
        if run.job.endswith(GATE_SUFFIX):
            gates.append(gate_section(run, task["facets"]))
        else:
            stages.append(stage_section(run, task["facets"]))
    return assemble(run_id, header, stages, gates)


def _comparable(report: dict[str, Any]) -> Any:
    """What both implementations must agree on (the naive one leaves the task run times out)."""
    drop = {"startedAt", "endedAt"}
    return [report["summary"], report["job"]["name"], report["job"]["state"]] + [
        [{k: v for k, v in item.items() if k not in drop} for item in report[part]]
        for part in ("gates", "stages")
    ]


def _timed(fn: Any, picks: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        for run_id in picks:
            started = time.perf_counter()
            fn(run_id)
            times.append((time.perf_counter() - started) * 1000)
    return times


def _measure(url: str, size: dict[str, Any], dag_runs: int) -> dict[str, Any]:
    from lineage.reports import ReportService, render_run
    from lineage.reports.synthetic import dag_run_id
    from lineage.store.db import create_store_engine

    engine = create_store_engine(url)
    try:
        service = ReportService(engine)
        rng = random.Random(SEED)
        picks = [dag_run_id(DATASET, i) for i in rng.sample(range(dag_runs), size["picks"])]
        picks[0] = dag_run_id(DATASET, 9)  # a failed run, always
        for run_id in picks[:3]:  # warm-up: connection pool, statement caches
            service.run(run_id)
        as_json = _timed(lambda r: orjson.dumps(service.run(r)), picks, size["repeat"])
        as_html = _timed(lambda r: render_run(service.run(r)), picks, size["repeat"])
        naive_picks = picks[: size["naive_picks"]]
        for run_id in naive_picks:
            if _comparable(naive_run_report(engine, run_id)) != _comparable(service.run(run_id)):
                raise AssertionError(f"the naive report of run {run_id} differs from the service's")
        naive_json = _timed(lambda r: orjson.dumps(naive_run_report(engine, r)), naive_picks, 1)
        naive_html = _timed(lambda r: render_run(naive_run_report(engine, r)), naive_picks, 1)
        sample = service.run(picks[0])
    finally:
        engine.dispose()
    return {"json_ms": summary(as_json), "html_ms": summary(as_html), "naive_json_ms": summary(naive_json),
            "naive_html_ms": summary(naive_html), "failed_run_summary": sample["summary"],
            "p95": {"json": percentile(as_json, 95), "html": percentile(as_html, 95),
                    "naive_json": percentile(naive_json, 95), "naive_html": percentile(naive_html, 95)}}


def run(quick: bool = False) -> dict[str, Any]:
    info = run_info()
    from lineage.reports.synthetic import STAGES, chain_events

    size = SIZES["quick" if quick else "full"]
    # Failed DAG runs stop at their process gate (3 gates instead of 5): add runs until the count is met.
    dag_runs, gates = 0, 0
    while gates < size["gates"]:
        gates += STAGES.index("process") + 1 if dag_runs % 10 == 9 else len(STAGES)
        dag_runs += 1
    events = chain_events(DATASET, dag_runs, fail_every=10, seed=SEED)
    figures: dict[str, Any] = {"sizes": size, "dag_runs": dag_runs, "gate_results": gates,
                               "events": len(events)}
    targets: list[Target] = []
    backends = ["sqlite"] + (["postgres"] if pg_available() else [])
    for backend in backends:
        with store(backend, "reports") as url:
            log(f"reports: loading {len(events):,} events ({gates:,} gate results, {dag_runs:,} DAG runs) "
                f"into {backend}")
            figures[f"load_{backend}"] = fill_store(url, events)
            log(f"reports: rendering {size['picks']} run reports x{size['repeat']} ({backend})")
            measured = _measure(url, size, dag_runs)
        figures[backend] = measured
        p95 = measured["p95"]
        log(f"  {backend}: JSON {measured['json_ms']}, HTML {measured['html_ms']}, "
            f"naive JSON {measured['naive_json_ms']}")
        label = f"{gates:,} gate results, {backend}"
        targets += [
            Target(f"H1.{backend}", f"H run report JSON p95 ({label})", round(p95["json"], 2), TARGET_MS,
                   "ms", higher_is_better=False),
            Target(f"H2.{backend}", f"H run report HTML p95 ({label})", round(p95["html"], 2), TARGET_MS,
                   "ms", higher_is_better=False),
            Target(f"H.naive.{backend}",
                   f"H naive report (parse every raw event) p95 / ours, JSON ({backend})",
                   round(p95["naive_json"] / p95["json"], 1), None, "x",
                   note=f"naive {p95['naive_json']:.0f} ms, ours {p95['json']:.1f} ms"),
        ]
    return finish_section("reports", "H. quality reports", figures, targets, quick=quick, info=info)


if __name__ == "__main__":
    run()
