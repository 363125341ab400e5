"""Run Airflow 3 for the chain outside Docker, configured by environment variables only.

Two shapes:

* ``executor="local"`` (``chaintrace demo``, tests/e2e): LocalExecutor on SQLite, one process each for
  the scheduler, the dag-processor and the api-server.
* ``executor="celery"`` (tests/scaleout, bench ``backfill``): the services of docker-compose.yml with the
  same commands and settings (``CELERY_SETTINGS`` holds the values .env.example gives every container):
  CeleryExecutor with a Redis broker, PostgreSQL for the metadata and the Celery results, api-server,
  scheduler, dag-processor, triggerer and N ``airflow celery worker`` processes. Only what Docker gives
  each container for free differs: host names (each worker names itself), ports and paths.
  tests/deploy/test_compose_matches_stack.py holds the two side by side.

Nothing is written outside ``home`` (the Airflow home) and the data root; secrets (JWT, Fernet, API
secret key, pseudonym salt) are generated per home, mode 0600, never committed.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from chaintrace_cli.airflow_client import AirflowClient, AirflowError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("api-server", "scheduler", "dag-processor")
CELERY_SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
Executor = Literal["local", "celery"]
#: Read by ``worker_hostname`` (Airflow's ``[core] hostname_callable`` in the stack's workers).
WORKER_HOSTNAME_ENV = "CHAINTRACE_WORKER_HOSTNAME"

#: What .env.example gives every Airflow container of docker-compose.yml, where the value does not depend
#: on where things run (hosts, ports, paths and secrets are filled in by ``AirflowStack``).
CELERY_SETTINGS: dict[str, str] = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
    "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "60",
    "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "21600",
    # One task per worker process, run from its main thread. Not prefork: its pool processes are
    # daemonic and a daemonic process may not start children, so the quality gates' forked validation
    # workers fail every large gate ("daemonic processes are not allowed to have children"). Not
    # threads: Airflow's task supervisor installs signal handlers, which only the main thread may.
    # Scale with more workers (docker compose up --scale airflow-worker=N).
    "AIRFLOW__CELERY__POOL": "solo",
    "AIRFLOW__OPENLINEAGE__NAMESPACE": "chaintrace",
    "CHAINTRACE_SPOOL_POLL_MS": "100",
    "CHAINTRACE_GATES_ENABLED": "true",
    "CHAINTRACE_AUTH": "keys",
    "CHAINTRACE_KEY_CACHE_S": "30",
    "CHAINTRACE_PROJECTOR_PROCESS": "true",
    "CHAINTRACE_LOG_LEVEL": "info",
}
#: Settings the stack adds outside Docker only because the processes share one machine and a test
#: cannot wait five minutes: a lost task (its worker killed) is noticed after 30 s instead of 300 s.
CELERY_TEST_TIMING: dict[str, str] = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
}


def worker_hostname() -> str:
    """The host name a task instance records (``[core] hostname_callable``): in Docker every worker is a
    container with a host name of its own; on one machine the stack names each worker instead."""
    from airflow.utils.net import getfqdn

    return os.environ.get(WORKER_HOSTNAME_ENV) or getfqdn()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class CeleryBackends:
    """Where the Celery shape keeps its state: PostgreSQL (metadata and Celery results) and Redis."""

    metadata_db_url: str  # postgresql+psycopg://user@host:port/database (the database must exist)
    broker_url: str  # redis://host:port/<db>; one database per stack, so two stacks never share a queue
    workers: int = 2
    worker_concurrency: int = 1  # the solo pool (CELERY_SETTINGS) runs one task at a time anyway

    def __post_init__(self) -> None:
        if not self.metadata_db_url.startswith("postgresql+psycopg://"):
            raise ValueError(f"metadata_db_url is no postgresql+psycopg URL: {self.metadata_db_url!r}")
        if not self.broker_url.startswith("redis://"):
            raise ValueError(f"broker_url must be a redis:// URL, got {self.broker_url!r}")
        if self.workers < 1 or self.worker_concurrency < 1:
            raise ValueError("workers and worker_concurrency must be at least 1")


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
    executor: Executor = "local"
    celery: CeleryBackends | None = None  # required when executor == "celery"
    # Ports of the side servers each process would otherwise open on a fixed default (several per machine).
    _ports: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.executor == "celery" and self.celery is None:
            raise ValueError("executor='celery' needs celery=CeleryBackends(...)")
        if self.executor not in ("local", "celery"):
            raise ValueError(f"executor must be 'local' or 'celery', got {self.executor!r}")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _secret(self, name: str, make: Callable[[], str | bytes] = lambda: secrets.token_urlsafe(48)) -> str:
        path = self.home / name
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            value = make()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(value.decode() if isinstance(value, bytes) else value)
        return path.read_text().strip()

    def _jwt_secret(self) -> str:
        return self._secret("jwt_secret")

    def _port(self, name: str) -> int:
        if name not in self._ports:
            self._ports[name] = _free_port()
        return self._ports[name]

    @property
    def passwords_file(self) -> Path:
        """Where the simple auth manager keeps the generated password of ``admin`` (celery shape)."""
        return self.home / "auth" / "passwords.json"

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
        if self.executor == "celery":
            # docker-compose.yml's transport exactly: durable spool files, the folder from
            # CHAINTRACE_SPOOL_DIR, no key (spool-first delivery sends nothing over the network).
            return {"type": transport["type"], "delivery": "spool", "url": self.lineage_url, "fsync": True}
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
        if self.executor == "celery":
            self._celery_environment(env)
        if self.spec_dir is not None:
            env["CHAINTRACE_SPEC_DIR"] = str(self.spec_dir)
        env.update(self.extra_env)
        return env

    def _celery_environment(self, env: dict[str, str]) -> None:
        """docker-compose.yml's settings (.env.example and each service's ``environment``) over the
        local ones; see CELERY_SETTINGS for what must stay equal."""
        from cryptography.fernet import Fernet

        assert self.celery is not None
        db = self.celery.metadata_db_url
        for local_only in ("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "AIRFLOW__API__PORT"):
            env.pop(local_only, None)
        env.update(CELERY_SETTINGS)
        env.update(CELERY_TEST_TIMING)
        env.update(
            {
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
                # Airflow would derive an asyncpg URL, a driver we do not ship: psycopg 3 serves both.
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": db,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db,
                "AIRFLOW__CELERY__BROKER_URL": self.celery.broker_url,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.celery.worker_concurrency),
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(self.parallelism),
                "AIRFLOW__CORE__FERNET_KEY": self._secret("fernet_key", Fernet.generate_key),
                "AIRFLOW__API__SECRET_KEY": self._secret("api_secret_key"),
                "CHAINTRACE_PSEUDONYM_SALT": self._secret("pseudonym_salt"),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
                "CHAINTRACE_GX_ROOT": str(PROJECT_ROOT / "expectations" / "gx"),
                # Side servers on free ports: the stack's processes share one machine.
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(self._port("scheduler-health")),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self._port("trigger-logs")),
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "chaintrace_cli.airflow_stack.worker_hostname",
            }
        )

    def launches(self) -> dict[str, tuple[list[str], dict[str, str]]]:
        """(argv, environment) of every long-running process ``start`` launches, by name."""
        env = self.environment()
        launches: dict[str, tuple[list[str], dict[str, str]]] = {}
        for service in CELERY_SERVICES if self.executor == "celery" else SERVICES:
            args = [self._airflow(), service]
            if service == "api-server":
                args += ["--port", str(self.api_port)]
            launches[service] = (args, env)
        if self.celery is not None:
            for index in range(1, self.celery.workers + 1):
                launches[f"worker-{index}"] = self.worker_launch(f"worker-{index}", env)
        return launches

    def worker_launch(self, name: str, env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
        """``airflow celery worker`` as docker-compose.yml runs it, named ``name`` (celery@name, and the
        host name its task instances record), with its log server on a port of its own."""
        worker_env = dict(env if env is not None else self.environment())
        worker_env[WORKER_HOSTNAME_ENV] = name
        worker_env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(self._port(f"{name}-logs"))
        return [self._airflow(), "celery", "worker", "--celery-hostname", f"celery@{name}"], worker_env

    def _airflow(self) -> str:
        return str(Path(sys.executable).with_name("airflow"))

    def migrate_command(self) -> list[str]:
        """docker-compose.yml's airflow-init."""
        return [self._airflow(), "db", "migrate"]

    def migrate(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        log = self.home / "migrate.log"
        with log.open("wb") as out:
            done = subprocess.run(
                self.migrate_command(),
                env=self.environment(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if done.returncode != 0:
            raise AirflowError(f"airflow db migrate failed (exit {done.returncode}); see {log}")

    def start(self) -> None:
        if self.executor == "celery":
            self.passwords_file.parent.mkdir(parents=True, exist_ok=True)  # the api-server writes it
        for name, (args, env) in self.launches().items():
            self._launch(name, args, env)

    def _launch(self, name: str, args: list[str], env: dict[str, str]) -> None:
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / f"{name}.log").open("ab") as out:
            # Its own session: stop() and kill_worker() signal the whole process group (the Celery
            # worker's pool children and the task processes they fork).
            self.processes[name] = subprocess.Popen(
                args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def start_worker(self, name: str) -> None:
        """One more Celery worker (e.g. the replacement of a killed one)."""
        if self.executor != "celery":
            raise AirflowError("start_worker needs executor='celery'")
        args, env = self.worker_launch(name)
        self._launch(name, args, env)

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker's whole process group, as a machine or container dying would: the Celery
        main process, its pool and the task processes, with no chance to report anything."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

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
