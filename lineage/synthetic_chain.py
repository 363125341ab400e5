"""OpenLineage 2-0-2 building blocks and the hand-built nycflights13 five-stage chain (golden test data).

Re-exported by :mod:`lineage.synthetic`; import from there.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

PRODUCER = "https://github.com/apache/airflow/tree/providers-openlineage/2.20.3"
RUN_EVENT_SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
AIRFLOW_VERSION = "3.3.2"
ADAPTER_VERSION = "2.20.3"

# Version of each standard facet schema, as in the `$id` of /work/shared/openlineage-spec/facets/*.json.
FACET_VERSIONS: dict[str, str] = {
    "ColumnLineageDatasetFacet": "1-2-0",
    "DatasetVersionDatasetFacet": "1-0-1",
    "DatasourceDatasetFacet": "1-0-1",
    "DocumentationDatasetFacet": "1-1-0",
    "DocumentationJobFacet": "1-1-0",
    "ErrorMessageRunFacet": "1-0-1",
    "JobTypeJobFacet": "2-0-4",
    "LifecycleStateChangeDatasetFacet": "1-0-1",
    "NominalTimeRunFacet": "1-0-1",
    "OutputStatisticsOutputDatasetFacet": "1-0-2",
    "OwnershipJobFacet": "1-0-1",
    "ParentRunFacet": "1-2-0",
    "ProcessingEngineRunFacet": "1-1-1",
    "SchemaDatasetFacet": "1-2-0",
    "TagsDatasetFacet": "1-0-0",
}
# Custom (non-standard) facets emitted by the generators; their keys never collide with standard ones.
AIRFLOW_RUN_FACET_URL = (
    "https://raw.githubusercontent.com/apache/airflow/providers-openlineage/2.20.3/"
    "providers/openlineage/src/airflow/providers/openlineage/facets/AirflowRunFacet.json"
    "#/$defs/AirflowRunFacet"
)
LICENSE_FACET_URL = "https://github.com/chaintrace/chaintrace/blob/main/lineage/spec/LicenseDatasetFacet.json"
CUSTOM_FACET_KEYS = frozenset({"airflow", "chaintrace_license"})

_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/chaintrace/synthetic")

DS = tuple[str, str]
"""A dataset identity: (namespace, name)."""
Lin = tuple[DS, str, str, str, str, bool]
"""One column-lineage input: ((namespace, name), field, type, subtype, description, masking)."""


# --------------------------------------------------------------------------------------------- helpers
def facet_schema_url(facet_name: str) -> str:
    return (
        f"https://openlineage.io/spec/facets/{FACET_VERSIONS[facet_name]}/{facet_name}.json"
        f"#/$defs/{facet_name}"
    )


def facet(facet_name: str, **fields: Any) -> dict[str, Any]:
    """A standard facet: `_producer`, `_schemaURL` then the given fields."""
    return {"_producer": PRODUCER, "_schemaURL": facet_schema_url(facet_name), **fields}


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def format_time(value: datetime) -> str:
    """UTC, microseconds, trailing "Z" (e.g. 2026-01-05T02:00:00.000000Z)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def stable_uuid(*parts: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, "/".join(parts)))


def run_event(
    event_type: str,
    event_time: datetime,
    run_id: str,
    run_facets: dict[str, Any],
    job: DS,
    job_facets: dict[str, Any],
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "eventType": event_type,
        "eventTime": format_time(event_time),
        "producer": PRODUCER,
        "schemaURL": RUN_EVENT_SCHEMA_URL,
        "run": {"runId": run_id, "facets": run_facets},
        "job": {"namespace": job[0], "name": job[1], "facets": job_facets},
        "inputs": inputs,
        "outputs": outputs,
    }


def schema_facet(columns: Sequence[DS]) -> dict[str, Any]:
    return facet("SchemaDatasetFacet", fields=[{"name": name, "type": typ} for name, typ in columns])


def data_source_facet(namespace: str, name: str) -> dict[str, Any]:
    uri = f"file://{name}" if namespace == "file" else f"{namespace}{name}"
    return facet("DatasourceDatasetFacet", name=namespace, uri=uri)


