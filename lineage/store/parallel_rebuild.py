"""Rebuild with a helper process: the log's id range is split into segments that two processes build.

Building rows in Python is most of a rebuild's CPU (parsing payloads and merging ~22 rows per event), and
it needs no database: a helper process reads, parses and builds segments from the FRONT of the log while
the parent (which holds the rebuild's one write transaction) builds segments from the BACK, so each ends
up with one contiguous id range and the two meet wherever the load puts them. Only the parent writes, in
its one transaction: the helper's rows of per-run tables as each segment is done, the parent's own rows
(but those of tables with constant columns) once it stops building, then the helper's remaining rows, then
the parent's held-back ones. The upserts merge rows of the same key in SQL exactly as the incremental
projection does (min, max, last-writer-wins: commutative and idempotent). Writing is the part only the
parent can do, so it stops taking segments early enough for the helper to build while it writes.

Why the graph is the same as a serial replay's, bit for bit: the merges do not depend on order, except for
constant columns (``runs.job_namespace``/``job_name``: taken from the earliest event). The helper folds its
lower range in ascending order and all its rows of those tables are written first, in the order built;
the parent folds its upper range in strictly descending order with a ``descending`` projection (constants
from the row seen last = its earliest event), and an upsert never changes a constant already written.

The helper reads the raw log through its own connection while the parent holds the write transaction:
SQLite's WAL and PostgreSQL's MVCC let it, and it sees exactly what the parent sees because the parent
has taken the writers' lock first and a rebuild never modifies ``events``. That is also why this path is
only for a transaction that has not itself modified ``events`` (retention deletes events first, so it
replays serially). The helper is a fresh process (forkserver: no forked connection or thread is reused)
that opens its own engine from the URL. As with any multiprocessing start method but fork, the helper
imports the main script again: a script that calls ``rebuild`` needs the usual
``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from multiprocessing.context import BaseContext
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from lineage.store import schema as s
from lineage.store.projector import SPECS, Projection, StoredEvent, write_values
from lineage.tuning import paused_gc

log = logging.getLogger(__name__)

#: Below this many raw events a helper process does not pay: its start costs ~0.2 s of CPU, and measured
#: on SQLite with 6,000 events the two ways were even (0.47 s against 0.50 s wall).
PARALLEL_MIN_EVENTS = 10_000
#: A projection is written (helper: sent) once it holds this many rows, to bound memory (the serial
#: replay's bound too).
MAX_ROWS = 300_000
#: Tables keyed by run: a run's events sit close together in the log, so the helper sends these rows per
#: segment (few recur in the next one) instead of holding them to the end, when only the parent works.
PER_RUN_TABLES = ("runs", "run_io", "run_io_facets", "dataset_versions")
RECURRING_TABLES = tuple(name for name in SPECS if name not in PER_RUN_TABLES)
#: Segments a process takes at a time (small enough to share the tail of the log out evenly).
SEGMENT_EVENTS = 1_000
#: Writing one merged row costs about as much CPU as reading, parsing and projecting this many events
#: (measured on SQLite: ~5.5 us per row written, ~55 us per event built) ...
ROW_WRITE_IN_EVENTS = 0.1
#: ... times this on other backends (PostgreSQL: the server's work runs on the same cores).
WRITE_FACTOR = {"sqlite": 1.0, "postgresql": 2.0}

RowValues = dict[str, list[tuple[Any, ...]]]
Bounds = list[tuple[int, int]]


def helper_pays() -> bool:
    """A helper process only pays when it gets a core of its own."""
    return (os.cpu_count() or 1) > 1


#: What :func:`lineage.store.events.rebuild` uses unless told otherwise (None: always serial).
DEFAULT_MIN_EVENTS: int | None = PARALLEL_MIN_EVENTS if helper_pays() else None


def can_run(connection: Connection) -> bool:
    """Whether a helper can open the store itself (not an in-memory SQLite database) and may be started
    here (a daemonic process, such as a multiprocessing pool worker, may not have children)."""
    if multiprocessing.current_process().daemon:
        return False
    url = connection.engine.url
    return url.get_backend_name() != "sqlite" or url.database not in (None, "", ":memory:")


def segment_bounds(first_id: int, last_id: int, size: int) -> Bounds:
    """Half-open id ranges ``(lo, hi]`` of ``size`` ids covering ``first_id..last_id``."""
    size = max(1, size)
    return [(lo, min(lo + size, last_id)) for lo in range(first_id - 1, last_id, size)]


def read_segment(connection: Connection, lo: int, hi: int) -> list[StoredEvent]:
    """The raw events with ``lo < id <= hi``, oldest first, parsed."""
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    # The DB-API cursor itself: SQLAlchemy's Row objects cost more than a tuple each (1,000s a segment).
    cursor = connection.connection.cursor()
    try:
        cursor.execute(
            "SELECT id, event_hash, event_time, payload FROM events "
            f"WHERE id > {marker} AND id <= {marker} ORDER BY id",
            (lo, hi),
        )
        rows = cursor.fetchall()
    finally:
        cursor.close()
    return [StoredEvent(int(i), h, t, orjson.loads(p)) for i, h, t, p in rows]


class _Claims:
    """Segments not yet taken, shared between processes: ``front`` and ``back`` move towards each other."""

    def __init__(self, context: BaseContext, segments: int) -> None:
        self.lock = context.Lock()
        self.ends = context.RawArray("q", [0, segments])  # front, back (exclusive)

    def take_front(self) -> int | None:
        with self.lock:
            front, back = self.ends[0], self.ends[1]
            if front >= back:
                return None
            self.ends[0] = front + 1
            return int(front)

    def unclaimed_ids(self, bounds: Bounds) -> int:
        """How many event ids the segments nobody has taken yet span."""
        with self.lock:
            front, back = self.ends[0], self.ends[1]
        return 0 if front >= back else bounds[back - 1][1] - bounds[front][0]

    def take_back(self) -> int | None:
        with self.lock:
            front, back = self.ends[0], self.ends[1]
            if front >= back:
                return None
            self.ends[1] = back - 1
            return int(back - 1)


def _helper_main(url: str, bounds: Bounds, claims: _Claims, pipe: Pipe) -> None:
    """The helper process: build the front segments and send their rows (ascending) to the parent."""
    from lineage.store.db import create_store_engine

    engine = create_store_engine(url, pool_size=1)
    try:
        with paused_gc(), engine.connect() as connection:
            projection = Projection()
            while (index := claims.take_front()) is not None:
                events = read_segment(connection, *bounds[index])
                projection.extend(events)
                # Rows of per-run tables go at once: the parent writes them while it still builds.
                pipe.send(("segment", (len(events), projection.values(PER_RUN_TABLES, clear=True))))
                del events
                if projection.row_count() >= MAX_ROWS:
                    pipe.send(("rows", projection.values()))
                    projection = Projection()
            pipe.send(("rows", projection.values()))
        pipe.send(("done", time.process_time()))  # its whole CPU, start-up included (for benchmarks)
    except BaseException:
        with contextlib.suppress(OSError):  # the parent gone (it failed or was interrupted): nobody to tell
            pipe.send(("error", traceback.format_exc()))
    finally:
        engine.dispose()
        pipe.close()


class HelperFailed(RuntimeError):
    """The helper process of a parallel rebuild failed; the rebuild's transaction is rolled back."""


