"""mpls_stops: the spec, the four transforms on the real data, and its five GX suites."""

from __future__ import annotations

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
from chaintrace_chain.transforms import mpls_stops as transforms

SPEC = load_spec_file(PROJECT_ROOT / "plugins/chaintrace_chain/specs/mpls_stops.yaml")
STAGES = ("collect", "store", "process", "analyze", "serve")
Tables = dict[str, pd.DataFrame]


@pytest.fixture(scope="module")
def spec() -> DatasetSpec:
    """Binds the shared fixtures (landed, gate_frames: see conftest.py) to this dataset."""
    return SPEC


@dataclass
class Chain:
    source: pd.DataFrame
    demographics: pd.DataFrame
    store: StageOutput
    process: StageOutput
    analyze: StageOutput
    serve: StageOutput


@pytest.fixture(scope="module")
def chain(landed: dict[str, Path], run_stages: Callable[..., Any]) -> Chain:
    source = common.read_landed(SPEC.sources["stops"], landed["stops"])
    demographics = common.read_landed(SPEC.sources["demographics"], landed["demographics"])
    return Chain(source, demographics, *run_stages(SPEC, transforms, landed))


# ------------------------------------------------------------------ spec
def test_spec_classifies_identifiers_coordinates_and_race_and_publishes_only_l1_products() -> None:
    assert SPEC.name == "mpls_stops" and SPEC.licence.startswith("GPL")
    levels = assigned_levels(SPEC)["stops"]
    assert levels["idNum"] == levels["lat"] == levels["long"] == levels["race"] == levels["preRace"] == "L3"
    assert SPEC.tables["stops"].primary_key == ["idNum"]
    assert set(assigned_levels(SPEC)["neighbourhoods"].values()) == {"L1"}
    assert {product.allowed_level for product in SPEC.products} == {"L1"}
    assert all(product.min_cell_rows == 10 and product.count_column == "n_stops" for product in SPEC.products)


# ------------------------------------------------------------------ transforms on the real data
def test_store_types_both_tables(chain: Chain) -> None:
    assert chain.store.tables["stops"].shape == (51920, 14)
    assert chain.store.tables["neighbourhoods"].shape == (84, 8)
    assert str(chain.store.tables["stops"]["date"].dtype).startswith("datetime64")


def test_process_counts_the_join_gap_and_the_unrecorded_outcomes(chain: Chain) -> None:
    stops = chain.process.tables["stops"]
    counts = chain.process.counts
    known = set(chain.demographics["neighborhood"])
    without = ~chain.source["neighborhood"].isin(known)
    # the real gap, checked against the source: Near - North, Camden Industrial, Humboldt Industrial Area
    assert counts["stops_without_demographics"] == int(without.sum()) == 2300
    assert (
        counts["neighbourhoods_without_demographics"]
        == chain.source.loc[without, "neighborhood"].nunique()
        == 3
    )
    assert len(stops) == 51920 and counts["duplicate_stop_ids"] == 0
    assert stops["neighbourhood_population"].isna().sum() == 2300
    assert counts["null_race"] == counts["null_personSearch"] == 8221
    assert counts["null_citationIssued"] == 32810 and counts["null_gender"] == 8282
    assert (stops["race"] == "Not recorded").sum() == 8221


def test_process_masks_the_incident_number_time_and_coordinates(chain: Chain) -> None:
    stops = chain.process.tables["stops"]
    assert not {"idNum", "date", "lat", "long"} & set(stops.columns)
    assert stops["stop_key"].is_unique and stops["stop_key"].str.fullmatch(r"[0-9a-f]{16}").all()
    assert not set(stops["stop_key"]) & set(chain.source["idNum"])
    assert ((stops["lat_grid"] * 100).round(6) % 1 == 0).all()
    assert (stops["lat_grid"] - chain.source["lat"]).abs().max() <= 0.005 + 1e-9
    # source times are UTC; months are Minneapolis ones, so the year is exactly 2017-01..2017-12
    assert sorted(stops["stop_month"].unique()) == [f"2017-{month:02d}" for month in range(1, 13)]
    assert chain.process.levels["stops"] == {"stop_key": "L2", "lat_grid": "L2", "long_grid": "L2"}