def processing_engine_facet() -> dict[str, Any]:
    return facet(
        "ProcessingEngineRunFacet",
        version=AIRFLOW_VERSION,
        name="Airflow",
        openlineageAdapterVersion=ADAPTER_VERSION,
    )


def parent_facet(run_id: str, job: DS, root: bool = True) -> dict[str, Any]:
    ref: dict[str, Any] = {"run": {"runId": run_id}, "job": {"namespace": job[0], "name": job[1]}}
    return facet("ParentRunFacet", **ref, root=ref) if root else facet("ParentRunFacet", **ref)


def job_type_facet(job_type: str = "TASK") -> dict[str, Any]:
    return facet("JobTypeJobFacet", processingType="BATCH", integration="AIRFLOW", jobType=job_type)


def column_lineage_facet(fields: dict[str, list[Lin]], dataset: Sequence[Lin] = ()) -> dict[str, Any]:
    def input_field(lin: Lin) -> dict[str, Any]:
        (namespace, name), field, typ, subtype, description, masking = lin
        transformation: dict[str, Any] = {"type": typ, "subtype": subtype, "masking": masking}
        if description:
            transformation["description"] = description
        return {"namespace": namespace, "name": name, "field": field, "transformations": [transformation]}

    body: dict[str, Any] = {
        "fields": {out: {"inputFields": [input_field(lin) for lin in lins]} for out, lins in fields.items()}
    }
    if dataset:
        body["dataset"] = [input_field(lin) for lin in dataset]
    return facet("ColumnLineageDatasetFacet", **body)


# ------------------------------------------------------------------------------------ the real chain
CHAIN_NAMESPACE = "chaintrace"
CHAIN_DAG = "nycflights13"
CHAIN_STAGES = ("collect", "store", "process", "analyze", "serve")
CHAIN_JOBS: tuple[str, ...] = tuple(f"{CHAIN_DAG}.{stage}" for stage in CHAIN_STAGES)
CHAIN_SOURCE = ("https://github.com", "/hadley/nycflights13/flights.csv")
CHAIN_SERVED = ("file", "/data/service/nycflights13/delay_by_origin_month_public")

# fmt: off
_TABLES: dict[str, list[tuple[str, str, str]]] = {  # table -> [(column, type, classification)]
    "flights": [
        ("year", "integer", "L1"), ("month", "integer", "L1"), ("day", "integer", "L1"),
        ("dep_time", "integer", "L1"), ("dep_delay", "double", "L1"), ("arr_delay", "double", "L1"),
        ("carrier", "string", "L1"), ("flight", "integer", "L2"), ("tailnum", "string", "L3"),
        ("origin", "string", "L1"), ("dest", "string", "L1"), ("distance", "double", "L1"),
        ("time_hour", "timestamp", "L1"),
    ],
    "weather": [
        ("origin", "string", "L1"), ("time_hour", "timestamp", "L1"), ("temp", "double", "L1"),
        ("wind_speed", "double", "L1"), ("precip", "double", "L1"), ("visib", "double", "L1"),
    ],
    "planes": [
        ("tailnum", "string", "L3"), ("year", "integer", "L2"), ("manufacturer", "string", "L2"),
        ("model", "string", "L2"), ("seats", "integer", "L2"),
    ],
    "airports": [
        ("faa", "string", "L1"), ("name", "string", "L1"), ("lat", "double", "L1"),
        ("lon", "double", "L1"), ("tz", "double", "L1"),
    ],
}
# fmt: on
_ROWS = {"flights": 336_776, "weather": 26_115, "planes": 3_322, "airports": 1_458}
_SRC = {t: ("https://github.com", f"/hadley/nycflights13/{t}.csv") for t in _TABLES}
_LAND = {t: ("file", f"/data/landing/nycflights13/{t}.csv") for t in _TABLES}
_RAW = {t: ("file", f"/data/raw/nycflights13/{t}") for t in _TABLES}
_ENRICHED = ("file", "/data/processed/nycflights13/flights_enriched")
_ANALYSIS = ("file", "/data/analysis/nycflights13/delay_by_origin_month")
_ROUTES = ("file", "/data/service/nycflights13/route_delays")
_LICENSE = "CC0-1.0"
_LICENSE_NOTE = "nycflights13 by Hadley Wickham, CC0 1.0 Universal (https://github.com/hadley/nycflights13)"


