"""Transforms of ``mpls_stops``: Minneapolis police stops 2017 joined to neighbourhood demographics.

process: the incident number becomes a salted pseudonym, the exact time becomes the local day, hour
and month, the coordinates snap to a 0.01 degree grid, YES/NO outcomes become booleans, and each stop
gets its neighbourhood's population (the three neighbourhoods without demographics are counted, not
dropped). analyze: stops per 1,000 residents by neighbourhood and month; person and vehicle search
rates by recorded race and by precinct, each with the stops behind the cell. serve: the public
products, cells under k stops suppressed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from chaintrace_chain.stage_output import ColumnLineage, FieldSource, StageOutput, Subtype
from chaintrace_chain.transforms import common
from chaintrace_chain.transforms.masking import pseudonym_salt, round_to_grid, salted_hash

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from chaintrace_chain.spec import DatasetSpec
    from chaintrace_chain.storage import ZonePath

STOPS = "stops"
NEIGHBOURHOODS = "neighbourhoods"
STOP_COLUMNS = [
    "idNum",
    "date",
    "problem",
    "MDC",
    "citationIssued",
    "personSearch",
    "vehicleSearch",
    "preRace",
    "race",
    "gender",
    "lat",
    "long",
    "policePrecinct",
    "neighborhood",
]
DEMOGRAPHIC_COLUMNS = {  # source column -> processed column
    "neighborhood": "neighbourhood",
    "population": "population",
    "white": "white_share",
    "black": "black_share",
    "foreignBorn": "foreign_born_share",
    "hhIncome": "median_hh_income",
    "poverty": "poverty_share",
    "collegeGrad": "college_grad_share",
}
LOCAL_TIMEZONE = "America/Chicago"  # the source times are UTC; months and days are Minneapolis ones
GRID_DEGREES = 0.01  # about 1.1 km north-south, 0.8 km east-west at 45 degrees north
NOT_RECORDED = "Not recorded"
YES_NO = {"YES": True, "NO": False}
OUTCOMES = {
    "citationIssued": "citation_issued",
    "personSearch": "person_search",
    "vehicleSearch": "vehicle_search",
}
RATE_GROUPINGS = {"search_rates_by_race": "race", "search_rates_by_precinct": "police_precinct"}


def store(spec: DatasetSpec, landed: Mapping[str, Path | ZonePath]) -> StageOutput:
    return common.store_tables(spec, landed)


def _label(series: pd.Series) -> pd.Series:
    """Trimmed text, missing as ``Not recorded`` (a category of its own in the rates)."""
    text = series.astype("str").str.strip()
    return text.where(series.notna() & (text != ""), NOT_RECORDED).astype("str")


def _yes_no(series: pd.Series) -> tuple[pd.Series, int]:
    """YES/NO as a nullable boolean; returns how many present values were neither."""
    present = series.notna()
    parsed = series.astype("str").str.strip().str.upper().map(YES_NO).astype("boolean")
    return parsed, int((present & parsed.isna()).sum())


def _neighbourhoods(frame: pd.DataFrame, counts: dict[str, int]) -> pd.DataFrame:
    table = frame[list(DEMOGRAPHIC_COLUMNS)].rename(columns=DEMOGRAPHIC_COLUMNS)
    table["neighbourhood"] = table["neighbourhood"].astype("str").str.strip()
    duplicated = table["neighbourhood"].duplicated()
    counts["duplicate_neighbourhood_rows"] = int(duplicated.sum())
    table = table[~duplicated].reset_index(drop=True)
    table["population"] = table["population"].astype("int64")
    table["median_hh_income"] = table["median_hh_income"].astype("int64")
    return table


def process(spec: DatasetSpec, raw: Mapping[str, pd.DataFrame]) -> StageOutput:
    where = f"{spec.name}.process"
    common.require_tables(raw, [STOPS, NEIGHBOURHOODS], where)
    common.require_columns(raw[STOPS], STOP_COLUMNS, f"{where} (table {STOPS})")
    common.require_columns(
        raw[NEIGHBOURHOODS], list(DEMOGRAPHIC_COLUMNS), f"{where} (table {NEIGHBOURHOODS})"
    )
    frame = raw[STOPS]
    counts: dict[str, int] = {"input_stops": len(frame)}
    neighbourhoods = _neighbourhoods(raw[NEIGHBOURHOODS], counts)

    duplicated = frame["idNum"].duplicated()
    counts["duplicate_stop_ids"] = int(duplicated.sum())
    frame = frame[~duplicated]

    # Store already parsed the time; a store that kept it as text (bad values) still parses here.
    when = pd.to_datetime(frame["date"], utc=True, errors="coerce", format="ISO8601")
    counts["unparseable_date"] = int(when.isna().sum())
    local = when.dt.tz_convert(LOCAL_TIMEZONE)

    stops = pd.DataFrame(
        {
            "stop_key": salted_hash(frame["idNum"], pseudonym_salt()),
            "stop_date": local.dt.tz_localize(None).dt.normalize(),
            "stop_month": local.dt.strftime("%Y-%m").astype("str"),
            "stop_hour": local.dt.hour.astype("Int64"),
            "problem": _label(frame["problem"]),
            "recorded_by": frame["MDC"].astype("str").str.strip().str.lower(),
        }
    )
    for source, column in OUTCOMES.items():
        stops[column], unexpected = _yes_no(frame[source])
        counts[f"unexpected_{source}"] = unexpected
        counts[f"null_{source}"] = int(frame[source].isna().sum())
    for source, column in (("preRace", "pre_race"), ("race", "race"), ("gender", "gender")):
        stops[column] = _label(frame[source])
        counts[f"null_{source}"] = int(frame[source].isna().sum())
    stops["lat_grid"] = round_to_grid(frame["lat"], GRID_DEGREES)
    stops["long_grid"] = round_to_grid(frame["long"], GRID_DEGREES)
    stops["police_precinct"] = frame["policePrecinct"].astype("Int64")
    stops["neighbourhood"] = frame["neighborhood"].astype("str").str.strip()
    population = stops["neighbourhood"].map(neighbourhoods.set_index("neighbourhood")["population"])
    stops["neighbourhood_population"] = population.astype("Int64")
    stops["has_demographics"] = population.notna()
    stops = stops.reset_index(drop=True)

    # The real join gap: neighbourhoods with stops but no demographics row (no housing, per carData).
    counts["stops_without_demographics"] = int((~stops["has_demographics"]).sum())
    counts["neighbourhoods_without_demographics"] = int(
        stops.loc[~stops["has_demographics"], "neighbourhood"].nunique()
    )
    counts["neighbourhoods_without_stops"] = int(
        (~neighbourhoods["neighbourhood"].isin(stops["neighbourhood"])).sum()
    )
    counts["rows"] = len(stops)
    levels = {
        # a pseudonym of the incident number, and a 1 km grid instead of the exact point
        STOPS: {"stop_key": "L2", "lat_grid": "L2", "long_grid": "L2"},
    }
    return StageOutput({STOPS: stops, NEIGHBOURHOODS: neighbourhoods}, _process_lineage(), counts, levels)


def _process_lineage() -> dict[str, ColumnLineage]:
    def direct(
        column: str, subtype: Subtype = "TRANSFORMATION", *, masking: bool = False, description: str = ""
    ) -> list[FieldSource]:
        return [FieldSource(STOPS, column, "DIRECT", subtype, masking=masking, description=description)]

    join = [
        FieldSource(STOPS, "neighborhood", "INDIRECT", "JOIN"),
        FieldSource(NEIGHBOURHOODS, "neighborhood", "INDIRECT", "JOIN"),
    ]
    stops: ColumnLineage = {
        "stop_key": direct("idNum", masking=True, description="salted HMAC-SHA256 pseudonym"),
        "stop_date": direct("date", masking=True, description=f"local ({LOCAL_TIMEZONE}) calendar day"),
        "stop_month": direct("date", masking=True, description="local calendar month"),
        "stop_hour": direct("date", masking=True, description="local hour of day"),
        "problem": direct("problem"),
        "recorded_by": direct("MDC"),
        "pre_race": direct("preRace"),
        "race": direct("race"),
        "gender": direct("gender"),
        "lat_grid": direct("lat", masking=True, description=f"rounded to a {GRID_DEGREES} degree grid"),
        "long_grid": direct("long", masking=True, description=f"rounded to a {GRID_DEGREES} degree grid"),
        "police_precinct": direct("policePrecinct", "IDENTITY"),
        "neighbourhood": direct("neighborhood"),
        "neighbourhood_population": [FieldSource(NEIGHBOURHOODS, "population", "DIRECT", "IDENTITY"), *join],
        "has_demographics": join,
    }
    for source, column in OUTCOMES.items():
        stops[column] = direct(source, description="YES/NO as boolean")
    neighbourhoods: ColumnLineage = {
        column: [FieldSource(NEIGHBOURHOODS, source, "DIRECT", "IDENTITY")]
        for source, column in DEMOGRAPHIC_COLUMNS.items()
    }
    return {STOPS: stops, NEIGHBOURHOODS: neighbourhoods}


def _per_resident(stops: pd.DataFrame, neighbourhoods: pd.DataFrame) -> pd.DataFrame:
    grouped = stops.groupby(["neighbourhood", "stop_month"], sort=True).size().rename("n_stops").reset_index()
    table = grouped.merge(neighbourhoods[["neighbourhood", "population"]], on="neighbourhood", how="left")
    table["n_stops"] = table["n_stops"].astype("int64")
    table["population"] = table["population"].astype("Int64")
    residents = table["population"].astype("float64").where(table["population"].astype("float64") > 0)
    table["stops_per_1000"] = (1000.0 * table["n_stops"] / residents).round(2).astype("float64")
    return table


def _search_rates(recorded: pd.DataFrame, key: str) -> pd.DataFrame:
    grouped = recorded.groupby(key, sort=True)
    table = pd.DataFrame(
        {
            "n_stops": grouped.size(),
            "n_person_searches": grouped["person_search"].sum(),
            "n_vehicle_searches": grouped["vehicle_search"].sum(),
            "n_citation_recorded": grouped["citation_issued"].count(),
            "n_citations": grouped["citation_issued"].sum(),
        }
    ).reset_index()
    for column in (
        "n_stops",
        "n_person_searches",
        "n_vehicle_searches",
        "n_citation_recorded",
        "n_citations",
    ):
        table[column] = table[column].astype("int64")
    table["person_search_pct"] = (100.0 * table["n_person_searches"] / table["n_stops"]).round(1)
    table["vehicle_search_pct"] = (100.0 * table["n_vehicle_searches"] / table["n_stops"]).round(1)
    recorded_citations = table["n_citation_recorded"].where(table["n_citation_recorded"] > 0)
    table["citation_pct"] = (100.0 * table["n_citations"] / recorded_citations).round(1).astype("float64")
    return table


def _analysis_lineage() -> dict[str, ColumnLineage]:
    by_place = [
        FieldSource(STOPS, "neighbourhood", "INDIRECT", "GROUP_BY"),
        FieldSource(STOPS, "stop_month", "INDIRECT", "GROUP_BY"),
    ]
    join = [
        FieldSource(STOPS, "neighbourhood", "INDIRECT", "JOIN"),
        FieldSource(NEIGHBOURHOODS, "neighbourhood", "INDIRECT", "JOIN"),
    ]
    counted = FieldSource(STOPS, "stop_key", "DIRECT", "AGGREGATION", description="stops in the cell")
    population = FieldSource(NEIGHBOURHOODS, "population", "DIRECT", "IDENTITY")
    lineage: dict[str, ColumnLineage] = {
        "stops_by_neighbourhood_month": {
            "neighbourhood": [FieldSource(STOPS, "neighbourhood", "DIRECT", "IDENTITY")],
            "stop_month": [FieldSource(STOPS, "stop_month", "DIRECT", "IDENTITY")],
            "n_stops": [counted, *by_place],
            "population": [population, *join],
            "stops_per_1000": [
                counted,
                FieldSource(NEIGHBOURHOODS, "population", "DIRECT", "TRANSFORMATION", description="divisor"),
                *by_place,
                *join,
            ],
        }
    }
    recorded = FieldSource(STOPS, "person_search", "INDIRECT", "FILTER", description="stops with outcomes")
    for table, key in RATE_GROUPINGS.items():
        group_by = [FieldSource(STOPS, key, "INDIRECT", "GROUP_BY"), recorded]

        def aggregated(
            column: str, description: str, group_by: list[FieldSource] = group_by
        ) -> list[FieldSource]:
            return [FieldSource(STOPS, column, "DIRECT", "AGGREGATION", description=description), *group_by]

        lineage[table] = {
            key: [FieldSource(STOPS, key, "DIRECT", "IDENTITY")],
            "n_stops": [counted, *group_by],
            "n_person_searches": aggregated("person_search", "person searches"),
            "n_vehicle_searches": aggregated("vehicle_search", "vehicle searches"),
            "n_citation_recorded": aggregated("citation_issued", "stops with a citation outcome"),
            "n_citations": aggregated("citation_issued", "citations issued"),
            "person_search_pct": [*aggregated("person_search", "100 x searches / stops"), counted],
            "vehicle_search_pct": [*aggregated("vehicle_search", "100 x searches / stops"), counted],
            "citation_pct": aggregated("citation_issued", "100 x citations / stops with the outcome"),
        }
    return lineage


def analyze(spec: DatasetSpec, processed: Mapping[str, pd.DataFrame]) -> StageOutput:
    where = f"{spec.name}.analyze"
    common.require_tables(processed, [STOPS, NEIGHBOURHOODS], where)
    stops = processed[STOPS]
    common.require_columns(
        stops,
        ["stop_key", "neighbourhood", "stop_month", "race", "police_precinct", *OUTCOMES.values()],
        f"{where} (table {STOPS})",
    )
    common.require_columns(
        processed[NEIGHBOURHOODS], ["neighbourhood", "population"], f"{where} (table {NEIGHBOURHOODS})"
    )
    counts: dict[str, int] = {"stops": len(stops)}
    # Search outcomes exist only for stops recorded on the in-vehicle computer: rates use those.
    has_outcomes = stops["person_search"].notna() & stops["vehicle_search"].notna()
    counts["stops_without_search_record"] = int((~has_outcomes).sum())
    recorded = stops[has_outcomes]
    tables = {"stops_by_neighbourhood_month": _per_resident(stops, processed[NEIGHBOURHOODS])}
    counts["cells_without_population"] = int(
        tables["stops_by_neighbourhood_month"]["population"].isna().sum()
    )
    for table, key in RATE_GROUPINGS.items():
        tables[table] = _search_rates(recorded, key)
    for table, frame in tables.items():
        counts[f"{table}.cells"] = len(frame)
    # No level declared: counts by race or by small neighbourhood-months keep the level of what they
    # count until serve has suppressed the cells under k.
    return StageOutput(tables, _analysis_lineage(), counts)


def serve(spec: DatasetSpec, analysis: Mapping[str, pd.DataFrame]) -> StageOutput:
    output = common.serve_products(spec, analysis)
    # Each product is aggregates whose cells under k stops were suppressed: that makes them public.
    output.levels = {product.name: dict.fromkeys(product.columns, "L1") for product in spec.products}
    return output
