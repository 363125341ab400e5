"""The alert rules file (YAML): which findings become alerts, how severe, and which webhooks hear of them.

```yaml
version: 1
late_check_s: 60            # how often data_late rules are checked
webhook:                    # delivery of every rule's webhooks
  timeout_s: 5
  max_attempts: 5
  backoff_s: 1              # 1 s, 2 s, 4 s ... between attempts
rules:
  - name: gate-failed
    kind: gate_failed       # gate_failed | run_failed | data_late | schema_changed | policy_violation
    match: {namespace: "*", job: "*", dataset: "*"}   # globs (fnmatch), or lists of globs; all optional
    severity: critical      # info | warning | error | critical
    webhooks: ["https://hooks.example.org/${HOOK_TOKEN}"]
  - name: chain-late
    kind: data_late         # no COMPLETE run within the interval of the DAG's schedule (plus grace)
    match: {job: [flights, covid_testing]}
    expected_interval: 26h  # data_late only: seconds, or 90s / 15m / 26h / 2d / 1h30m
    interval_source: schedule   # schedule (default): the DAG's schedule, as its Airflow events carry
                                # it; expected_interval for DAGs whose events carry none.
                                # rule: always expected_interval (an override)
    grace: 2h               # added to a schedule's interval (default: a tenth of the interval)
```

A ``data_late`` rule with ``interval_source: schedule`` and no ``expected_interval`` checks only jobs
whose events carry a time-based schedule (see :mod:`lineage.monitoring.late`).

``${NAME}`` in a webhook URL is replaced by the environment variable NAME, so that a URL holding a secret
need not be in git. A file that cannot be read or does not validate raises :class:`RulesError` naming the
file and the field (never the value of a webhook URL: it may hold a secret).
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lineage.yaml_files import read_yaml_mapping

AlertKind = Literal["gate_failed", "run_failed", "data_late", "schema_changed", "policy_violation"]
ALERT_KINDS: tuple[AlertKind, ...] = (
    "gate_failed", "run_failed", "data_late", "schema_changed", "policy_violation"
)
Severity = Literal["info", "warning", "error", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "error", "critical")

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def default_rules_file() -> Path:
    """The rules shipped with the service (``lineage/monitoring/rules.yaml``)."""
    return Path(__file__).resolve().parent / "rules.yaml"


class RulesError(ValueError):
    """A rules file that cannot be read or does not validate; the message names the file and field."""


def parse_duration(value: Any) -> float:
    """Seconds from a number or a text like ``90s``, ``15m``, ``26h``, ``2d``, ``1h30m``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a text like 90s, 15m, 26h, 2d")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        parts = _DURATION_PART.findall(text)
        if not parts or _DURATION_PART.sub("", text).strip():
            raise ValueError(f"not a duration: {value!r} (use seconds, or 90s, 15m, 26h, 2d, 1h30m)")
        seconds = sum(float(number) * _UNIT_S[unit] for number, unit in parts)
    else:
        raise ValueError("a duration is a number of seconds or a text like 90s, 15m, 26h, 2d")
    if seconds <= 0:
        raise ValueError("a duration must be more than 0 seconds")
    return seconds


