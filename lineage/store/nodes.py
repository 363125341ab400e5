"""Bulk loaders of Marquez node objects (Dataset, Job, Run) as plain dicts ready for orjson.

The read API and the lineage graph both answer with these objects, so they are built in one place.
Each loader takes many keys and costs a few queries per 500 keys (see :mod:`read_queries`); keys that
are not in the store are simply absent from the answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Connection, Row, select

from lineage.store import read_queries as q
from lineage.store import schema as s
from lineage.store.event_facets import load_run_facets, load_version_facets
from lineage.store.times import normalize_time

DatasetKey = tuple[str, str]  # (namespace, name)
JobKey = tuple[str, str]

#: How many recent runs a Job object lists in ``latestRuns`` (Marquez shows 10).
LATEST_RUNS = 10

_JOB_VERSION_NS = uuid.UUID("0b6c7d52-4f0e-4f43-9d55-2f8e7c1a3b90")


def job_version_id(
    namespace: str, name: str, inputs: Iterable[DatasetKey], outputs: Iterable[DatasetKey]
) -> str:
    """The job version a run ran as: the job and the exact datasets it read and wrote.

    Deterministic (uuid5 over a canonical JSON array, datasets sorted), so replays, rebuilds and
    arrival orders all give the same id, and two runs with the same inputs/outputs share a version.
    """
    return _job_version_id(
        namespace, name,
        tuple(sorted({(str(ns), str(n)) for ns, n in inputs})),
        tuple(sorted({(str(ns), str(n)) for ns, n in outputs})),
    )


# Most runs of a job share their inputs and outputs: the cache spares re-hashing them run after run.
@lru_cache(maxsize=65_536)
def _job_version_id(
    namespace: str, name: str, inputs: tuple[DatasetKey, ...], outputs: tuple[DatasetKey, ...]
) -> str:
    canonical = orjson.dumps([namespace, name, inputs, outputs])
    return str(uuid.uuid5(_JOB_VERSION_NS, canonical.decode()))


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _instant(value: Any) -> str | None:
    """A facet time in the stored UTC form when it parses, else as sent (never dropped)."""
    if not isinstance(value, str):
        return None
    try:
        return normalize_time(value)
    except (ValueError, OverflowError):
        return value


def dataset_fields(facets: dict[str, Any], field_tags: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Marquez ``fields`` from the ``schema`` facet; a field's tags come from the ``tags`` facet."""
    fields = _obj(facets.get("schema")).get("fields")
    out: list[dict[str, Any]] = []
    if not isinstance(fields, list):
        return out
    for field in fields:
        if not isinstance(field, dict) or field.get("name") is None:
            continue
        name = str(field["name"])
        out.append({
            "name": name,
            "type": field.get("type"),
            "tags": list(field_tags.get(name, ())),
            "description": field.get("description"),
        })
    return out


def source_name(namespace: str, facets: dict[str, Any]) -> str:
    """The ``dataSource`` facet's name, else the namespace (as the projector names sources)."""
    name = _obj(facets.get("dataSource")).get("name")
    return str(name) if name else namespace


def description(facets: dict[str, Any]) -> str | None:
    return _str_or_none(_obj(facets.get("documentation")).get("description"))


def lifecycle_state(facets: dict[str, Any]) -> str | None:
    return _str_or_none(_obj(facets.get("lifecycleStateChange")).get("lifecycleStateChange"))


def load_datasets(connection: Connection, keys: Collection[DatasetKey]) -> dict[DatasetKey, dict[str, Any]]:
    """Marquez Dataset objects of ``keys`` (3 queries per 500 keys)."""
    wanted = q.unique((str(ns), str(name)) for ns, name in keys)
    summaries = q.dataset_summaries(connection, wanted)
    found = [(row.namespace, row.name) for row in summaries]
    facets = q.facets_by_key(connection, s.dataset_facets, ("namespace", "name"), found)
    tags = q.dataset_tag_names(connection, found)
    out: dict[DatasetKey, dict[str, Any]] = {}
    for row in summaries:
        key = (row.namespace, row.name)
        f = facets.get(key, {})
        key_tags = tags.get(key, {})
        out[key] = {
            "id": {"namespace": row.namespace, "name": row.name},
            "type": "DB_TABLE",
            "name": row.name,
            "physicalName": row.name,
            "createdAt": row.created_at,
            "updatedAt": row.updated_at,
            "namespace": row.namespace,
            "sourceName": source_name(row.namespace, f),
            "fields": dataset_fields(f, key_tags),
            "tags": list(key_tags.get("", ())),
            "lastModifiedAt": row.last_modified_at,
            "lastLifecycleState": lifecycle_state(f) or "",
            "description": description(f),
            "currentVersion": row.current_version,
            "columnLineage": None,
            "facets": f,
            "deleted": False,
        }
    return out


def _duration_ms(started: str | None, ended: str | None) -> int | None:
    if started is None or ended is None:
        return None
    # Stored times are fixed-form UTC ISO strings: fromisoformat (C) reads them ~20x faster than strptime.
    delta = datetime.fromisoformat(ended) - datetime.fromisoformat(started)
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


