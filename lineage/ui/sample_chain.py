"""A small hand-built chain run for the web UI's tests and demos, shaped as the chain's operators emit it.

DAG ``flights`` (namespace ``chaintrace``), one DAG run with Airflow's ``airflowDagRun`` facet. Stage tasks
``flights.<stage>.run`` carry ``schema``, ``tags`` (a level per column, ``field`` set) and
``columnLineage``; the tail number is hashed on the way from landing to raw (a masking edge: the hash is
declared L1). Gate tasks ``flights.<stage>.gate`` validate their input with ``dataQualityAssertions``,
``dataQualityMetrics`` and the chain's ``gateResult``: the collect gate passes, the store gate fails and
moves its batch to quarantine (``lifecycleStateChange`` RENAME). Levels: landing and raw hold a
passenger name (L4), the served aggregate is L1, so a reader cleared for L2 sees landing and raw as
withheld placeholders.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from lineage.synthetic_chain import (
    PRODUCER,
    Lin,
    column_lineage_facet,
    facet,
    parent_facet,
    run_event,
    schema_facet,
    stable_uuid,
)

NAMESPACE = "chaintrace"
DAG_ID = "flights"
AIRFLOW_RUN_ID = "manual__2026-11-01T02:00:00+00:00"
DAG_RUN = stable_uuid("ui-sample-chain", DAG_ID, AIRFLOW_RUN_ID)
CHAIN_SCHEMA = "https://chaintrace.dev/spec/facets/1-0-0"

SOURCE = ("file", "/data/sources/flights.csv")
LANDING = ("file", "/data/landing/flights/flights")
RAW = ("file", "/data/raw/flights/flights")
SERVED = ("file", "/data/service/flights/carrier_delays")
QUARANTINE = ("file", "/data/quarantine/flights/store/flights")


def _standard(name: str, version: str, **fields: Any) -> dict[str, Any]:
    url = f"https://openlineage.io/spec/facets/{version}/{name}.json#/$defs/{name}"
    return {"_producer": PRODUCER, "_schemaURL": url, **fields}


def _custom(name: str, **fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": f"{CHAIN_SCHEMA}/{name}.json#/$defs/{name}", **fields}


def _dataset(ds: tuple[str, str], columns: list[tuple[str, str, str]],
             lineage: dict[str, list[Lin]] | None = None) -> dict[str, Any]:
    tags = [{"key": "classification", "value": level, "source": "USER", "field": name}
            for name, _, level in columns]
    facets = {"schema": schema_facet([(name, typ) for name, typ, _ in columns]),
              "tags": facet("TagsDatasetFacet", tags=tags)}
    if lineage:
        facets["columnLineage"] = column_lineage_facet(lineage)
    return {"namespace": ds[0], "name": ds[1], "facets": facets}


def _gate_input(ds: tuple[str, str], stage: str, failing: str | None) -> dict[str, Any]:
    assertions = [
        {"assertion": "not_null", "name": "expect_column_values_to_not_be_null", "column": column,
         "success": column != failing, "severity": "error",
         "actual": '{"unexpected_count": 12}' if column == failing else "0"}
        for column in ("carrier", "dep_delay")
    ]
    assertions.append({"assertion": "row_count", "name": "expect_table_row_count_to_be_between",
                       "success": True, "severity": "error", "expected": '{"min_value": 1}',
                       "actual": "336776"})
    return {"namespace": ds[0], "name": ds[1], "facets": {}, "inputFacets": {
        "dataQualityAssertions": _standard("DataQualityAssertionsDatasetFacet", "1-1-0",
                                           assertions=assertions),
        "dataQualityMetrics": _standard("DataQualityMetricsInputDatasetFacet", "1-0-3", rowCount=336776,
                                        columnMetrics={"carrier": {"nullCount": 12 if failing else 0}}),
        "gateResult": _custom("GateResultInputDatasetFacet", suite=f"flights__{stage}",
                              success=failing is None, stage=stage, evaluated=len(assertions),
                              successful=sum(bool(a["success"]) for a in assertions),
                              docsPage=f"file:///data/quality/docs/flights__{stage}.html"),
    }}


START = datetime(2026, 11, 1, 2, tzinfo=UTC)


def chain_events(start: datetime = START) -> list[dict[str, Any]]:
    """The events of one DAG run of the hand-built chain (see the module docstring), from ``start``."""
    dag = (NAMESPACE, DAG_ID)
    airflow = {"airflowDagRun": _custom("AirflowDagRunFacet", dag={"dag_id": DAG_ID},
                                        dagRun={"run_id": AIRFLOW_RUN_ID})}
    parent = {"parent": parent_facet(DAG_RUN, dag)}
    landing_cols = [("carrier", "string", "L1"), ("dep_delay", "double", "L1"), ("tailnum", "string", "L2"),
                    ("passenger_name", "string", "L4")]
    raw_cols = [("carrier", "string", "L1"), ("dep_delay", "double", "L1"), ("tailnum_hash", "string", "L1"),
                ("passenger_name", "string", "L4")]
    served_cols = [("carrier", "string", "L1"), ("mean_delay", "double", "L1")]

    def direct(ds: tuple[str, str], field: str, subtype: str = "IDENTITY", mask: bool = False) -> Lin:
        return (ds, field, "DIRECT", subtype, f"{subtype.lower()} of {field}", mask)

    landing = _dataset(LANDING, landing_cols, {c: [direct(SOURCE, c)] for c, _, _ in landing_cols})
    raw = _dataset(RAW, raw_cols, {
        "carrier": [direct(LANDING, "carrier")], "dep_delay": [direct(LANDING, "dep_delay")],
        "passenger_name": [direct(LANDING, "passenger_name")],
        "tailnum_hash": [direct(LANDING, "tailnum", "TRANSFORMATION", mask=True)]})
    served = _dataset(SERVED, served_cols, {"carrier": [direct(RAW, "carrier")],
                                            "mean_delay": [direct(RAW, "dep_delay", "AGGREGATION")]})
    source = {"namespace": SOURCE[0], "name": SOURCE[1], "facets": {}}
    clock = iter(start + timedelta(minutes=2 * i) for i in range(40))
    events = [run_event("START", next(clock), DAG_RUN, airflow, dag, {}, [], [])]

    def task(name: str, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]], *,
             fail: bool = False) -> None:
        run_id = stable_uuid("ui-sample-chain", name, AIRFLOW_RUN_ID)
        job = (NAMESPACE, f"{DAG_ID}.{name}")
        events.append(run_event("START", next(clock), run_id, parent, job, {}, inputs, []))
        events.append(run_event("FAIL" if fail else "COMPLETE", next(clock), run_id, parent, job, {}, inputs,
                                outputs))

    task("collect.run", [source], [landing])
    task("collect.gate", [_gate_input(LANDING, "collect", None)], [])
    task("store.run", [{"namespace": LANDING[0], "name": LANDING[1], "facets": {}}], [raw])
    moved = facet("LifecycleStateChangeDatasetFacet", lifecycleStateChange="RENAME",
                  previousIdentifier={"namespace": RAW[0], "name": RAW[1]})
    quarantined = {"namespace": QUARANTINE[0], "name": QUARANTINE[1],
                   "facets": {"lifecycleStateChange": moved}}
    task("store.gate", [_gate_input(RAW, "store", "carrier")], [quarantined], fail=True)
    task("serve.run", [{"namespace": RAW[0], "name": RAW[1], "facets": {}}], [served])
    events.append(run_event("FAIL", next(clock), DAG_RUN, airflow, dag, {}, [], []))
    return events
