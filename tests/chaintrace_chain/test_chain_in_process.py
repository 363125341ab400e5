"""The whole chain without Airflow: every stage and gate of every dataset on the real data, the
OpenLineage events our operators would emit, accepted by the lineage service without a facet warning,
the served products traced back to their sources (datasets and columns), the governance decisions the
events carry, and no raw identifying value of a source anywhere in the service zone."""

from __future__ import annotations

import json
import re
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.serde import Serde
from referencing import Registry, Resource

from chaintrace_chain.facets import FACET_SCHEMA_BASE
from chaintrace_chain.governance import assign_levels
from chaintrace_chain.lineage_build import gate_lineage, stage_lineage
from chaintrace_chain.quality import gate_stage, load_gate_report
from chaintrace_chain.spec import LEVELS, all_specs
from chaintrace_chain.stages import load_report, run_stage
from chaintrace_chain.summary import summarise_run
from chaintrace_chain.transforms.common import read_landed
from chaintrace_chain.zones import STAGES, Zones
from lineage.api.app import create_app
from lineage.context import LineageContext
from lineage.settings import LineageSettings
from lineage.store.keys import create_key

RUN = "in_process"
SPECS = {spec.name: spec for spec in all_specs()}


@dataclass
class ChainResult:
    zones: Zones
    events: list[dict[str, Any]]


def _event(job: str, state: RunState, lineage: Any) -> dict[str, Any]:
    event = RunEvent(
        eventType=state,
        eventTime="2026-11-27T10:00:00.000Z",
        run=Run(runId=str(uuid.uuid4()), facets=lineage.run_facets),
        job=Job(namespace="chaintrace", name=job, facets=lineage.job_facets),
        inputs=lineage.inputs,
        outputs=lineage.outputs,
        producer="https://example.org/chaintrace-tests",
    )
    return orjson.loads(Serde.to_json(event))


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> ChainResult:
    zones = Zones.at(tmp_path_factory.mktemp("zones"))
    events: list[dict[str, Any]] = []
    for name, spec in SPECS.items():
        for stage in STAGES:
            report = run_stage(spec, stage, zones=zones, run=RUN)
            events.append(
                _event(f"{name}.{stage}.run", RunState.COMPLETE, stage_lineage(spec, report, zones))
            )
            gate = gate_stage(spec, stage, zones=zones, run=RUN)
            assert gate.success, gate.summary()
            events.append(
                _event(f"{name}.{stage}.gate", RunState.COMPLETE, gate_lineage(spec, stage, RUN, zones))
            )
    return ChainResult(zones, events)


@pytest.fixture(scope="module")
def answers(service: TestClient, chain: ChainResult) -> list[tuple[str, int, dict[str, Any]]]:
    """Each event posted once, as the provider sends them: (job, status, answer)."""
    return [
        (event["job"]["name"], (r := service.post("/api/v1/lineage", json=event)).status_code, r.json())
        for event in chain.events
    ]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("lineage")
    context = LineageContext.build(LineageSettings(data_root=root, db_url=f"sqlite:///{root / 'l.db'}"))
    context.start()
    # An admin key: this test reads everything and writes the events.
    _key, token = create_key(context.engine, name="chain-test-admin", role="admin")
    with TestClient(create_app(context), headers={"Authorization": f"Bearer {token}"}) as client:
        yield client
    context.close()


def test_every_stage_and_gate_passes_and_every_product_is_published(chain: ChainResult) -> None:
    for spec in SPECS.values():
        summary = summarise_run(spec, chain.zones, RUN)
        assert summary.gates_passed == list(STAGES)
        assert set(summary.products) == {product.name for product in spec.products}
        for path in summary.products.values():
            assert Path(path).is_file()
            assert len(pd.read_parquet(path)) > 0


def test_events_are_accepted_without_facet_warnings(answers: list[tuple[str, int, dict[str, Any]]]) -> None:
    assert len(answers) == 2 * len(STAGES) * len(SPECS)
    for job, status, answer in answers:
        assert status == 201, (job, answer)
        assert not answer.get("warnings"), (job, answer["warnings"])


def test_gate_inputs_carry_quality_facets(chain: ChainResult) -> None:
    for event in chain.events:
        if not event["job"]["name"].endswith(".gate"):
            continue
        validated = [d for d in event["inputs"] if "dataQualityAssertions" in d.get("inputFacets", {})]
        assert len(validated) == 1, event["job"]["name"]
        facets = validated[0]["inputFacets"]
        assert facets["dataQualityAssertions"]["assertions"]
        assert facets["dataQualityMetrics"]["rowCount"] > 0


