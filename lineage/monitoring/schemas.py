"""``schema_changed``: a new version of a dataset dropped a column or changed a column's type, versus the
version before it.

Cheap by design, as nearly every event carries schemas: the database itself (SQLite's JSON1, PostgreSQL's
jsonb, both in C) picks out of the new raw events the ``schema`` facet text of each output, and nothing
else; Python never parses whole payloads. The newest schema text of recently seen datasets is kept in
memory, and most versions repeat the one before: the same text costs one string comparison. Only a new
text is parsed and compared, with the version before it: remembered, or (for an event older than what is
remembered, or a dataset not seen yet) the newest older version of the dataset with a schema, from the
store. :meth:`SchemaWatch.forget` drops the memory when this process has not seen every event since
(another process derived some).

Messages never name a dataset or a column: names travel in structured fields.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, select, text

from lineage.monitoring.detect import Finding, Key
from lineage.store import schema as s
from lineage.store.event_facets import load_run_facets
from lineage.store.projector import run_key

Fields = dict[str, str | None]  # column (nested ones dotted) -> type (None when not given)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def schema_fields(facets: Any) -> Fields | None:
    """Columns of a ``schema`` facet (nested ones as ``parent.child``) and their types; None without one."""
    schema = _dict(_dict(facets).get("schema"))
    if not isinstance(schema.get("fields"), list):
        return None
    out: Fields = {}

    def walk(items: list[Any], prefix: str) -> None:
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue
            name = prefix + item["name"]
            kind = item.get("type")
            out[name] = kind.strip() if isinstance(kind, str) and kind.strip() else None
            if isinstance(item.get("fields"), list):
                walk(item["fields"], name + ".")

    walk(schema["fields"], "")
    return out


def incompatible(previous: Fields, current: Fields) -> list[dict[str, Any]]:
    """Columns removed, or whose type changed (types compared case-blind; a missing type is no change)."""
    changes: list[dict[str, Any]] = []
    for name, old in previous.items():
        if name not in current:
            changes.append({"field": name, "change": "removed", "from": old, "to": None})
            continue
        new = current[name]
        if old is not None and new is not None and old.lower() != new.lower():
            changes.append({"field": name, "change": "type_changed", "from": old, "to": new})
    return changes


@dataclass
class _Seen:
    """The newest version of a dataset this process compared, with the one before it."""

    event_time: str
    run_id: str
    text: str  # its schema facet, as the database gave it
    fields: Fields
    previous: Fields | None  # the version before it, as it was compared with
    previous_run: str | None


@dataclass(frozen=True)
class OutputSchema:
    """One output of one new event that carries a schema facet."""

    event_id: int
    event_time: str
    run_id: str
    job: Key | None
    dataset: Key
    text: str


# Two JSON parses of each output (SQLite's json_extract parses its argument on every call): its names,
# and its schema facet. Outputs without one come back with a NULL schema and are skipped in Python.
_SQLITE = text("""
SELECT e.id, e.event_time, e.run_id, e.job_namespace, e.job_name,
       json_extract(o.value, '$.namespace', '$.name'), json_extract(o.value, '$.facets.schema')
FROM events AS e, json_each(e.payload, '$.outputs') AS o
WHERE e.id > :after AND e.id <= :upto AND e.run_id IS NOT NULL
ORDER BY e.id
""")

_POSTGRES = text("""
SELECT e.id, e.event_time, e.run_id, e.job_namespace, e.job_name,
       jsonb_build_array(o.value -> 'namespace', o.value -> 'name')::text,
       (o.value -> 'facets' -> 'schema')::text
FROM (SELECT id, event_time, run_id, job_namespace, job_name, payload::jsonb -> 'outputs' AS outputs
      FROM events WHERE id > :after AND id <= :upto AND run_id IS NOT NULL) AS e
CROSS JOIN LATERAL jsonb_array_elements(
    CASE WHEN jsonb_typeof(e.outputs) = 'array' THEN e.outputs ELSE '[]'::jsonb END) AS o
