"""Conformance tests for lineage.service.validation (OpenLineage 2-0-2).

The corpus is built here: valid events, events whose standard facets break their facet schemas (accepted,
with warnings) and events that break the core schema (rejected). Every corpus event's core verdict is
cross-checked against the pure-Python ``jsonschema`` implementation, and every standard facet in it
against its facet schema, so the two implementations have to agree.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import socket
import timeit
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing

from lineage.service.validation import (
    DEFAULT_SPEC_DIR,
    MAX_ERRORS,
    EventValidator,
    FacetWarning,
    FieldError,
    ValidationOutcome,
)

REPO = Path(__file__).resolve().parents[3]
SPEC_DIR = REPO / "lineage" / "spec" / "openlineage" / "2-0-2"
# The team's reference copy: shared/ beside the checkout (as CI lays it out), else the workplace's.
SHARED_SPEC = next(
    (p for p in (Path(__file__).resolve().parents[3].parent / "shared" / "openlineage-spec",
                 Path("/work/shared/openlineage-spec")) if p.is_dir()),
    Path("/work/shared/openlineage-spec"),
)
CORE_ID = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
FACETS = "https://openlineage.io/spec/facets"
PRODUCER = "https://github.com/apache/airflow/tree/providers-openlineage/1.14.0"
RUN_ID = "0190a5c6-2f3e-7c1b-9a4e-2b7d3c5e8f10"
PARENT_RUN_ID = "0190a5c6-0000-7c1b-9a4e-2b7d3c5e8f10"

Event = dict[str, Any]


# --------------------------------------------------------------------------- corpus builders


def facet(schema: str, **fields: Any) -> dict[str, Any]:
    """A facet with the base fields; ``schema`` is e.g. ``1-0-1/ErrorMessageRunFacet``."""
    name = schema.rsplit("/", 1)[1]
    return {"_producer": PRODUCER, "_schemaURL": f"{FACETS}/{schema}.json#/$defs/{name}", **fields}


def schema_fields() -> list[dict[str, Any]]:
    return [
        {"name": "station_id", "type": "STRING", "description": "monitoring station"},
        {"name": "measured_at", "type": "TIMESTAMP"},
        {"name": "pm25", "type": "FLOAT"},
    ]


def airflow_event() -> Event:
    """A realistic (~3 KB) Airflow COMPLETE event with schema/dataSource/columnLineage facets."""
    source = "public-data.raw.air_quality"
    return {
        "eventType": "COMPLETE",
        "eventTime": "2024-05-04T10:15:30.123456+00:00",
        "producer": PRODUCER,
        "schemaURL": f"{CORE_ID}#/$defs/RunEvent",
        "run": {
            "runId": RUN_ID,
            "facets": {
                "nominalTime": facet("1-0-1/NominalTimeRunFacet", nominalStartTime="2024-05-04T10:00:00Z"),
                "parent": facet(
                    "1-2-0/ParentRunFacet",
                    run={"runId": PARENT_RUN_ID},
                    job={"namespace": "airflow://prod", "name": "air_quality_daily"},
                ),
                "processing_engine": facet(
                    "1-1-1/ProcessingEngineRunFacet", version="2.10.2", name="Airflow"
                ),
            },
        },
        "job": {
            "namespace": "airflow://prod",
            "name": "air_quality_daily.load",
            "facets": {
                "jobType": facet(
                    "2-0-4/JobTypeJobFacet", processingType="BATCH", integration="AIRFLOW", jobType="TASK"
                ),
                "sql": facet("1-1-0/SQLJobFacet", query="INSERT INTO analytics.aq SELECT * FROM raw.aq"),
            },
        },
        "inputs": [
            {
                "namespace": "bigquery",
                "name": source,
                "facets": {
                    "schema": facet("1-2-0/SchemaDatasetFacet", fields=schema_fields()),
                    "dataSource": facet("1-0-1/DatasourceDatasetFacet", name="bigquery", uri="bigquery"),
                },
            }
        ],
        "outputs": [
            {
                "namespace": "bigquery",
                "name": "public-data.analytics.aq",
                "facets": {
                    "schema": facet("1-2-0/SchemaDatasetFacet", fields=schema_fields()),
                    "dataSource": facet("1-0-1/DatasourceDatasetFacet", name="bigquery", uri="bigquery"),
                    "columnLineage": facet(
                        "1-2-0/ColumnLineageDatasetFacet",
                        fields={
                            col["name"]: {
                                "inputFields": [
                                    {
                                        "namespace": "bigquery",
                                        "name": source,
                                        "field": col["name"],
                                        "transformations": [{"type": "DIRECT"}],
                                    }
                                ]
                            }
                            for col in schema_fields()[1:]
                        },
                    ),
                },
            }
        ],
    }


def start_event_with_many_facets() -> Event:
    event = airflow_event()
    event["eventType"] = "START"
    event["run"]["facets"].update(
        {
            "tags": facet("1-0-0/TagsRunFacet", tags=[{"key": "env", "value": "prod", "source": "USER"}]),
            "environmentVariables": facet(
                "1-0-0/EnvironmentVariablesRunFacet", environmentVariables=[{"name": "TZ", "value": "UTC"}]
            ),
            "externalQuery": facet(
                "1-0-2/ExternalQueryRunFacet", externalQueryId="bq-123", source="bigquery"
            ),
            "airflow": {"_producer": PRODUCER, "_schemaURL": "https://x/Airflow.json", "dag": {"id": "aq"}},
        }
    )
    event["run"]["facets"]["parent"]["root"] = {
        "run": {"runId": PARENT_RUN_ID},
        "job": {"namespace": "airflow://prod", "name": "air_quality_daily"},
    }
    event["job"]["facets"].update(
        {
            "documentation": facet("1-1-0/DocumentationJobFacet", description="Loads air quality"),
            "ownership": facet("1-0-1/OwnershipJobFacet", owners=[{"name": "team:data", "type": "TEAM"}]),
            "sourceCodeLocation": facet(
                "1-1-0/SourceCodeLocationJobFacet", type="git", url="git@github.com:org/repo.git"
            ),
            "tags": facet("1-0-0/TagsJobFacet", tags=[{"key": "tier", "value": "gold"}]),
            "lineage": facet(
                "1-0-0/LineageFacet",
                entries=[
                    {"type": "JOB", "inputs": [{"type": "DATASET", "namespace": "bigquery", "name": "a"}]}
                ],
            ),
        }
    )
    event["inputs"][0]["facets"].update(
        {
            "symlinks": facet(
                "1-0-1/SymlinksDatasetFacet",
                identifiers=[{"namespace": "hive://h", "name": "raw.air_quality", "type": "TABLE"}],
            ),
            "storage": facet("1-0-1/StorageDatasetFacet", storageLayer="bigquery"),
            "version": facet("1-0-1/DatasetVersionDatasetFacet", datasetVersion="17"),
            "tags": facet("1-0-0/TagsDatasetFacet", tags=[{"key": "pii", "value": "false", "field": "pm25"}]),
            "dataQualityMetrics": facet("1-0-0/DataQualityMetricsDatasetFacet", columnMetrics={}),
        }
    )
    event["inputs"][0]["inputFacets"] = {
        "inputStatistics": facet("1-0-0/InputStatisticsInputDatasetFacet", rowCount=10, size=2048),
        "dataQualityMetrics": facet(
            "1-0-3/DataQualityMetricsInputDatasetFacet",
            rowCount=10,
            columnMetrics={"pm25": {"nullCount": 0, "min": 1.5, "quantiles": {"0.5": 7.0}}},
        ),
        "dataQualityAssertions": facet(
            "1-1-0/DataQualityAssertionsDatasetFacet", assertions=[{"assertion": "not_null", "success": True}]
        ),
        "subset": facet(
            "1-0-0/BaseSubsetDatasetFacet", inputCondition={"type": "location", "locations": ["gs://b/2024"]}
        ),
    }
    event["outputs"][0]["outputFacets"] = {
        "outputStatistics": facet("1-0-2/OutputStatisticsOutputDatasetFacet", rowCount=9, size=1024)
    }
    event["outputs"][0]["facets"]["lifecycleStateChange"] = facet(
        "1-0-1/LifecycleStateChangeDatasetFacet", lifecycleStateChange="OVERWRITE"
    )
    return event


def failed_event() -> Event:
    event = airflow_event()
    event["eventType"] = "FAIL"
    event["run"]["facets"]["errorMessage"] = facet(
        "1-0-1/ErrorMessageRunFacet", message="boom", programmingLanguage="python", stackTrace="Traceback..."
    )
    return event


def dataset_event() -> Event:
    return {
        "eventTime": "2024-05-04T10:15:30Z",
        "producer": PRODUCER,
        "schemaURL": f"{CORE_ID}#/$defs/DatasetEvent",
        "dataset": {
            "namespace": "bigquery",
            "name": "public-data.analytics.aq",
            "facets": {
                "schema": facet("1-2-0/SchemaDatasetFacet", fields=schema_fields()),
                "documentation": facet("1-1-0/DocumentationDatasetFacet", description="hourly air quality"),
                "lineage": facet(
                    "1-0-0/LineageFacet",
                    inputs=[
                        {"type": "DATASET", "namespace": "bigquery", "name": "public-data.raw.air_quality"}
                    ],
                ),
            },
        },
    }


def job_event() -> Event:
    return {
        "eventTime": "2024-05-04T10:15:30Z",
        "producer": PRODUCER,
        "schemaURL": f"{CORE_ID}#/$defs/JobEvent",
        "job": {
            "namespace": "airflow://prod",
            "name": "air_quality_daily.load",
            "facets": {
                "sql": facet("1-1-0/SQLJobFacet", query="SELECT 1"),
                "sourceCode": facet("1-0-1/SourceCodeJobFacet", language="python", sourceCode="print(1)"),
            },
        },
        "inputs": [{"namespace": "bigquery", "name": "public-data.raw.air_quality"}],
        "outputs": [],
    }


@dataclass(frozen=True)
class Case:
    id: str
    event: Any
    kind: str
    paths: tuple[str, ...] = ()  # expected error paths (invalid) or warning paths (facet-invalid)
    facets: tuple[str, ...] = ()  # expected facet keys of the warnings, same order as paths


def _edit(event: Event, change: Any) -> Event:
    event = copy.deepcopy(event)
    change(event)
    return event


def valid_events() -> list[Case]:
    def zone_offset(e: Event) -> None:
        e["eventTime"] = "2024-05-04T15:45:30+05:30"

    def producer_not_uri(e: Event) -> None:
        e["producer"] = "dbt-ol 1.0"
        e["schemaURL"] = "OpenLineage.json"
        e["run"]["facets"]["nominalTime"]["_producer"] = "my producer"

    def custom_facets(e: Event) -> None:
        e["run"]["facets"]["my_company"] = {"_producer": "x", "_schemaURL": "y", "anything": [1, None, {}]}
        e["outputs"][0]["facets"]["spark_version"] = {"_producer": "x", "_schemaURL": "y", "stackTrace": None}

    def deleted_facet(e: Event) -> None:  # a deletion marker carries no payload
        e["job"]["facets"]["sql"] = {"_producer": PRODUCER, "_schemaURL": "s", "_deleted": True}

    def bad_dataset_but_valid_job(e: Event) -> None:  # fails DatasetEvent, passes JobEvent: oneOf holds
        e["dataset"] = 5
        e["job"] = {"namespace": "n", "name": "j"}

    return [
        Case("airflow-complete", airflow_event(), "RunEvent"),
        Case("run-start-many-facets", start_event_with_many_facets(), "RunEvent"),
        Case("run-fail-error-message", failed_event(), "RunEvent"),
        Case("dataset-event", dataset_event(), "DatasetEvent"),
        Case("job-event", job_event(), "JobEvent"),
        Case("zone-offset", _edit(airflow_event(), zone_offset), "RunEvent"),
        Case("producer-not-uri", _edit(airflow_event(), producer_not_uri), "RunEvent"),
        Case("custom-facets", _edit(airflow_event(), custom_facets), "RunEvent"),
        Case("deleted-facet", _edit(airflow_event(), deleted_facet), "RunEvent"),
        Case(
            "lowercase-z",
            _edit(job_event(), lambda e: e.update(eventTime="2024-05-04t10:15:30z")),
            "JobEvent",
        ),
        Case(
            "minimal-run",
            _edit(airflow_event(), lambda e: [e.pop(k) for k in ("inputs", "outputs")]),
            "RunEvent",
        ),
        Case("dataset-kind-is-really-job", _edit(dataset_event(), bad_dataset_but_valid_job), "JobEvent"),
    ]


def facet_invalid_events() -> list[Case]:
    def dbt_error_message(e: Event) -> None:
        e["eventType"] = "FAIL"
        e["run"]["facets"]["errorMessage"] = facet(
            "1-0-1/ErrorMessageRunFacet", message="boom", programmingLanguage="sql", stackTrace=None
        )

    def schema_fields_not_list(e: Event) -> None:
        e["inputs"][0]["facets"]["schema"]["fields"] = {"station_id": "STRING"}

    def column_lineage_wrong_shape(e: Event) -> None:
        e["outputs"][0]["facets"]["columnLineage"]["fields"]["pm25"] = {"inputFields": "raw.pm25"}

    def tags_numeric_value(e: Event) -> None:
        e["run"]["facets"]["tags"] = facet("1-0-0/TagsRunFacet", tags=[{"key": "retries", "value": 3}])

    def job_tags_numeric_value(e: Event) -> None:
        e["job"]["facets"]["tags"] = facet("1-0-0/TagsJobFacet", tags=[{"key": "tier", "value": 1}])

    def nominal_time_no_zone(e: Event) -> None:
        e["run"]["facets"]["nominalTime"]["nominalStartTime"] = "2024-05-04T10:00:00"

    def parent_run_id_not_uuid(e: Event) -> None:
        e["run"]["facets"]["parent"]["run"]["runId"] = "scheduled__2024-05-04"

    def sql_missing_query(e: Event) -> None:
        del e["job"]["facets"]["sql"]["query"]

    def lifecycle_not_in_enum(e: Event) -> None:
        e["outputs"][0]["facets"]["lifecycleStateChange"]["lifecycleStateChange"] = "UPSERT"

    def input_statistics_wrong_type(e: Event) -> None:
        e["inputs"][0]["inputFacets"]["inputStatistics"]["rowCount"] = "10"

    def lineage_dataset_input_without_name(e: Event) -> None:
        e["dataset"]["facets"]["lineage"]["inputs"] = [{"type": "DATASET", "namespace": "bigquery"}]

    def two_broken_facets(e: Event) -> None:
        dbt_error_message(e)
        column_lineage_wrong_shape(e)

    def custom_plus_broken(e: Event) -> None:  # the custom facet with the same bad value is not checked
        e["run"]["facets"]["dbt_error"] = {"_producer": "x", "_schemaURL": "y", "stackTrace": None}
        dbt_error_message(e)

    run = "run.facets"
    out0 = "outputs[0].facets"
    return [
        Case(
            "dbt-error-message-null-stacktrace",
            _edit(airflow_event(), dbt_error_message),
            "RunEvent",
            (f"{run}.errorMessage.stackTrace",),
            ("errorMessage",),
        ),
        Case(
            "schema-fields-not-list",
            _edit(airflow_event(), schema_fields_not_list),
            "RunEvent",
            ("inputs[0].facets.schema.fields",),
            ("schema",),
        ),
        Case(
            "column-lineage-wrong-shape",
            _edit(airflow_event(), column_lineage_wrong_shape),
            "RunEvent",
            (f"{out0}.columnLineage.fields.pm25.inputFields",),
            ("columnLineage",),
        ),
        Case(
            "run-tags-numeric-value",
            _edit(airflow_event(), tags_numeric_value),
            "RunEvent",
            (f"{run}.tags.tags[0].value",),
            ("tags",),
        ),
        Case(
            "job-tags-numeric-value",
            _edit(job_event(), job_tags_numeric_value),
            "JobEvent",
            ("job.facets.tags.tags[0].value",),
            ("tags",),
        ),
        Case(
            "nominal-time-without-zone",
            _edit(airflow_event(), nominal_time_no_zone),
            "RunEvent",
            (f"{run}.nominalTime.nominalStartTime",),
            ("nominalTime",),
        ),
        Case(
            "parent-run-id-not-uuid",
            _edit(airflow_event(), parent_run_id_not_uuid),
            "RunEvent",
            (f"{run}.parent.run.runId",),
            ("parent",),
        ),
        Case(
            "sql-missing-query",
            _edit(airflow_event(), sql_missing_query),
            "RunEvent",
            ("job.facets.sql.query",),
            ("sql",),
        ),
        Case(
            "lifecycle-not-in-enum",
            _edit(start_event_with_many_facets(), lifecycle_not_in_enum),
            "RunEvent",
            (f"{out0}.lifecycleStateChange.lifecycleStateChange",),
            ("lifecycleStateChange",),
        ),
        Case(
            "input-statistics-wrong-type",
            _edit(start_event_with_many_facets(), input_statistics_wrong_type),
            "RunEvent",
            ("inputs[0].inputFacets.inputStatistics.rowCount",),
            ("inputStatistics",),
        ),
        Case(
            "lineage-dataset-input-without-name",
            _edit(dataset_event(), lineage_dataset_input_without_name),
            "DatasetEvent",
            ("dataset.facets.lineage.inputs[0].name",),
            ("lineage",),
        ),
        Case(
            "two-broken-facets",
            _edit(airflow_event(), two_broken_facets),
            "RunEvent",
            (f"{run}.errorMessage.stackTrace", f"{out0}.columnLineage.fields.pm25.inputFields"),
            ("errorMessage", "columnLineage"),
        ),
        Case(
            "custom-facet-not-checked",
            _edit(airflow_event(), custom_plus_broken),
            "RunEvent",
            (f"{run}.errorMessage.stackTrace",),
            ("errorMessage",),
        ),
    ]


def invalid_events() -> list[Case]:
    def run(change: Any) -> Event:
        return _edit(airflow_event(), change)

    def facet_without_producer(e: Event) -> None:
        del e["outputs"][0]["facets"]["dataSource"]["_producer"]

    def several(e: Event) -> None:
        del e["run"]["runId"]
        e["eventTime"] = "yesterday"
        e["outputs"][0]["name"] = 42

    def dataset_and_job(e: Event) -> None:
        e["job"] = {"namespace": "n", "name": "j"}

    return [
        Case("missing-run-id", run(lambda e: e["run"].pop("runId")), "RunEvent", ("run.runId",)),
        Case(
            "run-id-not-uuid",
            run(lambda e: e["run"].update(runId="manual__2024-05-04")),
            "RunEvent",
            ("run.runId",),
        ),
        Case(
            "event-time-without-zone",
            run(lambda e: e.update(eventTime="2024-05-04T10:15:30")),
            "RunEvent",
            ("eventTime",),
        ),
        Case(
            "event-time-date-only",
            run(lambda e: e.update(eventTime="2024-05-04")),
            "RunEvent",
            ("eventTime",),
        ),
        Case(
            "event-time-not-a-date",
            run(lambda e: e.update(eventTime="last tuesday")),
            "RunEvent",
            ("eventTime",),
        ),
        Case(
            "event-time-impossible-date",
            run(lambda e: e.update(eventTime="2024-02-30T00:00:00Z")),
            "RunEvent",
            ("eventTime",),
        ),
        Case(
            "event-type-not-in-enum", run(lambda e: e.update(eventType="SUCCESS")), "RunEvent", ("eventType",)
        ),
        Case("job-without-name", run(lambda e: e["job"].pop("name")), "RunEvent", ("job.name",)),
        Case("inputs-not-a-list", run(lambda e: e.update(inputs={"name": "x"})), "RunEvent", ("inputs",)),
        Case(
            "facet-missing-producer",
            run(facet_without_producer),
            "RunEvent",
            ("outputs[0].facets.dataSource._producer",),
        ),
        Case(
            "custom-facet-not-object",
            run(lambda e: e["run"]["facets"].update(x=3)),
            "RunEvent",
            ("run.facets.x",),
        ),
        Case("missing-producer", run(lambda e: e.pop("producer")), "RunEvent", ("producer",)),
        Case("run-without-job", run(lambda e: e.pop("job")), "RunEvent", ("job",)),
        Case(
            "output-name-not-string",
            run(lambda e: e["outputs"][0].update(name=42)),
            "RunEvent",
            ("outputs[0].name",),
        ),
        Case("several-errors", run(several), "RunEvent", ("eventTime", "run.runId", "outputs[0].name")),
        Case("dataset-event-with-job", _edit(dataset_event(), dataset_and_job), "DatasetEvent", ("",)),
        Case(
            "job-event-without-namespace",
            _edit(job_event(), lambda e: e["job"].pop("namespace")),
            "JobEvent",
            ("job.namespace",),
        ),
        Case("top-level-array", [airflow_event()], "JobEvent", ("",)),
        Case("null", None, "JobEvent", ("",)),
        Case("string", "{}", "JobEvent", ("",)),
        Case("empty-object", {}, "JobEvent", ("job", "eventTime", "producer", "schemaURL")),
    ]


def all_cases() -> Iterator[tuple[str, Case]]:
    for group, build in (
        ("valid", valid_events),
        ("facet", facet_invalid_events),
        ("invalid", invalid_events),
    ):
        for case in build():
            yield group, case


# --------------------------------------------------------------------------- reference implementation

_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|[+-](\d{2}):(\d{2}))"
)


def reference_format_checker() -> jsonschema.FormatChecker:
    """Only ``uuid`` and RFC 3339 ``date-time`` (time zone required); ``uri`` and the rest unchecked."""
    checker = jsonschema.FormatChecker(formats=())

    def is_uuid(value: object) -> bool:
        return not isinstance(value, str) or _UUID.fullmatch(value) is not None

    def is_date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        match = _DATE_TIME.fullmatch(value)
        if match is None:
            return False
        year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
        try:
            dt.date(year, month, day)
        except ValueError:
            return False
        off_h, off_m = (int(g or 0) for g in match.groups()[6:])
        return hour < 24 and minute < 60 and second <= 60 and off_h < 24 and off_m < 60

    checker.checks("uuid")(is_uuid)
    checker.checks("date-time")(is_date_time)
    return checker


@pytest.fixture(scope="module")
def spec_docs() -> dict[str, Any]:
    docs = [json.loads((SPEC_DIR / "OpenLineage.json").read_text())]
    docs += [json.loads(p.read_text()) for p in sorted((SPEC_DIR / "facets").glob("*.json"))]
    return {doc["$id"]: doc for doc in docs}


@pytest.fixture(scope="module")
def reference(spec_docs: dict[str, Any]) -> Any:
    """Build pure-Python ``jsonschema`` validators for a ``$ref``; no retrieval configured, so offline."""
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(
        (uri, referencing.Resource.from_contents(doc)) for uri, doc in spec_docs.items()
    )
    checker = reference_format_checker()

    def build(ref: str) -> jsonschema.Draft202012Validator:
        return jsonschema.Draft202012Validator({"$ref": ref}, registry=registry, format_checker=checker)

    return build


@pytest.fixture(scope="module")
def validator() -> EventValidator:
    return EventValidator.from_spec_dir()


# Reference table (written independently of the implementation): the facet definition a standard key
# must satisfy at each facet location, for the keys this corpus uses.
def _ref(schema: str, definition: str = "") -> str:
    """``1-0-1/ErrorMessageRunFacet`` -> that file's ``$defs`` entry of the same (or the given) name."""
    name = schema.rsplit("/", 1)[1]
    return f"{FACETS}/{schema}.json#/$defs/{definition or name}"


