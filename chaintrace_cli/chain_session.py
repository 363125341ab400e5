"""Start the whole chain on one machine (the lineage service and Airflow), run the dataset DAGs, and
wait for them. ``chaintrace demo`` and the end-to-end tests both drive it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from chaintrace_cli.airflow_client import TERMINAL_RUN_STATES, AirflowClient, AirflowError
from chaintrace_cli.airflow_stack import AirflowStack
from lineage.settings import LineageSettings
from lineage.spool_format import list_events
from lineage.store.db import create_store_engine, migrate
from lineage.store.keys import authenticate, create_key, split_token

# task id -> state, per dataset; called on every poll so callers can draw progress.
ProgressCallback = Callable[[str, dict[str, str | None]], None]


def free_port(preferred: int = 0) -> int:
    """``preferred`` when nothing listens there (0: any free port)."""
    if preferred:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", preferred)) != 0:
                return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: Where a session keeps its keys, under ``<data root>/lineage/`` (mode 0600: the tokens are secrets).
KEYS_FILE = "demo-keys.json"
# role -> (key name, clearance) of the keys a session makes.
_SESSION_KEYS: dict[str, tuple[str, str]] = {
    "producer": ("demo-producer", "L1"), "admin": ("demo-admin", "L4"),
}


@dataclass(frozen=True)
class ServiceKeys:
    """The session's API keys: Airflow writes events with the producer key, people read with the admin key."""

    producer: str = field(repr=False)
    admin: str = field(repr=False)
    path: Path

    def headers(self, role: Literal["producer", "admin"] = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.producer if role == 'producer' else self.admin}"}


