"""The web UI's routes: the public page and assets, and the /api/v1/ui reads (keys, redaction, shapes)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from lineage.api.app import create_app
from lineage.context import LineageContext
from lineage.governance.redaction import WITHHELD_HEADER, placeholder
from lineage.service.ui_graph import compact_graph, dataset_levels
from lineage.settings import LineageSettings
from lineage.synthetic import layered_graph, layered_graph_events
from lineage.synthetic_chain import PRODUCER
from lineage.ui.sample_chain import AIRFLOW_RUN_ID, DAG_RUN, LANDING, RAW, SERVED, chain_events

AIRFLOW = "http://airflow.test:8080"
Headers = Callable[..., dict[str, str]]


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, LineageContext]]:
    """The app over a SQLite store holding the sample chain, Airflow's URL set."""
    root: Path = tmp_path_factory.mktemp("ui-routes")
    settings = LineageSettings(db_url=f"sqlite:///{root / 'lineage.db'}", data_root=root, airflow_url=AIRFLOW)
    context = LineageContext.build(settings)
    with TestClient(create_app(context)) as client:
        results = context.ingest.ingest_sync(chain_events())
        assert all(r.accepted for r in results)
        yield client, context


def keyed(ui: tuple[TestClient, LineageContext], make: Headers, role: str = "admin",
          clearance: str = "L4") -> dict[str, str]:
    return make(ui[1], role=role, clearance=clearance)


def node_id(dataset: tuple[str, str]) -> str:
    return f"dataset:{dataset[0]}:{dataset[1]}"


def test_the_page_and_its_assets_need_no_key_but_every_ui_read_does(ui: Any) -> None:
    client, _ = ui
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script type="module" src="/ui/js/main.js">' in page.text
    for asset in ("/ui/app.css", "/ui/js/main.js", "/ui/js/layout.js", "/ui/js/feed.js"):
        assert client.get(asset).status_code == 200, asset
    assert client.get("/ui/js/no-such-file.js").status_code == 404
    for escape in ("/ui/%2E%2E/settings.py", "/ui/..%2Fsettings.py", "/ui/%2E%2E/%2E%2E/lineage/settings.py"):
        reply = client.get(escape)  # the public prefix serves the static folder and nothing beside it
        assert reply.status_code in (400, 401, 404) and "BaseSettings" not in reply.text, escape
    for path in ("/api/v1/ui/session", f"/api/v1/ui/graph?nodeId={quote(node_id(RAW))}",
                 f"/api/v1/ui/runs/{DAG_RUN}", "/api/v1/ui/node?kind=dataset&namespace=file&name=x"):
        reply = client.get(path)
        assert reply.status_code == 401, path


def test_no_asset_loads_anything_from_the_internet() -> None:
    static = Path(__file__).resolve().parents[3] / "lineage" / "ui" / "static"
    for path in static.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "http://" not in text.replace("http://www.w3.org/2000/svg", ""), path
            assert "https://" not in text, path


def test_the_session_says_who_calls(ui: Any, make_auth_headers: Headers) -> None:
    client, _ = ui
    body = client.get("/api/v1/ui/session", headers=keyed(ui, make_auth_headers, "reader", "L2")).json()
    assert body["role"] == "reader" and body["clearance"] == "L2" and body["auth"] == "keys"
    assert body["airflowUrl"] == AIRFLOW
    producer = keyed(ui, make_auth_headers, "producer")
    assert client.get("/api/v1/ui/session", headers=producer).status_code == 403


