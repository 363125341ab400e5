"""The HTTP side of the collect stage: one GET per attempt, streamed to disk while hashing, retried with
backoff on connection errors, timeouts, truncated bodies, 408/429 and 5xx, conditional on the validators
of the previous fetch (a 304 reuses the landed file). Each attempt writes through an atomic writer of
the zones' filesystem: a failed attempt leaves nothing behind."""

from __future__ import annotations

import json
import time
from typing import IO, TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from chaintrace_chain.collect import (
    MAX_BACKOFF_S,
    RETRYABLE_STATUSES,
    USER_AGENT,
    CollectError,
    CollectRecord,
    DownloadConnectionError,
    DownloadTimeoutError,
    HTTPStatusCollectError,
    TruncatedDownloadError,
    UnsupportedURLError,
    _check_content,
    _Context,
    _copy_into,
    _hash_file,
    _HashingWriter,
    _Landed,
)
from chaintrace_chain.settings import ChainSettings
from chaintrace_chain.storage import ZonePath, atomic_writer

if TYPE_CHECKING:
    from chaintrace_chain.zones import Zones


def usable_state(state_file: ZonePath, ctx: _Context, zones: Zones) -> CollectRecord | None:
    """The previous successful fetch of this URL, if its landed file is still intact (else fetch in full)."""
    try:
        previous = CollectRecord.from_dict(json.loads(state_file.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    if previous.source_uri != ctx.location or not (previous.etag or previous.last_modified):
        return None
    intact = _hash_file(zones.locate(previous.landed_path)) == (previous.bytes, previous.sha256)
    return previous if intact else None


def fetch_http(
    ctx: _Context,
    target: ZonePath,
    previous: CollectRecord | None,
    settings: ChainSettings,
    backoff_s: float,
    zones: Zones,
) -> _Landed:
    if urlsplit(ctx.location).scheme not in ("http", "https"):
        raise ctx.error(UnsupportedURLError, "only http(s) URLs are fetched; use kind: file for local files")
    if settings.http_retries < 0 or settings.http_timeout_s <= 0:
        raise ValueError("collect: http_retries must be >= 0 and http_timeout_s > 0")
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}  # land the bytes as served
    if previous and previous.etag:
        headers["If-None-Match"] = previous.etag
    if previous and previous.last_modified:
        headers["If-Modified-Since"] = previous.last_modified
    max_attempts = 1 + settings.http_retries
    timeout = httpx.Timeout(settings.http_timeout_s)
    with httpx.Client(timeout=timeout, follow_redirects=True, headers=headers) as client:
        for attempt in range(1, max_attempts + 1):
            try:
                # The body is checked inside the atomic write: a failed attempt publishes nothing.
                with atomic_writer(target) as handle:
                    return _attempt_fetch(
                        ctx, client, handle, previous, attempt, settings.http_timeout_s, zones
                    )
            except _Retry as retry:
                if attempt == max_attempts:
                    raise retry.error from retry.__cause__
                delay = backoff_s * 2 ** (attempt - 1) if retry.retry_after is None else retry.retry_after
                time.sleep(min(delay, MAX_BACKOFF_S))
    raise AssertionError("unreachable: the last attempt returns or raises")


class _Retry(Exception):
    """An attempt that failed in a way worth repeating; ``error`` is raised once attempts run out."""

    def __init__(self, error: CollectError, retry_after: float | None = None):
        super().__init__(str(error))
        self.error, self.retry_after = error, retry_after


class _Truncated(Exception):
    def __init__(self, received: int, expected: int):
        super().__init__(f"received {received} of {expected} bytes")
        self.received, self.expected = received, expected


def _attempt_fetch(
    ctx: _Context,
    client: httpx.Client,
    target: IO[bytes],
    previous: CollectRecord | None,
    attempt: int,
    timeout_s: float,
    zones: Zones,
) -> _Landed:
    after = f"after {attempt} attempt{'s' if attempt > 1 else ''}"
    try:
        with client.stream("GET", ctx.location) as response:
            status, reason, headers = response.status_code, response.reason_phrase, response.headers
            if status == 304 and previous is not None:
                _copy_into(zones.locate(previous.landed_path), target)
                return _Landed(
                    bytes=previous.bytes,
                    sha256=previous.sha256,
                    etag=headers.get("ETag", previous.etag),
                    last_modified=headers.get("Last-Modified", previous.last_modified),
                    not_modified=True,
                    http_status=304,
                    attempts=attempt,
                )
            if status >= 500 or status in RETRYABLE_STATUSES:
                error = ctx.error(
                    HTTPStatusCollectError, f"HTTP {status} {reason} {after}", status=status, attempts=attempt
                )
                raise _Retry(error, _retry_after(response))
            if status != 200:
                why = "client errors are not retried" if 400 <= status < 500 else "unexpected status"
                raise ctx.error(
                    HTTPStatusCollectError, f"HTTP {status} {reason} ({why})", status=status, attempts=attempt
                )
            return _stream_body(ctx, response, target, attempt)
    except _Truncated as exc:
        problem = f"truncated download: received {exc.received} of {exc.expected} bytes (Content-Length)"
        error = ctx.error(
            TruncatedDownloadError,
            f"{problem} {after}",
            received=exc.received,
            expected=exc.expected,
            attempts=attempt,
        )
        raise _Retry(error) from exc
    except httpx.TimeoutException as exc:
        problem = f"timed out {after} ({timeout_s:g} s timeout each, {type(exc).__name__})"
        raise _Retry(ctx.error(DownloadTimeoutError, problem, attempts=attempt)) from exc
    except httpx.TransportError as exc:
        problem = f"connection failed {after}: {type(exc).__name__}: {exc}"
        raise _Retry(ctx.error(DownloadConnectionError, problem, attempts=attempt)) from exc


def _stream_body(ctx: _Context, response: httpx.Response, handle: IO[bytes], attempt: int) -> _Landed:
    encoded = response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
    declared = response.headers.get("Content-Length")
    expected = int(declared) if declared and declared.isdigit() and not encoded else None
    writer = _HashingWriter(handle)
    try:
        for chunk in response.iter_bytes():
            writer.write(chunk)
    except httpx.TimeoutException:
        raise
    except httpx.TransportError as exc:
        # What arrived on the wire, including bytes httpx had not handed over yet.
        received = max(writer.size, response.num_bytes_downloaded)
        if expected is not None and received < expected:
            raise _Truncated(received, expected) from exc
        raise
    if expected is not None and writer.size < expected:
        raise _Truncated(writer.size, expected)
    _check_content(ctx, writer)
    return _Landed(
        bytes=writer.size,
        sha256=writer.digest.hexdigest(),
        etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
        http_status=response.status_code,
        attempts=attempt,
    )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if value.isdigit() else None  # the HTTP-date form is rare for 429/503; backoff
