"""The governance policy file (YAML, in git): level rules, k, jurisdictions.

Rules assign a classification level to a column by name and/or type pattern; the first rule that
matches wins, so specific rules go first. Dataset specs may override any column explicitly. ``k`` is
the smallest number of rows an aggregate cell may stand for: cells under it are suppressed, and only
aggregations whose every cell has at least k rows lower a level. ``jurisdictions`` says where L3 and
L4 data may flow; a destination outside them is a policy violation.
"""

from __future__ import annotations

import importlib.util
import re
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lineage.governance.levels import LEVELS, Level, rank
from lineage.yaml_files import read_yaml_mapping


def default_policy_file() -> Path:
    """The policy shipped with the chain (``chaintrace_chain/policy/governance.yaml``).

    Found without importing the chain (find_spec does not run the package), so the lineage service
    stays free of Airflow-side imports.
    """
    spec = importlib.util.find_spec("chaintrace_chain")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))) / "policy" / "governance.yaml"
    return Path(__file__).resolve().parents[2] / "plugins" / "chaintrace_chain" / "policy" / "governance.yaml"


class PolicyError(ValueError):
    """A policy file that cannot be read or does not validate; the message names the file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LevelRule(_Strict):
    """Columns whose name (and type, when given) match get ``level``."""

    name: str = Field(description="What the rule is for, e.g. 'direct identifiers'.")
    level: Level
    name_pattern: str | None = Field(
        default=None, description="Regex searched in the column name (case-insensitive)."
    )
    types: list[str] | None = Field(
        default=None, description="Column types the rule applies to; any when absent."
    )

    @field_validator("name_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _matches_something(self) -> LevelRule:
        if self.name_pattern is None and self.types is None:
            raise ValueError("a rule needs name_pattern, types or both")
        return self

    def matches(self, column: str, column_type: str | None) -> bool:
        if self.types is not None and (column_type is None or column_type not in self.types):
            return False
        return self.name_pattern is None or re.search(self.name_pattern, column, re.IGNORECASE) is not None


class Assignment(BaseModel):
    model_config = ConfigDict(frozen=True)

    level: Level
    reason: str  # "rule 'direct identifiers'", "override in spec", "default level"


class GovernancePolicy(_Strict):
    version: int = 1
    default_level: Level = "L2"
    k: int = Field(default=10, ge=1, description="Fewest rows an aggregate cell may stand for.")
    rules: list[LevelRule] = Field(default_factory=list)
    #: Jurisdictions that data at each level may flow to; a level not listed may flow anywhere.
    jurisdictions: dict[Level, list[str]] = Field(default_factory=dict)

    @cached_property
    def _ordered(self) -> tuple[LevelRule, ...]:
        return tuple(self.rules)

    def assign(
        self, column: str, column_type: str | None = None, override: Level | None = None
    ) -> Assignment:
        """The level of a column: the spec's override, else the first matching rule, else the default."""
        if override is not None:
            return Assignment(level=override, reason="override in the dataset spec")
        for rule in self._ordered:
            if rule.matches(column, column_type):
                return Assignment(level=rule.level, reason=f"policy rule '{rule.name}'")
        return Assignment(level=self.default_level, reason="policy default level")

    def jurisdiction_allowed(self, level: Level, jurisdiction: str) -> bool:
        """May data at ``level`` flow to ``jurisdiction``? Levels below any listed one flow anywhere.

        Lists are looked up from the level downwards (L4 data follows the L4 list, else the L3 list);
        a jurisdiction matches an allowed entry equal to it or an entry that is its prefix before '-'
        (``US`` allows ``US-PA``).
        """
        for candidate in reversed(LEVELS[: rank(level) + 1]):
            allowed = self.jurisdictions.get(candidate)
            if allowed is not None:
                return any(jurisdiction == entry or jurisdiction.startswith(entry + "-") for entry in allowed)
        return True


def policy_from_dict(raw: Any, *, where: str = "policy") -> GovernancePolicy:
    try:
        return GovernancePolicy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(top)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise PolicyError(f"{where}: {problems}") from exc


def load_policy(path: Path | None = None) -> GovernancePolicy:
    """Read and validate a policy file (the shipped one when ``path`` is None)."""
    source = path or default_policy_file()
    return policy_from_dict(read_yaml_mapping(source, "policy", PolicyError), where=str(source))
