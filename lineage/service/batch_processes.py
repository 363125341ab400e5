"""Big batch requests are parsed, validated and stored by child processes, one request each at a time.

A batch of 1,000 events costs the service about 100 ms of CPU to parse, validate and fingerprint, all
under one interpreter lock: two clients posting batches to one process still use one core. With
``batch_processes`` set, the service hands each big batch body (already size-checked and decompressed)
to an idle child; the child does what :func:`lineage.api.routes_ingest.answer_batch` does in the service
(same code: :meth:`IngestService.prepare_all`, :func:`append_raw` under the store's writer lock, the same
answer) and sends back the answer and the highest event id it stored. The service then counts those
events as acknowledged (so reads wait for their projection) and nudges the projector. Measured with two
clients posting batches of 1,000: about 1.5x the events a second of one process.

Nothing is lost if a child dies: events it committed are in the raw log (and will be projected: the
projector projects past its watermark, whoever stored them), and the request is answered by the service
itself instead, where already-stored events come back ``duplicate``.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy import Engine

from lineage.service.child_process import PipedChild, configure_child_logging, prepare_child
from lineage.service.ingest import (
    BodyError,
    IngestService,
    batch_answer,
    error_answer,
    parse_batch_limited,
)
from lineage.service.validation import EventValidator
from lineage.store import times
from lineage.store.db import WriterLock, create_store_engine
from lineage.store.events import append_raw

log = logging.getLogger(__name__)

# Back-pressure: while more acknowledged events than this wait for the projection (a few seconds of its
# work), a new batch waits before it is stored, for at most BACKLOG_WAIT_S. Two children can acknowledge
# faster than one projector projects; without this a long run of batches would leave the graph, and
# every read waiting for it, further and further behind.
MAX_BACKLOG_EVENTS = 20_000
BACKLOG_WAIT_S = 30.0
# Bodies smaller than this are answered in the service (a process hop costs ~0.3 ms; small requests
# are cheap, and the loop commits them together).
MIN_BODY_BYTES = 128 * 1024
_REQUEST = struct.Struct("<Q")  # body length, then the body
_REPLY = struct.Struct("<HqQ")  # status, highest event id stored (0: none), answer length, then the answer


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if data is None or len(data) != size:
        raise EOFError(f"pipe closed after {0 if data is None else len(data)} of {size} bytes")
    return data


def answer_body(ingest: IngestService, lock: WriterLock, body: bytes, max_events: int
                ) -> tuple[int, int, bytes]:
    """(status, highest id stored or 0, answer JSON) for one batch body: the child's whole job."""
    try:
        events = parse_batch_limited(body, max_events)
    except BodyError as exc:
        status, answer = error_answer(exc.status, exc.message)
        return status, 0, answer
    prepared, results = ingest.prepare_all(events)
    upto = 0
    if prepared:
        with lock.hold(), ingest.engine.begin() as connection:
            flags, stored = append_raw(connection, prepared, times.now())
        ingest.apply_flags(results, flags)
        upto = stored[-1].id if stored else 0
    status, answer = batch_answer(results)
    return status, upto, answer


def child_main() -> None:
    """Read the set-up line, then answer one framed body after another until the pipe closes."""
    prepare_child(0)  # the requests' own work: same priority as the service
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    config = orjson.loads(stdin.readline())
    engine = create_store_engine(config["url"], pool_size=1)
    spec_dir = config.get("spec_dir")
    ingest = IngestService(engine, EventValidator.from_spec_dir(Path(spec_dir) if spec_dir else None),
                           projector_process=False)
    lock = WriterLock(engine)
    max_events = int(config["max_events"])
    stdout.write(b"ready\n")
    stdout.flush()
    try:
        while True:
            header = stdin.read(_REQUEST.size)
            if len(header) < _REQUEST.size:
                return
            body = _read_exactly(stdin, _REQUEST.unpack(header)[0])
            try:
                status, upto, answer = answer_body(ingest, lock, body, max_events)
            except Exception:
                log.exception("a batch process could not store a batch")
                status, answer = error_answer(503, "the lineage store could not store the events")
                upto = 0
            stdout.write(_REPLY.pack(status, upto, len(answer)) + answer)
            stdout.flush()
    finally:
        engine.dispose()


