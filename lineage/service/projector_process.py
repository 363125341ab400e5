"""Projection in a second process, so ingest and projection use two cores instead of sharing one GIL.

The service process acknowledges events once they are in the raw log (see :mod:`writer`); projecting
them into the derived graph costs about as much CPU again. A child process (started through a fork
server, so it never inherits a half-held lock of some thread) does it instead: the writer nudges it
with the highest id it stored, the child projects everything past the ``projected`` watermark and
reports each new watermark back. The watermark still moves in the projection's own transaction, so
nothing is lost if either process dies; a parent whose child died projects in its own thread again.

The child builds a batch's rows *before* it takes the store's write lock and holds the lock only for
the upserts, so it delays the next acknowledgement by milliseconds, not by the whole projection. Rows
built from a snapshot that turns out stale are still right: merges are idempotent, so applying events
again changes nothing, and a rebuild in between (the generation moved) makes the child start over.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import orjson
from sqlalchemy import Engine, select

from lineage.store import schema as s
from lineage.store.db import WriterLock, create_store_engine
from lineage.store.events import generation, lock_writers, projected_upto, set_projected
from lineage.store.projector import Projection, StoredEvent, build_projection

log = logging.getLogger(__name__)

# Events per projection transaction. Bigger batches merge more rows before SQL (cheaper per event)
# but hold the write lock longer; the upserts of 256 Airflow-style events take a few milliseconds.
CHILD_BATCH = 256
# Nudges are gathered until none came for IDLE_S, or for at most MAX_LAG_S (a reader never waits:
# its nudge is urgent).
IDLE_S = 0.004
MAX_LAG_S = 0.05
_STOP = None


def detached_enabled(engine: Engine) -> bool:
    """A child process can only share a store it can open itself: not an in-memory SQLite."""
    database = engine.url.database
    return engine.dialect.name != "sqlite" or bool(database and database != ":memory:")


def project_step(engine: Engine, lock: WriterLock, limit: int = CHILD_BATCH) -> tuple[int, int]:
    """Project up to ``limit`` events past the watermark; rows are built outside the write lock.

    Returns (events projected, watermark afterwards).
    """
    while True:
        with engine.connect() as connection:
            seen_generation = generation(connection)
            start = projected_upto(connection)
            rows = connection.execute(
                select(s.events.c.id, s.events.c.event_hash, s.events.c.event_time, s.events.c.payload)
                .where(s.events.c.id > start).order_by(s.events.c.id).limit(limit)
            ).all()
        if not rows:
            return 0, start
        events = [StoredEvent(int(i), h, t, orjson.loads(p)) for i, h, t, p in rows]
        projection: Projection = build_projection(events)
        last = events[-1].id
        with lock.hold(), engine.begin() as connection:
            lock_writers(connection)
            if generation(connection) != seen_generation:
                continue  # the derived tables were rebuilt meanwhile: read the log again
            if projected_upto(connection) >= last:
                continue  # another process projected these already: look past its watermark
            projection.write(connection)
            set_projected(connection, last)
        return len(events), last


def _wait_for_batch(nudges: Connection, first: int) -> tuple[int, bool]:
    """After a nudge, gather more for a moment: projecting 2 events costs nearly what 50 do.

    Returns (highest id nudged, stop asked). An urgent nudge (a negative id: a reader waits) or a
    quiet queue ends the wait at once; otherwise it ends after ``MAX_LAG_S``.
    """
    upto, urgent = abs(first), first < 0
    deadline = time.monotonic() + MAX_LAG_S
    while not urgent:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not nudges.poll(min(IDLE_S, remaining)):
            break
        message = nudges.recv()
        if message is _STOP:
            return upto, True
        upto, urgent = max(upto, abs(message)), message < 0
    return upto, False


def _child_main(url: str, nudges: Connection, reports: Connection) -> None:
    """The child's loop: wait for nudges, project until nothing is pending, report, repeat."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent tells it when to stop
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    engine = create_store_engine(url, pool_size=1)
    lock = WriterLock(engine)
    stopping = False
    reported = 0
    try:
        while True:
            try:
                message = nudges.recv()
                stopping = message is _STOP
                if not stopping:
                    _, stopping = _wait_for_batch(nudges, message)
            except EOFError:  # the parent is gone: project what is there, then leave
                stopping = True
            while True:
                try:
                    count, upto = project_step(engine, lock)
                except Exception:  # the events are safe in the raw log; the next nudge retries
                    log.exception("projecting events in the projector process failed")
                    break
                if count or upto > reported:
                    reported = max(reported, upto)
                    try:
                        reports.send((count, upto))
                    except OSError:
                        stopping = True
                if not count:
                    break
            if stopping:
                return
    finally:
        engine.dispose()


class ProjectorProcess:
    """The parent's handle: start the child, nudge it, receive its watermarks on a thread."""

    def __init__(self, engine: Engine, on_projected: Callable[[int, int], None],
                 on_lost: Callable[[], None]) -> None:
        self.url = engine.url.render_as_string(hide_password=False)
        self.on_projected = on_projected
        self.on_lost = on_lost
        self._send_lock = threading.Lock()
        self._stopping = False
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        nudge_read, self._nudges = context.Pipe(duplex=False)
        self._reports, report_write = context.Pipe(duplex=False)
        self.process: Any = context.Process(
            target=_child_main, args=(self.url, nudge_read, report_write), name="lineage-projector",
            daemon=True,
        )
        self.process.start()
        nudge_read.close()
        report_write.close()
        self._thread = threading.Thread(target=self._receive, name="lineage-projector-reports", daemon=True)
        self._thread.start()

    def nudge(self, upto: int, *, urgent: bool = False) -> bool:
        """Tell the child events up to ``upto`` wait (``urgent``: a reader waits for them);
        False when the child is gone."""
        try:
            with self._send_lock:
                self._nudges.send(-upto if urgent else upto)
            return True
        except OSError:
            return False

    def _receive(self) -> None:
        while True:
            try:
                count, upto = self._reports.recv()
            except (EOFError, OSError):
                break
            self.on_projected(count, upto)
        if not self._stopping:
            log.error("the projector process stopped; projecting in the service process instead")
            self.on_lost()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping = True
        try:
            with self._send_lock:
                self._nudges.send(_STOP)
        except OSError:
            pass
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        self._thread.join(timeout=5)
        self._nudges.close()
        self._reports.close()
