"""The quality history of one dataset: one point per gate run that validated it.

The gate facets of a run's inputs are projected into ``run_io_facets`` (indexed by dataset), so the
history is one indexed query joined to ``runs`` for the state and time, newest first and limited.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from sqlalchemy import Connection, and_, select

from lineage.reports.runs import ReportNotFoundError, validated_dataset
from lineage.store import schema as s

QUALITY_FACETS = ("dataQualityAssertions", "dataQualityMetrics", "gateResult")
METRIC_NAMES = ("nullCount", "distinctCount", "min", "max")
DEFAULT_CHARTS = 4  # metric charts chosen when the caller names none
MAX_LIMIT = 1_000
_METRIC = re.compile(r"^(nullCount|distinctCount|min|max):(.+)$")


def parse_metric(value: str) -> tuple[str, str]:
    """``nullCount:carrier`` -> ("nullCount", "carrier"); anything else is a clear error."""
    found = _METRIC.match(value)
    if found is None:
        raise ValueError(f"metric {value!r} is not <metric>:<column> with metric one of "
                         f"{', '.join(METRIC_NAMES)} (e.g. nullCount:carrier)")
    return found.group(1), found.group(2)


def _points(connection: Connection, namespace: str, name: str, limit: int) -> list[dict[str, Any]]:
    f, r = s.run_io_facets, s.runs
    newest = (
        select(r.c.run_id)
        .join(f, f.c.run_id == r.c.run_id)
        .where(f.c.dataset_namespace == namespace, f.c.dataset_name == name, f.c.direction == "INPUT",
               f.c.facet == "dataQualityAssertions")
        .order_by(r.c.created_at.desc(), r.c.run_id.desc())
        .limit(limit)
        .subquery()
    )
    rows = connection.execute(
        select(r.c.run_id, r.c.job_name, r.c.state, r.c.created_at, r.c.started_at, r.c.parent_run_id,
               f.c.facet, f.c.value)
        .join(newest, newest.c.run_id == r.c.run_id)
        .join(f, and_(f.c.run_id == r.c.run_id, f.c.dataset_namespace == namespace,
                      f.c.dataset_name == name, f.c.direction == "INPUT", f.c.facet.in_(QUALITY_FACETS)))
    )
    runs: dict[str, dict[str, Any]] = {}
    facets: dict[str, dict[str, Any]] = {}
    for row in rows:
        runs.setdefault(row.run_id, {"runId": row.run_id, "parentRunId": row.parent_run_id,
                                     "job": row.job_name, "state": row.state,
                                     "time": row.started_at or row.created_at})
        facets.setdefault(row.run_id, {})[row.facet] = orjson.loads(row.value)
    points = []
    for run_id, head in runs.items():
        checked = validated_dataset(namespace, name, facets[run_id])
        success = checked["success"] and head["state"] != "FAILED"
        evaluated, passed = checked["evaluated"], checked["passed"]
        points.append({
            **head,
            "success": success,
            "evaluated": evaluated,
            "passed": passed,
            "passRate": round(passed / evaluated, 4) if evaluated else None,
            "rowCount": checked["rowCount"],
            "docsPage": checked["docsPage"],
            "failedExpectations": [{"name": e["name"], "column": e["column"]}
                                   for e in checked["expectations"] if not e["success"]],
            "columnMetrics": checked["columnMetrics"],
        })
    points.sort(key=lambda p: (p["time"], p["runId"]))
    return points


def _default_metrics(points: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Columns whose null or distinct counts moved over the runs first (those are the interesting
    charts), then null counts of the first columns, up to DEFAULT_CHARTS."""
    columns = sorted({c for p in points for c in p["columnMetrics"]})
    moving: list[tuple[str, str]] = []
    steady: list[tuple[str, str]] = []
    for metric in ("nullCount", "distinctCount"):
        for column in columns:
            values = {p["columnMetrics"].get(column, {}).get(metric) for p in points}
            values.discard(None)
            if values:
                (moving if len(values) > 1 else steady).append((metric, column))
    steady.sort(key=lambda mc: mc[0] != "nullCount")
    return (moving + steady)[:DEFAULT_CHARTS]


def dataset_report(connection: Connection, namespace: str, name: str, *, limit: int = 100,
                   metrics: list[str] | None = None) -> dict[str, Any]:
    """Pass rate, row counts and the chosen metrics of ``(namespace, name)`` over its newest runs."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    chosen = [parse_metric(m) for m in metrics] if metrics else None
    points = _points(connection, namespace, name, limit)
    if not points:
        raise ReportNotFoundError(f"no gate result for dataset {namespace}:{name} in the lineage store")
    chosen = chosen if chosen is not None else _default_metrics(points)
    series = [{"metric": metric, "column": column,
               "values": [p["columnMetrics"].get(column, {}).get(metric) for p in points]}
              for metric, column in chosen]
    evaluated = sum(p["evaluated"] for p in points)
    return {
        "namespace": namespace,
        "name": name,
        "summary": {
            "runs": len(points),
            "runsFailed": sum(not p["success"] for p in points),
            "passRate": round(sum(p["success"] for p in points) / len(points), 4),
            "expectationPassRate": (round(sum(p["passed"] for p in points) / evaluated, 4)
                                    if evaluated else None),
        },
        "series": series,
        "points": points,
    }