def test_analyze_rates_and_counts(chain: Chain) -> None:
    per_resident = chain.analyze.tables["stops_by_neighbourhood_month"]
    assert per_resident["n_stops"].sum() == 51920
    assert per_resident["stops_per_1000"].isna().sum() == chain.analyze.counts["cells_without_population"] > 0
    cedar = per_resident[(per_resident["neighbourhood"] == "Cedar Riverside")]
    assert (cedar["stops_per_1000"] - 1000 * cedar["n_stops"] / 8247).abs().max() < 0.01
    assert chain.analyze.counts["stops_without_search_record"] == 8221
    for name in ("search_rates_by_race", "search_rates_by_precinct"):
        table = chain.analyze.tables[name]
        assert table["n_stops"].sum() == 51920 - 8221, name
        assert table["person_search_pct"].between(0, 100).all()
    by_precinct = chain.analyze.tables["search_rates_by_precinct"]
    assert sorted(by_precinct["police_precinct"].tolist()) == [1, 2, 3, 4, 5]


def test_serve_suppresses_small_cells_and_publishes_l1(chain: Chain) -> None:
    for product in SPEC.products:
        analysis = chain.analyze.tables[product.table]
        served = chain.serve.tables[product.name]
        small = int((analysis["n_stops"] < 10).sum())
        assert chain.serve.counts[f"{product.name}.suppressed_cells"] == small
        assert len(served) == len(analysis) - small
        assert (served["n_stops"] >= 10).all()
        assert list(served.columns) == product.columns
        assert set(chain.serve.levels[product.name].values()) == {"L1"}
    assert chain.serve.counts["stops_per_1000_by_neighbourhood_month.suppressed_cells"] > 0


def test_counts_by_race_stay_sensitive_until_serve_suppresses_small_cells(
    chain: Chain, chain_levels: Callable[..., Any]
) -> None:
    levels = chain_levels(SPEC, chain)
    for tables in levels.values():
        assert not [(t, c) for t, cs in tables.items() for c, x in cs.items() if x.violation]
    by_race = levels["analyze"]["search_rates_by_race"]
    assert by_race["race"].level == by_race["n_stops"].level == "L3"  # grouped by race: sensitive
    assert levels["analyze"]["search_rates_by_precinct"]["n_stops"].level == "L2"
    stops = levels["process"]["stops"]
    assert stops["lat_grid"].level == "L2" and stops["race"].level == "L3"
    assert {x.level for cs in levels["serve"].values() for x in cs.values()} == {"L1"}


def test_no_identifier_or_exact_coordinate_reaches_a_served_cell(chain: Chain) -> None:
    ids = set(chain.source["idNum"]) | set(chain.process.tables["stops"]["stop_key"])
    coordinates = set(chain.source["lat"]) | set(chain.source["long"])
    for name, table in chain.serve.tables.items():
        cells = [value for column in table.columns for value in table[column].dropna()]
        assert not {str(value) for value in cells} & ids, name
        assert not {value for value in cells if isinstance(value, float)} & coordinates, name
        assert not {"stop_key", "lat_grid", "long_grid", "stop_date", "stop_hour"} & set(table.columns)


def test_every_output_column_has_lineage_to_existing_input_columns(
    chain: Chain, assert_column_lineage: Callable[..., None]
) -> None:
    assert_column_lineage(chain, {"stops": chain.source.columns, "demographics": chain.demographics.columns})
    masked = {c for c, s in chain.process.lineage["stops"].items() if any(x.masking for x in s)}
    assert masked == {"stop_key", "stop_date", "stop_month", "stop_hour", "lat_grid", "long_grid"}
    population = chain.process.lineage["stops"]["neighbourhood_population"]
    assert {(s.table, s.subtype) for s in population} >= {("neighbourhoods", "IDENTITY"), ("stops", "JOIN")}


# ------------------------------------------------------------------ edge cases on small frames
def _small(chain: Chain) -> dict[str, pd.DataFrame]:
    return {
        "stops": chain.store.tables["stops"].head(30),
        "neighbourhoods": chain.store.tables["neighbourhoods"],
    }


def test_duplicate_ids_and_odd_outcomes_are_counted(chain: Chain) -> None:
    small = _small(chain)
    stops = pd.concat([small["stops"], small["stops"].head(2)], ignore_index=True)
    stops["personSearch"] = stops["personSearch"].astype("object")
    stops.loc[0, "personSearch"] = "MAYBE"
    output = transforms.process(SPEC, {**small, "stops": stops})
    assert output.counts["duplicate_stop_ids"] == 2 and len(output.tables["stops"]) == 30
    assert output.counts["unexpected_personSearch"] == 1
    assert pd.isna(output.tables["stops"].loc[0, "person_search"])