class _Out:
    """One output dataset of a chain stage: columns with classification, column lineage, size."""

    def __init__(
        self,
        dataset: DS,
        columns: list[tuple[str, str, str]],
        lineage: dict[str, list[Lin]],
        dataset_lineage: Sequence[Lin] = (),
        rows: int = 0,
    ) -> None:
        self.dataset, self.columns, self.lineage = dataset, columns, lineage
        self.dataset_lineage, self.rows = dataset_lineage, rows


def _d(src: DS, field: str, subtype: str = "IDENTITY", desc: str = "", mask: bool = False) -> Lin:
    return (src, field, "DIRECT", subtype, desc or f"{subtype.lower()} of {field}", mask)


def _i(src: DS, field: str, subtype: str, desc: str) -> Lin:
    return (src, field, "INDIRECT", subtype, desc, False)


def _copy(table: str, src: DS, dst: DS, desc: str) -> _Out:
    cols = _TABLES[table]
    lineage = {c: [_d(src, c, "IDENTITY", desc)] for c, _, _ in cols}
    return _Out(dst, cols, lineage, rows=_ROWS[table])


def _stages() -> list[tuple[str, str, list[DS], list[_Out]]]:
    """(job, description, inputs, outputs) for the five stages."""
    fl, we, pl, ap = (_RAW[t] for t in ("flights", "weather", "planes", "airports"))
    # fmt: off
    enriched_cols = [
        *((c, t, lv) for c, t, lv in _TABLES["flights"] if c not in ("dep_time", "tailnum")),
        ("tailnum", "string", "L2"), ("plane_year", "integer", "L2"), ("plane_seats", "integer", "L2"),
        ("origin_name", "string", "L1"), ("origin_temp", "double", "L1"),
        ("origin_wind_speed", "double", "L1"), ("origin_precip", "double", "L1"),
    ]
    enriched_lin: dict[str, list[Lin]] = {c: [_d(fl, c)] for c, _, _ in enriched_cols[:11]}
    enriched_lin |= {
        "tailnum": [_d(fl, "tailnum", "TRANSFORMATION", "sha256(salt || tailnum), first 16 hex chars", True)],
        "plane_year": [_d(pl, "year"), _i(fl, "tailnum", "JOIN", "LEFT JOIN planes USING (tailnum)")],
        "plane_seats": [_d(pl, "seats"), _i(fl, "tailnum", "JOIN", "LEFT JOIN planes USING (tailnum)")],
        "origin_name": [_d(ap, "name"), _i(fl, "origin", "JOIN", "LEFT JOIN airports ON origin = faa")],
        "origin_temp": [_d(we, "temp")],
        "origin_wind_speed": [_d(we, "wind_speed")],
        "origin_precip": [_d(we, "precip")],
    }
    enriched_ds = [
        _i(fl, "tailnum", "JOIN", "LEFT JOIN planes USING (tailnum)"),
        _i(pl, "tailnum", "JOIN", "LEFT JOIN planes USING (tailnum)"),
        _i(fl, "origin", "JOIN", "LEFT JOIN airports ON origin = faa"),
        _i(ap, "faa", "JOIN", "LEFT JOIN airports ON origin = faa"),
        _i(fl, "time_hour", "JOIN", "LEFT JOIN weather USING (origin, time_hour)"),
        _i(we, "origin", "JOIN", "LEFT JOIN weather USING (origin, time_hour)"),
        _i(we, "time_hour", "JOIN", "LEFT JOIN weather USING (origin, time_hour)"),
        _i(fl, "dep_time", "FILTER", "cancelled flights dropped: dep_time IS NOT NULL"),
    ]
    keys = ("origin", "year", "month")
    group = [_i(_ENRICHED, c, "GROUP_BY", "GROUP BY origin, year, month") for c in keys]
    analysis_cols = [
        ("origin", "string", "L1"), ("year", "integer", "L1"), ("month", "integer", "L1"),
        ("n_flights", "integer", "L1"), ("avg_dep_delay", "double", "L1"), ("avg_arr_delay", "double", "L1"),
        ("p90_dep_delay", "double", "L1"), ("avg_origin_temp", "double", "L1"),
    ]
    analysis_lin: dict[str, list[Lin]] = {c: [_d(_ENRICHED, c)] for c in ("origin", "year", "month")}
    analysis_lin |= {
        "n_flights": [_d(_ENRICHED, "flight", "AGGREGATION", "count(*)")],
        "avg_dep_delay": [_d(_ENRICHED, "dep_delay", "AGGREGATION", "avg(dep_delay)")],
        "avg_arr_delay": [_d(_ENRICHED, "arr_delay", "AGGREGATION", "avg(arr_delay)")],
        "p90_dep_delay": [_d(_ENRICHED, "dep_delay", "AGGREGATION", "percentile_cont(0.9) of dep_delay")],
        "avg_origin_temp": [_d(_ENRICHED, "origin_temp", "AGGREGATION", "avg(origin_temp)")],
    }
    analysis_ds = [*group, _i(_ENRICHED, "dep_delay", "FILTER", "dep_delay IS NOT NULL")]
    public_cols = analysis_cols[:6]
    public_lin: dict[str, list[Lin]] = {c: [_d(_ANALYSIS, c)] for c in (*keys, "n_flights")}
    public_lin |= {
        c: [_d(_ANALYSIS, c, "TRANSFORMATION", f"round({c}, 1)")] for c in ("avg_dep_delay", "avg_arr_delay")
    }
    public_ds = [_i(_ANALYSIS, "n_flights", "FILTER", "small cells suppressed: n_flights >= 30")]
    route_cols = [
        ("origin", "string", "L1"), ("dest", "string", "L1"), ("carrier", "string", "L1"),
        ("n_flights", "integer", "L1"), ("avg_arr_delay", "double", "L1"), ("avg_distance", "double", "L1"),
    ]
    route_keys = ("origin", "dest", "carrier")
    route_lin: dict[str, list[Lin]] = {c: [_d(_ENRICHED, c)] for c in route_keys}
    route_lin |= {
        "n_flights": [_d(_ENRICHED, "flight", "AGGREGATION", "count(*)")],
        "avg_arr_delay": [_d(_ENRICHED, "arr_delay", "AGGREGATION", "avg(arr_delay)")],
        "avg_distance": [_d(_ENRICHED, "distance", "AGGREGATION", "avg(distance)")],
    }
    route_ds = [_i(_ENRICHED, c, "GROUP_BY", "GROUP BY origin, dest, carrier") for c in route_keys]
    tables = list(_TABLES)
    collected = [_copy(t, _SRC[t], _LAND[t], "downloaded verbatim") for t in tables]
    stored = [_copy(t, _LAND[t], _RAW[t], "parsed and cast to Parquet") for t in tables]
    served = [
        _Out(CHAIN_SERVED, public_cols, public_lin, public_ds, 36),
        _Out(_ROUTES, route_cols, route_lin, route_ds, 314),
    ]
    return [
        (CHAIN_JOBS[0], "Download the nycflights13 CSV tables from GitHub into the landing zone.",
         [_SRC[t] for t in tables], collected),
        (CHAIN_JOBS[1], "Validate landing CSVs and store them as typed Parquet in the raw zone.",
         [_LAND[t] for t in tables], stored),
        (CHAIN_JOBS[2], "Join flights with weather, planes and airports; pseudonymise tail numbers.",
         [fl, we, pl, ap], [_Out(_ENRICHED, enriched_cols, enriched_lin, enriched_ds, 328_521)]),
        (CHAIN_JOBS[3], "Monthly departure-delay statistics per origin airport.",
         [_ENRICHED], [_Out(_ANALYSIS, analysis_cols, analysis_lin, analysis_ds, 36)]),
        (CHAIN_JOBS[4], "Publish open data products: public delay table and route delays.",
         [_ANALYSIS, _ENRICHED], served),
    ]
    # fmt: on


