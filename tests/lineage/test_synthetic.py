"""The synthetic OpenLineage generators: spec conformance, determinism, sizes, graph shape, column lineage."""

from __future__ import annotations

import json
import random
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from lineage.synthetic import (
    CHAIN_JOBS,
    CHAIN_SERVED,
    CHAIN_SOURCE,
    CUSTOM_FACET_KEYS,
    LayeredGraph,
    airflow_style_events,
    five_stage_chain_events,
    layered_graph,
    layered_graph_events,
)

REPO = Path(__file__).resolve().parents[2]
SPEC_DIRS = (
    REPO.parent / "shared" / "openlineage-spec",
    Path("/work/shared/openlineage-spec"),
    REPO / "lineage" / "spec" / "openlineage" / "2-0-2",
)
FACET_CONTEXTS = ("RunFacet", "JobFacet", "DatasetFacet", "InputDatasetFacet", "OutputDatasetFacet")
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
SUBTYPES = ("IDENTITY", "TRANSFORMATION", "AGGREGATION", "JOIN", "FILTER", "GROUP_BY")
Event = dict[str, Any]


# ------------------------------------------------------------------------------------------ the spec
class Spec:
    """Core + facet schemas in one registry; validators asserting the `uuid` and `date-time` formats."""

    def __init__(self, root: Path) -> None:
        core = json.loads((root / "OpenLineage.json").read_text())
        facet_dir = root / "facets" if (root / "facets").is_dir() else root
        facet_files = sorted(p for p in facet_dir.glob("*.json") if p.name != "OpenLineage.json")
        assert facet_files, f"no facet schemas under {facet_dir}"
        resources = [(core["$id"], Resource.from_contents(core))]
        # context (RunFacet, JobFacet, ...) -> facet key -> $id of the facet file defining it
        self.facets: dict[str, dict[str, str]] = {context: {} for context in FACET_CONTEXTS}
        for path in facet_files:
            schema = json.loads(path.read_text())
            resources.append((schema["$id"], Resource.from_contents(schema)))
            for key, prop in schema["properties"].items():
                for context in _contexts(schema, prop):
                    self.facets[context][key] = schema["$id"]
        self.registry: Registry[Any] = Registry().with_resources(resources)
        self.format_checker = FormatChecker(formats=["uuid"])
        self.format_checker.checks("date-time", raises=ValueError)(_is_date_time)
        self.core = self._validator(core["$id"])

    @cache  # noqa: B019 - one Spec per session
    def _validator(self, schema_id: str) -> Draft202012Validator:
        return Draft202012Validator(
            {"$ref": schema_id}, registry=self.registry, format_checker=self.format_checker
        )

    def errors(self, event: Event) -> list[str]:
        """Core-schema errors, then standard-facet errors, of one event."""
        found = [f"core: {e.json_path}: {e.message}" for e in self.core.iter_errors(event)]
        for context, key, value, where in _facets_of(event):
            schema_id = self.facets[context].get(key)
            if schema_id is None:
                if key not in CUSTOM_FACET_KEYS:
                    found.append(f"{where}.{key}: unknown {context} key (not standard, not declared custom)")
                continue
            if not value.get("_schemaURL", "").startswith(f"{schema_id}#/$defs/"):
                found.append(f"{where}.{key}: _schemaURL {value.get('_schemaURL')!r} is not {schema_id}")
            for e in self._validator(schema_id).iter_errors({key: value}):
                found.append(f"{where}: {e.json_path}: {e.message}")
        return found


def _contexts(schema: dict[str, Any], node: dict[str, Any]) -> set[str]:
    """Core facet kinds (RunFacet, DatasetFacet, ...) a facet definition extends ($ref/allOf/anyOf/oneOf)."""
    ref = node.get("$ref", "")
    if "OpenLineage.json#/$defs/" in ref:
        return {ref.rsplit("/", 1)[-1]} & set(FACET_CONTEXTS)
    if ref.startswith("#/$defs/"):
        return _contexts(schema, schema["$defs"][ref.rsplit("/", 1)[-1]])
    subs = [sub for kw in ("allOf", "anyOf", "oneOf") for sub in node.get(kw, [])]
    return {context for sub in subs for context in _contexts(schema, sub)}


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not RFC3339.fullmatch(value):
        return False
    datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return True


