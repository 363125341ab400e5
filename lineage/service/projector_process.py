"""Projection in a second process, so ingest and projection use two cores instead of sharing one GIL.

The service process acknowledges events once they are in the raw log (see :mod:`writer`); projecting
them into the derived graph costs about as much CPU again. A child process (a fresh interpreter, so it
inherits no thread's half-held lock) does it instead: the writer nudges it
with the highest id it stored, the child projects everything past the ``projected`` watermark and
reports each new watermark back. The watermark still moves in the projection's own transaction, so
nothing is lost if either process dies; a parent whose child died projects in its own thread again.

The child builds a batch's rows *before* it takes the store's write lock and holds the lock only for
the upserts, so it delays the next acknowledgement by milliseconds, not by the whole projection. Rows
built from a snapshot that turns out stale are still right: merges are idempotent, so applying events
again changes nothing, and a rebuild in between (the generation moved) makes the child start over.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from select import select as select_fds

import orjson
from sqlalchemy import Engine

from lineage.service.child_process import PipedChild, configure_child_logging, prepare_child
from lineage.store.db import WriterLock, create_store_engine
from lineage.store.events import generation, lock_writers, pending_rows, projected_upto, set_projected
from lineage.store.projector import Projection, StoredEvent, build_projection, write_values
from lineage.tuning import paused_gc

log = logging.getLogger(__name__)

# Events per projection transaction. A commit writes every page it touched in some thirty b-trees to
# the WAL, so small batches cost several times more per event (measured: 25-event batches ~900 us an
# event, against ~150 us for large ones). The upserts of 1,000 merged events hold the write lock for
# a few tens of milliseconds.
CHILD_BATCH = 1_000
# Nudges are gathered until none came for IDLE_S, or for at most MAX_LAG_S. Nobody waits on that lag:
# a reader's nudge is urgent and ends the gathering at once.
IDLE_S = 0.01
MAX_LAG_S = 0.25
# During an ingest burst (ids nudged over the last BURST_WINDOW_S advancing faster than BURST_RATE a
# second) the two cores are short: projecting alongside takes CPU and the write lock from the requests
# (measured: batches of 1,000 acknowledged 40-60% faster when the projection waits). So the child then
# gathers until ingest pauses for BURST_IDLE_S, for at most BURST_MAX_LAG_S. Readers are unaffected:
# their nudge is urgent, and a read waits for the graph to show every acknowledged event anyway.
BURST_RATE = 2_000.0
BURST_WINDOW_S = 1.0
BURST_IDLE_S = 0.3
BURST_MAX_LAG_S = 1.0
# When the two cores are short, requests go first: measured with batches of 1,000 events, +5 gave the
# service about 10% more events/s (+10 less: the child then holds the store's write lock for longer,
# and the service's writer waits for it).
NICENESS = 5


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
            rows = pending_rows(connection, start, limit)
        if not rows:
            return 0, start
        with paused_gc():  # a batch is a few hundred thousand objects without a single cycle
            events = [StoredEvent(int(i), h, t, orjson.loads(p)) for i, h, t, p in rows]
            projection: Projection = build_projection(events)
            # Parameter tuples (facet values serialised) before the lock too: it is held for the SQL only.
            values = projection.values()
        last = events[-1].id
        with lock.hold(), engine.begin() as connection:
            lock_writers(connection)
            if generation(connection) != seen_generation:
                continue  # the derived tables were rebuilt meanwhile: read the log again
            if projected_upto(connection) >= last:
                continue  # another process projected these already: look past its watermark
            write_values(connection, values)
            set_projected(connection, last)
        return len(events), last


def _wait_for_batch(nudges: _Nudges, first: int) -> tuple[int, bool]:
    """After a nudge, gather more for a moment: projecting 2 events costs nearly what 50 do.

    Returns (highest id nudged, stop asked). An urgent nudge (a negative id: a reader waits) or a
    quiet pipe ends the wait at once; otherwise it ends after ``MAX_LAG_S`` (``BURST_MAX_LAG_S`` and
    ``BURST_IDLE_S`` while ingest is in a burst).
    """
    upto, urgent = abs(first), first < 0
    bursting = nudges.rate() > BURST_RATE
    idle, max_lag = (BURST_IDLE_S, BURST_MAX_LAG_S) if bursting else (IDLE_S, MAX_LAG_S)
    deadline = time.monotonic() + max_lag
    while not urgent:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not nudges.ready(min(idle, remaining)):
            break
        message = nudges.next()
        if message is None:
            return upto, True
        upto, urgent = max(upto, abs(message)), message < 0
    return upto, False


class _Nudges:
    """The child's end of the nudge pipe (stdin): one id per line; end of file means stop."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""
        self.recent: deque[tuple[float, int]] = deque()  # (when, id) of the nudges of the last window

    def rate(self) -> float:
        """Events a second the service acknowledged over the last ``BURST_WINDOW_S`` (from the nudges)."""
        recent = self.recent
        if len(recent) < 2:
            return 0.0
        span = max(time.monotonic() - recent[0][0], 1e-3)
        return (recent[-1][1] - recent[0][1]) / span

    def ready(self, timeout: float) -> bool:
        return b"\n" in self.buffer or bool(select_fds([self.fd], [], [], timeout)[0])

    def next(self) -> int | None:
        """The next id (blocking); None at end of file."""
        while b"\n" not in self.buffer:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        value = int(line)
        now = time.monotonic()
        self.recent.append((now, abs(value)))
        while self.recent and self.recent[0][0] < now - BURST_WINDOW_S:
            self.recent.popleft()
        return value