def _write_private(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON readable by its owner only (created 0600, then renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an older file of looser mode keeps its mode through O_TRUNC
        os.write(fd, json.dumps(data, indent=2).encode() + b"\n")
    finally:
        os.close(fd)
    os.replace(tmp, path)


def ensure_service_keys(db_url: str, path: Path) -> ServiceKeys:
    """The producer and admin keys recorded in ``path`` when the store still honours them, else new ones.

    The store is migrated first (the keys table must exist before the service starts). Reusing the
    recorded keys keeps a data root's store from gathering a pair of keys per demo run.
    """
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = {}
    engine = create_store_engine(db_url)
    try:
        migrate(engine)
        tokens: dict[str, str] = {}
        for role, (name, clearance) in _SESSION_KEYS.items():
            entry = saved.get(role) if isinstance(saved, dict) else None
            token = entry.get("token") if isinstance(entry, dict) else None
            key = authenticate(engine, token) if isinstance(token, str) else None
            if key is None or key.role != role:
                token = create_key(engine, name=name, role=role, clearance=clearance)[1]
            assert isinstance(token, str)
            tokens[role] = token
    finally:
        engine.dispose()
    record = {role: {"key_id": (split_token(token) or ("?", ""))[0], "name": _SESSION_KEYS[role][0],
                     "token": token} for role, token in tokens.items()}
    _write_private(path, {"note": "API keys of the lineage service; send as Authorization: Bearer <token>",
                          **record})
    return ServiceKeys(producer=tokens["producer"], admin=tokens["admin"], path=path)


def airflow_run_id(event: dict[str, Any]) -> str | None:
    """The Airflow DAG run an OpenLineage event belongs to (the provider's ``airflow`` or
    ``airflowDagRun`` run facet), or None."""
    facets = event.get("run", {}).get("facets", {})
    for key in ("airflow", "airflowDagRun"):
        dag_run = facets.get(key, {}).get("dagRun")
        if dag_run:
            return str(dag_run.get("run_id"))
    return None


@dataclass
class LineageService:
    """The lineage service as its own process (``chaintrace lineage serve``), and the keys of its store."""

    data_root: Path
    port: int
    spool_dir: Path | None = None
    db_url: str | None = None
    airflow_url: str | None = None  # Airflow's UI: the web UI's run view links there
    process: subprocess.Popen[bytes] | None = None
    keys: ServiceKeys | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def store_url(self) -> str:
        """The store the service process will use (same settings: its environment is this one's)."""
        if self.db_url:
            return self.db_url
        return LineageSettings(data_root=self.data_root).resolved_db_url()

    def provision_keys(self) -> ServiceKeys:
        """Make sure the store has the session's producer and admin keys (kept in <data root>/lineage/)."""
        if self.keys is None:
            self.keys = ensure_service_keys(self.store_url(), self.data_root / "lineage" / KEYS_FILE)
        return self.keys

    def headers(self, role: Literal["producer", "admin"] = "admin") -> dict[str, str]:
        """Headers that carry the session's key of ``role`` (admin: reads everything)."""
        return self.provision_keys().headers(role)

    def start(self, timeout: float = 60) -> None:
        self.provision_keys()
        env = dict(os.environ, CHAINTRACE_DATA_ROOT=str(self.data_root))
        if self.spool_dir is not None:
            env["CHAINTRACE_SPOOL_DIR"] = str(self.spool_dir)
        if self.db_url:
            env["CHAINTRACE_DB_URL"] = self.db_url
        if self.airflow_url:
            env["CHAINTRACE_AIRFLOW_URL"] = self.airflow_url
        self.data_root.mkdir(parents=True, exist_ok=True)
        log = (self.data_root / "lineage-service.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chaintrace_cli.main", "lineage", "serve", "--port", str(self.port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the lineage service exited; see {self.data_root / 'lineage-service.log'}"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the lineage service did not answer on {self.url} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.process = None

    def wait_projected(self, timeout: float = 60) -> None:
        """Until the service has taken every spooled event and every acknowledged event is queryable.

        Producers deliver spool-first: an event reaches the store only when the service's spool watcher
        takes its file, so the spool must be empty first (a file goes once its event is committed).
        """
        deadline = time.monotonic() + timeout
        while self.spool_dir is not None and list_events(self.spool_dir):
            if time.monotonic() >= deadline:
                left = len(list_events(self.spool_dir))
                raise TimeoutError(f"the lineage service did not take the {left} event file(s) left in "
                                   f"{self.spool_dir} within {timeout:.0f} s; see "
                                   f"{self.data_root / 'lineage-service.log'}")
            time.sleep(0.1)
        while time.monotonic() < deadline:
            health = httpx.get(f"{self.url}/healthz", timeout=5).json()
            if health["projected"] >= health["acknowledged"]:
                return
            time.sleep(0.2)
        raise TimeoutError("the lineage service did not project its events in time")


@dataclass
class ChainSession:
    data_root: Path
    lineage_port: int = 0
    airflow_port: int = 0
    spec_dir: Path | None = None
    parallelism: int = 3
    extra_env: dict[str, str] = field(default_factory=dict)  # for Airflow's processes, e.g. switches
    lineage: LineageService = field(init=False)
    stack: AirflowStack = field(init=False)
    client: AirflowClient = field(init=False)

    def __post_init__(self) -> None:
        self.data_root = self.data_root.expanduser().resolve()
        spool = self.data_root / "lineage-spool"
        self.lineage = LineageService(self.data_root, free_port(self.lineage_port), spool_dir=spool)
        self.stack = AirflowStack(
            home=self.data_root / "airflow",
            data_root=self.data_root,
            api_port=free_port(self.airflow_port),
            lineage_url=self.lineage.url,
            spool_dir=spool,
            spec_dir=self.spec_dir,
            parallelism=self.parallelism,
            extra_env=dict(self.extra_env),
        )
        self.lineage.airflow_url = self.stack.base_url
        self.client = self.stack.client()

    def start(self, dag_ids: list[str], *, with_lineage: bool = True) -> None:
        # Airflow's OpenLineage transport carries the producer key (used when it posts over HTTP;
        # spool-first delivery only writes files), so the key must exist before Airflow starts.
        self.stack.api_key = self.lineage.provision_keys().producer
        if with_lineage:
            self.lineage.start()
        self.stack.migrate()
        self.stack.start()
        self.client.wait_healthy()
        self.client.wait_dags(dag_ids)

    def stop(self) -> None:
        self.client.close()
        self.stack.stop()
        self.lineage.stop()

    def trigger_all(self, dag_ids: list[str], run_id: str) -> dict[str, str]:
        runs = {dag_id: self.client.trigger(dag_id, run_id) for dag_id in dag_ids}
        for dag_id in dag_ids:
            self.client.set_paused(dag_id, False)
        return runs

    def wait_runs(
        self, runs: dict[str, str], *, timeout: float = 1800, on_progress: ProgressCallback | None = None
    ) -> dict[str, dict[str, Any]]:
        """Poll until every run is terminal; returns the final dag run per dataset."""
        deadline = time.monotonic() + timeout
        final: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            self.stack.check_alive()
            for dag_id, run_id in runs.items():
                if dag_id in final:
                    continue
                if on_progress is not None:
                    states = {ti["task_id"]: ti["state"] for ti in self.client.task_instances(dag_id, run_id)}
                    on_progress(dag_id, states)
                run = self.client.dag_run(dag_id, run_id)
                if run["state"] in TERMINAL_RUN_STATES:
                    final[dag_id] = run
            if len(final) == len(runs):
                return final
            time.sleep(2)
        pending = sorted(set(runs) - set(final))
        raise AirflowError(f"DAG runs still not finished after {timeout:.0f} s: {pending}")
