"""Every read route redacts by the caller's clearance: nothing withheld appears anywhere in the body.

The store holds a three-stage chain: a restricted source (L4: a person's name), a processed table (L2:
the name is hashed by a masking edge) and a k-safe served product (L1). A reader cleared for L2 must not
see the source; one cleared for L1 must see neither the source nor the processed table. For each route
family the test reads as the admin and as the reader, checks that no withheld name or column occurs in
the reader's body, that the answer says what it withheld, and (graphs) that the shape is kept.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from fastapi.testclient import TestClient

from lineage.context import LineageContext

PRODUCER = "https://github.com/chaintrace/tests"
API = "/api/v1"
NS = "file"
SRC, CLEAN, SERVE = "/data/raw/zz_secret_source", "/data/processed/zz_clean_internal", "/data/service/product"
SRC_FIELDS, CLEAN_FIELDS = ("zz_secret_name", "zz_town"), ("zz_name_hash", "zz_region")
#: What each clearance must never see: withheld dataset names and their column names.
SECRETS = {"L2": (SRC, *SRC_FIELDS), "L1": (SRC, *SRC_FIELDS, CLEAN, *CLEAN_FIELDS)}
WITHHELD = {"L2": (SRC,), "L1": (SRC, CLEAN)}
CLEARANCES = ("L1", "L2")


def facet(schema: str, **fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER,
            "_schemaURL": f"https://openlineage.io/spec/facets/1-0-0/{schema}.json#/$defs/{schema}", **fields}


def custom(name: str, **fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER,
            "_schemaURL": f"https://chaintrace.dev/spec/facets/1-0-0/{name}.json#/$defs/{name}", **fields}


def dataset(name: str, levels: dict[str, str], lineage: dict[str, list[tuple[str, str, bool]]] | None = None,
            **extra: dict[str, Any]) -> dict[str, Any]:
    facets: dict[str, Any] = {
        "schema": facet("SchemaDatasetFacet", fields=[{"name": c, "type": "string"} for c in levels]),
        "tags": facet("TagsDatasetFacet", tags=[
            {"key": "classification", "value": lv, "source": "chaintrace", "field": c}
            for c, lv in levels.items()]),
        "documentation": facet("DocumentationDatasetFacet", description=f"all about {name}"),
        **extra,
    }
    if lineage:
        facets["columnLineage"] = facet("ColumnLineageDatasetFacet", fields={
            out: {"inputFields": [{"namespace": NS, "name": src, "field": col, "transformations": [
                {"type": "DIRECT", "subtype": "TRANSFORMATION", "description": f"f({col})", "masking": mask}]}
                for src, col, mask in inputs]}
            for out, inputs in lineage.items()})
    return {"namespace": NS, "name": name, "facets": facets}


def event(job: str, minute: int, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]],
          run_facets: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "eventType": "COMPLETE", "eventTime": f"2026-03-01T12:{minute:02d}:00.000000Z", "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": str(uuid.uuid4()), "facets": run_facets or {}},
        "job": {"namespace": "etl", "name": job}, "inputs": inputs, "outputs": outputs,
    }


def chain_events() -> list[dict[str, Any]]:
    gate_input = {
        "namespace": NS, "name": SRC, "inputFacets": {
            "dataQualityAssertions": facet("DataQualityAssertionsDatasetFacet", assertions=[
                {"assertion": "not_null", "success": True, "column": "zz_secret_name"}]),
            "dataQualityMetrics": facet("DataQualityMetricsInputDatasetFacet", rowCount=3, columnMetrics={
                "zz_secret_name": {"nullCount": 0, "distinctCount": 3}})}}
    governance = custom("GovernanceRunFacet", policyVersion=1, k=10, decisions=[
        {"kind": "level_assigned", "dataset": {"namespace": NS, "name": SRC}, "field": "zz_secret_name",
         "level": "L4", "reason": "policy rule 'names of people'"},
        {"kind": "level_assigned", "dataset": {"namespace": NS, "name": CLEAN}, "field": "zz_name_hash",
         "level": "L2", "reason": "hashed"}])
    return [
        event("collect", 0, [], [dataset(SRC, {"zz_secret_name": "L4", "zz_town": "L2"})]),
        event("process", 1, [gate_input], [dataset(CLEAN, {"zz_name_hash": "L2", "zz_region": "L2"}, {
            "zz_name_hash": [(SRC, "zz_secret_name", True)], "zz_region": [(SRC, "zz_town", False)]})],
            run_facets={"governance": governance}),
        event("serve", 2, [{"namespace": NS, "name": CLEAN}], [dataset(SERVE, {"region": "L1", "n": "L1"}, {
            "region": [(CLEAN, "zz_region", False)], "n": [(CLEAN, "zz_name_hash", False)]},
            disclosureControl=custom("DisclosureControlDatasetFacet", k=10, countColumn="n", rows=4,
                                     minRowsPerCell=12, suppressedCells=1))]),
    ]


@pytest.fixture
def chain(client: TestClient) -> TestClient:
    response = client.post(f"{API}/lineage/batch", json=chain_events())
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 3
    return client


def reader(client: TestClient, context: LineageContext, make_auth_headers: Any, clearance: str) -> TestClient:
    headers = make_auth_headers(context, role="reader", clearance=clearance)
    return TestClient(client.app, headers=headers)


def placeholder(name: str) -> str:
    return "withheld:" + hashlib.sha256(f"{NS}:{name}".encode()).hexdigest()[:16]


def path(*parts: str) -> str:
    return API + "".join("/" + quote(p, safe="") for p in parts)


def redacted(response: Any, clearance: str, *, datasets: int | None = None) -> Any:
    """The body of a redacted answer, after checking it leaks nothing and says what it withheld."""
    assert response.status_code == 200, response.text
    for secret in SECRETS[clearance]:
        assert secret not in response.text, secret
    body = orjson.loads(response.content)
    withheld = body["withheld"]
    assert withheld["clearance"] == clearance and withheld["message"]
    assert response.headers["X-Chaintrace-Withheld"] == f"{withheld['datasets']},{withheld['fields']}"
    if datasets is not None:
        assert withheld["datasets"] == datasets
    return body


def both(admin: TestClient, user: TestClient, url: str, clearance: str, **params: Any) -> tuple[Any, Any]:
    full = admin.get(url, params=params)
    assert full.status_code == 200, full.text
    assert any(secret in full.text for secret in WITHHELD[clearance])  # the admin sees it: a real test
    assert "withheld" not in full.json() and "X-Chaintrace-Withheld" not in full.headers
    return full.json(), redacted(user.get(url, params=params), clearance)


@pytest.fixture(params=CLEARANCES)
def clearance(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def user(chain: TestClient, context: LineageContext, make_auth_headers: Any, clearance: str) -> TestClient:
    return reader(chain, context, make_auth_headers, clearance)


def test_datasets_become_placeholders(chain: TestClient, user: TestClient, clearance: str) -> None:
    full, body = both(chain, user, path("namespaces", NS, "datasets"), clearance)
    assert body["totalCount"] == full["totalCount"] == 3
    shown = {d["name"]: d for d in body["datasets"]}
    for name in WITHHELD[clearance]:
        ph = shown[placeholder(name)]
        assert ph["withheld"] is True and ph["id"] == {"namespace": NS, "name": placeholder(name)}
        assert (ph["fields"], ph["facets"], ph["tags"], ph["description"]) == ([], {}, [], None)
    assert shown[SERVE]["fields"] and "withheld" not in shown[SERVE]
    # By its real name and by its placeholder: the placeholder, 200, saying so.
    for name in (SRC, placeholder(SRC)):
        one = redacted(user.get(path("namespaces", NS, "datasets", name)), clearance, datasets=1)
        assert one["name"] == placeholder(SRC) and one["fields"] == []
    visible = user.get(path("namespaces", NS, "datasets", SERVE))
    assert visible.status_code == 200 and visible.json()["fields"]


def test_dataset_versions(chain: TestClient, user: TestClient, clearance: str) -> None:
    full, body = both(chain, user, path("namespaces", NS, "datasets", SRC, "versions"), clearance)
    assert len(body["versions"]) == len(full["versions"]) == 1
    version = body["versions"][0]
    assert version["name"] == placeholder(SRC) and version["facets"] == {} and version["fields"] == []
    one = redacted(user.get(path("namespaces", NS, "datasets", SRC, "versions", version["version"])),
                   clearance)
    assert one["id"]["name"] == placeholder(SRC)


def test_jobs(chain: TestClient, user: TestClient, clearance: str) -> None:
    full, body = both(chain, user, path("namespaces", "etl", "jobs"), clearance)
    assert [j["name"] for j in body["jobs"]] == [j["name"] for j in full["jobs"]]
    _, process = both(chain, user, path("namespaces", "etl", "jobs", "process"), clearance)
    assert process["inputs"] == [{"namespace": NS, "name": placeholder(SRC)}]
    both(chain, user, path("namespaces", "etl", "jobs", "process", "versions"), clearance)


def test_runs_and_run_facets(chain: TestClient, user: TestClient, clearance: str) -> None:
    _, runs = both(chain, user, path("namespaces", "etl", "jobs", "process", "runs"), clearance)
    run = runs["runs"][0]
    [read] = run["inputDatasetVersions"]
    assert read["datasetVersionId"]["name"] == placeholder(SRC) and read["facets"] == {}
    _, one = both(chain, user, f"{API}/jobs/runs/{run['id']}", clearance)
    assert one["inputVersions"][0]["name"] == placeholder(SRC)
    _, facets = both(chain, user, f"{API}/jobs/runs/{run['id']}/facets", clearance)
    decisions = facets["facets"]["governance"]["decisions"]
    assert len(decisions) == 2 and decisions[0]["dataset"]["name"] == placeholder(SRC)
    assert decisions[0]["field"].startswith("withheld:")


def test_raw_events(chain: TestClient, user: TestClient, clearance: str) -> None:
    full, body = both(chain, user, f"{API}/events/lineage", clearance, sortDirection="asc")
    assert len(body["events"]) == len(full["events"]) == 3
    source = body["events"][0]["outputs"][0]
    assert source == {"namespace": NS, "name": placeholder(SRC), "facets": {}}
    gate = body["events"][1]["inputs"][0]
    assert gate["inputFacets"] == {}


def test_search_drops_withheld_results(chain: TestClient, user: TestClient, clearance: str) -> None:
    full, body = both(chain, user, f"{API}/search", clearance, q="zz")
    assert full["totalCount"] == 2
    assert body["totalCount"] == 2 - len(WITHHELD[clearance]) == len(body["results"])
    assert body["withheld"]["datasets"] == len(WITHHELD[clearance])


def edge_set(body: Any) -> set[tuple[str, str]]:
    return {(e["origin"], e["destination"]) for n in body["graph"] for e in n["inEdges"] + n["outEdges"]}


def test_lineage_graph_keeps_its_shape(chain: TestClient, user: TestClient, clearance: str) -> None:
    full, body = both(chain, user, f"{API}/lineage", clearance, nodeId=f"dataset:{NS}:{SERVE}", depth=5)
    assert len(body["graph"]) == len(full["graph"]) == 6
    assert len(edge_set(body)) == len(edge_set(full)) == 5
    ids = {n["id"] for n in body["graph"]}
    assert {f"dataset:{NS}:{placeholder(n)}" for n in WITHHELD[clearance]} <= ids
    assert all(o in ids and d in ids for o, d in edge_set(body))
    # A placeholder node id is a valid start.
    again = user.get(f"{API}/lineage", params={"nodeId": f"dataset:{NS}:{placeholder(SRC)}", "depth": 5})
    assert {n["id"] for n in redacted(again, clearance)["graph"]} == ids


def test_column_lineage_keeps_its_shape(chain: TestClient, user: TestClient, clearance: str) -> None:
    full, body = both(chain, user, f"{API}/column-lineage", clearance,
                      nodeId=f"dataset:{NS}:{SERVE}", depth=5)
    assert len(body["graph"]) == len(full["graph"]) == 6
    assert len(edge_set(body)) == len(edge_set(full)) == 4
    ids = {n["id"] for n in body["graph"]}
    assert all(o in ids and d in ids for o, d in edge_set(body))
    hidden = [n for n in body["graph"] if n["data"].get("withheld")]
    assert len(hidden) == 2 * len(WITHHELD[clearance])
    assert body["withheld"]["fields"] == len(hidden)


def test_classification(chain: TestClient, user: TestClient, clearance: str) -> None:
    served = user.get(f"{API}/classification", params={"nodeId": f"datasetField:{NS}:{SERVE}:n"})
    assert served.status_code == 200 and served.json()["effectiveLevel"] == "L1"
    for secret in SECRETS[clearance]:
        assert secret not in served.text
    _, explained = both(chain, user, f"{API}/classification", clearance,
                        nodeId=f"datasetField:{NS}:{CLEAN}:zz_name_hash")
    assert explained["effectiveLevel"] == "L2" and explained["inputs"][0]["lowers"] is True
    _, whole = both(chain, user, f"{API}/classification", clearance, nodeId=f"dataset:{NS}:{SRC}")
    assert whole["name"] == placeholder(SRC) and whole["fields"] == [] and whole["effectiveLevel"] == "L4"


def test_clearance_l4_answers_are_byte_identical(chain: TestClient, context: LineageContext,
                                                  make_auth_headers: Any) -> None:
    top = reader(chain, context, make_auth_headers, "L4")
    for url, params in ((f"{API}/lineage", {"nodeId": f"dataset:{NS}:{SERVE}"}),
                        (f"{API}/column-lineage", {"nodeId": f"dataset:{NS}:{SERVE}"}),
                        (f"{API}/events/lineage", {}), (path("namespaces", NS, "datasets"), {})):
        mine, admin = top.get(url, params=params), chain.get(url, params=params)
        assert mine.status_code == 200 and mine.content == admin.content
        assert "X-Chaintrace-Withheld" not in mine.headers


def test_l3_reader_sees_the_processed_table_but_not_the_source(
        chain: TestClient, context: LineageContext, make_auth_headers: Any) -> None:
    l3 = reader(chain, context, make_auth_headers, "L3")
    response = l3.get(path("namespaces", NS, "datasets"))
    names = {d["name"] for d in response.json()["datasets"]}
    assert names == {placeholder(SRC), CLEAN, SERVE}
    assert response.headers["X-Chaintrace-Withheld"].startswith("1,")
