"""The checks of a gate suite, evaluated in plain pandas from the suite JSON (the bench's baseline).

Every expectation type the flights process suite uses is supported; another type is an error (the
baseline would silently be cheaper than GX otherwise). Semantics follow GX's pandas engine: column
map checks ignore nulls (except not-null itself), ``between`` is inclusive unless ``strict_*``, a
regex is searched (``str.contains``), ``$PARAMETER`` values come from the gate's own resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class CheckOutcome:
    success: bool
    unexpected_count: int | None  # None for table-level and aggregate checks


def _resolve(value: Any, parameters: dict[str, Any]) -> Any:
    if isinstance(value, dict) and set(value) == {"$PARAMETER"}:
        return parameters[value["$PARAMETER"]]
    return value


def _of_type(series: pd.Series, type_name: str) -> bool:
    """expect_column_values_to_be_of_type on a typed (non-object) column: the dtype is the type."""
    dtype = series.dtype
    if type_name == "Timestamp":
        return pd.api.types.is_datetime64_any_dtype(dtype)
    if type_name == "str":
        return isinstance(dtype, pd.StringDtype)
    try:
        return np.dtype(type_name) == dtype
    except TypeError:
        return str(dtype) == type_name


def _column_map(kind: str, series: pd.Series, kwargs: dict[str, Any]) -> int:
    """Unexpected count of a column map expectation (nulls are not unexpected, except for not-null)."""
    if kind == "expect_column_values_to_not_be_null":
        return int(series.isna().sum())
    present = series.dropna()
    if kind == "expect_column_values_to_be_unique":
        return int(present.duplicated(keep=False).sum())
    if kind == "expect_column_values_to_be_between":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        fine = pd.Series(True, index=present.index)
        if low is not None:
            fine &= present > low if kwargs.get("strict_min") else present >= low
        if high is not None:
            fine &= present < high if kwargs.get("strict_max") else present <= high
        return int((~fine).sum())
    if kind == "expect_column_values_to_be_in_set":
        return int((~present.isin(kwargs["value_set"])).sum())
    if kind == "expect_column_values_to_match_regex":
        return int((~present.astype(str).str.contains(kwargs["regex"], regex=True)).sum())
    raise ValueError(f"bench pandas checks: no plain-pandas version of {kind}")


def evaluate(
    expectations: list[dict[str, Any]], frame: pd.DataFrame, parameters: dict[str, Any]
) -> list[CheckOutcome]:
    """One outcome per expectation, in suite order."""
    outcomes: list[CheckOutcome] = []
    for expectation in expectations:
        kind = expectation["type"]
        kwargs = {k: _resolve(v, parameters) for k, v in (expectation.get("kwargs") or {}).items()}
        if kind == "expect_table_row_count_to_be_between":
            low, high = kwargs.get("min_value"), kwargs.get("max_value")
            rows = len(frame)
            ok = (low is None or rows >= low) and (high is None or rows <= high)
            outcomes.append(CheckOutcome(ok, None))
        elif kind == "expect_table_columns_to_match_set":
            have, want = {str(c) for c in frame.columns}, set(kwargs["column_set"])
            ok = have == want if kwargs.get("exact_match", True) else want <= have
            outcomes.append(CheckOutcome(ok, None))
        elif kind == "expect_column_values_to_be_of_type":
            outcomes.append(CheckOutcome(_of_type(frame[kwargs["column"]], kwargs["type_"]), None))
        else:
            unexpected = _column_map(kind, frame[kwargs["column"]], kwargs)
            outcomes.append(CheckOutcome(unexpected == 0, unexpected))
    return outcomes
