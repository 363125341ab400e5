"""Monitoring as a service: alerts derived from events, the audit log and the clock; the live stream;
webhook delivery.

Kept off the ingest writer like the audit service: the writer only wakes the worker
(:meth:`MonitoringService.on_commit`), which reads the projected raw events past its watermark
(``store_meta['monitoring_events']``; the derived graph is needed to find a dataset's previous version)
and the audit log past another (``monitoring_audit``). Alerts and watermarks move in one transaction and
every alert has a dedup key (rule, subject, run), so a restart, or a second service process deriving the
same events, neither misses nor repeats an alert; the process that stores an alert delivers it. The
worker also polls every :data:`POLL_S` (violations the classification service records come without a
commit) and checks ``data_late`` rules every ``late_check_s``.

Every process streams every event and every alert (other processes' too: it reads the ``alerts`` table
past the newest id it has seen), so a client may be served by any of them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import Connection, Engine, event, or_, select
from sqlalchemy.exc import IntegrityError

from lineage.monitoring import detect
from lineage.monitoring.late import ScheduleCache
from lineage.monitoring.rules import AlertRules, load_rules
from lineage.monitoring.schemas import SchemaWatch
from lineage.monitoring.store import NewAlert, alert_json, alerts, insert_alerts, max_id, queue_deliveries
from lineage.monitoring.stream import StreamHub
from lineage.monitoring.webhooks import WebhookSender
from lineage.service.background import BackgroundWorker
from lineage.store import schema as s
from lineage.store.db import WriterLock
from lineage.store.events import projected_upto
from lineage.store.times import now

log = logging.getLogger(__name__)

EVENTS_KEY = "monitoring_events"
AUDIT_KEY = "monitoring_audit"
#: Raw event ids (or audit rows) looked at per pass.
SCAN_IDS = 2_000
#: After a wake-up, wait this long so that commits arriving together are handled in one pass.
DEBOUNCE_S = 0.05
#: Without a wake-up, look at the store this often (violations recorded without a commit, alerts of
#: other processes for the stream).
POLL_S = 0.25
WATERMARK_EVERY_S = 1.0
IDLE_EXIT_S = 5.0
#: On PostgreSQL ids come from sequences and may commit out of order: look this many ids back.
PG_LOOKBACK_IDS = 200
_REMEMBERED = 10_000  # ids of recently handled violations and published alerts

def read_meta(connection: Connection, key: str) -> int:
    value = connection.execute(select(s.store_meta.c.value).where(s.store_meta.c.key == key)).scalar()
    return int(value or 0)


def write_meta(connection: Connection, key: str, upto: int) -> None:
    """Move a watermark forward (never back: another process may be ahead of this one)."""
    current = connection.execute(select(s.store_meta.c.value).where(s.store_meta.c.key == key)).scalar()
    if current is None:
        connection.execute(s.store_meta.insert().values(key=key, value=str(upto)))
    elif int(current) < upto:
        connection.execute(s.store_meta.update().where(s.store_meta.c.key == key).values(value=str(upto)))


def alert_namespaces(body: dict[str, Any]) -> frozenset[str]:
    """The namespaces of an alert's job and dataset (the stream's filter)."""
    return frozenset(ref["namespace"] for ref in (body["job"], body["dataset"]) if ref is not None)


class _Recent:
    """A bounded set of ids."""

    def __init__(self, size: int = _REMEMBERED) -> None:
        self._order: deque[int] = deque()
        self._ids: set[int] = set()
        self._size = size

    def add(self, value: int) -> None:
        if value in self._ids:
            return
        self._order.append(value)
        self._ids.add(value)
        if len(self._order) > self._size:
            self._ids.discard(self._order.popleft())

    def __contains__(self, value: int) -> bool:
        return value in self._ids


class MonitoringService:
    def __init__(
        self, engine: Engine, rules_file: Path | None = None, *, rules: AlertRules | None = None,
        heartbeat_s: float = 15.0, stream_max_s: float = 30.0, buffer_size: int = 2_000,
        clock: Callable[[], float] = time.time, transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``rules`` (else the file ``rules_file``, else the shipped rules); ``heartbeat_s``: a comment on
        an idle stream this often; ``stream_max_s``: a stream ends after this long (the client reconnects
        and resumes: a server that stops waits for its open streams to end); ``buffer_size``: the
        stream's items kept for slow and reconnecting clients; ``clock``: epoch seconds now, for
        data_late; ``transport``: the webhooks' HTTP transport (tests)."""
        self.engine = engine
        self.rules = rules if rules is not None else load_rules(rules_file)
        self.heartbeat_s = heartbeat_s
        self.stream_max_s = stream_max_s
        self.clock = clock
        self.hub = StreamHub(buffer_size)
        self.webhooks = WebhookSender(engine, self.rules.webhook, transport=transport)
        self.writer_lock = WriterLock(engine)
        self.schema_watch = SchemaWatch()
        self.schedules = ScheduleCache()
        self._lookback = PG_LOOKBACK_IDS if engine.dialect.name == "postgresql" else 0
        self._pass_lock = threading.Lock()
        # Started: the worker runs until close (the clock drives data_late). Else (woken by commits
        # only, as in a context nobody started) it ends after IDLE_EXIT_S without commits, so it never
        # outlives its store.
        self.worker = BackgroundWorker("monitoring", self._round, debounce_s=DEBOUNCE_S,
                                       idle_exit_s=IDLE_EXIT_S, poll_s=POLL_S)
        self._positions_known = False
        self._derived = 0  # raw events derived by this process (may run ahead of the stored watermark)
        self._stream_pos = 0  # raw events streamed
        self._audit_seen = 0
        self._alert_seen = 0
        self._violations = _Recent()
        self._published = _Recent()
        self._stored_at = 0.0
        self._stored_marks = (0, 0)  # (events, audit) watermarks as this process last wrote them
        self._next_late = 0.0
        self._polled_at = 0.0
        kinds = {rule.kind for rule in self.rules.rules}
        self._run_kinds = bool(kinds & {"run_failed", "gate_failed"})
        self._schema_kind = "schema_changed" in kinds
        self._violation_kind = "policy_violation" in kinds
        e = s.events
        # What may raise a gate or run alert; the database filters by it, in C. Schema changes: the
        # database picks the outputs' schema facets out of the payloads (lineage.monitoring.schemas).
        self._candidates = [
            *([e.c.event_type.in_(sorted(detect.FAILED_TYPES))] if self._run_kinds else []),
            *([e.c.payload.contains("dataQualityAssertions")] if "gate_failed" in kinds else []),
        ]
        self.raised = 0  # alerts this process stored (tests, logs)
        # False while another process (the projector, see lineage.service.child_derivations) derives
        # the alerts: this one then only streams events and the alerts it reads from the store.
        self.derive = True
        # The context disposes the engine when it closes: stop then at the latest (without writing:
        # a write now would open a connection in the pool the engine has just emptied).
        event.listen(engine, "engine_disposed", lambda _engine: self.close(store_watermarks=False))

    # -- lifecycle ----------------------------------------------------------------------------------

    def on_commit(self, created: int) -> None:
        """Called by the ingest writer after each projection: wake the worker, never work here."""
        self.worker.wake()

    def start(self) -> None:
        """Start the worker: it derives what a previous process left, then follows the store (and the
        clock, for data_late) until :meth:`close`; and resume the webhook deliveries left unfinished."""
        if self.derive:
            self._resume_webhooks()
        self.worker.start(keep_running=True)

    def _resume_webhooks(self) -> None:
        try:
            self.webhooks.resume(self.rules)
        except Exception:  # the rows stay: the next start tries again
            log.exception("could not resume the unfinished webhook deliveries")

    def take_over(self) -> None:
        """Derive here from now on (the process that derived stopped), from its stored watermarks."""
        with self._pass_lock:
            with self.engine.connect() as connection:
                self._derived = read_meta(connection, EVENTS_KEY)
                self._audit_seen = read_meta(connection, AUDIT_KEY)
            self.schema_watch.forget()
            self.derive = True
        self._resume_webhooks()
        self.worker.wake()

    def close(self, *, store_watermarks: bool = True) -> None:
        """Stop the worker (after the pass it is in) and the webhook sender."""
        self.worker.close()
        self.webhooks.close()
        with self._pass_lock:
            if store_watermarks and self.derive and (self._derived, self._audit_seen) != self._stored_marks:
                try:
                    self._store([], {EVENTS_KEY: self._derived, AUDIT_KEY: self._audit_seen})
                except Exception:  # only a shortcut is lost: the next start derives a little more again
                    log.warning("could not store the monitoring watermarks on close", exc_info=True)

    def _round(self) -> None:
        # The audit log and other processes' alerts are looked at every POLL_S, not on every commit:
        # under load commits come far more often, and the events pass is what they need.
        # Only streaming: other processes' alerts are all there is to stream, so look on every round.
        self._pass(poll=not self.derive or time.monotonic() - self._polled_at >= POLL_S)
        if self.derive and time.monotonic() >= self._next_late:
            self._next_late = time.monotonic() + self.rules.late_check_s
            self.check_late()

    # -- passes -------------------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Derive alerts from every projected event and audit row not looked at yet, and stream what
        is new; returns the alerts this call stored."""
        return self._pass(poll=True)

    def _pass(self, *, poll: bool) -> int:
        raised = 0
        with self._pass_lock:
            self._know_positions()
            while True:
                count, more = self._events_pass()
                raised += count
                if not more:
                    break
            if poll:
                self._polled_at = time.monotonic()
                if self.derive:
                    raised += self._violations_pass()
                self._others_alerts()
        return raised

    def check_late(self) -> int:
        """Raise the alerts of data_late rules now; returns how many were stored."""
        if not self.rules.of_kind("data_late"):
            return 0
        with self._pass_lock:
            with self.engine.connect() as connection:
                findings = detect.late_findings(connection, self.rules, self.clock(), self.schedules)
            return self._raise(detect.alerts_for(self.rules, findings), {})

    def _know_positions(self) -> None:
        if self._positions_known:
            return
        with self.engine.connect() as connection:
            self._derived = read_meta(connection, EVENTS_KEY)
            self._audit_seen = read_meta(connection, AUDIT_KEY)
            # The stream starts now: history is in the read API, not replayed to subscribers.
            self._stream_pos = projected_upto(connection)
            self._alert_seen = max_id(connection, alerts)
        self._positions_known = True

    def _events_pass(self) -> tuple[int, bool]:
        e = s.events
        with self.engine.connect() as connection:
            upto = projected_upto(connection)
            stored = read_meta(connection, EVENTS_KEY)
        derived = self._derived
        if not self.derive:
            derived = upto  # another process derives them: stream only
        elif stored > derived:
            self.schema_watch.forget()  # another process derived events this one never saw
            derived = stored
        wanted = self.hub.wanted()
        if not wanted:
            self._stream_pos = max(self._stream_pos, upto)
        stream_from = self._stream_pos
        low = min(derived, stream_from)
        if low >= upto:
            if self.derive:
                self._derived = derived
            return 0, False
        high = min(upto, low + SCAN_IDS)
        findings: list[detect.Finding] = []
        items: list[tuple[str, str, frozenset[str], dict[str, Any]]] = []
        with self.engine.connect() as connection:
            base = select(e.c.id, e.c.event_time, e.c.payload).where(e.c.id <= high).order_by(e.c.id)
            rows: Iterable[Any] = ()
            if stream_from < high:  # subscribers: every event, for its summary
                rows = connection.execute(base.where(e.c.id > low))
            elif self._candidates:  # else no rule looks at events and no one streams them
                rows = connection.execute(base.where(e.c.id > derived, or_(*self._candidates)))
            for event_id, event_time, payload in rows:
                event = orjson.loads(payload)
                if event_id > stream_from:
                    items.append((f"e{event_id}", "event", detect.namespaces_of(event),
                                  {"id": int(event_id), **detect.summary(event)}))
                if event_id > derived:
                    # Most events fail nothing and carry no assertion: spare looking through them.
                    assertions = "dataQualityAssertions" in payload
                    if self._run_kinds and (assertions or event.get("eventType") in detect.FAILED_TYPES):
                        findings += detect.event_findings(event_id, event_time, event)
            if self._schema_kind and high > derived:
                findings += self.schema_watch.findings(connection, derived, high)
        self.hub.publish(items)
        self._stream_pos = max(self._stream_pos, high)
        new_alerts = detect.alerts_for(self.rules, detect.dedupe(findings))
        raised = 0
        if high > derived:
            raised = self._raise(new_alerts, {EVENTS_KEY: high})
            self._derived = high
        return raised, high < upto

    def _violations_pass(self) -> int:
        a = s.audit_log
        start = max(0, self._audit_seen - self._lookback)
        with self.engine.connect() as connection:
            if not self._violation_kind:
                self._audit_seen = max(self._audit_seen, max_id(connection, a))
                return 0
            # Ids and kinds first (a range of the primary key), whole rows of the violations only.
            heads = connection.execute(
                select(a.c.id, a.c.kind).where(a.c.id > start).order_by(a.c.id).limit(SCAN_IDS)).all()
            wanted = [int(i) for i, kind in heads if kind == "violation" and int(i) not in self._violations]
            rows = connection.execute(
                select(a.c.id, a.c.at, a.c.dataset_namespace, a.c.dataset_name, a.c.field, a.c.subject,
                       a.c.reason, a.c.details).where(a.c.id.in_(wanted)).order_by(a.c.id),
            ).all() if wanted else []
        if not heads:
            return 0
        fresh = list(rows)
        upto = max(self._audit_seen, int(heads[-1].id))
        findings = [detect.violation_finding(row) for row in fresh]
        raised = self._raise(detect.alerts_for(self.rules, detect.dedupe(findings)), {AUDIT_KEY: upto})
        for row in fresh:
            self._violations.add(int(row.id))
        self._audit_seen = upto
        return raised

    def _others_alerts(self) -> None:
        """Stream the alerts other service processes stored."""
        start = max(0, self._alert_seen - self._lookback)
        with self.engine.connect() as connection:
            a = alerts.c
            ids = [int(i) for i in connection.execute(
                select(a.id).where(a.id > start).order_by(a.id).limit(SCAN_IDS)).scalars()]
            unseen = [i for i in ids if i not in self._published]
            rows = connection.execute(select(alerts).where(a.id.in_(unseen)).order_by(a.id)).all() \
                if unseen and self.hub.wanted() else []
        if ids:
            self._alert_seen = max(self._alert_seen, ids[-1])
        for alert_id in unseen:  # not wanted now: never to be streamed later
            self._published.add(alert_id)
        self.hub.publish(
            (f"a{body['id']}", "alert", alert_namespaces(body), body) for body in map(alert_json, rows))

    # -- storing, streaming and delivering alerts ---------------------------------------------------

    def _raise(self, candidates: list[NewAlert], watermarks: dict[str, int]) -> int:
        """Store the new alerts (and move ``watermarks``), stream them, hand them to the webhooks."""
        if not candidates and (not watermarks or time.monotonic() - self._stored_at < WATERMARK_EVERY_S):
            return 0
        stored = self._store(candidates, watermarks)
        self._publish_alerts([body for body, _ in stored])
        for body, webhooks in stored:
            self.webhooks.submit(body, webhooks)
        self.raised += len(stored)
        return len(stored)

    def _store(self, candidates: list[NewAlert], watermarks: dict[str, int]
               ) -> list[tuple[dict[str, Any], tuple[str, ...]]]:
        for attempt in range(3):
            try:
                with self.writer_lock.hold(), self.engine.begin() as connection:
                    stored = insert_alerts(connection, candidates)
                    # Owed from the start: a service stopping before the first attempt leaves a row the
                    # next start resumes.
                    queue_deliveries(connection, [(int(body["id"]), url) for body, alert in stored
                                                  for url in alert.webhooks], now())
                    for key, value in watermarks.items():
                        write_meta(connection, key, value)
                self._stored_at = time.monotonic()
                self._stored_marks = (max(self._stored_marks[0], watermarks.get(EVENTS_KEY, 0)),
                                      max(self._stored_marks[1], watermarks.get(AUDIT_KEY, 0)))
                return [(body, alert.webhooks) for body, alert in stored]
            except IntegrityError:
                # Another process stored one of these alerts between our check and our insert; the
                # retry sees it and skips it (that process delivers it).
                if attempt == 2:
                    raise
        return []

    def _publish_alerts(self, bodies: list[dict[str, Any]]) -> None:
        for body in bodies:
            self._published.add(int(body["id"]))
        if not bodies or not self.hub.wanted():
            return
        self.hub.publish((f"a{body['id']}", "alert", alert_namespaces(body), body) for body in bodies)
