"""Ask Airflow, configured by the environment it is started with, about docker-compose.yml's commands and
settings; run by tests/deploy (a fresh interpreter: Airflow reads its configuration once, at import).

Reads a JSON request on stdin and prints one line ``PROBE <json>``:

* ``parse``: argv lists (without ``airflow``) checked by Airflow's own CLI parser, options included,
  exactly as ``airflow ...`` would parse them before running anything;
* ``options``: [section, key] pairs: does Airflow (core and installed providers) know the option, is it
  sensitive, and what value does it read from this environment;
* ``imports``: ``module:attribute`` strings that must import (a Celery app path, for instance);
* the public API's route paths, and the scheduler health server's source path check.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import json
import re
import sys
from typing import Any


def parse(argvs: list[list[str]]) -> list[dict[str, Any]]:
    from airflow.cli.cli_parser import get_parser

    parser = get_parser()
    results = []
    for argv in argvs:
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                namespace = parser.parse_args(argv)
            results.append({"argv": argv, "ok": callable(getattr(namespace, "func", None)), "error": ""})
        except SystemExit as exc:
            message = [line for line in err.getvalue().splitlines() if "error" in line.lower()]
            results.append({"argv": argv, "ok": False, "error": f"exit {exc.code}: {' '.join(message)}"})
    return results


def options(pairs: list[list[str]]) -> dict[str, dict[str, Any]]:
    from airflow.configuration import conf, retrieve_configuration_description

    described = retrieve_configuration_description(include_providers=True)
    found = {}
    for section, key in pairs:
        option = described.get(section, {}).get("options", {}).get(key)
        value = conf.get(section, key, fallback=None) if option is not None else None
        found[f"{section}.{key}"] = {
            "exists": option is not None,
            "sensitive": bool(option and option.get("sensitive")),
            "value": value,
        }
    return found


def imports(paths: list[str]) -> dict[str, str]:
    errors = {}
    for path in paths:
        module_name, _, attribute = path.partition(":")
        try:
            module = importlib.import_module(module_name)
            if attribute and not hasattr(module, attribute):
                errors[path] = f"{module_name} has no attribute {attribute}"
            else:
                errors[path] = ""
        except Exception as exc:
            errors[path] = f"{type(exc).__name__}: {exc}"
    return errors


def api_routes() -> list[str]:
    from airflow.api_fastapi.core_api.routes.public import public_router

    return sorted({getattr(route, "path", "") for route in public_router.routes})


def scheduler_health_paths() -> list[str]:
    from airflow.utils import scheduler_health

    # The health server answers one path; read it from its handler rather than assume it.
    source = inspect.getsource(scheduler_health)
    return sorted(set(re.findall(r'self\.path == "([^"]+)"', source)))


def main() -> None:
    request = json.load(sys.stdin)
    with contextlib.redirect_stdout(sys.stderr):  # Airflow's import-time log lines stay off our line
        result = {
            "parse": parse(request.get("parse", [])),
            "options": options(request.get("options", [])),
            "imports": imports(request.get("imports", [])),
            "api_routes": api_routes(),
            "scheduler_health_paths": scheduler_health_paths(),
        }
    print("PROBE " + json.dumps(result))


if __name__ == "__main__":
    main()
