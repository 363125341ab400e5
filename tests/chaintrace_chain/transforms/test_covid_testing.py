"""covid_testing: the spec, the four transforms on the real data, and its five GX suites."""

from __future__ import annotations

import json
import lzma
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from chaintrace_chain.governance import assigned_levels
from chaintrace_chain.settings import PROJECT_ROOT
from chaintrace_chain.spec import DatasetSpec, load_spec_file
from chaintrace_chain.stage_output import StageOutput
from chaintrace_chain.transforms import common
from chaintrace_chain.transforms import covid_testing as transforms
from chaintrace_chain.transforms.masking import SALT_ENV

SPEC = load_spec_file(PROJECT_ROOT / "plugins/chaintrace_chain/specs/covid_testing.yaml")
SUITES = PROJECT_ROOT / "expectations/gx/expectations"
STAGES = ("collect", "store", "process", "analyze", "serve")
Tables = dict[str, pd.DataFrame]


@pytest.fixture(scope="module")
def spec() -> DatasetSpec:
    """Binds the shared fixtures (landed, gate_frames: see conftest.py) to this dataset."""
    return SPEC


@dataclass
class Chain:
    source: pd.DataFrame
    store: StageOutput
    process: StageOutput
    analyze: StageOutput
    serve: StageOutput


@pytest.fixture(scope="module")
def chain(landed: dict[str, Path], run_stages: Callable[..., Any]) -> Chain:
    source = common.read_landed(SPEC.sources["covid_testing"], landed["covid_testing"])
    return Chain(source, *run_stages(SPEC, transforms, landed))


# ------------------------------------------------------------------ spec
def test_spec_classifies_identifiers_and_health_data_and_publishes_only_l1_products() -> None:
    assert SPEC.name == "covid_testing" and SPEC.licence.startswith("MIT")
    levels = assigned_levels(SPEC)["tests"]
    assert {levels["subject_id"], levels["fake_first_name"], levels["fake_last_name"]} == {"L4"}
    assert levels["result"] == levels["age"] == levels["ct_result"] == "L3"
    assert "rownames" not in levels
    assert {product.allowed_level for product in SPEC.products} == {"L1"}
    assert all(product.min_cell_rows == 10 and product.count_column for product in SPEC.products)
    assert all(json.loads((SUITES / f"covid_testing__{s}.json").read_text())["name"] == f"covid_testing__{s}"
               for s in STAGES)  # fmt: skip


# ------------------------------------------------------------------ transforms on the real data
def test_store_types_every_declared_column_and_drops_rownames(chain: Chain) -> None:
    tests = chain.store.tables["tests"]
    assert tests.shape == (15524, 17)
    assert "rownames" not in tests.columns
    assert chain.store.counts["tests.undeclared_columns_dropped"] == 1
    assert str(tests["age"].dtype) == "float64" and str(tests["subject_id"].dtype) == "int64"


def test_process_masks_the_subject_and_counts_the_real_gaps(chain: Chain) -> None:
    tests = chain.process.tables["tests"]
    counts = chain.process.counts
    assert len(tests) == 15524 and counts["duplicate_tests"] == 0
    assert not {"fake_first_name", "fake_last_name", "subject_id", "age"} & set(tests.columns)
    assert counts["implausible_age"] == 5  # ages 119 (x4) and 138
    assert counts["null_ct_result"] == 209
    assert counts["negative_rec_ver_tat"] == 1
    assert counts["implausible_col_rec_tat"] == 6
    assert counts["null_payor_group"] == 7087 and counts["null_patient_class"] == 7077
    assert (tests["age_band"] == "unknown").sum() == 5
    assert tests["subject_key"].str.fullmatch(r"[0-9a-f]{16}").all()
    # one pseudonym per subject: the links between a subject's tests survive the masking
    assert tests["subject_key"].nunique() == chain.source["subject_id"].nunique() == 12344
    assert tests["clinic"].nunique() < chain.source["clinic_name"].nunique()
    assert chain.process.levels["tests"] == {"subject_key": "L3", "age_band": "L2"}


def test_pseudonyms_change_with_the_salt(chain: Chain, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SALT_ENV, "another-secret")
    salted = transforms.process(SPEC, {"tests": chain.store.tables["tests"].head(50)})
    assert not set(salted.tables["tests"]["subject_key"]) & set(chain.process.tables["tests"]["subject_key"])


