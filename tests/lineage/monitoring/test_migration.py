"""Migration 0003: the alerts and webhook_deliveries tables, watermarks that start at the store's newest
event and audit row (no alerts for history), and a clean downgrade; on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine, inspect, select

from lineage.store import schema as s
from lineage.store.audit import AuditEntry, record
from lineage.store.db import alembic_config, create_store_engine

T = "2026-01-01T00:00:00.000000Z"


def migrate_to(engine: Engine, revision: str, *, down: bool = False) -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(cfg, revision)


def meta(engine: Engine) -> dict[str, str]:
    with engine.connect() as connection:
        return {k: v for k, v in connection.execute(select(s.store_meta.c.key, s.store_meta.c.value))
                if k.startswith("monitoring_")}


def test_upgrade_seeds_the_watermarks_and_downgrade_removes_everything(store_url: str) -> None:
    engine = create_store_engine(store_url)
    try:
        migrate_to(engine, "0002")
        with engine.begin() as connection:
            connection.execute(s.events.insert(), [
                {"id": i, "event_hash": f"{i:064d}", "kind": "RunEvent", "event_time": T, "received_at": T,
                 "payload": "{}"} for i in (1, 2, 7)])
        record(engine, [AuditEntry(kind="violation", reason="old") for _ in range(2)])
        migrate_to(engine, "head")
        tables = set(inspect(engine).get_table_names())
        assert {"alerts", "webhook_deliveries"} <= tables
        assert meta(engine) == {"monitoring_events": "7", "monitoring_audit": "2"}
        indexes = {ix["name"] for ix in inspect(engine).get_indexes("alerts")}
        assert {"ix_alerts_raised_at", "ix_alerts_rule", "ix_alerts_kind"} <= indexes
        migrate_to(engine, "0002", down=True)
        assert not {"alerts", "webhook_deliveries"} & set(inspect(engine).get_table_names())
        assert meta(engine) == {}
        migrate_to(engine, "head")  # and up again
        assert meta(engine) == {"monitoring_events": "7", "monitoring_audit": "2"}
    finally:
        engine.dispose()


def test_0004_gives_old_deliveries_a_final_state_and_one_row_per_attempt(store_url: str) -> None:
    engine = create_store_engine(store_url)
    try:
        migrate_to(engine, "0003")
        row = {"alert_id": 1, "url": "http://h/…", "url_sha256": "ab" * 32, "attempted_at": T,
               "status_code": 500, "error": "HTTP 500", "duration_ms": 3}
        with engine.begin() as connection:
            connection.execute(sa.text(
                "INSERT INTO webhook_deliveries (alert_id, url, url_sha256, attempt, attempted_at, "
                "status_code, ok, error, duration_ms) VALUES (:alert_id, :url, :url_sha256, :attempt, "
                ":attempted_at, :status_code, :ok, :error, :duration_ms)"),
                [{**row, "attempt": 1, "ok": False}, {**row, "attempt": 2, "ok": True, "status_code": 200}])
        migrate_to(engine, "head")
        with engine.connect() as connection:
            states = connection.execute(sa.text(
                "SELECT attempt, state FROM webhook_deliveries ORDER BY attempt")).all()
        assert [tuple(s) for s in states] == [(1, "failed"), (2, "delivered")]  # nothing left to resume
        indexes = {ix["name"]: ix for ix in inspect(engine).get_indexes("webhook_deliveries")}
        assert indexes["ux_webhook_deliveries_attempt"]["unique"]
        migrate_to(engine, "0003", down=True)
        columns = {c["name"] for c in inspect(engine).get_columns("webhook_deliveries")}
        assert "state" not in columns
    finally:
        engine.dispose()
