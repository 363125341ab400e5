"""Ingest: decode, validate, fingerprint and store OpenLineage events.

Requests do the CPU work (parse, validate) themselves and hand the prepared events to one writer thread
that commits whatever has queued up in a single transaction (group commit). A request is answered only
after its events are committed, so an acknowledged event survives a crash of the process.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Engine

from lineage.service.store_limits import (  # noqa: F401  (re-exported: the documented limits)
    MAX_FIELD_BYTES,
    MAX_NAME_BYTES,
    MAX_NAMESPACE_BYTES,
    store_limits,
)
from lineage.service.validation import EventValidator, FacetWarning, FieldError
from lineage.service.writer import GroupCommitWriter
from lineage.store import times
from lineage.store.events import PreparedEvent
from lineage.store.projector import run_key

log = logging.getLogger(__name__)

# Deepest JSON the store can write back out (orjson serialises at most 254 levels).
MAX_JSON_DEPTH = 254
# Integers beyond 64 bits: orjson would read them as floats and silently change the value. Mapping
# every digit to b"0" and looking for 19 zeros finds a run of 19+ digits ~15x faster than a regex.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_NINETEEN_DIGITS = b"0" * 19


class BodyError(Exception):
    """A request body that cannot be read as events at all (-> 400, 413, 415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class EventResult:
    """What happened to one event of a request."""

    index: int
    status: str  # "created" | "duplicate" | "rejected"
    errors: list[FieldError] = field(default_factory=list)
    facet_warnings: list[FacetWarning] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.status != "rejected"

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"index": self.index, "status": self.status}
        if self.errors:
            body["errors"] = [{"path": e.path, "message": e.message} for e in self.errors]
        if self.facet_warnings:
            body["facetWarnings"] = [
                {"path": w.path, "facet": w.facet, "message": w.message} for w in self.facet_warnings
            ]
        return body


