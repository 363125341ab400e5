"""Webhook delivery against a real local HTTP server: retries with a row per attempt, final 4xx answers,
unreachable webhooks, and GET /api/v1/alerts/{id}/deliveries (admins only); on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import logging
import socket
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from lineage.context import LineageContext
from lineage.monitoring.store import webhook_deliveries


def rules(*urls: str, max_attempts: int = 4) -> dict[str, Any]:
    return {"webhook": {"timeout_s": 2, "max_attempts": max_attempts, "backoff_s": 0.05},
            "rules": [{"name": "runs", "kind": "run_failed", "severity": "error", "webhooks": list(urls)}]}


def only_alert(api: TestClient) -> dict[str, Any]:
    (alert,) = api.get("/api/v1/alerts").json()["alerts"]
    return alert  # type: ignore[no-any-return]


def test_a_failed_delivery_is_retried_and_every_attempt_recorded(
    monitor: Callable[..., Any], kit: Any, webhook: Callable[..., Any], api: TestClient,
    context: LineageContext, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    hook = webhook(500)  # the first call fails, the next is accepted
    m = monitor(rules(hook.url))
    run = kit.run_id()
    m.ingest(kit.run("FAIL", "etl.load", 0, run_id=run))
    assert m.service.webhooks.wait_idle()
    alert = only_alert(api)
    # What the webhook got, twice: the alert as the API shows it, and the attempt.
    assert len(hook.received) == 2
    bodies = [orjson.loads(body) for _, body in hook.received]
    assert [b["attempt"] for b in bodies] == [1, 2]
    assert all(b["alert"] == alert for b in bodies)
    assert bodies[0]["alert"]["runId"] == run and bodies[0]["alert"]["rule"] == "runs"
    headers = hook.received[1][0]
    assert headers["content-type"] == "application/json"
    assert headers["x-chaintrace-alert-id"] == str(alert["id"])
    assert headers["x-chaintrace-delivery-attempt"] == "2"

    reply = api.get(f"/api/v1/alerts/{alert['id']}/deliveries")
    assert reply.status_code == 200
    body = reply.json()
    assert body["alert"] == alert["id"] and body["totalCount"] == 2
    first, second = body["deliveries"]
    assert (first["attempt"], first["statusCode"], first["ok"], first["error"]) == (1, 500, False, "HTTP 500")
    assert (second["attempt"], second["statusCode"], second["ok"], second["error"]) == (2, 200, True, None)
    assert first["attemptedAt"] <= second["attemptedAt"]
    port = hook.server.server_address[1]
    assert first["url"] == f"http://127.0.0.1:{port}/…"
    assert first["urlSha256"] == hashlib.sha256(hook.url.encode()).hexdigest()[:12]
    # The webhook's secret path shows nowhere: not in the answer, not in the logs, not in the store.
    assert "s3cr3t" not in reply.text and "s3cr3t" not in caplog.text
    with context.engine.connect() as connection:
        stored = connection.execute(select(webhook_deliveries)).all()
    assert len(stored) == 2 and "s3cr3t" not in repr(stored)
    assert "attempt 1 for alert" in caplog.text


def test_deliveries_are_for_admins_and_of_existing_alerts(
    monitor: Callable[..., Any], kit: Any, webhook: Callable[..., Any], api: TestClient,
    context: LineageContext,
) -> None:
    m = monitor(rules(webhook().url))
    m.ingest(kit.run("FAIL", "etl.load", 0))
    alert = only_alert(api)
    path = f"/api/v1/alerts/{alert['id']}/deliveries"
    assert api.get(path, headers=kit.headers(context, "reader", "L4")).status_code == 403
    assert api.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
    missing = api.get(f"/api/v1/alerts/{alert['id'] + 1000}/deliveries")
    assert missing.status_code == 404 and "not found" in missing.json()["message"]
    assert api.get("/api/v1/alerts/x/deliveries").status_code == 400


def test_a_refusal_is_final_and_an_unreachable_webhook_gives_up_after_the_last_attempt(
    monitor: Callable[..., Any], kit: Any, webhook: Callable[..., Any], api: TestClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    refusing = webhook(404, 404, 404)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/hooks/s3cr3t-t0ken"
    m = monitor(rules(refusing.url, dead, max_attempts=3))
    m.ingest(kit.run("FAIL", "etl.load", 0))
    assert m.service.webhooks.wait_idle()
    alert = only_alert(api)
    deliveries = api.get(f"/api/v1/alerts/{alert['id']}/deliveries").json()["deliveries"]
    refused = [d for d in deliveries if d["statusCode"] == 404]
    unreachable = [d for d in deliveries if d["statusCode"] is None]
    assert len(refusing.received) == 1 and len(refused) == 1
    assert "not retried" in refused[0]["error"]
    assert [d["attempt"] for d in unreachable] == [1, 2, 3]
    assert all(not d["ok"] and d["error"] and "s3cr3t" not in d["error"] for d in unreachable)
    assert "giving up" in caplog.text and "s3cr3t" not in caplog.text


def test_alerts_of_rules_without_webhooks_are_not_delivered(
    monitor: Callable[..., Any], kit: Any, api: TestClient
) -> None:
    m = monitor(rules())
    m.ingest(kit.run("FAIL", "etl.load", 0))
    assert m.service.webhooks.pending() == 0
    alert = only_alert(api)
    assert api.get(f"/api/v1/alerts/{alert['id']}/deliveries").json() == {
        "alert": alert["id"], "deliveries": [], "totalCount": 0}
