"""A DAG run's quality report from real chain events, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chaintrace_chain.facets import dataset_id
from chaintrace_chain.stages import load_report
from chaintrace_chain.zones import STAGES
from lineage.governance.levels import rank
from lineage.governance.redaction import WITHHELD_HEADER

if TYPE_CHECKING:
    from tests.lineage.reports.conftest import ChainRuns, ReportService

DATASET = "covid_testing"
FAILING_STAGE = "analyze"
FAILING_COLUMN = "n_tests"
Headers = Callable[..., dict[str, str]]


def _report(service: ReportService, run_id: str, **headers: str) -> dict[str, Any]:
    answer = service.client.get(f"/api/v1/reports/runs/{run_id}", headers=headers or None)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_the_chain_constants_match_the_fixture(chain_runs: ChainRuns) -> None:
    assert (chain_runs.dataset, chain_runs.failing_stage, chain_runs.failing_column) == (
        DATASET, FAILING_STAGE, FAILING_COLUMN)


def test_a_passing_run_reports_every_gate_with_its_expectations_and_counts(
    service: ReportService, chain_runs: ChainRuns
) -> None:
    report = _report(service, chain_runs.good)
    assert report["runId"] == chain_runs.good
    assert report["job"]["name"] == DATASET and report["job"]["state"] == "COMPLETED"
    assert [g["job"] for g in report["gates"]] == [f"{DATASET}.{stage}.gate" for stage in STAGES]
    assert {g["status"] for g in report["gates"]} == {"PASSED"}
    assert report["summary"]["gatesFailed"] == 0 and report["summary"]["quarantined"] == 0
    for gate in report["gates"]:
        (validated,) = gate["datasets"]
        assert validated["success"] and validated["expectations"]
        assert validated["suite"] and validated["docsPage"].startswith("file://")
        assert validated["rowCount"] > 0 and validated["columnMetrics"]
    for stage in report["stages"]:
        written = load_report(chain_runs.zones, DATASET, "good", stage["stage"])
        assert stage["rowsOut"] == sum(item.rows for item in written.outputs if item.rows is not None) or \
            stage["stage"] == "collect"
    assert [s["stage"] for s in report["stages"]] == list(STAGES)
    process = report["stages"][STAGES.index("process")]
    assert process["rowsIn"] > 0 and process["rowsOut"] > 0


def test_a_failed_gate_shows_its_failed_expectations_and_the_quarantined_batch(
    service: ReportService, chain_runs: ChainRuns
) -> None:
    report = _report(service, chain_runs.bad)
    assert report["job"]["state"] == "FAILED"
    stages = list(STAGES[: STAGES.index(FAILING_STAGE) + 1])
    assert [(g["stage"], g["status"]) for g in report["gates"]] == [
        (stage, "FAILED" if stage == FAILING_STAGE else "PASSED") for stage in stages
    ]
    failed_gate = report["gates"][-1]
    assert failed_gate["job"] == chain_runs.failed_gate and failed_gate["state"] == "FAILED"
    failed = [e for d in failed_gate["datasets"] for e in d["expectations"] if not e["success"]]
    by_name = {(e["name"], e["column"]): e for e in failed}
    # the nulls: counted, with examples; the column they forced to float: expected versus observed type
    nulls = by_name[("expect_column_values_to_not_be_null", FAILING_COLUMN)]
    assert nulls["observed"]["unexpected_count"] == 3
    assert by_name[("expect_column_values_to_be_of_type", FAILING_COLUMN)]["expected"] == {"type_": "int64"}
    assert by_name[("expect_column_values_to_be_of_type", FAILING_COLUMN)]["observed"] == "float64"
    # every other failure is a pair check on the corrupted column
    assert all(e["column"] == FAILING_COLUMN or e["expected"]["column_A"] == FAILING_COLUMN for e in failed)
    assert report["summary"]["expectationsFailed"] == len(failed) and report["summary"]["gatesFailed"] == 1
    analyzed = load_report(chain_runs.zones, DATASET, "bad", FAILING_STAGE).outputs
    moved = {(q["from"]["namespace"], q["from"]["name"]) for q in failed_gate["quarantined"]}
    assert moved == {dataset_id(item.folder) for item in analyzed}
    assert all("/quarantine/" in q["name"] for q in failed_gate["quarantined"])
    assert report["summary"]["quarantined"] == len(analyzed)


def test_the_html_page_is_self_contained_and_says_the_same(
    service: ReportService, chain_runs: ChainRuns
) -> None:
    by_suffix = service.client.get(f"/api/v1/reports/runs/{chain_runs.bad}.html")
    by_query = service.client.get(f"/api/v1/reports/runs/{chain_runs.bad}", params={"format": "html"})
    assert by_suffix.status_code == by_query.status_code == 200
    assert by_suffix.headers["content-type"].startswith("text/html")
    page = by_suffix.text
    assert page == by_query.text
    assert "<script" not in page and not re.search(r"""(src|href)=["']https?:""", page)
    assert "<style>" in page and "<link" not in page
    assert f"{DATASET}.{FAILING_STAGE}.gate" in page and "expect_column_values_to_not_be_null" in page
    quarantined = _report(service, chain_runs.bad)["gates"][-1]["quarantined"]
    assert page.count("quarantined</span>") == len(quarantined)


