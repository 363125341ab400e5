"""Read services (namespaces, datasets, jobs, runs, events, search, tags, sources) in Marquez's shapes.

Every method opens its own short read transaction and returns plain dicts for orjson. Unknown
namespaces, datasets, jobs, runs and sources raise :class:`NotFoundError` (the routes answer 404).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    String,
    func,
    literal_column,
    select,
    union_all,
)

from lineage.store import nodes
from lineage.store import read_queries as q
from lineage.store import schema as s
from lineage.store.event_facets import load_run_facets
from lineage.store.projector import run_key
from lineage.store.times import normalize_time

#: ``2026-01-01T00:00:00 02:00``: a ``+`` that reached us unencoded in a query string.
_PLUS_AS_SPACE = re.compile(r" (\d{2}(?::?\d{2})?)$")

#: Bounds of an open event window. Marquez defaults ``before`` to 2030-01-01, which would hide
#: future-dated events; the end of time hides nothing.
EVENTS_AFTER = "1970-01-01T00:00:00.000000Z"
EVENTS_BEFORE = "9999-12-31T23:59:59.999999Z"


DatasetKey = tuple[str, str]


class NotFoundError(LookupError):
    """A named object is not in the store; ``message`` is Marquez's wording."""

    def __init__(self, kind: str, name: str) -> None:
        self.message = f"{kind} '{name}' not found."
        super().__init__(self.message)


def parse_instant(value: str) -> str:
    """An ISO-8601 date-time with a zone, in the stored UTC form; ValueError when it is not one."""
    return normalize_time(_PLUS_AS_SPACE.sub(r"+\1", value.strip()))


def _namespace_json(row: Any) -> dict[str, Any]:
    # Marquez namespaces created by OpenLineage events have the default owner and no description.
    return {
        "name": row.name, "createdAt": row.created_at, "updatedAt": row.updated_at,
        "ownerName": "anonymous", "description": None, "isHidden": False,
    }


def _source_json(row: Any) -> dict[str, Any]:
    # Marquez types every source it learns from OpenLineage as POSTGRESQL.
    return {
        "type": "POSTGRESQL", "name": row.name, "createdAt": row.created_at, "updatedAt": row.updated_at,
        "connectionUrl": row.connection_url, "description": None,
    }


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _name_matches(connection: Connection, col: Any, pattern: str) -> ColumnElement[bool]:
    """Case-insensitive LIKE with Marquez's wildcards (``%`` any run, ``_`` one character).

    SQLite's own LIKE and lower() fold ASCII only; a Python lower() registered on the connection
    folds every script, as PostgreSQL's ILIKE does, so "ÉTÉ" finds "été" on both backends.
    """
    if connection.dialect.name == "sqlite":
        raw = connection.connection.driver_connection
        raw.create_function("chaintrace_lower", 1, _lower, deterministic=True)  # type: ignore[union-attr]
        return func.chaintrace_lower(col).like(func.chaintrace_lower(pattern), escape="\\")
    result: ColumnElement[bool] = col.ilike(pattern, escape="\\")
    return result


def _search_pattern(query: str) -> str:
    # The backslash is our LIKE escape character: a literal one in the query must stay literal.
    return "%" + query.replace("\\", "\\\\") + "%"


def _keys_in(connection: Connection, table: Any, keys: Sequence[DatasetKey]) -> list[ColumnElement[bool]]:
    """One ``(namespace, name) IN (...)`` per chunk of ``keys``."""
    return [q.key_in(connection, [table.c.namespace, table.c.name], chunk) for chunk in q.chunked(keys)]