def _facets_of(event: Event) -> Iterator[tuple[str, str, dict[str, Any], str]]:
    yield from ((("RunFacet", k, v, "run.facets")) for k, v in event["run"].get("facets", {}).items())
    yield from (("JobFacet", k, v, "job.facets") for k, v in event["job"].get("facets", {}).items())
    for side, extra, context in (
        ("inputs", "inputFacets", "InputDatasetFacet"),
        ("outputs", "outputFacets", "OutputDatasetFacet"),
    ):
        for i, dataset in enumerate(event.get(side, [])):
            for k, v in dataset.get("facets", {}).items():
                yield "DatasetFacet", k, v, f"{side}[{i}].facets"
            for k, v in dataset.get(extra, {}).items():
                yield context, k, v, f"{side}[{i}].{extra}"


@pytest.fixture(scope="module")
def spec() -> Spec:
    for root in SPEC_DIRS:
        if (root / "OpenLineage.json").is_file():
            return Spec(root)
    pytest.skip(f"OpenLineage 2-0-2 JSON schemas not found in {[str(p) for p in SPEC_DIRS]}")


def assert_valid(spec: Spec, events: Iterable[Event]) -> int:
    count = 0
    for event in events:
        errors = spec.errors(event)
        assert not errors, f"{event['eventType']} {event['job']['name']}:\n" + "\n".join(errors[:20])
        count += 1
    return count


def size(event: Event) -> int:
    return len(orjson.dumps(event))


@pytest.fixture(scope="module")
def airflow_events() -> list[Event]:
    return airflow_style_events(2000)


@pytest.fixture(scope="module")
def graph_5k() -> LayeredGraph:
    return layered_graph(5000)


# --------------------------------------------------------------------------------- spec conformance
def test_spec_registry_knows_the_standard_facets(spec: Spec) -> None:
    assert {"nominalTime", "parent", "processing_engine", "errorMessage"} <= spec.facets["RunFacet"].keys()
    assert {"jobType", "documentation", "ownership"} <= spec.facets["JobFacet"].keys()
    assert {"schema", "dataSource", "columnLineage", "tags", "version"} <= spec.facets["DatasetFacet"].keys()
    assert "outputStatistics" in spec.facets["OutputDatasetFacet"]
    assert not CUSTOM_FACET_KEYS & {k for keys in spec.facets.values() for k in keys}


def test_validator_rejects_broken_events(spec: Spec) -> None:
    event = five_stage_chain_events()[1]
    assert not spec.errors(event)
    broken = orjson.loads(orjson.dumps(event))
    broken["run"]["runId"] = "not-a-uuid"
    broken["eventTime"] = "2026-01-05 02:00"
    broken["outputs"][0]["facets"]["lifecycleStateChange"]["lifecycleStateChange"] = "REPLACE"
    del broken["run"]["facets"]["parent"]["job"]
    broken["job"]["facets"]["jobtype"] = broken["job"]["facets"].pop("jobType")
    text = "\n".join(spec.errors(broken))
    for needle in ("runId", "eventTime", "REPLACE", "'job' is a required property", "jobtype"):
        assert needle in text


def test_airflow_style_events_are_valid(spec: Spec, airflow_events: list[Event]) -> None:
    sample = random.Random(1).sample(airflow_events, 500)
    assert assert_valid(spec, sample) == 500
    assert {e["eventType"] for e in sample} == {"START", "COMPLETE", "FAIL"}


def test_five_stage_chain_events_are_valid(spec: Spec) -> None:
    assert assert_valid(spec, five_stage_chain_events()) == 10
    other = five_stage_chain_events(run_suffix="-b", base_time="2026-02-01T00:00:00Z")
    assert assert_valid(spec, other) == 10


