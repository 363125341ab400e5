"""Body decoding, batch parsing and the store limits of the ingest service (no HTTP, no store)."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import pytest

from lineage.service.ingest import (
    MAX_NAME_BYTES,
    BodyError,
    IngestService,
    decode_body,
    parse_batch,
    parse_json,
)
from lineage.service.validation import EventValidator
from lineage.store.db import create_store_engine


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "eventType": "START", "eventTime": "2026-01-01T00:00:00+02:00", "producer": "p",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": "3f5e1a0e-8a51-4f4e-9b0a-111111111111"},
        "job": {"namespace": "ns", "name": "job"},
    }
    base.update(overrides)
    return base


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> IngestService:
    engine = create_store_engine(f"sqlite:///{tmp_path_factory.mktemp('s') / 'x.db'}")
    return IngestService(engine, EventValidator.from_spec_dir())


def test_gzip_and_deflate_bodies_are_inflated() -> None:
    raw = b'{"a": 1}'
    assert decode_body(gzip.compress(raw), "gzip", 1000) == raw
    assert decode_body(zlib.compress(raw), "deflate", 1000) == raw
    assert decode_body(raw, None, 1000) == raw


@pytest.mark.parametrize(
    ("body", "encoding", "status"),
    [
        (b"x" * 2000, None, 413),
        (gzip.compress(b"0" * 5000), "gzip", 413),  # inflates past the limit
        (gzip.compress(b'{"a": 1}')[:-6], "gzip", 400),  # truncated
        (b"not gzip at all", "gzip", 400),
        (b"{}", "br", 415),
    ],
)
def test_bad_bodies_name_the_problem(body: bytes, encoding: str | None, status: int) -> None:
    with pytest.raises(BodyError) as caught:
        decode_body(body, encoding, 1000)
    assert caught.value.status == status
    assert caught.value.message


def test_batch_accepts_arrays_and_ndjson_and_names_the_bad_line() -> None:
    assert parse_batch(b'[{"a":1},{"b":2}]', "application/json") == [{"a": 1}, {"b": 2}]
    assert parse_batch(b'{"a":1}\n\n{"b":2}\n', "application/x-ndjson") == [{"a": 1}, {"b": 2}]
    with pytest.raises(BodyError, match="line 2"):
        parse_batch(b'{"a":1}\n{oops\n', None)
    with pytest.raises(BodyError, match="empty"):
        parse_json(b"  ")


def test_prepare_normalises_time_and_fingerprints_canonically(service: IngestService) -> None:
    first, result = service.prepare(0, event())
    assert first is not None and not result.errors
    assert first.event_time == "2025-12-31T22:00:00.000000Z"
    reordered = dict(reversed(list(event().items())))
    second, _ = service.prepare(0, reordered)
    assert second is not None and second.event_hash == first.event_hash


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ({"job": {"namespace": "ns", "name": "x" * (MAX_NAME_BYTES + 1)}}, "job.name"),
        ({"job": {"namespace": "n\x00s", "name": "job"}}, "job.namespace"),
        ({"outputs": [{"namespace": "file", "name": ""}]}, "outputs[0].name"),
        ({"eventTime": "9999-12-31T23:30:00-01:00"}, "eventTime"),
    ],
)
def test_store_limits_are_reported_with_their_path(
    service: IngestService, override: dict[str, Any], path: str
) -> None:
    ready, result = service.prepare(3, event(**override))
    assert ready is None
    assert result.status == "rejected"
    assert path in [e.path for e in result.errors]
