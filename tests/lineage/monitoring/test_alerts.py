"""Alerts of every kind raised from stored events (and the audit log, and the clock), stored once per
rule, subject and run, and listed by GET /api/v1/alerts; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from lineage.context import LineageContext
from lineage.monitoring import MonitoringService
from lineage.monitoring.store import alerts as alerts_table
from lineage.store import schema as s
from lineage.store.audit import AuditEntry

ALL_KINDS: dict[str, Any] = {"rules": [
    {"name": "gates", "kind": "gate_failed", "severity": "critical"},
    {"name": "runs", "kind": "run_failed", "severity": "error"},
    {"name": "schemas", "kind": "schema_changed"},
    {"name": "violations", "kind": "policy_violation", "severity": "critical"},
]}


def stored(context: LineageContext) -> list[dict[str, Any]]:
    with context.engine.connect() as connection:
        rows = connection.execute(select(alerts_table).order_by(alerts_table.c.id)).mappings().all()
    return [dict(row) for row in rows]


def by_kind(context: LineageContext, kind: str) -> list[dict[str, Any]]:
    return [row for row in stored(context) if row["kind"] == kind]


def test_run_failed_on_fail_and_abort_only(monitor: Callable[..., Any], kit: Any) -> None:
    m = monitor(ALL_KINDS)
    failed, aborted = kit.run_id(), kit.run_id()
    raised = m.ingest(
        kit.run("START", "etl.load", 0, run_id=failed),
        kit.run("FAIL", "etl.load", 1, run_id=failed, inputs=[kit.dataset("db", "people")],
                run_facets={"errorMessage": {"_producer": "p", "_schemaURL": "https://openlineage.io/spec/facets/"
                            "1-0-0/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
                            "message": "division by zero", "programmingLanguage": "python"}}),
        kit.run("ABORT", "etl.load", 2, run_id=aborted),
        kit.run("COMPLETE", "etl.other", 3),
    )
    assert raised == 2
    rows = by_kind(m.context, "run_failed")
    assert [(r["rule"], r["run_id"], r["severity"]) for r in rows] == [
        ("runs", failed, "error"), ("runs", aborted, "error")]
    first = rows[0]
    assert first["subject"] == "job:etl:etl.load"
    assert (first["job_namespace"], first["job_name"]) == ("etl", "etl.load")
    assert first["event_time"] == kit.at(1) and first["event_id"] is not None
    assert "division by zero" in first["details"] and "FAIL" in first["message"]
    assert by_kind(m.context, "gate_failed") == []  # not a gate


def test_gate_failed_from_assertions_and_from_a_failed_gate_task(
    monitor: Callable[..., Any], kit: Any
) -> None:
    m = monitor(ALL_KINDS)
    checked = kit.run_id()
    m.ingest(
        # A gate that ran and refused the batch: two of three assertions failed on its input.
        kit.run("COMPLETE", "flights.collect.gate", 0, namespace="chaintrace", run_id=checked, inputs=[
            kit.dataset("file", "/d/landing/flights", assertions=[("carrier", False), ("dep_time", True),
                                                                   (None, False)])]),
        # A gate whose assertions all passed raises nothing.
        kit.run("COMPLETE", "flights.store.gate", 1, namespace="chaintrace", inputs=[
            kit.dataset("file", "/d/raw/flights", assertions=[("carrier", True)])]),
    )
    crashed = kit.run_id()
    m.ingest(kit.run("FAIL", "flights.process.gate", 2, namespace="chaintrace", run_id=crashed,
                     inputs=[kit.dataset("file", "/d/processed/flights")]))
    gates = by_kind(m.context, "gate_failed")
    assert [(g["subject"], g["run_id"]) for g in gates] == [
        ("dataset:file:/d/landing/flights", checked), ("job:chaintrace:flights.process.gate", crashed)]
    assertion_alert = gates[0]
    assert (assertion_alert["dataset_namespace"], assertion_alert["dataset_name"]) == (
        "file", "/d/landing/flights")
    assert assertion_alert["job_name"] == "flights.collect.gate"
    assert assertion_alert["message"] == "quality gate failed: 2 of 3 assertions failed"
    assert '"field":"carrier"' in assertion_alert["details"] and "dep_time" not in assertion_alert["details"]
    # The failed gate task is a failed run too.
    assert [r["run_id"] for r in by_kind(m.context, "run_failed")] == [crashed]


def test_schema_changed_when_a_column_goes_or_changes_type(monitor: Callable[..., Any], kit: Any) -> None:
    m = monitor(ALL_KINDS)

    def version(minutes: float, schema: dict[str, str]) -> tuple[str, dict[str, Any]]:
        run = kit.run_id()
        return run, kit.run("COMPLETE", "etl.orders", minutes, run_id=run,
                            outputs=[kit.dataset("wh", "orders", schema=schema)])

    _, v1 = version(0, {"id": "INT", "amount": "DECIMAL", "note": "TEXT"})
    _, v2 = version(10, {"id": "int", "amount": "DECIMAL", "note": "TEXT", "extra": "TEXT"})  # compatible
    r3, v3 = version(20, {"id": "BIGINT", "amount": "DECIMAL", "extra": "TEXT"})  # note gone, id retyped
    assert m.ingest(v1, v2) == 0
    assert m.ingest(v3) == 1
    (alert,) = by_kind(m.context, "schema_changed")
    assert (alert["subject"], alert["run_id"]) == ("dataset:wh:orders", r3)
    assert alert["message"] == ("schema changed incompatibly: 1 column(s) removed, 1 type(s) changed versus "
                                "the previous version")
    assert '"field":"note","change":"removed"' in alert["details"]
    assert '"field":"id","change":"type_changed","from":"int","to":"BIGINT"' in alert["details"]

    # A fresh service (another process, a restart) has no memory of the versions: it asks the store.
    m.service.close()
    second = monitor(ALL_KINDS)
    r4, v4 = version(30, {"id": "BIGINT", "amount": "DECIMAL"})  # extra gone
    assert second.ingest(v4) == 1
    latest = by_kind(m.context, "schema_changed")[-1]
    assert latest["run_id"] == r4 and '"field":"extra"' in latest["details"]
    assert f'"previousRunId":"{r3}"' in latest["details"]
    # An older version arriving late is compared with the version before it, not with the newest.
    _, late = version(5, {"id": "INT", "amount": "DECIMAL", "note": "TEXT"})  # same as v1: nothing changed
    assert second.ingest(late) == 0


def test_policy_violations_from_the_audit_log(monitor: Callable[..., Any], kit: Any) -> None:
    m = monitor(ALL_KINDS)
    governance = {"governance": {
        "_producer": kit.run("START", "x")["producer"],
        "_schemaURL": "https://chaintrace.dev/spec/facets/1-0-0/GovernanceRunFacet.json#/$defs/GovernanceRunFacet",
        "policyVersion": 1, "k": 10, "decisions": [
            {"kind": "violation", "dataset": {"namespace": "file", "name": "/d/service/x"}, "field": "name",
             "reason": "L4 data to a destination outside the allowed jurisdictions"},
            {"kind": "publish_allowed", "dataset": {"namespace": "file", "name": "/d/service/y"},
             "reason": "ok"},
        ]}}
    run = kit.run_id()
    kit.ingest(m.context, kit.run("COMPLETE", "flights.serve.gate", 0, run_id=run, run_facets=governance))
    m.context.audit.catch_up()  # the audit service derives the decision rows (its worker would too)
    # A violation the service itself records (no event, no run).
    m.context.audit.record([AuditEntry(
        kind="violation", reason="declared L1 below L3", dataset_namespace="wh", dataset_name="mart",
        field="who", details={"declared": "L1", "propagated": "L3"})])
    m.catch_up()  # (the service's worker may have raised some of them already)
    first, second = by_kind(m.context, "policy_violation")
    assert (first["subject"], first["run_id"]) == ("datasetField:file:/d/service/x:name", run)
    assert "outside the allowed jurisdictions" in first["details"] and first["message"] == (
        "policy violation recorded in the audit log")
    assert second["subject"] == "datasetField:wh:mart:who" and second["run_id"].startswith("audit:")
    assert '"declared":"L1"' in second["details"]
    assert m.catch_up() == 0


def test_data_late_by_the_clock(monitor: Callable[..., Any], kit: Any) -> None:
    now = [kit.epoch(26 * 60)]  # 26 h after minute 0
    # The worker checks once when it starts, then hourly: the test's own checks are the ones that count.
    rule = {"name": "nightly-late", "kind": "data_late", "expected_interval": "24h",
            "match": {"namespace": "etl", "job": ["nightly", "fresh", "never"]}}
    m = monitor({"late_check_s": 3600, "rules": [rule]}, clock=lambda: now[0])
    m.ingest(
        kit.run("COMPLETE", "nightly", 0), kit.run("COMPLETE", "fresh", 23 * 60),
        kit.run("START", "never", 0), kit.run("COMPLETE", "unwatched", 0),
    )
    m.check_late()
    late = {row["job_name"]: row for row in by_kind(m.context, "data_late")}
    assert set(late) == {"nightly", "never"}
    assert late["never"]["run_id"] == "never-completed" and "never completed" in late["never"]["message"]
    assert late["nightly"]["message"] == "no COMPLETE run within the expected 1d"
    assert f'"lastCompleteAt":"{kit.at(0)}"' in late["nightly"]["details"]
    assert m.check_late() == 0  # one alert per late spell
    # nightly completes again, then is late again a day later: a new spell, a new alert.
    rerun = kit.run_id()
    m.ingest(kit.run("COMPLETE", "nightly", 25 * 60, run_id=rerun))
    assert m.check_late() == 0
    now[0] = kit.epoch(50 * 60)
    assert m.check_late() == 2  # nightly (since 25 h) and fresh (since 23 h)
    assert {r["run_id"] for r in by_kind(m.context, "data_late") if r["job_name"] == "nightly"} >= {rerun}


def test_the_worker_raises_alerts_without_being_asked(monitor: Callable[..., Any], kit: Any) -> None:
    m = monitor(ALL_KINDS)
    kit.ingest(m.context, kit.run("FAIL", "etl.load", 0))
    kit.wait_for(lambda: by_kind(m.context, "run_failed"))


def test_alerts_are_stored_once_per_rule_subject_and_run(
    monitor: Callable[..., Any], kit: Any, context: LineageContext
) -> None:
    rules = {"rules": [*ALL_KINDS["rules"],
                       {"name": "etl-runs", "kind": "run_failed", "match": {"job": "etl.*"}}]}
    m = monitor(rules)
    run = kit.run_id()
    fail = kit.run("FAIL", "etl.load", 0, run_id=run)
    assert m.ingest(fail, kit.run("FAIL", "other", 1)) == 3  # runs x2, etl-runs x1
    assert m.ingest(fail) == 0  # the same event again
    assert m.ingest(kit.run("ABORT", "etl.load", 2, run_id=run)) == 0  # same rule, subject and run
    # Another process deriving everything again from the start stores nothing new.
    with context.engine.begin() as connection:
        connection.execute(s.store_meta.update().where(s.store_meta.c.key == "monitoring_events")
                           .values(value="0"))
    m.service.close()
    again = MonitoringService(context.engine, rules=m.service.rules)
    try:
        assert again.catch_up() == 0
    finally:
        again.close()
    assert sorted(r["rule"] for r in stored(context)) == ["etl-runs", "runs", "runs"]


def test_no_alert_for_history_before_monitoring_existed(context: LineageContext, kit: Any) -> None:
    """The migration starts the watermark at the newest event stored then (here: none, so all count);
    a service started later derives from its stored watermark, not from what it sees first."""
    kit.ingest(context, kit.run("FAIL", "etl.before", 0))
    with context.engine.begin() as connection:  # as if the store had this event before migration 0003
        newest = connection.execute(select(s.events.c.id).order_by(s.events.c.id.desc())).scalars().first()
        connection.execute(s.store_meta.update().where(s.store_meta.c.key == "monitoring_events")
                           .values(value=str(newest)))
    service = MonitoringService(context.engine, rules=MonitoringService(context.engine).rules)
    try:
        assert service.catch_up() == 0
        kit.ingest(context, kit.run("FAIL", "etl.after", 1))
        assert service.catch_up() == 1
    finally:
        service.close()


# -- GET /api/v1/alerts -------------------------------------------------------------------------------

def test_list_filter_and_page_alerts(monitor: Callable[..., Any], kit: Any, api: TestClient) -> None:
    m = monitor(ALL_KINDS)
    m.ingest(kit.run("FAIL", "a", 0), kit.run("FAIL", "b", 1), kit.run("COMPLETE", "c.gate", 2, inputs=[
        kit.dataset("file", "/d/x", assertions=[("c", False)])]))
    body = api.get("/api/v1/alerts").json()
    assert body["totalCount"] == 3
    ids = [a["id"] for a in body["alerts"]]
    assert ids == sorted(ids, reverse=True)  # newest first
    gate = next(a for a in body["alerts"] if a["kind"] == "gate_failed")
    assert gate["dataset"] == {"namespace": "file", "name": "/d/x"} and gate["job"] == {"namespace": "etl",
                                                                                        "name": "c.gate"}
    assert gate["details"]["columns"][0]["field"] == "c" and gate["severity"] == "critical"
    assert {"id", "rule", "kind", "severity", "subject", "runId", "message", "eventId", "eventTime",
            "raisedAt"} <= gate.keys()
    assert api.get("/api/v1/alerts", params={"kind": "run_failed"}).json()["totalCount"] == 2
    assert api.get("/api/v1/alerts", params={"rule": "gates"}).json()["totalCount"] == 1
    assert api.get("/api/v1/alerts", params={"rule": "nope"}).json() == {"alerts": [], "totalCount": 0}
    page = api.get("/api/v1/alerts", params={"limit": 1, "offset": 1}).json()
    assert page["totalCount"] == 3 and [a["id"] for a in page["alerts"]] == ids[1:2]
    future = api.get("/api/v1/alerts", params={"since": "2999-01-01T00:00:00Z"}).json()
    assert future["totalCount"] == 0
    past = api.get("/api/v1/alerts", params={"since": "2000-01-01T00:00:00+02:00"}).json()
    assert past["totalCount"] == 3
    bad = api.get("/api/v1/alerts", params={"kind": "disk_full"})
    assert bad.status_code == 400 and "kind must be one of" in bad.json()["message"]
    bad = api.get("/api/v1/alerts", params={"since": "yesterday"})
    assert bad.status_code == 400 and "since" in bad.json()["message"]


def test_alerts_need_a_read_key_and_are_redacted_by_clearance(
    monitor: Callable[..., Any], kit: Any, api: TestClient, context: LineageContext
) -> None:
    m = monitor(ALL_KINDS)
    secret = kit.dataset("file", "/d/people", schema={"name": "TEXT", "age": "INT"},
                         tags={"": "L4", "name": "L4"})
    open_data = kit.dataset("file", "/d/open", schema={"year": "INT"}, tags={"year": "L1"})
    m.ingest(kit.run("COMPLETE", "load", 0, outputs=[secret, open_data]))
    m.ingest(kit.run("COMPLETE", "check.gate", 1, inputs=[
        kit.dataset("file", "/d/people", assertions=[("name", False)]),
        kit.dataset("file", "/d/open", assertions=[("year", False)])]))
    assert api.get("/api/v1/alerts", headers=kit.headers(context, "producer", "L1")).status_code == 403
    low = api.get("/api/v1/alerts", headers=kit.headers(context, "reader", "L1"))
    assert low.status_code == 200
    assert low.headers["X-Chaintrace-Withheld"].startswith("1,")
    body = low.json()
    assert body["withheld"]["datasets"] == 1 and body["totalCount"] == 2
    assert "/d/people" not in low.text and '"field":"name"' not in low.text
    by_dataset = {a["dataset"]["name"]: a for a in body["alerts"]}
    people = next(a for name, a in by_dataset.items() if name.startswith("withheld:"))
    assert people["details"] == {} and people["message"].startswith("withheld")
    assert people["subject"].startswith("dataset:file:withheld:")
    assert by_dataset["/d/open"]["details"]["columns"][0]["field"] == "year"
    high = api.get("/api/v1/alerts").json()  # the admin sees everything
    assert {a["dataset"]["name"] for a in high["alerts"]} == {"/d/people", "/d/open"}
    assert "withheld" not in high
