"""GET /api/v1/classification and /api/v1/classification/violations on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lineage.context import LineageContext

PRODUCER = "https://github.com/chaintrace/tests"
API = "/api/v1"
NS = "postgres://db:5432"  # a namespace with ':' in it, as nodeIds must handle


def facet(schema: str, **fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER,
            "_schemaURL": f"https://openlineage.io/spec/facets/1-0-0/{schema}.json#/$defs/{schema}", **fields}


Lineage = dict[str, list[tuple[str, str, bool]]]  # output column -> [(input dataset, column, masking)]


def dataset(name: str, levels: dict[str, str], lineage: Lineage) -> dict[str, Any]:
    facets: dict[str, Any] = {
        "schema": facet("SchemaDatasetFacet", fields=[{"name": c, "type": "text"} for c in levels]),
        "tags": facet("TagsDatasetFacet", tags=[
            {"key": "classification", "value": lv, "source": "chaintrace", "field": c}
            for c, lv in levels.items()]),
    }
    if lineage:
        facets["columnLineage"] = facet("ColumnLineageDatasetFacet", fields={
            out: {"inputFields": [{"namespace": NS, "name": src, "field": col, "transformations": [
                {"type": "DIRECT", "subtype": "TRANSFORMATION", "masking": mask}]}
                for src, col, mask in inputs]}
            for out, inputs in lineage.items()})
    return {"namespace": NS, "name": name, "facets": facets}


def event(job: str, minute: int, output: dict[str, Any]) -> dict[str, Any]:
    return {
        "eventType": "COMPLETE", "eventTime": f"2026-03-01T12:{minute:02d}:00.000000Z", "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": str(uuid.uuid4())}, "job": {"namespace": "etl", "name": job},
        "inputs": [], "outputs": [output],
    }


@pytest.fixture
def chain(client: TestClient) -> TestClient:
    """people -> stage (name and dob copied, declared lower: violations; id hashed) -> mart (copies)."""
    response = client.post(f"{API}/lineage/batch", json=[
        event("load", 0, dataset("public.people", {"name": "L4", "id": "L3", "dob": "L4"}, {})),
        event("stage", 1, dataset("public.stage", {"name": "L2", "id_hash": "L1", "dob": "L3"}, {
            "name": [("public.people", "name", False)], "id_hash": [("public.people", "id", True)],
            "dob": [("public.people", "dob", False)]})),
        event("mart", 2, dataset("public.mart", {"who": "L4", "key": "L1"}, {
            "who": [("public.stage", "name", False)], "key": [("public.stage", "id_hash", False)]})),
    ])
    assert response.status_code == 200, response.text
    return client


def get(client: TestClient, node_id: str) -> Any:
    response = client.get(f"{API}/classification", params={"nodeId": node_id})
    assert response.status_code == 200, response.text
    return response.json()


def test_explain_a_column_and_its_path(chain: TestClient) -> None:
    body = get(chain, f"datasetField:{NS}:public.mart:who")
    keys = ("nodeId", "declaredLevel", "propagatedLevel", "effectiveLevel", "violation")
    assert {k: body[k] for k in keys} == {
        "nodeId": f"datasetField:{NS}:public.mart:who", "declaredLevel": "L4", "propagatedLevel": "L4",
        "effectiveLevel": "L4", "violation": False}
    assert body["path"][0]["declaredHere"] is True and len(body["path"]) == 1
    stage = get(chain, f"datasetField:{NS}:public.stage:name")
    assert (stage["declaredLevel"], stage["effectiveLevel"], stage["violation"]) == ("L2", "L4", True)
    assert [s.get("nodeId", s.get("origin")) for s in stage["path"]] == [
        f"datasetField:{NS}:public.stage:name", f"datasetField:{NS}:public.people:name",
        f"datasetField:{NS}:public.people:name"]
    edge = stage["path"][1]
    assert edge["step"] == "edge" and edge["lowers"] is False
    assert edge["transformations"][0] == {"type": "DIRECT", "subtype": "TRANSFORMATION", "masking": False,
                                          "description": None}
    hashed = get(chain, f"datasetField:{NS}:public.stage:id_hash")
    assert hashed["effectiveLevel"] == "L1" and hashed["inputs"][0]["lowers"] is True


def test_explain_a_dataset(chain: TestClient) -> None:
    body = get(chain, f"dataset:{NS}:public.stage")
    assert (body["effectiveLevel"], body["violation"]) == ("L4", True)
    assert {f["field"]: (f["declaredLevel"], f["effectiveLevel"]) for f in body["fields"]} == {
        "name": ("L2", "L4"), "id_hash": ("L1", "L1"), "dob": ("L3", "L4")}


def test_bad_and_unknown_node_ids(chain: TestClient) -> None:
    for bad in ("public.stage", "job:etl:stage", "datasetField:x", "dataset:nocolon"):
        response = chain.get(f"{API}/classification", params={"nodeId": bad})
        assert response.status_code == 400, bad
        assert "malformed" in response.json()["message"]
    for unknown in (f"dataset:{NS}:public.nope", f"datasetField:{NS}:public.stage:nope"):
        response = chain.get(f"{API}/classification", params={"nodeId": unknown})
        assert response.status_code == 404, unknown
        assert response.json() == {"code": 404, "message": f"node {unknown!r} not found"}
    assert chain.get(f"{API}/classification").status_code == 400  # nodeId is required


def test_violations_list_and_paging(chain: TestClient) -> None:
    body = chain.get(f"{API}/classification/violations").json()
    assert body["totalCount"] == 2
    found = [(v["dataset"], v["field"], v["declaredLevel"], v["propagatedLevel"]) for v in body["violations"]]
    assert found == [("public.stage", "dob", "L3", "L4"), ("public.stage", "name", "L2", "L4")]
    assert all(v["reason"].startswith("policy violation") for v in body["violations"])
    page = chain.get(f"{API}/classification/violations", params={"limit": 1, "offset": 1}).json()
    assert page["totalCount"] == 2 and [v["field"] for v in page["violations"]] == ["name"]
    assert chain.get(f"{API}/classification/violations", params={"limit": -1}).status_code == 400


@pytest.mark.parametrize("clearance", ["L1", "L2", "L3", "L4"])
def test_readers_of_every_clearance_may_ask(chain: TestClient, context: LineageContext,
                                            make_auth_headers: Any, clearance: str) -> None:
    user = TestClient(chain.app, headers=make_auth_headers(context, role="reader", clearance=clearance))
    response = user.get(f"{API}/classification", params={"nodeId": f"datasetField:{NS}:public.stage:id_hash"})
    assert response.status_code == 200
    body = response.json()
    assert body["effectiveLevel"] == "L1"
    hidden = clearance in ("L1", "L2", "L3")  # people (L4) is an input of id_hash
    assert ("public.people" in response.text) is not hidden
    assert ("withheld" in body) is hidden
    for role in ("producer", "consumer"):
        other = TestClient(chain.app, headers=make_auth_headers(context, role=role, clearance="L4"))
        assert other.get(f"{API}/classification/violations").status_code == 403


def test_openapi_documents_both_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for route in ("/api/v1/classification", "/api/v1/classification/violations"):
        operation = paths[route]["get"]
        assert operation["summary"] and len(operation["description"]) > 80
        assert "200" in operation["responses"]
    explain = paths["/api/v1/classification"]["get"]
    assert {"400", "404"} <= set(explain["responses"])
    assert [p["name"] for p in explain["parameters"]] == ["nodeId"]