def test_layered_graph_events_are_valid(spec: Spec, graph_5k: LayeredGraph) -> None:
    events = list(layered_graph_events(graph_5k))
    sample = random.Random(2).sample(events, 300)
    assert assert_valid(spec, sample) == 300


def test_core_schema_with_jsonschema_rs_and_uri_format(airflow_events: list[Event]) -> None:
    """The service validates the core schema with jsonschema-rs; it also asserts `uri`."""
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    root = next((p for p in SPEC_DIRS if (p / "OpenLineage.json").is_file()), None)
    if root is None:
        pytest.skip("no spec")
    validator = jsonschema_rs.Draft202012Validator(
        json.loads((root / "OpenLineage.json").read_text()), validate_formats=True
    )
    events = airflow_events[:200] + five_stage_chain_events() + list(layered_graph_events(layered_graph(500)))
    for event in events:
        errors = [str(e) for e in validator.iter_errors(event)]
        assert not errors, errors[:5]


# --------------------------------------------------------------------------------------- determinism
def test_generators_are_deterministic() -> None:
    assert orjson.dumps(airflow_style_events(300, seed=7)) == orjson.dumps(airflow_style_events(300, seed=7))
    assert orjson.dumps(airflow_style_events(300, seed=7)) != orjson.dumps(airflow_style_events(300, seed=8))
    assert orjson.dumps(five_stage_chain_events()) == orjson.dumps(five_stage_chain_events())
    assert layered_graph(3000, seed=3) == layered_graph(3000, seed=3)
    assert layered_graph(3000, seed=3) != layered_graph(3000, seed=4)
    first = orjson.dumps(list(layered_graph_events(layered_graph(3000, seed=3))))
    assert first == orjson.dumps(list(layered_graph_events(layered_graph(3000, seed=3))))


def test_events_share_no_mutable_parts() -> None:
    events = five_stage_chain_events()
    before = orjson.dumps(events[1])
    events[0]["run"]["facets"]["parent"]["run"]["runId"] = "x"
    events[0]["inputs"][0]["facets"]["schema"]["fields"].clear()
    assert orjson.dumps(events[1]) == before


# ------------------------------------------------------------------------------ airflow-style events
def test_airflow_event_sizes_are_2_to_4_kb(airflow_events: list[Event]) -> None:
    sizes = [size(e) for e in airflow_events]
    assert min(sizes) >= 2048 and max(sizes) <= 4096, (min(sizes), max(sizes))
    assert 2500 < statistics.mean(sizes) < 4000


def test_airflow_events_look_like_the_provider(airflow_events: list[Event]) -> None:
    assert len(airflow_events) == 2000
    runs: dict[str, list[Event]] = defaultdict(list)
    for event in airflow_events:
        runs[event["run"]["runId"]].append(event)
        assert event["producer"] == "https://github.com/apache/airflow/tree/providers-openlineage/2.20.3"
        assert event["eventTime"].endswith("Z") and re.search(r"\.\d{6}Z$", event["eventTime"])
        assert re.fullmatch(r"\w+\.(collect|store|process|analyze|serve)\.\w+", event["job"]["name"])
        run_facets, job_facets = event["run"]["facets"], event["job"]["facets"]
        assert {"parent", "processing_engine"} <= run_facets.keys()
        assert run_facets["processing_engine"]["name"] == "Airflow"
        assert run_facets["processing_engine"]["version"] == "3.3.2"
        assert job_facets["jobType"]["jobType"] == "TASK"
        assert event["job"]["name"].startswith(run_facets["parent"]["job"]["name"] + ".")
        for dataset in event["inputs"] + event["outputs"]:
            assert dataset["namespace"] == "file" and dataset["name"].startswith("/data/")
        if event["eventType"] == "START":
            assert {"nominalTime", "airflow"} <= run_facets.keys()
            assert {"documentation", "ownership"} <= job_facets.keys()
            assert all(5 <= len(d["facets"]["schema"]["fields"]) <= 12 for d in event["inputs"][:1])
            assert all("dataSource" in d["facets"] for d in event["outputs"])
        if event["eventType"] == "COMPLETE":
            for out in event["outputs"]:
                facets = out["facets"]
                assert {"schema", "columnLineage", "tags", "lifecycleStateChange", "version"} <= facets.keys()
                assert facets["lifecycleStateChange"]["lifecycleStateChange"] == "OVERWRITE"
                assert out["outputFacets"]["outputStatistics"]["rowCount"] > 0
                assert 5 <= len(facets["schema"]["fields"]) <= 12
                columns = {f["name"] for f in facets["schema"]["fields"]}
                assert facets["columnLineage"]["fields"].keys() <= columns
                tags = facets["tags"]["tags"]
                assert {t["value"] for t in tags} <= {"L1", "L2", "L3", "L4"}
                assert any("field" in t for t in tags)
        if event["eventType"] == "FAIL":
            assert "errorMessage" in run_facets
    assert len(runs) == 1000
    for pair in runs.values():
        assert [e["eventType"] for e in pair] in (["START", "COMPLETE"], ["START", "FAIL"])
        assert pair[0]["eventTime"] < pair[1]["eventTime"]
    jobs = {e["job"]["name"] for e in airflow_events}
    assert 90 <= len(jobs) <= 110  # ~n_events / 20


