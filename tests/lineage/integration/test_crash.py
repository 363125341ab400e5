"""SIGKILL the server (SQLite store) in the middle of a sustained ingest; nothing acknowledged is lost.

One store file lives through three kill/restart cycles. In each cycle four client threads stream events
(three one event per request, one in batches of 100, so big group commits are in flight) and the server
is killed once the cycle has a given number of acknowledged events: early, mid-way, late. After every
restart on the same file:

* ``PRAGMA integrity_check`` is ``ok``;
* every event acknowledged (201, or 200 for a batch) is in ``events`` (hash computed as the service does)
  and nothing that was never sent is;
* the derived graph is the graph a rebuild from the raw events gives (graph hash unchanged by rebuild);
* the restarted server answers acknowledged events as duplicates and accepts new ones.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine

from lineage.store.events import graph_hash, rebuild
from lineage.synthetic import airflow_style_events

# (name, acknowledged events of the cycle after which the server is killed)
KILL_POINTS = (("early", 30), ("mid", 500), ("late", 1_400))
EXTRA = 2_500  # events each cycle has beyond its kill point, so the ingest is still going at the kill
SINGLE_WRITERS = 3
BATCH = 100

pytestmark = pytest.mark.slow


class Load:
    """Client threads streaming ``events`` at a server until it goes away."""

    def __init__(self, it: Any, server: Any, events: list[dict[str, Any]]) -> None:
        self.it = it
        self.server = server
        self.events = events
        self.next = 0
        self.lock = threading.Lock()
        self.acked: set[str] = set()
        self.acked_events: list[dict[str, Any]] = []
        self.sent: set[str] = set()
        self.broken = 0  # requests cut off by the kill
        self.unexpected: list[str] = []
        self.done = threading.Event()

    def take(self, n: int) -> list[dict[str, Any]]:
        with self.lock:
            chunk = self.events[self.next : self.next + n]
            self.next += len(chunk)
            self.sent.update(self.it.event_hash(e) for e in chunk)
            return chunk

    def worker(self, batch: int) -> None:
        conn = self.server.connection(timeout=60)
        try:
            while True:
                chunk = self.take(batch)
                if not chunk:
                    return
                path = "/api/v1/lineage/batch" if batch > 1 else "/api/v1/lineage"
                body = orjson.dumps(chunk if batch > 1 else chunk[0])
                try:
                    reply = self.it.http_post(conn, path, body)
                except (AssertionError, OSError):
                    with self.lock:
                        self.broken += 1
                    return
                if reply.status not in (200, 201):
                    self.unexpected.append(f"{path} -> {reply.status} {reply.body[:200]!r}")
                    return
                with self.lock:
                    self.acked.update(self.it.event_hash(e) for e in chunk)
                    self.acked_events.extend(chunk)
        finally:
            conn.close()

    def run_until_killed(self, kill_after: int) -> None:
        threads = [threading.Thread(target=self.worker, args=(1,)) for _ in range(SINGLE_WRITERS)]
        threads.append(threading.Thread(target=self.worker, args=(BATCH,)))
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120
        while len(self.acked) < kill_after and time.monotonic() < deadline:
            assert any(t.is_alive() for t in threads), f"writers stopped early: {self.unexpected[:3]}"
            time.sleep(0.001)
        assert len(self.acked) >= kill_after, "the server did not acknowledge enough events in time"
        self.server.kill()
        for thread in threads:
            thread.join(timeout=60)
        assert not self.unexpected, self.unexpected[:3]
        assert self.broken >= 1, "the ingest had finished before the server was killed"


def _verify_store(it: Any, db_path: Path, engine: Engine, acked: set[str], sent: set[str]) -> None:
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    stored = it.stored_hashes(engine)
    lost = acked - stored
    assert not lost, f"{len(lost)} acknowledged events lost, e.g. {sorted(lost)[:3]}"
    assert stored <= sent, "the store holds events that were never sent"
    before = graph_hash(engine)
    replayed = rebuild(engine)
    assert replayed == len(stored)
    assert graph_hash(engine) == before, "the derived graph after the crash differs from a rebuild"


def test_sigkill_during_ingest_loses_no_acknowledged_event(it: Any, server_factory: Any) -> None:
    corpus = airflow_style_events(sum(k for _, k in KILL_POINTS) + EXTRA * len(KILL_POINTS) + 50, seed=77)
    url = it.store_url("sqlite", "crash")
    db_path = Path(url.removeprefix("sqlite:///"))
    engine = it.engine(url)
    acked: set[str] = set()
    sent: set[str] = set()
    offset = 0
    recent: list[dict[str, Any]] = []  # events acknowledged just before the last kill

    for cycle, (moment, kill_after) in enumerate((*KILL_POINTS, ("final", 0))):
        server = server_factory(url, log_name=f"crash-{cycle}-{moment}")
        if cycle:
            _verify_store(it, db_path, engine, acked, sent)
            # The restarted server knows what it acknowledged before, and still takes new events.
            for event in recent:
                reply = server.post_event(event)
                assert (reply.status, reply.json["status"]) == (201, "duplicate")
            probe = corpus[-1 - cycle]
            reply = server.post_event(probe)
            assert reply.status == 201, reply.body
            acked.add(it.event_hash(probe))
            sent.add(it.event_hash(probe))
        if moment == "final":
            server.stop()
            _verify_store(it, db_path, engine, acked, sent)
            break
        load = Load(it, server, corpus[offset : offset + kill_after + EXTRA])
        load.run_until_killed(kill_after)
        offset += kill_after + EXTRA
        acked |= load.acked
        recent = load.acked_events[-5:]
        sent |= load.sent
        assert not server.alive