WHERE jsonb_typeof(o.value -> 'facets' -> 'schema') = 'object'
ORDER BY e.id
""")


def output_schemas(connection: Connection, after: int, upto: int) -> list[OutputSchema]:
    """The outputs with a schema facet of the raw events ``after < id <= upto``, in id order."""
    query = _POSTGRES if connection.dialect.name == "postgresql" else _SQLITE
    out: list[OutputSchema] = []
    rows = connection.execute(query, {"after": after, "upto": upto})
    for event_id, at, run, ns, name, names, schema in rows:
        if schema is None or names is None:
            continue
        dataset = orjson.loads(names)
        if not (isinstance(dataset, list) and len(dataset) == 2 and all(isinstance(n, str) for n in dataset)):
            continue
        job = (ns, name) if ns is not None and name is not None else None
        out.append(OutputSchema(int(event_id), str(at), run_key(run), job, (dataset[0], dataset[1]),
                                str(schema)))
    return out


class SchemaWatch:
    """Compares each new dataset version's schema with the version before it (see the module doc)."""

    def __init__(self, capacity: int = 10_000, lookback: int = 5) -> None:
        self.capacity = capacity
        self.lookback = lookback
        self._seen: OrderedDict[Key, _Seen] = OrderedDict()
        self.parsed = 0  # schema texts parsed (tests, profiling)

    def forget(self) -> None:
        self._seen.clear()

    def findings(self, connection: Connection, after: int, upto: int) -> list[Finding]:
        """Schema changes reported by the raw events ``after < id <= upto``."""
        out: list[Finding] = []
        for item in output_schemas(connection, after, upto):
            key, seen = item.dataset, self._seen.get(item.dataset)
            if seen is not None and seen.text == item.text and item.event_time >= seen.event_time:
                if seen.run_id != item.run_id:
                    # A new version repeating the schema of the one before: nothing to compare.
                    self._remember(key, _Seen(item.event_time, item.run_id, item.text, seen.fields,
                                              seen.fields, seen.run_id))
                # (The same run's schema again: compared already.)
                continue
            self.parsed += 1
            fields = schema_fields({"schema": orjson.loads(item.text)})
            if fields is None:
                continue  # a schema facet without a list of fields: nothing to compare
            previous, previous_run = self._previous(connection, item, fields)
            changes = incompatible(previous, fields) if previous is not None else []
            if not changes:
                continue
            removed = sum(1 for c in changes if c["change"] == "removed")
            out.append(Finding(
                kind="schema_changed", subject=f"dataset:{key[0]}:{key[1]}", dataset=key, job=item.job,
                run_id=item.run_id, event_id=item.event_id, event_time=item.event_time,
                message=f"schema changed incompatibly: {removed} column(s) removed, "
                        f"{len(changes) - removed} type(s) changed versus the previous version",
                details={"previousRunId": previous_run, "columns": changes}))
        return out

    def _previous(self, connection: Connection, item: OutputSchema, fields: Fields
                  ) -> tuple[Fields | None, str | None]:
        key, seen = item.dataset, self._seen.get(item.dataset)
        if seen is not None and seen.run_id == item.run_id:
            # A later event of the same run: the same version, still compared with the one before it.
            seen.fields, seen.text = fields, item.text
            self._seen.move_to_end(key)
            return seen.previous, seen.previous_run
        previous: Fields | None
        previous_run: str | None
        if seen is not None and item.event_time >= seen.event_time:
            previous, previous_run = seen.fields, seen.run_id
        else:
            previous, previous_run = self._stored_previous(connection, key, item.run_id, item.event_time)
        if seen is None or item.event_time >= seen.event_time:
            self._remember(key, _Seen(item.event_time, item.run_id, item.text, fields, previous,
                                      previous_run))
        return previous, previous_run

    def _remember(self, key: Key, seen: _Seen) -> None:
        self._seen[key] = seen
        self._seen.move_to_end(key)
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)

    def _stored_previous(self, connection: Connection, key: Key, run_id: str,
                         event_time: str) -> tuple[Fields | None, str | None]:
        """The newest older version of the dataset that reported a schema, from the store."""
        v = s.dataset_versions
        runs = [str(r) for r in connection.execute(
            select(v.c.run_id).where(v.c.namespace == key[0], v.c.name == key[1], v.c.run_id != run_id,
                                     v.c.created_at <= event_time)
            .order_by(v.c.created_at.desc()).limit(self.lookback)).scalars()]
        if not runs:
            return None, None
        facets = load_run_facets(connection, runs)
        for previous_run in runs:
            merged = facets.get(run_key(previous_run))
            found = schema_fields(merged.outputs.get(key)) if merged is not None else None
            if found is not None:
                return found, previous_run
        return None, None
