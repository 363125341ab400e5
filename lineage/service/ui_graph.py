"""What the web UI draws: the lineage graph in one compact call, and the side panel of one node.

The graph starts from the Marquez ``/lineage`` answer of :class:`~lineage.service.graph.GraphService`,
redacted by the caller's clearance exactly as ``GET /api/v1/lineage`` is (the route does that and hands
the redacted answer in here), so a placeholder node shows no more here than there. Each node then gets
what the UI marks on it: a dataset its effective classification level and the verdict of the last gate
that validated it (``gateResult`` / ``dataQualityAssertions`` among its current facets), a job the state
of its latest run. Edges become index pairs: 2,000 nodes are a few hundred kilobytes, not megabytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from sqlalchemy import Engine, select

from lineage.governance.levels import Level
from lineage.governance.redaction import PREFIX
from lineage.reports import ReportNotFoundError, ReportService
from lineage.reports.runs import validated_dataset
from lineage.service.classification import ClassificationService
from lineage.service.reads import NotFoundError, ReadService
from lineage.store import schema as s
from lineage.store.event_facets import load_run_facets

Key = tuple[str, str]
GateVerdict = Literal["pass", "fail", "none"]
GATE_FACETS = ("gateResult", "dataQualityAssertions")
CONSUMER_NAMESPACE = "chaintrace-consumers"  # where product downloads are recorded as runs
PANEL_RUNS = 20
PANEL_VERSIONS = 10
PANEL_QUALITY_POINTS = 20


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def gate_verdict(namespace: str, name: str, facets: Mapping[str, Any]) -> GateVerdict:
    """pass / fail of the last gate that validated the dataset, ``none`` when no gate ever did."""
    if not any(key in facets for key in GATE_FACETS):
        return "none"
    return "pass" if validated_dataset(namespace, name, dict(facets))["success"] else "fail"


def dataset_levels(classification: ClassificationService, keys: list[Key]) -> dict[Key, Level]:
    """Effective level of each dataset of ``keys`` that has one, read under one lock (not one probe
    of the store per dataset, as :meth:`ClassificationService.dataset_level` would)."""
    classification.ensure_fresh()
    with classification.lock:
        known = classification.levels.ds_level
        return {key: level for key in keys if (level := known.get(key)) is not None}


def compact_graph(marquez: Mapping[str, Any], levels: Mapping[Key, Level]) -> dict[str, Any]:
    """``{"nodes": [...], "edges": [[from, to], ...]}`` from a (redacted) Marquez graph answer.

    A node: ``id`` (the Marquez node id, a placeholder for a withheld dataset), ``kind`` (dataset or
    job), ``namespace``, ``name``, ``withheld``; a dataset also ``level`` and ``gate``; a job
    ``state`` (its latest run's, or null). Edges run producer -> consumer (job -> dataset -> job).
    """
    graph = marquez.get("graph")
    items = graph if isinstance(graph, list) else []
    index = {str(item["id"]): i for i, item in enumerate(items)}
    nodes: list[dict[str, Any]] = []
    edges: list[list[int]] = []
    for i, item in enumerate(items):
        data = _dict(item.get("data"))
        namespace, name = str(data.get("namespace", "")), str(data.get("name", ""))
        if item.get("type") == "DATASET":
            withheld = name.startswith(PREFIX)
            nodes.append({
                "id": item["id"], "kind": "dataset", "namespace": namespace, "name": name,
                "withheld": withheld,
                "level": None if withheld else levels.get((namespace, name)),
                "gate": "none" if withheld else gate_verdict(namespace, name, _dict(data.get("facets"))),
            })
        else:
            latest = _dict(data.get("latestRun"))
            nodes.append({"id": item["id"], "kind": "job", "namespace": namespace, "name": name,
                          "withheld": False, "state": latest.get("state")})
        for edge in item.get("outEdges") or []:
            target = index.get(str(edge.get("destination")))
            if target is not None:
                edges.append([i, target])
    return {"nodes": nodes, "edges": edges}


class UiService:
    """Reads for the UI's side panel; stateless apart from the services it is given."""

    def __init__(self, engine: Engine, reads: ReadService, classification: ClassificationService) -> None:
        self.engine = engine
        self.reads = reads
        self.classification = classification

    def dataset_panel(self, namespace: str, name: str) -> dict[str, Any]:
        """Schema with levels, versions, runs, quality history and purpose-of-use records of a dataset.

        NotFoundError when the store has no such dataset.
        """
        dataset = self.reads.get_dataset(namespace, name)
        levels = self.classification.field_levels(namespace, name)
        fields = [{"name": f["name"], "type": f.get("type"), "level": levels.get(f["name"]),
                   "declared": _declared_level(f.get("tags"))} for f in dataset.get("fields") or []]
        versions = self.reads.list_dataset_versions(namespace, name, PANEL_VERSIONS, 0)
        facets = _dict(dataset.get("facets"))
        with self.engine.connect() as connection:
            runs = _dataset_runs(connection, namespace, name)
            uses = _purpose_records(connection, [r for r in runs if r["namespace"] == CONSUMER_NAMESPACE])
        quality: dict[str, Any] | None
        try:
            report = ReportService(self.engine).dataset(namespace, name, limit=PANEL_QUALITY_POINTS)
            quality = {"points": report.get("points", []), "summary": report.get("summary")}
        except ReportNotFoundError:
            quality = None
        return {
            "kind": "dataset", "namespace": namespace, "name": name,
            "level": self.classification.dataset_level(namespace, name),
            "gate": gate_verdict(namespace, name, facets),
            "description": dataset.get("description"),
            "fields": fields,
            "versions": [{"version": v.get("version"), "createdAt": v.get("createdAt"),
                          "runId": _dict(v.get("createdByRun")).get("id")}
                         for v in versions.get("versions", [])],
            "versionCount": versions.get("totalCount"),
            "runs": runs,
            "quality": quality,
            "product": _dict(facets.get("purpose")) or None,
            "purposeOfUse": uses,
        }

    def job_panel(self, namespace: str, name: str) -> dict[str, Any]:
        """A job's latest runs (state, times, DAG run) and its inputs and outputs."""
        job = self.reads.get_job(namespace, name)
        runs = self.reads.list_runs(namespace, name, PANEL_RUNS, 0)
        with self.engine.connect() as connection:
            parents = dict(connection.execute(
                select(s.runs.c.run_id, s.runs.c.parent_run_id)
                .where(s.runs.c.run_id.in_([r["id"] for r in runs.get("runs", [])]))).all())
        return {
            "kind": "job", "namespace": namespace, "name": name,
            "state": _dict(job.get("latestRun")).get("state"),
            "inputs": job.get("inputs", []), "outputs": job.get("outputs", []),
            "runs": [{"runId": r["id"], "state": r.get("state"),
                      "startedAt": r.get("startedAt") or r.get("createdAt"), "endedAt": r.get("endedAt"),
                      "parentRunId": parents.get(r["id"])}
                     for r in runs.get("runs", [])],
        }


def _declared_level(tags: Any) -> str | None:
    """The ``classification:Lx`` tag the producer put on a column, if any."""
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, str) and tag.startswith("classification:"):
            return tag.partition(":")[2]
    return None


