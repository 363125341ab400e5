"""Quality-gate suites as files in git, their suite parameters, and the row-count baseline.

A suite is ``<gx_root>/expectations/<dataset>__<stage>.json`` (GX 1.x ExpectationSuite JSON) whose
``meta.chaintrace`` says which stage output table it validates and how the runner fills its suite
parameters (``{"$PARAMETER": "name"}`` in an expectation's kwargs):

* ``min_rows`` / ``max_rows``: the previous PASSED run's row count x (1 -/+ ``row_count_tolerance``),
  or ``first_run_rows`` when no run of this dataset and stage has passed yet;
* one parameter per ``reference_sets`` entry: the sorted unique non-null values of ``table.column``.

Nothing here imports Great Expectations (slow to import): the checks are on plain JSON so a broken
suite is reported as a :class:`GateConfigError` naming the file and the fault before GX is touched.
expectations/README.md documents the convention for suite authors.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaintrace_chain.storage import ZonePath
from chaintrace_chain.zones import Zones, atomic_write_bytes

if TYPE_CHECKING:
    import pandas as pd

ROW_PARAMETERS = ("min_rows", "max_rows")
# kwargs naming columns that must exist in the validated table (column_set of
# expect_table_columns_to_match_set names *expected* columns, so it is not checked here).
COLUMN_KWARGS = ("column", "column_A", "column_B")
COLUMN_LIST_KWARGS = ("column_list",)


class GateConfigError(Exception):
    """The gate cannot run: missing or corrupt suite, missing table or column, bad parameters.

    Distinct from a gate that ran and failed (``GateResult.success`` is False): a config error is a
    bug in the suite or the stage wiring, not a property of the data.
    """


@dataclass(frozen=True)
class ReferenceSet:
    table: str
    column: str


@dataclass(frozen=True)
class SuiteFile:
    """A suite file read from git, with its ``meta.chaintrace`` section checked."""

    path: Path
    name: str
    dataset: str
    stage: str
    table: str
    row_count_tolerance: float
    first_run_rows: tuple[int, int | None]
    reference_sets: dict[str, ReferenceSet]
    raw: dict[str, Any] = field(repr=False)

    @property
    def expectations(self) -> list[dict[str, Any]]:
        return list(self.raw["expectations"])

    def referenced_columns(self) -> list[str]:
        """Columns the expectations name, in first-use order (each must exist in the table)."""
        seen: dict[str, None] = {}
        for expectation in self.expectations:
            kwargs = expectation.get("kwargs") or {}
            for key in COLUMN_KWARGS:
                if isinstance(kwargs.get(key), str):
                    seen.setdefault(kwargs[key])
            for key in COLUMN_LIST_KWARGS:
                for column in kwargs.get(key) or []:
                    if isinstance(column, str):
                        seen.setdefault(column)
        return list(seen)

    def parameter_names(self) -> set[str]:
        """Every ``{"$PARAMETER": name}`` used in the expectations' kwargs."""
        names: set[str] = set()

        def walk(value: Any) -> None:
            if isinstance(value, dict):
                if set(value) == {"$PARAMETER"}:
                    names.add(str(value["$PARAMETER"]))
                else:
                    for item in value.values():
                        walk(item)
            elif isinstance(value, list):
                for item in value:
                    walk(item)

        for expectation in self.expectations:
            walk(expectation.get("kwargs") or {})
        return names


def suite_name(dataset: str, stage: str) -> str:
    return f"{dataset}__{stage}"


def suite_path(gx_root: Path, dataset: str, stage: str) -> Path:
    return gx_root / "expectations" / f"{suite_name(dataset, stage)}.json"


