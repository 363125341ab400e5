"""One background worker for what is derived from the store after each projection.

The classification levels, the audit rows derived from governance facets and the monitoring alerts
all follow the same shape: the ingest writer must never wait for them, so a commit only *wakes* a
daemon thread; a short pause lets a burst of commits cost one pass; a failed pass is logged and tried
again (the store keeps everything); and a worker nobody started for good ends after a while without
wake-ups, so it never outlives its store (the next wake-up starts it again).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class BackgroundWorker:
    """Runs ``work`` on a daemon thread after wake-ups (and every ``poll_s`` when set).

    ``keep_running`` (see :meth:`start`) keeps the thread alive until :meth:`close`; otherwise it ends
    ``idle_exit_s`` after the last wake-up.
    """

    def __init__(
        self,
        name: str,
        work: Callable[[], object],
        *,
        debounce_s: float,
        idle_exit_s: float = 5.0,
        poll_s: float | None = None,
        retry_s: float = 1.0,
    ) -> None:
        self.name = name
        self.work = work
        self.debounce_s = debounce_s
        self.idle_exit_s = idle_exit_s
        self.poll_s = poll_s
        self.retry_s = retry_s
        self._thread_lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._keep_running = False

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def wake(self) -> None:
        """Ask for a pass soon; never blocks on the work (called on the ingest writer's thread)."""
        if self._closing.is_set():
            return
        with self._thread_lock:
            # Set under the lock: a thread deciding to end looks at it under the same lock.
            self._wake.set()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def start(self, *, keep_running: bool = False) -> None:
        """Allow wake-ups again (after :meth:`close`) and run a pass now."""
        self._closing.clear()
        self._keep_running = keep_running
        self.wake()

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop after the pass in flight; wake-ups are ignored until :meth:`start`."""
        self._keep_running = False
        self._closing.set()
        self._wake.set()
        with self._thread_lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=timeout_s)
            if thread.is_alive():
                log.warning("%s: the worker did not stop within %.0f s", self.name, timeout_s)
        self._wake.clear()

    def _run(self) -> None:
        last_wake = time.monotonic()
        wait_s = self.poll_s if self.poll_s is not None else self.idle_exit_s
        while not self._closing.is_set():
            if self._wake.wait(wait_s):
                # Closing is looked at after the pause too: close() sets the wake-up, and clearing it
                # here would leave close() waiting for the idle timeout.
                if self._closing.wait(self.debounce_s):
                    return
                self._wake.clear()
                last_wake = time.monotonic()
            else:
                if not self._keep_running and time.monotonic() - last_wake >= self.idle_exit_s:
                    with self._thread_lock:
                        if not self._wake.is_set():  # wake() sets it under this lock: none is lost
                            self._thread = None
                            return
                    continue
                if self.poll_s is None:
                    continue
            if self._closing.is_set():
                return
            try:
                self.work()
            except Exception:  # the store keeps everything; the next pass tries again
                log.exception("%s: pass failed; will retry", self.name)
                if self._closing.wait(self.retry_s):
                    return
                if self.poll_s is None:
                    self._wake.set()

    def on_worker_thread(self) -> bool:
        """Is the caller the worker itself?"""
        return threading.current_thread() is self._thread
