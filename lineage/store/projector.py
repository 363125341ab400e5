"""Derive the lineage graph from raw OpenLineage events.

:func:`project` turns a batch of stored events into rows of the derived tables, merges rows that share a
primary key inside the batch, then upserts them with commutative SQL merges (see :mod:`merge`). Applying
the same events in any order, any number of times, gives the same tables.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from sqlalchemy import Connection

from lineage.store import schema as s
from lineage.store.merge import MergeSpec, Row

_VERSION_NS = uuid.UUID("6f1c1f8e-2c3b-4f7e-9a51-5b0c2d7e8a11")
_VERSION_NS_BYTES = _VERSION_NS.bytes

# eventType -> (rank, Marquez run state). Terminal states outrank RUNNING outranks START outranks OTHER,
# so a START that arrives after COMPLETE cannot reopen the run.
RUN_TRANSITIONS: dict[str, tuple[int, str]] = {
    "OTHER": (0, "NEW"),
    "START": (1, "RUNNING"),
    "RUNNING": (2, "RUNNING"),
    "COMPLETE": (3, "COMPLETED"),
    "FAIL": (3, "FAILED"),
    "ABORT": (3, "ABORTED"),
}

_FACET = (("lww", ("value",)),)

SPECS: dict[str, MergeSpec] = {
    "namespaces": MergeSpec(s.namespaces, ("name",), ("created_at",), ("updated_at",)),
    "sources": MergeSpec(
        s.sources, ("name",), ("created_at",), ("updated_at",), (("lww", ("connection_url",)),)
    ),
    "datasets": MergeSpec(s.datasets, ("namespace", "name"), ("created_at",), ("updated_at", "seq")),
    "dataset_facets": MergeSpec(s.dataset_facets, ("namespace", "name", "facet"), lww_groups=_FACET),
    "dataset_versions": MergeSpec(s.dataset_versions, ("version",), ("created_at",)),
    "jobs": MergeSpec(s.jobs, ("namespace", "name"), ("created_at",), ("updated_at", "seq")),
    "job_facets": MergeSpec(s.job_facets, ("namespace", "name", "facet"), lww_groups=_FACET),
    "job_io": MergeSpec(
        s.job_io,
        ("job_namespace", "job_name", "dataset_namespace", "dataset_name", "direction"),
        ("first_seen",),
        ("last_seen", "seq"),
    ),
    "runs": MergeSpec(
        s.runs,
        ("run_id",),
        ("created_at", "started_at", "parent_run_id"),
        ("updated_at", "seq"),
        (("state_key", ("state", "ended_at")),),
    ),
    "run_io": MergeSpec(
        s.run_io, ("run_id", "dataset_namespace", "dataset_name", "direction"), ("created_at",)
    ),
    "run_io_facets": MergeSpec(
        s.run_io_facets,
        ("run_id", "dataset_namespace", "dataset_name", "direction", "facet"),
        lww_groups=_FACET,
    ),
    "column_lineage": MergeSpec(
        s.column_lineage,
        (
            "out_namespace", "out_name", "out_field", "in_namespace", "in_name", "in_field",
            "transformation_type", "transformation_subtype",
        ),
        max_cols=("seq",),
        lww_groups=(("lww", ("description", "masking")),),
    ),
    "tags": MergeSpec(s.tags, ("name",), ("created_at",)),
    "dataset_tags": MergeSpec(
        s.dataset_tags,
        ("namespace", "name", "field", "tag_key"),
        lww_groups=(("lww", ("tag_value", "source")),),
    ),
    "job_tags": MergeSpec(
        s.job_tags, ("namespace", "name", "tag_key"), lww_groups=(("lww", ("tag_value", "source")),)
    ),
}


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A raw event as kept in the store, ready to be projected."""

    id: int
    event_hash: str
    event_time: str  # normalised, see lineage.store.times
    event: dict[str, Any]


