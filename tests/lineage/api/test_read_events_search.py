"""Marquez read API: /events/lineage, /search, /tags, /sources, and names that need URL encoding.

Runs on SQLite and PostgreSQL (the ``context`` fixture).
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from lineage.context import LineageContext
from lineage.store import schema as s
from lineage.store.projector import dataset_version_id

PRODUCER = "https://github.com/chaintrace/tests"
API = "/api/v1"




def facet(schema: str, **fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER,
            "_schemaURL": f"https://openlineage.io/spec/facets/1-0-0/{schema}.json#/$defs/{schema}", **fields}


def run_event(
    event_type: str, job: str, time: str, *, namespace: str = "etl", run_id: str | None = None,
    inputs: list[dict[str, Any]] | None = None, outputs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "eventType": event_type, "eventTime": time, "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run_id or str(uuid.uuid4())},
        "job": {"namespace": namespace, "name": job},
        "inputs": inputs or [], "outputs": outputs or [],
    }


def post(client: TestClient, *events: dict[str, Any]) -> None:
    response = client.post(f"{API}/lineage/batch", json=list(events))
    assert response.status_code == 200, response.text


def path(*parts: str) -> str:
    return API + "".join("/" + quote(p, safe="") for p in parts)


# -- /events/lineage ---------------------------------------------------------------------------------


def test_events_are_raw_run_events_newest_first_with_window_and_paging(client: TestClient) -> None:
    times = ["2026-03-01T10:00:00Z", "2026-03-01T13:00:00+02:00", "2026-03-01T12:00:00.5Z"]
    events = [run_event("COMPLETE", f"j{i}", t) for i, t in enumerate(times)]
    dataset_event = {
        "eventTime": "2026-03-01T12:30:00Z", "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent",
        "dataset": {"namespace": "wh", "name": "t"},
    }
    post(client, *events, dataset_event)
    # Times compare as instants, whatever zone they were sent in: j1 (11:00Z) < j2 (12:00:00.5Z).
    body = client.get(f"{API}/events/lineage").json()
    assert body["totalCount"] == 3  # Marquez lists RunEvents only
    assert [e["job"]["name"] for e in body["events"]] == ["j2", "j1", "j0"]
    assert body["events"][1] == events[1]
    ascending = client.get(f"{API}/events/lineage", params={"sortDirection": "ASC"}).json()
    assert [e["job"]["name"] for e in ascending["events"]] == ["j0", "j1", "j2"]
    window = {"after": "2026-03-01T12:00:00+01:00", "before": "2026-03-01T12:00:00.5Z"}
    windowed = client.get(f"{API}/events/lineage", params=window).json()["events"]
    assert [e["job"]["name"] for e in windowed] == ["j1"]  # after inclusive, before exclusive, as Marquez
    page = client.get(f"{API}/events/lineage", params={"limit": 1, "offset": 1}).json()
    assert ([e["job"]["name"] for e in page["events"]], page["totalCount"]) == (["j1"], 3)
    # The Marquez web UI sends empty bounds; an unencoded "+" arrives as a space.
    assert client.get(f"{API}/events/lineage?before=&after=").json()["totalCount"] == 3
    plus_as_space = client.get(f"{API}/events/lineage?after=2026-03-01T11:30:00+01:00").json()
    assert plus_as_space["totalCount"] == 2


@pytest.mark.parametrize("params", [
    {"before": "yesterday"}, {"after": "2026-03-01T10:00:00"}, {"sortDirection": "sideways"},
])
def test_bad_event_parameters_are_400(client: TestClient, params: dict[str, str]) -> None:
    response = client.get(f"{API}/events/lineage", params=params)
    assert response.status_code == 400
    assert response.json()["code"] == 400


def test_event_payload_comes_back_byte_identical(client: TestClient, context: LineageContext) -> None:
    ev = run_event("COMPLETE", "exact", "2026-03-01T10:00:00.123456789+05:30")
    ev["run"]["facets"] = {"custom": {"_producer": PRODUCER, "_schemaURL": "https://x/custom.json",
                                      "f": 0.1, "big": 12345678901234567, "tiny": 1e-7, "neg": -0.0,
                                      "text": "é\u2028<script>\"'\\", "nested": {"z": 1, "a": [True, None]}}}
    post(client, ev)
    with context.engine.connect() as connection:
        stored = connection.execute(select(s.events.c.payload)).scalar_one()
    response = client.get(f"{API}/events/lineage")
    assert stored.encode() in response.content
    assert response.json()["events"] == [orjson.loads(stored)]
    assert response.json()["events"][0]["eventTime"] == "2026-03-01T10:00:00.123456789+05:30"


# -- /search -----------------------------------------------------------------------------------------


@pytest.fixture
def searchable(client: TestClient) -> TestClient:
    post(client,
         run_event("COMPLETE", "load_orders", "2026-03-01T10:00:00Z",
                   outputs=[{"namespace": "wh", "name": "orders_2024"}]),
         run_event("COMPLETE", "archive", "2026-03-01T11:00:00Z",
                   outputs=[{"namespace": "wh", "name": "ORDERS_archive"}]),
         run_event("COMPLETE", "x", "2026-03-01T12:00:00Z",
                   outputs=[{"namespace": "fr", "name": "données/ÉTÉ 2026.csv"},
                            {"namespace": "wh", "name": "a\\b"}]))
    return client


def names(client: TestClient, **params: Any) -> list[tuple[str, str]]:
    response = client.get(f"{API}/search", params=params)
    assert response.status_code == 200, response.text
    return [(r["type"], r["name"]) for r in response.json()["results"]]


def test_search_is_case_insensitive_substring_sorted_by_name(searchable: TestClient) -> None:
    body = searchable.get(f"{API}/search", params={"q": "orders"}).json()
    assert body["totalCount"] == 3
    assert body["results"][0] == {
        "type": "DATASET", "name": "ORDERS_archive", "updatedAt": "2026-03-01T11:00:00.000000Z",
        "namespace": "wh", "nodeId": "dataset:wh:ORDERS_archive",
    }
    assert [(r["type"], r["name"]) for r in body["results"]] == [
        ("DATASET", "ORDERS_archive"), ("JOB", "load_orders"), ("DATASET", "orders_2024")]
    assert body["results"][1]["nodeId"] == "job:etl:load_orders"
    assert names(searchable, q="été") == [("DATASET", "données/ÉTÉ 2026.csv")]


def test_search_wildcards_filter_sort_and_limit(searchable: TestClient) -> None:
    assert names(searchable, q="ord%2024") == [("DATASET", "orders_2024")]
    assert names(searchable, q="_rders_a") == [("DATASET", "ORDERS_archive")]
    assert names(searchable, q="a\\b") == [("DATASET", "a\\b")]  # a backslash is literal
    assert names(searchable, q="orders", filter="JOB") == [("JOB", "load_orders")]
    assert names(searchable, q="orders", filter="dataset") == [
        ("DATASET", "ORDERS_archive"), ("DATASET", "orders_2024")]
    # Newest first; the job and the dataset it wrote share a time, then the name decides.
    assert names(searchable, q="orders", sort="updated_at") == [
        ("DATASET", "ORDERS_archive"), ("JOB", "load_orders"), ("DATASET", "orders_2024")]
    limited = searchable.get(f"{API}/search", params={"q": "orders", "limit": 1}).json()
    assert (len(limited["results"]), limited["totalCount"]) == (1, 3)
    assert names(searchable, q="no such thing") == []


@pytest.mark.parametrize("params", [{}, {"q": "  "}, {"q": "x", "filter": "run"}, {"q": "x", "sort": "size"}])
def test_bad_search_parameters_are_400(client: TestClient, params: dict[str, str]) -> None:
    assert client.get(f"{API}/search", params=params).status_code == 400


# -- /tags and /sources ------------------------------------------------------------------------------


def test_tags_and_sources(client: TestClient) -> None:
    table = {"namespace": "wh", "name": "users", "facets": {
        "tags": facet("TagsDatasetFacet", tags=[
            {"key": "pii", "value": "true", "field": "email"}, {"key": "owner", "value": "ana"}]),
        "dataSource": facet("DatasourceDatasetFacet", name="postgres://db:5432", uri="postgres://db:5432/app"),
        "schema": facet("SchemaDatasetFacet", fields=[{"name": "email", "type": "TEXT"}]),
    }}
    job = run_event("COMPLETE", "j", "2026-03-01T10:00:00Z", outputs=[table])
    job["job"]["facets"] = {"tags": facet("TagsJobFacet", tags=[{"key": "critical", "value": "true"}])}
    post(client, job)
    tags = client.get(f"{API}/tags").json()
    assert tags == {"tags": [{"name": n, "description": None} for n in ("critical", "owner:ana", "pii")],
                    "totalCount": 3}
    last = client.get(f"{API}/tags", params={"offset": 2}).json()["tags"]
    assert last == [{"name": "pii", "description": None}]
    dataset = client.get(path("namespaces", "wh", "datasets", "users")).json()
    assert dataset["tags"] == ["owner:ana"]
    assert dataset["fields"][0]["tags"] == ["pii"]
    assert client.get(path("namespaces", "etl", "jobs", "j")).json()["tags"] == ["critical"]
    source = {"type": "POSTGRESQL", "name": "postgres://db:5432", "createdAt": "2026-03-01T10:00:00.000000Z",
              "updatedAt": "2026-03-01T10:00:00.000000Z", "connectionUrl": "postgres://db:5432/app",
              "description": None}
    assert client.get(f"{API}/sources").json() == {"sources": [source], "totalCount": 1}
    assert client.get(path("sources", "postgres://db:5432")).json() == source
    assert dataset["sourceName"] == "postgres://db:5432"


# -- names that need encoding ------------------------------------------------------------------------

AWKWARD = [
    ("file", "/data/raw/flights"),
    ("s3://bucket/prefix", "données/été 2026.csv"),
    ("warehouse", "public.table.v1"),
    ("sql", "x'); DROP TABLE events;--"),
    ("html", "<script>alert('x')</script>"),
    ("pct", "100% done?a=1&b=2#frag"),
    ("slash/ns", "trailing/"),
]


@pytest.mark.parametrize(("namespace", "name"), AWKWARD)
def test_awkward_names_round_trip_byte_identical(client: TestClient, namespace: str, name: str) -> None:
    run = str(uuid.uuid4())
    post(client, run_event("COMPLETE", name, "2026-03-01T10:00:00Z", namespace=namespace, run_id=run,
                           outputs=[{"namespace": namespace, "name": name}]))
    dataset = client.get(path("namespaces", namespace, "datasets", name))
    assert dataset.status_code == 200, dataset.text
    assert dataset.json()["id"] == {"namespace": namespace, "name": name}
    versions = client.get(path("namespaces", namespace, "datasets", name, "versions")).json()
    version = dataset_version_id(namespace, name, run)
    assert [v["version"] for v in versions["versions"]] == [version]
    one = client.get(path("namespaces", namespace, "datasets", name, "versions", version)).json()
    assert one["name"] == name
    job = client.get(path("namespaces", namespace, "jobs", name)).json()
    assert (job["namespace"], job["name"], job["outputs"]) == (namespace, name, [dataset.json()["id"]])
    runs = client.get(path("namespaces", namespace, "jobs", name, "runs")).json()
    assert [r["id"] for r in runs["runs"]] == [run]
    assert client.get(path("namespaces", namespace, "jobs", name, "versions")).json()["totalCount"] == 1
    assert client.get(path("namespaces", namespace)).json()["name"] == namespace
    listed = client.get(path("namespaces", namespace, "datasets")).json()["datasets"]
    assert [d["name"] for d in listed] == [name]
    assert client.get(f"{API}/search", params={"q": name}).json()["results"][0]["name"] == name
