"""The quality report of one DAG run, built from the store.

A DAG run is the ``parent`` run of its task runs (the Airflow OpenLineage provider sets the parent facet
on every task event), so the report reads the task runs through the ``runs.parent_run_id`` index and
merges only *their* raw events (:func:`lineage.store.event_facets.load_run_facets`): a handful of events
per task, whatever the size of the store. Gate tasks are the jobs whose name ends in ``.gate``; their
validated inputs carry ``dataQualityAssertions``, ``dataQualityMetrics`` and the chain's ``gateResult``
facet (suite, statistics, GX Data Docs link); a refused batch shows up as an output renamed into
quarantine (``lifecycleStateChange`` RENAME). Stage tasks (``.run``) carry a ``stageCounts`` run facet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, or_, select

from lineage.store import schema as s
from lineage.store.event_facets import RunFacets, load_run_facets
from lineage.store.projector import run_key

GATE_SUFFIX = ".gate"
STAGE_SUFFIX = ".run"
QUARANTINE = "RENAME"


class ReportNotFoundError(LookupError):
    """Nothing in the store to report on; ``message`` says what was looked for."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class TaskRun:
    run_id: str
    namespace: str
    job: str
    state: str
    started_at: str | None
    ended_at: str | None
    created_at: str


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def parse_text(value: Any) -> Any:
    """An assertion's ``expected``/``actual`` are strings on the wire (the 2-0-2 schema): JSON inside
    them comes back as JSON, anything else stays the string it was."""
    if not isinstance(value, str):
        return value
    if value[:1] in ("{", "[", '"') or value in ("true", "false", "null") or value[:1].isdigit() or \
            value[:1] == "-":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _task(row: Row[Any]) -> TaskRun:
    return TaskRun(row.run_id, row.job_namespace, row.job_name, row.state, row.started_at, row.ended_at,
                   row.created_at)


def _runs_query() -> Any:
    r = s.runs
    return select(r.c.run_id, r.c.job_namespace, r.c.job_name, r.c.state, r.c.started_at, r.c.ended_at,
                  r.c.created_at)


def stage_of(job: str) -> str:
    """``flights.store.gate`` -> ``store``: the chain names its tasks ``<dataset>.<stage>.<kind>``."""
    parts = job.split(".")
    return parts[-2] if len(parts) >= 3 else parts[0]


def expectation(item: dict[str, Any]) -> dict[str, Any]:
    """One assertion of a ``dataQualityAssertions`` facet as the report shows it."""
    return {
        "name": item.get("name") or item.get("assertion"),
        "assertion": item.get("assertion"),
        "column": item.get("column"),
        "success": bool(item.get("success")),
        "severity": item.get("severity"),
        "expected": parse_text(item.get("expected")),
        "observed": parse_text(item.get("actual")),
    }


def validated_dataset(namespace: str, name: str, facets: dict[str, Any]) -> dict[str, Any]:
    """A gate's validated input: its expectations, table metrics and the gate's own verdict facet."""
    assertions = [expectation(a) for a in _list(_dict(facets.get("dataQualityAssertions")).get("assertions"))
                  if isinstance(a, dict)]
    metrics = _dict(facets.get("dataQualityMetrics"))
    verdict = _dict(facets.get("gateResult"))
    failed_errors = [a for a in assertions if not a["success"] and a["severity"] in (None, "error")]
    success = verdict.get("success")
    return {
        "namespace": namespace,
        "name": name,
        "suite": verdict.get("suite"),
        "success": bool(success) if isinstance(success, bool) else not failed_errors,
        "docsPage": verdict.get("docsPage"),
        "validatedAt": verdict.get("validatedAt"),
        "rowCount": metrics.get("rowCount"),
        "evaluated": len(assertions),
        "passed": sum(a["success"] for a in assertions),
        "expectations": assertions,
        "columnMetrics": {str(c): {k: v for k, v in _dict(m).items() if k != "quantiles"}
                          for c, m in _dict(metrics.get("columnMetrics")).items()},
    }


def gate_section(task: TaskRun, facets: RunFacets) -> dict[str, Any]:
    datasets = [validated_dataset(ns, name, f) for (ns, name), f in sorted(facets.inputs.items())
                if "dataQualityAssertions" in f or "gateResult" in f]
    quarantined = []
    for (ns, name), f in sorted(facets.outputs.items()):
        change = _dict(f.get("lifecycleStateChange"))
        if change.get("lifecycleStateChange") == QUARANTINE:
            previous = _dict(change.get("previousIdentifier"))
            moved = ({"namespace": str(previous["namespace"]), "name": str(previous["name"])}
                     if "namespace" in previous and "name" in previous else None)
            quarantined.append({"namespace": ns, "name": name, "from": moved})
    decisions = _list(_dict(facets.run.get("governance")).get("decisions"))
    refused = [{"product": d.get("product"), "reason": d.get("reason")} for d in decisions
               if isinstance(d, dict) and d.get("kind") == "publish_refused"]
    failed = task.state == "FAILED" or bool(quarantined) or bool(refused) or \
        any(not d["success"] for d in datasets)
    status = "FAILED" if failed else ("RUNNING" if task.state in ("NEW", "RUNNING") else "PASSED")
    return {
        "job": task.job, "namespace": task.namespace, "stage": stage_of(task.job), "runId": task.run_id,
        "state": task.state, "status": status, "startedAt": task.started_at, "endedAt": task.ended_at,
        "datasets": datasets, "quarantined": quarantined, "refused": refused,
    }


