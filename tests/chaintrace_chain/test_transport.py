"""SpoolingHttpTransport against a real lineage service (uvicorn in a thread), a closed port, a socket
that never answers, and a stub that answers 503: every event ends up stored, spooled or rejected."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.serde import Serde
from openlineage.client.transport import get_default_factory
from sqlalchemy import text

from chaintrace_chain.spool import Spool
from chaintrace_chain.transport import (
    CIRCUIT_MARKER,
    EmitOutcome,
    SpoolingHttpConfig,
    SpoolingHttpTransport,
)
from lineage.context import LineageContext
from lineage.settings import LineageSettings

DOTTED = "chaintrace_chain.transport.SpoolingHttpTransport"


# ------------------------------------------------------------------------------------------ helpers
def event(job: str = "task", namespace: str = "spool-tests") -> RunEvent:
    return RunEvent(
        eventType=RunState.START, eventTime=datetime.now(UTC).isoformat(),
        run=Run(runId=str(uuid.uuid4())), job=Job(namespace=namespace, name=job),
        producer="https://github.com/chaintrace/chaintrace/tests",
    )


class Service:
    def __init__(self, url: str, context: LineageContext) -> None:
        self.url = url
        self.context = context

    def count(self) -> int:
        with self.context.engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM events")).scalar_one())


@pytest.fixture
def service(
    sqlite_url: str, tmp_path: Path, start_lineage_service: Callable[[LineageContext], str]
) -> Service:
    """The real lineage app under uvicorn on a free port, in a thread (as chaintrace_cli.demo does)."""
    context = LineageContext.build(LineageSettings(db_url=sqlite_url, data_root=tmp_path))
    return Service(start_lineage_service(context), context)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A socket that completes the TCP handshake (kernel backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


class Stub(BaseHTTPRequestHandler):
    """Answers POSTs with ``server.status``; remembers the requests."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.server.requests.append((dict(self.headers), self.rfile.read(length)))  # type: ignore[attr-defined]
        status = self.server.status  # type: ignore[attr-defined]
        body = json.dumps({"code": status, "message": "stub says so"}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    server.status = 503  # type: ignore[attr-defined]
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def transport(url: str, spool_dir: Path, **extra: Any) -> SpoolingHttpTransport:
    config = SpoolingHttpConfig.from_dict({"type": DOTTED, "url": url, "spool_dir": str(spool_dir), **extra})
    return SpoolingHttpTransport(config)


def count_posts(target: SpoolingHttpTransport) -> list[int]:
    """Wrap the transport's single network call; the list grows by one per attempt."""
    attempts: list[int] = []
    original = target._post

    def counted(body: bytes) -> tuple[int, str]:
        attempts.append(1)
        return original(body)

    target._post = counted  # type: ignore[method-assign]
    return attempts


# -------------------------------------------------------------------------------------------- config
def test_loads_by_dotted_path_through_the_openlineage_client(tmp_path: Path, service: Service) -> None:
    spool_dir = tmp_path / "spool"
    config = {"type": DOTTED, "url": service.url, "spool_dir": str(spool_dir), "timeout": 2,
              "circuit_open_s": 5, "compression": "gzip", "auth": {"type": "api_key", "apiKey": "k"}}
    made = get_default_factory().create(dict(config))
    assert isinstance(made, SpoolingHttpTransport)
    assert made.config.timeout == 2.0 and made.config.circuit_open_s == 5.0
    assert made.config.api_key == "k" and made.config.compression == "gzip"

    client = OpenLineageClient(config={"transport": dict(config)})
    assert isinstance(client.transport, SpoolingHttpTransport)
    client.emit(event("from-client"))
    assert client.transport.emitted == 1
    assert service.count() == 1
    assert client.close() is True


def test_spool_dir_defaults_to_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAINTRACE_SPOOL_DIR", str(tmp_path / "from-env"))
    config = SpoolingHttpConfig.from_dict({"type": DOTTED, "url": "http://127.0.0.1:5000"})
    assert config.spool_dir == tmp_path / "from-env"
    assert config.endpoint == "api/v1/lineage"
    assert (config.timeout, config.connect_timeout, config.circuit_open_s) == (1.0, 0.5, 30.0)


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"url": "http://h:1", "spool_dir": "/s", "spool": "/x"}, "unknown key(s) ['spool']"),
        ({"url": "127.0.0.1:5000", "spool_dir": "/s"}, "url must be an http(s) URL"),
        ({"url": "http://h:1"}, "spool_dir is required"),
        ({"url": "http://h:1", "spool_dir": "/s", "timeout": "soon"}, "timeout must be a number"),
        ({"url": "http://h:1", "spool_dir": "/s", "connect_timeout": 0}, "connect_timeout must be > 0"),
        ({"url": "http://h:1", "spool_dir": "/s", "compression": "zstd"}, "compression must be 'gzip'"),
        ({"url": "http://h:1", "spool_dir": "/s", "delivery": "kafka"}, "delivery must be one of"),
        ({"url": "http://h:1", "spool_dir": "/s", "fsync": "sometimes"}, "fsync must be true or false"),
        ({"spool_dir": "/s", "delivery": "http"}, "url must be an http(s) URL"),
        ({"url": "ftp://h", "spool_dir": "/s", "delivery": "spool"}, "url must be an http(s) URL"),
    ],
)
def test_bad_config_names_what_is_wrong(
    params: dict[str, Any], names: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHAINTRACE_SPOOL_DIR", raising=False)
    with pytest.raises(ValueError, match="SpoolingHttpTransport config") as info:
        SpoolingHttpConfig.from_dict(params)
    assert names in str(info.value)


def test_spool_delivery_needs_no_url_and_reads_fsync_from_strings(tmp_path: Path) -> None:
    config = SpoolingHttpConfig.from_dict({"delivery": "spool", "spool_dir": str(tmp_path), "fsync": "false"})
    assert (config.delivery, config.fsync) == ("spool", False)
    assert SpoolingHttpConfig.from_dict({"url": "http://h:1", "spool_dir": str(tmp_path)}).delivery == "http"
    assert SpoolingHttpConfig.from_dict({"url": "http://h:1", "spool_dir": str(tmp_path)}).fsync is True


# ----------------------------------------------------------------------------- spool-first delivery
def test_spool_delivery_writes_one_file_per_event_and_no_network_even_with_the_service_up(
    tmp_path: Path, service: Service
) -> None:
    target = transport(service.url, tmp_path / "spool", delivery="spool")
    attempts = count_posts(target)
    sent = [event(f"spooled-{i}") for i in range(5)]
    outcomes = [target.emit(e) for e in sent]
    assert outcomes == [EmitOutcome.SPOOLED] * 5
    assert attempts == []
    assert target._client is None  # not even a connection pool was made
    assert service.count() == 0
    assert target.stats() == {"emitted": 0, "spooled": 5, "rejected": 0, "failed": 0}
    spool = Spool(tmp_path / "spool")
    bodies = [spool.read(path) for path in spool.events()]
    assert bodies == [Serde.to_json(e).encode() for e in sent]  # oldest first, exactly as serialised
    assert not target.circuit_open


@pytest.mark.parametrize(("fsync", "syncs_per_event"), [(True, 2), (False, 0)])
def test_spool_delivery_fsyncs_file_and_folder_unless_told_not_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool, syncs_per_event: int
) -> None:
    import lineage.spool_format

    synced: list[int] = []
    real_fsync = lineage.spool_format.os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(lineage.spool_format.os, "fsync", counting_fsync)
    target = transport("http://127.0.0.1:9", tmp_path / "spool", delivery="spool", fsync=fsync)
    assert [target.emit(event(f"sync-{i}")) for i in range(3)] == [EmitOutcome.SPOOLED] * 3
    assert len(synced) == 3 * syncs_per_event
    assert len(Spool(tmp_path / "spool").events()) == 3


