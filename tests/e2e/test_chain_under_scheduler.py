"""Every dataset DAG under the real scheduler: runs, lineage in the store, graph reach, gates."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import pytest

from chaintrace_chain.spec import all_specs
from chaintrace_chain.summary import summarise_run
from chaintrace_chain.zones import STAGES, Zones

if TYPE_CHECKING:
    from conftest import ChainEnv

pytestmark = pytest.mark.slow
TERMINAL = {"COMPLETE", "FAIL", "ABORT"}
DATASETS = [spec.name for spec in all_specs()]


def _summary(chain_env: ChainEnv, dataset: str, label: str = "good"):  # type: ignore[no-untyped-def]
    spec = next(spec for spec in all_specs(chain_env.session.spec_dir) if spec.name == dataset)
    return summarise_run(spec, Zones.at(chain_env.session.data_root), f"e2e_{label}")


def _upstream_nodes(graph: list[dict[str, Any]], start: str) -> set[str]:
    nodes = {node["id"]: node for node in graph}
    seen = {start}
    queue = deque([start])
    while queue:
        for edge in nodes.get(queue.popleft(), {}).get("inEdges", []):
            if edge["origin"] not in seen:
                seen.add(edge["origin"])
                queue.append(edge["origin"])
    return seen


def test_every_dataset_dag_succeeds(good_run: dict[str, str]) -> None:
    assert good_run == {dataset: "success" for dataset in DATASETS}


@pytest.mark.parametrize("dataset", DATASETS)
def test_store_holds_start_and_terminal_event_for_the_dag_run_and_every_task_run(
    chain_env: ChainEnv, good_run: dict[str, str], dataset: str
) -> None:
    events = [e for e in chain_env.events_of_run("e2e_good") if e["job"]["name"].split(".")[0] == dataset]
    by_job: dict[str, list[str]] = {}
    for event in events:
        by_job.setdefault(event["job"]["name"], []).append(event["eventType"])
    tasks = chain_env.session.client.task_instances(dataset, "e2e_good")
    expected_jobs = {dataset} | {f"{dataset}.{task['task_id']}" for task in tasks}
    assert len(expected_jobs) == 1 + 2 * len(STAGES)
    assert set(by_job) == expected_jobs
    for job, types in by_job.items():
        assert "START" in types, job
        assert TERMINAL & set(types), f"{job} has no terminal event: {types}"


@pytest.mark.parametrize("dataset", DATASETS)
def test_served_products_trace_back_to_the_source_through_all_five_stages(
    chain_env: ChainEnv, good_run: dict[str, str], dataset: str
) -> None:
    summary = _summary(chain_env, dataset)
    assert summary.products, f"{dataset} published nothing"
    sources = {record["source_uri"] for record in _collect_records(chain_env, dataset)}
    with chain_env.lineage as client:
        for product, path in summary.products.items():
            node = f"dataset:file:{path}"
            graph = client.get("/api/v1/lineage", params={"nodeId": node, "depth": 40}).json()["graph"]
            upstream = _upstream_nodes(graph, node)
            for stage in STAGES:
                assert f"job:chaintrace:{dataset}.{stage}.run" in upstream, (
                    f"{product}: no {stage} stage upstream"
                )
            source_nodes = {f"dataset:file:{uri.removeprefix('file://')}" for uri in sources}
            assert source_nodes & upstream, f"{product} does not reach any source {sorted(source_nodes)}"


def _collect_records(chain_env: ChainEnv, dataset: str) -> list[dict[str, Any]]:
    from chaintrace_chain.stages import load_report

    report = load_report(Zones.at(chain_env.session.data_root), dataset, "e2e_good", "collect")
    return [item.source for item in report.outputs]


def test_a_served_column_traces_back_to_its_source_columns(
    chain_env: ChainEnv, good_run: dict[str, str]
) -> None:
    summary = _summary(chain_env, "flights")
    _product, path = next(iter(sorted(summary.products.items())))
    column = "mean_dep_delay_min"
    with chain_env.lineage as client:
        answer = client.get(
            "/api/v1/column-lineage",
            params={"nodeId": f"datasetField:file:{path}:{column}", "depth": 40},
        ).json()
    fields = {node["id"] for node in answer["graph"]}
    source = str(chain_env.flights_file)
    assert f"datasetField:file:{source}:dep_delay" in fields, sorted(fields)[:50]