def _expand_env(url: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        value = os.environ.get(name)
        if value is None:
            raise ValueError(f"the environment variable {name} named in the URL is not set")
        return value

    return _ENV_REF.sub(replace, url)


def display_url(url: str) -> str:
    """A webhook URL fit for logs and answers: scheme, host and port only (paths and queries of
    webhook URLs often hold their secret, as Slack's do)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    rest = "/…" if (parts.path not in ("", "/") or parts.query) else "/"
    return f"{parts.scheme}://{host}{port}{rest}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _globs(value: Any) -> tuple[str, ...]:
    if value is None:
        return ("*",)
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise ValueError("a glob or a non-empty list of globs")
    if not all(isinstance(item, str) and item for item in items):
        raise ValueError("every glob must be a non-empty string")
    return tuple(items)


class Match(_Strict):
    """Globs (``fnmatch``, case-sensitive) an alert's subject must match; ``*`` (the default) is anything.

    ``namespace`` matches the job's namespace or the namespace of a dataset the alert is about;
    ``job`` the job's name; ``dataset`` the name of a dataset the alert is about (for run alerts: any
    input or output of the run's event).
    """

    namespace: tuple[str, ...] = ("*",)
    job: tuple[str, ...] = ("*",)
    dataset: tuple[str, ...] = ("*",)

    @field_validator("namespace", "job", "dataset", mode="before")
    @classmethod
    def _to_globs(cls, value: Any) -> tuple[str, ...]:
        return _globs(value)

    @staticmethod
    def _any(globs: tuple[str, ...], values: list[str]) -> bool:
        if globs == ("*",):
            return True
        return any(fnmatch.fnmatchcase(value, glob) for value in values for glob in globs)

    def matches(self, namespaces: list[str], job: str | None, datasets: list[str]) -> bool:
        return (self._any(self.namespace, namespaces)
                and self._any(self.job, [job] if job is not None else [])
                and self._any(self.dataset, datasets))


class Rule(_Strict):
    name: str = Field(min_length=1, max_length=200)
    kind: AlertKind
    match: Match = Field(default_factory=Match)
    severity: Severity = "warning"
    webhooks: tuple[str, ...] = ()
    expected_interval_s: float | None = Field(default=None, alias="expected_interval")
    interval_source: Literal["schedule", "rule"] | None = None  # data_late only; None: schedule
    grace_s: float | None = Field(default=None, alias="grace")

    @field_validator("expected_interval_s", "grace_s", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)

    @field_validator("webhooks", mode="before")
    @classmethod
    def _urls(cls, value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            raise ValueError("a list of http(s) URLs")
        urls = []
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise ValueError(f"webhook {index} is not a URL string")
            url = _expand_env(item.strip())
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                # The URL itself is not echoed: it may carry a secret.
                raise ValueError(f"webhook {index} is not an http(s) URL with a host")
            urls.append(url)
        return tuple(urls)

    @model_validator(mode="after")
    def _interval_for_late_only(self) -> Rule:
        if self.kind == "data_late" and self.interval_source == "rule" and self.expected_interval_s is None:
            raise ValueError("a data_late rule with interval_source: rule needs expected_interval (e.g. 26h)")
        if self.kind != "data_late":
            for key, value in (("expected_interval", self.expected_interval_s),
                               ("interval_source", self.interval_source), ("grace", self.grace_s)):
                if value is not None:
                    raise ValueError(f"{key} applies to data_late rules only, not {self.kind}")
        return self

    @property
    def uses_schedule(self) -> bool:
        """Does the DAG's schedule set the interval (the rule's expected_interval being the fallback)?"""
        return self.interval_source != "rule"


class WebhookPolicy(_Strict):
    timeout_s: float = Field(default=5.0, gt=0, le=120)
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_s: float = Field(default=1.0, ge=0, le=3600)


class AlertRules(_Strict):
    version: int = 1
    late_check_s: float = Field(default=60.0, gt=0)
    webhook: WebhookPolicy = Field(default_factory=WebhookPolicy)
    rules: tuple[Rule, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> AlertRules:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"two rules are named {rule.name!r}; rule names must be unique")
            seen.add(rule.name)
        return self

    def of_kind(self, kind: AlertKind) -> list[Rule]:
        return [rule for rule in self.rules if rule.kind == kind]

    def by_name(self, name: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.name == name), None)


def _where(raw: Any, loc: tuple[int | str, ...]) -> str:
    """``rules[2] ('run-failed').severity`` for a pydantic error location."""
    out = ""
    node = raw
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                out += f" ({node['name']!r})"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(top)"


def rules_from_dict(raw: Any, *, where: str = "rules") -> AlertRules:
    try:
        return AlertRules.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_where(raw, tuple(p for p in error['loc'] if not str(p).startswith('function-')))}: "
            f"{error['msg'].removeprefix('Value error, ')}"
            for error in exc.errors(include_input=False)
        )
        raise RulesError(f"{where}: {problems}") from exc


def load_rules(path: Path | None = None) -> AlertRules:
    """Read and validate an alert rules file (the shipped one when ``path`` is None)."""
    source = path or default_rules_file()
    return rules_from_dict(read_yaml_mapping(source, "alert rules", RulesError), where=str(source))