STANDARD_FACETS: dict[tuple[str, str], str] = {
    ("run", "nominalTime"): _ref("1-0-1/NominalTimeRunFacet"),
    ("run", "parent"): _ref("1-2-0/ParentRunFacet"),
    ("run", "processing_engine"): _ref("1-1-1/ProcessingEngineRunFacet"),
    ("run", "errorMessage"): _ref("1-0-1/ErrorMessageRunFacet"),
    ("run", "tags"): _ref("1-0-0/TagsRunFacet"),
    ("run", "environmentVariables"): _ref("1-0-0/EnvironmentVariablesRunFacet"),
    ("run", "externalQuery"): _ref("1-0-2/ExternalQueryRunFacet"),
    ("job", "jobType"): _ref("2-0-4/JobTypeJobFacet"),
    ("job", "sql"): _ref("1-1-0/SQLJobFacet"),
    ("job", "sourceCode"): _ref("1-0-1/SourceCodeJobFacet"),
    ("job", "documentation"): _ref("1-1-0/DocumentationJobFacet"),
    ("job", "ownership"): _ref("1-0-1/OwnershipJobFacet"),
    ("job", "sourceCodeLocation"): _ref("1-1-0/SourceCodeLocationJobFacet"),
    ("job", "tags"): _ref("1-0-0/TagsJobFacet"),
    ("job", "lineage"): _ref("1-0-0/LineageFacet", "LineageJobFacet"),
    ("dataset", "schema"): _ref("1-2-0/SchemaDatasetFacet"),
    ("dataset", "dataSource"): _ref("1-0-1/DatasourceDatasetFacet"),
    ("dataset", "columnLineage"): _ref("1-2-0/ColumnLineageDatasetFacet"),
    ("dataset", "symlinks"): _ref("1-0-1/SymlinksDatasetFacet"),
    ("dataset", "storage"): _ref("1-0-1/StorageDatasetFacet"),
    ("dataset", "version"): _ref("1-0-1/DatasetVersionDatasetFacet"),
    ("dataset", "tags"): _ref("1-0-0/TagsDatasetFacet"),
    ("dataset", "documentation"): _ref("1-1-0/DocumentationDatasetFacet"),
    ("dataset", "lineage"): _ref("1-0-0/LineageFacet", "LineageDatasetFacet"),
    ("dataset", "lifecycleStateChange"): _ref("1-0-1/LifecycleStateChangeDatasetFacet"),
    ("dataset", "dataQualityMetrics"): _ref("1-0-0/DataQualityMetricsDatasetFacet"),
    ("input", "inputStatistics"): _ref("1-0-0/InputStatisticsInputDatasetFacet"),
    ("input", "dataQualityMetrics"): _ref("1-0-3/DataQualityMetricsInputDatasetFacet"),
    ("input", "dataQualityAssertions"): _ref("1-1-0/DataQualityAssertionsDatasetFacet"),
    ("input", "subset"): _ref("1-0-0/BaseSubsetDatasetFacet", "InputSubsetInputDatasetFacet"),
    ("output", "outputStatistics"): _ref("1-0-2/OutputStatisticsOutputDatasetFacet"),
}
CUSTOM_FACETS = {"airflow", "my_company", "spark_version", "dbt_error", "x"}


