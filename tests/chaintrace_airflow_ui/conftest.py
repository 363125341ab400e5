"""Airflow reads its home at import time (the plugin module imports Airflow's plugin base class): point
it at a throw-away folder first, and load the plugin module from its file the way Airflow does."""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="chaintrace-airflow-ui-home-"))
os.environ.setdefault("AIRFLOW_HOME", str(_HOME))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_HOME / 'airflow.db'}")

ROOT = Path(__file__).resolve().parents[2]
PLUGINS_FOLDER = ROOT / "plugins"
PLUGIN_FILE = PLUGINS_FOLDER / "chaintrace_airflow_ui.py"


@pytest.fixture(scope="session")
def ui() -> ModuleType:
    """The plugin module, imported from plugins/ by file path (it is not an installed package)."""
    spec = importlib.util.spec_from_file_location("chaintrace_airflow_ui", PLUGIN_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
