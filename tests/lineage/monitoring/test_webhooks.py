"""Webhook delivery against a real local HTTP server: retries with a row per attempt, final 4xx answers,
unreachable webhooks, GET /api/v1/alerts/{id}/deliveries (admins only), and deliveries resumed by the
next start (one process per attempt); on SQLite and PostgreSQL."""

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
from sqlalchemy.exc import IntegrityError

from lineage.context import LineageContext
from lineage.monitoring.store import alerts, claim_attempt, queue_deliveries, webhook_deliveries


def rules(*urls: str, max_attempts: int = 4) -> dict[str, Any]:
    return {"webhook": {"timeout_s": 2, "max_attempts": max_attempts, "backoff_s": 0.05},
            "rules": [{"name": "runs", "kind": "run_failed", "severity": "error", "webhooks": list(urls)}]}


def stored_alerts(context: LineageContext) -> list[int]:
    with context.engine.connect() as connection:
        return [int(i) for i in connection.execute(select(alerts.c.id).order_by(alerts.c.id)).scalars()]


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


# -- resuming after a restart ---------------------------------------------------------------------------

def rows_of(context: LineageContext) -> list[dict[str, Any]]:
    with context.engine.connect() as connection:
        rows = connection.execute(select(webhook_deliveries).order_by(webhook_deliveries.c.id)).mappings()
        return [dict(row) for row in rows]


def test_a_delivery_stopped_mid_retry_is_resumed_by_the_next_start_and_completes_once(
    monitor: Callable[..., Any], kit: Any, webhook: Callable[..., Any], api: TestClient,
    context: LineageContext,
) -> None:
    hook = webhook(500, 500)  # two failures, then accepted
    spec = {"webhook": {"timeout_s": 2, "max_attempts": 6, "backoff_s": 1.0},
            "rules": [{"name": "runs", "kind": "run_failed", "webhooks": [hook.url]}]}
    first = monitor(spec)
    first.ingest(kit.run("FAIL", "etl.load", 0))
    # Attempt 1 at once, attempt 2 a second later; attempt 3 is due 2 s after that: stop before it.
    kit.wait_for(lambda: [r["state"] for r in rows_of(context)] == ["retry", "retry"])
    first.service.close()
    assert len(hook.received) == 2

    second = monitor(spec)  # a new service process on the same store: it resumes on start
    assert second.service.webhooks.wait_idle()
    alert = only_alert(api)
    deliveries = api.get(f"/api/v1/alerts/{alert['id']}/deliveries").json()["deliveries"]
    assert [(d["attempt"], d["statusCode"], d["state"]) for d in deliveries] == [
        (1, 500, "retry"), (2, 500, "retry"), (3, 200, "delivered")]
    assert [orjson.loads(body)["attempt"] for _, body in hook.received] == [1, 2, 3]
    assert all(orjson.loads(body)["alert"] == alert for _, body in hook.received)
    # A third start finds nothing left to do: delivered once.
    second.service.close()
    third = monitor(spec)
    assert third.service.webhooks.resume(third.service.rules) == 0
    assert third.service.webhooks.wait_idle() and len(hook.received) == 3


def test_queued_and_interrupted_deliveries_are_resumed(
    monitor: Callable[..., Any], kit: Any, webhook: Callable[..., Any], context: LineageContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queued_hook, interrupted_hook, dropped_hook = webhook(), webhook(), webhook()
    spec = rules(queued_hook.url, interrupted_hook.url, dropped_hook.url)
    first = monitor(spec)
    # The service stops after storing the alert and before any attempt (its rows are queued) ...
    monkeypatch.setattr(first.service.webhooks, "submit", lambda *_args: None)
    first.ingest(kit.run("FAIL", "etl.load", 0))
    first.service.close()
    assert [r["state"] for r in rows_of(context)] == ["queued"] * 3
    # ... except one attempt, claimed by a process that died during its POST a minute ago.
    (alert_id,) = {r["alert_id"] for r in rows_of(context)}
    with context.engine.begin() as connection:
        assert claim_attempt(connection, alert_id, interrupted_hook.url, 1, kit.at(0))
    # And the rules no longer name one of the webhooks.
    spec["rules"][0]["webhooks"] = [queued_hook.url, interrupted_hook.url]
    second = monitor(spec)
    assert second.service.webhooks.wait_idle()
    assert len(queued_hook.received) == 1 and len(interrupted_hook.received) == 1
    assert dropped_hook.received == []
    states = {(r["url_sha256"][:8], r["attempt"]): (r["state"], r["error"]) for r in rows_of(context)}
    queued, interrupted, dropped = (hashlib.sha256(hook.url.encode()).hexdigest()[:8]
                                    for hook in (queued_hook, interrupted_hook, dropped_hook))
    assert states[(queued, 1)] == ("delivered", None)
    assert states[(interrupted, 1)] == ("retry", "interrupted: the service stopped during the attempt")
    assert states[(interrupted, 2)] == ("delivered", None)
    assert states[(dropped, 1)] == (
        "failed", "not resumed: the alert rules no longer name this webhook")


def test_an_attempt_is_made_by_one_process_only(
    monitor: Callable[..., Any], kit: Any, context: LineageContext,
) -> None:
    m = monitor(rules())
    m.ingest(kit.run("FAIL", "etl.load", 0))
    (alert,) = stored_alerts(context)
    url = "http://127.0.0.1:9/hook"
    with context.engine.begin() as connection:
        queue_deliveries(connection, [(alert, url)], kit.at(0))
    claims = []
    for _ in range(2):  # two processes racing for attempt 1, then for attempt 2
        with context.engine.begin() as connection:
            claims.append(claim_attempt(connection, alert, url, 1, kit.at(1)))
    assert claims == [True, False]
    with context.engine.begin() as connection:
        assert claim_attempt(connection, alert, url, 2, kit.at(2))
    with pytest.raises(IntegrityError), context.engine.begin() as connection:
        claim_attempt(connection, alert, url, 2, kit.at(2))
