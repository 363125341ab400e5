"""Engine creation and migrations for the lineage store (SQLite by default, PostgreSQL at scale)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
WAL_AUTOCHECKPOINT_PAGES = 16384  # 64 MB of 4 KB pages (small pages: a commit of a few events writes
# every page it touches to the WAL, so 16 KB pages made small commits 4x dearer)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer; NORMAL sync is durable across a process crash (SIGKILL),
    # which is what an acknowledged 201 promises; busy_timeout lets several processes share the file.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=OFF")
    cursor.execute("PRAGMA cache_size=-65536")
    # Checkpoints (copy WAL into the file + fsync) cost more than the commits that trigger them; the
    # service runs them on a background thread (WalCheckpointer), so commits rarely hit this limit.
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    cursor.close()


def create_store_engine(url: str, *, pool_size: int = 8) -> Engine:
    """An engine for ``url``; for SQLite the parent folder is created and WAL mode is set."""
    sa_url = make_url(url)
    if sa_url.get_backend_name() == "sqlite":
        database = sa_url.database
        if not database or database == ":memory:":
            engine = create_engine(sa_url, connect_args={"check_same_thread": False})
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            sa_url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if sa_url.get_backend_name() == "postgresql" and sa_url.get_driver_name() in ("", "psycopg2"):
        # psycopg (v3) is the driver we ship; plain postgresql:// URLs mean it.
        sa_url = sa_url.set(drivername="postgresql+psycopg")
    return create_engine(sa_url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def alembic_config(url: str) -> Config:
    # Imported here: Alembic takes half a second to import and the projector process never migrates.
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' would be read as interpolation by configparser.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the store's schema to the newest Alembic revision (run on every service start)."""
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
    log.info("lineage store migrated to head")


class WalCheckpointer:
    """Runs SQLite WAL checkpoints off the commit path, every ``interval`` seconds while running.

    A PASSIVE checkpoint never blocks readers or the writer; it only copies frames no reader needs.
    Doing it here keeps the WAL small without making a request wait for an fsync.
    """

    def __init__(self, engine: Engine, interval: float = 0.5) -> None:
        self.engine = engine
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0

    def start(self) -> None:
        if self.engine.dialect.name != "sqlite" or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="wal-checkpointer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with self.engine.connect() as connection:
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
                self.checkpoints += 1
            except Exception:  # a failed checkpoint is retried next round; it loses nothing
                log.warning("WAL checkpoint failed", exc_info=True)


def sqlite_lock_path(engine: Engine, name: str) -> str | None:
    """``<db>.<name>`` beside a SQLite store's file (what its cross-process flocks lock); None for
    PostgreSQL and in-memory stores, which no other process can share through a file."""
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        return f"{database}.{name}"
    return None


def open_lock_file(path: str) -> int:
    """A descriptor on the lock file ``path`` (created if missing), for ``fcntl.flock``."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


class WriterLock:
    """A cross-process lock around SQLite write transactions (an flock on ``<db>.writer-lock``).

    SQLite's own busy handler sleeps 1 to 100 ms between retries, so two service processes writing the
    same file spend most of their time asleep. A blocking flock wakes the waiter the moment the holder
    releases it. PostgreSQL needs none of this (an advisory lock in the transaction does the job).
    """

    def __init__(self, engine: Engine) -> None:
        self._path = sqlite_lock_path(engine, "writer-lock")
        self._local = threading.Lock()
        self._fd: int | None = None  # opened once: the ingest writer takes this lock on every commit

    @contextmanager
    def hold(self) -> Iterator[None]:
        if self._path is None:
            yield
            return
        with self._local:
            if self._fd is None:
                self._fd = open_lock_file(self._path)
            fd = self._fd
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    @property
    def is_file_lock(self) -> bool:
        """A SQLite file's lock (PostgreSQL and in-memory stores have none)."""
        return self._path is not None

    def try_acquire(self) -> bool:
        """Take the lock only if nobody holds it (never waits); :meth:`release` gives it back."""
        if not self._local.acquire(blocking=False):
            return False
        if self._path is None:
            return True
        try:
            if self._fd is None:
                self._fd = open_lock_file(self._path)
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by another process (EWOULDBLOCK), or the lock file cannot be opened
            self._local.release()
            return False
        return True

    def release(self) -> None:
        if self._path is not None and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._local.release()

    def __del__(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
