"""Every command docker-compose.yml runs (services, health checks, the documented `docker compose run`
lines) exists in the project's venv and accepts its options; every AIRFLOW__ setting is an option
Airflow 3.3 (with the installed providers) knows, and the health checks ask paths the services serve.

Airflow's answers come from tests/deploy/airflow_probe.py, run once in a fresh interpreter with the
environment a compose container gets (.env.example with stand-in secrets plus the service's
environment), and from the real `airflow <subcommand> --help`, once per distinct subcommand.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from chaintrace_cli.main import app as chaintrace_app
from lineage.api.app import create_app
from lineage.context import LineageContext
from lineage.settings import LineageSettings

if TYPE_CHECKING:
    from tests.deploy.conftest import Deployment

# Tools the third-party images ship (postgres:15, redis:7); our own image's tools are checked against
# the venv and the Dockerfile.
IMAGE_TOOLS = {"postgres": {"pg_isready", "postgres"}, "redis": {"redis-cli", "redis-server"}}
# The probe's environment is a container's: services' host names do not resolve here, and nothing
# connects (parsing, config and imports only).
PROBE_SERVICE = "airflow-scheduler"
Done = subprocess.CompletedProcess[str]


def _venv_tool(name: str) -> Path:
    return Path(sys.executable).with_name(name)


def _commands(deployment: Deployment) -> Iterator[tuple[str, list[str]]]:
    """(where, argv) of every command: services, health checks, documented `docker compose run` lines."""
    for name in deployment.services:
        if deployment.argv(name):  # empty: the third-party image's own command
            yield f"{name} command", deployment.argv(name)
        if "healthcheck" in deployment.services[name]:
            yield f"{name} healthcheck", deployment.healthcheck_argv(name)
    for text in (deployment.compose_text, deployment.env_example_text):
        for match in re.finditer(r"docker compose run --rm (\S+) (.+)$", text, re.MULTILINE):
            service, args = match[1], match[2].split("#")[0].split()
            assert service in deployment.services, f"documented `docker compose run {service}`: no service"
            entrypoint = deployment.services[service].get("entrypoint") or []
            yield f"documented run of {service}", [*entrypoint, *args]


def _subcommand(argv: list[str]) -> tuple[str, ...]:
    words = []
    for token in argv[1:]:
        if token.startswith("-"):
            break
        words.append(token)
    return tuple(words)


@pytest.fixture(scope="session")
def probe_env(deployment: Deployment) -> dict[str, str]:
    return deployment.container_env(PROBE_SERVICE)


@pytest.fixture(scope="session")
def probe(deployment: Deployment, probe_env: dict[str, str],
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    airflow_argvs = [argv[1:] for _where, argv in _commands(deployment) if argv[0] == "airflow"]
    options = sorted({tuple(name.lower().split("__")[1:3]) for name in deployment.setting_names()
                      if name.startswith("AIRFLOW__")})
    imports = []
    for _where, argv in _commands(deployment):
        if argv[0] == "celery":
            module, _, attribute = argv[argv.index("--app") + 1].rpartition(".")
            imports.append(f"{module}:{attribute}")
    # The scheduler's health server port is left at its default: ask for it too.
    options.append(("scheduler", "scheduler_health_check_server_port"))
    request = {"parse": airflow_argvs, "options": [list(pair) for pair in options], "imports": imports}
    tmp = tmp_path_factory.mktemp("airflow-probe")
    return dict(_run_probe(probe_env, request, tmp))


def _run_probe(env: dict[str, str], request: dict[str, Any], tmp: Path) -> dict[str, Any]:
    full_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp), "AIRFLOW_HOME": str(tmp / "airflow"),
                "PYTHONWARNINGS": "ignore", **env}
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("airflow_probe.py"))],
        input=json.dumps(request), capture_output=True, text=True, env=full_env, timeout=180, cwd=tmp,
    )
    assert done.returncode == 0, f"the Airflow probe failed ({done.returncode}):\n{done.stderr[-3000:]}"
    lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE ")]
    assert lines, f"the Airflow probe printed no result:\n{done.stderr[-3000:]}"
    return dict(json.loads(lines[-1][len("PROBE "):]))


@pytest.fixture(scope="session")
def airflow_help(deployment: Deployment, probe_env: dict[str, str],
                 tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, ...], Done]:
    """The real `airflow <subcommand> --help` of each distinct subcommand, two at a time (two cores)."""
    subcommands = sorted({_subcommand(argv) for _where, argv in _commands(deployment)
                          if argv[0] == "airflow"})
    home = tmp_path_factory.mktemp("airflow-help")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "AIRFLOW_HOME": str(home),
           "PYTHONWARNINGS": "ignore", **probe_env}

    def run(words: tuple[str, ...]) -> Done:
        return subprocess.run([str(_venv_tool("airflow")), *words, "--help"], capture_output=True, text=True,
                              env=env, timeout=180, cwd=home)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(subcommands, pool.map(run, subcommands), strict=True))


def test_airflow_has_every_subcommand_compose_runs(
    airflow_help: dict[tuple[str, ...], Done],
) -> None:
    assert {("db", "migrate"), ("api-server",), ("scheduler",), ("dag-processor",), ("triggerer",),
            ("celery", "worker"), ("jobs", "check")} <= set(airflow_help)
    for words, done in airflow_help.items():
        assert done.returncode == 0, f"airflow {' '.join(words)} --help: {done.stderr[-1500:]}"
        assert "usage: airflow " + " ".join(words) in done.stdout.lower(), done.stdout[:300]


def test_airflow_commands_parse_with_their_options(probe: dict[str, Any]) -> None:
    assert probe["parse"], "no airflow command found"
    for result in probe["parse"]:
        assert result["ok"], f"airflow {' '.join(result['argv'])}: {result['error']}"


def test_airflow_settings_are_options_airflow_knows(deployment: Deployment, probe: dict[str, Any]) -> None:
    options = probe["options"]
    assert len(options) >= 20
    unknown = sorted(name for name, found in options.items() if not found["exists"])
    assert not unknown, f"AIRFLOW__ settings that are no Airflow option: {unknown}"
    required = {ref.name for ref in deployment.compose_references() if ref.op == ":?"}
    for name in deployment.setting_names():
        if not name.startswith("AIRFLOW__"):
            continue
        section, key = name.lower().split("__")[1:3]
        if not options[f"{section}.{key}"]["sensitive"]:
            continue
        # Airflow calls it sensitive: a required secret, or a value that is built from one, or a URL
        # without credentials (the broker on the compose network).
        example = deployment.env_example.get(name)
        if example:
            assert urlsplit(example).scheme and urlsplit(example).password is None, f"{name} is written out"
        else:
            assert name in required or name in _environment_keys(deployment), name


def _environment_keys(deployment: Deployment) -> set[str]:
    return {str(key) for service in deployment.services.values() for key in service.get("environment") or {}}


def test_airflow_reads_the_values_compose_gives_it(deployment: Deployment, probe: dict[str, Any]) -> None:
    options = probe["options"]
    assert options["core.executor"]["value"] == "CeleryExecutor"
    assert options["celery.broker_url"]["value"].startswith("redis://redis:")
    assert options["database.sql_alchemy_conn"]["value"].startswith("postgresql+psycopg://airflow:")
    assert options["scheduler.enable_health_check"]["value"].lower() == "true"
    transport = json.loads(options["openlineage.transport"]["value"])
    assert transport["type"] == "chaintrace_chain.transport.SpoolingHttpTransport"


def test_health_checks_ask_paths_the_services_serve(deployment: Deployment, probe: dict[str, Any],
                                                    tmp_path: Path) -> None:
    def url_of(service: str) -> tuple[int, str]:
        argv = deployment.healthcheck_argv(service)
        parts = urlsplit(next(token for token in argv if token.startswith("http")))
        assert parts.hostname == "localhost", f"{service} checks another container"
        return int(parts.port or 80), parts.path

    def port_flag(service: str) -> int:
        argv = deployment.argv(service)
        return int(argv[argv.index("--port") + 1])

    port, path = url_of("airflow-apiserver")
    assert port == port_flag("airflow-apiserver") and path in probe["api_routes"]
    port, path = url_of("airflow-scheduler")
    assert port == int(probe["options"]["scheduler.scheduler_health_check_server_port"]["value"] or 8974)
    assert path in probe["scheduler_health_paths"]
    port, path = url_of("lineage")
    assert port == port_flag("lineage")
    # The service runs with auth on (CHAINTRACE_AUTH=keys): the health path must answer without a key.
    settings = LineageSettings(db_url=f"sqlite:///{tmp_path / 'lineage.db'}", data_root=tmp_path, auth="keys")
    context = LineageContext.build(settings)
    with TestClient(create_app(context)) as client:
        assert client.get(path).status_code == 200
        assert client.get("/api/v1/namespaces").status_code == 401, "auth is off: the check proves nothing"


def test_every_executable_exists_where_it_runs(deployment: Deployment) -> None:
    apt_lines = re.findall(r"apt-get install ([^\n&]*)", deployment.dockerfile_text)
    apt_installed = {word for line in apt_lines for word in line.split() if not word.startswith("-")}
    for where, argv in _commands(deployment):
        service = where.split()[0] if not where.startswith("documented") else where.split()[-1]
        tool = argv[0]
        if deployment.uses_project_image(service):
            assert _venv_tool(tool).exists() or tool in apt_installed, f"{where}: {tool} is not in the image"
        else:
            image = str(deployment.services[service]["image"]).split(":")[0]
            assert tool in IMAGE_TOOLS[image], f"{where}: {tool} is not a tool of the {image} image"
    assert "curl" in apt_installed


def test_celery_health_check_pings_the_worker(deployment: Deployment, probe: dict[str, Any],
                                              probe_env: dict[str, str], tmp_path: Path) -> None:
    argv = deployment.healthcheck_argv("airflow-worker")
    app_at = argv.index("--app")
    assert argv[0] == "celery" and argv[app_at + 2:app_at + 4] == ["inspect", "ping"]
    assert probe["imports"] and all(error == "" for error in probe["imports"].values()), probe["imports"]
    app = argv[argv.index("--app") + 1]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "AIRFLOW_HOME": str(tmp_path),
           **probe_env}
    listed = subprocess.run([str(_venv_tool("celery")), "--app", app, "inspect", "--list"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr[-1500:]
    assert re.search(r"^\s+ping\b", listed.stdout, re.MULTILINE), "celery inspect has no ping"
    assert argv[argv.index("ping") + 1] == "-d" and argv[argv.index("ping") + 2] == "celery@${HOSTNAME}"


def test_chaintrace_commands_exist_and_take_their_options(deployment: Deployment) -> None:
    runner = CliRunner()
    root = typer.main.get_command(chaintrace_app)
    checked = 0
    for where, argv in _commands(deployment):
        if argv[0] != "chaintrace":
            continue
        # Walk the groups as the CLI would, then let the command parse (and type-check) its options
        # without running it.
        words: list[str] = []
        command: Any = root
        context = root.context_class(root, info_name="chaintrace")
        args = argv[1:]
        while hasattr(command, "list_commands"):
            assert args, f"{where}: `{' '.join(argv)}` stops at a group"
            name = args.pop(0)
            found = command.get_command(context, name)
            assert found is not None, f"{where}: chaintrace has no command {' '.join([*words, name])}"
            words.append(name)
            parent, command = context, found
            context = found.context_class(found, info_name=name, parent=parent)
        shown = runner.invoke(chaintrace_app, [*words, "--help"])
        assert shown.exit_code == 0, f"chaintrace {' '.join(words)} --help: {shown.output[-500:]}"
        try:
            command.make_context(words[-1], list(args), parent=parent)
        except typer.TyperException as exc:
            pytest.fail(f"{where}: chaintrace {' '.join(words)} refuses {args}: {exc}")
        checked += 1
    # lineage serve, lineage-keys' default, and the documented key commands.
    assert checked >= 4