def test_missing_input_column_or_table_is_named(chain: Chain) -> None:
    small = _small(chain)
    with pytest.raises(common.TransformError, match=r"missing column\(s\) neighborhood"):
        transforms.process(SPEC, {**small, "stops": small["stops"].drop(columns="neighborhood")})
    with pytest.raises(common.TransformError, match=r"missing input table\(s\) neighbourhoods"):
        transforms.process(SPEC, {"stops": small["stops"]})
    with pytest.raises(common.TransformError, match="hhIncome"):
        transforms.process(
            SPEC, {**small, "neighbourhoods": small["neighbourhoods"].drop(columns="hhIncome")}
        )
    processed = transforms.process(SPEC, small).tables
    with pytest.raises(common.TransformError, match="race"):
        transforms.analyze(SPEC, {**processed, "stops": processed["stops"].drop(columns="race")})


# ------------------------------------------------------------------ GX suites, through the gate engine
@pytest.mark.parametrize("stage", STAGES)
def test_every_suite_passes_on_the_real_data(
    suite_failures: Callable[..., set[str]], gate_frames: dict[str, Tables], stage: str
) -> None:
    assert suite_failures("mpls_stops", stage, gate_frames[stage]) == set()


def test_collect_suite_fails_on_a_missing_column_and_a_header_only_file(
    suite_failures: Callable[..., set[str]], gate_frames: dict[str, Tables]
) -> None:
    collected = gate_frames["collect"]
    without_race = {**collected, "stops": collected["stops"].drop(columns="race")}
    assert "expect_table_columns_to_match_set:" in suite_failures("mpls_stops", "collect", without_race)
    header_only = {**collected, "stops": collected["stops"].head(0)}
    assert "expect_table_row_count_to_be_between:" in suite_failures("mpls_stops", "collect", header_only)


def test_store_suite_fails_on_text_coordinates_and_duplicate_ids(
    chain: Chain, landed: dict[str, Path], suite_failures: Callable[..., set[str]], tmp_path: Path
) -> None:
    corrupted = chain.source.copy()
    corrupted["lat"] = corrupted["lat"].astype("object")
    corrupted.loc[5, "lat"] = "north"
    corrupt_file = tmp_path / "stops.pkl.compress"
    with lzma.open(corrupt_file, "wb", preset=0) as handle:  # fast: only the content matters
        pickle.dump(corrupted, handle)
    stored = transforms.store(SPEC, {**landed, "stops": corrupt_file})
    assert stored.counts["stops.lat.type_mismatch"] == 1
    assert "expect_column_values_to_be_of_type:lat" in suite_failures("mpls_stops", "store", stored.tables)
    stops = chain.store.tables["stops"]
    doubled = pd.concat([stops, stops.head(5)], ignore_index=True)
    failed = suite_failures("mpls_stops", "store", {**chain.store.tables, "stops": doubled})
    assert "expect_column_values_to_be_unique:idNum" in failed


def test_process_suite_fails_on_exact_coordinates_and_duplicate_keys(
    chain: Chain, suite_failures: Callable[..., set[str]]
) -> None:
    processed = chain.process.tables
    exact = processed["stops"].assign(lat_grid=chain.source["lat"])
    assert "expect_column_values_to_be_in_set:lat_grid" in suite_failures(
        "mpls_stops", "process", {**processed, "stops": exact}
    )
    doubled = pd.concat([processed["stops"], processed["stops"].head(3)], ignore_index=True)
    failed = suite_failures("mpls_stops", "process", {**processed, "stops": doubled})
    assert "expect_column_values_to_be_unique:stop_key" in failed


def test_analyze_and_serve_suites_fail_on_broken_aggregates(
    chain: Chain, suite_failures: Callable[..., set[str]]
) -> None:
    table = chain.analyze.tables["stops_by_neighbourhood_month"]
    doubled = pd.concat([table, table.head(3)], ignore_index=True)
    failed = suite_failures("mpls_stops", "analyze", {"stops_by_neighbourhood_month": doubled})
    assert "expect_compound_columns_to_be_unique:" in failed
    failed = suite_failures("mpls_stops", "serve", {"stops_per_1000_by_neighbourhood_month": table})
    assert "expect_column_values_to_be_between:n_stops" in failed
