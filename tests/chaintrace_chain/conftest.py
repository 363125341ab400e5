"""Fixtures the chain's tests share: the real lineage service under uvicorn, for tests that talk HTTP
to it (the spool's replay, the spooling transport); covid_testing run up to its analyze stage, for the
serve stage's tests (governance, exports)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import pytest
import uvicorn

from chaintrace_chain.spec import load_spec
from chaintrace_chain.stages import run_stage
from chaintrace_chain.zones import Zones
from lineage.api.app import create_app
from lineage.context import LineageContext


@pytest.fixture
def start_lineage_service() -> Iterator[Callable[..., str]]:
    """``start(context, auth="off") -> base URL``: the real app around ``context`` under uvicorn on a free
    port, in a thread (as chaintrace_cli.demo runs it). Every service started is stopped when the test ends.

    API keys are off unless ``auth="keys"``: the tests using this fixture are about delivery (the spool,
    the circuit, replay), not access; keys on these paths are tested by test_transport_auth.py (the
    transport and replay with and without a producer key) and tests/lineage/api/test_auth_matrix.py.
    """
    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(context: LineageContext, *, auth: Literal["keys", "off"] = "off") -> str:
        context.settings.auth = auth
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(context), host="127.0.0.1", port=0, log_level="warning", access_log=False
            )
        )
        thread = threading.Thread(target=server.run, name="lineage-service", daemon=True)
        thread.start()
        running.append((server, thread))
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the lineage service did not start"
            assert thread.is_alive(), "the lineage service thread died"
            time.sleep(0.02)
        return f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def covid_analysed(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Zones:
    """collect .. analyze of covid_testing under the requesting module's ``RUN``, once per module
    (their gates are other tests' business)."""
    spec, run = load_spec("covid_testing"), request.module.RUN
    zones = Zones.at(tmp_path_factory.mktemp("analysed"))
    for stage in ("collect", "store", "process", "analyze"):
        run_stage(spec, stage, zones=zones, run=run)
    return zones


@pytest.fixture
def covid_zones(covid_analysed: Zones, tmp_path: Path) -> Zones:
    """A fresh data root whose reports say collect .. analyze ran (their files stay where they are), so
    each test runs serve and its gate on its own copy."""
    shutil.copytree(Path(covid_analysed.root.path) / "reports", tmp_path / "reports")
    return Zones.at(tmp_path)
