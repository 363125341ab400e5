"""The plugin's links: base URL from the environment, the DAG tab's href template rendered the way
Airflow's UI renders it (the web UI's graph view: parameters in the URL fragment), and the lineage service
answering the rendered link: the page, and the graph call the page makes with them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from fastapi.testclient import TestClient

from chaintrace_chain.spec import all_specs
from lineage.api.app import create_app
from lineage.context import LineageContext
from lineage.settings import LineageSettings

EXPECTED_EVENTS = Path(__file__).resolve().parents[1] / "e2e" / "expected_events"


def render(href: str, dag_id: str) -> str:
    """What Airflow's UI does with a non-nav external view: replaceAll('{DAG_ID}', encodeURIComponent(id))."""
    return href.replace("{DAG_ID}", quote(dag_id, safe="-_.!~*'()"))


def view_params(url: str) -> tuple[str, dict[str, list[str]]]:
    """The web UI's view and parameters from a rendered link (``.../#/graph?nodeId=...``)."""
    route, _, query = urlsplit(url).fragment.partition("?")
    return route, parse_qs(query, strict_parsing=True)


def first_task_job(dag_id: str) -> dict[str, str]:
    """The first task-level job the chain emits for ``dag_id``, from the end-to-end golden events."""
    events = json.loads((EXPECTED_EVENTS / f"{dag_id}.json").read_text())
    return next(e["job"] for e in events if e["job"]["name"].startswith(f"{dag_id}."))


def test_base_url_defaults_to_the_lineage_service_default(ui: ModuleType) -> None:
    fields = LineageSettings.model_fields
    default = f"http://{fields['host'].default}:{fields['port'].default}"
    assert ui.lineage_base_url({}) == default
    assert ui.lineage_base_url({ui.URL_ENV: "  "}) == default


def test_base_url_from_the_environment_loses_its_trailing_slash(ui: ModuleType) -> None:
    assert ui.lineage_base_url({ui.URL_ENV: "https://lineage.example.org/ct/"}) == (
        "https://lineage.example.org/ct"
    )


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("lineage.example.org:5000", "not an absolute http(s) URL"),
        ("ftp://lineage.example.org", "not an absolute http(s) URL"),
        ("http://", "not an absolute http(s) URL"),
        ("http://lineage.example.org/?x=1", "without '?query'"),
        ("http://lineage.example.org/#/dag", "without '?query' or '#fragment'"),
    ],
)
def test_a_bad_base_url_is_refused_naming_the_variable(ui: ModuleType, value: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=ui.URL_ENV) as error:
        ui.lineage_base_url({ui.URL_ENV: value})
    assert complaint in str(error.value)


def test_credentials_in_the_base_url_are_refused_without_echoing_them(ui: ModuleType) -> None:
    with pytest.raises(ValueError, match="must not carry credentials") as error:
        ui.lineage_base_url({ui.URL_ENV: "http://admin:s3cret@lineage.example.org"})
    assert "s3cret" not in str(error.value)


@pytest.mark.parametrize("dag_id", sorted(spec.name for spec in all_specs()))
def test_dag_tab_renders_to_the_graph_of_the_dags_first_job(ui: ModuleType, dag_id: str) -> None:
    href = ui.dag_lineage_href("http://lineage.example.org:5123", "chaintrace")
    url = urlsplit(render(href, dag_id))
    assert (url.scheme, url.netloc, url.path, url.query) == ("http", "lineage.example.org:5123", "/", "")
    route, query = view_params(render(href, dag_id))
    assert route == "/graph"
    assert query == {"nodeId": [f"job:chaintrace:{dag_id}.collect.run"], "depth": ["20"],
                     "direction": ["both"]}


def test_dag_tab_targets_the_job_the_chain_really_emits(ui: ModuleType) -> None:
    job = first_task_job("flights")
    href = ui.dag_lineage_href("http://127.0.0.1:5000", job["namespace"])
    node_id = view_params(render(href, "flights"))[1]["nodeId"]
    assert node_id == [f"job:{job['namespace']}:{job['name']}"]


def test_namespace_and_dag_id_are_url_encoded(ui: ModuleType) -> None:
    href = ui.dag_lineage_href("http://127.0.0.1:5000", "team a&b#1")
    assert "{DAG_ID}" in href and " " not in href and href.count("#") == 1  # the fragment's own
    query = view_params(render(href, "odd&dag"))[1]
    assert query["nodeId"] == ["job:team a&b#1:odd&dag.collect.run"]


def test_external_views_are_a_dag_tab_and_a_browse_link(ui: ModuleType) -> None:
    views = ui.external_views("http://lineage.example.org", "chaintrace")
    by_destination = {view["destination"]: view for view in views}
    assert set(by_destination) == {"dag", "nav"}
    tab = by_destination["dag"]
    assert (tab["name"], tab["url_route"]) == ("Lineage", "chaintrace-lineage")
    assert tab["href"] == ui.dag_lineage_href("http://lineage.example.org", "chaintrace")
    link = by_destination["nav"]
    # No url_route: Airflow shows a plain link to the service instead of an iframe page of its own.
    assert "url_route" not in link
    assert (link["name"], link["category"], link["href"]) == (
        "Lineage service", "browse", "http://lineage.example.org/"
    )


# --- the lineage service answers the rendered links -----------------------------------------------------

def _event(job: str, inputs: list[str], outputs: list[str]) -> dict[str, Any]:
    return {
        "eventType": "COMPLETE",
        "eventTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "producer": "https://github.com/chaintrace/tests",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": "chaintrace", "name": job},
        "inputs": [{"namespace": "file", "name": name} for name in inputs],
        "outputs": [{"namespace": "file", "name": name} for name in outputs],
    }


@pytest.fixture
def open_service(sqlite_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """A lineage service with keys off and a client without credentials: what the Airflow tab's iframe
    is (a browser GET that carries no API key)."""
    context = LineageContext.build(LineageSettings(db_url=sqlite_url, data_root=tmp_path, auth="off"))
    context.start()
    try:
        with TestClient(create_app(context)) as client:
            yield client
    finally:
        context.close()


def test_the_rendered_links_answer_with_the_dags_chain(ui: ModuleType, open_service: TestClient) -> None:
    events = [
        _event("flights.collect.run", ["/src/flights.csv"], ["/data/landing/flights"]),
        _event("flights.collect.gate", ["/data/landing/flights"], []),
        _event("flights.store.run", ["/data/landing/flights"], ["/data/raw/flights"]),
        _event("weather.collect.run", ["/src/weather.csv"], ["/data/landing/weather"]),
    ]
    response = open_service.post("/api/v1/lineage/batch", json=events)
    assert response.status_code == 200, response.text

    views = {view["destination"]: view for view in ui.external_views("http://testserver", "chaintrace")}
    rendered = render(views["dag"]["href"], "flights")
    page = open_service.get(urlsplit(rendered).path)
    assert page.status_code == 200 and '<script type="module" src="/ui/js/main.js">' in page.text
    # What the page then asks for, with the fragment's parameters.
    _, query = view_params(rendered)
    response = open_service.get("/api/v1/ui/graph", params={k: v[0] for k, v in query.items()})
    assert response.status_code == 200, response.text
    jobs = {node["id"] for node in response.json()["nodes"] if node["kind"] == "job"}
    assert jobs == {f"job:chaintrace:flights.{step}" for step in ("collect.run", "collect.gate", "store.run")}

    start = open_service.get(urlsplit(views["nav"]["href"]).path)
    assert start.status_code == 200 and "text/html" in start.headers["content-type"]
