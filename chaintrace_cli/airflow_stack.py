"""Run Airflow 3 for the chain on one machine: LocalExecutor on SQLite, one process each for the
scheduler, the dag-processor and the api-server, all configured by environment variables.

The same settings drive the end-to-end tests and ``chaintrace demo``. Nothing is written outside
``home`` (the Airflow home) and the data root; a JWT secret is generated per home, never committed.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("api-server", "scheduler", "dag-processor")
TERMINAL_RUN_STATES = {"success", "failed"}


class AirflowError(RuntimeError):
    """Airflow did not start, or answered something unexpected; the message says what and where to look."""


@dataclass
class AirflowStack:
    home: Path
    data_root: Path
    api_port: int
    lineage_url: str
    spool_dir: Path
    spec_dir: Path | None = None
    parallelism: int = 3
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    api_key: str | None = field(default=None, repr=False)  # producer key of the lineage service

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _jwt_secret(self) -> str:
        path = self.home / "jwt_secret"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()

    def transport(self) -> dict[str, Any]:
        """Spool-first: a task writes its events to the spool and goes on; the lineage service, on this
        same machine with ``CHAINTRACE_SPOOL_DIR`` on the same folder, watches it and ingests them.
        The producer key (``api_key``) rides along for a switch to ``delivery: http``.

        ``fsync`` off: a spool write costs ~0.2 ms instead of ~10 ms p99, which keeps the per-task
        overhead goal (5 ms); the rename still makes an event outlive a crash of the task, and only a
        crash of the whole machine may lose the last events. Set it to True where that matters more.
        """
        transport: dict[str, Any] = {
            "type": "chaintrace_chain.transport.SpoolingHttpTransport",
            "delivery": "spool",
            "fsync": False,
            "url": self.lineage_url,
            "endpoint": "api/v1/lineage",
            "spool_dir": str(self.spool_dir),
        }
        if self.api_key:
            # The OpenLineage HTTP transport's spelling; sent as a Bearer key when delivery is http.
            transport["auth"] = {"type": "api_key", "apiKey": self.api_key}
        return transport

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(self.parallelism),
                # One machine, one operator: every caller of the local API is an admin.
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__API_AUTH__JWT_SECRET": self._jwt_secret(),
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__OPENLINEAGE__NAMESPACE": "chaintrace",
                "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(self.transport()),
                "CHAINTRACE_DATA_ROOT": str(self.data_root),
                "CHAINTRACE_SPOOL_DIR": str(self.spool_dir),
                # The "Lineage" tab of each DAG (plugins/chaintrace_airflow_ui.py) points here.
                "CHAINTRACE_LINEAGE_UI_URL": self.lineage_url,
                "PYTHONWARNINGS": "ignore",
            }
        )
        if self.spec_dir is not None:
            env["CHAINTRACE_SPEC_DIR"] = str(self.spec_dir)
        env.update(self.extra_env)
        return env

    def _airflow(self) -> str:
        return str(Path(sys.executable).with_name("airflow"))

    def migrate(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        log = self.home / "migrate.log"
        with log.open("wb") as out:
            done = subprocess.run(
                [self._airflow(), "db", "migrate"],
                env=self.environment(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if done.returncode != 0:
            raise AirflowError(f"airflow db migrate failed (exit {done.returncode}); see {log}")

    def start(self) -> None:
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = self.environment()
        for service in SERVICES:
            args = [self._airflow(), service]
            if service == "api-server":
                args += ["--port", str(self.api_port)]
            out = (logs / f"{service}.log").open("ab")
            self.processes[service] = subprocess.Popen(
                args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def check_alive(self) -> None:
        for service, process in self.processes.items():
            if process.poll() is not None:
                log = self.home / "logs" / f"{service}.log"
                raise AirflowError(f"airflow {service} exited with {process.returncode}; see {log}")

    def stop(self, timeout: float = 20.0) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            remaining = max(0.1, deadline - time.monotonic())
            try:
                process.wait(remaining)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        self.processes.clear()

    def client(self) -> AirflowClient:
        return AirflowClient(self.base_url, stack=self)


class AirflowClient:
    """The few calls of Airflow's REST API (``/api/v2``) the chain needs."""

    def __init__(self, base_url: str, stack: AirflowStack | None = None) -> None:
        self.base_url = base_url
        self.stack = stack
        self._http = httpx.Client(base_url=base_url, timeout=30)
        self._token: str | None = None

    def close(self) -> None:
        self._http.close()

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            # With all-admins simple auth, GET /auth/token hands out an admin token.
            response = self._http.get("/auth/token")
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, headers=self._headers(), **kwargs)
        if response.status_code == 401:
            self._token = None
            response = self._http.request(method, path, headers=self._headers(), **kwargs)
        if response.status_code >= 400:
            raise AirflowError(f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    def wait_healthy(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stack is not None:
                self.stack.check_alive()
            try:
                if self._http.get("/api/v2/monitor/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise AirflowError(f"the Airflow api-server at {self.base_url} did not answer within {timeout:.0f} s")

    def dag_ids(self) -> list[str]:
        return [dag["dag_id"] for dag in self._call("GET", "/api/v2/dags", params={"limit": 1000})["dags"]]

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/api/v2/importErrors")["import_errors"])

    def wait_dags(self, dag_ids: list[str], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stack is not None:
                self.stack.check_alive()
            if set(dag_ids) <= set(self.dag_ids()):
                return
            errors = self.import_errors()
            if errors:
                raise AirflowError(f"DAG import errors: {errors}")
            time.sleep(2)
        raise AirflowError(f"DAGs {dag_ids} were not parsed within {timeout:.0f} s (have {self.dag_ids()})")

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self._call("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": paused})

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any] | None = None) -> str:
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        return str(self._call("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"))

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return list(self._call("GET", path, params={"limit": 1000})["task_instances"])
