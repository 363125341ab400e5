"""The governance audit log as a service: record decisions, derive them from events, query (skeleton)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine

from lineage.store import audit
from lineage.store.audit import AuditEntry


class AuditService:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, entries: Sequence[AuditEntry]) -> int:
        return audit.record(self.engine, entries)

    def on_commit(self, created: int) -> None:
        """Called by the ingest writer after each projection of ``created`` new events."""