def _columns_of(dataset: DS) -> list[tuple[str, str, str]]:
    for table, cols in _TABLES.items():
        if dataset in (_SRC[table], _LAND[table], _RAW[table]):
            return cols
    for _, _, _, outs in _stages():
        for out in outs:
            if out.dataset == dataset:
                return out.columns
    raise KeyError(dataset)


def _base_facets(dataset: DS, columns: list[tuple[str, str, str]]) -> dict[str, Any]:
    facets = {
        "schema": schema_facet([(c, t) for c, t, _ in columns]),
        "dataSource": data_source_facet(*dataset),
    }
    if dataset[0] != "file":
        facets["documentation"] = facet("DocumentationDatasetFacet", description=_LICENSE_NOTE)
        facets["chaintrace_license"] = {
            "_producer": PRODUCER,
            "_schemaURL": LICENSE_FACET_URL,
            "license": _LICENSE,
            "attribution": _LICENSE_NOTE,
        }
    return facets


def _output(out: _Out, complete: bool, run_suffix: str) -> dict[str, Any]:
    levels = [lv for _, _, lv in out.columns]
    tags = [{"key": "classification", "value": lv, "source": "USER", "field": c} for c, _, lv in out.columns]
    tags.append({"key": "classification", "value": max(levels), "source": "USER"})
    facets = _base_facets(out.dataset, out.columns)
    facets["columnLineage"] = column_lineage_facet(out.lineage, out.dataset_lineage)
    facets["tags"] = facet("TagsDatasetFacet", tags=tags)
    dataset: dict[str, Any] = {"namespace": out.dataset[0], "name": out.dataset[1], "facets": facets}
    if complete:
        version = stable_uuid(*out.dataset, run_suffix)
        lifecycle = facet("LifecycleStateChangeDatasetFacet", lifecycleStateChange="OVERWRITE")
        facets["lifecycleStateChange"] = lifecycle
        facets["version"] = facet("DatasetVersionDatasetFacet", datasetVersion=version)
        size = out.rows * 8 * len(out.columns) // 3
        stats = facet("OutputStatisticsOutputDatasetFacet", rowCount=out.rows, size=size, fileCount=1)
        dataset["outputFacets"] = {"outputStatistics": stats}
    return dataset