def test_airflow_lineage_graph_is_connected(airflow_events: list[Event]) -> None:
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for event in airflow_events:
        job = "job:" + event["job"]["name"]
        for dataset in event["inputs"] + event["outputs"]:
            parent[find(job)] = find("ds:" + dataset["name"])
    assert len({find(node) for node in list(parent)}) == 1


def test_small_and_odd_counts() -> None:
    assert airflow_style_events(0) == []
    assert [e["eventType"] for e in airflow_style_events(3)][:3:2] == ["START", "START"]
    assert len(airflow_style_events(41, seed=5)) == 41


# ------------------------------------------------------------------------------------- layered graph
def _check_graph(graph: LayeredGraph, n_nodes: int, edges_per_node: float = 2.0) -> None:
    nodes = len(graph.jobs) + len(graph.datasets)
    edges = sum(map(len, graph.job_inputs)) + sum(map(len, graph.job_outputs))
    assert abs(nodes - n_nodes) <= 0.1 * n_nodes, nodes
    assert abs(edges - edges_per_node * n_nodes) <= 0.1 * edges_per_node * n_nodes, edges
    assert 0.35 <= len(graph.jobs) / nodes <= 0.45
    assert len(set(graph.jobs)) == len(graph.jobs) and len(set(graph.datasets)) == len(graph.datasets)
    producers: dict[int, int] = {}
    for job, outs in enumerate(graph.job_outputs):
        assert outs, f"job {job} writes nothing"
        for d in outs:
            assert d not in producers, f"dataset {d} has two producers"
            producers[d] = job
    for job, ins in enumerate(graph.job_inputs):
        assert ins and len(set(ins)) == len(ins)
        assert not set(ins) & set(graph.job_outputs[job])
    # acyclic: Kahn's algorithm over dataset -> reading job -> written dataset
    readers: dict[int, list[int]] = defaultdict(list)
    for job, ins in enumerate(graph.job_inputs):
        for d in ins:
            readers[d].append(job)
    pending = [len(ins) for ins in graph.job_inputs]
    ready = [d for d in range(len(graph.datasets)) if d not in producers]
    seen_jobs = 0
    while ready:
        d = ready.pop()
        for job in readers[d]:
            pending[job] -= 1
            if pending[job] == 0:
                seen_jobs += 1
                ready.extend(graph.job_outputs[job])
    assert seen_jobs == len(graph.jobs), "cycle in the layered graph"