class _HelperLink:
    """The parent's end: writes the helper's rows as they arrive, counts its progress."""

    def __init__(self, pipe: Pipe, connection: Connection, on_events: Callable[[int], None]) -> None:
        self.pipe = pipe
        self.connection = connection
        self.on_events = on_events
        self.done = False
        self.cpu_s = 0.0

    def handle(self, message: tuple[str, Any]) -> None:
        kind, body = message
        if kind == "segment":
            events, rows = body
            write_values(self.connection, rows)
            self.on_events(int(events))
        elif kind == "rows":
            write_values(self.connection, body)
        elif kind == "done":
            self.done = True
            self.cpu_s = float(body)
        else:
            raise HelperFailed(f"rebuild helper process failed:\n{body}")

    def drain(self) -> None:
        """Handle what has arrived, without waiting."""
        while not self.done and self.pipe.poll():
            self.handle(self._recv())

    def finish(self) -> None:
        """Wait for the helper's last rows."""
        while not self.done:
            self.handle(self._recv())

    def _recv(self) -> tuple[str, Any]:
        try:
            message: tuple[str, Any] = self.pipe.recv()
        except EOFError:
            raise HelperFailed("rebuild helper process exited without sending its rows") from None
        return message


@dataclass(frozen=True, slots=True)
class ParallelReplay:
    """What a parallel replay did (kept in :data:`last_replay` for benchmarks)."""

    events: int
    segments: int
    parent_segments: int
    helper_cpu_s: float