def test_output_columns_carry_classification_tags(chain: ChainResult) -> None:
    for event in chain.events:
        for dataset in event["outputs"]:
            tags = dataset["facets"].get("tags", {}).get("tags", [])
            if not tags:
                continue
            assert all(tag["value"] in LEVELS for tag in tags)
            fields = {field["name"] for field in dataset["facets"].get("schema", {}).get("fields", [])}
            tagged = {tag["field"] for tag in tags if tag.get("field")}
            assert tagged == fields or not fields, dataset["name"]


def _upstream(graph: list[dict[str, Any]], start: str) -> set[str]:
    nodes = {node["id"]: node for node in graph}
    seen, queue = {start}, deque([start])
    while queue:
        for edge in nodes.get(queue.popleft(), {}).get("inEdges", []):
            if edge["origin"] not in seen:
                seen.add(edge["origin"])
                queue.append(edge["origin"])
    return seen


@pytest.mark.parametrize("dataset", sorted(SPECS))
def test_products_trace_back_to_their_sources(
    chain: ChainResult, service: TestClient, answers: list[Any], dataset: str
) -> None:
    gate = load_gate_report(chain.zones, dataset, RUN, "serve")
    assert gate is not None
    collect = next(e for e in chain.events if e["job"]["name"] == f"{dataset}.collect.run")
    sources = {f"dataset:{d['namespace']}:{d['name']}" for d in collect["inputs"]}
    for path in gate.published.values():
        node = f"dataset:file:{path}"
        graph = service.get("/api/v1/lineage", params={"nodeId": node, "depth": 40}).json()["graph"]
        upstream = _upstream(graph, node)
        for stage in STAGES:
            assert f"job:chaintrace:{dataset}.{stage}.run" in upstream
        assert sources & upstream, f"{path} does not reach a source"
        frame = pd.read_parquet(path)
        column = str(frame.columns[-1])
        answer = service.get(
            "/api/v1/column-lineage",
            params={"nodeId": f"datasetField:file:{path}:{column}", "depth": 40},
        ).json()
        source_fields = [
            node["id"]
            for node in answer["graph"]
            if any(node["id"].startswith(f"datasetField:{s[8:]}:") for s in sources)
        ]
        assert source_fields, f"{path}:{column} has no column lineage to a source column"


# ------------------------------------------------------------------ governance in the events
def _governance(chain: ChainResult, job: str) -> list[dict[str, Any]]:
    event = next(e for e in chain.events if e["job"]["name"] == job)
    return list(event["run"]["facets"].get("governance", {}).get("decisions", []))


def test_a_normal_run_has_no_violation_and_every_product_is_allowed(chain: ChainResult) -> None:
    decisions = [
        d for e in chain.events for d in e["run"]["facets"].get("governance", {}).get("decisions", [])
    ]
    assert not [d for d in decisions if d["kind"] in ("violation", "publish_refused")]
    for name, spec in SPECS.items():
        allowed = _governance(chain, f"{name}.serve.gate")
        assert {(d["kind"], d["product"]) for d in allowed} == {
            ("publish_allowed", product.name) for product in spec.products
        }
        store = _governance(chain, f"{name}.store.run")
        assigned = assign_levels(spec)
        assert {
            (d["dataset"]["name"].rsplit("/", 1)[1], d["field"], d["level"], d["reason"]) for d in store
        } == {
            (table, column, item.level, item.reason)
            for table, columns in assigned.items()
            for column, item in columns.items()
        }


def test_custom_facets_validate_against_their_schemas(chain: ChainResult) -> None:
    schemas = Path(__file__).resolve().parents[2] / "plugins" / "chaintrace_chain" / "schemas"
    core = json.loads(
        (Path(__file__).resolve().parents[2] / "lineage/spec/openlineage/2-0-2/OpenLineage.json").read_text()
    )
    docs = [json.loads(path.read_text()) for path in sorted(schemas.glob("*.json"))]
    registry = Registry().with_resources([(doc["$id"], Resource.from_contents(doc)) for doc in (core, *docs)])
    validators = {doc["$id"]: Draft202012Validator(doc, registry=registry) for doc in docs}
    seen: set[str] = set()
    for event in chain.events:
        containers = [
            event["run"]["facets"],
            *(d.get("facets", {}) for d in event["inputs"] + event["outputs"]),
        ]
        for facets in containers:
            for key, facet in facets.items():
                if str(facet.get("_schemaURL", "")).startswith(FACET_SCHEMA_BASE):
                    document = facet["_schemaURL"].split("#", 1)[0]
                    validators[document].validate({key: facet})
                    seen.add(key)
    expected = {"governance", "disclosureControl", "purpose", "stageCounts", "sourceProvenance"}
    expected.add("destination")  # the copy of a product in an external sink
    assert expected <= seen