class BatchProcess(PipedChild):
    """The service's handle on one child: send a body, wait for its answer (one at a time)."""

    def __init__(self, engine: Engine, config: dict[str, Any],
                 on_lost: Callable[[BatchProcess], None]) -> None:
        self.on_lost = on_lost
        config = {**config, "url": engine.url.render_as_string(hide_password=False)}
        super().__init__(__name__, orjson.dumps(config) + b"\n", self._watch, name="batch-process-watch",
                         reports=True)
        assert self.process.stdout is not None
        self._replies = self.process.stdout

    def wait_ready(self) -> None:
        """Block until the child has compiled its schemas and opened the store."""
        if self._replies.readline() != b"ready\n":
            raise RuntimeError(f"a batch process did not start (exit code {self.process.poll()})")

    def _watch(self) -> None:
        self.process.wait()
        if not self._stopping:
            log.error("a batch process stopped (exit code %s)", self.process.returncode)
            self.on_lost(self)

    def round_trip(self, body: bytes) -> tuple[int, int, bytes]:
        """Blocking: (status, highest id stored, answer); EOFError/OSError when the child is gone."""
        if not self._send(_REQUEST.pack(len(body)) + body):
            raise EOFError("the batch process is gone")
        status, upto, size = _REPLY.unpack(_read_exactly(self._replies, _REPLY.size))
        return status, upto, _read_exactly(self._replies, size)


class BatchProcessPool:
    """Idle children wait in a queue; a request takes one, or is answered in the service when none is
    idle or its child dies on the way (``answer`` returns None)."""

    def __init__(self, engine: Engine, config: dict[str, Any], count: int,
                 on_stored: Callable[[int], None], backlog: Callable[[], int]) -> None:
        self.on_stored = on_stored
        self.backlog = backlog  # acknowledged events not yet in the graph
        self.held_back = 0  # requests that waited for the projection to catch up
        self.children: list[BatchProcess] = [BatchProcess(engine, config, self._forget)
                                              for _ in range(count)]
        try:
            for child in self.children:  # started together, so they get ready together
                child.wait_ready()
        except Exception:
            self.stop()
            raise
        self._idle: asyncio.Queue[BatchProcess] | None = None
        self.answered = 0  # requests the children answered

    async def answer(self, body: bytes) -> tuple[int, bytes] | None:
        if self._idle is None:  # made on the serving loop
            self._idle = asyncio.Queue()
            for idle in self.children:
                self._idle.put_nowait(idle)
        if self.backlog() > MAX_BACKLOG_EVENTS:
            self.held_back += 1
            deadline = time.monotonic() + BACKLOG_WAIT_S
            while self.backlog() > MAX_BACKLOG_EVENTS and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        child: BatchProcess | None = None
        while child is None:
            if not self.children:
                return None
            try:  # not a plain get(): the last child may die while this request waits
                child = await asyncio.wait_for(self._idle.get(), 1.0)
            except TimeoutError:
                continue
            if child not in self.children:
                child = None  # died while idle
        trip = asyncio.get_running_loop().run_in_executor(None, child.round_trip, body)
        try:
            await asyncio.shield(trip)
        except asyncio.CancelledError:
            # The client went away; the child still finishes (its events are stored all the same):
            # it goes back to the queue, and its events count as acknowledged, when it does.
            trip.add_done_callback(lambda done: self._settle(child, done))
            raise
        except Exception:  # the child is gone: _settle logs it and forgets the child
            pass
        reply = self._settle(child, trip)
        if reply is None:
            return None
        self.answered += 1
        return reply

    def _settle(self, child: BatchProcess, trip: asyncio.Future[tuple[int, int, bytes]]
                ) -> tuple[int, bytes] | None:
        """After a round trip: the child back to the queue and its events acknowledged, or, if it died
        on the way, the child forgotten (None)."""
        error = trip.exception()
        if error is not None:
            log.error("a batch process stopped while storing a batch; the service answers it",
                      exc_info=error)
            self._forget(child)
            return None
        status, upto, answer = trip.result()
        assert self._idle is not None
        self._idle.put_nowait(child)
        if upto:
            self.on_stored(upto)  # before the answer leaves: reads must then wait for these events
        return status, answer

    def _forget(self, child: BatchProcess) -> None:
        """A child died: no request is sent to it again (a queued handle is skipped when taken)."""
        self.children = [c for c in self.children if c is not child]

    @property
    def alive(self) -> bool:
        return bool(self.children)

    def stop(self, timeout: float = 5.0) -> None:
        children, self.children = self.children, []
        for child in children:
            child.stop(timeout)


if __name__ == "__main__":
    configure_child_logging()
    child_main()
