"""Data products over HTTP: the catalogue, downloads for a declared purpose, refusals, usage, lineage.

Each test writes a real Parquet product under the service's data root (the test's tmp_path), posts the
serve event that registers it (``tags`` levels and a ``purpose`` facet), then downloads it with consumer
keys, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from lineage.context import LineageContext
from lineage.store.keys import create_key

API = "/api/v1"
PRODUCER = "https://github.com/chaintrace/chaintrace/tests/products"
TAGS_URL = "https://openlineage.io/spec/facets/1-0-0/TagsDatasetFacet.json#/$defs/TagsDatasetFacet"
PURPOSE_URL = "https://chaintrace.dev/spec/facets/1-0-0/PurposeDatasetFacet.json#/$defs/PurposeDatasetFacet"


def write_product(tmp_path: Path, product: str, rows: int = 5) -> Path:
    path = tmp_path / "service" / "demo" / f"{product}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({
        "borough": [f"B{i % 3}" for i in range(rows)],
        "month": [f"2026-{(i % 12) + 1:02d}" for i in range(rows)],
        "trips": list(range(100, 100 + rows)),
        "mean_fare": [10.5 + i for i in range(rows)],
    })
    pq.write_table(table, path)
    return path


def publish(client: TestClient, path: Path, *, level: str = "L1", product: str | None = None,
            purposes: tuple[str, ...] = ("research", "statistics"), minute: int = 0,
            job: str = "demo.serve") -> None:
    """Post the serve run that writes ``path`` with its classification tags and purpose facet."""
    purpose: dict[str, Any] = {
        "_producer": PRODUCER, "_schemaURL": PURPOSE_URL, "audience": "public",
        "allowedPurposes": list(purposes), "allowedLevel": level, "jurisdictions": ["US"], "minCellRows": 10,
    }
    if product is not None:
        purpose["product"] = product
    tags = [{"key": "classification", "value": level, "source": "chaintrace", "field": column}
            for column in ("borough", "month", "trips", "mean_fare")]
    tags.append({"key": "classification", "value": level, "source": "chaintrace"})
    run_id = str(uuid.uuid4())
    events = [
        {
            "eventType": event_type, "eventTime": f"2026-04-01T10:{minute:02d}:{second:02d}Z",
            "producer": PRODUCER,
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
            "run": {"runId": run_id}, "job": {"namespace": "chaintrace", "name": job},
            "inputs": [],
            "outputs": [{"namespace": "file", "name": str(path), "facets": {
                "tags": {"_producer": PRODUCER, "_schemaURL": TAGS_URL, "tags": tags}, "purpose": purpose}}],
        }
        for event_type, second in (("START", 0), ("COMPLETE", 30))
    ]
    response = client.post(f"{API}/lineage/batch", json=events)
    assert response.status_code == 200, response.text
    assert all(r["status"] == "created" for r in response.json()["results"]), response.text


def consumer(context: LineageContext, name: str, clearance: str = "L4",
             jurisdiction: str | None = "US-PA") -> dict[str, str]:
    _key, token = create_key(context.engine, name=name, role="consumer", clearance=clearance,
                             jurisdiction=jurisdiction)
    return {"Authorization": f"Bearer {token}"}


def download(client: TestClient, headers: dict[str, str], product: str, **params: str) -> Any:
    return client.get(f"{API}/products/{product}", params=params, headers=headers)


def audit(client: TestClient, **params: str) -> list[dict[str, Any]]:
    response = client.get(f"{API}/audit", params=params)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


def test_consumer_downloads_csv_and_parquet_for_an_allowed_purpose(
    client: TestClient, context: LineageContext, tmp_path: Path
) -> None:
    path = write_product(tmp_path, "trips_by_borough", rows=7)
    publish(client, path)
    alice = consumer(context, "alice", clearance="L1", jurisdiction="US-PA")

    as_csv = download(client, alice, "trips_by_borough", purpose="research")
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert 'filename="trips_by_borough.csv"' in as_csv.headers["content-disposition"]
    expected = pq.read_table(path)
    got = pacsv.read_csv(io.BytesIO(as_csv.content))
    assert got.column_names == expected.column_names
    assert got.to_pylist() == expected.to_pylist()

    as_parquet = download(client, alice, "trips_by_borough", purpose="statistics", format="parquet")
    assert as_parquet.status_code == 200, as_parquet.text
    assert 'filename="trips_by_borough.parquet"' in as_parquet.headers["content-disposition"]
    assert as_parquet.content == path.read_bytes()

    granted = audit(client, kind="access_granted", subject="alice")
    assert [(e["details"]["purpose"], e["details"]["format"], e["details"]["rows"]) for e in granted] == [
        ("statistics", "parquet", 7), ("research", "csv", 7)]
    assert all(e["dataset"] == {"namespace": "file", "name": str(path)} for e in granted)
    assert all(e["details"]["keyId"] for e in granted)


def test_the_consumer_run_shows_in_the_product_lineage_and_in_usage(
    client: TestClient, context: LineageContext, tmp_path: Path
) -> None:
    path = write_product(tmp_path, "fares")
    publish(client, path)
    bob = consumer(context, "bob", clearance="L1", jurisdiction=None)
    assert download(client, bob, "fares", purpose="research").status_code == 200
    assert download(client, bob, "fares", purpose="statistics", format="parquet").status_code == 200

    graph = client.get(f"{API}/lineage", params={"nodeId": f"dataset:file:{path}"})
    assert graph.status_code == 200, graph.text
    node_ids = {node["id"] for node in graph.json()["graph"]}
    assert "job:chaintrace-consumers:consumer.bob" in node_ids
    assert "job:chaintrace:demo.serve" in node_ids

    runs = client.get(f"{API}/namespaces/chaintrace-consumers/jobs/consumer.bob/runs").json()["runs"]
    assert len(runs) == 2
    facets = [client.get(f"{API}/jobs/runs/{run['id']}/facets", params={"type": "run"}).json()["facets"]
              for run in runs]
    assert sorted((f["purpose"]["purpose"], f["purpose"]["format"]) for f in facets) == [
        ("research", "csv"), ("statistics", "parquet")]
    assert all(f["purpose"]["consumer"] == "bob" and f["purpose"]["rows"] == 5 for f in facets)

    usage = client.get(f"{API}/products/fares/usage")
    assert usage.status_code == 200, usage.text
    body = usage.json()
    assert body["totalCount"] == 2
    assert [(u["consumer"], u["purpose"], u["format"], u["rows"]) for u in body["usage"]] == [
        ("bob", "statistics", "parquet", 5), ("bob", "research", "csv", 5)]
    assert body["usage"][0]["at"] >= body["usage"][1]["at"]
    page = client.get(f"{API}/products/fares/usage", params={"limit": 1, "offset": 1}).json()
    assert [u["purpose"] for u in page["usage"]] == ["research"]
    assert client.get(f"{API}/products/nothing/usage").status_code == 404


def test_a_purpose_not_allowed_is_refused_and_audited(
    client: TestClient, context: LineageContext, tmp_path: Path
) -> None:
    publish(client, write_product(tmp_path, "open_counts"), purposes=("research",))
    carol = consumer(context, "carol", clearance="L4")
    response = download(client, carol, "open_counts", purpose="marketing")
    assert response.status_code == 403
    assert "marketing" in response.json()["message"]
    denied = audit(client, kind="access_denied", subject="carol")
    assert len(denied) == 1
    assert "marketing" in denied[0]["reason"]
    assert denied[0]["details"]["purpose"] == "marketing"
    assert audit(client, kind="access_granted", subject="carol") == []


def test_a_clearance_below_the_product_level_is_refused(
    client: TestClient, context: LineageContext, tmp_path: Path
) -> None:
    publish(client, write_product(tmp_path, "internal_counts"), level="L2")
    dave = consumer(context, "dave", clearance="L1")
    response = download(client, dave, "internal_counts", purpose="research")
    assert response.status_code == 403
    assert "clearance" in response.json()["message"]
    [denied] = audit(client, kind="access_denied", subject="dave")
    assert "clearance L1" in denied["reason"]


def test_sensitive_data_does_not_flow_to_a_jurisdiction_outside_the_policy(
    client: TestClient, context: LineageContext, tmp_path: Path
) -> None:
    publish(client, write_product(tmp_path, "sensitive_counts"), level="L3")
    abroad = consumer(context, "erin", clearance="L4", jurisdiction="FR")
    response = download(client, abroad, "sensitive_counts", purpose="research")
    assert response.status_code == 403
    assert "FR" in response.json()["message"]
    assert len(audit(client, kind="access_denied", subject="erin")) == 1
    [violation] = audit(client, kind="violation", subject="erin")
    assert "FR" in violation["reason"]
    # The policy lets L3 data flow within the US (US-CA matches the entry US).
    home = consumer(context, "frank", clearance="L3", jurisdiction="US-CA")
    assert download(client, home, "sensitive_counts", purpose="research").status_code == 200


def test_bad_requests_and_missing_products(
    client: TestClient, context: LineageContext, tmp_path: Path
) -> None:
    path = write_product(tmp_path, "counts")
    publish(client, path)
    gina = consumer(context, "gina")
    no_purpose = download(client, gina, "counts")
    assert no_purpose.status_code == 400
    assert "purpose" in no_purpose.json()["message"]
    assert download(client, gina, "counts", purpose="x" * 201).status_code == 400
    bad_format = download(client, gina, "counts", purpose="research", format="xlsx")
    assert bad_format.status_code == 400
    assert "format" in bad_format.json()["message"]
    unknown = download(client, gina, "no_such_product", purpose="research")
    assert unknown.status_code == 404
    assert "no_such_product" in unknown.json()["message"]

    path.unlink()
    gone = download(client, gina, "counts", purpose="research")
    assert gone.status_code == 404
    message = gone.json()["message"]
    assert "counts" in message and "gone" in message
    assert "No such file" not in message and "Errno" not in message
    reasons = [e["reason"] for e in audit(client, kind="access_denied", subject="gina")]
    assert len(reasons) == 5
    assert any("gone" in reason for reason in reasons)


def test_only_registered_files_under_the_data_root_are_served(
    client: TestClient, context: LineageContext, tmp_path: Path
) -> None:
    outside = tmp_path.parent / f"elsewhere-{uuid.uuid4().hex}" / "stolen.parquet"
    publish(client, outside)
    response = download(client, consumer(context, "henry"), "stolen", purpose="research")
    assert response.status_code == 404
    assert str(outside.parent) not in response.json()["message"]
    # A name is a product name, never a path.
    traversal = download(client, consumer(context, "ivan"), quote("../../etc/passwd", safe=""),
                         purpose="research")
    assert traversal.status_code == 404


def test_catalogue_lists_products_within_the_callers_clearance(
    client: TestClient, context: LineageContext, tmp_path: Path, make_auth_headers: Any
) -> None:
    public = write_product(tmp_path, "public_counts")
    publish(client, public, level="L1")
    publish(client, write_product(tmp_path, "internal_counts"), level="L2", minute=1)
    listed = client.get(f"{API}/products")
    assert listed.status_code == 200, listed.text
    by_name = {p["name"]: p for p in listed.json()["products"]}
    assert set(by_name) == {"public_counts", "internal_counts"}
    entry = by_name["public_counts"]
    assert entry["dataset"] == {"namespace": "file", "name": str(public)}
    assert entry["audience"] == "public"
    assert entry["allowedPurposes"] == ["research", "statistics"]
    assert entry["allowedLevel"] == "L1" and entry["effectiveLevel"] == "L1"
    assert entry["jurisdictions"] == ["US"]
    assert entry["lastPublishedAt"].startswith("2026-04-01T10:00:30")
    assert by_name["internal_counts"]["effectiveLevel"] == "L2"

    low = client.get(f"{API}/products", headers=make_auth_headers(context, "consumer", "L1")).json()
    assert [p["name"] for p in low["products"]] == ["public_counts"]
    assert low["withheld"] == 1
    reader = client.get(f"{API}/products", headers=make_auth_headers(context, "reader", "L2"))
    assert reader.status_code == 200
    assert {p["name"] for p in reader.json()["products"]} == {"public_counts", "internal_counts"}


def test_permissions_of_the_product_routes(
    client: TestClient, context: LineageContext, tmp_path: Path, make_auth_headers: Any
) -> None:
    publish(client, write_product(tmp_path, "counts"))
    reader = make_auth_headers(context, "reader", "L4")
    producer = make_auth_headers(context, "producer", "L4")
    research = {"purpose": "research"}
    assert client.get(f"{API}/products/counts", params=research, headers=reader).status_code == 403
    assert client.get(f"{API}/products", headers=producer).status_code == 403
    assert client.get(f"{API}/products/counts/usage", headers=producer).status_code == 403
    consumer_key = make_auth_headers(context, "consumer", "L4")
    assert client.get(f"{API}/products/counts/usage", headers=consumer_key).status_code == 403
    assert client.get(f"{API}/products", headers={"Authorization": "Bearer ct_nope_nope"}).status_code == 401
    # An admin may download too.
    assert client.get(f"{API}/products/counts", params=research).status_code == 200


def test_newest_registration_wins_and_the_file_stem_names_a_product(
    client: TestClient, context: LineageContext, tmp_path: Path
) -> None:
    first = write_product(tmp_path, "v1_file")
    second = write_product(tmp_path, "v2_file", rows=3)
    publish(client, second, product="headline", minute=5, job="demo.serve.v2")
    publish(client, first, product="headline", minute=1)
    plain = write_product(tmp_path, "plain_name")
    publish(client, plain, minute=2, job="demo.serve.plain")
    names = {p["name"]: p["dataset"]["name"] for p in client.get(f"{API}/products").json()["products"]}
    assert names == {"headline": str(second), "plain_name": str(plain)}
    response = download(client, consumer(context, "judy"), "headline", purpose="research", format="parquet")
    assert response.status_code == 200
    assert response.content == second.read_bytes()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_an_empty_product_downloads_as_its_header_or_schema(
    client: TestClient, context: LineageContext, tmp_path: Path, fmt: str
) -> None:
    path = write_product(tmp_path, "empty", rows=0)
    publish(client, path)
    response = download(client, consumer(context, f"kim-{fmt}"), "empty", purpose="research", format=fmt)
    assert response.status_code == 200, response.text
    if fmt == "csv":
        assert response.content.decode().strip() == '"borough","month","trips","mean_fare"'
    else:
        assert pq.read_table(io.BytesIO(response.content)).schema.names == ["borough", "month", "trips",
                                                                           "mean_fare"]
