"""POST /api/v1/lineage and /batch over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import uuid
from typing import Any

import orjson
from fastapi.testclient import TestClient

from lineage.context import LineageContext
from lineage.store.events import counts


def event(run_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventType": "COMPLETE", "eventTime": "2026-02-01T10:00:00.123456789Z", "producer": "tests",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run_id or str(uuid.uuid4())},
        "job": {"namespace": "chaintrace", "name": "nycflights13.store"},
        "outputs": [{"namespace": "file", "name": "/data/raw/nycflights13/flights"}],
    }
    body.update(overrides)
    return body


def stored(context: LineageContext) -> int:
    return counts(context.engine)["events"]


def test_one_event_is_created_then_recognised_as_duplicate(
    client: TestClient, context: LineageContext
) -> None:
    ev = event()
    first = client.post("/api/v1/lineage", json=ev)
    second = client.post("/api/v1/lineage", json=ev)
    assert (first.status_code, first.json()["status"]) == (201, "created")
    assert (second.status_code, second.json()["status"]) == (201, "duplicate")
    assert stored(context) == 1


def test_gzip_body_is_accepted(client: TestClient, context: LineageContext) -> None:
    response = client.post(
        "/api/v1/lineage", content=gzip.compress(orjson.dumps(event())),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert response.status_code == 201
    assert stored(context) == 1


def test_core_schema_error_names_the_field_and_stores_nothing(
    client: TestClient, context: LineageContext
) -> None:
    response = client.post("/api/v1/lineage", json=event(run_id="not-a-uuid"))
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == 422
    assert "run.runId" in [e["path"] for e in body["errors"]]
    assert "run.runId" in body["message"]
    assert stored(context) == 0


def test_facet_that_breaks_its_schema_is_kept_and_flagged(
    client: TestClient, context: LineageContext
) -> None:
    ev = event()
    ev["run"]["facets"] = {"errorMessage": {
        "_producer": "dbt", "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json",
        "message": "boom", "programmingLanguage": "python", "stackTrace": None,
    }}
    response = client.post("/api/v1/lineage", json=ev)
    assert response.status_code == 201
    warnings = response.json()["facetWarnings"]
    assert [w["path"] for w in warnings] == ["run.facets.errorMessage.stackTrace"]
    assert stored(context) == 1
    run = client.get(f"/api/v1/jobs/runs/{ev['run']['runId']}/facets", params={"type": "run"})
    assert run.status_code == 200
    assert run.json()["facets"]["errorMessage"]["stackTrace"] is None


def test_batch_stores_the_valid_events_and_answers_per_event(
    client: TestClient, context: LineageContext
) -> None:
    good = event()
    response = client.post("/api/v1/lineage/batch", json=[good, {"eventTime": "x"}, good, event()])
    assert response.status_code == 207
    body = response.json()
    assert [r["status"] for r in body["results"]] == ["created", "rejected", "duplicate", "created"]
    assert (body["created"], body["duplicate"], body["rejected"]) == (2, 1, 1)
    assert stored(context) == 2


def test_ndjson_batch(client: TestClient, context: LineageContext) -> None:
    lines = b"\n".join(orjson.dumps(event()) for _ in range(5))
    response = client.post("/api/v1/lineage/batch", content=lines,
                           headers={"Content-Type": "application/x-ndjson"})
    assert response.status_code == 200
    assert response.json()["created"] == 5
    assert stored(context) == 5


def test_body_over_the_limit_gets_413_and_keeps_what_was_stored(
    client: TestClient, context: LineageContext
) -> None:
    assert client.post("/api/v1/lineage", json=event()).status_code == 201
    huge = event(job={"namespace": "n", "name": "j", "facets": {"big": {
        "_producer": "p", "_schemaURL": "s", "blob": "x" * (6 * 1024 * 1024)}}})
    response = client.post("/api/v1/lineage", content=orjson.dumps(huge),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert stored(context) == 1


def test_wrong_content_type_and_arrays_on_the_single_endpoint(client: TestClient) -> None:
    html = client.post("/api/v1/lineage", content=b"<p>hi</p>", headers={"Content-Type": "text/html"})
    assert html.status_code == 415
    array = client.post("/api/v1/lineage", json=[event()])
    assert array.status_code == 400
    assert "batch" in array.json()["message"]
