"""The chain on any fsspec data root: covid_testing run in-process through every stage and gate against
a local folder and against a ``memory://`` root, by the same code (the path an ``s3://`` root takes):
the same tables and products, published whole, exported to its sink, named in the lineage by the
OpenLineage naming spec of each storage, and downloadable from the lineage service reading the
``memory://`` root through fsspec."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pandas as pd
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.serde import Serde

from chaintrace_chain.lineage_build import gate_lineage, stage_lineage
from chaintrace_chain.quality import gate_stage
from chaintrace_chain.spec import load_spec
from chaintrace_chain.stages import load_report, read_table, run_stage
from chaintrace_chain.summary import summarise_run
from chaintrace_chain.zones import STAGES, Zones
from lineage.api.app import create_app
from lineage.context import LineageContext
from lineage.settings import LineageSettings
from lineage.store.keys import create_key

SPEC = load_spec("covid_testing")
RUN = "fsspec"
DAILY = "covid_positivity_daily"
PURPOSE = "public health situational awareness"


@dataclass
class ChainRun:
    zones: Zones
    events: list[dict[str, Any]]


def _event(job: str, lineage: Any) -> dict[str, Any]:
    event = RunEvent(
        eventType=RunState.COMPLETE,
        eventTime="2026-11-27T10:00:00.000Z",
        run=Run(runId=str(uuid.uuid4()), facets=lineage.run_facets),
        job=Job(namespace="chaintrace", name=job),
        inputs=lineage.inputs,
        outputs=lineage.outputs,
        producer="https://example.org/chaintrace-tests",
    )
    return dict(orjson.loads(Serde.to_json(event)))


def _run_chain(zones: Zones) -> ChainRun:
    events: list[dict[str, Any]] = []
    for stage in STAGES:
        report = run_stage(SPEC, stage, zones=zones, run=RUN)
        events.append(_event(f"{SPEC.name}.{stage}.run", stage_lineage(SPEC, report, zones)))
        assert gate_stage(SPEC, stage, zones=zones, run=RUN).success
        events.append(_event(f"{SPEC.name}.{stage}.gate", gate_lineage(SPEC, stage, RUN, zones)))
    return ChainRun(zones, events)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> ChainRun:
    return _run_chain(Zones.at(tmp_path_factory.mktemp("local-root")))


@pytest.fixture(scope="module")
def memory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChainRun]:
    zones = Zones.at(f"memory://chain-{uuid.uuid4().hex}/root", quality_dir=tmp_path_factory.mktemp("gx"))
    yield _run_chain(zones)
    zones.root.parent.remove_tree()


def _relative(zones: Zones, location: str) -> str:
    path = zones.locate(location)
    assert path.is_relative_to(zones.root), location
    return path.path[len(zones.root.path) :]


def test_both_roots_run_every_gate_and_write_the_same_tables(local: ChainRun, memory: ChainRun) -> None:
    for run in (local, memory):
        summary = summarise_run(SPEC, run.zones, RUN)
        assert summary.gates_passed == list(STAGES)
        assert set(summary.products) == {product.name for product in SPEC.products}
        copy = run.zones.root / "exports" / "pa-health-department" / f"{DAILY}.parquet"
        assert summary.exports == {f"{DAILY} -> pa-health-department": str(copy)}
    for stage in STAGES[1:]:
        ours, theirs = (load_report(run.zones, SPEC.name, RUN, stage) for run in (local, memory))
        assert [(o.table, o.rows, o.levels) for o in ours.outputs] == [
            (o.table, o.rows, o.levels) for o in theirs.outputs
        ]
        for a, b in zip(ours.outputs, theirs.outputs, strict=True):
            assert _relative(local.zones, a.file) == _relative(memory.zones, b.file)
            pd.testing.assert_frame_equal(
                read_table(local.zones.locate(a.file)), read_table(memory.zones.locate(b.file))
            )


def test_published_and_exported_products_are_whole_and_equal(local: ChainRun, memory: ChainRun) -> None:
    for product in SPEC.products:
        published = [run.zones.published(SPEC.name, product.name).read_bytes() for run in (local, memory)]
        frames = [pq.read_table(io.BytesIO(data)).to_pandas() for data in published]
        assert len(frames[0]) > 0
        pd.testing.assert_frame_equal(frames[0], frames[1])
    for run in (local, memory):
        copy = run.zones.root / "exports" / "pa-health-department" / f"{DAILY}.parquet"
        assert copy.read_bytes() == run.zones.published(SPEC.name, DAILY).read_bytes()
        # Atomic publish left no temporary file anywhere in the zones.
        assert not [p for p in run.zones.root.rglob("*.tmp")]
        hidden = [p for p in run.zones.root.rglob(".*") if not p.is_relative_to(run.zones.root / "quality")]
        assert not hidden  # (GX's own files under a local root's quality/ excepted)


def _datasets(run: ChainRun) -> set[tuple[str, str]]:
    return {
        (d["namespace"], d["name"]) for e in run.events for d in e["inputs"] + e["outputs"]
    } | {
        (f["namespace"], f["name"])
        for e in run.events
        for d in e["outputs"]
        for column in d["facets"].get("columnLineage", {}).get("fields", {}).values()
        for f in column["inputFields"]
    }


def test_dataset_names_follow_the_naming_spec_of_each_storage(local: ChainRun, memory: ChainRun) -> None:
    local_root, memory_root = local.zones.root.path, memory.zones.root.path
    sources = {d for d in _datasets(local) if not d[1].startswith(local_root)}
    assert sources and {namespace for namespace, _ in sources} == {"file"}  # files the packages ship
    assert sources == {d for d in _datasets(memory) if not d[1].startswith(memory_root)}
    in_local = {d for d in _datasets(local) if d[1].startswith(local_root + "/")}
    in_memory = {d for d in _datasets(memory) if d not in sources}
    assert {namespace for namespace, _ in in_local} == {"file"}
    assert {namespace for namespace, _ in in_memory} == {"memory://"}
    assert all(name.startswith(memory_root + "/") for _, name in in_memory)
    # The same datasets, each named for its storage.
    relative = {name[len(local_root) :] for _, name in in_local}
    assert relative == {name[len(memory_root) :] for _, name in in_memory}
    assert ("memory://", f"{memory_root}/exports/pa-health-department/{DAILY}.parquet") in in_memory
    serve_run = next(e for e in memory.events if e["job"]["name"] == f"{SPEC.name}.serve.run")
    assert serve_run["outputs"][0]["facets"]["dataSource"]["uri"] == f"memory://{memory_root}"
    assert serve_run["outputs"][0]["facets"]["dataSource"]["name"] == "memory://"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, memory: ChainRun) -> Iterator[tuple[TestClient, str]]:
    root = tmp_path_factory.mktemp("lineage")
    # The service's data root is the chain's memory:// URL, as CHAINTRACE_DATA_ROOT would give it.
    settings = LineageSettings(data_root=str(memory.zones.root), db_url=f"sqlite:///{root / 'l.db'}")
    assert settings.data_root == str(memory.zones.root)
    context = LineageContext.build(settings)
    context.start()
    _key, admin = create_key(context.engine, name="fsspec-admin", role="admin")
    _key, token = create_key(context.engine, name="fsspec-consumer", role="consumer", clearance="L1",
                             jurisdiction="US-PA")
    with TestClient(create_app(context), headers={"Authorization": f"Bearer {admin}"}) as client:
        for event in memory.events:
            assert client.post("/api/v1/lineage", json=event).status_code == 201
        yield client, token
    context.close()


def test_the_service_serves_products_from_the_memory_root(
    service: tuple[TestClient, str], memory: ChainRun
) -> None:
    client, token = service
    consumer = {"Authorization": f"Bearer {token}"}
    listed = {p["name"]: p for p in client.get("/api/v1/products").json()["products"]}
    assert listed[DAILY]["dataset"] == {
        "namespace": "memory://", "name": f"{memory.zones.root.path}/service/{SPEC.name}/{DAILY}.parquet",
    }  # fmt: skip
    answer = client.get(f"/api/v1/products/{DAILY}", params={"purpose": PURPOSE, "format": "parquet"},
                        headers=consumer)
    assert answer.status_code == 200, answer.text
    assert answer.content == memory.zones.published(SPEC.name, DAILY).read_bytes()
    # The copy in the external sink is not a product of its own.
    assert set(listed) == {product.name for product in SPEC.products}


def test_the_service_serves_nothing_outside_its_root(service: tuple[TestClient, str]) -> None:
    client, token = service
    context: LineageContext = client.app.state.context  # type: ignore[attr-defined]
    kept = context.products.data_root
    context.products.data_root = f"memory://elsewhere-{uuid.uuid4().hex}/root"  # another root
    try:
        answer = client.get(f"/api/v1/products/{DAILY}", params={"purpose": PURPOSE},
                            headers={"Authorization": f"Bearer {token}"})
    finally:
        context.products.data_root = kept
    assert answer.status_code == 404
    assert "not a file this service serves" in answer.json()["message"]


def test_a_registered_name_climbing_out_of_the_root_is_not_served(
    service: tuple[TestClient, str], memory: ChainRun
) -> None:
    client, token = service
    published = memory.zones.published(SPEC.name, DAILY)
    sneaky = f"{memory.zones.root.path}/../{published.path.rsplit('/', 3)[-3]}/x/../../root/service"
    event = next(e for e in memory.events if e["job"]["name"] == f"{SPEC.name}.serve.gate")
    output = next(d for d in event["outputs"] if "purpose" in d["facets"])
    output = {**output, "name": f"{sneaky}/sneaky.parquet",
              "facets": {**output["facets"], "purpose": {**output["facets"]["purpose"], "product": "sneaky"}}}
    posted = client.post("/api/v1/lineage", json={**event, "run": {"runId": str(uuid.uuid4())},
                                                  "outputs": [output]})
    assert posted.status_code == 201, posted.text
    answer = client.get("/api/v1/products/sneaky", params={"purpose": PURPOSE},
                        headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 404
    assert "not a file this service serves" in answer.json()["message"]
