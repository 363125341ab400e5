"""A dataset's quality history from real chain events, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from chaintrace_chain.facets import dataset_id
from chaintrace_chain.stages import load_report
from lineage.governance.levels import rank
from lineage.governance.redaction import WITHHELD_HEADER, placeholder

if TYPE_CHECKING:
    from tests.lineage.reports.conftest import ChainRuns, ReportService

Headers = Callable[..., dict[str, str]]


def _path(namespace: str, name: str) -> str:
    return f"/api/v1/reports/datasets/{quote(namespace, safe='')}/{quote(name, safe='')}"


def _validated(chain_runs: ChainRuns, stage: str) -> tuple[str, str]:
    """The dataset the gate of ``stage`` validated (the stage's first output)."""
    return dataset_id(load_report(chain_runs.zones, chain_runs.dataset, "good", stage).outputs[0].folder)


def test_the_history_has_one_point_per_gate_run_and_marks_the_failure(
    service: ReportService, chain_runs: ChainRuns
) -> None:
    key = _validated(chain_runs, chain_runs.failing_stage)
    column = chain_runs.failing_column
    answer = service.client.get(_path(*key), params={"metric": [f"nullCount:{column}"]})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert [p["runId"] for p in report["points"]] == [
        gate["runId"]
        for run in (chain_runs.good, chain_runs.bad)
        for gate in service.client.get(f"/api/v1/reports/runs/{run}").json()["gates"]
        if gate["stage"] == chain_runs.failing_stage
    ]
    assert [p["success"] for p in report["points"]] == [True, False]
    assert [p["parentRunId"] for p in report["points"]] == [chain_runs.good, chain_runs.bad]
    assert report["summary"] == {"runs": 2, "runsFailed": 1, "passRate": 0.5,
                                 "expectationPassRate": report["summary"]["expectationPassRate"]}
    good, bad = report["points"]
    assert good["passRate"] == 1.0 and bad["passRate"] < 1.0
    assert {"name": "expect_column_values_to_not_be_null", "column": column} in bad["failedExpectations"]
    assert report["series"] == [{"metric": "nullCount", "column": column, "values": [0, 3]}]
    assert good["rowCount"] == bad["rowCount"] > 0


def test_default_metrics_are_chosen_and_the_page_has_inline_charts(
    service: ReportService, chain_runs: ChainRuns
) -> None:
    key = _validated(chain_runs, chain_runs.failing_stage)
    report = service.client.get(_path(*key)).json()
    assert 0 < len(report["series"]) <= 4
    assert {"metric": "nullCount", "column": chain_runs.failing_column, "values": [0, 3]} in report["series"]
    page = service.client.get(_path(*key), params={"format": "html"})
    assert page.headers["content-type"].startswith("text/html")
    charts = 2 + len(report["series"])  # pass rate, rows, each metric
    assert page.text.count("<svg") == charts and page.text.count('class="failband"') == charts
    assert "<script" not in page.text
    assert service.client.get(_path(key[0], key[1] + ".html")).text == page.text


def test_bad_parameters_and_unknown_datasets(service: ReportService, chain_runs: ChainRuns) -> None:
    key = _validated(chain_runs, "store")
    wrong = service.client.get(_path(*key), params={"metric": "rows"})
    assert wrong.status_code == 400 and "'rows'" in wrong.json()["message"]
    assert service.client.get(_path(*key), params={"limit": 0}).status_code == 400
    missing = service.client.get(_path("file", "/no/such/dataset"))
    assert missing.status_code == 404 and "/no/such/dataset" in missing.json()["message"]


def test_a_low_clearance_reader_sees_no_measurement_of_a_withheld_dataset(
    service: ReportService, chain_runs: ChainRuns, make_auth_headers: Headers
) -> None:
    headers = make_auth_headers(service.context, role="reader", clearance="L1")
    classification = service.context.classification
    checked = 0
    for stage in ("store", chain_runs.failing_stage):
        key = _validated(chain_runs, stage)
        level = classification.dataset_level(*key)
        answer = service.client.get(_path(*key), headers=headers)
        assert answer.status_code == 200
        seen: dict[str, Any] = answer.json()
        if level is not None and rank(level) > rank("L1"):
            checked += 1
            assert seen["name"] == placeholder(*key) and key[1] not in answer.text
            assert WITHHELD_HEADER in answer.headers and seen["series"] == []
            assert all(p["rowCount"] is None and p["columnMetrics"] == {} for p in seen["points"])
            by_placeholder = service.client.get(_path(key[0], placeholder(*key)), headers=headers)
            assert by_placeholder.json() == seen
        hidden = {c for c, lv in classification.field_levels(*key).items() if rank(lv) > rank("L1")}
        for point in seen["points"]:
            assert not hidden & set(point["columnMetrics"])
    assert checked >= 1  # the raw tests of covid_testing carry identifiers: above L1