def facet_occurrences(event: Any) -> Iterator[tuple[str, str, str, Any]]:
    """(location kind, facet path, key, value) for every facet of an event."""
    if not isinstance(event, dict):
        return

    def facet_map(where: str, path: str, facets: Any) -> Iterator[tuple[str, str, str, Any]]:
        if isinstance(facets, dict):
            for key, value in facets.items():
                yield where, f"{path}.{key}", key, value

    for part, where in (("run", "run"), ("job", "job"), ("dataset", "dataset")):
        if isinstance(event.get(part), dict):
            yield from facet_map(where, f"{part}.facets", event[part].get("facets"))
    for part, extra, where in (("inputs", "inputFacets", "input"), ("outputs", "outputFacets", "output")):
        if isinstance(event.get(part), list):
            for i, dataset in enumerate(event[part]):
                if isinstance(dataset, dict):
                    yield from facet_map("dataset", f"{part}[{i}].facets", dataset.get("facets"))
                    yield from facet_map(where, f"{part}[{i}].{extra}", dataset.get(extra))


CASES = [pytest.param(group, case, id=f"{group}:{case.id}") for group, case in all_cases()]


# --------------------------------------------------------------------------- tests


def test_corpus_ids_are_unique() -> None:
    ids = [param.id for param in CASES]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(("group", "case"), CASES)