def test_the_graph_marks_gate_results_levels_and_run_states(ui: Any, make_auth_headers: Headers) -> None:
    client, _ = ui
    headers = keyed(ui, make_auth_headers)
    start = quote(node_id(SERVED))
    body = client.get(f"/api/v1/ui/graph?nodeId={start}&depth=20", headers=headers).json()
    marquez = client.get(f"/api/v1/lineage?nodeId={start}&depth=20", headers=headers).json()
    assert [n["id"] for n in body["nodes"]] == [n["id"] for n in marquez["graph"]]
    assert len(body["edges"]) == sum(len(n["outEdges"]) for n in marquez["graph"])
    by_id = {n["id"]: n for n in body["nodes"]}
    assert {"gate": "pass", "level": "L4", "kind": "dataset"}.items() <= by_id[node_id(LANDING)].items()
    assert by_id[node_id(RAW)]["gate"] == "fail"
    assert {"gate": "none", "level": "L1"}.items() <= by_id[node_id(SERVED)].items()
    assert by_id["job:chaintrace:flights.store.gate"]["state"] == "FAILED"
    assert by_id["job:chaintrace:flights.collect.run"]["state"] == "COMPLETED"
    ids = [n["id"] for n in body["nodes"]]
    edges = {(ids[a], ids[b]) for a, b in body["edges"]}
    assert ("job:chaintrace:flights.collect.run", node_id(LANDING)) in edges
    assert (node_id(LANDING), "job:chaintrace:flights.store.run") in edges
    assert "withheld" not in body


def test_a_reader_gets_the_graph_redacted_exactly_as_the_lineage_route(
    ui: Any, make_auth_headers: Headers
) -> None:
    client, _ = ui
    headers = keyed(ui, make_auth_headers, "reader", "L2")
    start = quote(node_id(SERVED))
    reply = client.get(f"/api/v1/ui/graph?nodeId={start}&depth=20", headers=headers)
    marquez = client.get(f"/api/v1/lineage?nodeId={start}&depth=20", headers=headers)
    body = reply.json()
    assert [n["id"] for n in body["nodes"]] == [n["id"] for n in marquez.json()["graph"]]
    assert reply.headers[WITHHELD_HEADER] == marquez.headers[WITHHELD_HEADER]
    assert body["withheld"] == marquez.json()["withheld"]
    withheld = [n for n in body["nodes"] if n["withheld"]]
    assert {n["name"] for n in withheld} == {placeholder(*LANDING), placeholder(*RAW)}
    assert all(n["level"] is None and n["gate"] == "none" for n in withheld)
    assert LANDING[1] not in reply.text and RAW[1] not in reply.text
    # A placeholder id is a valid start, as on the lineage route.
    again = client.get(f"/api/v1/ui/graph?nodeId={quote(withheld[0]['id'])}&depth=20", headers=headers)
    assert again.status_code == 200 and RAW[1] not in again.text


def test_bad_or_unknown_start_nodes_are_named(ui: Any, make_auth_headers: Headers) -> None:
    client, _ = ui
    headers = keyed(ui, make_auth_headers)
    bad = client.get("/api/v1/ui/graph?nodeId=table:x", headers=headers)
    assert bad.status_code == 400 and "malformed" in bad.json()["message"]
    missing = client.get("/api/v1/ui/graph?nodeId=dataset:file:/nowhere", headers=headers)
    assert missing.status_code == 404 and "/nowhere" in missing.json()["message"]
    too_deep = client.get(f"/api/v1/ui/graph?nodeId={quote(node_id(RAW))}&depth=1000", headers=headers)
    assert too_deep.status_code in (400, 422)


def test_the_dataset_panel(ui: Any, make_auth_headers: Headers) -> None:
    client, _ = ui
    reply = client.get("/api/v1/ui/node", params={"kind": "dataset", "namespace": RAW[0], "name": RAW[1]},
                       headers=keyed(ui, make_auth_headers))
    body = reply.json()
    assert body["gate"] == "fail" and body["level"] == "L4"
    fields = {f["name"]: f for f in body["fields"]}
    assert fields["passenger_name"]["level"] == "L4"
    assert {"level": "L1", "declared": "L1"}.items() <= fields["tailnum_hash"].items()
    assert [p["success"] for p in body["quality"]["points"]] == [False]
    jobs = {r["job"] for r in body["runs"]}
    assert jobs >= {"flights.store.run", "flights.store.gate", "flights.serve.run"}
    assert body["versions"] and body["versions"][0]["version"]


