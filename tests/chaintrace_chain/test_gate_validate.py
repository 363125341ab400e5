"""The gate's fast paths give GX's own answers: sort-based duplicates, forked workers vs inline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import chaintrace_chain.gate_validate as gate_validate
from chaintrace_chain.gates import run_gate
from chaintrace_chain.zones import Zones

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "column",
    [
        pd.Series([5, 1, 5, 2, 3, 1, 9], index=[10, 11, 12, 13, 14, 15, 16]),
        pd.Series(np.random.default_rng(1).integers(0, 50, 500)),
        pd.Series([0.5, 0.25, 0.5, -1.0]),
        pd.Series(pd.to_datetime(["2013-01-01", "2013-01-02", "2013-01-01"], utc=True)),
        pd.Series(["a", "b", "a", None]),
        pd.Series([1, None, 1], dtype="Int64"),
    ],
)
def test_duplicated_mask_is_pandas_duplicated_keep_false(column: pd.Series) -> None:
    mask = gate_validate.duplicated_mask(column)
    pd.testing.assert_series_equal(mask, column.duplicated(keep=False), check_names=False)


def _flights(rows: int) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(7)
    key = np.arange(rows, dtype="int64") * 7 + 1
    key[3] = key[4]  # one duplicate pair: the unique check must find 2 rows
    frame = pd.DataFrame(
        {
            "flight_key": key,
            "carrier": rng.choice(["AA", "UA", "ZZ"], rows),
            "distance": rng.integers(-5, 3000, rows),
            "tailnum": rng.choice(["N12345", "bad", None], rows),
        }
    )
    return {"flights": frame, "airlines": pd.DataFrame({"carrier": ["AA", "UA"]})}


def _suite(gx_root: Path) -> None:
    import json

    folder = gx_root / "expectations"
    folder.mkdir(parents=True)
    expectations = [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "flight_key"}},
        {"type": "expect_column_values_to_be_in_set",
         "kwargs": {"column": "carrier", "value_set": {"$PARAMETER": "known_carriers"}}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "carrier"}},
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "distance", "min_value": 1, "max_value": 2500}},
        {"type": "expect_column_values_to_match_regex",
         "kwargs": {"column": "tailnum", "regex": "^N[0-9]+$"}},
    ]
    meta = {"dataset": "t", "stage": "process", "table": "flights", "first_run_rows": [1, None],
            "reference_sets": {"known_carriers": {"table": "airlines", "column": "carrier"}}}
    body = {"name": "t__process", "expectations": expectations, "meta": {"chaintrace": meta}}
    (folder / "t__process.json").write_text(json.dumps(body))


def test_forked_workers_give_the_inline_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _suite(tmp_path / "gx")
    tables = _flights(3000)

    def gate(run_key: str, fork_rows: int) -> dict:
        monkeypatch.setattr(gate_validate, "FORK_ROWS", fork_rows)
        result = run_gate("t", "process", tables, run_key=run_key, zones=Zones.at(tmp_path / run_key),
                          gx_root=tmp_path / "gx", build_docs=run_key == "forked")
        return result.to_dict()

    inline, forked = gate("inline", 10**9), gate("forked", 0)
    assert forked["docs_page"], "Data Docs build from the results the workers sent back"
    unique = forked["assertions"][1]
    assert unique["unexpected_count"] == 2 and not unique["success"]
    for key in ("success", "assertions", "metrics", "statistics"):
        assert forked[key] == inline[key], key


def test_a_daemonic_process_validates_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Celery prefork pool worker is daemonic and may not have children: no forked pool there."""
    import multiprocessing
    from types import SimpleNamespace

    frame = pd.DataFrame({"x": range(10)})
    monkeypatch.setattr(gate_validate, "FORK_ROWS", 1)
    pool = gate_validate._forked_pool(frame)
    assert pool is not None  # an ordinary process forks its workers
    pool.shutdown()
    monkeypatch.setattr(multiprocessing, "current_process", lambda: SimpleNamespace(daemon=True))
    assert gate_validate._forked_pool(frame) is None
