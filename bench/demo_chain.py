"""G. The whole demo chain under the real Airflow scheduler: wall time, with and without lineage and gates.

Two sessions, each in a fresh data root, each with its own Airflow (LocalExecutor on SQLite, the
chain's parallelism of 3) driven through ``ChainSession`` as ``chaintrace demo`` drives it:

- normal: the lineage service up, OpenLineage on (our spooling transport), every GX gate on;
- BASELINE, measured in this run: ``CHAINTRACE_GATES_ENABLED=false`` and
  ``AIRFLOW__OPENLINEAGE__DISABLED=True``, no lineage service (the gates still publish the serve
  products, unchecked).

The specs are a copy of the shipped ones with ``schedule: null``, so only the triggered runs exist.
Wall time runs from the trigger to every run terminal (Airflow's start-up is reported apart). Every
run must succeed in both sessions. Checked too, not timed: the normal session's serve gates validated
(a GX result) and its events reached the service; the baseline's serve gates validated nothing and
no OpenLineage event was emitted (its spool stays empty: with the service absent, an emitted event
would land there). ``--quick``: covid_testing only.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import Target, log, print_targets, run_info, targets_json, write_section
from chaintrace_chain.spec_copies import triggered_spec_dir

QUICK_DATASETS = ["covid_testing"]
SWITCHED_OFF = {"CHAINTRACE_GATES_ENABLED": "false", "AIRFLOW__OPENLINEAGE__DISABLED": "True"}


def _event_count(url: str, headers: dict[str, str]) -> int:
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        total, offset = 0, 0
        while True:
            events = client.get("/api/v1/events/lineage", params={"limit": 10_000, "offset": offset}).json()
            total += len(events["events"])
            if len(events["events"]) < 10_000:
                return total
            offset += 10_000


def run_session(label: str, root: Path, spec_dir: Path, dag_ids: list[str], *,
                switched_off: bool) -> dict[str, Any]:
    """Start a session, trigger every DAG, wait; start-up and run wall times, states and checks."""
    from chaintrace_chain.quality import load_gate_report
    from chaintrace_chain.zones import Zones, run_key
    from chaintrace_cli.chain_session import ChainSession

    session = ChainSession(root, spec_dir=spec_dir, parallelism=3,
                           extra_env=dict(SWITCHED_OFF) if switched_off else {})
    load_before = os.getloadavg()[0]
    try:
        t0 = time.perf_counter()
        session.start(dag_ids, with_lineage=not switched_off)
        startup_s = time.perf_counter() - t0
        log(f"  {label}: Airflow{'' if switched_off else ' and the lineage service'} up in {startup_s:.0f} s")
        run_id = f"bench_{label}"
        t0 = time.perf_counter()
        runs = session.trigger_all(dag_ids, run_id)
        final = session.wait_runs(runs, timeout=3600)
        wall_s = time.perf_counter() - t0
        states = {dag_id: run["state"] for dag_id, run in final.items()}
        log(f"  {label}: all runs terminal after {wall_s:.1f} s: {states}")
        tasks = [ti for dag_id in dag_ids for ti in session.client.task_instances(dag_id, run_id)]
        task_s = {"gate": 0.0, "stage": 0.0}  # summed task durations, as Airflow recorded them
        for ti in tasks:
            task_s["gate" if "gate" in ti["task_id"] else "stage"] += float(ti.get("duration") or 0)
        zones = Zones.at(session.data_root)
        validated = {}
        for dag_id in dag_ids:
            gate = load_gate_report(zones, dag_id, run_key(run_id), "serve")
            validated[dag_id] = gate is not None and gate.result is not None
        events = spooled = 0
        if switched_off:
            spool = session.data_root / "lineage-spool"
            spooled = len([p for p in spool.rglob("*") if p.is_file()]) if spool.exists() else 0
        else:
            session.lineage.wait_projected()
            events = _event_count(session.lineage.url, session.lineage.headers())
    finally:
        session.stop()
    return {"startup_s": round(startup_s, 1), "wall_s": round(wall_s, 1), "states": states,
            "tasks": len(tasks), "task_seconds": {kind: round(s, 1) for kind, s in task_s.items()},
            "serve_gate_validated": validated, "events_stored": events, "spool_files": spooled,
            "load_1m_before": round(load_before, 2), "load_1m_after": round(os.getloadavg()[0], 2)}


def _check(label: str, result: dict[str, Any], *, switched_off: bool) -> None:
    failed = {dag: state for dag, state in result["states"].items() if state != "success"}
    if failed:
        raise AssertionError(f"{label}: runs did not succeed: {failed}")
    validated = result["serve_gate_validated"]
    if switched_off:
        if any(validated.values()) or result["spool_files"]:
            raise AssertionError(f"{label}: gates or lineage were not switched off: validated {validated}, "
                                 f"{result['spool_files']} file(s) in the spool")
    elif not all(validated.values()) or not result["events_stored"]:
        raise AssertionError(f"{label}: gates or lineage did not run: validated {validated}, "
                             f"{result['events_stored']} events stored")


def run(quick: bool = False) -> dict[str, Any]:
    from chaintrace_chain.spec import all_specs

    info = run_info()
    dag_ids = QUICK_DATASETS if quick else [spec.name for spec in all_specs()]
    log(f"demo_chain: DAGs {dag_ids}; two Airflow sessions, each about a minute to start")
    with tempfile.TemporaryDirectory(prefix="chaintrace-bench-demo-") as folder:
        root = Path(folder)
        spec_dir = triggered_spec_dir(root / "specs")
        normal = run_session("normal", root / "normal", spec_dir, dag_ids, switched_off=False)
        _check("normal", normal, switched_off=False)
        bare = run_session("switched_off", root / "off", spec_dir, dag_ids, switched_off=True)
        _check("switched off", bare, switched_off=True)
    ratio = normal["wall_s"] / bare["wall_s"]
    log(f"  whole chain: {normal['wall_s']:.1f} s with lineage and gates, {bare['wall_s']:.1f} s without: "
        f"{ratio:.2f}x; {normal['events_stored']} events stored; Airflow start-up "
        f"{normal['startup_s']:.0f} s and {bare['startup_s']:.0f} s (not counted); load average "
        f"{normal['load_1m_before']} .. "
        f"{bare['load_1m_after']} on {os.cpu_count()} CPUs shared with other work")
    log(f"  summed task durations: with lineage and gates {normal['task_seconds']}, without "
        f"{bare['task_seconds']} (wall polled every 2 s)")
    which = "covid_testing" if quick else f"all {len(dag_ids)} dataset DAGs"
    targets = [
        Target("G.wall", f"G whole demo chain ({which}), trigger to all runs done", normal["wall_s"], None,
               "s",
               note=f"LocalExecutor on SQLite, parallelism 3; Airflow start-up {normal['startup_s']:.0f} s "
               "not counted; every run succeeded"),
        Target("G.ratio", "G demo chain wall / same chain with lineage and gates off", round(ratio, 2), None,
               "x", note=f"switched off: {bare['wall_s']:.1f} s, every run succeeded; summed task seconds "
               f"{normal['task_seconds']} vs {bare['task_seconds']}"),
    ]
    print_targets("G. demo chain", targets)
    data = {"figures": {"dags": dag_ids, "normal": normal, "switched_off": bare, "ratio": round(ratio, 3)},
            "targets": targets_json(targets)}
    path = write_section("demo_chain", data, quick=quick, info=info)
    log(f"demo_chain: results merged into {path}")
    return data