def _dataset_runs(connection: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    io, r = s.run_io, s.runs
    rows = connection.execute(
        select(r.c.run_id, r.c.job_namespace, r.c.job_name, r.c.state, r.c.started_at, r.c.ended_at,
               r.c.created_at, r.c.parent_run_id, io.c.direction)
        .join(io, io.c.run_id == r.c.run_id)
        .where(io.c.dataset_namespace == namespace, io.c.dataset_name == name)
        .order_by(r.c.created_at.desc(), r.c.run_id).limit(PANEL_RUNS)
    )
    return [{"runId": row.run_id, "namespace": row.job_namespace, "job": row.job_name, "state": row.state,
             "startedAt": row.started_at or row.created_at, "endedAt": row.ended_at,
             "parentRunId": row.parent_run_id, "direction": row.direction} for row in rows]


def _purpose_records(connection: Any, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Downloads of the dataset (runs of ``consumer.<key>`` jobs) with their ``purpose`` run facet."""
    facets = load_run_facets(connection, [r["runId"] for r in runs])
    records = []
    for run in runs:
        purpose = _dict(facets[run["runId"]].run.get("purpose")) if run["runId"] in facets else {}
        records.append({"runId": run["runId"], "job": run["job"], "at": run["startedAt"],
                        "consumer": purpose.get("consumer"), "purpose": purpose.get("purpose"),
                        "rows": purpose.get("rows")})
    return records


__all__ = ["NotFoundError", "UiService", "compact_graph", "dataset_levels", "gate_verdict"]
