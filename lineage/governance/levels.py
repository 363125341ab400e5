"""Classification levels L1 (public) to L4 (restricted), and the rule by which they follow the data.

The rule (one implementation, used by the lineage service's propagation and by the chain's serve gate):
an output column's effective level is the highest effective level of the input columns it derives
from, except across an edge that *lowers* (masking: hashing, generalisation, dropping; or an
aggregation whose every cell stands for at least k rows): across such an edge the level the producer
declares applies. A level the producer declares above that is kept (a producer may always raise).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Level = Literal["L1", "L2", "L3", "L4"]
LEVELS: tuple[Level, ...] = ("L1", "L2", "L3", "L4")
LEVEL_NAMES: dict[Level, str] = {"L1": "public", "L2": "internal", "L3": "sensitive", "L4": "restricted"}
LOWEST: Level = "L1"
HIGHEST: Level = "L4"


class LevelError(ValueError):
    """A value that is not one of L1..L4."""


def parse_level(value: object, *, where: str = "level") -> Level:
    """``"L2"`` (any case, surrounding blanks ignored) -> ``"L2"``; anything else raises LevelError."""
    if isinstance(value, str):
        folded = value.strip().upper()
        for level in LEVELS:
            if folded == level:
                return level
    raise LevelError(f"{where}: {value!r} is not a classification level (one of {', '.join(LEVELS)})")


def rank(level: Level) -> int:
    return LEVELS.index(level)


def highest(levels: Iterable[Level], default: Level = LOWEST) -> Level:
    best = default
    for level in levels:
        if rank(level) > rank(best):
            best = level
    return best


def at_or_below(level: Level, ceiling: Level) -> bool:
    return rank(level) <= rank(ceiling)


@dataclass(frozen=True)
class InputLevel:
    """One input column of an output column: its effective level and whether the edge lowers it."""

    level: Level
    lowers: bool  # masking, or an aggregation with at least k rows in every cell


def effective_level(declared: Level | None, inputs: Iterable[InputLevel]) -> Level:
    """The effective level of an output column (see the module docstring)."""
    carried = [item.level for item in inputs if not item.lowers]
    return highest([*carried, *([declared] if declared else [])])


def propagated_level(inputs: Iterable[InputLevel]) -> Level | None:
    """The highest level that reaches the column through edges that do not lower; None if none does."""
    carried = [item.level for item in inputs if not item.lowers]
    return highest(carried) if carried else None


def is_violation(declared: Level | None, inputs: Iterable[InputLevel]) -> bool:
    """A declared level lower than what the non-lowering edges carry in is a policy violation."""
    if declared is None:
        return False
    carried = propagated_level(inputs)
    return carried is not None and rank(declared) < rank(carried)