def search_nodes(
    connection: Connection, query: str, *, kind: str | None, sort: str, limit: int, offset: int,
    exclude: Sequence[DatasetKey] = (),
) -> tuple[list[dict[str, Any]], int]:
    """Datasets and jobs whose name contains ``query`` (Marquez's ``ILIKE '%' || q || '%'``);
    datasets in ``exclude`` (withheld from the caller) are left out before paging."""
    pattern = _search_pattern(query)
    parts: list[Select[Any]] = []
    for node_type, table in (("DATASET", s.datasets), ("JOB", s.jobs)):
        if kind in (None, node_type):
            stmt = select(
                literal_column(f"'{node_type}'", String).label("type"),
                table.c.name, table.c.updated_at, table.c.namespace,
            ).where(_name_matches(connection, table.c.name, pattern))
            if node_type == "DATASET" and exclude:
                stmt = stmt.where(*(~cond for cond in _keys_in(connection, table, exclude)))
            parts.append(stmt)
    found = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery("found")
    order: tuple[Any, ...]
    if sort == "updated_at":
        order = (found.c.updated_at.desc(), found.c.name, found.c.namespace, found.c.type)
    else:
        order = (found.c.name, found.c.namespace, found.c.type)
    rows = connection.execute(select(found).order_by(*order).limit(limit).offset(offset)).all()
    total = int(connection.execute(select(func.count()).select_from(found)).scalar() or 0)
    results = [
        {
            "type": row.type, "name": row.name, "updatedAt": row.updated_at, "namespace": row.namespace,
            "nodeId": f"{row.type.lower()}:{row.namespace}:{row.name}",
        }
        for row in rows
    ]
    return results, total


def _count(connection: Connection, stmt: Select[Any]) -> int:
    return int(connection.execute(select(func.count()).select_from(stmt.subquery())).scalar() or 0)


def _exists(connection: Connection, table: Any, *where: ColumnElement[bool]) -> bool:
    return connection.execute(select(1).select_from(table).where(*where).limit(1)).first() is not None


Loader = Callable[[Connection, list[Any]], dict[Any, dict[str, Any]]]


def _page(
    connection: Connection,
    stmt: Select[Any],
    order: tuple[Any, ...],
    limit: int,
    offset: int,
    load: Loader,
) -> tuple[list[dict[str, Any]], int]:
    """One page of keys selected by ``stmt`` in ``order``, loaded as objects, plus the total count."""
    keys = [tuple(row) if len(row) > 1 else row[0]
            for row in connection.execute(stmt.order_by(*order).limit(limit).offset(offset))]
    objects = load(connection, keys)
    return [objects[k] for k in keys if k in objects], _count(connection, stmt)


