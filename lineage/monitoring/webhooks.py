"""Webhook delivery: each alert POSTed as JSON to each webhook of its rule, with retries.

A scheduler thread keeps the attempts that are due later (a heap by due time) and hands due ones to a
small pool of sender threads, so one slow webhook never delays another and nothing here ever waits on
ingest or holds it up. Every attempt is a row in ``webhook_deliveries`` (status code, error, attempt,
time). Failures that may pass (no connection, a timeout, 408, 425, 429, 5xx) are retried after
``backoff_s * 2**(attempt-1)`` up to ``max_attempts``; other answers (a 4xx) are final. URLs are never
logged or stored in an error text: only scheme, host and port (a webhook URL often is its own secret).

Deliveries survive a restart: the rows of a delivery are written before its attempts (queued with the
alert, each attempt claimed before its POST: see :mod:`lineage.monitoring.store`), and :meth:`resume`
picks up on start what is queued or due for a retry, with its attempt count and the rest of its backoff.
An attempt claimed by a process that died in the middle of it counts as failed once it is older than the
timeout plus :data:`STALE_AFTER_S`. The claim (a unique row per alert, webhook and attempt) keeps two
processes from making the same attempt.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import orjson
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from lineage.monitoring.rules import AlertRules, WebhookPolicy, display_url
from lineage.monitoring.store import (
    Attempt,
    claim_attempt,
    close_delivery,
    finish_attempt,
    open_deliveries,
    url_sha256,
)
from lineage.store.db import WriterLock
from lineage.store.times import now

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 425, 429})
#: An attempt claimed this long past its timeout is taken to have died with its process.
STALE_AFTER_S = 30.0
USER_AGENT = "chaintrace-lineage-alerts/1"


@dataclass(order=True)
class _Job:
    due: float
    order: int
    alert_id: int = field(compare=False)
    url: str = field(compare=False)
    attempt: int = field(compare=False)
    alert: dict[str, Any] = field(compare=False)


def _epoch(stored_time: str) -> float:
    return datetime.fromisoformat(stored_time).timestamp()


def _scrub(text: str, url: str) -> str:
    """An error text without the URL (or its path) in it."""
    shown = display_url(url)
    for secret in sorted({url, url.split("://", 1)[-1]}, key=len, reverse=True):
        text = text.replace(secret, shown)
    return text


class WebhookSender:
    def __init__(self, engine: Engine, policy: WebhookPolicy, *, workers: int = 4,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.engine = engine
        self.policy = policy
        self.workers = workers
        self._transport = transport
        self.writer_lock = WriterLock(engine)
        self._cond = threading.Condition()
        self._heap: list[_Job] = []
        self._order = itertools.count()
        self._busy = 0  # attempts being made right now
        self._closing = False
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._http: httpx.BaseTransport | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._closing = False
            # The transport itself, not an httpx.Client: the client logs every request's full URL.
            self._http = self._transport or httpx.HTTPTransport()
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="alert-webhook")
            self._thread = threading.Thread(target=self._run, name="alert-webhooks", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop: attempts under way finish (each within the timeout); retries not yet due stay in the
        store, for :meth:`resume` at the next start."""
        with self._cond:
            self._closing = True
            dropped = len(self._heap)
            self._heap.clear()
            self._cond.notify_all()
            thread, self._thread = self._thread, None
            pool, self._pool = self._pool, None
        if thread is not None:
            thread.join(timeout=30)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if self._http is not None and self._transport is None:
            self._http.close()
        self._http = None
        if dropped:
            log.info("%d webhook attempt(s) were still waiting when the service stopped; the next start "
                     "resumes them", dropped)

    # -- queueing -----------------------------------------------------------------------------------

    def submit(self, alert: dict[str, Any], urls: Sequence[str]) -> None:
        """Deliver ``alert`` to each URL (attempt 1 at once; its queued rows are the caller's to write)."""
        self._queue([(0.0, int(alert["id"]), url, 1, alert) for url in urls])

    def _queue(self, jobs: Sequence[tuple[float, int, str, int, dict[str, Any]]]) -> None:
        """(delay in seconds, alert id, URL, attempt, alert) each."""
        if not jobs:
            return
        self.start()
        with self._cond:
            for delay, alert_id, url, attempt, alert in jobs:
                heapq.heappush(self._heap, _Job(time.monotonic() + delay, next(self._order), alert_id, url,
                                                attempt, alert))
            self._cond.notify_all()

    def resume(self, rules: AlertRules, epoch_now: float | None = None) -> int:
        """Take up the deliveries a previous service left unfinished; returns how many were queued.

        The URL comes from the alert's rule (the store keeps only its hash): a delivery to a webhook
        the rules no longer name is closed as failed."""
        moment = time.time() if epoch_now is None else epoch_now
        jobs: list[tuple[float, int, str, int, dict[str, Any]]] = []
        closes: list[tuple[int, str, int, str, str | None]] = []
        with self.engine.connect() as connection:
            pending = open_deliveries(connection)
        for item in pending:
            alert_id = int(item.alert["id"])
            rule = rules.by_name(str(item.alert["rule"]))
            url = next((u for u in (rule.webhooks if rule else ()) if url_sha256(u) == item.url_sha256), None)
            if url is None:
                closes.append((alert_id, item.url_sha256, item.attempt, "failed",
                               "not resumed: the alert rules no longer name this webhook"))
                continue
            attempt, since = item.attempt, moment - _epoch(item.attempted_at)
            if item.state == "queued":
                jobs.append((0.0, alert_id, url, 1, item.alert))
                continue
            if item.state == "sending":
                if since < self.policy.timeout_s + STALE_AFTER_S:
                    continue  # another process is making this attempt now
                closes.append((alert_id, item.url_sha256, attempt, "retry",
                               "interrupted: the service stopped during the attempt"))
            if attempt >= self.policy.max_attempts:
                closes.append((alert_id, item.url_sha256, attempt, "failed", None))
                continue
            delay = self.policy.backoff_s * 2 ** (attempt - 1) - since
            jobs.append((max(0.0, delay), alert_id, url, attempt + 1, item.alert))
        if closes:
            with self.writer_lock.hold(), self.engine.begin() as connection:
                for alert_id, sha, attempt, state, error in closes:
                    close_delivery(connection, alert_id, sha, attempt, state, error)
        self._queue(jobs)
        if jobs:
            log.info("resuming %d webhook deliveries left unfinished", len(jobs))
        return len(jobs)

    def pending(self) -> int:
        """Attempts waiting or under way."""
        with self._cond:
            return len(self._heap) + self._busy

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until no attempt waits or runs (True) or ``timeout`` passes (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._heap or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
            return True

    # -- the threads --------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closing and (not self._heap or self._heap[0].due > time.monotonic()):
                    wait = None if not self._heap else max(0.0, self._heap[0].due - time.monotonic())
                    self._cond.wait(wait)
                if self._closing:
                    return
                due: list[_Job] = []
                while self._heap and self._heap[0].due <= time.monotonic():
                    due.append(heapq.heappop(self._heap))
                self._busy += len(due)
                pool = self._pool
            for job in due:
                try:
                    assert pool is not None
                    pool.submit(self._attempt, job)
                except (AssertionError, RuntimeError):  # closing: the pool is shut
                    return

    def _attempt(self, job: _Job) -> None:
        try:
            ok, retry = self._post(job) if self._claim(job) else (True, False)
        except Exception:  # recording failed (the store is away): try again later, as for a failed POST
            log.exception("webhook attempt %d for alert %d to %s failed unexpectedly", job.attempt,
                          job.alert_id, display_url(job.url))
            ok, retry = False, True
        with self._cond:
            self._busy -= 1
            if not ok and retry and job.attempt < self.policy.max_attempts and not self._closing:
                delay = self.policy.backoff_s * 2 ** (job.attempt - 1)
                heapq.heappush(self._heap, _Job(time.monotonic() + delay, next(self._order), job.alert_id,
                                                job.url, job.attempt + 1, job.alert))
            self._cond.notify_all()

    def _claim(self, job: _Job) -> bool:
        """Is this attempt ours to make (no other process claimed it)?"""
        try:
            with self.writer_lock.hold(), self.engine.begin() as connection:
                claimed = claim_attempt(connection, job.alert_id, job.url, job.attempt, now())
        except IntegrityError:
            claimed = False
        if not claimed:
            log.debug("attempt %d for alert %d to %s is another process's", job.attempt, job.alert_id,
                      display_url(job.url))
        return claimed

    def _post(self, job: _Job) -> tuple[bool, bool]:
        """One POST and its row; (delivered, worth retrying)."""
        http = self._http
        assert http is not None
        body = orjson.dumps({"alert": job.alert, "attempt": job.attempt})
        request = httpx.Request("POST", job.url, content=body, headers={
            "Content-Type": "application/json", "User-Agent": USER_AGENT,
            "X-Chaintrace-Alert-Id": str(job.alert_id), "X-Chaintrace-Delivery-Attempt": str(job.attempt),
        }, extensions={"timeout": httpx.Timeout(self.policy.timeout_s).as_dict()})
        at, started = now(), time.monotonic()
        status: int | None = None
        error: str | None = None
        retry = False
        try:
            response = http.handle_request(request)
            response.close()  # the body is not needed (and may be anything)
            status = response.status_code
            if not 200 <= status < 300:
                retry = status in RETRY_STATUSES or status >= 500
                error = f"HTTP {status}" + ("" if retry else " (not retried: the webhook refused the alert)")
        except httpx.TimeoutException:
            error, retry = f"no answer within {self.policy.timeout_s:g} s", True
        except httpx.HTTPError as exc:
            error, retry = _scrub(f"{type(exc).__name__}: {exc}", job.url), True
        ok = error is None
        attempt = Attempt(job.alert_id, job.url, job.attempt, at, status, ok, error,
                          int((time.monotonic() - started) * 1000))
        final = not retry or job.attempt >= self.policy.max_attempts
        state = "delivered" if ok else "failed" if final else "retry"
        with self.writer_lock.hold(), self.engine.begin() as connection:
            finish_attempt(connection, attempt, state)
        if not ok:
            log.warning("webhook %s: attempt %d for alert %d failed (%s)%s", display_url(job.url),
                        job.attempt, job.alert_id, error, "; giving up" if final else "; will retry")
        return ok, retry
