"""Integration fixtures: the real ``chaintrace lineage serve`` process, extra stores, event helpers.

Helpers live here (no ``__init__.py`` in tests, so no importable support module): tests get them through
the ``it`` fixture (an :class:`IntegrationKit`), servers through ``server_factory``.

A server is a subprocess started with ``.venv/bin/chaintrace lineage serve --db URL --port P`` in a
scratch folder (so no ``.env`` of the repository leaks in), its stdout+stderr go to a log file, and the
log is attached to the report of a test that fails (section "chaintrace server log").

API keys are on (the default): before a server starts, an admin key is made in its store, and the
connections the server hands out (``server.connection()``, ``server.post``) send it; ask for
``server.connection(api_key=None)`` (or another token) to call it as someone else.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, create_engine, text

from lineage.context import LineageContext
from lineage.settings import LineageSettings
from lineage.store.db import create_store_engine, migrate
from lineage.store.keys import create_key

REPO = Path(__file__).resolve().parents[3]
_BIN = Path(sys.executable).parent
CHAINTRACE = _BIN / "chaintrace" if (_BIN / "chaintrace").exists() else REPO / ".venv" / "bin" / "chaintrace"
PG_ADMIN_URL = os.environ.get(
    "CHAINTRACE_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ("sqlite", "postgres")
PRODUCER = "https://github.com/chaintrace/chaintrace/tests/integration"
RUN_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
_LOG_TAIL = 20_000
SERVER_LOGS: pytest.StashKey[list[Path]] = pytest.StashKey()
_SHARED_LOGS: list[Path] = []  # logs of module-scoped servers, attached to every failing test meanwhile


# ----------------------------------------------------------------------------------------- reporting
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed and report.when in ("setup", "call"):
        for path in [*item.stash.get(SERVER_LOGS, []), *_SHARED_LOGS]:
            with contextlib.suppress(OSError):
                data = path.read_bytes()[-_LOG_TAIL:].decode("utf-8", "replace")
                report.sections.append((f"chaintrace server log {path.name} (tail)", data))
    return report


# ------------------------------------------------------------------------------------------- events
def event_hash(event: Any) -> str:
    """The store's fingerprint of an event, computed as lineage.service.ingest does."""
    return hashlib.sha256(orjson.dumps(event, option=orjson.OPT_SORT_KEYS)).hexdigest()


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def run_event(
    event_type: str,
    when: datetime | str,
    run_id: str,
    job: str,
    *,
    namespace: str = "it",
    inputs: Sequence[tuple[str, str] | dict[str, Any]] = (),
    outputs: Sequence[tuple[str, str] | dict[str, Any]] = (),
    run_facets: dict[str, Any] | None = None,
    job_facets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A small valid OpenLineage 2-0-2 RunEvent."""

    def ds(item: tuple[str, str] | dict[str, Any]) -> dict[str, Any]:
        return item if isinstance(item, dict) else {"namespace": item[0], "name": item[1]}

    run: dict[str, Any] = {"runId": run_id}
    if run_facets is not None:
        run["facets"] = run_facets
    job_obj: dict[str, Any] = {"namespace": namespace, "name": job}
    if job_facets is not None:
        job_obj["facets"] = job_facets
    return {
        "eventType": event_type,
        "eventTime": when if isinstance(when, str) else iso(when),
        "producer": PRODUCER,
        "schemaURL": RUN_SCHEMA,
        "run": run,
        "job": job_obj,
        "inputs": [ds(i) for i in inputs],
        "outputs": [ds(o) for o in outputs],
    }


def custom_facet(**fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": "https://example.com/facets/Custom.json#/$defs/Custom",
            **fields}


def stable_run_id(*parts: object) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "chaintrace-it/" + "/".join(map(str, parts))))


# --------------------------------------------------------------------------------------------- http
@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None


def http_post(
    conn: http.client.HTTPConnection,
    path: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    *,
    chunked: bool = False,
) -> Reply:
    """POST on a keep-alive connection. A body the server refused before reading it all may break the
    pipe; the reply (already written by the server) is still read when it is there."""
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if chunked:
        hdrs["Transfer-Encoding"] = "chunked"
    else:
        hdrs["Content-Length"] = str(len(body))
    send_error: OSError | None = None
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        for key, value in hdrs.items():
            conn.putheader(key, value)
        conn.endheaders()
        view = memoryview(body)
        step = 256 * 1024
        for start in range(0, len(body), step):
            piece = view[start : start + step]
            if chunked:
                conn.send(f"{len(piece):x}\r\n".encode() + bytes(piece) + b"\r\n")
            else:
                conn.send(piece)
        if chunked:
            conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError) as exc:
        send_error = exc
    try:
        response = conn.getresponse()
        data = response.read()
    except (http.client.HTTPException, OSError) as exc:
        conn.close()
        raise AssertionError(f"no HTTP reply to POST {path} (send error: {send_error!r})") from exc
    if send_error is not None or response.will_close:
        conn.close()
    return Reply(response.status, data, {k.lower(): v for k, v in response.getheaders()})


def http_get(conn: http.client.HTTPConnection, path: str, headers: dict[str, str] | None = None) -> Reply:
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    return Reply(response.status, response.read(), {k.lower(): v for k, v in response.getheaders()})


# ------------------------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def subprocess_env(workdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINTRACE_")}
    env.update({"CHAINTRACE_DATA_ROOT": str(workdir), "COLUMNS": "250", "NO_COLOR": "1",
                "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


class KeyedConnection(http.client.HTTPConnection):
    """An HTTP connection that sends an API key with every request."""

    def __init__(self, host: str, port: int, *, api_key: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.api_key = api_key

    def putrequest(self, method: str, url: str, skip_host: bool = False,
                   skip_accept_encoding: bool = False) -> None:
        super().putrequest(method, url, skip_host=skip_host, skip_accept_encoding=skip_accept_encoding)
        self.putheader("Authorization", f"Bearer {self.api_key}")


def admin_key(db_url: str, name: str = "integration-admin") -> str:
    """A fresh admin key in the store at ``db_url`` (migrated first, as ``serve`` would)."""
    engine = create_store_engine(db_url)
    try:
        migrate(engine)
        return create_key(engine, name=name, role="admin", clearance="L4")[1]
    finally:
        engine.dispose()


_DEFAULT_KEY: Any = object()  # connection(): "the server's own key"


class Server:
    """One ``chaintrace lineage serve`` process, and the admin key its connections send."""

    def __init__(self, db_url: str, workdir: Path, log: Path, env: dict[str, str]) -> None:
        self.db_url = db_url
        self.workdir = workdir
        self.log = log
        self.env = env
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.api_key = admin_key(db_url)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        try:
            return self.log.read_bytes()[-_LOG_TAIL:].decode("utf-8", "replace")
        except OSError:
            return ""

    def start(self, timeout: float = 60.0) -> Server:
        for _attempt in range(3):
            self.port = free_port()
            with self.log.open("ab") as out:
                out.write(f"\n===== start on port {self.port} at {datetime.now(UTC)} =====\n".encode())
                out.flush()
                self.proc = subprocess.Popen(
                    [str(CHAINTRACE), "lineage", "serve", "--db", self.db_url, "--port", str(self.port)],
                    cwd=self.workdir, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                )
            if self._wait_healthy(timeout):
                return self
            if "address already in use" not in self.log_text().lower():
                break
        raise AssertionError(f"lineage server did not become healthy; log:\n{self.log_text()}")

    def wait_projected(self, timeout: float = 30.0) -> None:
        """Wait until the derived graph shows every acknowledged event.

        The server acknowledges an event once it is in the raw log and projects it into the graph
        milliseconds later; GET requests wait for that themselves, a test reading the store directly
        asks /healthz.
        """
        deadline = time.monotonic() + timeout
        conn = self.connection()
        try:
            while time.monotonic() < deadline:
                health = http_get(conn, "/healthz").json
                if health["projected"] >= health["acknowledged"]:
                    return
                time.sleep(0.01)
        finally:
            conn.close()
        raise AssertionError(f"the graph did not catch up with the log within {timeout} s")

    def _wait_healthy(self, timeout: float) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                try:
                    if http_get(conn, "/healthz").status == 200:
                        return True
                finally:
                    conn.close()
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        return False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def connection(self, timeout: float = 120.0, *, api_key: str | None = _DEFAULT_KEY
                   ) -> http.client.HTTPConnection:
        """A connection that sends the server's admin key (``api_key``: another one; None: no key)."""
        key = self.api_key if api_key is _DEFAULT_KEY else api_key
        if key is None:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        return KeyedConnection("127.0.0.1", self.port, api_key=key, timeout=timeout)

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None, **kw: Any) -> Reply:
        conn = self.connection()
        try:
            return http_post(conn, path, body, headers, **kw)
        finally:
            conn.close()

    def post_event(self, event: Any) -> Reply:
        return self.post("/api/v1/lineage", orjson.dumps(event))

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode


ServerFactory = Callable[..., Server]


def attach_log(item: pytest.Item, log: Path) -> None:
    """Show ``log`` in the report if ``item`` fails."""
    logs = item.stash.setdefault(SERVER_LOGS, [])
    if log not in logs:
        logs.append(log)


@contextlib.contextmanager
def _servers(item: pytest.Item | None, workdir: Path) -> Iterator[ServerFactory]:
    started: list[Server] = []

    def factory(db_url: str, *, log_name: str | None = None, **env: str) -> Server:
        workdir.mkdir(parents=True, exist_ok=True)
        name = log_name or f"server-{len(started) + 1}"
        log = workdir / f"{name}.log"
        if item is not None:
            attach_log(item, log)
        else:
            _SHARED_LOGS.append(log)
        server = Server(db_url, workdir, log, subprocess_env(workdir, **env))
        started.append(server)
        return server.start()

    try:
        yield factory
    finally:
        for server in started:
            server.stop(timeout=10)
            if server.log in _SHARED_LOGS:
                _SHARED_LOGS.remove(server.log)


@pytest.fixture
def server_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerFactory]:
    """``server_factory(db_url, **env) -> Server``, started and healthy; every one stopped at teardown."""
    with _servers(request.node, tmp_path / "server") as factory:
        yield factory