def load_suite_file(path: Path, *, dataset: str | None = None, stage: str | None = None) -> SuiteFile:
    """Read and check one suite file; :class:`GateConfigError` names the file and what is wrong."""
    if not path.is_file():
        raise GateConfigError(f"gate suite file not found: {path}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GateConfigError(f"gate suite {path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise GateConfigError(f"gate suite {path}: top level must be a JSON object")
    if raw.get("name") != path.stem:
        raise GateConfigError(f"gate suite {path}: 'name' is {raw.get('name')!r}, expected {path.stem!r}")
    expectations = raw.get("expectations")
    if not isinstance(expectations, list) or not expectations:
        raise GateConfigError(f"gate suite {path}: 'expectations' must be a non-empty list")
    for index, expectation in enumerate(expectations):
        if not isinstance(expectation, dict) or not isinstance(expectation.get("type"), str):
            raise GateConfigError(f"gate suite {path}: expectation #{index} has no 'type'")
        if not isinstance(expectation.get("kwargs", {}), dict):
            raise GateConfigError(f"gate suite {path}: expectation #{index} 'kwargs' must be an object")
    meta = (raw.get("meta") or {}).get("chaintrace")
    if not isinstance(meta, dict):
        raise GateConfigError(f"gate suite {path}: missing meta.chaintrace (dataset, stage, table, ...)")
    for key in ("dataset", "stage", "table"):
        if not isinstance(meta.get(key), str) or not meta[key]:
            raise GateConfigError(f"gate suite {path}: meta.chaintrace.{key} must be a non-empty string")
    expected = {"dataset": dataset, "stage": stage}
    for key, want in expected.items():
        if want is not None and meta[key] != want:
            raise GateConfigError(
                f"gate suite {path}: meta.chaintrace.{key} is {meta[key]!r}, expected {want!r}"
            )
    tolerance = meta.get("row_count_tolerance", 0.5)
    if not isinstance(tolerance, int | float) or isinstance(tolerance, bool) or not 0 <= tolerance < 10:
        raise GateConfigError(f"gate suite {path}: meta.chaintrace.row_count_tolerance must be a number >= 0")
    first = meta.get("first_run_rows")
    if (
        not isinstance(first, list)
        or len(first) != 2
        or not isinstance(first[0], int)
        or not (first[1] is None or isinstance(first[1], int))
        or (first[1] is not None and first[1] < first[0])
    ):
        raise GateConfigError(
            f"gate suite {path}: meta.chaintrace.first_run_rows must be [min, max] (max may be null)"
        )
    references: dict[str, ReferenceSet] = {}
    for name, ref in (meta.get("reference_sets") or {}).items():
        if (
            not isinstance(ref, dict)
            or not isinstance(ref.get("table"), str)
            or not isinstance(ref.get("column"), str)
        ):
            raise GateConfigError(
                f"gate suite {path}: reference_sets.{name} must be {{'table': ..., 'column': ...}}"
            )
        if name in ROW_PARAMETERS:
            raise GateConfigError(f"gate suite {path}: reference_sets may not be named {name!r} (reserved)")
        references[name] = ReferenceSet(ref["table"], ref["column"])
    suite = SuiteFile(
        path=path,
        name=raw["name"],
        dataset=meta["dataset"],
        stage=meta["stage"],
        table=meta["table"],
        row_count_tolerance=float(tolerance),
        first_run_rows=(first[0], first[1]),
        reference_sets=references,
        raw=raw,
    )
    unknown = suite.parameter_names() - set(ROW_PARAMETERS) - set(references)
    if unknown:
        raise GateConfigError(
            f"gate suite {path}: suite parameters {sorted(unknown)} are neither min_rows/max_rows "
            "nor declared in meta.chaintrace.reference_sets"
        )
    return suite


# ------------------------------------------------------------------------------------ baseline state
def baseline_path(zones: Zones, dataset: str, stage: str) -> ZonePath:
    return zones.state_dir(dataset) / f"gate-{stage}-rows.json"


def read_baseline(zones: Zones, dataset: str, stage: str) -> int | None:
    """Row count of the previous PASSED gate run of this dataset and stage (None: none yet)."""
    path = baseline_path(zones, dataset, stage)
    if not path.is_file():
        return None
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["rows"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise GateConfigError(
            f"row-count baseline {path} is unreadable ({exc}); delete it to start over"
        ) from exc
    if not isinstance(rows, int) or rows < 0:
        raise GateConfigError(f"row-count baseline {path} holds {rows!r}, not a row count")
    return rows


def write_baseline(
    zones: Zones, dataset: str, stage: str, *, rows: int, run_key: str, suite: str
) -> ZonePath:
    path = baseline_path(zones, dataset, stage)
    body = {"rows": rows, "run": run_key, "suite": suite}
    atomic_write_bytes(path, json.dumps(body, sort_keys=True).encode() + b"\n")
    return path


def row_bounds(suite: SuiteFile, previous_rows: int | None) -> tuple[int, int | None]:
    """(min_rows, max_rows): the previous passed count +/- tolerance, else ``first_run_rows``."""
    if previous_rows is None:
        return suite.first_run_rows
    tolerance = suite.row_count_tolerance
    return max(0, math.floor(previous_rows * (1 - tolerance))), math.ceil(previous_rows * (1 + tolerance))


# ----------------------------------------------------------------------------------- the tables given
def check_tables(suite: SuiteFile, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The frame the suite validates, after checking that it and the reference tables exist."""
    if suite.table not in tables:
        raise GateConfigError(
            f"gate {suite.name}: table {suite.table!r} (meta.chaintrace.table) not among the "
            f"tables given: {sorted(tables)}"
        )
    frame = tables[suite.table]
    # Columns the suite names but the data lacks are not a config error: that is the data failing its
    # standard (GX fails the expectations on them), and the batch is quarantined like any failure.
    for name, ref in suite.reference_sets.items():
        if ref.table not in tables:
            raise GateConfigError(
                f"gate {suite.name}: reference set {name!r} needs table {ref.table!r}, not among "
                f"the tables given: {sorted(tables)}"
            )
    return frame


def reference_values(suite: SuiteFile, tables: dict[str, pd.DataFrame]) -> dict[str, list[Any]]:
    """Each reference set: the sorted unique non-null values of ``table.column``, as plain Python values."""
    values: dict[str, list[Any]] = {}
    for name, ref in suite.reference_sets.items():
        if ref.column not in tables[ref.table].columns:  # a broken reference table: nothing is known
            values[name] = []
            continue
        unique = tables[ref.table][ref.column].dropna().unique()
        values[name] = sorted(v.item() if hasattr(v, "item") else v for v in unique)
    return values
