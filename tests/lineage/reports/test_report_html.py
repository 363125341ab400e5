"""The HTML of the reports escapes every stored value and links only to safe URLs (no store needed)."""

from __future__ import annotations

import re
from typing import Any

from lineage.reports import render_dataset, render_run
from lineage.reports.charts import line_chart

EVIL = '<script>alert("x")</script>'


def _run_report(docs: str) -> dict[str, Any]:
    expectation = {"name": f"expect_{EVIL}", "assertion": "not_null", "column": EVIL, "success": False,
                   "severity": "error", "expected": {"value": EVIL}, "observed": f"'{EVIL}'"}
    dataset = {"namespace": "file", "name": f"/data/{EVIL}", "suite": EVIL, "success": False,
               "docsPage": docs,
               "validatedAt": None, "rowCount": 3, "evaluated": 1, "passed": 0, "expectations": [expectation],
               "columnMetrics": {}}
    gate = {"job": f"ds.{EVIL}.gate", "namespace": "chaintrace", "stage": EVIL, "runId": "r1",
            "state": "FAILED", "status": "FAILED", "startedAt": None, "endedAt": None, "datasets": [dataset],
            "quarantined": [{"namespace": "file", "name": f"/q/{EVIL}", "from": {"namespace": "file",
                                                                                  "name": EVIL}}],
            "refused": [{"product": EVIL, "reason": EVIL}]}
    stage = {"job": f"ds.{EVIL}.run", "namespace": "chaintrace", "stage": EVIL, "runId": "r0",
             "state": "COMPLETED", "startedAt": None, "endedAt": None, "rowsIn": 10, "rowsOut": 9,
             "counts": {EVIL: 1}, "outputs": []}
    return {"runId": "dag", "job": {"namespace": "chaintrace", "name": EVIL, "state": "FAILED",
                                    "startedAt": None, "endedAt": None},
            "summary": {"gates": 1, "gatesPassed": 0, "gatesFailed": 1, "expectations": 1,
                        "expectationsFailed": 1, "quarantined": 1},
            "stages": [stage], "gates": [gate]}


def test_every_stored_value_is_escaped_in_the_run_page() -> None:
    page = render_run(_run_report("https://docs.example/page.html"))
    assert "<script" not in page
    assert page.count("&lt;script&gt;") >= 10
    assert '<a href="https://docs.example/page.html">Data Docs</a>' in page


def test_a_javascript_link_is_not_made_live() -> None:
    page = render_run(_run_report("javascript:alert(1)"))
    assert "javascript:" not in page and "Data Docs" not in page


def test_the_dataset_page_escapes_names_and_marks_failed_runs() -> None:
    points = [
        {"runId": f"r{i}", "parentRunId": None, "job": f"ds.{EVIL}.gate", "state": "COMPLETED",
         "time": f"2026-11-2{i}T00:00:00Z", "success": i != 1, "evaluated": 2, "passed": 2 - (i == 1),
         "passRate": 1.0 - 0.5 * (i == 1), "rowCount": 100 + i, "docsPage": None,
         "failedExpectations": [{"name": EVIL, "column": EVIL}] if i == 1 else [], "columnMetrics": {}}
        for i in range(3)
    ]
    report = {"namespace": "file", "name": EVIL,
              "summary": {"runs": 3, "runsFailed": 1, "passRate": 0.6667, "expectationPassRate": 0.8333},
              "series": [{"metric": "nullCount", "column": EVIL, "values": [0, 5, None]}], "points": points}
    page = render_dataset(report)
    assert "<script" not in page and "&lt;script&gt;" in page
    assert page.count("<svg") == 3  # pass rate, rows, the chosen metric
    assert page.count('class="failband"') == 3  # the failed run, once per chart
    # one value of the metric series is missing, the failed run's is not: three red markers
    assert page.count('class="dot fail"') == 3


def test_a_chart_skips_missing_values_and_labels_its_extremes() -> None:
    svg = line_chart("t", [1.0, None, 3.0, 4.0], [False, False, True, False], ["a", "b", "c", "d"])
    assert len(re.findall(r"<circle", svg)) == 3
    assert len(re.findall(r"<polyline", svg)) == 1  # [1] alone makes no line; [3, 4] does
    assert ">4<" in svg and ">1<" in svg