class ReadService:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- namespaces ---------------------------------------------------------------------------------

    def list_namespaces(self, limit: int, offset: int) -> dict[str, Any]:
        n = s.namespaces
        with self.engine.connect() as c:
            rows = c.execute(select(n).order_by(n.c.name).limit(limit).offset(offset)).all()
            total = _count(c, select(n.c.name))
        return {"namespaces": [_namespace_json(r) for r in rows], "totalCount": total}

    def get_namespace(self, namespace: str) -> dict[str, Any]:
        with self.engine.connect() as c:
            row = c.execute(select(s.namespaces).where(s.namespaces.c.name == namespace)).first()
        if row is None:
            raise NotFoundError("Namespace", namespace)
        return _namespace_json(row)

    def _check_namespace(self, c: Connection, namespace: str) -> None:
        if not _exists(c, s.namespaces, s.namespaces.c.name == namespace):
            raise NotFoundError("Namespace", namespace)

    # -- datasets -----------------------------------------------------------------------------------

    # Datasets and jobs are both (namespace, name) nodes: one way to list, get and check them.

    def _list_nodes(self, table: Any, loader: Loader, namespace: str, limit: int, offset: int
                    ) -> tuple[list[dict[str, Any]], int]:
        with self.engine.connect() as c:
            self._check_namespace(c, namespace)
            stmt = select(table.c.namespace, table.c.name).where(table.c.namespace == namespace)
            return _page(c, stmt, (table.c.name,), limit, offset, loader)

    def _get_node(self, loader: Loader, kind: str, namespace: str, name: str) -> dict[str, Any]:
        with self.engine.connect() as c:
            found = loader(c, [(namespace, name)])
        if not found:
            raise NotFoundError(kind, name)
        return found[(namespace, name)]

    @staticmethod
    def _check_node(c: Connection, table: Any, kind: str, namespace: str, name: str) -> None:
        if not _exists(c, table, table.c.namespace == namespace, table.c.name == name):
            raise NotFoundError(kind, name)

    def list_datasets(self, namespace: str, limit: int, offset: int) -> dict[str, Any]:
        items, total = self._list_nodes(s.datasets, nodes.load_datasets, namespace, limit, offset)
        return {"datasets": items, "totalCount": total}

    def get_dataset(self, namespace: str, name: str) -> dict[str, Any]:
        return self._get_node(nodes.load_datasets, "Dataset", namespace, name)

    def _check_dataset(self, c: Connection, namespace: str, name: str) -> None:
        self._check_node(c, s.datasets, "Dataset", namespace, name)

    def list_dataset_versions(self, namespace: str, name: str, limit: int, offset: int) -> dict[str, Any]:
        dv = s.dataset_versions
        with self.engine.connect() as c:
            self._check_dataset(c, namespace, name)
            stmt = select(dv.c.version).where(dv.c.namespace == namespace, dv.c.name == name)
            order = (dv.c.created_at.desc(), dv.c.version.desc())
            items, total = _page(c, stmt, order, limit, offset, nodes.load_dataset_versions)
        return {"versions": items, "totalCount": total}

    def get_dataset_version(self, namespace: str, name: str, version: str) -> dict[str, Any]:
        with self.engine.connect() as c:
            self._check_dataset(c, namespace, name)
            found = nodes.load_dataset_versions(c, [version]).get(version)
        if found is None or found["namespace"] != namespace or found["name"] != name:
            raise NotFoundError("Dataset version", version)
        return found

    # -- jobs and runs ------------------------------------------------------------------------------

    def list_jobs(self, namespace: str, limit: int, offset: int) -> dict[str, Any]:
        items, total = self._list_nodes(s.jobs, nodes.load_jobs, namespace, limit, offset)
        return {"jobs": items, "totalCount": total}

    def get_job(self, namespace: str, name: str) -> dict[str, Any]:
        return self._get_node(nodes.load_jobs, "Job", namespace, name)

    def _check_job(self, c: Connection, namespace: str, name: str) -> None:
        self._check_node(c, s.jobs, "Job", namespace, name)

    def list_job_versions(self, namespace: str, name: str, limit: int, offset: int) -> dict[str, Any]:
        with self.engine.connect() as c:
            self._check_job(c, namespace, name)
            versions = nodes.job_versions(c, namespace, name)
            items = nodes.load_job_versions(c, namespace, name, versions[offset : offset + limit])
        return {"versions": items, "totalCount": len(versions)}

    def get_job_version(self, namespace: str, name: str, version: str) -> dict[str, Any]:
        with self.engine.connect() as c:
            self._check_job(c, namespace, name)
            found = [v for v in nodes.job_versions(c, namespace, name) if v.version == version]
            if found:
                return nodes.load_job_versions(c, namespace, name, found)[0]
        raise NotFoundError("Job version", version)

    def list_runs(self, namespace: str, job: str, limit: int, offset: int) -> dict[str, Any]:
        r = s.runs
        with self.engine.connect() as c:
            self._check_job(c, namespace, job)
            stmt = select(r.c.run_id).where(r.c.job_namespace == namespace, r.c.job_name == job)
            order = (r.c.created_at.desc(), r.c.run_id.desc())
            items, total = _page(c, stmt, order, limit, offset, nodes.load_runs)
        return {"runs": items, "totalCount": total}

    def get_run(self, run_id: str) -> dict[str, Any]:
        key = run_key(run_id)
        with self.engine.connect() as c:
            found = nodes.load_runs(c, [key]).get(key)
        if found is None:
            raise NotFoundError("Run", run_id)
        return found

    def get_run_facets(self, run_id: str, facet_type: str) -> dict[str, Any]:
        """Marquez ``/jobs/runs/{id}/facets``: the run's facets, or the job facets the run saw."""
        key = run_key(run_id)
        with self.engine.connect() as c:
            if not _exists(c, s.runs, s.runs.c.run_id == key):
                raise NotFoundError("Run", run_id)
            merged = load_run_facets(c, [key]).get(key)
        facets = {} if merged is None else merged.job if facet_type == "job" else merged.run
        return {"runId": key, "facets": facets}

    # -- events -------------------------------------------------------------------------------------

    def list_events(
        self, *, before: str | None, after: str | None, ascending: bool, limit: int, offset: int
    ) -> dict[str, Any]:
        """Raw RunEvents with ``after <= eventTime < before`` (Marquez's window), newest first by default.

        Payloads go out as ``orjson.Fragment``: the stored JSON text is copied into the answer as is,
        never parsed and re-serialised, so every value comes back exactly as it was stored.
        """
        e = s.events
        window = select(e.c.id).where(
            e.c.kind == "RunEvent",
            e.c.event_time >= (after or EVENTS_AFTER),
            e.c.event_time < (before or EVENTS_BEFORE),
        )
        order = (e.c.event_time.asc(), e.c.id.asc()) if ascending else (e.c.event_time.desc(), e.c.id.desc())
        stmt = window.with_only_columns(e.c.payload).order_by(*order).limit(limit).offset(offset)
        with self.engine.connect() as c:
            payloads = c.execute(stmt).scalars().all()
            total = _count(c, window)
        return {"events": [orjson.Fragment(p) for p in payloads], "totalCount": total}

    # -- search, tags, sources ----------------------------------------------------------------------

    def search(
        self, query: str, *, kind: str | None, sort: str, limit: int, offset: int,
        exclude: Sequence[DatasetKey] = (),
    ) -> dict[str, Any]:
        with self.engine.connect() as c:
            results, total = search_nodes(c, query, kind=kind, sort=sort, limit=limit, offset=offset,
                                          exclude=exclude)
        return {"totalCount": total, "results": results}

    def search_matches(self, query: str, keys: Sequence[DatasetKey]) -> list[DatasetKey]:
        """Which datasets of ``keys`` a search for ``query`` would find (to say how many were withheld)."""
        d, pattern = s.datasets, _search_pattern(query)
        found: list[DatasetKey] = []
        with self.engine.connect() as c:
            for cond in _keys_in(c, d, keys):
                stmt = select(d.c.namespace, d.c.name).where(_name_matches(c, d.c.name, pattern), cond)
                found.extend((ns, name) for ns, name in c.execute(stmt))
        return found

    def list_tags(self, limit: int, offset: int) -> dict[str, Any]:
        t = s.tags
        with self.engine.connect() as c:
            names = c.execute(select(t.c.name).order_by(t.c.name).limit(limit).offset(offset)).scalars().all()
            total = _count(c, select(t.c.name))
        return {"tags": [{"name": n, "description": None} for n in names], "totalCount": total}

    def list_sources(self, limit: int, offset: int) -> dict[str, Any]:
        src = s.sources
        with self.engine.connect() as c:
            rows = c.execute(select(src).order_by(src.c.name).limit(limit).offset(offset)).all()
            total = _count(c, select(src.c.name))
        return {"sources": [_source_json(r) for r in rows], "totalCount": total}

    def get_source(self, name: str) -> dict[str, Any]:
        with self.engine.connect() as c:
            row = c.execute(select(s.sources).where(s.sources.c.name == name)).first()
        if row is None:
            raise NotFoundError("Source", name)
        return _source_json(row)

