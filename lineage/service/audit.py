"""The governance audit log as a service: record decisions, derive them from events, query.

Decisions made by the chain travel in the ``governance`` run facet of its stage events; each decision
becomes one audit row (dedup key ``event:<event_hash>:<index>``). Deriving them is kept off the ingest
writer: the writer only wakes a background worker (:meth:`AuditService.on_commit`), which reads the raw
events past its own watermark (``store_meta['audit_derived']``) and appends the rows. Rows and watermark
move in one transaction, and the dedup keys make a replay after a crash harmless, so restarts neither
miss nor repeat a decision. The audit log is not derived data: a rebuild of the graph leaves it alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy import event as sa_event
from sqlalchemy.exc import IntegrityError

from lineage.service.background import BackgroundWorker
from lineage.store import audit
from lineage.store import schema as s
from lineage.store.audit import AuditEntry, AuditKind
from lineage.store.db import WriterLock

log = logging.getLogger(__name__)

WATERMARK_KEY = "audit_derived"
#: Raw event ids looked at per pass (one read, at most one write transaction).
SCAN_IDS = 5_000
#: After a wake-up, wait this long so that commits arriving together are handled in one pass.
DEBOUNCE_S = 0.05
#: A worker with nothing to do for this long ends; the next commit starts a new one. (Contexts are
#: built and dropped freely, in tests above all: an idle worker must not outlive its store.)
IDLE_EXIT_S = 5.0
#: The watermark is written at least this often when passes find no decision (it is only a shortcut:
#: dedup keys already make a replay from an older watermark write nothing twice).
WATERMARK_EVERY_S = 1.0

#: Decision kinds the chain may report in the governance facet (access decisions are the service's).
EVENT_KINDS: frozenset[str] = frozenset({"level_assigned", "publish_allowed", "publish_refused", "violation"})
_SUBJECT_MAX = 255  # column widths of audit_log: longer text is cut, never refused
_NAME_MAX = 1024


def _clip(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text[:limit]


def decisions_of(event_hash: str, event_time: str, event: Any) -> list[AuditEntry]:
    """Audit entries for the decisions in ``event``'s ``governance`` run facet (none when absent).

    Malformed decisions are skipped; the index in the dedup key is the decision's position in the
    facet, so skipping one never shifts the keys of the others.
    """
    if not isinstance(event, dict):
        return []
    run = event.get("run")
    facets = run.get("facets") if isinstance(run, dict) else None
    facet = facets.get("governance") if isinstance(facets, dict) else None
    if not isinstance(facet, dict) or not isinstance(facet.get("decisions"), list):
        return []
    job = event.get("job")
    job_name = job.get("name") if isinstance(job, dict) else None
    entries: list[AuditEntry] = []
    for index, decision in enumerate(facet["decisions"]):
        if not isinstance(decision, dict) or decision.get("kind") not in EVENT_KINDS:
            continue
        kind: AuditKind = decision["kind"]
        dataset = decision.get("dataset")
        namespace = name = None
        if isinstance(dataset, dict) and dataset.get("name") is not None:
            namespace = _clip(dataset.get("namespace"), _NAME_MAX)
            name = _clip(dataset.get("name"), _NAME_MAX)
        details: dict[str, Any] = {
            key: decision[key] for key in ("level", "product") if decision.get(key) is not None
        }
        if isinstance(decision.get("details"), dict):
            details.update(decision["details"])
        for key in ("policyVersion", "k"):
            if facet.get(key) is not None:
                details[key] = facet[key]
        if isinstance(run, dict) and run.get("runId") is not None:
            details["runId"] = str(run["runId"])
        entries.append(AuditEntry(
            kind=kind,
            reason=_clip(decision.get("reason"), 10_000) or "(no reason given)",
            dataset_namespace=namespace,
            dataset_name=name,
            field=_clip(decision.get("field"), _NAME_MAX),
            subject=_clip(job_name, _SUBJECT_MAX),
            details=details,
            at=event_time,
            dedup_key=f"event:{event_hash}:{index}",
        ))
    return entries


def read_watermark(connection: Connection) -> int:
    value = connection.execute(
        select(s.store_meta.c.value).where(s.store_meta.c.key == WATERMARK_KEY)
    ).scalar()
    return int(value or 0)


def write_watermark(connection: Connection, upto: int) -> None:
    """Move the watermark forward (never back: another process may be ahead of this one)."""
    current = connection.execute(
        select(s.store_meta.c.value).where(s.store_meta.c.key == WATERMARK_KEY)
    ).scalar()
    if current is None:
        connection.execute(s.store_meta.insert().values(key=WATERMARK_KEY, value=str(upto)))
    elif int(current) < upto:
        connection.execute(
            s.store_meta.update().where(s.store_meta.c.key == WATERMARK_KEY).values(value=str(upto))
        )


class AuditService:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # SQLite writes take the same cross-process file lock as the ingest writer: waiting on it wakes
        # at once, while SQLite's busy handler would sleep the ingest writer for up to 100 ms.
        self.writer_lock = WriterLock(engine)
        self._pass_lock = threading.Lock()  # one derivation pass at a time in this process
        self.worker = BackgroundWorker("audit-derive", lambda: self.catch_up(), debounce_s=DEBOUNCE_S,
                                       idle_exit_s=IDLE_EXIT_S)
        self._upto = 0  # how far this process has derived (may run ahead of the stored watermark)
        self._stored_at = 0.0  # monotonic time the watermark was last written
        self._stored_upto = 0
        self.derived = 0  # audit rows this process derived from events (for tests and logs)
        # A worker must not outlive its store (its queries would race a test's DROP SCHEMA).
        sa_event.listen(engine, "engine_disposed", lambda _engine: self.close())

    # -- recording and reading ----------------------------------------------------------------------

    def record(self, entries: Sequence[AuditEntry]) -> int:
        with self.writer_lock.hold():
            return audit.record(self.engine, entries)

    def query(self, **filters: Any) -> tuple[list[dict[str, Any]], int]:
        """Entries newest first (see :func:`lineage.store.audit.query`), decisions of every event
        stored so far included."""
        self.catch_up()
        return audit.query(self.engine, **filters)

    # -- the background worker ----------------------------------------------------------------------

    def on_commit(self, created: int) -> None:
        """Called by the ingest writer after each projection: wake the worker, never work here."""
        self.worker.wake()

    def start(self) -> None:
        """Derive what a previous process left (call on service start; commits also start the worker)."""
        self.worker.start()

    def close(self) -> None:
        self.worker.close()
        if self._upto > self._stored_upto:
            try:
                self._store([], self._upto)
            except Exception:  # only a shortcut is lost: the next start scans a little more
                log.warning("could not store the audit watermark on close", exc_info=True)

    # -- derivation -------------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Derive the decisions of every raw event past the watermark; returns the rows written."""
        written = 0
        with self._pass_lock:
            while True:
                count, more = self._pass()
                written += count
                if not more:
                    return written

    def _pass(self) -> tuple[int, bool]:
        """One window of raw event ids: (rows written, whether more events wait)."""
        e = s.events
        with self.engine.connect() as connection:
            start = max(self._upto, read_watermark(connection))
            newest = int(connection.execute(select(func.max(e.c.id))).scalar() or 0)
            if newest <= start:
                self._upto = start
                return 0, False
            upto = min(newest, start + SCAN_IDS)
            # The database filters by a substring, in C; only events that may carry the facet are parsed.
            rows = connection.execute(
                select(e.c.event_hash, e.c.event_time, e.c.payload)
                .where(e.c.id > start, e.c.id <= upto, e.c.payload.contains('"governance"'))
                .order_by(e.c.id)
            ).all()
        entries = [entry for event_hash, event_time, payload in rows
                   for entry in decisions_of(event_hash, event_time, orjson.loads(payload))]
        written = 0
        if entries or time.monotonic() - self._stored_at >= WATERMARK_EVERY_S:
            written = self._store(entries, upto)
        self._upto = upto
        return written, upto < newest

    def _store(self, entries: list[AuditEntry], upto: int) -> int:
        for attempt in range(3):
            try:
                with self.writer_lock.hold(), self.engine.begin() as connection:
                    written = audit.record_in(connection, entries)
                    write_watermark(connection, upto)
                self._stored_at = time.monotonic()
                self._stored_upto = max(self._stored_upto, upto)
                self.derived += written
                return written
            except IntegrityError:
                # Another process derived the same decisions (or set the watermark) between our read
                # and our insert; the retry sees its rows and skips them.
                if attempt == 2:
                    raise
        return 0