def decode_body(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """Undo gzip/deflate and enforce the size limit on both the wire and the decoded body."""
    if len(body) > max_bytes:
        raise BodyError(413, f"request body is {len(body)} bytes; the limit is {max_bytes}")
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise BodyError(415, f"unsupported Content-Encoding {content_encoding!r} (use gzip or none)")
    try:
        wbits = 16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS
        inflater = zlib.decompressobj(wbits)
        # Bounded inflate: a zip bomb stops at the limit instead of filling memory.
        out = inflater.decompress(body, max_bytes + 1)
        if len(out) > max_bytes or inflater.unconsumed_tail:
            raise BodyError(413, f"decompressed body exceeds the limit of {max_bytes} bytes")
        if not inflater.eof:
            raise BodyError(400, f"truncated {encoding} body")
        if inflater.unused_data.strip(b"\x00"):
            raise BodyError(400, f"unexpected bytes after the end of the {encoding} stream")
        return out
    except (zlib.error, gzip.BadGzipFile, EOFError) as exc:
        raise BodyError(400, f"body is not valid {encoding}: {exc}") from exc


def _exact_int(text: str) -> int:
    value = int(text)
    if not -(2**63) <= value < 2**64:
        raise ValueError(f"integer {text[:30]}... is outside the 64-bit range the store keeps exactly")
    return value


def _loads(body: bytes, where: str = "") -> Any:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError(400, f"invalid JSON{where}: {exc}") from exc
    if _NINETEEN_DIGITS in body.translate(_DIGITS_TO_ZERO):
        # orjson turns integers past 64 bits into floats; re-read such bodies with exact integers.
        try:
            json.loads(body, parse_int=_exact_int)
        except ValueError as exc:
            raise BodyError(400, f"invalid JSON{where}: {exc}") from exc
    return parsed


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise BodyError(400, "empty request body; expected an OpenLineage event as JSON")
    return _loads(body)


def parse_batch(body: bytes, content_type: str | None) -> list[Any]:
    """A JSON array of events, or NDJSON (one event per line)."""
    stripped = body.strip()
    if not stripped:
        raise BodyError(400, "empty request body; expected a JSON array or NDJSON of events")
    if stripped[:1] == b"[":
        parsed = _loads(stripped)
        if not isinstance(parsed, list):
            raise BodyError(400, "expected a JSON array of events")
        return parsed
    events: list[Any] = []
    for number, line in enumerate(stripped.splitlines(), start=1):
        if not line.strip():
            continue
        events.append(_loads(line, f" on NDJSON line {number}"))
    return events


def error_answer(code: int, message: str, errors: list[dict[str, Any]] | None = None) -> tuple[int, bytes]:
    """(status, JSON body) of a refused request."""
    body: dict[str, Any] = {"code": code, "message": message}
    if errors:
        body["errors"] = errors
    return code, orjson.dumps(body)


def batch_answer(results: Sequence[EventResult]) -> tuple[int, bytes]:
    """(status, JSON body) of a batch request: counts and one result per event; 207 if any was rejected."""
    summary = {"created": 0, "duplicate": 0, "rejected": 0}
    for result in results:
        summary[result.status] += 1
    answer = {**summary, "results": [r.to_json() for r in results]}
    return (207 if summary["rejected"] else 200), orjson.dumps(answer)


def parse_batch_limited(body: bytes, max_events: int) -> list[Any]:
    """:func:`parse_batch`, refusing (413) a batch of more than ``max_events`` events."""
    events = parse_batch(body, None)
    if len(events) > max_events:
        raise BodyError(413, f"batch holds {len(events)} events; the limit is {max_events}")
    return events


class IngestService:
    """Validates events and stores them through the group-commit writer."""

    def __init__(
        self, engine: Engine, validator: EventValidator, *, commit_batch_max: int = 2_000,
        projector_process: bool = True,
    ) -> None:
        self.engine = engine
        self.validator = validator
        self.writer = GroupCommitWriter(
            engine, commit_batch_max=commit_batch_max, projector_process=projector_process
        )

    def prepare(self, index: int, event: Any) -> tuple[PreparedEvent | None, EventResult]:
        outcome = self.validator.validate(event)
        result = EventResult(index, "rejected", list(outcome.errors), list(outcome.facet_warnings))
        if not outcome.ok or not isinstance(event, dict):
            return None, result
        try:
            serialized: bytes | None = orjson.dumps(event)
        except orjson.JSONEncodeError as exc:
            serialized, unserializable = None, exc
        result.errors.extend(store_limits(event, serialized))
        try:
            event_time = times.normalize_time(str(event["eventTime"]))
        except (ValueError, OverflowError) as exc:
            result.errors.append(FieldError("eventTime", f"not a usable date-time: {exc}"))
        if result.errors:
            return None, result
        run: dict[str, Any] = event["run"] if isinstance(event.get("run"), dict) else {}
        job: dict[str, Any] = event["job"] if isinstance(event.get("job"), dict) else {}
        warnings = (
            orjson.dumps([{"path": w.path, "facet": w.facet, "message": w.message}
                          for w in outcome.facet_warnings]).decode()
            if outcome.facet_warnings else None
        )
        if serialized is None:
            result.errors.append(FieldError(
                "", f"cannot be stored ({unserializable}); at most {MAX_JSON_DEPTH} levels"))
            return None, result
        canonical = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)  # cannot fail where dumps did not
        payload = serialized.decode()
        prepared = PreparedEvent(
            event_hash=hashlib.sha256(canonical).hexdigest(),
            kind=outcome.kind,
            event_type=str(event["eventType"]) if event.get("eventType") is not None else None,
            event_time=event_time,
            run_id=run_key(run["runId"]) if run.get("runId") is not None else None,
            job_namespace=job.get("namespace"),
            job_name=job.get("name"),
            payload=payload,
            facet_warnings=warnings,
            event=event,
        )
        return prepared, result

    def prepare_all(
        self, events: Sequence[Any], first_index: int = 0
    ) -> tuple[list[PreparedEvent], list[EventResult]]:
        prepared: list[PreparedEvent] = []
        results: list[EventResult] = []
        for index, event in enumerate(events, start=first_index):
            ready, result = self.prepare(index, event)
            results.append(result)
            if ready is not None:
                prepared.append(ready)
        return prepared, results

    def apply_flags(self, results: list[EventResult], new_flags: list[bool]) -> list[EventResult]:
        """Mark each valid event of ``results`` created or duplicate (``new_flags``: one per valid event)."""
        flags = iter(new_flags)
        for result in results:
            if not result.errors:
                result.status = "created" if next(flags) else "duplicate"
        return results

    async def ingest(self, events: Sequence[Any]) -> list[EventResult]:
        """Validate ``events``; store the valid ones in one transaction; a result per event.

        (Handing big batches to the writer in slices, to overlap validation with commits, measured
        slower: smaller commits merge fewer rows and the two threads contend for the GIL.)
        """
        prepared, results = self.prepare_all(events)
        if prepared:
            flags = await self.writer.submit_async(prepared)
            self.apply_flags(results, flags)
        return results

    def ingest_sync(self, events: Sequence[Any]) -> list[EventResult]:
        """:meth:`ingest` for callers without an event loop; returns once the graph shows the events."""
        prepared, results = self.prepare_all(events)
        if prepared:
            self.apply_flags(results, self.writer.submit(prepared).result())
            self.writer.wait_projected()
        return results
