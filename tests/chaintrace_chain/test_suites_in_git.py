"""Every suite in expectations/gx/expectations/ follows the convention of expectations/README.md."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from chaintrace_chain.gate_suite import load_suite_file
from chaintrace_chain.zones import STAGES

GX_ROOT = Path(__file__).resolve().parents[2] / "expectations" / "gx"
SUITE_FILES = sorted((GX_ROOT / "expectations").glob("*.json"))


def test_there_are_suites_in_git() -> None:
    assert SUITE_FILES, f"no suites under {GX_ROOT / 'expectations'}"


@pytest.mark.parametrize("path", SUITE_FILES, ids=[p.stem for p in SUITE_FILES])
def test_suite_follows_the_convention(path: Path) -> None:
    from great_expectations.core import ExpectationSuite

    dataset, _, stage = path.stem.partition("__")
    assert stage in STAGES, f"{path.name}: file name must be <dataset>__<stage> with a stage in {STAGES}"
    suite = load_suite_file(path, dataset=dataset, stage=stage)  # meta.chaintrace, parameters declared
    raw = json.loads(path.read_text())
    gx_suite = ExpectationSuite(**raw)
    # GX drops unknown expectation types silently: every entry must have loaded
    assert [e.expectation_type for e in gx_suite.expectations] == [e["type"] for e in raw["expectations"]]
    assert gx_suite.name == path.stem
    assert len(gx_suite.expectations) >= 5
    row_counts = [
        e
        for e in suite.expectations
        if e["type"] == "expect_table_row_count_to_be_between"
        and e["kwargs"].get("min_value") == {"$PARAMETER": "min_rows"}
        and e["kwargs"].get("max_value") == {"$PARAMETER": "max_rows"}
    ]
    assert row_counts, f"{path.name}: no expect_table_row_count_to_be_between using min_rows/max_rows"


def test_the_git_folder_is_a_gx_file_context(tmp_path: Path) -> None:
    """Opened by hand (on a copy: opening writes uncommitted/), the context lists every suite in git."""
    import great_expectations as gx

    copy = tmp_path / "expectations"
    shutil.copytree(GX_ROOT, copy / "gx", ignore=shutil.ignore_patterns("uncommitted"))
    context = gx.get_context(mode="file", project_root_dir=copy)
    assert sorted(s.name for s in context.suites.all()) == sorted(p.stem for p in SUITE_FILES)
    assert context.variables.progress_bars == {"globally": False}
