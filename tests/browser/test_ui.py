"""The web UI in headless Chromium against a real lineage service (fixtures in conftest.py)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from playwright.sync_api import Locator, Page, expect

from lineage.synthetic_chain import PRODUCER, RUN_EVENT_SCHEMA_URL

UiServer = Any  # tests/browser/conftest.py's UiServer (test modules cannot import conftest)


def graph_url(server: UiServer, node_id: str, depth: int = 20) -> str:
    return f"{server.base_url}/#/graph?nodeId={quote(node_id, safe='')}&depth={depth}&direction=both"


def node(page: Page, dataset: tuple[str, str]) -> Locator:
    return page.locator(f'g.node[data-id="dataset:{dataset[0]}:{dataset[1]}"]')


def test_search_a_dataset_click_it_and_see_its_gate_result_and_level(page: Page, ui_server: UiServer) -> None:
    ui_server.logged_in(page, ui_server.admin_key).goto(ui_server.base_url + "/")
    expect(page.locator("#whoami")).to_contain_text("ui-admin")
    page.fill("#search-input", "landing/flights")
    result = page.locator("#search-results li", has_text=ui_server.landing[1])
    expect(result).to_be_visible()
    result.click()
    expect(page.locator("#view")).to_have_attribute("data-ready", "graph")
    # The whole chain is drawn: 6 datasets (source, landing, raw, quarantine, served) and 5 task jobs.
    expect(page.locator("g.node.dataset")).to_have_count(5)
    expect(page.locator("g.node.job")).to_have_count(5)
    landing = node(page, ui_server.landing)
    expect(landing).to_have_attribute("data-gate", "pass")
    expect(landing).to_have_attribute("data-level", "L4")
    expect(node(page, ui_server.raw)).to_have_attribute("data-gate", "fail")
    expect(node(page, ui_server.served)).to_have_attribute("data-gate", "none")
    expect(page.locator('g.node.job[data-id="job:chaintrace:flights.store.gate"]')).to_have_attribute(
        "data-state", "FAILED")

    node(page, ui_server.raw).click()
    panel = page.locator("#panel")
    expect(panel.locator("#panel-title")).to_have_text(ui_server.raw[1])
    expect(panel.locator("#panel-head")).to_contain_text("gate fail")
    expect(panel.locator("#panel-head")).to_contain_text("level L4")
    # The side panel: schema with levels (the masked column declared L1), quality history, runs.
    schema = panel.locator("table.schema")
    expect(schema.locator("tr", has_text="passenger_name")).to_contain_text("L4")
    expect(schema.locator("tr", has_text="tailnum_hash")).to_contain_text("L1")
    expect(panel.locator("table.quality tr", has_text="fail")).to_have_count(1)
    expect(panel.locator("table.runs")).to_contain_text("flights.store.run")
    shots = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "side_panel_of_a_failed_gate.png"))
    # The quality report opens from the panel (fetched with the key, shown in the page).
    panel.get_by_role("button", name="Quality report (charts)").click()
    expect(page.locator("#report-overlay")).to_be_visible()
    report = page.frame_locator("#report-frame").locator("body")
    expect(report).to_contain_text(f"Quality history: file:{ui_server.raw[1]}")
    expect(report).to_contain_text("expect_column_values_to_not_be_null(carrier)")
    page.click("#report-close")
    # Searching again also marks the matching nodes already on screen.
    page.fill("#search-input", "raw/flights")
    expect(node(page, ui_server.raw)).to_have_class(re.compile(r"\bmatch\b"))
    expect(node(page, ui_server.landing)).not_to_have_class(re.compile(r"\bmatch\b"))


def test_an_event_posted_now_appears_in_the_live_feed(page: Page, ui_server: UiServer) -> None:
    served = f"dataset:{ui_server.served[0]}:{ui_server.served[1]}"
    ui_server.logged_in(page, ui_server.admin_key).goto(graph_url(ui_server, served))
    expect(page.locator("#feed-state")).to_have_class(re.compile(r"\blive\b"))
    job = f"live.check_{uuid.uuid4().hex[:8]}"
    ui_server.post("/api/v1/lineage", {
        "eventType": "COMPLETE", "eventTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "producer": PRODUCER, "schemaURL": RUN_EVENT_SCHEMA_URL,
        "run": {"runId": str(uuid.uuid4())}, "job": {"namespace": "chaintrace", "name": job},
        "inputs": [{"namespace": ui_server.served[0], "name": ui_server.served[1]}], "outputs": []})
    expect(page.locator("#feed-items li.event", has_text=job)).to_have_count(1)
    # The event reads a dataset on screen: the page offers a refresh instead of redrawing by itself.
    expect(page.locator("#refresh-note")).to_be_visible()


def test_a_reader_below_l4_logs_in_and_sees_the_redacted_graph(page: Page, ui_server: UiServer) -> None:
    start = f"dataset:{ui_server.served[0]}:{ui_server.served[1]}"
    page.goto(graph_url(ui_server, start))
    dialog = page.locator("#login-dialog")
    expect(dialog).to_be_visible()
    page.fill("#login-key", "ct_0_not-a-key")
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_contain_text("not valid")
    page.fill("#login-key", ui_server.reader_l2_key)
    page.click("#login-submit")
    expect(page.locator("#whoami")).to_contain_text("clearance L2")
    expect(page.locator("#view")).to_have_attribute("data-ready", "graph")
    # Same shape as the admin's graph, but landing and raw (L4) are placeholders.
    status, _, body = ui_server.get(f"/api/v1/ui/graph?nodeId={quote(start, safe='')}&depth=20",
                                    ui_server.admin_key)
    assert status == 200
    expect(page.locator("g.node")).to_have_count(len(json.loads(body)["nodes"]))
    withheld = page.locator("g.node.withheld")
    expect(withheld).to_have_count(2)
    expect(page.locator("#withheld-banner")).to_contain_text("above your clearance L2")
    content = page.content()
    assert ui_server.raw[1] not in content and ui_server.landing[1] not in content
    assert "passenger_name" not in content
    withheld.first.click()
    expect(page.locator("#panel-body")).to_contain_text("above your clearance")
    # The key never went into a URL: the page's address and every request the page made are key-free.
    assert ui_server.reader_l2_key not in page.url


def test_the_column_view_marks_the_masking_edge(page: Page, ui_server: UiServer) -> None:
    field = f"datasetField:{ui_server.raw[0]}:{ui_server.raw[1]}:tailnum_hash"
    columns_url = f"{ui_server.base_url}/#/columns?nodeId={quote(field, safe='')}"
    ui_server.logged_in(page, ui_server.admin_key).goto(columns_url)
    expect(page.locator("#view")).to_have_attribute("data-ready", "columns")
    masking = page.locator("path.edge.masking")
    expect(masking).to_have_count(1)
    expect(page.locator("text.edge-label")).to_have_text("masking")
    expect(page.locator(".view-title")).to_contain_text("1 masking edge")
    # the masked edge runs from landing's tailnum into raw's tailnum_hash
    landing = f"{ui_server.landing[0]}:{ui_server.landing[1]}"
    origin = page.locator(f'g.node[data-id="datasetField:{landing}:tailnum"]')
    expect(origin).to_have_count(1)


def test_the_run_view_shows_the_tasks_with_states_and_airflow_links(page: Page, ui_server: UiServer) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    ui_server.logged_in(page, ui_server.admin_key).goto(f"{ui_server.base_url}/#/run/{ui_server.dag_run}")
    expect(page.locator("#view")).to_have_attribute("data-ready", "run")
    tasks = page.locator(".timeline .task")
    expect(tasks).to_have_count(5)
    expect(page.locator(".task[data-job='flights.store.gate']")).to_have_attribute("data-state", "FAILED")
    expect(page.locator(".task[data-job='flights.store.gate']")).to_contain_text("gate fail")
    expect(page.locator(".task[data-job='flights.collect.run'] .io")).to_contain_text(ui_server.landing[1])
    run_path = f"{ui_server.airflow_url}/dags/flights/runs/{quote(ui_server.airflow_run_id, safe='')}"
    expect(page.locator("#airflow-link")).to_have_attribute("href", run_path)
    expect(page.locator(".task[data-job='flights.collect.gate'] a")).to_have_attribute(
        "href", f"{run_path}/tasks/collect.gate")
    assert not any(ui_server.admin_key in url for url in requests)
