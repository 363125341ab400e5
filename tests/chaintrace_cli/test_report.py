"""``chaintrace report DATASET``: the run report as a standalone HTML file, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from chaintrace_cli.report import report
from lineage.api import routes_reports
from lineage.api.app import create_app
from lineage.context import LineageContext
from lineage.reports.synthetic import chain_events, dag_run_id

RUNS = 12  # DAG runs of "demo"; every 10th fails (index 9)

cli = typer.Typer()
cli.command()(report)


@pytest.fixture
def filled(context: LineageContext) -> LineageContext:
    events = chain_events("demo", RUNS) + chain_events("other", 3, fail_every=0)
    results = context.ingest.ingest_sync(events)
    assert all(r.accepted for r in results)
    context.ingest.writer.wait_projected()
    return context


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_the_newest_run_is_written_as_the_page_the_service_serves(
    filled: LineageContext, store_url: str, tmp_path: Path, make_auth_headers: Callable[..., dict[str, str]]
) -> None:
    out = tmp_path / "out" / "demo.html"
    code, output = _invoke("demo", "--db", store_url, "--out", str(out))
    assert code == 0, output
    newest = dag_run_id("demo", RUNS - 1)
    page = out.read_text(encoding="utf-8")
    assert newest in page and "demo.serve.gate" in page and "other." not in page
    app = create_app(filled)
    app.include_router(routes_reports.router)
    with TestClient(app, headers=make_auth_headers(filled)) as client:
        served = client.get(f"/api/v1/reports/runs/{newest}.html")
    assert served.status_code == 200 and served.text == page
    assert f"{out}: 5 gate(s), 0 failed" in output


def test_a_chosen_failed_run_and_the_default_file_name(
    filled: LineageContext, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    failed = dag_run_id("demo", 9)
    code, output = _invoke("demo", "--run", failed, "--db", store_url)
    assert code == 0, output
    written = tmp_path / f"report-demo-{failed}.html"
    page = written.read_text(encoding="utf-8")
    assert "quarantined</span>" in page and "demo.process.gate" in page and "demo.analyze.gate" not in page
    assert "3 gate(s), 1 failed, 1 failed expectation(s), 1 quarantined" in output


def test_unknown_datasets_runs_and_bad_names_are_clear_errors(filled: LineageContext, store_url: str) -> None:
    code, output = _invoke("nope", "--db", store_url)
    assert code == 1 and "no DAG run with tasks named nope.*" in output
    code, output = _invoke("other", "--run", dag_run_id("demo", 1), "--db", store_url)
    assert code == 1 and "with jobs named other.*" in output
    code, output = _invoke("../etc", "--db", store_url)
    assert code == 2 and "is not a dataset name" in output