def test_a_withheld_dataset_panel_shows_nothing_of_it(ui: Any, make_auth_headers: Headers) -> None:
    client, _ = ui
    headers = keyed(ui, make_auth_headers, "reader", "L2")
    for name in (RAW[1], placeholder(*RAW)):
        reply = client.get("/api/v1/ui/node", params={"kind": "dataset", "namespace": RAW[0], "name": name},
                           headers=headers)
        assert reply.status_code == 200
        assert {"withheld": True, "name": placeholder(*RAW)}.items() <= reply.json().items()
        assert RAW[1] not in reply.text and "passenger_name" not in reply.text
        assert reply.headers[WITHHELD_HEADER] == "1,0"


def test_the_job_panel_lists_runs_with_their_dag_run(ui: Any, make_auth_headers: Headers) -> None:
    client, _ = ui
    reply = client.get("/api/v1/ui/node", params={"kind": "job", "namespace": "chaintrace",
                                                  "name": "flights.store.gate"},
                       headers=keyed(ui, make_auth_headers, "reader", "L2"))
    body = reply.json()
    assert [(r["state"], r["parentRunId"]) for r in body["runs"]] == [("FAILED", DAG_RUN)]
    assert RAW[1] not in reply.text  # its input is withheld at L2
    unknown = client.get("/api/v1/ui/node", params={"kind": "job", "namespace": "chaintrace", "name": "nope"},
                         headers=keyed(ui, make_auth_headers))
    assert unknown.status_code == 404


def test_the_run_view(ui: Any, make_auth_headers: Headers) -> None:
    client, _ = ui
    headers = keyed(ui, make_auth_headers)
    body = client.get(f"/api/v1/ui/runs/{DAG_RUN}", headers=headers).json()
    run_link = f"{AIRFLOW}/dags/flights/runs/{quote(AIRFLOW_RUN_ID, safe='')}"
    dag = {"dagId": "flights", "airflowRunId": AIRFLOW_RUN_ID, "state": "FAILED"}
    assert dag.items() <= body["dag"].items()
    assert body["airflowUrl"] == run_link
    tasks = {t["taskId"]: t for t in body["tasks"]}
    assert list(tasks) == ["collect.run", "collect.gate", "store.run", "store.gate", "serve.run"]
    assert {"state": "FAILED", "gate": "fail"}.items() <= tasks["store.gate"].items()
    assert tasks["collect.gate"]["gate"] == "pass" and tasks["collect.run"]["gate"] is None
    assert tasks["collect.run"]["outputs"] == [{"namespace": LANDING[0], "name": LANDING[1]}]
    assert tasks["serve.run"]["airflowUrl"] == f"{run_link}/tasks/serve.run"
    # A task run's id opens the view of its DAG run.
    task_run = tasks["store.run"]["runId"]
    assert client.get(f"/api/v1/ui/runs/{task_run}", headers=headers).json()["runId"] == DAG_RUN
    unknown = client.get("/api/v1/ui/runs/00000000-0000-4000-8000-000000000000", headers=headers)
    assert unknown.status_code == 404


def test_the_run_view_is_redacted_for_a_reader(ui: Any, make_auth_headers: Headers) -> None:
    client, _ = ui
    reply = client.get(f"/api/v1/ui/runs/{DAG_RUN}", headers=keyed(ui, make_auth_headers, "reader", "L2"))
    assert reply.status_code == 200
    assert RAW[1] not in reply.text and LANDING[1] not in reply.text
    assert placeholder(*RAW) in reply.text and reply.headers[WITHHELD_HEADER].startswith("2,")


def test_without_airflow_url_there_are_no_airflow_links(tmp_path: Path, make_auth_headers: Headers) -> None:
    settings = LineageSettings(db_url=f"sqlite:///{tmp_path / 'l.db'}", data_root=tmp_path)
    context = LineageContext.build(settings)
    with TestClient(create_app(context)) as client:
        context.ingest.ingest_sync(chain_events())
        body = client.get(f"/api/v1/ui/runs/{DAG_RUN}", headers=make_auth_headers(context)).json()
    assert body["airflowUrl"] is None and all(t["airflowUrl"] is None for t in body["tasks"])
    assert body["dag"]["dagId"] == "flights"


