"""The store's writer: acknowledges events once they are in the raw log, projects them soon after.

One thread per process. Requests queue their validated events; the thread commits everything queued at
that moment to the raw log in one transaction (group commit) and resolves the requests' futures: an
acknowledged event is durable. Projecting events into the derived graph touches some thirty b-trees,
so it is done in larger batches: when the queue has been idle for a moment, when enough events are
waiting, or at once when a reader asks for it (:meth:`GroupCommitWriter.wait_projected`). The
``projected`` watermark moves in the projection's transaction, so a crash between the two loses
nothing: on start the writer projects whatever is past the watermark.

On a store a second process can open (a SQLite file, PostgreSQL) the projection runs in a child
process instead (:mod:`lineage.service.projector_process`): the writer only nudges it after each
commit, and the two use two cores. Should the child die, this thread projects again.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from lineage.store import times
from lineage.store.db import WriterLock
from lineage.store.events import PreparedEvent, append_raw, project_pending
from lineage.store.projector import StoredEvent

if TYPE_CHECKING:
    from lineage.service.projector_process import ProjectorProcess

log = logging.getLogger(__name__)

# Project when the queue has been idle this long, or this many events wait, or the oldest waits this long.
IDLE_PROJECT_S = 0.004
PROJECT_BATCH = 2_000
MAX_LAG_S = 0.05
# Events projected in one go while requests may be waiting: a slice delays the next acknowledgement by
# its duration (~0.15 ms an event), so slices are small under load and larger when the queue is idle.
BUSY_SLICE = 32
IDLE_SLICE = 512
# Most events a request may carry to be committed on the event loop (bigger batches would hold the loop).
LOOP_COMMIT_MAX = 64

_Item = tuple[list[PreparedEvent], "Future[list[bool]]"]
_PROJECT_NOW = object()
_IDLE = object()


class GroupCommitWriter:
    """One thread that commits queued batches together; callers wait on a Future."""

    def __init__(
        self, engine: Engine, *, commit_batch_max: int = 2_000, projector_process: bool = True
    ) -> None:
        self.engine = engine
        # Project in a child process (see projector_process) when the store allows it; else here.
        self.use_projector_process = projector_process
        self._projector: ProjectorProcess | None = None
        self.commit_batch_max = commit_batch_max
        self.listeners: list[Callable[[int], None]] = []
        self.writer_lock = WriterLock(engine)
        self.commits = 0
        self.loop_commits = 0  # of which on the event loop (submit_async)
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._backlog: dict[int, StoredEvent] = {}
        self._backlog_since = 0.0
        self._state = threading.Condition()
        # Commits run on the writer thread and, for small requests, on the event loop (submit_async);
        # the store's writer lock orders them, this guards what both update here.
        self._books = threading.Lock()
        self._loop_items: list[tuple[list[PreparedEvent], asyncio.Future[list[bool]]]] = []
        self._loop_commit_scheduled = False
        self.acknowledged = 0  # highest event id this process acknowledged
        self.projected = 0  # highest event id known to be in the derived graph

    # -- lifecycle ----------------------------------------------------------------------------------

    def recover(self) -> int:
        """Project whatever a previous process stored but did not project (call before serving)."""
        done = 0
        while True:
            count = self._project_once()
            done += count
            if not count:
                return done

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._start_projector()
                self._thread = threading.Thread(target=self._run, name="lineage-writer", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            projector, self._projector = self._projector, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=30)
        if projector is not None:
            projector.stop()  # the child projects what is pending before it exits
            self._project_all()  # and whatever it could not (a child that died on the way)

    def _start_projector(self) -> None:
        from lineage.service.projector_process import ProjectorProcess, detached_enabled

        if not self.use_projector_process or self._projector is not None:
            return
        if not detached_enabled(self.engine):
            return
        try:
            self._projector = ProjectorProcess(self.engine, self._on_projected, self._on_projector_lost)
        except Exception:  # no second process here (sandbox, resource limits): project in-thread
            log.warning("could not start the projector process; projecting in the service process",
                        exc_info=True)
            self._projector = None

    def _on_projected(self, count: int, upto: int) -> None:
        """A new watermark, from the projector process (its report thread) or this thread."""
        with self._state:
            self.projected = max(self.projected, upto)
            self.acknowledged = max(self.acknowledged, upto)
            self._state.notify_all()
        if count:
            self._notify_listeners(count)

    def _on_projector_lost(self) -> None:
        self._projector = None
        self._queue.put(_PROJECT_NOW)  # the writer thread projects from now on, starting with the rest

    def _notify_listeners(self, count: int) -> None:
        for listener in self.listeners:
            try:
                listener(count)
            except Exception:  # a listener (cache, stream) must never lose a stored event
                log.exception("projection listener failed")

    def submit_async(self, batch: list[PreparedEvent]) -> asyncio.Future[list[bool]]:
        """:meth:`submit` for a caller on an event loop: small batches are committed on the loop itself.

        The requests the loop has parsed by the time it gets round to it are committed together, right
        there, when the store's write lock is free at that moment: no hand-over to the writer thread
        and back, and no fight over the GIL with it. Otherwise (lock busy, a big batch, no projector
        process) the batch goes to the writer thread as with :meth:`submit`.
        """
        loop = asyncio.get_running_loop()
        if len(batch) > LOOP_COMMIT_MAX or self._projector is None or not self.writer_lock.is_file_lock:
            # PostgreSQL: no lock to try without waiting (a wait would stall every request of the loop).
            return asyncio.wrap_future(self.submit(batch), loop=loop)
        future: asyncio.Future[list[bool]] = loop.create_future()
        self._loop_items.append((batch, future))
        if not self._loop_commit_scheduled:
            self._loop_commit_scheduled = True
            loop.call_soon(self._commit_on_loop)
        return future

    def _commit_on_loop(self) -> None:
        self._loop_commit_scheduled = False
        items, self._loop_items = self._loop_items, []
        if not self.writer_lock.try_acquire():
            for batch, future in items:  # busy: the writer thread waits for the lock instead
                self._to_writer_thread(batch, future)
            return
        try:
            flags = self._write_locked([e for batch, _ in items for e in batch])
        except Exception:
            log.warning("committing on the event loop failed; retrying on the writer thread", exc_info=True)
            for batch, future in items:  # one request's events must not fail another's
                self._to_writer_thread(batch, future)
            return
        finally:
            self.writer_lock.release()
        self.loop_commits += 1
        offset = 0
        for batch, future in items:
            if not future.done():  # a cancelled request: its events are stored all the same
                future.set_result(flags[offset : offset + len(batch)])
            offset += len(batch)

    def _to_writer_thread(self, batch: list[PreparedEvent], target: asyncio.Future[list[bool]]) -> None:
        def settle(done: asyncio.Future[list[bool]]) -> None:
            if target.done():  # the request was cancelled; its events are stored all the same
                return
            error = done.exception()
            if error is not None:
                target.set_exception(error)
            else:
                target.set_result(done.result())

        asyncio.wrap_future(self.submit(batch), loop=target.get_loop()).add_done_callback(settle)

    def submit(self, batch: list[PreparedEvent]) -> Future[list[bool]]:
        future: Future[list[bool]] = Future()
        self.start()
        self._queue.put((batch, future))
        return future

    @property
    def projects_in_child(self) -> bool:
        """True while a projector process projects what any process stores (see note_stored)."""
        return self._projector is not None

    def note_stored(self, upto: int) -> None:
        """Events up to ``upto`` were stored by another process on this service's behalf (a batch
        process): count them acknowledged, so reads wait for them, and nudge the projector."""
        with self._books:
            self.acknowledged = max(self.acknowledged, upto)
        projector = self._projector
        if projector is None or not projector.nudge(upto):
            self._queue.put(_PROJECT_NOW)  # no projector process (any more): this thread projects

    # -- read-your-writes ---------------------------------------------------------------------------

    def backlog(self) -> int:
        """Acknowledged events not yet in the derived graph (ids are dense: a count, give or take
        duplicates)."""
        return max(0, self.acknowledged - self.projected)

    def lagging(self) -> bool:
        return self.projected < self.acknowledged

    def wait_projected(self, timeout: float = 10.0) -> bool:
        """Block until every event acknowledged so far is in the derived graph (True) or timeout."""
        target = self.acknowledged
        if self.projected >= target:
            return True
        projector = self._projector
        if projector is None or not projector.nudge(target, urgent=True):
            self._queue.put(_PROJECT_NOW)
        deadline = time.monotonic() + timeout
        with self._state:
            while self.projected < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._state.wait(remaining)
        return True

    # -- the thread ---------------------------------------------------------------------------------

    def _next(self) -> object:
        if not self._backlog:
            return self._queue.get()
        try:
            return self._queue.get(timeout=IDLE_PROJECT_S)
        except queue.Empty:
            return _IDLE

    def _run(self) -> None:
        while True:
            item = self._next()
            if item is None:
                self._project_all()
                return
            if item is _PROJECT_NOW:
                self._project_all()
                continue
            if item is _IDLE:
                self._project_slice(IDLE_SLICE)  # then look at the queue again
                continue
            assert isinstance(item, tuple)
            items: list[_Item] = [item]
            size = len(item[0])
            project_now = False
            while size < self.commit_batch_max:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # finish this round, then stop
                    break
                if more is _PROJECT_NOW:
                    project_now = True
                    continue
                assert isinstance(more, tuple)
                items.append(more)
                size += len(more[0])
            self._commit(items)
            lag = time.monotonic() - self._backlog_since
            if project_now:
                self._project_all()
            elif len(self._backlog) >= PROJECT_BATCH or (self._backlog and lag > MAX_LAG_S):
                self._project_slice(BUSY_SLICE)

    def _commit(self, items: list[_Item]) -> None:
        try:
            flags = self._write([e for batch, _ in items for e in batch])
        except Exception:
            if len(items) == 1:
                log.exception("storing %d events failed", len(items[0][0]))
                items[0][1].set_exception(RuntimeError("the lineage store could not store the events"))
                return
            # One request's events must not fail another's: retry each request on its own.
            for single in items:
                self._commit([single])
            return
        offset = 0
        for batch, future in items:
            future.set_result(flags[offset : offset + len(batch)])
            offset += len(batch)

    def _write(self, events: list[PreparedEvent]) -> list[bool]:
        with self.writer_lock.hold():
            return self._write_locked(events)

    def _write_locked(self, events: list[PreparedEvent]) -> list[bool]:
        """Commit ``events`` to the raw log; the caller holds the writer lock."""
        received = times.now()
        with self.engine.begin() as connection:
            flags, stored = append_raw(connection, events, received)
        with self._books:
            self.commits += 1
            if stored:
                self.acknowledged = max(self.acknowledged, stored[-1].id)
        projector = self._projector
        if stored and projector is not None and projector.nudge(stored[-1].id):
            return flags
        if stored:
            with self._books:
                if not self._backlog:
                    self._backlog_since = time.monotonic()
                self._backlog.update((ev.id, ev) for ev in stored)
        return flags

    def _project_once(self, limit: int = PROJECT_BATCH) -> int:
        with self.writer_lock.hold(), self.engine.begin() as connection:
            count, upto = project_pending(connection, self._backlog, limit)
        with self._books:
            for event_id in [i for i in self._backlog if i <= upto]:
                del self._backlog[event_id]
        self._on_projected(count, upto)
        return count

    def _project_all(self) -> None:
        try:
            while self._project_once():
                pass
        except Exception:  # the events are safe in the raw log; the next round projects them
            log.exception("projecting events failed; will retry")
            time.sleep(0.1)
        self._backlog_since = time.monotonic()

    def _project_slice(self, limit: int) -> None:
        try:
            self._project_once(limit)
        except Exception:  # the events are safe in the raw log; the next round projects them
            log.exception("projecting events failed; will retry")
            time.sleep(0.1)
        if self._backlog:
            self._backlog_since = min(self._backlog_since, time.monotonic())
        else:
            self._backlog_since = time.monotonic()
