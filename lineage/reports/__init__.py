"""Data-quality reports (issue 5): per DAG run and per dataset over time, as JSON and standalone HTML.

:class:`ReportService` is what the API routes and ``chaintrace report`` call; it reads the store only.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from lineage.reports.html import render_dataset, render_run
from lineage.reports.runs import ReportNotFoundError, newest_dag_run, run_report
from lineage.reports.timeline import dataset_report

__all__ = ["ReportNotFoundError", "ReportService", "render_dataset", "render_run"]


class ReportService:
    """Builds reports from the store behind ``engine`` (stateless: one per request is fine)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def run(self, run_id: str, *, job_prefix: str | None = None) -> dict[str, Any]:
        with self.engine.connect() as connection:
            return run_report(connection, run_id, job_prefix=job_prefix)

    def dataset(self, namespace: str, name: str, *, limit: int = 100,
                metrics: list[str] | None = None) -> dict[str, Any]:
        with self.engine.connect() as connection:
            return dataset_report(connection, namespace, name, limit=limit, metrics=metrics)

    def newest_run(self, job_prefix: str) -> str:
        with self.engine.connect() as connection:
            return newest_dag_run(connection, job_prefix)
