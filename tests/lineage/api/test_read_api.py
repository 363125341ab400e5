"""Marquez read API: namespaces, datasets, versions, jobs, runs, 404s and paging, on SQLite and PostgreSQL.

Events are posted through the ingest API and read back through the read API, so each test checks the
whole path: ingest -> projection -> read -> Marquez JSON.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from lineage.store.nodes import job_version_id
from lineage.store.projector import dataset_version_id

PRODUCER = "https://github.com/chaintrace/tests"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
API = "/api/v1"




def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def facet(schema: str, **fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER,
            "_schemaURL": f"https://openlineage.io/spec/facets/1-0-0/{schema}.json#/$defs/{schema}", **fields}


def ds(namespace: str, name: str, **facets: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"namespace": namespace, "name": name}
    if facets:
        body["facets"] = facets
    return body


def run_event(
    event_type: str, run_id: str, job: str, minutes: float, *, namespace: str = "etl",
    inputs: list[dict[str, Any]] | None = None, outputs: list[dict[str, Any]] | None = None,
    run_facets: dict[str, Any] | None = None, job_facets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "eventType": event_type, "eventTime": at(minutes), "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run_id, "facets": run_facets or {}},
        "job": {"namespace": namespace, "name": job, "facets": job_facets or {}},
        "inputs": inputs or [], "outputs": outputs or [],
    }


def post(client: TestClient, *events: dict[str, Any]) -> None:
    response = client.post(f"{API}/lineage/batch", json=list(events))
    assert response.status_code == 200, response.text
    assert all("facetWarnings" not in r for r in response.json()["results"]), response.text


def path(*parts: str) -> str:
    """An API path with every name percent-encoded into one segment, as Marquez clients send it."""
    return API + "".join("/" + quote(p, safe="") for p in parts)


def new_id() -> str:
    return str(uuid.uuid4())


def test_namespaces_list_get_and_404(client: TestClient) -> None:
    post(client, run_event("COMPLETE", new_id(), "j", 1, namespace="beta", outputs=[ds("alpha", "t")]))
    body = client.get(f"{API}/namespaces").json()
    assert body["totalCount"] == 2
    assert [n["name"] for n in body["namespaces"]] == ["alpha", "beta"]
    alpha = client.get(f"{API}/namespaces/alpha").json()
    assert alpha == {"name": "alpha", "createdAt": at(1), "updatedAt": at(1), "ownerName": "anonymous",
                     "description": None, "isHidden": False}
    missing = client.get(f"{API}/namespaces/nope")
    assert missing.status_code == 404
    assert missing.json() == {"code": 404, "message": "Namespace 'nope' not found."}


def test_dataset_has_fields_tags_facets_source_and_current_version(client: TestClient) -> None:
    run = new_id()
    table = ds(
        "warehouse", "public.flights",
        schema=facet("SchemaDatasetFacet", fields=[
            {"name": "id", "type": "INTEGER", "description": "row id"}, {"name": "email", "type": "VARCHAR"},
        ]),
        dataSource=facet("DatasourceDatasetFacet", name="pg-main", uri="postgres://db:5432/main"),
        documentation=facet("DocumentationDatasetFacet", description="All flights"),
        lifecycleStateChange=facet("LifecycleStateChangeDatasetFacet", lifecycleStateChange="CREATE"),
        tags=facet("TagsDatasetFacet", tags=[
            {"key": "pii", "value": "true", "field": "email"}, {"key": "tier", "value": "gold"},
        ]),
    )
    post(client, run_event("START", run, "load", 0, outputs=[table]), run_event("COMPLETE", run, "load", 5))
    body = client.get(path("namespaces", "warehouse", "datasets", "public.flights")).json()
    version = dataset_version_id("warehouse", "public.flights", run)
    assert body["id"] == {"namespace": "warehouse", "name": "public.flights"}
    assert (body["type"], body["name"], body["physicalName"], body["namespace"]) == (
        "DB_TABLE", "public.flights", "public.flights", "warehouse")
    assert (body["createdAt"], body["updatedAt"]) == (at(0), at(0))
    assert body["sourceName"] == "pg-main"
    assert body["fields"] == [
        {"name": "id", "type": "INTEGER", "tags": [], "description": "row id"},
        {"name": "email", "type": "VARCHAR", "tags": ["pii"], "description": None},
    ]
    assert body["tags"] == ["tier:gold"]
    assert body["lastModifiedAt"] == at(0)
    assert body["lastLifecycleState"] == "CREATE"
    assert body["description"] == "All flights"
    assert body["currentVersion"] == version
    assert body["columnLineage"] is None and body["deleted"] is False
    assert sorted(body["facets"]) == ["dataSource", "documentation", "lifecycleStateChange", "schema", "tags"]
    assert body["facets"]["schema"]["fields"][1] == {"name": "email", "type": "VARCHAR"}
    listing = client.get(f"{API}/namespaces/warehouse/datasets").json()
    assert listing["totalCount"] == 1 and listing["datasets"] == [body]


def test_dataset_versions_one_per_output_write(client: TestClient) -> None:
    first, second = new_id(), new_id()
    v1 = ds("wh", "orders", schema=facet("SchemaDatasetFacet", fields=[{"name": "a", "type": "INT"}]))
    v2 = ds("wh", "orders", schema=facet("SchemaDatasetFacet", fields=[
        {"name": "a", "type": "INT"}, {"name": "b", "type": "TEXT"}]))
    post(client,
         run_event("COMPLETE", first, "build", 1, outputs=[v1]),
         run_event("FAIL", second, "build", 9, outputs=[v2]))
    dataset = client.get(path("namespaces", "wh", "datasets", "orders")).json()
    # The failed write is the newest version, but only a completed run modifies the dataset.
    assert dataset["currentVersion"] == dataset_version_id("wh", "orders", second)
    assert dataset["lastModifiedAt"] == at(1)
    body = client.get(path("namespaces", "wh", "datasets", "orders", "versions")).json()
    assert body["totalCount"] == 2
    newest, oldest = body["versions"]
    assert newest["version"] == dataset_version_id("wh", "orders", second)
    assert newest["id"] == {"namespace": "wh", "name": "orders", "version": newest["version"]}
    assert [f["name"] for f in newest["fields"]] == ["a", "b"]
    assert [f["name"] for f in oldest["fields"]] == ["a"]
    assert newest["createdByRun"]["id"] == second and newest["createdByRun"]["state"] == "FAILED"
    assert (oldest["createdAt"], oldest["createdByRun"]["state"]) == (at(1), "COMPLETED")
    assert oldest["facets"]["schema"]["fields"] == [{"name": "a", "type": "INT"}]
    one = client.get(path("namespaces", "wh", "datasets", "orders", "versions", oldest["version"]))
    assert one.json() == oldest
    paged = client.get(path("namespaces", "wh", "datasets", "orders", "versions"), params={"offset": 1})
    assert paged.json() == {"versions": [oldest], "totalCount": 2}
    assert client.get(path("namespaces", "wh", "datasets", "orders", "versions", new_id())).status_code == 404


def test_job_has_io_type_location_tags_and_latest_runs(client: TestClient) -> None:
    runs = [new_id() for _ in range(12)]
    job_facets = {
        "jobType": facet("JobTypeJobFacet", processingType="STREAMING", integration="FLINK", jobType="JOB"),
        "sourceCodeLocation": facet("SourceCodeLocationJobFacet", type="git", url="https://git/x.py"),
        "documentation": facet("DocumentationJobFacet", description="Loads flights"),
        "tags": facet("TagsJobFacet", tags=[{"key": "team", "value": "data"}]),
    }
    events = [
        run_event("COMPLETE", run, "stream", i, inputs=[ds("src", "b"), ds("src", "a")],
                  outputs=[ds("wh", "out")], job_facets=job_facets)
        for i, run in enumerate(runs)
    ]
    post(client, *events)
    body = client.get(path("namespaces", "etl", "jobs", "stream")).json()
    assert body["id"] == {"namespace": "etl", "name": "stream"}
    assert (body["type"], body["name"], body["simpleName"], body["parentJobName"]) == (
        "STREAM", "stream", "stream", None)
    assert body["inputs"] == [{"namespace": "src", "name": "a"}, {"namespace": "src", "name": "b"}]
    assert body["outputs"] == [{"namespace": "wh", "name": "out"}]
    assert body["location"] == "https://git/x.py"
    assert body["description"] == "Loads flights"
    assert body["tags"] == ["team:data"]
    assert sorted(body["facets"]) == sorted(job_facets)
    assert body["latestRun"]["id"] == runs[-1]
    assert [r["id"] for r in body["latestRuns"]] == runs[::-1][:10]
    version = job_version_id("etl", "stream", [("src", "a"), ("src", "b")], [("wh", "out")])
    assert body["currentVersion"] == version == body["latestRun"]["jobVersion"]["version"]
    assert (body["createdAt"], body["updatedAt"]) == (at(0), at(11))
    listing = client.get(f"{API}/namespaces/etl/jobs").json()
    assert listing == {"jobs": [body], "totalCount": 1}


def test_run_complete_before_start_is_completed_with_start_time(client: TestClient) -> None:
    run = new_id()
    nominal = facet("NominalTimeRunFacet", nominalStartTime="2026-03-01T14:00:00+02:00",
                    nominalEndTime="2026-03-01T13:00:00Z")
    post(client, run_event("COMPLETE", run, "late", 10, outputs=[ds("wh", "t")]))
    post(client, run_event("START", run, "late", 0, run_facets={"nominalTime": nominal},
                           job_facets={"sql": facet("SQLJobFacet", query="select 1")}))
    body = client.get(f"{API}/jobs/runs/{run}").json()
    assert body["state"] == "COMPLETED"
    assert (body["createdAt"], body["startedAt"], body["endedAt"]) == (at(0), at(0), at(10))
    assert body["updatedAt"] == at(10)
    assert body["durationMs"] == 600_000
    assert (body["nominalStartTime"], body["nominalEndTime"]) == (
        "2026-03-01T12:00:00.000000Z", "2026-03-01T13:00:00.000000Z")
    assert body["args"] == {} and body["context"] == {}
    assert body["facets"] == {"nominalTime": nominal}
    out = {"namespace": "wh", "name": "t", "version": dataset_version_id("wh", "t", run)}
    assert body["outputDatasetVersions"] == [{"datasetVersionId": out, "facets": {}}]
    assert body["outputVersions"] == [out] and body["inputVersions"] == []
    assert body["jobVersion"] == {"namespace": "etl", "name": "late",
                                  "version": job_version_id("etl", "late", [], [("wh", "t")])}
    assert client.get(f"{API}/jobs/runs/{run.upper()}").json() == body
    run_facets = client.get(f"{API}/jobs/runs/{run}/facets", params={"type": "run"}).json()
    assert run_facets == {"runId": run, "facets": {"nominalTime": nominal}}
    job_facets = client.get(f"{API}/jobs/runs/{run}/facets", params={"type": "JOB"}).json()
    assert job_facets["facets"]["sql"]["query"] == "select 1"
    assert client.get(f"{API}/jobs/runs/{run}/facets", params={"type": "dataset"}).status_code == 400


def test_input_version_is_resolved_at_read_time_whatever_the_arrival_order(client: TestClient) -> None:
    early, producer, consumer, later = new_id(), new_id(), new_id(), new_id()
    io_facets = {"dataQualityMetrics": facet("DataQualityMetricsInputDatasetFacet", rowCount=7,
                                             columnMetrics={})}
    reader = ds("wh", "t") | {"inputFacets": io_facets}
    # The consumer's events arrive before the producer's, and a later write must not change them.
    post(client, run_event("START", early, "read", 0, inputs=[ds("wh", "t")]))
    post(client, run_event("START", consumer, "read", 10, inputs=[reader]))
    post(client, run_event("COMPLETE", producer, "write", 5, outputs=[ds("wh", "t")]))
    post(client, run_event("COMPLETE", later, "write", 20, outputs=[ds("wh", "t")]))
    body = client.get(f"{API}/jobs/runs/{consumer}").json()
    expected = {"namespace": "wh", "name": "t", "version": dataset_version_id("wh", "t", producer)}
    assert body["inputVersions"] == [expected]
    assert body["inputDatasetVersions"] == [{"datasetVersionId": expected, "facets": io_facets}]
    before_any = client.get(f"{API}/jobs/runs/{early}").json()
    assert before_any["inputVersions"] == [{"namespace": "wh", "name": "t", "version": None}]


def test_job_versions_group_runs_by_inputs_and_outputs(client: TestClient) -> None:
    a, b, c = new_id(), new_id(), new_id()
    post(client,
         run_event("COMPLETE", a, "j", 1, outputs=[ds("wh", "x")]),
         run_event("COMPLETE", b, "j", 2, outputs=[ds("wh", "x")]),
         run_event("COMPLETE", c, "j", 3, inputs=[ds("wh", "x")], outputs=[ds("wh", "y")]))
    body = client.get(path("namespaces", "etl", "jobs", "j", "versions")).json()
    assert body["totalCount"] == 2
    newest, oldest = body["versions"]
    assert newest["version"] == job_version_id("etl", "j", [("wh", "x")], [("wh", "y")])
    assert oldest["version"] == job_version_id("etl", "j", [], [("wh", "x")])
    assert oldest["id"] == {"namespace": "etl", "name": "j", "version": oldest["version"]}
    assert (oldest["createdAt"], oldest["latestRun"]["id"]) == (at(1), b)
    assert newest["inputs"] == [{"namespace": "wh", "name": "x"}]
    assert newest["outputs"] == [{"namespace": "wh", "name": "y"}]
    one = client.get(path("namespaces", "etl", "jobs", "j", "versions", oldest["version"]))
    assert one.json() == oldest
    assert client.get(path("namespaces", "etl", "jobs", "j", "versions", new_id())).status_code == 404


def test_runs_of_a_job_are_paged_newest_first(client: TestClient) -> None:
    runs = [new_id() for _ in range(5)]
    post(client, *(run_event("COMPLETE", r, "paged", i) for i, r in enumerate(runs)))
    body = client.get(path("namespaces", "etl", "jobs", "paged", "runs"), params={"limit": 2, "offset": 1})
    assert body.status_code == 200
    assert body.json()["totalCount"] == 5
    assert [r["id"] for r in body.json()["runs"]] == [runs[3], runs[2]]
    empty = client.get(path("namespaces", "etl", "jobs", "paged", "runs"), params={"limit": 0}).json()
    assert empty == {"runs": [], "totalCount": 5}


def test_lists_are_paged_with_total_count(client: TestClient) -> None:
    post(client, run_event("COMPLETE", new_id(), "j", 1, outputs=[ds("wh", f"t{i}") for i in range(5)]))
    body = client.get(f"{API}/namespaces/wh/datasets", params={"limit": 2, "offset": 2}).json()
    assert body["totalCount"] == 5
    assert [d["name"] for d in body["datasets"]] == ["t2", "t3"]
    past_the_end = client.get(f"{API}/namespaces/wh/datasets", params={"offset": 50}).json()
    assert past_the_end == {"datasets": [], "totalCount": 5}


@pytest.mark.parametrize(
    "params", [{"limit": -1}, {"limit": 10_001}, {"offset": -1}, {"limit": "ten"}],
)
def test_bad_paging_parameters_are_400(client: TestClient, params: dict[str, Any]) -> None:
    for url in (f"{API}/namespaces", f"{API}/tags", f"{API}/sources", f"{API}/events/lineage"):
        response = client.get(url, params=params)
        assert response.status_code == 400, (url, response.text)
        assert response.json()["code"] == 400


def test_unknown_objects_are_404_with_marquez_body(client: TestClient) -> None:
    post(client, run_event("COMPLETE", new_id(), "j", 1, outputs=[ds("wh", "t")]))
    cases = {
        path("namespaces", "nope", "datasets"): "Namespace 'nope' not found.",
        path("namespaces", "nope", "jobs"): "Namespace 'nope' not found.",
        path("namespaces", "wh", "datasets", "missing"): "Dataset 'missing' not found.",
        path("namespaces", "wh", "datasets", "missing", "versions"): "Dataset 'missing' not found.",
        path("namespaces", "etl", "jobs", "missing"): "Job 'missing' not found.",
        path("namespaces", "etl", "jobs", "missing", "runs"): "Job 'missing' not found.",
        path("namespaces", "etl", "jobs", "missing", "versions"): "Job 'missing' not found.",
        path("jobs", "runs", "3f1c0a52-0000-4000-8000-000000000000"):
            "Run '3f1c0a52-0000-4000-8000-000000000000' not found.",
        path("jobs", "runs", "3f1c0a52-0000-4000-8000-000000000000", "facets"):
            "Run '3f1c0a52-0000-4000-8000-000000000000' not found.",
        path("sources", "nope"): "Source 'nope' not found.",
    }
    for url, message in cases.items():
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.json() == {"code": 404, "message": message}
