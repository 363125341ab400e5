"""lineage.governance.levels: parsing, ordering, and the propagation rule on single columns."""

from __future__ import annotations

import pytest

from lineage.governance.levels import (
    LEVELS,
    InputLevel,
    LevelError,
    at_or_below,
    effective_level,
    highest,
    is_violation,
    parse_level,
    propagated_level,
    rank,
)


@pytest.mark.parametrize("raw", ["L3", "l3", " L3 ", "\tl3\n"])
def test_parse_level_folds_case_and_blanks(raw: str) -> None:
    assert parse_level(raw) == "L3"


@pytest.mark.parametrize("raw", ["L0", "L5", "3", "", "level3", None, 3, ["L3"]])
def test_parse_level_refuses_anything_else_and_says_where(raw: object) -> None:
    with pytest.raises(LevelError, match=r"tags\.field: .* is not a classification level \(one of L1, L2"):
        parse_level(raw, where="tags.field")


def test_order() -> None:
    assert [rank(level) for level in LEVELS] == [0, 1, 2, 3]
    assert highest(["L2", "L4", "L1"]) == "L4"
    assert highest([]) == "L1"
    assert highest([], default="L3") == "L3"
    assert at_or_below("L2", "L2") and at_or_below("L1", "L4") and not at_or_below("L3", "L2")


def test_non_lowering_inputs_carry_their_level() -> None:
    inputs = [InputLevel("L3", False), InputLevel("L2", False)]
    assert propagated_level(inputs) == "L3"
    assert effective_level("L1", inputs) == "L3"
    assert effective_level(None, inputs) == "L3"
    assert is_violation("L1", inputs) and is_violation("L2", inputs)
    assert not is_violation("L3", inputs) and not is_violation("L4", inputs)


def test_lowering_inputs_leave_the_declared_level() -> None:
    inputs = [InputLevel("L4", True), InputLevel("L2", False)]
    assert propagated_level(inputs) == "L2"
    assert effective_level("L1", inputs) == "L2"
    assert effective_level("L3", inputs) == "L3"  # a producer may always raise
    only_lowering = [InputLevel("L4", True)]
    assert propagated_level(only_lowering) is None
    assert effective_level("L1", only_lowering) == "L1"
    assert not is_violation("L1", only_lowering)


def test_nothing_declared_nothing_carried() -> None:
    assert propagated_level([]) is None
    assert not is_violation(None, [InputLevel("L4", False)])  # nothing declared: nothing violated
    assert effective_level(None, []) == "L1"