def test_an_unknown_run_is_a_404_naming_it(service: ReportService) -> None:
    missing = str(uuid.uuid4())
    for path in (f"/api/v1/reports/runs/{missing}", f"/api/v1/reports/runs/{missing}.html"):
        answer = service.client.get(path)
        assert answer.status_code == 404
        assert missing in answer.json()["message"]


def test_a_low_clearance_reader_sees_placeholders(
    service: ReportService, chain_runs: ChainRuns, make_auth_headers: Headers
) -> None:
    full = _report(service, chain_runs.good)
    headers = make_auth_headers(service.context, role="reader", clearance="L1")
    answer = service.client.get(f"/api/v1/reports/runs/{chain_runs.good}", headers=headers)
    assert answer.status_code == 200 and WITHHELD_HEADER in answer.headers
    seen = answer.json()
    assert seen["withheld"]["clearance"] == "L1"
    classification = service.context.classification
    withheld = 0
    for gate, shown in zip(full["gates"], seen["gates"], strict=True):
        for dataset, visible in zip(gate["datasets"], shown["datasets"], strict=True):
            level = classification.dataset_level(dataset["namespace"], dataset["name"])
            if level is not None and rank(level) > rank("L1"):
                withheld += 1
                assert visible["name"].startswith("withheld:") and visible["expectations"] == []
                assert visible["columnMetrics"] == {} and visible["docsPage"] is None
                assert dataset["name"] not in answer.text
            levels = classification.field_levels(dataset["namespace"], dataset["name"])
            hidden = {c for c, lv in levels.items() if rank(lv) > rank("L1")}
            assert not hidden & {e["column"] for e in visible["expectations"]}
            assert not hidden & set(visible["columnMetrics"])
    assert withheld >= 1  # covid_testing's raw tests carry identifiers: above L1
    page = service.client.get(f"/api/v1/reports/runs/{chain_runs.good}.html", headers=headers).text
    assert "withheld:" in page and "above your clearance" in page.lower()
    assert all(g["datasets"][0]["name"] not in page for g in full["gates"]
               if g["datasets"][0]["name"] not in {d["name"] for s in seen["gates"] for d in s["datasets"]})


def test_a_key_without_read_permission_is_refused(
    service: ReportService, chain_runs: ChainRuns, make_auth_headers: Headers
) -> None:
    headers = make_auth_headers(service.context, role="producer")
    assert service.client.get(f"/api/v1/reports/runs/{chain_runs.good}", headers=headers).status_code == 403