def _io_versions(
    run_id: str,
    direction: str,
    items: list[tuple[str, str, str | None]],
    io_facets: dict[tuple[str, str, str, str], dict[str, Any]],
) -> list[dict[str, Any]]:
    """Marquez InputDatasetVersion / OutputDatasetVersion objects of one run."""
    return [
        {
            "datasetVersionId": {"namespace": ns, "name": name, "version": version},
            "facets": io_facets.get((run_id, direction, ns, name), {}),
        }
        for ns, name, version in items
    ]


def load_runs(connection: Connection, run_ids: Collection[str]) -> dict[str, dict[str, Any]]:
    """Marquez Run objects of ``run_ids`` (5 queries per 500 runs)."""
    r = s.runs
    wanted = q.unique(str(i) for i in run_ids)
    rows: list[Row[Any]] = []
    for chunk in q.chunked(wanted):
        rows.extend(connection.execute(select(r).where(q.key_in(connection, [r.c.run_id], chunk))))
    found = [row.run_id for row in rows]
    merged = load_run_facets(connection, found)
    io_facets = q.run_io_facets(connection, found)
    io: dict[str, dict[str, list[tuple[str, str, str | None]]]] = {}
    for run_id, direction, ns, name, version in q.run_io(connection, found):
        io.setdefault(run_id, {}).setdefault(direction, []).append((ns, name, version))
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        run_io = io.get(row.run_id, {})
        inputs, outputs = run_io.get("INPUT", []), run_io.get("OUTPUT", [])
        f = merged[row.run_id].run if row.run_id in merged else {}
        nominal = _obj(f.get("nominalTime"))
        out[row.run_id] = {
            "id": row.run_id,
            "createdAt": row.created_at,
            "updatedAt": row.updated_at,
            "nominalStartTime": _instant(nominal.get("nominalStartTime")),
            "nominalEndTime": _instant(nominal.get("nominalEndTime")),
            "state": row.state,
            "startedAt": row.started_at,
            "endedAt": row.ended_at,
            "durationMs": _duration_ms(row.started_at, row.ended_at),
            "args": {},
            "jobVersion": {
                "namespace": row.job_namespace,
                "name": row.job_name,
                "version": job_version_id(
                    row.job_namespace, row.job_name,
                    [(ns, name) for ns, name, _ in inputs], [(ns, name) for ns, name, _ in outputs],
                ),
            },
            "inputDatasetVersions": _io_versions(row.run_id, "INPUT", inputs, io_facets),
            "outputDatasetVersions": _io_versions(row.run_id, "OUTPUT", outputs, io_facets),
            # Marquez's older clients read these flat lists.
            "inputVersions": [{"namespace": ns, "name": n, "version": v} for ns, n, v in inputs],
            "outputVersions": [{"namespace": ns, "name": n, "version": v} for ns, n, v in outputs],
            "context": {},
            "facets": f,
        }
    return out


def job_type(facets: dict[str, Any]) -> str:
    """Marquez job type: OpenLineage's ``processingType`` STREAMING is Marquez's STREAM."""
    processing = str(_obj(facets.get("jobType")).get("processingType") or "").upper()
    return "STREAM" if processing in ("STREAMING", "STREAM") else "BATCH"


def job_location(facets: dict[str, Any]) -> str | None:
    return _str_or_none(_obj(facets.get("sourceCodeLocation")).get("url"))


def load_jobs(
    connection: Connection, keys: Collection[JobKey], *, latest_runs: int = LATEST_RUNS
) -> dict[JobKey, dict[str, Any]]:
    """Marquez Job objects of ``keys``, each with its ``latest_runs`` newest runs as full Run objects.

    Runs dominate the cost: a caller that only needs ``latestRun`` (Marquez's lineage graph shows no
    ``latestRuns``) should pass ``latest_runs=1``. At least one run is always loaded, since
    ``latestRun`` and ``currentVersion`` come from it.
    """
    j = s.jobs
    wanted = q.unique((str(ns), str(name)) for ns, name in keys)
    rows: list[Row[Any]] = []
    for chunk in q.chunked(wanted):
        stmt = select(j).where(q.key_in(connection, [j.c.namespace, j.c.name], chunk))
        rows.extend(connection.execute(stmt))
    found = [(row.namespace, row.name) for row in rows]
    facets = q.facets_by_key(connection, s.job_facets, ("namespace", "name"), found)
    tags = q.job_tag_names(connection, found)
    io = q.job_io(connection, found)
    latest = q.latest_run_ids(connection, found, max(1, latest_runs))
    runs = load_runs(connection, [rid for ids in latest.values() for rid in ids])
    out: dict[JobKey, dict[str, Any]] = {}
    for row in rows:
        key = (row.namespace, row.name)
        f = facets.get(key, {})
        job_io = io.get(key, {})
        newest = [runs[rid] for rid in latest.get(key, ()) if rid in runs]
        latest_run = newest[0] if newest else None
        out[key] = {
            "id": {"namespace": row.namespace, "name": row.name},
            "type": job_type(f),
            "name": row.name,
            "simpleName": row.name,
            "parentJobName": None,
            "parentJobUuid": None,
            "createdAt": row.created_at,
            "updatedAt": row.updated_at,
            "namespace": row.namespace,
            "inputs": [{"namespace": ns, "name": n} for ns, n in job_io.get("INPUT", ())],
            "outputs": [{"namespace": ns, "name": n} for ns, n in job_io.get("OUTPUT", ())],
            "location": job_location(f),
            "description": description(f),
            "facets": f,
            "currentVersion": latest_run["jobVersion"]["version"] if latest_run else None,
            "latestRun": latest_run,
            "latestRuns": newest,
            "labels": [],
            "tags": tags.get(key, []),
        }
    return out