def test_corpus_event(validator: EventValidator, group: str, case: Case) -> None:
    outcome = validator.validate(case.event)
    assert isinstance(outcome, ValidationOutcome)
    assert outcome.kind == case.kind
    if group == "invalid":
        assert not outcome.ok
        paths = [error.path for error in outcome.errors]
        assert sorted(paths) == sorted(set(paths)), "an error is reported twice"
        for expected in case.paths:
            assert expected in paths, outcome.errors
        assert all(isinstance(e, FieldError) and e.message for e in outcome.errors)
        return
    assert outcome.ok, outcome.errors
    assert outcome.errors == ()
    assert [w.path for w in outcome.facet_warnings] == list(case.paths), outcome.facet_warnings
    assert [w.facet for w in outcome.facet_warnings] == list(case.facets)
    assert all(isinstance(w, FacetWarning) and w.message for w in outcome.facet_warnings)


@pytest.mark.parametrize(("group", "case"), CASES)
def test_core_verdict_agrees_with_python_jsonschema(
    validator: EventValidator, reference: Any, group: str, case: Case
) -> None:
    python_ok = reference(CORE_ID).is_valid(case.event)
    assert python_ok == (group != "invalid")
    outcome = validator.validate(case.event)
    assert outcome.ok == python_ok
    if python_ok or not isinstance(case.event, dict):
        return
    # Both implementations blame the same fields (checked against the $defs/<kind> subschema).
    errors = list(reference(f"{CORE_ID}#/$defs/{case.kind}").iter_errors(case.event))
    if not errors:  # valid as its kind: the top-level oneOf matched several kinds
        assert [e.path for e in outcome.errors] == [""]
        return
    theirs = {path for error in errors for leaf in _leaves(error) for path in _field_paths(leaf)}
    assert {error.path for error in outcome.errors} == theirs


