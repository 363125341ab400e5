"""The deployment files as data, for the tests that keep docker-compose.yml honest without a Docker engine.

``Deployment`` reads docker-compose.yml (PyYAML; anchors and ``<<`` merges resolved as Compose does),
.env.example (python-dotenv, the same quoting rules as Compose's env files) and the Dockerfile, and
interpolates ``${VAR}``, ``${VAR:-default}``, ``${VAR:?message}`` and ``$$`` as Compose does.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
# ${VAR}, ${VAR:-x}, ${VAR-x}, ${VAR:?x}, ${VAR?x}, $VAR, and $$ (a literal $ for the container's shell).
_REFERENCE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.DOTALL)
# Names whose values are secrets (not e.g. ..._PASSWORDS_FILE, a path): they come from .env, never from a
# committed file. Airflow's own list (options marked sensitive) is checked in test_compose_commands.py.
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|SECRET_KEY|FERNET_KEY|SALT|TOKEN|API_?KEY)$", re.IGNORECASE)
ONE_SHOT = {"no"}  # restart policies of services that run once and exit


class InterpolationError(ValueError):
    """A ``${VAR:?...}`` whose variable is missing or empty: Compose refuses to start."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"required variables missing or empty: {', '.join(sorted(set(names)))}")
        self.names = sorted(set(names))


@dataclass(frozen=True)
class Reference:
    name: str
    op: str | None  # None, "-", ":-", "?", ":?", "+", ":+"
    where: str


def references_in(text: str, where: str) -> list[Reference]:
    found = []
    for match in _REFERENCE.finditer(text):
        if match["escaped"]:
            continue
        if match["bare"]:
            found.append(Reference(match["bare"], None, where))
            continue
        braced = _BRACED.match(match["braced"])
        if braced is None:
            raise AssertionError(f"{where}: cannot read the reference ${{{match['braced']}}}")
        found.append(Reference(braced["name"], braced["op"], where))
    return found


def interpolate(text: str, env: Mapping[str, str | None]) -> str:
    """``text`` with Compose's interpolation applied; raises InterpolationError for unmet ``:?``."""
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["bare"]:
            return env.get(match["bare"]) or ""
        braced = _BRACED.match(match["braced"])
        assert braced is not None, match["braced"]
        name, op, arg = braced["name"], braced["op"], braced["arg"] or ""
        value = env.get(name)
        present = value is not None if op in ("-", "?", "+") else bool(value)
        if op in ("-", ":-"):
            return value if present and value is not None else arg
        if op in ("?", ":?"):
            if not present:
                missing.append(name)
            return value or ""
        if op in ("+", ":+"):
            return arg if present else ""
        return value or ""

    result = _REFERENCE.sub(replace, text)
    if missing:
        raise InterpolationError(missing)
    return result


def walk_strings(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every string value in a parsed YAML tree, with a dotted path to it."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk_strings(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk_strings(value, f"{where}[{index}]")
    elif isinstance(node, str):
        yield where, node


@dataclass
class Deployment:
    """The three files, parsed; the helpers above ride along (test modules cannot import a conftest)."""

    root: ClassVar[Path] = ROOT
    venv_bin: ClassVar[Path] = VENV_BIN
    secret_name: ClassVar[re.Pattern[str]] = SECRET_NAME
    InterpolationError: ClassVar[type[InterpolationError]] = InterpolationError
    interpolate = staticmethod(interpolate)
    walk_strings = staticmethod(walk_strings)

    compose: dict[str, Any]
    compose_text: str
    env_example: dict[str, str]
    env_example_text: str
    dockerfile_text: str
    services: dict[str, dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.services = self.compose["services"]

    @classmethod
    def load(cls) -> Deployment:
        compose_text = (ROOT / "docker-compose.yml").read_text()
        env_text = (ROOT / ".env.example").read_text()
        values = dotenv_values(ROOT / ".env.example", interpolate=False)
        return cls(
            compose=yaml.safe_load(compose_text),
            compose_text=compose_text,
            env_example={key: value or "" for key, value in values.items()},
            env_example_text=env_text,
            dockerfile_text=(ROOT / "Dockerfile").read_text(),
        )

    # ------------------------------------------------------------------------------------ services
    def uses_project_image(self, name: str) -> bool:
        return "build" in self.services[name]

    def is_one_shot(self, name: str) -> bool:
        return str(self.services[name].get("restart", "")) in ONE_SHOT

    def argv(self, name: str) -> list[str]:
        """What the container runs: entrypoint + command (the image's CMD when both are absent)."""
        service = self.services[name]
        entrypoint = service.get("entrypoint") or []
        command = service.get("command")
        if command is None and not entrypoint:
            if not self.uses_project_image(name):
                return []  # the image's own command (postgres:15 runs postgres)
            command = self.dockerfile_cmd()
        argv: list[str] = []
        for part in (entrypoint, command or []):
            argv += shlex.split(part) if isinstance(part, str) else [str(token) for token in part]
        return argv

    def dockerfile_cmd(self) -> list[str]:
        match = re.search(r"^CMD\s+(\[.*\])\s*$", self.dockerfile_text, re.MULTILINE)
        assert match, "the Dockerfile has no exec-form CMD"
        return list(json.loads(match[1]))

    def healthcheck_argv(self, name: str) -> list[str]:
        """The health check as argv; CMD-SHELL strings are split as the shell would (after Compose's $$)."""
        test = self.services[name]["healthcheck"]["test"]
        if isinstance(test, str):
            return shlex.split(interpolate(test, {}))
        kind, *rest = test
        if kind == "CMD-SHELL":
            return shlex.split(interpolate(" ".join(rest), {}))
        assert kind == "CMD", f"{name}: health check kind {kind!r}"
        return [interpolate(token, {}) for token in rest]

    def volumes(self, name: str) -> list[tuple[str, str]]:
        """(source, container path) of each mount, short syntax."""
        mounts = []
        for entry in self.services[name].get("volumes", []):
            source, target, *_mode = str(entry).split(":")
            mounts.append((source, target))
        return mounts

    # --------------------------------------------------------------------------------- environment
    def filled_env(self) -> dict[str, str]:
        """.env.example with a stand-in for every empty secret, as an operator's .env would be."""
        return {key: (value or f"stand-in-{key.lower()}") for key, value in self.env_example.items()}

    def container_env(self, name: str, env_file: Mapping[str, str] | None = None) -> dict[str, str]:
        """What the container of ``name`` sees: its env_file, then its interpolated environment."""
        source = dict(env_file if env_file is not None else self.filled_env())
        service = self.services[name]
        env = dict(source) if service.get("env_file") else {}
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        for key, value in environment.items():
            env[str(key)] = interpolate(str(value), source)
        return env

    def setting_names(self) -> set[str]:
        """Every variable a container is given: .env.example's keys and each service's environment keys."""
        names = set(self.env_example)
        for service in self.services.values():
            names |= {str(key) for key in (service.get("environment") or {})}
        return names

    def compose_references(self) -> list[Reference]:
        return [ref for where, text in walk_strings(self.compose) for ref in references_in(text, where)]


@pytest.fixture(scope="session")
def deployment() -> Deployment:
    return Deployment.load()

