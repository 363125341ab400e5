"""One process per store for a role (the projector, the derivations), whatever the number of workers.

``chaintrace lineage serve --workers N`` starts N service processes, each with its own projector and
derivations child. Neither role needs more than one process per store, and N of them cost N times the
CPU for the same rows (the projectors build the same batch and all but one throw it away; every
derivations process derives everything again and finds its rows already stored). So the children of
one role elect a leader with a lock the operating system frees when its holder dies: an ``flock`` on
``<db>.<role>-lock`` for a SQLite file, a session-level advisory lock for PostgreSQL. Correctness never
depends on it (projection and derivations are idempotent and keyed by watermarks in the store): a
leader that is gone is replaced by the next follower that tries the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time

from sqlalchemy import Connection, Engine, text

from lineage.store.db import open_lock_file, sqlite_lock_path

log = logging.getLogger(__name__)

# A follower asks again at most this often (asking costs a query on PostgreSQL).
RETRY_S = 1.0
# PostgreSQL advisory lock keys, one per role (the store's writer lock is 7345120931).
_PG_KEYS = {"projector": 7345120932, "derivations": 7345120933}


class StoreRole:
    """A role in a store that one process at a time holds; :meth:`try_take` never waits."""

    def __init__(self, engine: Engine, role: str, *, retry_s: float = RETRY_S) -> None:
        if role not in _PG_KEYS:
            raise ValueError(f"unknown store role {role!r}; known: {', '.join(sorted(_PG_KEYS))}")
        self.engine = engine
        self.role = role
        self.retry_s = retry_s
        self.held = False
        self._asked = float("-inf")  # monotonic time of the last refused attempt
        self._fd: int | None = None
        self._connection: Connection | None = None
        self._path = sqlite_lock_path(engine, f"{role}-lock")

    def try_take(self) -> bool:
        """True when this process holds the role (now or already); False while another one does (it
        asks the store again only ``retry_s`` after a refusal)."""
        if self.held:
            return True
        now = time.monotonic()
        if now - self._asked < self.retry_s:
            return False
        self._asked = now
        try:
            if self._path is not None:
                self.held = self._take_file_lock(self._path)
            elif self.engine.dialect.name == "postgresql":
                self.held = self._take_advisory_lock()
            else:  # an in-memory store: no other process can open it
                self.held = True
        except Exception:  # the store is unreachable now: act as a follower, try again later
            log.warning("could not ask for the %s role", self.role, exc_info=True)
            self.held = False
        if self.held:
            log.info("this process took the %s role for the store", self.role)
        return self.held

    def _take_file_lock(self, path: str) -> bool:
        if self._fd is None:
            self._fd = open_lock_file(path)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _take_advisory_lock(self) -> bool:
        # A session lock lives as long as its connection: this one stays checked out of the pool.
        if self._connection is None:
            self._connection = self.engine.connect()
        taken = bool(self._connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                              {"key": _PG_KEYS[self.role]}).scalar())
        self._connection.commit()  # end the implicit transaction; the session lock stays
        return taken

    def release(self) -> None:
        """Give the role up (on exit; dying gives it up too)."""
        self.held = False
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
        if self._connection is not None:
            with contextlib.suppress(Exception):
                # Unlocked at once (a closed session's locks go only when its backend has exited), then
                # invalidated, not returned to the pool, so no lock can linger in a pooled session.
                unlock = text("SELECT pg_advisory_unlock(:key)")
                self._connection.execute(unlock, {"key": _PG_KEYS[self.role]})
                self._connection.invalidate()
                self._connection.close()
            self._connection = None
