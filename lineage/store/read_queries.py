"""Bulk read helpers shared by the node loaders (:mod:`lineage.store.nodes`) and the read service.

Every helper takes many keys at once and issues one query per chunk of keys, so that loading a
thousand graph nodes costs a handful of round trips instead of a thousand.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import orjson
from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Select,
    String,
    Table,
    any_,
    case,
    func,
    literal,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY

from lineage.store import schema as s
from lineage.store.projector import dataset_version_id

CHUNK = 500  # keys per IN list: far below SQLite's bound-variable limit, still few round trips

K = TypeVar("K")
DatasetKey = tuple[str, str]
JobKey = tuple[str, str]


def chunked(items: Sequence[K], size: int = CHUNK) -> Iterator[Sequence[K]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def unique(items: Iterable[K]) -> list[K]:
    """Distinct items, first occurrence order kept (callers pass sets, lists, dict views)."""
    return list(dict.fromkeys(items))


def _pg_array(items: Sequence[Any]) -> ColumnElement[Any]:
    return literal(list(items), ARRAY(String))


def key_in(connection: Connection, cols: Sequence[Column[Any]], chunk: Sequence[Any]) -> ColumnElement[bool]:
    """``col IN (...)`` for one key column, ``(a, b) IN (...)`` for a composite key.

    On PostgreSQL the keys travel as one array parameter per column: a row-constructor IN list is
    compared row by row (no index), and hundreds of scalar parameters make every statement distinct,
    so SQLAlchemy and psycopg would compile and parse each one anew. Arrays keep one cached statement,
    and ``IN (SELECT unnest(...), ...)`` plans as a hashed semi-join.
    """
    if connection.dialect.name == "postgresql":
        if len(cols) == 1:
            return cols[0] == any_(_pg_array(chunk))
        arrays = [func.unnest(_pg_array([key[i] for key in chunk])) for i in range(len(cols))]
        return tuple_(*cols).in_(select(*arrays))
    if len(cols) == 1:
        return cols[0].in_(chunk)
    return tuple_(*cols).in_(chunk)


def loads(text: str) -> Any:
    return orjson.loads(text)


def facets_by_key(
    connection: Connection, table: Table, key_cols: Sequence[str], keys: Sequence[Any]
) -> dict[Any, dict[str, Any]]:
    """``{key: {facet: value}}`` of a facet table; ``key`` is a scalar for one key column, else a tuple.

    Facets come back sorted by name so that answers are stable whatever the insertion order.
    """
    cols = [table.c[name] for name in key_cols]
    out: dict[Any, dict[str, Any]] = {}
    for chunk in chunked(keys):
        stmt = select(*cols, table.c.facet, table.c.value).where(key_in(connection, cols, chunk))
        for row in connection.execute(stmt.order_by(*cols, table.c.facet)):
            key = row[0] if len(cols) == 1 else tuple(row[: len(cols)])
            out.setdefault(key, {})[row[-2]] = loads(row[-1])
    return out


def dataset_tag_names(
    connection: Connection, keys: Sequence[DatasetKey]
) -> dict[DatasetKey, dict[str, list[str]]]:
    """``{(ns, name): {field: [tag names]}}``; field ``''`` holds the dataset-level tags."""
    t = s.dataset_tags
    cols = [t.c.namespace, t.c.name]
    out: dict[DatasetKey, dict[str, list[str]]] = {}
    for chunk in chunked(keys):
        stmt = select(t.c.namespace, t.c.name, t.c.field, t.c.tag_key, t.c.tag_value)
        stmt = stmt.where(key_in(connection, cols, chunk))
        for ns, name, field, key, value in connection.execute(stmt):
            out.setdefault((ns, name), {}).setdefault(field, []).append(s.tag_name(key, value))
    for per_field in out.values():
        for names in per_field.values():
            names.sort()
    return out


def job_tag_names(connection: Connection, keys: Sequence[JobKey]) -> dict[JobKey, list[str]]:
    t = s.job_tags
    out: dict[JobKey, list[str]] = {}
    for chunk in chunked(keys):
        stmt = select(t.c.namespace, t.c.name, t.c.tag_key, t.c.tag_value).where(
            key_in(connection, [t.c.namespace, t.c.name], chunk)
        )
        for ns, name, key, value in connection.execute(stmt):
            out.setdefault((ns, name), []).append(s.tag_name(key, value))
    for names in out.values():
        names.sort()
    return out


def job_io(connection: Connection, keys: Sequence[JobKey]) -> dict[JobKey, dict[str, list[DatasetKey]]]:
    """``{job: {"INPUT": [...], "OUTPUT": [...]}}``, datasets sorted by (namespace, name)."""
    t = s.job_io
    out: dict[JobKey, dict[str, list[DatasetKey]]] = {}
    for chunk in chunked(keys):
        stmt = select(t.c.job_namespace, t.c.job_name, t.c.direction, t.c.dataset_namespace, t.c.dataset_name)
        stmt = stmt.where(key_in(connection, [t.c.job_namespace, t.c.job_name], chunk))
        for jns, jname, direction, dns, dname in connection.execute(stmt):
            out.setdefault((jns, jname), {}).setdefault(direction, []).append((dns, dname))
    for per_direction in out.values():
        for datasets in per_direction.values():
            datasets.sort()
    return out


def latest_run_ids(connection: Connection, keys: Sequence[JobKey], per_job: int) -> dict[JobKey, list[str]]:
    """The ``per_job`` newest runs of each job (by created_at, then run id), newest first.

    PostgreSQL walks ``ix_runs_job`` backwards per job (LATERAL ... LIMIT), which stays cheap for a job
    with a long history. SQLite has no LATERAL; a window over the runs of the chunk's jobs is the
    portable form (SQLite is in-process, so scanning one job's runs from the index is still fast).
    """
    r = s.runs
    out: dict[JobKey, list[str]] = {}
    order = (r.c.created_at.desc(), r.c.run_id.desc())
    for chunk in chunked(keys):
        stmt: Select[Any]
        if connection.dialect.name == "postgresql":
            wanted = (
                func.unnest(_pg_array([k[0] for k in chunk]), _pg_array([k[1] for k in chunk]))
                .table_valued("ns", "nm")
                .render_derived(name="wanted")
            )
            newest = (
                select(r.c.run_id, r.c.created_at)
                .where(r.c.job_namespace == wanted.c.ns, r.c.job_name == wanted.c.nm)
                .order_by(*order)
                .limit(per_job)
                .lateral("newest")
            )
            stmt = (
                select(wanted.c.ns, wanted.c.nm, newest.c.run_id)
                .select_from(wanted.join(newest, true()))
                .order_by(wanted.c.ns, wanted.c.nm, newest.c.created_at.desc(), newest.c.run_id.desc())
            )
        else:
            rank = func.row_number().over(partition_by=(r.c.job_namespace, r.c.job_name), order_by=order)
            ranked = (
                select(r.c.job_namespace, r.c.job_name, r.c.run_id, r.c.created_at, rank.label("rank"))
                .where(key_in(connection, [r.c.job_namespace, r.c.job_name], chunk))
                .subquery()
            )
            stmt = (
                select(ranked.c.job_namespace, ranked.c.job_name, ranked.c.run_id)
                .where(ranked.c.rank <= per_job)
                .order_by(ranked.c.job_namespace, ranked.c.job_name, ranked.c.rank)
            )
        for row in connection.execute(stmt):
            out.setdefault((row[0], row[1]), []).append(row[2])
    return out


def run_io(connection: Connection, run_ids: Sequence[str]) -> list[tuple[str, str, str, str, str | None]]:
    """``(run_id, direction, namespace, name, version)`` rows of the given runs.

    An output's version is the one the run wrote: ``dataset_version_id(namespace, name, run_id)``, which
    the projector stores with every output, so it is computed here rather than looked up. An input's
    version is resolved at read time: the newest version of that dataset created at or before the run's
    creation, written by another run. Resolving it here (not at ingest) keeps the answer independent of
    the order in which events arrived.
    """
    io, runs, dv = s.run_io, s.runs, s.dataset_versions
    input_version = (
        select(dv.c.version)
        .where(
            dv.c.namespace == io.c.dataset_namespace,
            dv.c.name == io.c.dataset_name,
            dv.c.created_at <= runs.c.created_at,
            # A run that reads and writes one dataset did not read its own output.
            dv.c.run_id != io.c.run_id,
        )
        .order_by(dv.c.created_at.desc(), dv.c.version.desc())
        .limit(1)
        .scalar_subquery()
    )
    # CASE: the subquery only runs for inputs.
    version = case((io.c.direction == "INPUT", input_version), else_=None)
    rows: list[tuple[str, str, str, str, str | None]] = []
    for chunk in chunked(run_ids):
        stmt = (
            select(io.c.run_id, io.c.direction, io.c.dataset_namespace, io.c.dataset_name, version)
            .select_from(io.join(runs, runs.c.run_id == io.c.run_id))
            .where(key_in(connection, [io.c.run_id], chunk))
            .order_by(io.c.run_id, io.c.direction, io.c.dataset_namespace, io.c.dataset_name)
        )
        for rid, direction, ns, name, ver in connection.execute(stmt):
            if direction == "OUTPUT":
                ver = dataset_version_id(ns, name, rid)
            rows.append((rid, direction, ns, name, ver))
    return rows


def run_io_facets(
    connection: Connection, run_ids: Sequence[str]
) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """``{(run_id, direction, namespace, name): {facet: value}}`` (the inputFacets / outputFacets)."""
    t = s.run_io_facets
    out: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for chunk in chunked(run_ids):
        stmt = select(
            t.c.run_id, t.c.direction, t.c.dataset_namespace, t.c.dataset_name, t.c.facet, t.c.value
        ).where(key_in(connection, [t.c.run_id], chunk))
        for rid, direction, ns, name, facet, value in connection.execute(stmt.order_by(t.c.facet)):
            out.setdefault((rid, direction, ns, name), {})[facet] = loads(value)
    return out


def dataset_summaries(connection: Connection, keys: Sequence[DatasetKey]) -> list[Any]:
    """Dataset rows with their current version and the time of their last successful write.

    Both come from correlated subqueries that follow ``ix_dataset_versions_dataset`` from the newest
    version down, so a dataset with a long history costs an index probe, not a scan.
    """
    d, dv, runs = s.datasets, s.dataset_versions, s.runs
    current = (
        select(dv.c.version)
        .where(dv.c.namespace == d.c.namespace, dv.c.name == d.c.name)
        .order_by(dv.c.created_at.desc(), dv.c.version.desc())
        .limit(1)
        .scalar_subquery()
    )
    last_modified = (
        select(dv.c.created_at)
        .select_from(dv.join(runs, runs.c.run_id == dv.c.run_id))
        .where(dv.c.namespace == d.c.namespace, dv.c.name == d.c.name, runs.c.state == "COMPLETED")
        .order_by(dv.c.created_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows: list[Any] = []
    for chunk in chunked(keys):
        stmt = select(
            d.c.namespace, d.c.name, d.c.created_at, d.c.updated_at,
            current.label("current_version"), last_modified.label("last_modified_at"),
        ).where(key_in(connection, [d.c.namespace, d.c.name], chunk))
        rows.extend(connection.execute(stmt))
    return rows