# ------------------------------------------------------------------ only de-identified value leaves
# Policy rules whose columns single people (or events about them) out: their raw values must not leave.
IDENTIFYING_RULES = (
    "names of people",
    "direct identifiers of people",
    "contact details of people",
    "dates of birth",
    "identifiers of records about people",
    "exact coordinates",
)


@dataclass
class RawValues:
    columns: set[str]  # "<dataset>.<column>" the values come from
    texts: set[str]  # names, identifiers (an integer identifier as its text)
    coordinates: set[float]  # exact coordinates (3+ decimals), rounded to 6


def _raw_identifying_values(zones: Zones) -> RawValues:
    """From the landed source files: the values of every L3/L4 column an identifying rule classified."""
    raw = RawValues(set(), set(), set())
    for name, spec in SPECS.items():
        collected = load_report(zones, name, RUN, "collect").outputs
        landed = {item.table: zones.locate(item.file) for item in collected}
        for table_name, columns in assign_levels(spec).items():
            table = spec.tables[table_name]
            frame = read_landed(spec.sources[table.source], landed[table.source])
            for column, item in columns.items():
                if item.level not in ("L3", "L4") or not any(
                    f"'{rule}'" in item.reason for rule in IDENTIFYING_RULES
                ):
                    continue
                raw.columns.add(f"{name}.{column}")
                values = frame[column].dropna()
                if pd.api.types.is_float_dtype(values):
                    raw.coordinates |= {round(v, 6) for v in values if round(v, 2) != v}
                else:
                    raw.texts |= {str(v) for v in values}
    return raw


def _leaks(path: Path, raw: RawValues) -> set[str]:
    """The raw values found in one file: in any cell of a Parquet file (text cells against names and
    identifiers, numbers against coordinates), or as a token of any other file's text."""
    if path.suffix != ".parquet":
        tokens = set(re.split(r"[^\w.-]+", path.read_bytes().decode("utf-8", errors="replace")))
        floats = {t for t in tokens if re.fullmatch(r"-?\d+\.\d+", t)}
        return (tokens & raw.texts) | {t for t in floats if round(float(t), 6) in raw.coordinates}
    frame = pd.read_parquet(path)
    found = {str(c) for c in frame.columns} & raw.texts
    for column in frame.columns:
        values = frame[column].dropna()
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            found |= {str(v) for v in values.astype("float64").round(6) if v in raw.coordinates}
        else:
            found |= {str(v) for v in values.astype("str")} & raw.texts
    return found


def test_no_raw_identifying_value_is_anywhere_in_the_service_zone(chain: ChainResult, tmp_path: Path) -> None:
    raw = _raw_identifying_values(chain.zones)
    assert raw.columns == {
        "covid_testing.subject_id", "covid_testing.fake_first_name", "covid_testing.fake_last_name",
        "mpls_stops.idNum", "mpls_stops.lat", "mpls_stops.long",
    }  # fmt: skip
    assert len(raw.texts) > 60_000 and len(raw.coordinates) > 15_000
    # Everything that leaves: the service zone and the copies in external sinks.
    files = [
        Path(path.path)
        for zone in ("service", "exports")
        for path in (chain.zones.root / zone).rglob("*")
        if path.is_file()
    ]
    published = sum(len(spec.products) for spec in SPECS.values())
    exported = sum(len(product.exports) for spec in SPECS.values() for product in spec.products)
    assert exported >= 1
    assert len([p for p in files if p.suffix == ".parquet"]) == 2 * published + exported
    assert {str(path): _leaks(path, raw) for path in files} == {str(path): set() for path in files}
    # the scan does find a leak where there is one
    name, subject, lat = (
        sorted(raw.texts - {v for v in raw.texts if v.isdigit()})[0],
        "1412",
        max(raw.coordinates),
    )
    assert subject in raw.texts
    control = tmp_path / "leak.parquet"
    pd.DataFrame({"who": [name], "id": [subject], "where": [lat]}).to_parquet(control)
    assert _leaks(control, raw) == {name, subject, str(lat)}
    (tmp_path / "leak.csv").write_text(f"who,where\n{name},{lat}\n")
    assert _leaks(tmp_path / "leak.csv", raw) == {name, str(lat)}
