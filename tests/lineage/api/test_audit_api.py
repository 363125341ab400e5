"""GET /api/v1/audit: admins only, newest first, filters by dataset, kind, subject and time, 400s."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from lineage.context import LineageContext
from lineage.store.audit import AuditEntry

API = "/api/v1"
PRODUCER = "https://github.com/chaintrace/chaintrace/tests/audit-api"
GOVERNANCE_URL = "https://chaintrace.dev/spec/facets/1-0-0/GovernanceRunFacet.json#/$defs/GovernanceRunFacet"


def governance_event(job: str, minute: int, decisions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "eventType": "COMPLETE", "eventTime": f"2026-06-01T12:{minute:02d}:00Z", "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": str(uuid.uuid4()), "facets": {"governance": {
            "_producer": PRODUCER, "_schemaURL": GOVERNANCE_URL, "policyVersion": 1, "k": 10,
            "decisions": decisions}}},
        "job": {"namespace": "chaintrace", "name": job}, "inputs": [], "outputs": [],
    }


def seed(client: TestClient, context: LineageContext) -> None:
    events = [
        governance_event("flights.store", 0, [
            {"kind": "level_assigned", "dataset": {"namespace": "file", "name": "/d/raw/flights"},
             "field": "tailnum", "level": "L2", "reason": "policy default level"}]),
        governance_event("flights.serve", 10, [
            {"kind": "publish_allowed", "dataset": {"namespace": "file", "name": "/d/service/delays.parquet"},
             "product": "delays", "reason": "every column at or below L1"},
            {"kind": "violation", "dataset": {"namespace": "file", "name": "/d/service/delays.parquet"},
             "field": "tailnum", "reason": "declared L1 below propagated L2"}]),
    ]
    response = client.post(f"{API}/lineage/batch", json=events)
    assert response.status_code == 200, response.text
    context.audit.record([AuditEntry(kind="access_denied", reason="purpose not allowed", subject="alice",
                                     dataset_namespace="file", dataset_name="/d/service/delays.parquet",
                                     at="2026-06-01T12:20:00.000000Z")])


def entries(client: TestClient, **params: Any) -> tuple[list[dict[str, Any]], int]:
    response = client.get(f"{API}/audit", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    return body["entries"], body["totalCount"]


def test_entries_newest_first_with_derived_decisions(client: TestClient, context: LineageContext) -> None:
    seed(client, context)
    found, total = entries(client)
    assert total == 4
    assert [e["kind"] for e in found] == ["access_denied", "violation", "publish_allowed", "level_assigned"]
    level = found[-1]
    assert level["dataset"] == {"namespace": "file", "name": "/d/raw/flights"}
    assert level["field"] == "tailnum" and level["subject"] == "flights.store"
    assert level["details"]["level"] == "L2" and level["at"] == "2026-06-01T12:00:00.000000Z"


def test_filters(client: TestClient, context: LineageContext) -> None:
    seed(client, context)
    by_dataset, total = entries(client, namespace="file", name="/d/service/delays.parquet")
    assert total == 3 and {e["dataset"]["name"] for e in by_dataset} == {"/d/service/delays.parquet"}
    assert [e["kind"] for e in entries(client, kind="violation")[0]] == ["violation"]
    assert [e["subject"] for e in entries(client, subject="alice")[0]] == ["alice"]
    window, total = entries(client, since="2026-06-01T14:05:00+02:00", until="2026-06-01T12:20:00Z")
    assert total == 2 and {e["kind"] for e in window} == {"violation", "publish_allowed"}
    page, total = entries(client, limit=1, offset=1)
    assert total == 4 and [e["kind"] for e in page] == ["violation"]


def test_bad_parameters_are_400(client: TestClient) -> None:
    for params in ({"kind": "deleted"}, {"since": "yesterday"}, {"until": "2026-06-01T12:00:00"},
                   {"limit": -1}):
        response = client.get(f"{API}/audit", params=params)
        assert response.status_code == 400, params
        assert response.json()["message"]
    assert "kind" in client.get(f"{API}/audit", params={"kind": "x"}).json()["message"]


def test_only_admins_read_the_audit_log(client: TestClient, context: LineageContext,
                                        make_auth_headers: Any) -> None:
    for role in ("reader", "consumer", "producer"):
        headers = make_auth_headers(context, role, "L4")
        assert client.get(f"{API}/audit", headers=headers).status_code == 403, role
    assert client.get(f"{API}/audit", headers={"Authorization": "Bearer ct_x_y"}).status_code == 401
