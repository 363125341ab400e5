"""DagBag integrity, one case per DAG file (after astro-cli's tests/dags/test_dag_example.py)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from chaintrace_chain.spec import all_specs
from chaintrace_chain.zones import STAGES

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(DAGS_FOLDER.glob("*.py"))
HEAVY_MODULES = ("pandas", "great_expectations", "pyarrow", "numpy")


def _dagbag(path: Path):  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(path))


def test_there_are_dag_files() -> None:
    assert DAG_FILES, f"no DAG files in {DAGS_FOLDER}"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda path: path.name)
def test_dag_file_imports_without_errors(dag_file: Path) -> None:
    bag = _dagbag(dag_file)
    assert bag.import_errors == {}, bag.import_errors
    assert bag.dags, f"{dag_file.name} defines no DAG"
    for dag_id, dag in bag.dags.items():
        assert dag.tags and "chaintrace" in dag.tags, f"{dag_id} lacks the chaintrace tag"
        assert dag.catchup is False
        assert dag.max_active_runs == 1


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda path: path.name)
def test_dag_file_parses_without_heavy_imports(dag_file: Path) -> None:
    """Parsing a DAG file must not import pandas or GX (they belong inside task code)."""
    code = (
        "import json, runpy, sys; runpy.run_path(sys.argv[1]); "
        f"print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(dag_file)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_one_dag_per_dataset_spec_with_five_gated_stages() -> None:
    bag = _dagbag(DAGS_FOLDER)
    specs = {spec.name: spec for spec in all_specs()}
    assert set(bag.dags) == set(specs)
    for dag_id, dag in bag.dags.items():
        expected = [f"{stage}.{step}" for stage in STAGES for step in ("run", "gate")]
        assert sorted(dag.task_ids) == sorted(expected), dag_id
        for first, second in itertools.pairwise(expected):
            assert second in dag.get_task(first).downstream_task_ids, f"{dag_id}: {first} -> {second} missing"
        for stage in STAGES:
            gate = dag.get_task(f"{stage}.gate")
            # A gate lost with its worker is retried; a refused batch raises AirflowFailException,
            # which Airflow never retries (tests/e2e/test_bad_data_and_outage.py checks the try number).
            assert gate.retries == 1, "a gate must survive a lost worker"
        assert dag.schedule == specs[dag_id].schedule or str(dag.timetable.summary) == specs[dag_id].schedule