def test_layered_graph_shape(graph_5k: LayeredGraph) -> None:
    _check_graph(graph_5k, 5000)
    layer = {name: int(name[1:3]) for _, name in graph_5k.jobs}
    ds_layer = [int(name.split("/")[2][1:]) for _, name in graph_5k.datasets]
    for (_, name), ins, outs in zip(graph_5k.jobs, graph_5k.job_inputs, graph_5k.job_outputs, strict=True):
        assert all(ds_layer[d] < layer[name] for d in ins)
        assert all(ds_layer[d] == layer[name] for d in outs)
    assert len(set(ds_layer)) == 40
    fan_in = [len(ins) for ins in graph_5k.job_inputs]
    fan_out: dict[int, int] = defaultdict(int)
    for ins in graph_5k.job_inputs:
        for d in ins:
            fan_out[d] += 1
    assert max(fan_in) >= 10 and min(fan_in) == 1 and max(fan_out.values()) >= 10
    jobs_inputs = zip(graph_5k.jobs, graph_5k.job_inputs, strict=True)
    from_previous_layer = sum(ds_layer[d] == layer[n] - 1 for (_, n), ins in jobs_inputs for d in ins)
    assert from_previous_layer > 0.7 * sum(fan_in)


@pytest.mark.parametrize("n_nodes", [2000, 20_000])
def test_layered_graph_other_sizes(n_nodes: int) -> None:
    _check_graph(layered_graph(n_nodes, seed=n_nodes), n_nodes)
    _check_graph(layered_graph(n_nodes, edges_per_node=3.0, layers=10), n_nodes, 3.0)


def test_layered_graph_100k_builds_fast() -> None:
    started = time.perf_counter()
    graph = layered_graph(100_000)
    elapsed = time.perf_counter() - started
    _check_graph(graph, 100_000)
    assert elapsed < 3.0, elapsed


def test_layered_graph_events(graph_5k: LayeredGraph) -> None:
    events = list(layered_graph_events(graph_5k))
    assert len(events) == len(graph_5k.jobs)
    assert {e["eventType"] for e in events} == {"COMPLETE"}
    assert len({e["run"]["runId"] for e in events}) == len(events)
    times = [e["eventTime"] for e in events]
    assert times == sorted(times) and len(set(times)) == len(times)
    for event, ins, outs in zip(events, graph_5k.job_inputs, graph_5k.job_outputs, strict=True):
        assert [d["name"] for d in event["inputs"]] == [graph_5k.datasets[i][1] for i in ins]
        assert [d["name"] for d in event["outputs"]] == [graph_5k.datasets[i][1] for i in outs]
        assert all(len(d["facets"]["schema"]["fields"]) == 3 for d in event["outputs"])
    sizes = [size(e) for e in events]
    assert statistics.median(sizes) < 1300


# ------------------------------------------------------------------------------------ five-stage chain
def trace_column(events: list[Event], dataset: tuple[str, str], field: str) -> set[tuple[str, str, str]]:
    """Every (namespace, name, field) reachable backwards from `field` of `dataset` via columnLineage."""
    lineage: dict[tuple[str, str, str], set[tuple[str, str, str]]] = defaultdict(set)
    for event in events:
        for out in event.get("outputs", []):
            fields = out.get("facets", {}).get("columnLineage", {}).get("fields", {})
            for out_field, spec in fields.items():
                for inp in spec["inputFields"]:
                    lineage[(out["namespace"], out["name"], out_field)].add(
                        (inp["namespace"], inp["name"], inp["field"])
                    )
    seen: set[tuple[str, str, str]] = set()
    todo = [(*dataset, field)]
    while todo:
        node = todo.pop()
        for upstream in lineage.get(node, ()):
            if upstream not in seen:
                seen.add(upstream)
                todo.append(upstream)
    return seen


def test_served_columns_trace_back_to_the_source() -> None:
    events = five_stage_chain_events()
    reached = trace_column(events, CHAIN_SERVED, "avg_dep_delay")
    assert (*CHAIN_SOURCE, "dep_delay") in reached
    assert ("file", "/data/raw/nycflights13/flights", "dep_delay") in reached
    assert ("file", "/data/processed/nycflights13/flights_enriched", "dep_delay") in reached
    assert (*CHAIN_SOURCE, "origin") in trace_column(events, CHAIN_SERVED, "origin")
    assert not any(name.endswith("weather.csv") for _, name, _ in reached)
    assert (*CHAIN_SOURCE, "tailnum") in trace_column(
        events, ("file", "/data/processed/nycflights13/flights_enriched"), "tailnum"
    )