def load_dataset_versions(connection: Connection, versions: Collection[str]) -> dict[str, dict[str, Any]]:
    """Marquez DatasetVersion objects (the dataset as one run wrote it, with that run)."""
    dv = s.dataset_versions
    wanted = q.unique(str(v) for v in versions)
    rows: list[Row[Any]] = []
    for chunk in q.chunked(wanted):
        rows.extend(connection.execute(select(dv).where(q.key_in(connection, [dv.c.version], chunk))))
    facets = load_version_facets(connection, [(r.version, r.run_id) for r in rows])
    tags = q.dataset_tag_names(connection, q.unique((r.namespace, r.name) for r in rows))
    runs = load_runs(connection, q.unique(r.run_id for r in rows))
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        f = facets.get(row.version, {})
        key_tags = tags.get((row.namespace, row.name), {})
        out[row.version] = {
            "id": {"namespace": row.namespace, "name": row.name, "version": row.version},
            "type": "DB_TABLE",
            "name": row.name,
            "physicalName": row.name,
            "createdAt": row.created_at,
            "version": row.version,
            "namespace": row.namespace,
            "sourceName": source_name(row.namespace, f),
            "fields": dataset_fields(f, key_tags),
            "tags": list(key_tags.get("", ())),
            "lifecycleState": lifecycle_state(f),
            "description": description(f),
            "createdByRun": runs.get(row.run_id),
            "facets": f,
        }
    return out


@dataclass(slots=True)
class JobVersionSummary:
    """One job version: the runs of a job that read and wrote the same datasets."""

    version: str
    created_at: str  # the first run of this version
    latest: tuple[str, str]  # (created_at, run_id) of its newest run
    inputs: list[DatasetKey]
    outputs: list[DatasetKey]


def job_versions(connection: Connection, namespace: str, name: str) -> list[JobVersionSummary]:
    """Every version of a job, newest first (by first run, then version id).

    Versions are derived from the runs' inputs and outputs (uuid5, see :func:`job_version_id`), which
    SQL cannot compute, so the job's runs and their datasets are read once and grouped here.
    """
    r, io = s.runs, s.run_io
    of_job = (r.c.job_namespace == namespace, r.c.job_name == name)
    datasets: dict[str, dict[str, list[DatasetKey]]] = {}
    stmt = (
        select(io.c.run_id, io.c.direction, io.c.dataset_namespace, io.c.dataset_name)
        .select_from(io.join(r, r.c.run_id == io.c.run_id))
        .where(*of_job)
    )
    for run_id, direction, ns, ds in connection.execute(stmt):
        datasets.setdefault(run_id, {}).setdefault(direction, []).append((ns, ds))
    found: dict[str, JobVersionSummary] = {}
    for run_id, created_at in connection.execute(select(r.c.run_id, r.c.created_at).where(*of_job)):
        run_io = datasets.get(run_id, {})
        inputs, outputs = sorted(run_io.get("INPUT", [])), sorted(run_io.get("OUTPUT", []))
        version = job_version_id(namespace, name, inputs, outputs)
        known = found.get(version)
        if known is None:
            found[version] = JobVersionSummary(version, created_at, (created_at, run_id), inputs, outputs)
        else:
            known.created_at = min(known.created_at, created_at)
            known.latest = max(known.latest, (created_at, run_id))
    return sorted(found.values(), key=lambda v: (v.created_at, v.version), reverse=True)


def load_job_versions(
    connection: Connection, namespace: str, name: str, versions: list[JobVersionSummary]
) -> list[dict[str, Any]]:
    """Marquez JobVersion objects; location is the one the version's newest run reported."""
    latest_ids = [v.latest[1] for v in versions]
    runs = load_runs(connection, latest_ids)
    seen = load_run_facets(connection, latest_ids)
    return [
        {
            "id": {"namespace": namespace, "name": name, "version": v.version},
            "name": name,
            "version": v.version,
            "createdAt": v.created_at,
            "namespace": namespace,
            "location": job_location(seen[v.latest[1]].job) if v.latest[1] in seen else None,
            "inputs": [{"namespace": ns, "name": n} for ns, n in v.inputs],
            "outputs": [{"namespace": ns, "name": n} for ns, n in v.outputs],
            "latestRun": runs.get(v.latest[1]),
        }
        for v in versions
    ]
