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
import sys
import time
from collections import deque
from collections.abc import Callable

import orjson
from sqlalchemy import Engine

from lineage.service.child_process import PipedChild, PipeLines, configure_child_logging, prepare_child
from lineage.service.store_roles import StoreRole
from lineage.store.db import WriterLock, create_store_engine
from lineage.store.events import (
    generation,
    lock_writers,
    newest_event_id,
    pending_rows,
    projected_upto,
    set_projected,
)
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
# A follower (another worker's projector) gives the leader this long to project what its service
# stored (the leader gathers for up to BURST_MAX_LAG_S first), reading the watermark this often.
FOLLOWER_WAIT_S = 1.5
FOLLOWER_POLL_S = 0.05
# The leader learns of the other workers' events (their nudges go to their own followers) by reading
# the newest event id this often while its own pipe is quiet (an index probe), and projects them once
# MAX_LAG_S passed since it saw them or a batch of them waits.
LEADER_POLL_S = 0.1
# After a failed projection (the store down, say) the child waits this long before it tries again.
FAILURE_PAUSE_S = 1.0


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


def _wait_for_batch(nudges: _Nudges, first: int) -> tuple[int, bool, bool]:
    """After a nudge, gather more for a moment: projecting 2 events costs nearly what 50 do.

    Returns (highest id nudged, stop asked, urgent). An urgent nudge (a negative id: a reader waits) or
    a quiet pipe ends the wait at once; otherwise it ends after ``MAX_LAG_S`` (``BURST_MAX_LAG_S`` and
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
            return upto, True, False
        upto, urgent = max(upto, abs(message)), message < 0
    return upto, False, urgent


class _Nudges(PipeLines):
    """The child's end of the nudge pipe (stdin): one id per line; end of file means stop."""

    def __init__(self, fd: int) -> None:
        super().__init__(fd)
        self.recent: deque[tuple[float, int]] = deque()  # (when, id) of the nudges of the last window

    def rate(self) -> float:
        """Events a second the service acknowledged over the last ``BURST_WINDOW_S`` (from the nudges)."""
        recent = self.recent
        if len(recent) < 2:
            return 0.0
        span = max(time.monotonic() - recent[0][0], 1e-3)
        return (recent[-1][1] - recent[0][1]) / span

    def next(self) -> int | None:
        """The next id (blocking); None at end of file."""
        line = self.next_line()
        if line is None:
            return None
        value = int(line)
        now = time.monotonic()
        self.recent.append((now, abs(value)))
        while self.recent and self.recent[0][0] < now - BURST_WINDOW_S:
            self.recent.popleft()
        return value


class _Reports:
    """The child's reports to its parent (stdout): ``<events projected> <watermark>`` per line."""

    def __init__(self) -> None:
        self.out = sys.stdout.buffer
        self.reported = 0
        self.broken = False  # the parent is gone

    def send(self, count: int, upto: int) -> None:
        if not count and upto <= self.reported:
            return
        self.reported = max(self.reported, upto)
        try:
            self.out.write(f"{count} {upto}\n".encode())
            self.out.flush()
        except OSError:
            self.broken = True


def _project_pending(engine: Engine, lock: WriterLock, reports: _Reports) -> None:
    """Project until fewer than a batch were pending; what arrives meanwhile waits for the next
    gathering (see :func:`_wait_for_batch`). A failure pauses ``FAILURE_PAUSE_S`` (the store may be
    down: the loop must not spin on it)."""
    while True:
        try:
            count, upto = project_step(engine, lock)
        except Exception:  # the events are safe in the raw log; the next round retries
            log.exception("projecting events in the projector process failed")
            time.sleep(FAILURE_PAUSE_S)
            return
        reports.send(count, upto)
        if count < CHILD_BATCH:
            return


def _follow(engine: Engine, nudges: _Nudges, pending: int, reports: _Reports) -> tuple[int, bool, bool, bool]:
    """A follower lets the store's leading projector (see :mod:`store_roles`) project what its service
    stored, reporting the watermark as it moves, for at most ``FOLLOWER_WAIT_S``.

    Returns (highest id nudged, stop asked, urgent, the leader covered every id nudged on entry).
    Nudges keep being read meanwhile; an urgent one or the end of the pipe ends the wait.
    """
    target = pending
    now = time.monotonic()
    deadline, probe_at = now + FOLLOWER_WAIT_S, now
    while True:
        if now >= probe_at:
            try:
                with engine.connect() as connection:
                    watermark = projected_upto(connection)
            except Exception:  # the store is unreachable now: project ourselves (it retries)
                log.warning("reading the projection watermark failed", exc_info=True)
                return pending, False, False, False
            reports.send(max(0, watermark - reports.reported), watermark)
            if watermark >= target:
                return pending, False, False, True
            probe_at = now + FOLLOWER_POLL_S
        if now >= deadline:
            return pending, False, False, False
        if nudges.ready(max(0.0, min(probe_at, deadline) - now)):
            message = nudges.next()
            if message is None:
                return pending, True, False, False
            pending = max(pending, abs(message))
            if message < 0:
                return pending, False, True, False
        now = time.monotonic()


def _next_or_others(engine: Engine, nudges: _Nudges, reported: int) -> tuple[int | None, bool]:
    """The leader's wait: the next nudge from its own service, or events other workers stored.

    Returns (the nudge, or the newest id stored elsewhere; None at end of the pipe, from the pipe).
    """
    seen_since = 0.0
    while True:
        if nudges.ready(LEADER_POLL_S):
            return nudges.next(), True
        try:
            with engine.connect() as connection:
                newest = newest_event_id(connection)
        except Exception:  # the store is unreachable now: look again later
            log.warning("reading the newest event id failed", exc_info=True)
            continue
        if newest <= reported:
            seen_since = 0.0
            continue
        now = time.monotonic()
        seen_since = seen_since or now
        if now - seen_since >= MAX_LAG_S or newest - reported >= CHILD_BATCH:
            return newest, False


def child_main() -> None:
    """The child's loop: wait for nudges, project until nothing is pending, report, repeat.

    One projector per store projects (the leader, see :mod:`store_roles`); with ``--workers N`` the
    others follow: they report the leader's watermark to their service and project only for a reader
    (an urgent nudge), when the leader is slow, or on stop. The store URL is the first line of stdin
    (not an argument: it may hold a password).
    """
    prepare_child(NICENESS)
    nudges = _Nudges(sys.stdin.fileno())
    url = nudges.next_line()
    if url is None:
        return
    # Two connections: a follower's role request on PostgreSQL keeps one checked out once it leads.
    engine = create_store_engine(url.decode(), pool_size=2)
    lock = WriterLock(engine)
    role = StoreRole(engine, "projector")
    reports = _Reports()
    pending, stopping = 0, False
    try:
        while not stopping and not reports.broken:
            urgent = False
            if pending <= reports.reported:
                if role.held:
                    message, from_pipe = _next_or_others(engine, nudges, reports.reported)
                else:
                    message, from_pipe = nudges.next(), True
                if message is None:
                    break
                if from_pipe:
                    pending, stopping, urgent = _wait_for_batch(nudges, message)
                else:
                    pending = message
            leading = role.try_take()  # asked every round: a leader that stopped is replaced soon
            if not (stopping or urgent or leading):
                pending, stopping, urgent, covered = _follow(engine, nudges, pending, reports)
                if covered:
                    continue
            _project_pending(engine, lock, reports)
        if not reports.broken:
            _project_pending(engine, lock, reports)  # on stop: whatever is still pending
    finally:
        role.release()
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