def test_spool_delivery_counts_an_event_it_cannot_write_as_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = transport("http://127.0.0.1:9", tmp_path / "spool", delivery="spool")

    def broken_write(body: bytes) -> Path:
        raise OSError(28, "No space left on device")

    object.__setattr__(target, "spool", type("Broken", (), {"write": staticmethod(broken_write)})())
    lost = event("spool-full")
    with caplog.at_level(logging.ERROR, logger="chaintrace_chain.transport"):
        assert target.emit(lost) is EmitOutcome.FAILED
    assert target.stats() == {"emitted": 0, "spooled": 0, "rejected": 0, "failed": 1}
    assert str(lost.run.runId) in caplog.text


# --------------------------------------------------------------------------------------- HTTP delivery
def test_service_up_delivers_and_spools_nothing(tmp_path: Path, service: Service) -> None:
    target = transport(service.url, tmp_path / "spool")
    outcomes = [target.emit(event(f"job-{i}")) for i in range(10)]
    assert outcomes == [EmitOutcome.SENT] * 10
    assert target.stats() == {"emitted": 10, "spooled": 0, "rejected": 0, "failed": 0}
    assert service.count() == 10
    assert Spool(tmp_path / "spool").events() == []
    assert not target.circuit_open


def test_gzip_compression_is_accepted_by_the_service(tmp_path: Path, service: Service) -> None:
    target = transport(service.url, tmp_path / "spool", compression="gzip")
    assert target.emit(event()) is EmitOutcome.SENT
    assert service.count() == 1


