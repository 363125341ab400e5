"""docker-compose.yml's Airflow services and what AirflowStack(executor="celery") launches outside Docker
(tests/scaleout, bench backfill) are the same commands with the same settings.

Allowed to differ, and only these: host names (service names on the compose network, 127.0.0.1 here;
each worker's own name), ports, the database or Redis database a URL names, paths (the image's /app,
/data, /spool, /opt/airflow map to the checkout, the data root, the spool and the Airflow home), secret
values (generated per Airflow home), the sizing of task slots, and the few settings the stack adds
because its processes share one machine (CELERY_TEST_TIMING, side-server ports, worker host names).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from chaintrace_cli.airflow_stack import (
    CELERY_TEST_TIMING,
    PROJECT_ROOT,
    WORKER_HOSTNAME_ENV,
    AirflowStack,
    CeleryBackends,
)

if TYPE_CHECKING:
    from tests.deploy.conftest import Deployment

# compose service -> the stack's process of the same command
PROCESS_OF = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "worker-1",
}
# Interpolated by Compose into the URLs below; the local PostgreSQL trusts its users instead.
COMPOSE_ONLY = {"POSTGRES_PASSWORD", "AIRFLOW_DB_PASSWORD", "LINEAGE_DB_PASSWORD"}
SIZING = {"AIRFLOW__CORE__PARALLELISM", "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG",
          "AIRFLOW__CELERY__WORKER_CONCURRENCY"}
# Schemes whose URL path names a database, i.e. a place, not a setting.
LOCATION_PATH_SCHEMES = {"postgresql+psycopg", "db+postgresql+psycopg", "redis"}
STACK_ONLY = {
    *CELERY_TEST_TIMING,
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT",  # ports
    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT",
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
    "AIRFLOW__CORE__HOSTNAME_CALLABLE",  # host names: every worker names itself on one machine
    WORKER_HOSTNAME_ENV,
}


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AirflowStack:
    for name in list(os.environ):  # only what the stack itself sets counts
        if name.startswith(("AIRFLOW__", "CHAINTRACE_")):
            monkeypatch.delenv(name)
    return AirflowStack(
        home=tmp_path / "airflow", data_root=tmp_path / "data", api_port=18080,
        lineage_url="http://127.0.0.1:15000", spool_dir=tmp_path / "spool", executor="celery",
        celery=CeleryBackends("postgresql+psycopg://postgres@127.0.0.1:5432/airflow_test",
                              "redis://127.0.0.1:6379/5", workers=2),
    )


def _path_map(stack: AirflowStack) -> dict[str, Path]:
    return {"/app": PROJECT_ROOT, "/data": stack.data_root, "/spool": stack.spool_dir,
            "/opt/airflow": stack.home}


def _argv(argv: list[str]) -> list[str]:
    """argv without the tool's folder, port values and the worker's host name."""
    normal = [Path(argv[0]).name]
    skip = False
    for token in argv[1:]:
        if skip:
            skip = False
            continue
        if token in ("--port", "--celery-hostname"):
            normal.append(token if token == "--port" else "")
            skip = True
            continue
        normal.append(token)
    return [token for token in normal if token]


def _same_url(compose: str, local: str) -> bool:
    a, b = urlsplit(compose), urlsplit(local)
    if a.scheme != b.scheme:
        return False
    return a.scheme in LOCATION_PATH_SCHEMES or a.path == b.path


def _check(name: str, compose: str, local: str, stack: AirflowStack, deployment: Deployment) -> None:
    if deployment.secret_name.search(name):
        assert compose and local, f"{name}: a secret is empty"
    elif name in SIZING:
        assert int(compose) > 0 and int(local) > 0, name
    elif compose.startswith("{"):
        ours, theirs = json.loads(compose), json.loads(local)
        assert _same_url(ours.pop("url"), theirs.pop("url")), name
        assert ours == theirs, f"{name}: compose {ours} != stack {theirs}"
    elif "://" in compose:
        assert _same_url(compose, local), f"{name}: compose {compose!r} vs stack {local!r}"
    elif compose.startswith("/"):
        root = next(prefix for prefix in _path_map(stack)
                    if compose == prefix or compose.startswith(prefix + "/"))
        expected = _path_map(stack)[root] / compose[len(root):].lstrip("/")
        assert Path(local) == expected, f"{name}: compose {compose!r} -> {expected}, stack {local!r}"
    else:
        assert compose == local, f"{name}: compose {compose!r} != stack {local!r}"


def test_every_airflow_service_runs_the_same_command(deployment: Deployment, stack: AirflowStack) -> None:
    launches = stack.launches()
    assert set(launches) == {*PROCESS_OF.values(), "worker-2"}
    for service, process in PROCESS_OF.items():
        assert _argv(launches[process][0]) == _argv(deployment.argv(service)), service
    assert launches["worker-1"][0][-1] != launches["worker-2"][0][-1], "two workers, one host name"


def test_every_airflow_service_gets_the_same_settings(deployment: Deployment, stack: AirflowStack) -> None:
    launches = stack.launches()
    for service, process in PROCESS_OF.items():
        compose_env = deployment.container_env(service)
        local_env = launches[process][1]
        missing = sorted(set(compose_env) - set(local_env) - COMPOSE_ONLY)
        assert not missing, f"{service}: the stack does not set {missing}"
        for name, value in compose_env.items():
            if name not in COMPOSE_ONLY:
                _check(name, value, local_env[name], stack, deployment)
        extra = sorted(name for name in local_env if name.startswith(("AIRFLOW__", "CHAINTRACE_"))
                       and name not in compose_env and name not in STACK_ONLY)
        assert not extra, f"{service}: the stack sets {extra}, which docker-compose.yml does not"


def test_the_stack_migrates_as_airflow_init_does(deployment: Deployment, stack: AirflowStack) -> None:
    assert _argv(stack.migrate_command()) == _argv(deployment.argv("airflow-init"))
    compose_env = deployment.container_env("airflow-init")
    local_env = stack.environment()
    for name in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__EXECUTOR",
                 "AIRFLOW__CORE__FERNET_KEY"):
        _check(name, compose_env[name], local_env[name], stack, deployment)


def test_the_stack_names_each_worker_and_ports_apart(stack: AirflowStack) -> None:
    launches = stack.launches()
    workers = [launches[f"worker-{index}"][1] for index in (1, 2)]
    assert [env[WORKER_HOSTNAME_ENV] for env in workers] == ["worker-1", "worker-2"]
    ports = {env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] for env in workers}
    assert len(ports) == 2


def test_the_celery_shape_refuses_what_it_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="metadata_db_url"):
        CeleryBackends("sqlite:///airflow.db", "redis://127.0.0.1:6379/1")
    with pytest.raises(ValueError, match="broker_url"):
        CeleryBackends("postgresql+psycopg://postgres@127.0.0.1/airflow", "amqp://127.0.0.1")
    with pytest.raises(ValueError, match="CeleryBackends"):
        AirflowStack(home=tmp_path, data_root=tmp_path, api_port=1, lineage_url="http://127.0.0.1:2",
                     spool_dir=tmp_path, executor="celery")
