"""Reading the YAML files the service is configured by (the governance policy, the alert rules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml_mapping(source: Path, what: str, error: type[ValueError]) -> dict[str, Any]:
    """The mapping in ``source``; ``error`` naming the file when it cannot be read, is not YAML or is
    not a mapping (an empty file is an empty mapping)."""
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{source}: cannot read the {what} file: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{source}: not valid YAML: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise error(f"{source}: the {what} must be a mapping, got {type(raw).__name__}")
    return raw