def _leaves(error: jsonschema.ValidationError) -> Iterator[jsonschema.ValidationError]:
    if error.context:
        for sub in error.context:
            yield from _leaves(sub)
    else:
        yield error


def _field_paths(error: jsonschema.ValidationError) -> Iterator[str]:
    """python reports a ``required`` error on the object; the field path names the missing member."""
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    if error.validator != "required":
        yield path
        return
    for name in error.validator_value:
        if isinstance(error.instance, dict) and name not in error.instance:
            yield f"{path}.{name}" if path else name


@pytest.mark.parametrize(("group", "case"), CASES)
def test_facet_verdicts_agree_with_python_jsonschema(
    validator: EventValidator, reference: Any, group: str, case: Case
) -> None:
    outcome = validator.validate(case.event)
    warned = {w.path for w in outcome.facet_warnings}
    core_errors = {e.path for e in outcome.errors}
    for where, path, key, value in facet_occurrences(case.event):
        flagged = any(p == path or p.startswith((f"{path}.", f"{path}[")) for p in warned)
        ref = STANDARD_FACETS.get((where, key))
        if ref is None:
            assert key in CUSTOM_FACETS, f"corpus uses {where} facet {key!r} missing from STANDARD_FACETS"
            assert not flagged, f"custom facet {path} must not be checked"
            continue
        if isinstance(value, dict) and value.get("_deleted") is True:
            assert not flagged
            continue
        python_ok = reference(ref).is_valid(value)
        if any(p == path or p.startswith(f"{path}.") for p in core_errors):
            continue  # the core schema already rejects the facet (missing _producer, ...)
        assert flagged == (not python_ok), (path, outcome.facet_warnings)