def child_main() -> None:
    """The child's loop: wait for nudges, project until nothing is pending, report, repeat.

    The store URL is the first line of stdin (not an argument: it may hold a password).
    """
    prepare_child(NICENESS)
    nudges = _Nudges(sys.stdin.fileno())
    url = b""
    while b"\n" not in nudges.buffer:
        chunk = os.read(nudges.fd, 65536)
        if not chunk:
            return
        nudges.buffer += chunk
    url, nudges.buffer = nudges.buffer.split(b"\n", 1)
    engine = create_store_engine(url.decode(), pool_size=1)
    lock = WriterLock(engine)
    out = sys.stdout.buffer
    stopping = False
    reported = 0
    try:
        while not stopping:
            message = nudges.next()
            stopping = message is None
            if message is not None:
                _, stopping = _wait_for_batch(nudges, message)
            while True:
                try:
                    count, upto = project_step(engine, lock)
                except Exception:  # the events are safe in the raw log; the next nudge retries
                    log.exception("projecting events in the projector process failed")
                    break
                if count or upto > reported:
                    reported = max(reported, upto)
                    try:
                        out.write(f"{count} {upto}\n".encode())
                        out.flush()
                    except OSError:
                        stopping = True
                if count < CHILD_BATCH:
                    break  # what arrived meanwhile waits for the next gathering (see _wait_for_batch)
    finally:
        engine.dispose()


class ProjectorProcess(PipedChild):
    """The parent's handle: start the child, nudge it, receive its watermarks on a thread."""

    def __init__(self, engine: Engine, on_projected: Callable[[int, int], None],
                 on_lost: Callable[[], None]) -> None:
        self.on_projected = on_projected
        self.on_lost = on_lost
        super().__init__(__name__, engine.url.render_as_string(hide_password=False).encode() + b"\n",
                         self._receive, name="lineage-projector-reports", reports=True)

    def nudge(self, upto: int, *, urgent: bool = False) -> bool:
        """Tell the child events up to ``upto`` wait (``urgent``: a reader waits for them);
        False when the child is gone."""
        return self._send(f"{-upto if urgent else upto}\n".encode())

    def _receive(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            count, upto = line.split()
            self.on_projected(int(count), int(upto))
        if not self._stopping:
            log.error("the projector process stopped; projecting in the service process instead")
            self.on_lost()

    def stop(self, timeout: float = 2.0) -> None:
        """Close the nudge pipe: the child projects what is pending, reports, and exits.

        A child still busy after ``timeout`` is killed: that is safe at any moment (its transaction
        rolls back, the watermark with it), and the caller projects whatever is left.
        """
        super().stop(timeout)


if __name__ == "__main__":
    configure_child_logging()
    child_main()