def dataset_version_id(namespace: str, name: str, run_id: str) -> str:
    """One dataset version per output write: stable across replays and arrival orders.

    Exactly ``str(uuid.uuid5(_VERSION_NS, ...))``, computed without the UUID objects (a third of
    the cost; this runs for every output of every event).
    """
    digest = bytearray(
        hashlib.sha1(_VERSION_NS_BYTES + f"{namespace}\x00{name}\x00{run_id}".encode(),
                     usedforsecurity=False).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _facets(obj: Any, key: str = "facets") -> dict[str, Any]:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else {}


class Projection:
    """Rows of one projection batch, merged per primary key.

    ``descending``: events will be extended in descending id order (see :mod:`parallel_rebuild`), so
    constant columns are taken from the row merged last instead of the first.
    """

    def __init__(self, *, descending: bool = False) -> None:
        self.acc: dict[str, dict[tuple[Any, ...], Row]] = {name: {} for name in SPECS}
        # One bound merge per table: this runs for every derived row of every event.
        self.adders: dict[str, Callable[[Row], None]] = {
            name: partial(spec.merge_into_descending if descending and spec.constants else spec.merge_into,
                          self.acc[name])
            for name, spec in SPECS.items()
        }

    def add(self, table: str, row: Row) -> None:
        self.adders[table](row)

    def extend(self, events: Iterable[StoredEvent]) -> None:
        """Merge the rows of ``events`` into this batch."""
        for ev in events:
            _project_one(self, ev)

    def row_count(self, tables: Collection[str] | None = None) -> int:
        return sum(len(self.acc[name]) for name in self.acc if tables is None or name in tables)

    def values(
        self, tables: Iterable[str] | None = None, *, clear: bool = False
    ) -> dict[str, list[tuple[Any, ...]]]:
        """Per table, the merged rows as parameter tuples in column order (what the upserts bind).

        ``tables``: only these (default all); ``clear``: and start them afresh in this projection.
        """
        out: dict[str, list[tuple[Any, ...]]] = {}
        for name in self.acc if tables is None else tables:
            rows = self.acc[name]
            batch = list(rows.values())
            if clear:
                rows.clear()  # in place: the bound merges in ``adders`` hold this very dict
            if batch and "value" in batch[0]:
                # Facet values are kept as objects while rows merge; only the winners get serialised.
                for row in batch:
                    row["value"] = _dumps(row["value"])
            out[name] = SPECS[name].values(batch)
        return out

    def write(self, connection: Connection) -> int:
        return write_values(connection, self.values())


def write_values(connection: Connection, values: dict[str, list[tuple[Any, ...]]]) -> int:
    """Upsert the rows of :meth:`Projection.values` (inside the caller's transaction)."""
    return sum(SPECS[name].write_values(connection, rows) for name, rows in values.items())


def _project_one(batch: Projection, ev: StoredEvent) -> None:
    event, t, seq = ev.event, ev.event_time, ev.id
    lww = f"{t}|{ev.event_hash}"
    add = batch.add
    namespaces_seen: set[str] = set()  # one event names the same namespace many times

    def namespace(name: str) -> None:
        if name not in namespaces_seen:
            namespaces_seen.add(name)
            add("namespaces", {"name": name, "created_at": t, "updated_at": t})

    def dataset(ds: dict[str, Any]) -> tuple[str, str]:
        ns, name = ds["namespace"], ds["name"]
        namespace(ns)
        add("datasets", {"namespace": ns, "name": name, "created_at": t, "updated_at": t, "seq": seq})
        facets = _facets(ds)
        for facet, value in (*facets.items(), *_facets(ds, "inputFacets").items(),
                             *_facets(ds, "outputFacets").items()):
            add("dataset_facets", {"namespace": ns, "name": name, "facet": facet, "value": value,
                                   "lww": lww})
        source = facets.get("dataSource")
        if isinstance(source, dict):
            src_name = source.get("name") or ns
            add("sources", {"name": str(src_name), "connection_url": _str_or_none(source.get("uri")),
                            "created_at": t, "updated_at": t, "lww": lww})
        _column_lineage(batch, ns, name, facets.get("columnLineage"), lww, seq)
        _dataset_tags(batch, ns, name, facets.get("tags"), lww, t)
        return ns, name

    run = event.get("run") if isinstance(event.get("run"), dict) else None
    job = event.get("job") if isinstance(event.get("job"), dict) else None

    if "dataset" in event and job is None:
        dataset(event["dataset"])
        return
    if job is None:
        return
    job_ns, job_name = job["namespace"], job["name"]
    namespace(job_ns)
    add("jobs", {"namespace": job_ns, "name": job_name, "created_at": t, "updated_at": t, "seq": seq})
    job_facets = _facets(job)
    for facet, value in job_facets.items():
        add("job_facets", {"namespace": job_ns, "name": job_name, "facet": facet, "value": value,
                           "lww": lww})
    _job_tags(batch, job_ns, job_name, job_facets.get("tags"), lww, t)

    run_id = run_key(run["runId"]) if run is not None else None
    if run is not None and run_id is not None:
        rank, state = RUN_TRANSITIONS.get(str(event.get("eventType") or "OTHER"), (0, "NEW"))
        run_facets = _facets(run)
        parent = run_facets.get("parent")
        parent_id = None
        if isinstance(parent, dict) and isinstance(parent.get("run"), dict):
            parent_value = parent["run"].get("runId")
            parent_id = run_key(parent_value) if parent_value is not None else None
            if parent_id is not None and len(parent_id) > 64:  # not a run id: keep the column valid
                parent_id = None
        add("runs", {
            "run_id": run_id, "job_namespace": job_ns, "job_name": job_name,
            "created_at": t, "updated_at": t, "state": state, "state_key": f"{rank}|{lww}",
            "started_at": t if rank == 1 else None, "ended_at": t if rank == 3 else None,
            "parent_run_id": parent_id, "seq": seq,
        })

    for direction, key, io_key in (("INPUT", "inputs", "inputFacets"), ("OUTPUT", "outputs", "outputFacets")):
        items = event.get(key)
        if not isinstance(items, list):
            continue
        for ds in items:
            ns, name = dataset(ds)
            add("job_io", {"job_namespace": job_ns, "job_name": job_name, "dataset_namespace": ns,
                           "dataset_name": name, "direction": direction, "first_seen": t, "last_seen": t,
                           "seq": seq})
            if run_id is None:
                continue
            add("run_io", {"run_id": run_id, "dataset_namespace": ns, "dataset_name": name,
                           "direction": direction, "created_at": t})
            for facet, value in _facets(ds, io_key).items():
                add("run_io_facets", {"run_id": run_id, "dataset_namespace": ns, "dataset_name": name,
                                      "direction": direction, "facet": facet, "value": value,
                                      "lww": lww})
            if direction == "OUTPUT":
                version = dataset_version_id(ns, name, run_id)
                add("dataset_versions", {"version": version, "namespace": ns, "name": name,
                                         "run_id": run_id, "created_at": t})


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def run_key(value: Any) -> str:
    """The canonical form of a runId: upper- and lower-case spellings are the same run."""
    text = str(value)
    if len(text) == 36:  # the hyphenated form the schema's uuid format demands: lower-casing is enough
        return text.lower()
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return text


def _column_lineage(batch: Projection, ns: str, name: str, facet: Any, lww: str, seq: int) -> None:
    fields = facet.get("fields") if isinstance(facet, dict) else None
    if not isinstance(fields, dict):
        return
    for out_field, spec in fields.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("inputFields"), list):
            continue
        legacy_type = str(spec.get("transformationType") or "")
        legacy_desc = _str_or_none(spec.get("transformationDescription"))
        for source in spec["inputFields"]:
            if not isinstance(source, dict):
                continue
            transformations = source.get("transformations")
            if not isinstance(transformations, list) or not transformations:
                transformations = [{"type": legacy_type, "description": legacy_desc}]
            for tr in transformations:
                if not isinstance(tr, dict):
                    continue
                batch.add("column_lineage", {
                    "out_namespace": ns, "out_name": name, "out_field": str(out_field),
                    "in_namespace": str(source.get("namespace", "")), "in_name": str(source.get("name", "")),
                    "in_field": str(source.get("field", "")),
                    "transformation_type": str(tr.get("type") or ""),
                    "transformation_subtype": str(tr.get("subtype") or ""),
                    "description": _str_or_none(tr.get("description")),
                    "masking": bool(tr.get("masking", False)), "lww": lww, "seq": seq,
                })


