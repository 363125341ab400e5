"""Stored alerts and webhook deliveries (tables on the store's one MetaData; migrations 0003, 0004).

Neither table is derived from the raw events: a graph rebuild leaves them alone. An alert is written
once per rule, subject and run (``dedup_key``, a SHA-256 of the three), so deriving the same events
again (a restart, a second service process) writes nothing twice.

A delivery owed to a webhook is a row from the moment its alert is stored (``queued``, in the alert's
transaction), and every attempt is a row claimed before its POST (``sending``; one row per alert, webhook
and attempt, unique), then closed as ``delivered``, ``retry`` (another attempt is due) or ``failed``
(final). A service that starts picks up the queued and retrying ones; the unique claim makes sure no
two processes make the same attempt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
    insert,
    select,
)

from lineage.store import schema as s
from lineage.store.times import now

alerts = Table(
    "alerts",
    s.metadata,
    Column("id", s.EventId, primary_key=True, autoincrement=True),
    Column("rule", String(200), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("subject", Text, nullable=False),  # a node id: job:<ns>:<name>, dataset:..., datasetField:...
    Column("run_id", String(64), nullable=True),
    Column("job_namespace", s.NAME, nullable=True),
    Column("job_name", s.NAME, nullable=True),
    Column("dataset_namespace", s.NAME, nullable=True),
    Column("dataset_name", s.NAME, nullable=True),
    Column("message", Text, nullable=False),
    Column("details", Text, nullable=True),  # JSON
    Column("event_id", BigInteger, nullable=True),  # the raw event that raised it, when one did
    Column("event_time", s.TIME, nullable=True),
    Column("raised_at", s.TIME, nullable=False),
    Column("dedup_key", String(64), nullable=False, unique=True),
    Index("ix_alerts_raised_at", "raised_at"),
    Index("ix_alerts_rule", "rule", "raised_at"),
    Index("ix_alerts_kind", "kind", "raised_at"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    s.metadata,
    Column("id", s.EventId, primary_key=True, autoincrement=True),
    Column("alert_id", BigInteger, nullable=False),
    # Where it went, as display_url shows it, and the SHA-256 of the whole URL: webhook URLs often hold
    # their secret (Slack's do), and the rules file (or the environment) keeps them.
    Column("url", Text, nullable=False),
    Column("url_sha256", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("attempted_at", s.TIME, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("ok", Boolean, nullable=False),
    Column("error", Text, nullable=True),
    Column("duration_ms", Integer, nullable=True),
    Column("state", String(16), nullable=False, server_default="failed"),  # see DELIVERY_STATES
    Index("ix_webhook_deliveries_alert", "alert_id", "id"),
    Index("ux_webhook_deliveries_attempt", "alert_id", "url_sha256", "attempt", unique=True),
    Index("ix_webhook_deliveries_state", "state"),
)

#: queued: owed, no attempt yet; sending: an attempt under way (claimed); delivered; retry: the attempt
#: failed and another is due; failed: given up (a refusal, the last attempt, or a webhook no rule names).
DELIVERY_STATES = ("queued", "sending", "delivered", "retry", "failed")
OPEN_STATES = ("queued", "sending", "retry")

_NAME_MAX = 1024


def _clip(value: str | None, limit: int = _NAME_MAX) -> str | None:
    return None if value is None else value[:limit]


def dedup_key(rule: str, subject: str, run: str | None) -> str:
    return hashlib.sha256(orjson.dumps([rule, subject, run])).hexdigest()


@dataclass(frozen=True)
class NewAlert:
    """An alert about to be stored (the rule matched a finding)."""

    rule: str
    kind: str
    severity: str
    subject: str
    message: str
    run_id: str | None = None
    job_namespace: str | None = None
    job_name: str | None = None
    dataset_namespace: str | None = None
    dataset_name: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    event_id: int | None = None
    event_time: str | None = None
    webhooks: tuple[str, ...] = ()  # where to deliver it (not stored: the rules file says)

    @property
    def key(self) -> str:
        # The run is part of the key: the same failure of another run is another alert.
        return dedup_key(self.rule, self.subject, self.run_id)

    def row(self, raised_at: str) -> dict[str, Any]:
        return {
            "rule": self.rule, "kind": self.kind, "severity": self.severity, "subject": self.subject,
            "run_id": _clip(self.run_id, 64), "job_namespace": _clip(self.job_namespace),
            "job_name": _clip(self.job_name), "dataset_namespace": _clip(self.dataset_namespace),
            "dataset_name": _clip(self.dataset_name), "message": self.message,
            "details": orjson.dumps(self.details).decode() if self.details else None,
            "event_id": self.event_id, "event_time": self.event_time, "raised_at": raised_at,
            "dedup_key": self.key,
        }


def insert_alerts(
    connection: Connection, candidates: Sequence[NewAlert]
) -> list[tuple[dict[str, Any], NewAlert]]:
    """Store the candidates not stored yet (inside the caller's transaction): each new alert as
    :func:`alert_json` shows it, with its candidate, in the candidates' order.

    A concurrent writer of the same key makes the insert fail with IntegrityError; the caller retries
    and then finds the key stored.
    """
    unique = list({c.key: c for c in reversed(candidates)}.values())[::-1]  # first of each key wins
    known: set[str] = set()
    for chunk in _chunks([c.key for c in unique]):
        known.update(connection.execute(
            select(alerts.c.dedup_key).where(alerts.c.dedup_key.in_(chunk))).scalars())
    fresh = [c for c in unique if c.key not in known]
    if not fresh:
        return []
    raised_at = now()
    connection.execute(insert(alerts), [c.row(raised_at) for c in fresh])
    stored: dict[str, dict[str, Any]] = {}
    for chunk in _chunks([c.key for c in fresh]):
        stored.update((row.dedup_key, alert_json(row))
                      for row in connection.execute(select(alerts).where(alerts.c.dedup_key.in_(chunk))))
    return [(stored[c.key], c) for c in fresh]


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def alert_json(row: Any) -> dict[str, Any]:
    """The API (and webhook, and stream) shape of a stored alert."""
    return {
        "id": int(row.id), "rule": row.rule, "kind": row.kind, "severity": row.severity,
        "subject": row.subject, "runId": row.run_id,
        "job": ({"namespace": row.job_namespace, "name": row.job_name}
                if row.job_name is not None else None),
        "dataset": ({"namespace": row.dataset_namespace, "name": row.dataset_name}
                    if row.dataset_name is not None else None),
        "message": row.message, "details": orjson.loads(row.details) if row.details else {},
        "eventId": row.event_id, "eventTime": row.event_time, "raisedAt": row.raised_at,
    }


def alerts_after(connection: Connection, after: int, limit: int = 1_000) -> list[dict[str, Any]]:
    """Stored alerts with an id above ``after``, oldest first."""
    rows = connection.execute(
        select(alerts).where(alerts.c.id > after).order_by(alerts.c.id).limit(limit)).all()
    return [alert_json(row) for row in rows]


def max_id(connection: Connection, table: Table) -> int:
    return int(connection.execute(select(func.max(table.c.id))).scalar() or 0)


def query_alerts(
    engine: Engine, *, rule: str | None = None, kind: str | None = None, since: str | None = None,
    limit: int = 100, offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Alerts newest first, and how many match in all (``since``: raised at or after, inclusive)."""
    where = []
    if rule is not None:
        where.append(alerts.c.rule == rule)
    if kind is not None:
        where.append(alerts.c.kind == kind)
    if since is not None:
        where.append(alerts.c.raised_at >= since)
    with engine.connect() as connection:
        total = connection.execute(select(func.count()).select_from(alerts).where(*where)).scalar_one()
        rows = connection.execute(
            select(alerts).where(*where).order_by(alerts.c.raised_at.desc(), alerts.c.id.desc())
            .limit(limit).offset(offset)).all()
    return [alert_json(row) for row in rows], int(total)


def get_alert(engine: Engine, alert_id: int) -> dict[str, Any] | None:
    with engine.connect() as connection:
        row = connection.execute(select(alerts).where(alerts.c.id == alert_id)).first()
    return None if row is None else alert_json(row)


@dataclass(frozen=True)
class Attempt:
    """One POST of an alert to one webhook."""

    alert_id: int
    url: str
    attempt: int
    attempted_at: str
    status_code: int | None
    ok: bool
    error: str | None
    duration_ms: int | None


def url_sha256(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def queue_deliveries(connection: Connection, owed: Sequence[tuple[int, str]], at: str) -> None:
    """Rows of deliveries owed, (alert id, URL) each, before any attempt (in the alert's transaction)."""
    from lineage.monitoring.rules import display_url

    if owed:
        connection.execute(insert(webhook_deliveries), [
            {"alert_id": alert_id, "url": display_url(url), "url_sha256": url_sha256(url), "attempt": 1,
             "attempted_at": at, "status_code": None, "ok": False, "error": None, "duration_ms": None,
             "state": "queued"} for alert_id, url in owed])


def claim_attempt(connection: Connection, alert_id: int, url: str, attempt: int, at: str) -> bool:
    """Take attempt ``attempt`` of a delivery before making it; False when it is not this caller's to
    make (another process claimed it, or it was never owed). Attempt 1 turns the queued row into the
    claim; a later attempt inserts its row, which the unique index lets only one process do (the caller
    runs this in a transaction of its own: the IntegrityError of a lost race ends it)."""
    from lineage.monitoring.rules import display_url

    d = webhook_deliveries
    if attempt == 1:
        claimed = connection.execute(
            d.update().where(d.c.alert_id == alert_id, d.c.url_sha256 == url_sha256(url), d.c.attempt == 1,
                             d.c.state == "queued").values(state="sending", attempted_at=at))
        return bool(claimed.rowcount == 1)
    connection.execute(insert(d).values(
        alert_id=alert_id, url=display_url(url), url_sha256=url_sha256(url), attempt=attempt,
        attempted_at=at, status_code=None, ok=False, error=None, duration_ms=None, state="sending"))
    return True


def finish_attempt(connection: Connection, attempt: Attempt, state: str) -> None:
    """Close a claimed attempt with its answer; ``state``: delivered, retry or failed."""
    d = webhook_deliveries
    connection.execute(d.update().where(
        d.c.alert_id == attempt.alert_id, d.c.url_sha256 == url_sha256(attempt.url),
        d.c.attempt == attempt.attempt).values(
        attempted_at=attempt.attempted_at, status_code=attempt.status_code, ok=attempt.ok,
        error=None if attempt.error is None else attempt.error[:2_000], duration_ms=attempt.duration_ms,
        state=state))


@dataclass(frozen=True)
class OpenDelivery:
    """The newest row of a delivery not finished: what a starting service resumes."""

    alert: dict[str, Any]
    url_sha256: str
    attempt: int
    attempted_at: str
    state: str


def open_deliveries(connection: Connection) -> list[OpenDelivery]:
    """Deliveries whose newest row is queued, sending or retry, with their alerts, oldest first."""
    d = webhook_deliveries
    rows = connection.execute(select(d.c.alert_id, d.c.url_sha256, d.c.attempt, d.c.attempted_at, d.c.state)
                              .where(d.c.state.in_(OPEN_STATES)).order_by(d.c.id)).all()
    newest: dict[tuple[int, str], Any] = {}
    for row in rows:
        key = (int(row.alert_id), row.url_sha256)
        if key not in newest or row.attempt > newest[key].attempt:
            newest[key] = row
    if not newest:
        return []
    # A later attempt that already finished makes an older open row stale (none is expected).
    finished = {(int(r.alert_id), r.url_sha256, int(r.attempt)) for r in connection.execute(
        select(d.c.alert_id, d.c.url_sha256, d.c.attempt).where(
            d.c.alert_id.in_(sorted({k[0] for k in newest})), d.c.state.notin_(OPEN_STATES)))}
    bodies: dict[int, dict[str, Any]] = {}
    for chunk in _chunks([str(k[0]) for k in newest]):
        bodies.update((int(row.id), alert_json(row)) for row in connection.execute(
            select(alerts).where(alerts.c.id.in_([int(i) for i in chunk]))))
    out = []
    for (alert_id, sha), row in newest.items():
        if alert_id not in bodies or any(f[:2] == (alert_id, sha) and f[2] > row.attempt for f in finished):
            continue
        out.append(OpenDelivery(bodies[alert_id], sha, int(row.attempt), row.attempted_at, row.state))
    return out


def close_delivery(connection: Connection, alert_id: int, sha: str, attempt: int, state: str,
                   error: str | None = None) -> None:
    """Set the state of one attempt's row (``error``: replaces its error text when given)."""
    d = webhook_deliveries
    values: dict[str, Any] = {"state": state}
    if error is not None:
        values["error"] = error
    connection.execute(d.update().where(d.c.alert_id == alert_id, d.c.url_sha256 == sha,
                                        d.c.attempt == attempt).values(**values))


def deliveries_of(engine: Engine, alert_id: int) -> list[dict[str, Any]]:
    """Every attempt to deliver one alert, oldest first. URLs are shown as :func:`display_url` shows
    them, with the first hex digits of their SHA-256 to tell webhooks of one host apart."""
    d = webhook_deliveries
    with engine.connect() as connection:
        rows = connection.execute(select(d).where(d.c.alert_id == alert_id).order_by(d.c.id)).all()
    return [
        {"id": int(row.id), "url": row.url, "urlSha256": row.url_sha256[:12],
         "attempt": row.attempt, "state": row.state,
         "attemptedAt": row.attempted_at, "statusCode": row.status_code, "ok": bool(row.ok),
         "error": row.error, "durationMs": row.duration_ms}
        for row in rows
    ]

