"""The issue's calibration stand-in, run in the same benchmark: how fast a lean ingest service is on
this machine today.

Issue 2 calibrated its ingest goals on "a lean Python service" (HTTP parsing, a compiled schema
validation, orjson, one SQLite insert per event: about 230 us of CPU a 4 KB event, 4,200 to 4,900
events/s with two processes). Machines differ from day to day here by a factor of two or more, so the
benchmark runs such a stand-in on the same machine, with the same load generator and events, right
before the real service: A1 / stand-in says how much of what the machine allows the service reaches.

The stand-in is a bare ASGI app under uvicorn (uvloop, httptools) with two worker processes: read the
body, ``orjson.loads``, validate with the service's compiled validator, one ``INSERT OR IGNORE`` by
SHA-256 and a commit per request into a SQLite file (WAL, synchronous=NORMAL), answer 201. It has no
projection, graph, derivations, authentication or store limits: an upper bound, not a competitor.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from bench.common import ROOT, _subprocess_env, free_port, http_get

DB_ENV = "CHAINTRACE_STANDIN_DB"
WORKERS = int(os.environ.get("CHAINTRACE_STANDIN_WORKERS", "2"))  # the calibration used two

Scope = dict[str, Any]
Message = dict[str, Any]

_state: dict[str, Any] = {}


def _connection() -> sqlite3.Connection:
    """This worker's connection (made after uvicorn forked it)."""
    connection = _state.get("db")
    if connection is None:
        connection = sqlite3.connect(os.environ[DB_ENV], timeout=30, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("CREATE TABLE IF NOT EXISTS events (hash TEXT PRIMARY KEY, payload BLOB)")
        _state["db"] = connection
    return connection


def _validator() -> Any:
    validator = _state.get("validator")
    if validator is None:
        from lineage.service.validation import EventValidator

        validator = _state["validator"] = EventValidator.from_spec_dir()
    return validator


async def app(scope: Scope, receive: Callable[[], Awaitable[Message]],
              send: Callable[[Message], Awaitable[None]]) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _connection(), _validator()  # ready before the first request
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["method"] != "POST":
        await _answer(send, 200, b'{"status":"ok"}')
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = b"".join(chunks)
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        await _answer(send, 400, b'{"error":"invalid JSON"}')
        return
    if _validator().validate(event).errors:
        await _answer(send, 422, b'{"error":"invalid event"}')
        return
    connection = _connection()
    connection.execute("BEGIN IMMEDIATE")
    connection.execute("INSERT OR IGNORE INTO events VALUES (?, ?)", (hashlib.sha256(body).hexdigest(), body))
    connection.execute("COMMIT")
    await _answer(send, 201, b'{"status":"stored"}')


async def _answer(send: Callable[[Message], Awaitable[None]], status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def stored_count(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as connection:
        return int(connection.execute("SELECT count(*) FROM events").fetchone()[0])


@contextlib.contextmanager
def running(timeout: float = 60.0) -> Iterator[tuple[int, Path]]:
    """The stand-in on a free port with a fresh SQLite file: yields (port, database path)."""
    with tempfile.TemporaryDirectory(prefix="chaintrace-bench-standin-") as folder:
        db, port = Path(folder) / "standin.db", free_port()
        cmd = [sys.executable, "-m", "uvicorn", "bench.lean_standin:app", "--port", str(port),
               "--workers", str(WORKERS), "--loop", "uvloop", "--http", "httptools",
               "--no-access-log", "--log-level", "warning"]
        with open(Path(folder) / "standin.log", "wb") as log_file:
            process = subprocess.Popen(cmd, cwd=ROOT, env=_subprocess_env({DB_ENV: str(db)}),
                                       stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the stand-in exited with {process.returncode}: "
                                       f"{(Path(folder) / 'standin.log').read_text()[-2000:]}")
                with contextlib.suppress(OSError):
                    if http_get(port, "/", timeout=2)[0] == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("the stand-in did not answer in time")
                time.sleep(0.2)
            yield port, db
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 2)  # SIGINT: uvicorn stops its workers
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait(timeout=10)
