"""The UI's run view: a DAG run's tasks on a timeline, with states, inputs, outputs and Airflow links.

A DAG run is the ``parent`` run of its task runs (the Airflow OpenLineage provider sets the parent facet
on every task event); given a task run, the view shows the DAG run it belongs to. The Airflow ids come
from the events: the DAG run's ``airflowDagRun`` facet (``dag.dag_id``, ``dagRun.run_id``), else a task's
``airflow`` facet; a task id is the job name after ``<dag_id>.`` (the provider names task jobs
``<dag_id>.<task_id>``). Links follow Airflow 3's UI paths ``/dags/{dag_id}/runs/{run_id}`` and
``.../tasks/{task_id}`` under the ``airflow_url`` setting; without it, or without the ids, there are none.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, select

from lineage.reports import ReportNotFoundError
from lineage.reports.runs import GATE_SUFFIX, task_runs, validated_dataset
from lineage.store import schema as s
from lineage.store.event_facets import RunFacets, load_run_facets
from lineage.store.projector import run_key

__all__ = ["ReportNotFoundError", "RunView"]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def airflow_ids(dag_facets: RunFacets | None, tasks: list[RunFacets]) -> tuple[str | None, str | None]:
    """(dag_id, Airflow run_id) of a DAG run, from its own facets or any of its tasks'."""
    for facets in [f for f in (dag_facets, *tasks) if f is not None]:
        for key in ("airflowDagRun", "airflow"):
            facet = _dict(facets.run.get(key))
            dag_id = _dict(facet.get("dag")).get("dag_id")
            run_id = _dict(facet.get("dagRun")).get("run_id")
            if isinstance(dag_id, str) and isinstance(run_id, str):
                return dag_id, run_id
    return None, None


def airflow_links(base: str | None, dag_id: str | None, run_id: str | None) -> str | None:
    if not base or not dag_id or not run_id:
        return None
    return f"{base.rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


class RunView:
    """Builds the run view from the store behind ``engine``."""

    def __init__(self, engine: Engine, airflow_url: str | None) -> None:
        self.engine = engine
        self.airflow_url = airflow_url

    def dag_run(self, run_id: str) -> dict[str, Any]:
        """The view of the DAG run ``run_id`` is (or, for a task run, belongs to).

        ReportNotFoundError when the store knows no such run.
        """
        with self.engine.connect() as connection:
            rid = self._dag_run_of(connection, run_key(run_id))
            rid, tasks = task_runs(connection, rid)
            facets = load_run_facets(connection, [rid, *(t.run_id for t in tasks)])
            io = self._io(connection, [t.run_id for t in tasks])
            own = connection.execute(
                select(s.runs.c.job_namespace, s.runs.c.job_name, s.runs.c.state, s.runs.c.started_at,
                       s.runs.c.ended_at).where(s.runs.c.run_id == rid)).first()
        task_facets = [facets.get(t.run_id, RunFacets()) for t in tasks]
        dag_id, airflow_run = airflow_ids(facets.get(rid), task_facets)
        if dag_id is None:  # no Airflow facet: the parent facet (or the DAG run's own job) names the DAG
            for merged in task_facets:
                name = _dict(_dict(merged.run.get("parent")).get("job")).get("name")
                if isinstance(name, str):
                    dag_id = name
                    break
            else:
                dag_id = own.job_name if own is not None and len(tasks) > 1 else None
        run_link = airflow_links(self.airflow_url, dag_id, airflow_run)
        rows = []
        for task, merged in zip(tasks, task_facets, strict=True):
            task_id = task.job[len(dag_id) + 1:] if dag_id and task.job.startswith(dag_id + ".") else None
            gate = None
            if task.job.endswith(GATE_SUFFIX):
                checked = [validated_dataset(ns, name, f) for (ns, name), f in sorted(merged.inputs.items())
                           if "dataQualityAssertions" in f or "gateResult" in f]
                gate = "fail" if task.state == "FAILED" or any(not c["success"] for c in checked) else \
                    ("pass" if checked else None)
            rows.append({
                "runId": task.run_id, "namespace": task.namespace, "job": task.job, "taskId": task_id,
                "state": task.state, "startedAt": task.started_at or task.created_at,
                "endedAt": task.ended_at,
                "gate": gate,
                "inputs": io[task.run_id]["INPUT"], "outputs": io[task.run_id]["OUTPUT"],
                "airflowUrl": f"{run_link}/tasks/{quote(task_id, safe='')}" if run_link and task_id else None,
            })
        starts = [task.started_at or task.created_at for task in tasks]
        ends = [end for task in tasks if (end := task.ended_at or task.started_at)]
        failed = any(t["state"] == "FAILED" for t in rows)
        return {
            "runId": rid,
            "dag": {"namespace": own.job_namespace if own is not None else None, "dagId": dag_id,
                    "airflowRunId": airflow_run,
                    "state": own.state if own is not None and len(tasks) > 1 else
                    ("FAILED" if failed else (rows[-1]["state"] if rows else None)),
                    "startedAt": (own.started_at if own is not None else None) or min(starts, default=None),
                    "endedAt": (own.ended_at if own is not None else None) or max(ends, default=None)},
            "airflowUrl": run_link,
            "tasks": rows,
        }

    @staticmethod
    def _dag_run_of(connection: Connection, run_id: str) -> str:
        parent = connection.execute(
            select(s.runs.c.parent_run_id).where(s.runs.c.run_id == run_id)).scalar()
        return str(parent) if parent else run_id

    @staticmethod
    def _io(connection: Connection, run_ids: list[str]) -> dict[str, dict[str, list[dict[str, str]]]]:
        io = s.run_io
        found: dict[str, dict[str, list[dict[str, str]]]] = defaultdict(lambda: {"INPUT": [], "OUTPUT": []})
        rows = connection.execute(
            select(io.c.run_id, io.c.dataset_namespace, io.c.dataset_name, io.c.direction)
            .where(io.c.run_id.in_(run_ids))
            .order_by(io.c.run_id, io.c.direction, io.c.dataset_namespace, io.c.dataset_name))
        for row in rows:
            found[row.run_id].setdefault(row.direction, []).append(
                {"namespace": row.dataset_namespace, "name": row.dataset_name})
        return found