def chain_run_id(job_name: str, run_suffix: str = "") -> str:
    """Run id of a chain job (or of the `nycflights13` DAG run): uuid5 of job name + suffix."""
    return stable_uuid(CHAIN_NAMESPACE, job_name + run_suffix)


def five_stage_chain_events(
    *, run_suffix: str = "", base_time: str = "2026-01-05T02:00:00Z"
) -> list[dict[str, Any]]:
    """START and COMPLETE events of collect -> store -> process -> analyze -> serve for nycflights13."""
    base = parse_time(base_time)
    dag = (CHAIN_NAMESPACE, CHAIN_DAG)
    dag_run = chain_run_id(CHAIN_DAG, run_suffix)
    events: list[dict[str, Any]] = []
    for i, (job_name, description, inputs, outs) in enumerate(_stages()):
        start = base + timedelta(minutes=15 * i, microseconds=1_000 * i + 17)
        end = start + timedelta(minutes=3 + 2 * i, seconds=7 * i, microseconds=123_456)
        run_facets = {
            "nominalTime": facet(
                "NominalTimeRunFacet",
                nominalStartTime=format_time(base),
                nominalEndTime=format_time(base + timedelta(days=1)),
            ),
            "parent": parent_facet(dag_run, dag),
            "processing_engine": processing_engine_facet(),
        }
        owners = [{"name": "team:chaintrace-data", "type": "MAINTAINER"}]
        job_facets = {
            "jobType": job_type_facet(),
            "documentation": facet("DocumentationJobFacet", description=description),
            "ownership": facet("OwnershipJobFacet", owners=owners),
        }
        ins = [{"namespace": d[0], "name": d[1], "facets": _base_facets(d, _columns_of(d))} for d in inputs]
        run_id = chain_run_id(job_name, run_suffix)
        for event_type, when in (("START", start), ("COMPLETE", end)):
            outputs = [_output(out, event_type == "COMPLETE", run_suffix) for out in outs]
            job = (CHAIN_NAMESPACE, job_name)
            event = run_event(event_type, when, run_id, run_facets, job, job_facets, ins, outputs)
            events.append(copy.deepcopy(event))  # no dicts shared between events
    return events
