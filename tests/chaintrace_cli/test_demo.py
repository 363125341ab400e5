"""The main job (`make demo ARGS=--once`) end to end: lineage service + Airflow under the real
scheduler, one dataset to keep it short (the e2e tests run them all)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_once_runs_a_dataset_dag_and_prints_its_summary(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "chaintrace_cli.main", "demo", "--once", "--port", "0", "--airflow-port", "0",
         "--data-root", str(tmp_path), "--dataset", "covid_testing", "--timeout", "900"],
        capture_output=True, text=True, timeout=1200, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    out = done.stdout
    assert "covid_testing" in out and "success" in out
    assert "5/5" in out  # stages passed
    assert "lineage of covid_testing/covid_positivity_daily" in out
    assert "web UI: http://127.0.0.1:" in out and "/#/graph?nodeId=dataset%3Afile%3A" in out
    # The external sink of the covid spec got its copy of the product.
    assert (tmp_path / "exports" / "pa-health-department" / "covid_positivity_daily.parquet").is_file()
    assert (tmp_path / "service" / "covid_testing" / "covid_positivity_daily.parquet").is_file()
    assert (tmp_path / "lineage" / "lineage.db").is_file()


def test_demo_refuses_an_unknown_dataset(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "chaintrace_cli.main", "demo", "--once", "--data-root", str(tmp_path),
         "--dataset", "no_such_dataset"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert "unknown dataset(s) ['no_such_dataset']" in done.stdout