def test_service_down_spools_every_event_and_tries_the_network_once(tmp_path: Path, closed_port: int) -> None:
    target = transport(f"http://127.0.0.1:{closed_port}", tmp_path / "spool")
    attempts = count_posts(target)
    sent = [event(f"job-{i}") for i in range(20)]
    started = time.perf_counter()
    outcomes = [target.emit(e) for e in sent]
    elapsed = time.perf_counter() - started
    assert outcomes == [EmitOutcome.SPOOLED] * 20
    assert len(attempts) == 1, "the circuit should open after the first refused connection"
    assert target.circuit_open
    # A correctness bound, not a benchmark: the provider's HTTP transport would take about 20 x 9 s.
    assert elapsed < 20
    files = Spool(tmp_path / "spool").events()
    assert len(files) == 20
    assert [f.read_bytes() for f in files] == [Serde.to_json(e).encode() for e in sent]


def test_hanging_service_times_out_once_then_spools(tmp_path: Path, hanging_port: int) -> None:
    target = transport(f"http://127.0.0.1:{hanging_port}", tmp_path / "spool", timeout=0.3)
    attempts = count_posts(target)
    outcomes = [target.emit(event()) for _ in range(5)]
    assert outcomes == [EmitOutcome.SPOOLED] * 5
    assert len(attempts) == 1
    assert len(Spool(tmp_path / "spool").events()) == 5


def test_invalid_event_goes_to_rejected_with_the_service_message(tmp_path: Path, service: Service) -> None:
    target = transport(service.url, tmp_path / "spool")
    bad = event(namespace="")  # the service's schema check: job.namespace must not be empty
    assert target.emit(bad) is EmitOutcome.REJECTED
    spool = Spool(tmp_path / "spool")
    assert spool.events() == []
    (kept,) = spool.rejected()
    assert kept.read_bytes() == Serde.to_json(bad).encode()
    error = json.loads(kept.with_name(kept.name.replace(".json", ".error.json")).read_text())
    assert error["status"] == 422 and "job.namespace" in error["message"]
    assert target.rejected == 1 and not target.circuit_open
    # The service is up: the next good event is delivered.
    assert target.emit(event()) is EmitOutcome.SENT
    assert service.count() == 1


def test_5xx_opens_the_circuit_and_one_probe_closes_it(tmp_path: Path, stub: ThreadingHTTPServer) -> None:
    url = f"http://127.0.0.1:{stub.server_address[1]}"
    target = transport(url, tmp_path / "spool", circuit_open_s=0.3, api_key="secret")
    attempts = count_posts(target)
    assert target.emit(event()) is EmitOutcome.SPOOLED
    assert target.emit(event()) is EmitOutcome.SPOOLED
    assert len(attempts) == 1 and target.circuit_open
    assert (tmp_path / "spool" / CIRCUIT_MARKER).exists()
    headers, _body = stub.requests[0]  # type: ignore[attr-defined]
    assert headers["Authorization"] == "Bearer secret"

    time.sleep(0.4)  # cooldown over
    stub.status = 201  # type: ignore[attr-defined]
    assert target.emit(event()) is EmitOutcome.SENT
    assert len(attempts) == 2
    assert not target.circuit_open
    assert not (tmp_path / "spool" / CIRCUIT_MARKER).exists()
    assert target.emit(event()) is EmitOutcome.SENT
    assert target.stats() == {"emitted": 2, "spooled": 2, "rejected": 0, "failed": 0}


def test_429_spools_instead_of_rejecting(tmp_path: Path, stub: ThreadingHTTPServer) -> None:
    stub.status = 429  # type: ignore[attr-defined]
    target = transport(f"http://127.0.0.1:{stub.server_address[1]}", tmp_path / "spool")
    assert target.emit(event()) is EmitOutcome.SPOOLED
    assert Spool(tmp_path / "spool").rejected() == []


def test_the_circuit_is_shared_by_processes_using_the_same_spool(tmp_path: Path, closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    first = transport(url, tmp_path / "spool")
    assert first.emit(event()) is EmitOutcome.SPOOLED
    # A new task process makes its own transport: the marker in the spool spares it the attempt.
    second = transport(url, tmp_path / "spool")
    attempts = count_posts(second)
    assert second.emit(event()) is EmitOutcome.SPOOLED
    assert attempts == []


def test_emit_never_raises_even_when_the_spool_fails(
    tmp_path: Path, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    target = transport(f"http://127.0.0.1:{closed_port}", tmp_path / "spool")

    def broken_write(body: bytes) -> Path:
        raise OSError(28, "No space left on device")

    object.__setattr__(target, "spool", type("Broken", (), {"write": staticmethod(broken_write)})())
    lost = event("last-resort")
    with caplog.at_level(logging.ERROR, logger="chaintrace_chain.transport"):
        assert target.emit(lost) is EmitOutcome.FAILED
    assert target.failed == 1
    assert str(lost.run.runId) in caplog.text, "the event must at least survive in the log"