def stage_section(task: TaskRun, facets: RunFacets) -> dict[str, Any]:
    counts = _dict(facets.run.get("stageCounts"))
    return {
        "job": task.job, "namespace": task.namespace, "stage": counts.get("stage") or stage_of(task.job),
        "runId": task.run_id, "state": task.state, "startedAt": task.started_at, "endedAt": task.ended_at,
        "rowsIn": counts.get("rowsIn"), "rowsOut": counts.get("rowsOut"),
        "counts": _dict(counts.get("counts")),
        "outputs": [{"namespace": ns, "name": name} for ns, name in sorted(facets.outputs)],
    }


def _header(connection: Connection, rid: str, tasks: list[TaskRun],
            facets: dict[str, RunFacets]) -> dict[str, Any]:
    row = connection.execute(_runs_query().where(s.runs.c.run_id == rid)).first()
    if row is not None and any(t.run_id != rid for t in tasks):
        dag = _task(row)
        return {"namespace": dag.namespace, "name": dag.job, "state": dag.state,
                "startedAt": dag.started_at, "endedAt": dag.ended_at}
    for task in tasks:  # the DAG run sent no event of its own: the parent facet names its job
        job = _dict(_dict(facets.get(task.run_id, RunFacets()).run.get("parent")).get("job"))
        if job.get("name"):
            break
    else:
        job = {}
    failed = any(t.state == "FAILED" for t in tasks)
    return {"namespace": job.get("namespace"), "name": job.get("name"),
            "state": "FAILED" if failed else (tasks[-1].state if tasks else None),
            "startedAt": min((t.started_at or t.created_at for t in tasks), default=None),
            "endedAt": max((t.ended_at for t in tasks if t.ended_at), default=None)}


def task_runs(connection: Connection, run_id: str,
              job_prefix: str | None = None) -> tuple[str, list[TaskRun]]:
    """The canonical run id and the task runs of DAG run ``run_id`` (the run alone when it has none)."""
    rid = run_key(run_id)
    r = s.runs
    query = _runs_query().where(or_(r.c.parent_run_id == rid, r.c.run_id == rid))
    rows = [_task(row) for row in connection.execute(query.order_by(r.c.created_at, r.c.job_name))]
    children = [t for t in rows if t.run_id != rid]
    tasks = children or rows
    if job_prefix is not None:
        tasks = [t for t in tasks if t.job.startswith(job_prefix)]
    if not tasks:
        which = f" with jobs named {job_prefix}*" if job_prefix else ""
        raise ReportNotFoundError(f"no run {run_id!r}{which} in the lineage store")
    return rid, tasks


def run_report(connection: Connection, run_id: str, *, job_prefix: str | None = None) -> dict[str, Any]:
    """The report of DAG run ``run_id``: its gates, expectations, row counts and quarantined batches."""
    rid, tasks = task_runs(connection, run_id, job_prefix)
    facets = load_run_facets(connection, [t.run_id for t in tasks])
    gates, stages = [], []
    for task in tasks:
        merged = facets.get(task.run_id, RunFacets())
        if task.job.endswith(GATE_SUFFIX):
            gates.append(gate_section(task, merged))
        elif "stageCounts" in merged.run or task.job.endswith(STAGE_SUFFIX):
            stages.append(stage_section(task, merged))
    return assemble(rid, _header(connection, rid, tasks, facets), stages, gates)


def assemble(rid: str, header: dict[str, Any], stages: list[dict[str, Any]],
             gates: list[dict[str, Any]]) -> dict[str, Any]:
    """The report from its parts, with the summary counts."""
    expectations = [e for g in gates for d in g["datasets"] for e in d["expectations"]]
    return {
        "runId": rid,
        "job": header,
        "summary": {
            "gates": len(gates),
            "gatesPassed": sum(g["status"] == "PASSED" for g in gates),
            "gatesFailed": sum(g["status"] == "FAILED" for g in gates),
            "expectations": len(expectations),
            "expectationsFailed": sum(not e["success"] for e in expectations),
            "quarantined": sum(len(g["quarantined"]) for g in gates),
        },
        "stages": stages,
        "gates": gates,
    }


def newest_dag_run(connection: Connection, job_prefix: str) -> str:
    """The parent run of the newest task run whose job name starts with ``job_prefix``."""
    r = s.runs
    like = job_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    row = connection.execute(
        select(r.c.parent_run_id).where(r.c.job_name.like(like, escape="\\"), r.c.parent_run_id.is_not(None))
        .order_by(r.c.created_at.desc()).limit(1)
    ).first()
    if row is None:
        raise ReportNotFoundError(f"no DAG run with tasks named {job_prefix}* in the lineage store")
    return str(row[0])