def test_analyze_cells_add_up_to_every_test(chain: Chain) -> None:
    for name in ("tests_by_day", "tests_by_clinic", "tests_by_age_gender"):
        table = chain.analyze.tables[name]
        assert table["n_tests"].sum() == 15524, name
        assert table["positivity_pct"].dropna().between(0, 100).all()
        assert (table["n_positive"] <= table["n_conclusive"]).all()
    by_day = chain.analyze.tables["tests_by_day"]
    assert by_day["pan_day"].is_unique and len(by_day) == chain.source["pan_day"].nunique()
    overall = chain.source["result"].value_counts()
    assert chain.analyze.tables["tests_by_day"]["n_positive"].sum() == overall["positive"] == 865


def test_serve_suppresses_small_cells_and_publishes_l1(chain: Chain) -> None:
    for product in SPEC.products:
        analysis = chain.analyze.tables[product.table]
        served = chain.serve.tables[product.name]
        small = int((analysis["n_tests"] < 10).sum())
        assert small > 0
        assert chain.serve.counts[f"{product.name}.suppressed_cells"] == small
        assert len(served) == len(analysis) - small
        assert (served["n_tests"] >= 10).all()
        assert list(served.columns) == product.columns
        assert set(chain.serve.levels[product.name].values()) == {"L1"}


def test_aggregates_of_results_stay_sensitive_until_serve_suppresses_small_cells(
    chain: Chain, chain_levels: Callable[..., Any]
) -> None:
    levels = chain_levels(SPEC, chain)
    for tables in levels.values():
        assert not [(t, c) for t, cs in tables.items() for c, x in cs.items() if x.violation]
    tests = levels["process"]["tests"]
    assert (tests["subject_key"].level, tests["age_band"].level, tests["result"].level) == ("L3", "L2", "L3")
    by_clinic = levels["analyze"]["tests_by_clinic"]
    assert by_clinic["positivity_pct"].level == by_clinic["n_tests"].level == "L3"
    assert by_clinic["clinic"].level == "L2"
    assert {x.level for cs in levels["serve"].values() for x in cs.values()} == {"L1"}


def test_no_restricted_or_sensitive_raw_value_reaches_a_served_cell(chain: Chain) -> None:
    names = set(chain.source["fake_first_name"].dropna()) | set(chain.source["fake_last_name"].dropna())
    subject_ids = {str(value) for value in chain.source["subject_id"]}
    keys = set(chain.process.tables["tests"]["subject_key"])
    results = set(chain.source["result"])
    for name, table in chain.serve.tables.items():
        cells = {str(value) for column in table.columns for value in table[column].dropna()}
        text_cells = {str(v) for c in table.columns if table[c].dtype == "str" for v in table[c].dropna()}
        assert not text_cells & names, name
        assert not text_cells & (subject_ids | results), name
        assert not cells & keys, name
        assert not {"subject_id", "subject_key", "age", "result", "ct_result"} & set(table.columns), name


def test_every_output_column_has_lineage_to_existing_input_columns(
    chain: Chain, assert_column_lineage: Callable[..., None]
) -> None:
    assert_column_lineage(chain, {key: chain.source.columns for key in SPEC.sources})
    masked = {c: s for c, s in chain.process.lineage["tests"].items() if any(x.masking for x in s)}
    assert set(masked) == {"subject_key", "age_band"}


# ------------------------------------------------------------------ edge cases on small frames
def _small_tests(rows: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject_id": [1, 2, 1][:rows], "fake_first_name": ["a", "b", "a"][:rows],
            "fake_last_name": ["x", "y", "x"][:rows], "gender": ["female", "male", "female"][:rows],
            "age": [0.5, 140.0, 0.5][:rows], "pan_day": [4, 5, 4][:rows], "test_id": ["covid"] * rows,
            "clinic_name": ["1 laboratory", "urg care ctr", "1 laboratory"][:rows],
            "result": ["positive", "negative", "positive"][:rows], "demo_group": ["patient"] * rows,
            "drive_thru_ind": [1, 0, 1][:rows], "ct_result": [30.0, None, 30.0][:rows],
            "orderset": [0, 1, 0][:rows], "payor_group": [None, "commercial", None][:rows],
            "patient_class": [None, "inpatient", None][:rows], "col_rec_tat": [1.0, 900.0, 1.0][:rows],
            "rec_ver_tat": [-2.0, 3.0, -2.0][:rows],
        }
    )  # fmt: skip