def test_required_errors_name_the_missing_field(validator: EventValidator) -> None:
    event = airflow_event()
    del event["run"]["runId"]
    assert validator.validate(event).errors == (FieldError("run.runId", '"runId" is a required property'),)


def test_date_time_formats(validator: EventValidator) -> None:
    event = job_event()
    for value, ok in [
        ("2024-01-01T00:00:00Z", True),
        ("2024-01-01T00:00:00+02:00", True),
        ("2024-01-01T00:00:00.5-07:00", True),
        ("2024-01-01T00:00:00", False),
        ("2024-01-01", False),
        ("2024-01-01 00:00:00Z", False),
        ("2024-13-01T00:00:00Z", False),
    ]:
        event["eventTime"] = value
        outcome = validator.validate(event)
        assert outcome.ok is ok, value
        assert reference_format_checker().conforms(value, "date-time") is ok, value
        if not ok:
            assert [e.path for e in outcome.errors] == ["eventTime"]


def test_uri_format_is_not_asserted(validator: EventValidator) -> None:
    event = airflow_event()
    event["producer"] = "not a uri at all"
    event["outputs"][0]["facets"]["dataSource"]["uri"] = "bigquery"
    assert validator.validate(event) == ValidationOutcome("RunEvent", (), ())


def test_non_json_values_are_an_error_not_a_crash(validator: EventValidator) -> None:
    event = airflow_event()
    event["eventTime"] = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    outcome = validator.validate(event)
    assert not outcome.ok
    assert outcome.errors[0].path == ""