def _tag_entries(facet: Any) -> Iterable[dict[str, Any]]:
    entries = facet.get("tags") if isinstance(facet, dict) else None
    if isinstance(entries, list):
        yield from (e for e in entries if isinstance(e, dict) and e.get("key") is not None)


def _dataset_tags(batch: Projection, ns: str, name: str, facet: Any, lww: str, t: str) -> None:
    for entry in _tag_entries(facet):
        key, value = str(entry["key"]), str(entry.get("value", ""))
        batch.add("dataset_tags", {"namespace": ns, "name": name, "field": str(entry.get("field") or ""),
                                   "tag_key": key, "tag_value": value,
                                   "source": _str_or_none(entry.get("source")), "lww": lww})
        batch.add("tags", {"name": s.tag_name(key, value), "created_at": t})


def _job_tags(batch: Projection, ns: str, name: str, facet: Any, lww: str, t: str) -> None:
    for entry in _tag_entries(facet):
        key, value = str(entry["key"]), str(entry.get("value", ""))
        batch.add("job_tags", {"namespace": ns, "name": name, "tag_key": key, "tag_value": value,
                               "source": _str_or_none(entry.get("source")), "lww": lww})
        batch.add("tags", {"name": s.tag_name(key, value), "created_at": t})


def build_projection(events: Iterable[StoredEvent]) -> Projection:
    """The merged rows of ``events``, not yet written (no database needed)."""
    projection = Projection()
    projection.extend(events)
    return projection


def project(connection: Connection, events: Iterable[StoredEvent]) -> int:
    """Apply ``events`` to the derived tables inside the caller's transaction; returns rows written."""
    return build_projection(events).write(connection)