def test_process_removes_exact_duplicates_and_normalises_categories() -> None:
    output = transforms.process(SPEC, {"tests": _small_tests()})
    tests = output.tables["tests"]
    assert output.counts["duplicate_tests"] == 1 and len(tests) == 2
    assert tests["clinic"].tolist() == ["laboratory", "urgent care center"]
    assert tests["age_band"].tolist() == ["0", "unknown"]
    assert tests["payor_group"].tolist() == ["not recorded", "commercial"]
    assert tests["col_rec_tat_h"].isna().tolist() == [False, True]
    assert tests["rec_ver_tat_h"].isna().tolist() == [True, False]


def test_missing_input_column_or_table_is_named() -> None:
    with pytest.raises(common.TransformError, match="missing column\\(s\\) clinic_name"):
        transforms.process(SPEC, {"tests": _small_tests().drop(columns="clinic_name")})
    with pytest.raises(common.TransformError, match="missing input table\\(s\\) tests"):
        transforms.process(SPEC, {"other": _small_tests()})
    processed = transforms.process(SPEC, {"tests": _small_tests()}).tables["tests"]
    with pytest.raises(common.TransformError, match="rec_ver_tat_h"):
        transforms.analyze(SPEC, {"tests": processed.drop(columns="rec_ver_tat_h")})


def test_a_flag_that_is_not_zero_or_one_is_refused() -> None:
    frame = _small_tests().assign(drive_thru_ind=[1, 7, 0])
    with pytest.raises(common.TransformError, match=r"drive_thru_ind.*not 0/1"):
        transforms.process(SPEC, {"tests": frame})


# ------------------------------------------------------------------ GX suites, through the gate engine
@pytest.mark.parametrize("stage", STAGES)
def test_every_suite_passes_on_the_real_data(
    suite_failures: Callable[..., set[str]], gate_frames: dict[str, Tables], stage: str
) -> None:
    assert suite_failures("covid_testing", stage, gate_frames[stage]) == set()


def test_collect_suite_fails_on_a_missing_column_and_a_header_only_file(
    suite_failures: Callable[..., set[str]], gate_frames: dict[str, Tables]
) -> None:
    text = gate_frames["collect"]["covid_testing"]
    failed = suite_failures("covid_testing", "collect", {"covid_testing": text.drop(columns="result")})
    assert "expect_table_columns_to_match_set:" in failed
    failed = suite_failures("covid_testing", "collect", {"covid_testing": text.head(0)})
    assert "expect_table_row_count_to_be_between:" in failed


def test_store_suite_fails_when_a_number_column_holds_text(
    chain: Chain, suite_failures: Callable[..., set[str]], tmp_path: Path
) -> None:
    corrupted = chain.source.copy()
    corrupted["age"] = corrupted["age"].astype("object")
    corrupted.loc[3, "age"] = "three"
    landed = tmp_path / "covid_testing.pkl.compress"
    with lzma.open(landed, "wb", preset=0) as handle:  # fast: only the content matters
        pickle.dump(corrupted, handle)
    stored = transforms.store(SPEC, {"covid_testing": landed})
    assert stored.counts["tests.age.type_mismatch"] == 1
    failed = suite_failures("covid_testing", "store", stored.tables)
    assert "expect_column_values_to_be_of_type:age" in failed


def test_process_suite_fails_on_duplicate_tests_and_raw_identifiers(
    chain: Chain, suite_failures: Callable[..., set[str]]
) -> None:
    tests = chain.process.tables["tests"]
    doubled = pd.concat([tests, tests.head(20)], ignore_index=True)
    assert "expect_compound_columns_to_be_unique:" in suite_failures(
        "covid_testing", "process", {"tests": doubled}
    )
    leaked = tests.assign(subject_key=chain.store.tables["tests"]["subject_id"].astype("str"))
    assert "expect_column_values_to_match_regex:subject_key" in suite_failures(
        "covid_testing", "process", {"tests": leaked}
    )


def test_analyze_and_serve_suites_fail_on_broken_aggregates(
    chain: Chain, suite_failures: Callable[..., set[str]]
) -> None:
    by_day = chain.analyze.tables["tests_by_day"]
    doubled = pd.concat([by_day, by_day.head(3)], ignore_index=True)
    assert "expect_column_values_to_be_unique:pan_day" in suite_failures(
        "covid_testing", "analyze", {"tests_by_day": doubled}
    )
    # the unsuppressed daily table has cells of fewer than ten tests: the serve gate refuses it
    unsuppressed = by_day[SPEC.products[0].columns]
    failed = suite_failures("covid_testing", "serve", {"covid_positivity_daily": unsuppressed})
    assert "expect_column_values_to_be_between:n_tests" in failed
