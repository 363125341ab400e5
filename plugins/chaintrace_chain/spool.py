"""The chain's side of the lineage spool: where a task's OpenLineage events wait while the service is away.

The file format and the replay loop live in :mod:`lineage.spool_format`, shared with the lineage
service (which ingests the spool on start); the service never imports the chain, so the format module
sits on its side. This module gives the chain one small object over a spool folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lineage.spool_format import (
    HttpDelivery,
    ReplaySummary,
    list_events,
    list_rejected,
    read_event,
    replay,
    write_event,
    write_rejected,
)

SPOOL_DIR_ENV = "CHAINTRACE_SPOOL_DIR"

__all__ = ["SPOOL_DIR_ENV", "ReplaySummary", "Spool", "spool_dir_from_env"]


def spool_dir_from_env() -> Path | None:
    """The spool folder named by ``CHAINTRACE_SPOOL_DIR``, if set."""
    value = os.environ.get(SPOOL_DIR_ENV, "").strip()
    return Path(value) if value else None


@dataclass(frozen=True)
class Spool:
    """A spool folder: write events into it, look at it, replay it to a running lineage service."""

    directory: Path
    fsync: bool = True  # False: survives a crash of the process, not of the machine (much faster)

    def write(self, body: bytes) -> Path:
        """Spool one event (its JSON exactly as it would have been sent); atomic, safe across processes."""
        return write_event(self.directory, body, fsync=self.fsync)

    def write_rejected(self, body: bytes, error: dict[str, Any]) -> Path:
        """Keep an event the service refused as invalid in ``rejected/`` with the reason."""
        return write_rejected(self.directory, body, error)

    def events(self) -> list[Path]:
        """Spooled event files waiting for delivery, oldest first."""
        return list_events(self.directory)

    def rejected(self) -> list[Path]:
        """Event files the service refused (each with a ``.error.json`` beside it)."""
        return list_rejected(self.directory)

    def read(self, path: Path) -> bytes | None:
        """One spooled event's bytes; None if it was delivered meanwhile."""
        return read_event(path)

    def replay(
        self, url: str, *, batch: int = 100, api_key: str | None = None, limit: int | None = None
    ) -> ReplaySummary:
        """Deliver the spool to the service at ``url`` (base URL); delete each file once acknowledged."""
        with HttpDelivery(url, api_key=api_key) as deliver:
            return replay(self.directory, deliver, batch=batch, limit=limit)