@pytest.fixture(scope="module")
def module_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """Like ``server_factory`` for servers shared by the tests of one module."""
    with _servers(None, tmp_path_factory.mktemp("module-server")) as factory:
        yield factory


# ------------------------------------------------------------------------------------------- stores
def create_pg_database(prefix: str) -> str:
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def reset_pg(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@dataclass
class PgPool:
    """Extra PostgreSQL databases for tests that need two stores (or a server of their own)."""

    urls: dict[str, str] = field(default_factory=dict)

    def fresh(self, slot: str) -> str:
        """An empty database for ``slot`` (created once per session, emptied on each call)."""
        url = self.urls.get(slot)
        if url is None:
            url = self.urls[slot] = create_pg_database(f"chaintrace_it_{slot}")
        else:
            reset_pg(url)
        return url


@pytest.fixture(scope="session")
def pg_pool() -> Iterator[PgPool]:
    pool = PgPool()
    try:
        yield pool
    finally:
        for url in pool.urls.values():
            with contextlib.suppress(Exception):
                drop_pg_database(url)


HASH_RE = re.compile(r"\b[0-9a-f]{64}\b")


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def python_json(payload: str | bytes) -> Any:
    """Parse with the standard library (arbitrary-precision ints), to compare with what was sent."""
    return json.loads(payload)


class IntegrationKit:
    """Helpers shared by the integration tests (reached through the ``it`` fixture)."""

    BACKENDS = BACKENDS
    CHAINTRACE = CHAINTRACE
    event_hash = staticmethod(event_hash)
    run_event = staticmethod(run_event)
    custom_facet = staticmethod(custom_facet)
    stable_run_id = staticmethod(stable_run_id)
    iso = staticmethod(iso)
    http_post = staticmethod(http_post)
    http_get = staticmethod(http_get)
    subprocess_env = staticmethod(subprocess_env)
    gzip = staticmethod(gzip_bytes)
    python_json = staticmethod(python_json)
    HASH_RE = HASH_RE

    def __init__(self, pg: PgPool, tmp_path: Path) -> None:
        self.pg = pg
        self.tmp_path = tmp_path
        self._engines: list[Engine] = []
        self._contexts: list[LineageContext] = []
        self._pg_slots: dict[str, str] = {}

    def store_url(self, backend: str, slot: str) -> str:
        """An empty store of ``backend``; ``slot`` tells stores of one test apart.

        PostgreSQL stores are the session's few extra databases (each DROP DATABASE at the end costs a
        checkpoint), handed out in the order a test asks for slots.
        """
        if backend == "sqlite":
            path = self.tmp_path / "stores" / f"{slot}.db"
            path.parent.mkdir(parents=True, exist_ok=True)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            return f"sqlite:///{path}"
        assert backend == "postgres", backend
        physical = self._pg_slots.setdefault(slot, f"store{len(self._pg_slots) + 1}")
        return self.pg.fresh(physical)

    def engine(self, url: str) -> Engine:
        engine = create_store_engine(url)
        self._engines.append(engine)
        return engine

    def context(self, url: str, **overrides: Any) -> LineageContext:
        settings = LineageSettings(db_url=url, data_root=self.tmp_path, **overrides)
        ctx = LineageContext.build(settings)
        ctx.start()
        self._contexts.append(ctx)
        return ctx

    def fill(self, url: str, events: Sequence[Any], chunk: int = 5_000) -> LineageContext:
        """A store filled in-process, in order, ``chunk`` events per request (as the batch endpoint does)."""
        ctx = self.context(url)
        for start in range(0, len(events), chunk):
            results = ctx.ingest.ingest_sync(events[start : start + chunk])
            bad = [r.to_json() for r in results if not r.accepted]
            assert not bad, f"reference events rejected: {bad[:3]}"
        return ctx

    def count_events(self, engine: Engine) -> int:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM events")).scalar_one())

    def stored_hashes(self, engine: Engine) -> set[str]:
        with engine.connect() as connection:
            return {row[0] for row in connection.execute(text("SELECT event_hash FROM events"))}

    def stored_payload(self, engine: Engine, digest: str) -> str | None:
        with engine.connect() as connection:
            value = connection.execute(
                text("SELECT payload FROM events WHERE event_hash = :h"), {"h": digest}
            ).scalar()
        return None if value is None else str(value)

    def cli(
        self, *args: str, timeout: float = 300.0, group: str = "lineage"
    ) -> subprocess.CompletedProcess[str]:
        """``chaintrace GROUP ARGS`` (GROUP: lineage) as a subprocess; fails the test on a non-zero exit."""
        workdir = self.tmp_path / "cli"
        workdir.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [str(CHAINTRACE), group, *args], cwd=workdir, env=subprocess_env(workdir),
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        assert proc.returncode == 0, (
            f"chaintrace {group} {' '.join(args)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
        return proc

    def cli_keys(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``chaintrace keys ARGS`` as a subprocess; fails the test on a non-zero exit."""
        return self.cli(*args, group="keys")

    def close(self) -> None:
        for ctx in self._contexts:
            with contextlib.suppress(Exception):
                ctx.close()
        for engine in self._engines:
            engine.dispose()


@pytest.fixture
def it(pg_pool: PgPool, tmp_path: Path) -> Iterator[IntegrationKit]:
    kit = IntegrationKit(pg_pool, tmp_path)
    try:
        yield kit
    finally:
        kit.close()
