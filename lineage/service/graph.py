"""Lineage graph queries (Marquez /lineage and /column-lineage semantics) over an in-memory index."""

from __future__ import annotations

from sqlalchemy import Engine


class GraphService:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_commit(self, created: int) -> None:
        """Called by the ingest writer after each commit that stored ``created`` new events."""
