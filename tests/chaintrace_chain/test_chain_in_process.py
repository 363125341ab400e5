"""The whole chain without Airflow: every stage and gate of every dataset on the real data, the
OpenLineage events our operators would emit, accepted by the lineage service without a facet warning,
and the served products traced back to their sources (datasets and columns)."""

from __future__ import annotations

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
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.serde import Serde

from chaintrace_chain.lineage_build import gate_lineage, stage_lineage
from chaintrace_chain.quality import gate_stage, load_gate_report
from chaintrace_chain.spec import LEVELS, all_specs
from chaintrace_chain.stages import run_stage
from chaintrace_chain.summary import summarise_run
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