#: The most recent parallel replay of this process.
last_replay: ParallelReplay | None = None


def replay_parallel(
    connection: Connection, bounds: Bounds, progress: Callable[[int], None] | None = None
) -> int | None:
    """Build ``bounds`` (ascending id ranges) with one helper process and write every row.

    Runs inside the caller's rebuild transaction, after the derived tables were emptied; the caller must
    hold the writers' lock and must not have modified ``events`` in this transaction. Returns the number of
    events replayed, or None when no helper process could be started (nothing was written: replay serially).
    """
    context = multiprocessing.get_context("forkserver")
    claims = _Claims(context, len(bounds))
    receiver, sender = context.Pipe(duplex=False)
    url = connection.engine.url.render_as_string(hide_password=False)
    helper = context.Process(
        target=_helper_main, args=(url, bounds, claims, sender), name="chaintrace-rebuild-helper", daemon=True
    )
    replayed = 0
    own_segments = 0

    def count(events: int) -> None:
        nonlocal replayed
        replayed += events
        if progress is not None:
            progress(replayed)

    write_factor = WRITE_FACTOR.get(connection.dialect.name, 1.0)
    try:
        helper.start()
    except OSError:  # no processes or no forkserver socket here: the serial replay gives the same graph
        log.warning("rebuild: could not start a helper process; replaying serially", exc_info=True)
        receiver.close()
        sender.close()
        return None
    sender.close()  # the helper holds the pipe's only write end now: its exit ends our reads with EOFError
    link = _HelperLink(receiver, connection, count)
    try:
        with paused_gc():
            projection = Projection(descending=True)
            while (rows := projection.row_count()) < MAX_ROWS:
                # Writing is the parent's alone: it stops building while the helper can still build
                # about as long as the writes left for the end take: the parent's own rows and the
                # helper's rows of the tables it sends last (about as many as the parent's own of those).
                left = rows + projection.row_count(RECURRING_TABLES)
                if claims.unclaimed_ids(bounds) <= left * ROW_WRITE_IN_EVENTS * write_factor:
                    break
                index = claims.take_back()
                if index is None:
                    break
                events = read_segment(connection, *bounds[index])
                projection.extend(reversed(events))
                own_segments += 1
                count(len(events))
                del events
                link.drain()  # the helper's rows are written as soon as they come
            own = projection.values()
            del projection
            # Tables with constant columns (taken from the earliest event): the parent's rows, a higher
            # id range, are written after the helper's. The others merge in any order.
            later = {name: own.pop(name) for name in list(own) if SPECS[name].constants}
            write_values(connection, own)
            del own
            link.finish()
            write_values(connection, later)
        helper.join(timeout=30)  # it has sent everything; the finally below ends it if it lingers
        global last_replay
        last_replay = ParallelReplay(replayed, len(bounds), own_segments, link.cpu_s)
    finally:
        receiver.close()
        if helper.is_alive():
            helper.terminate()
            helper.join()
    return replayed


def plan(connection: Connection, batch_size: int, min_events: int) -> Bounds | None:
    """The segments of a parallel replay, or None when a serial one is the better choice."""
    if not can_run(connection):
        return None
    first, last, total = connection.execute(
        select(func.min(s.events.c.id), func.max(s.events.c.id), func.count(s.events.c.id))
    ).one()
    if not total or int(total) < min_events:
        return None
    bounds = segment_bounds(int(first), int(last), min(batch_size, SEGMENT_EVENTS))
    return bounds if len(bounds) > 1 else None