def test_chain_structure() -> None:
    events = five_stage_chain_events()
    stages = ("collect", "store", "process", "analyze", "serve")
    assert tuple(f"nycflights13.{s}" for s in stages) == CHAIN_JOBS
    assert [(e["job"]["name"], e["eventType"]) for e in events] == [
        (job, t) for job in CHAIN_JOBS for t in ("START", "COMPLETE")
    ]
    assert all(e["job"]["namespace"] == "chaintrace" for e in events)
    times = [e["eventTime"] for e in events]
    assert times == sorted(times) and all(re.search(r"\.\d{6}Z$", t) for t in times)
    run_ids = [e["run"]["runId"] for e in events]
    assert run_ids[::2] == run_ids[1::2] and len(set(run_ids)) == 5
    other = five_stage_chain_events(run_suffix="-2")
    assert not set(run_ids) & {e["run"]["runId"] for e in other}

    by_job = {e["job"]["name"]: e for e in events if e["eventType"] == "COMPLETE"}
    names = {
        j: ([d["name"] for d in e["inputs"]], [d["name"] for d in e["outputs"]]) for j, e in by_job.items()
    }
    tables = ("flights", "weather", "planes", "airports")
    collect = by_job["nycflights13.collect"]
    assert (collect["inputs"][0]["namespace"], collect["inputs"][0]["name"]) == CHAIN_SOURCE
    assert names["nycflights13.collect"][1] == [f"/data/landing/nycflights13/{t}.csv" for t in tables]
    assert names["nycflights13.store"][1] == [f"/data/raw/nycflights13/{t}" for t in tables]
    assert names["nycflights13.process"] == (
        [f"/data/raw/nycflights13/{t}" for t in tables],
        ["/data/processed/nycflights13/flights_enriched"],
    )
    assert names["nycflights13.analyze"][1] == ["/data/analysis/nycflights13/delay_by_origin_month"]
    assert names["nycflights13.serve"][1] == [CHAIN_SERVED[1], "/data/service/nycflights13/route_delays"]
    assert (
        collect["inputs"][0]["facets"]["dataSource"]["uri"]
        == "https://github.com/hadley/nycflights13/flights.csv"
    )

    masked = []
    for event in events:
        datasets = {(d["namespace"], d["name"]): d for d in event["inputs"]}
        schemas = {k: {f["name"] for f in d["facets"]["schema"]["fields"]} for k, d in datasets.items()}
        for out in event["outputs"]:
            facets = out["facets"]
            assert {"schema", "columnLineage", "tags", "dataSource"} <= facets.keys()
            columns = {f["name"] for f in facets["schema"]["fields"]}
            assert facets["columnLineage"]["fields"].keys() == columns
            for column, spec in facets["columnLineage"]["fields"].items():
                for inp in spec["inputFields"] + facets["columnLineage"].get("dataset", []):
                    assert inp["field"] in schemas[(inp["namespace"], inp["name"])]
                    for t in inp["transformations"]:
                        assert t["type"] in ("DIRECT", "INDIRECT")
                        assert t["subtype"] in SUBTYPES
                        assert isinstance(t["masking"], bool) and t["description"]
                        if t["masking"]:
                            masked.append((out["name"], column, t["type"], t["subtype"]))
            tags = facets["tags"]["tags"]
            assert {t["field"] for t in tags if "field" in t} == columns
            assert any("field" not in t for t in tags)
            assert {t["value"] for t in tags} <= {"L1", "L2", "L3", "L4"}
    assert ("/data/processed/nycflights13/flights_enriched", "tailnum", "DIRECT", "TRANSFORMATION") in masked


def test_generation_speed() -> None:
    started = time.perf_counter()
    airflow_style_events(2000)
    assert time.perf_counter() - started < 5.0