def test_the_ui_routes_are_in_the_api_description(ui: Any) -> None:
    client, _ = ui
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/v1/ui/graph", "/api/v1/ui/node", "/api/v1/ui/runs/{run_id}", "/api/v1/ui/session"):
        assert paths[path]["get"]["x-permissions"] == [["read"]], path
    assert "/" not in paths


def test_with_auth_off_the_page_needs_no_login(tmp_path: Path) -> None:
    settings = LineageSettings(db_url=f"sqlite:///{tmp_path / 'l.db'}", data_root=tmp_path, auth="off")
    with TestClient(create_app(LineageContext.build(settings))) as client:
        body = client.get("/api/v1/ui/session").json()  # no key at all
    assert body["auth"] == "off" and body["role"] == "admin" and body["clearance"] == "L4"


def test_the_dataset_panel_lists_purpose_of_use_records(tmp_path: Path, make_auth_headers: Headers) -> None:
    """A product download is recorded as a run of ``consumer.<key>`` reading the product, with a
    ``purpose`` run facet: the panel lists who used it, when, for what."""
    settings = LineageSettings(db_url=f"sqlite:///{tmp_path / 'l.db'}", data_root=tmp_path)
    context = LineageContext.build(settings)
    download = {
        "eventType": "COMPLETE", "eventTime": "2026-11-02T09:00:00Z", "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": "4f1d1c9e-2b7a-4c55-9a63-0d7f3e0c1a11", "facets": {"purpose": {
            "_producer": PRODUCER, "_schemaURL": "https://chaintrace.dev/spec/facets/1-0-0/PurposeRunFacet.json",
            "consumer": "analyst", "purpose": "research", "rows": 42, "accessedAt": "2026-11-02T09:00:00Z"}}},
        "job": {"namespace": "chaintrace-consumers", "name": "consumer.analyst"},
        "inputs": [{"namespace": SERVED[0], "name": SERVED[1]}], "outputs": [],
    }
    with TestClient(create_app(context)) as client:
        assert all(r.accepted for r in context.ingest.ingest_sync([*chain_events(), download]))
        body = client.get("/api/v1/ui/node", params={"kind": "dataset", "namespace": SERVED[0],
                                                     "name": SERVED[1]},
                          headers=make_auth_headers(context)).json()
    uses = [(u["consumer"], u["purpose"], u["rows"]) for u in body["purposeOfUse"]]
    assert uses == [("analyst", "research", 42)]


@pytest.mark.parametrize("direction", ["both", "upstream", "downstream"])
def test_the_index_path_answers_as_the_redaction_path_does(
    ui: Any, make_auth_headers: Headers, direction: str
) -> None:
    """An L4 caller's graph is condensed from the index; it must equal the general path's condensing of
    the (unredacted) lineage answer, node for node and edge for edge."""
    client, context = ui
    headers = keyed(ui, make_auth_headers)
    events = list(layered_graph_events(layered_graph(300, locality=None, seed=3, layers=8)))
    assert all(r.accepted for r in context.ingest.ingest_sync(events))
    starts = [node_id(LANDING), node_id(SERVED), "job:chaintrace:flights.store.gate",
              "dataset:file:/bench/l04/ds0000003", "job:chaintrace.bench:l03.job0000002"]
    for start in starts:
        for depth in (0, 1, 3, 20):
            params = {"nodeId": start, "depth": depth, "direction": direction}
            fast = client.get("/api/v1/ui/graph", params=params, headers=headers).json()
            marquez = client.get("/api/v1/lineage", params=params, headers=headers).json()
            keys = [(n["data"]["namespace"], n["data"]["name"]) for n in marquez["graph"]
                    if n["type"] == "DATASET"]
            general = compact_graph(marquez, dataset_levels(context.classification, keys))
            assert fast["nodes"] == general["nodes"], (start, depth)

            def edge_set(body: dict[str, Any]) -> set[tuple[str, str]]:
                ids = [n["id"] for n in body["nodes"]]
                return {(ids[a], ids[b]) for a, b in body["edges"]}

            assert edge_set(fast) == edge_set(general), (start, depth)
