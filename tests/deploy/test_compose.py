"""docker-compose.yml, .env.example and the Dockerfile agree with each other and with the project.

There is no Docker engine here: these tests read the files as Compose would and check every name they
use against the project (services, volumes, files, settings, secrets). Commands are checked in
test_compose_commands.py, the database init script on the real PostgreSQL in test_postgres_init.py.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from openlineage.client.transport import get_default_factory

from chaintrace_chain.settings import ChainSettings
from chaintrace_chain.transforms import masking
from chaintrace_chain.transport import SpoolingHttpConfig, SpoolingHttpTransport
from lineage.settings import LineageSettings

if TYPE_CHECKING:
    from tests.deploy.conftest import Deployment

# What issue 6 asks for; a service more or less is a decision the tests should notice.
EXPECTED_SERVICES = {
    "postgres", "redis", "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
    "airflow-triggerer", "airflow-worker", "lineage", "lineage-keys",
}
# CHAINTRACE_* variables read by code other than the two settings objects, by the constant naming them.
# The Airflow UI plugin's variable, read from its source: importing the plugin would pull in Airflow.
_UI_URL_ENV = re.search(r'^URL_ENV = "(\w+)"', (Path(__file__).resolve().parents[2] / "plugins"
                                                / "chaintrace_airflow_ui.py").read_text(), re.MULTILINE)
assert _UI_URL_ENV, "plugins/chaintrace_airflow_ui.py no longer names its URL_ENV"
OTHER_CHAINTRACE_VARIABLES = {masking.SALT_ENV, _UI_URL_ENV[1]}
APP_DIR = PurePosixPath("/app")  # WORKDIR of the Dockerfile


def test_the_services_of_issue_6_are_there(deployment: Deployment) -> None:
    assert set(deployment.services) == EXPECTED_SERVICES


def test_long_running_services_have_health_checks_and_one_shots_do_not_restart(
    deployment: Deployment,
) -> None:
    for name, service in deployment.services.items():
        if deployment.is_one_shot(name):
            assert "healthcheck" not in service, f"{name} runs once: nothing to check"
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} runs on and has no health check"
    one_shots = {name for name in deployment.services if deployment.is_one_shot(name)}
    assert one_shots == {"airflow-init", "lineage-keys"}
    # The key tool is run by hand (`docker compose run`), never by `up`.
    assert deployment.services["lineage-keys"].get("profiles"), "lineage-keys would start with `up`"


def test_depends_on_names_services_whose_condition_can_be_met(deployment: Deployment) -> None:
    for name, service in deployment.services.items():
        depends = service.get("depends_on", {})
        if isinstance(depends, list):
            depends = {target: {"condition": "service_started"} for target in depends}
        for target, spec in depends.items():
            assert target in deployment.services, f"{name} depends on unknown service {target}"
            assert target != name
            condition = spec.get("condition", "service_started")
            if condition == "service_healthy":
                assert "healthcheck" in deployment.services[target], \
                    f"{name} waits for {target} to be healthy, but {target} has no health check"
            elif condition == "service_completed_successfully":
                assert deployment.is_one_shot(target), f"{name} waits for {target} to finish; it never does"
            else:
                assert condition == "service_started", f"{name}: unknown condition {condition}"
    # No cycle: Compose could not order the start.
    order: list[str] = []
    pending = dict.fromkeys(deployment.services)
    while pending:
        ready = [n for n in pending if set(deployment.services[n].get("depends_on", {})) <= set(order)]
        assert ready, f"depends_on has a cycle among {sorted(pending)}"
        order += ready
        for n in ready:
            del pending[n]


def test_every_airflow_component_waits_for_its_database_broker_and_migration(deployment: Deployment) -> None:
    for name in deployment.services:
        if name.startswith("airflow-") and name != "airflow-init":
            depends = deployment.services[name]["depends_on"]
            assert depends["postgres"]["condition"] == "service_healthy"
            assert depends["redis"]["condition"] == "service_healthy"
            assert depends["airflow-init"]["condition"] == "service_completed_successfully"


def test_workers_scale(deployment: Deployment) -> None:
    worker = deployment.services["airflow-worker"]
    # A fixed container name or host port would stop `--scale airflow-worker=N`.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["deploy"]["replicas"] >= 2
    assert deployment.argv("airflow-worker")[:3] == ["airflow", "celery", "worker"]


def test_named_volumes_are_declared_and_used_and_bind_mounts_exist(deployment: Deployment) -> None:
    declared = set(deployment.compose.get("volumes") or {})
    used = set()
    for name in deployment.services:
        for source, target in deployment.volumes(name):
            assert target.startswith("/"), f"{name}: mount target {target!r} is not absolute"
            if source.startswith((".", "/")):
                assert (deployment.root / source).exists(), f"{name}: {source} is missing"
            else:
                assert source in declared, f"{name} mounts volume {source!r}, not declared under volumes:"
                used.add(source)
    assert used == declared, f"declared but unused volumes: {sorted(declared - used)}"
    assert {"pg-data", "data", "spool", "airflow-logs"} <= declared


def test_postgres_runs_the_init_script(deployment: Deployment) -> None:
    mounts = dict(deployment.volumes("postgres"))
    assert mounts["./deploy/postgres-init.sql"].startswith("/docker-entrypoint-initdb.d/")
    assert mounts["pg-data"] == "/var/lib/postgresql/data"


def test_the_image_holds_the_whole_project(deployment: Deployment) -> None:
    text = deployment.dockerfile_text
    copies = re.findall(r"^COPY\s+(?!--)(.+?)\s+(\S+)\s*$", text, re.MULTILINE)
    sources = {source for group, _dest in copies for source in group.split()}
    for source in sources:
        assert (deployment.root / source).exists(), f"the Dockerfile copies {source}, which does not exist"
    # The lineage service, the CLI, the chain (plugins), its DAGs and its GX suites, and the pinned set.
    assert {"lineage", "chaintrace_cli", "plugins", "dags", "expectations"} <= sources
    assert {"pyproject.toml", "constraints.txt"} <= sources
    assert re.search(r"pip install .*-c constraints\.txt", text), "the image must install the pinned set"
    assert re.search(r"pip install .*-e \.", text), "the project itself must be installed"
    for name, service in deployment.services.items():
        if deployment.uses_project_image(name):
            assert service["build"] in (".", {"context": "."}), f"{name} builds from elsewhere"
            assert service.get("env_file") == ".env", f"{name} does not read .env"


def test_folders_the_settings_name_are_in_the_image_or_on_volumes(deployment: Deployment) -> None:
    env = deployment.filled_env()
    for key in ("AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER", "CHAINTRACE_GX_ROOT"):
        path = PurePosixPath(env[key])
        assert path.is_relative_to(APP_DIR), f"{key}={path} is not inside the image's /app"
        assert (deployment.root / path.relative_to(APP_DIR)).is_dir(), f"{key}={path}: not in the project"
    assert any((deployment.root / "dags").glob("*.py")), "no DAG files"
    mounted = {name: {target for _source, target in deployment.volumes(name)} for name in deployment.services}
    runs_tasks = ["airflow-worker", "airflow-scheduler", "airflow-triggerer"]
    for name in [*runs_tasks, "lineage"]:
        assert env["CHAINTRACE_DATA_ROOT"] in mounted[name], f"{name} does not see the data zones"
        assert env["CHAINTRACE_SPOOL_DIR"] in mounted[name], f"{name} does not see the lineage spool"
    passwords = PurePosixPath(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).parent
    assert str(passwords) in mounted["airflow-apiserver"], "the admin password would change on every start"
    for name in ("airflow-worker", "airflow-apiserver"):
        assert "/opt/airflow/logs" in mounted[name], f"{name} would not share the task logs"


def test_every_variable_compose_interpolates_is_in_env_example(deployment: Deployment) -> None:
    references = deployment.compose_references()
    assert references, "docker-compose.yml interpolates nothing: where do its secrets come from?"
    missing = sorted({ref.name for ref in references} - set(deployment.env_example))
    assert not missing, f"docker-compose.yml uses variables .env.example does not list: {missing}"
    # A variable in .env.example that is neither a container setting nor interpolated is dead weight.
    interpolated = {ref.name for ref in references}
    for key in deployment.env_example:
        assert key.startswith(("AIRFLOW__", "CHAINTRACE_")) or key in interpolated, \
            f".env.example sets {key}, which nothing reads"


def test_every_setting_in_env_example_is_commented(deployment: Deployment) -> None:
    lines = deployment.env_example_text.splitlines()
    for index, line in enumerate(lines):
        if not line or line.startswith("#"):
            continue
        above = index - 1
        while above >= 0 and lines[above] and not lines[above].startswith("#"):
            above -= 1  # settings grouped under one comment
        assert above >= 0 and lines[above].startswith("#"), \
            f".env.example line {index + 1} ({line.split('=')[0]}) has no comment"
    # What docker-compose.yml assembles itself is named in .env.example too, so one file lists them all.
    for service in deployment.services.values():
        for key in service.get("environment") or {}:
            assert re.search(rf"\b{key}\b", deployment.env_example_text), f".env.example never names {key}"


def test_secrets_are_required_and_never_filled_in(deployment: Deployment) -> None:
    secrets = {key for key in deployment.env_example if deployment.secret_name.search(key)}
    assert {"POSTGRES_PASSWORD", "AIRFLOW_DB_PASSWORD", "LINEAGE_DB_PASSWORD", "AIRFLOW__CORE__FERNET_KEY",
            "AIRFLOW__API_AUTH__JWT_SECRET", "CHAINTRACE_PSEUDONYM_SALT"} <= secrets
    for key in secrets:
        assert deployment.env_example[key] == "", f".env.example gives the secret {key} a value"
    required = {ref.name for ref in deployment.compose_references() if ref.op == ":?"}
    assert secrets <= required, f"secrets Compose would start without: {sorted(secrets - required)}"
    # Copied as is, .env.example stops Compose and names every secret to fill in.
    with pytest.raises(deployment.InterpolationError) as refused:
        for _where, text in deployment.walk_strings(deployment.compose):
            deployment.interpolate(text, deployment.env_example)
    assert set(refused.value.names) <= secrets
    all_missing: set[str] = set()
    for _where, text in deployment.walk_strings(deployment.compose):
        try:
            deployment.interpolate(text, deployment.env_example)
        except deployment.InterpolationError as exc:
            all_missing |= set(exc.names)
    assert all_missing == secrets
    # Filled in, everything resolves and no reference is left over.
    for where, text in deployment.walk_strings(deployment.compose):
        resolved = deployment.interpolate(text, deployment.filled_env())
        assert "${" not in resolved.replace("${HOSTNAME}", ""), f"{where}: unresolved reference"


_TOKEN = re.compile(r"ct_[0-9a-f]{6,32}_[A-Za-z0-9_-]{8,}")
_RANDOM_LOOKING = re.compile(r"[A-Za-z0-9+/_.-]{16,}")


def test_no_file_commits_a_secret(deployment: Deployment) -> None:
    texts = {"docker-compose.yml": deployment.compose_text, ".env.example": deployment.env_example_text,
             "Dockerfile": deployment.dockerfile_text}
    for name, text in texts.items():
        assert not _TOKEN.search(text), f"{name} holds a lineage API token"
        for word in _RANDOM_LOOKING.findall(text):
            # Names, paths and URLs split into short or plain parts; a key or password (hex, base64) is
            # one long part mixing letters and digits.
            for part in re.split(r"[/_.-]", word):
                mixed = re.search(r"\d", part) and re.search(r"[A-Za-z]", part)
                assert not (len(part) >= 32 or (mixed and len(part) >= 16)), \
                    f"{name}: {part[:6]}... looks like a secret"
    # Credentials in URLs come from ${...}, never written out.
    for where, text in deployment.walk_strings(deployment.compose):
        for url in re.findall(r"[a-z+]+://[^\s\"']+", text):
            password = urlsplit(url).password
            assert password is None or password.startswith("${"), f"{where}: a URL carries a password"
    for key, value in deployment.env_example.items():
        for url in re.findall(r"[a-z+]+://[^\s\"']+", value):
            assert urlsplit(url).password is None, f".env.example {key}: a URL carries a password"
        if deployment.secret_name.search(key):
            continue
        # Every other setting is a plain value; secrets belong to the names checked above.
        assert not _TOKEN.search(value)
    for name, service in deployment.services.items():
        for key, value in (service.get("environment") or {}).items():
            if deployment.secret_name.search(str(key)):
                assert str(value).startswith("${") and ":?" in str(value), f"{name}: {key} is written out"


def test_chaintrace_variables_are_real_settings(deployment: Deployment) -> None:
    fields = {f"CHAINTRACE_{name.upper()}" for name in LineageSettings.model_fields} | {
        f"CHAINTRACE_{name.upper()}" for name in ChainSettings.model_fields}
    names = {name for name in deployment.setting_names() if name.startswith("CHAINTRACE_")}
    assert names, "no CHAINTRACE_ settings at all"
    unknown = sorted(names - fields - OTHER_CHAINTRACE_VARIABLES)
    assert not unknown, f"CHAINTRACE_ variables no code reads: {unknown}"
    # One environment is shared by every container: no two settings objects may read the same name with
    # different meanings (the chain's SPEC_DIR once clashed with the service's schema folder).
    shared_meaning = {"data_root", "policy_file"}  # the same folder and the same policy for both
    assert not set(LineageSettings.model_fields) & set(ChainSettings.model_fields) - shared_meaning


def test_the_settings_objects_accept_the_values(deployment: Deployment, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    env = deployment.container_env("lineage")
    for key in list(os.environ):
        if key.startswith("CHAINTRACE_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # no stray .env file of a checkout
    lineage = LineageSettings()
    assert lineage.auth == "keys"
    assert urlsplit(lineage.resolved_db_url()).hostname == "postgres"
    assert str(lineage.spool_dir) == env["CHAINTRACE_SPOOL_DIR"]
    for key, value in deployment.container_env("airflow-worker").items():
        monkeypatch.setenv(key, value)
    chain = ChainSettings()
    assert str(chain.data_root) == env["CHAINTRACE_DATA_ROOT"]
    assert chain.gates_enabled is True
    assert masking.pseudonym_salt() != masking.DEMO_SALT


def _transport_lines(deployment: Deployment) -> list[str]:
    lines = []
    for line in deployment.env_example_text.splitlines():
        match = re.match(r"^#?\s*AIRFLOW__OPENLINEAGE__TRANSPORT='(.*)'$", line)
        if match:
            lines.append(match[1])
    return lines


def test_lineage_transport_reaches_the_lineage_service(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    env = deployment.filled_env()
    monkeypatch.setenv("CHAINTRACE_SPOOL_DIR", env["CHAINTRACE_SPOOL_DIR"])
    active = json.loads(env["AIRFLOW__OPENLINEAGE__TRANSPORT"])
    lines = _transport_lines(deployment)
    assert len(lines) == 2, "expected the active transport and the documented HTTP alternative"
    assert json.loads(lines[0]) == active
    lineage_port = deployment.argv("lineage")[deployment.argv("lineage").index("--port") + 1]
    for text in lines:
        params = json.loads(text.replace("<producer token>", "ct_0123abcd_placeholder"))
        assert params["type"] == "chaintrace_chain.transport.SpoolingHttpTransport"
        config = SpoolingHttpConfig.from_dict({k: v for k, v in params.items() if k != "type"})
        # The tasks spool where the lineage service looks.
        assert str(config.spool_dir) == env["CHAINTRACE_SPOOL_DIR"]
        url = urlsplit(config.url)
        assert url.hostname in deployment.services and str(url.port) == lineage_port
    assert SpoolingHttpConfig.from_dict(
        {k: v for k, v in active.items() if k != "type"}).delivery == "spool", \
        "tasks on the compose host write to the shared spool"
    # OpenLineage's own factory (what Airflow's provider calls) finds the transport by its dotted path.
    transport = get_default_factory().create({**active, "spool_dir": str(tmp_path / "spool")})
    assert isinstance(transport, SpoolingHttpTransport)


def test_urls_name_services_and_ports_that_exist(deployment: Deployment) -> None:
    scheduler = deployment.container_env("airflow-scheduler")
    lineage = deployment.container_env("lineage")
    api_port = deployment.argv("airflow-apiserver")[deployment.argv("airflow-apiserver").index("--port") + 1]
    expectations = {
        scheduler["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]: ("postgres", 5432, "/airflow", "airflow"),
        scheduler["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"]: ("postgres", 5432, "/airflow", "airflow"),
        scheduler["AIRFLOW__CELERY__RESULT_BACKEND"]: ("postgres", 5432, "/airflow", "airflow"),
        scheduler["AIRFLOW__CELERY__BROKER_URL"]: ("redis", 6379, "/0", None),
        scheduler["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]: ("airflow-apiserver", int(api_port), None,
                                                               None),
        lineage["CHAINTRACE_DB_URL"]: ("postgres", 5432, "/lineage", "lineage"),
    }
    for url, (host, port, path, user) in expectations.items():
        parts = urlsplit(url)
        assert parts.hostname == host and parts.port == port, url.split("@")[-1]
        if path is not None:
            assert parts.path == path
        if user is not None:
            assert parts.username == user and parts.password, "the database role and its password"
    assert scheduler["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    # The init script creates exactly the databases and roles these URLs name.
    script = (deployment.root / "deploy" / "postgres-init.sql").read_text()
    defaults = dict(re.findall(r"\\set (\w+) (\w+) \\endif", script))
    assert defaults == {"airflow_db": "airflow", "airflow_user": "airflow", "lineage_db": "lineage",
                        "lineage_user": "lineage"}
    postgres_env = deployment.container_env("postgres")
    airflow_url = urlsplit(scheduler["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert postgres_env["AIRFLOW_DB_PASSWORD"] == airflow_url.password
    assert postgres_env["LINEAGE_DB_PASSWORD"] == urlsplit(lineage["CHAINTRACE_DB_URL"]).password