def test_errors_are_capped(validator: EventValidator) -> None:
    event = airflow_event()
    event["outputs"] = [{"namespace": i, "name": i} for i in range(50)]
    outcome = validator.validate(event)
    assert 0 < len(outcome.errors) <= MAX_ERRORS


def test_messages_do_not_dump_the_event(validator: EventValidator) -> None:
    event = airflow_event()
    event["run"]["facets"]["x"] = "m" * 5000  # core error, its message quotes the value
    event["run"]["facets"]["errorMessage"] = facet(
        "1-0-1/ErrorMessageRunFacet", message=["m" * 5000], programmingLanguage="python"
    )
    outcome = validator.validate(event)
    assert [e.path for e in outcome.errors] == ["run.facets.x"]
    assert [w.path for w in outcome.facet_warnings] == ["run.facets.errorMessage.message"]
    messages = [outcome.errors[0].message, outcome.facet_warnings[0].message]
    assert all(len(message) <= 300 and message.endswith("...") for message in messages)


def test_standard_facet_keys_come_from_the_facet_files(validator: EventValidator) -> None:
    # tags/ownership/documentation/lineage/dataQualityMetrics are defined for several kinds
    assert "errorMessage" in validator.standard_facets["RunFacet"]
    assert "errorMessage" not in validator.standard_facets["JobFacet"]
    assert {"tags", "ownership", "documentation", "lineage"} <= validator.standard_facets["JobFacet"]
    assert {"schema", "columnLineage", "dataSource", "tags"} <= validator.standard_facets["DatasetFacet"]
    assert {"inputStatistics", "dataQualityAssertions", "subset"} <= validator.standard_facets[
        "InputDatasetFacet"
    ]
    assert validator.standard_facets["OutputDatasetFacet"] == {"outputStatistics", "subset"}


