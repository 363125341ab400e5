"""The audit log of governance decisions: append-only rows, queried by dataset, kind and time."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.exc import IntegrityError

from lineage.store import schema as s
from lineage.store.times import now

AuditKind = Literal[
    "level_assigned", "publish_allowed", "publish_refused", "access_granted", "access_denied", "violation"
]
AUDIT_KINDS: tuple[AuditKind, ...] = (
    "level_assigned", "publish_allowed", "publish_refused", "access_granted", "access_denied", "violation"
)


@dataclass(frozen=True)
class AuditEntry:
    kind: AuditKind
    reason: str
    dataset_namespace: str | None = None
    dataset_name: str | None = None
    field: str | None = None
    subject: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    at: str | None = None  # default: now
    dedup_key: str | None = None  # entries with the same key are written once

    def row(self) -> dict[str, Any]:
        return {
            "at": self.at or now(), "kind": self.kind, "dataset_namespace": self.dataset_namespace,
            "dataset_name": self.dataset_name, "field": self.field, "subject": self.subject,
            "reason": self.reason, "details": orjson.dumps(self.details).decode() if self.details else None,
            "dedup_key": self.dedup_key,
        }


def record_in(connection: Connection, entries: Sequence[AuditEntry]) -> int:
    """Append entries inside the caller's transaction; entries whose dedup key exists are skipped."""
    if not entries:
        return 0
    keyed = [e.dedup_key for e in entries if e.dedup_key is not None]
    known: set[str] = set()
    if keyed:
        known = set(connection.execute(
            select(s.audit_log.c.dedup_key).where(s.audit_log.c.dedup_key.in_(keyed))).scalars())
    fresh, seen = [], set()
    for entry in entries:
        if entry.dedup_key is not None:
            if entry.dedup_key in known or entry.dedup_key in seen:
                continue
            seen.add(entry.dedup_key)
        fresh.append(entry.row())
    if fresh:
        connection.execute(insert(s.audit_log), fresh)
    return len(fresh)


def record(engine: Engine, entries: Sequence[AuditEntry]) -> int:
    """Append entries in their own transaction; a concurrent writer of the same dedup key wins."""
    try:
        with engine.begin() as connection:
            return record_in(connection, entries)
    except IntegrityError:
        # Another process wrote one of the keyed entries between our check and insert: write one by one.
        written = 0
        for entry in entries:
            try:
                with engine.begin() as connection:
                    written += record_in(connection, [entry])
            except IntegrityError:
                continue
        return written


def query(
    engine: Engine,
    *,
    namespace: str | None = None,
    name: str | None = None,
    kind: str | None = None,
    subject: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Entries newest first, and how many match in all. ``since`` inclusive, ``until`` exclusive."""
    t = s.audit_log
    where = []
    if namespace is not None:
        where.append(t.c.dataset_namespace == namespace)
    if name is not None:
        where.append(t.c.dataset_name == name)
    if kind is not None:
        where.append(t.c.kind == kind)
    if subject is not None:
        where.append(t.c.subject == subject)
    if since is not None:
        where.append(t.c.at >= since)
    if until is not None:
        where.append(t.c.at < until)
    with engine.connect() as connection:
        total = connection.execute(select(func.count()).select_from(t).where(*where)).scalar_one()
        rows = connection.execute(
            select(t).where(*where).order_by(t.c.at.desc(), t.c.id.desc()).limit(limit).offset(offset)
        ).all()
    return [
        {
            "id": row.id, "at": row.at, "kind": row.kind,
            "dataset": ({"namespace": row.dataset_namespace, "name": row.dataset_name}
                        if row.dataset_name is not None else None),
            "field": row.field, "subject": row.subject, "reason": row.reason,
            "details": orjson.loads(row.details) if row.details else {},
        }
        for row in rows
    ], int(total)
