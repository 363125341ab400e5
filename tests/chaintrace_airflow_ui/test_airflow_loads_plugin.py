"""Airflow's own plugins manager and DagBag with plugins/ as the plugins folder, each in a fresh
interpreter (plugin loading is cached per process and reads the configuration once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from chaintrace_chain.spec import all_specs

ROOT = Path(__file__).resolve().parents[2]
PLUGINS_FOLDER = ROOT / "plugins"
PLUGIN_FILE = PLUGINS_FOLDER / "chaintrace_airflow_ui.py"
HEAVY_MODULES = ("pandas", "numpy", "pyarrow", "great_expectations")


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CHAINTRACE_", "OPENLINEAGE"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_FOLDER),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "PYTHONWARNINGS": "ignore",
        }
    )
    env.update(extra)
    return env


def run_python(code: str, env: dict[str, str]) -> Any:
    """Run ``code`` in a fresh interpreter; its last stdout line is JSON."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


PLUGIN_INFO = """
import json, sys
from airflow import plugins_manager
from airflow.api_fastapi.core_api.datamodels.plugins import PluginResponse
info = plugins_manager.get_plugin_info()
print(json.dumps({
    "errors": plugins_manager.get_import_errors(),
    "sources": {i["name"]: str(i["source"]) for i in info},
    # What GET /api/v2/plugins serves (it drops plugins its serializer refuses).
    "served": {i["name"]: PluginResponse.model_validate(i).model_dump(mode="json")["external_views"]
               for i in info},
    "scanned_chain_modules": sorted(m for m in sys.modules if m in ("dag_factory", "operators", "gates")),
}))
"""


def test_import_is_light_and_reads_nothing_from_the_environment(tmp_path: Path) -> None:
    # A bad URL in the environment: importing must still work (the URL is read when Airflow instantiates
    # the plugin), and the module adds nothing heavy beyond Airflow's plugin base class.
    code = f"""
import importlib.util, json, sys
import airflow.plugins_manager
before = set(sys.modules)
spec = importlib.util.spec_from_file_location("chaintrace_airflow_ui", {str(PLUGIN_FILE)!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
added = sorted(set(sys.modules) - before)
try:
    module.ChaintraceLineageUiPlugin()
    error = None
except ValueError as exc:
    error = str(exc)
print(json.dumps({{"added": added, "heavy": [m for m in {HEAVY_MODULES!r} if m in sys.modules],
                   "error": error}}))
"""
    result = run_python(code, airflow_env(tmp_path, CHAINTRACE_LINEAGE_UI_URL="lineage-host:5000"))
    assert result["heavy"] == []
    assert result["added"] == [], result["added"]  # the chain's modules load when the links are built
    assert result["error"] is not None and "CHAINTRACE_LINEAGE_UI_URL" in result["error"]


def test_airflow_discovers_the_plugin_and_serves_its_views(tmp_path: Path) -> None:
    env = airflow_env(
        tmp_path,
        CHAINTRACE_LINEAGE_UI_URL="http://lineage.example.test:5123/",
        AIRFLOW__OPENLINEAGE__NAMESPACE="chaintrace",
    )
    result = run_python(PLUGIN_INFO, env)
    assert result["errors"] == {}
    directory_plugins = {n: s for n, s in result["sources"].items() if s.startswith("$PLUGINS_FOLDER/")}
    # Only our module: .airflowignore keeps the scan out of chaintrace_chain.
    assert directory_plugins == {"chaintrace_lineage_ui": "$PLUGINS_FOLDER/chaintrace_airflow_ui.py"}
    assert result["scanned_chain_modules"] == []

    views = {view["destination"]: view for view in result["served"]["chaintrace_lineage_ui"]}
    assert set(views) == {"dag", "nav"}
    tab = views["dag"]
    assert (tab["name"], tab["url_route"]) == ("Lineage", "chaintrace-lineage")
    assert tab["href"] == (
        "http://lineage.example.test:5123/#/graph?nodeId=job:chaintrace:{DAG_ID}.collect.run&depth=20"
        "&direction=both"
    )
    nav = views["nav"]
    assert (nav["name"], nav["href"], nav["url_route"], nav["category"]) == (
        "Lineage service", "http://lineage.example.test:5123/", None, "browse"
    )

    for dag_id in (spec.name for spec in all_specs()):
        rendered = tab["href"].replace("{DAG_ID}", quote(dag_id, safe="-_.!~*'()"))
        query = parse_qs(urlsplit(rendered).fragment.partition("?")[2])
        assert query["nodeId"] == [f"job:chaintrace:{dag_id}.collect.run"]


def test_the_job_namespace_follows_the_openlineage_setting(tmp_path: Path) -> None:
    env = airflow_env(tmp_path, AIRFLOW__OPENLINEAGE__NAMESPACE="chaintrace-staging")
    result = run_python(PLUGIN_INFO, env)
    views = {view["destination"]: view for view in result["served"]["chaintrace_lineage_ui"]}
    assert views["dag"]["href"].startswith(
        "http://127.0.0.1:5000/#/graph?nodeId=job:chaintrace-staging:{DAG_ID}."
    )


def test_a_bad_url_is_a_plugin_import_error_naming_the_variable(tmp_path: Path) -> None:
    result = run_python(PLUGIN_INFO, airflow_env(tmp_path, CHAINTRACE_LINEAGE_UI_URL="ftp://lineage"))
    assert "chaintrace_lineage_ui" not in result["sources"]
    assert list(result["errors"]) == [str(PLUGIN_FILE)]
    assert "CHAINTRACE_LINEAGE_UI_URL" in result["errors"][str(PLUGIN_FILE)]


def test_dagbag_is_intact_with_the_plugin_loaded(tmp_path: Path) -> None:
    code = """
import json
from airflow import plugins_manager
from airflow.dag_processing.dagbag import DagBag
plugins_manager.ensure_plugins_loaded()
bag = DagBag(dag_folder="dags")
print(json.dumps({"plugin_errors": plugins_manager.get_import_errors(),
                  "plugins": [p.name for p in plugins_manager._get_plugins()[0]],
                  "dag_errors": bag.import_errors, "dags": sorted(bag.dags)}))
"""
    result = run_python(code, airflow_env(tmp_path, AIRFLOW__OPENLINEAGE__NAMESPACE="chaintrace"))
    assert result["plugin_errors"] == {}
    assert "chaintrace_lineage_ui" in result["plugins"]
    assert result["dag_errors"] == {}
    assert result["dags"] == sorted(spec.name for spec in all_specs())