def test_facet_kind_is_respected(validator: EventValidator) -> None:
    # an errorMessage-shaped job facet is a custom job facet: not checked against the run facet schema
    event = job_event()
    event["job"]["facets"]["errorMessage"] = {"_producer": "p", "_schemaURL": "s", "stackTrace": None}
    assert validator.validate(event) == ValidationOutcome("JobEvent", (), ())
    # outputStatistics only exists as an output facet
    event = airflow_event()
    event["inputs"][0]["inputFacets"] = {
        "outputStatistics": {"_producer": "p", "_schemaURL": "s", "rowCount": "x"}
    }
    assert validator.validate(event).facet_warnings == ()


def test_no_network_access(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    fresh = EventValidator.from_spec_dir()
    for _, case in all_cases():
        fresh.validate(case.event)


def test_default_spec_dir_is_the_vendored_copy() -> None:
    assert DEFAULT_SPEC_DIR.resolve() == SPEC_DIR.resolve()
    assert (SPEC_DIR / "README.md").is_file()
    assert EventValidator.from_spec_dir(SPEC_DIR).validate(airflow_event()).ok


def test_vendored_spec_is_byte_identical_to_shared_copy() -> None:
    if not SHARED_SPEC.is_dir():
        pytest.skip(f"{SHARED_SPEC} is not present on this machine")
    shared = sorted(p.relative_to(SHARED_SPEC) for p in SHARED_SPEC.rglob("*.json"))
    vendored = sorted(p.relative_to(SPEC_DIR) for p in SPEC_DIR.rglob("*.json"))
    assert vendored == shared
    for rel in shared:
        assert (SPEC_DIR / rel).read_bytes() == (SHARED_SPEC / rel).read_bytes(), rel


def test_validation_is_fast(validator: EventValidator) -> None:
    event = airflow_event()
    size = len(json.dumps(event, separators=(",", ":")))
    assert 2500 <= size <= 4000, size
    assert validator.validate(event).ok
    runs = 500
    best = min(timeit.repeat(lambda: validator.validate(event), number=runs, repeat=5)) / runs
    print(f"validate(): {best * 1e6:.1f} us per {size}-byte event")
    assert best < 100e-6
