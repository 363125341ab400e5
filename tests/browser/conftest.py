"""Browser tests of the web UI: a real ``chaintrace lineage serve`` on a free port (temp SQLite store,
API keys on), fed a small hand-built chain, driven by Playwright in Debian's headless Chromium.

The chain is :mod:`lineage.ui.sample_chain`: DAG ``flights`` with gate results (the collect gate passes,
the store gate fails and quarantines its batch), levels per column (landing and raw are L4, the served
aggregate L1: a reader cleared for L2 sees two withheld placeholders) and a masking column edge.

Screenshots of every test go to ``test-artifacts/screenshots/`` (kept as CI artefacts).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from lineage.store.db import create_store_engine, migrate
from lineage.store.keys import create_key
from lineage.ui.sample_chain import AIRFLOW_RUN_ID, DAG_RUN, LANDING, RAW, SERVED, chain_events

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
AIRFLOW_URL = "http://airflow.example:8080"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class UiServer:
    """The running service, its keys, and the names of the chain it holds (tests get them from here:
    test modules cannot import conftest)."""

    base_url: str
    admin_key: str
    producer_key: str
    reader_l2_key: str
    log_path: Path
    landing: tuple[str, str] = LANDING
    raw: tuple[str, str] = RAW
    served: tuple[str, str] = SERVED
    dag_run: str = DAG_RUN
    airflow_run_id: str = AIRFLOW_RUN_ID
    airflow_url: str = AIRFLOW_URL

    @staticmethod
    def logged_in(page: Page, key: str) -> Page:
        """Put ``key`` where the login form would (this tab's sessionStorage) before the page loads."""
        page.add_init_script(f"sessionStorage.setItem('chaintrace.apiKey', {json.dumps(key)})")
        return page

    def post(self, path: str, body: Any) -> Any:
        request = urllib.request.Request(
            self.base_url + path, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.producer_key}"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.loads(reply.read() or b"null")

    def get(self, path: str, key: str | None = None) -> tuple[int, dict[str, str], bytes]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        request = urllib.request.Request(self.base_url + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, dict(reply.headers), reply.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    """The lineage service with the chain stored, and an admin, a producer and an L2 reader key."""
    root = tmp_path_factory.mktemp("ui-server")
    db_url = f"sqlite:///{root / 'lineage.db'}"
    engine = create_store_engine(db_url)
    try:
        migrate(engine)
        admin = create_key(engine, name="ui-admin", role="admin")[1]
        producer = create_key(engine, name="ui-producer", role="producer")[1]
        reader = create_key(engine, name="ui-reader-l2", role="reader", clearance="L2")[1]
    finally:
        engine.dispose()
    port = free_port()
    log_path = root / "server.log"
    env = {**os.environ, "CHAINTRACE_DATA_ROOT": str(root), "CHAINTRACE_AIRFLOW_URL": AIRFLOW_URL,
           "CHAINTRACE_LOG_LEVEL": "warning"}
    env.pop("CHAINTRACE_DB_URL", None)
    command = [sys.executable, "-m", "chaintrace_cli.main", "lineage", "serve", "--db", db_url,
               "--port", str(port)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = UiServer(f"http://127.0.0.1:{port}", admin, producer, reader, log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the service exited:\n{log_path.read_text()[-4000:]}")
            with contextlib.suppress(OSError):
                if server.get("/healthz")[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service did not start:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.2)
        result = server.post("/api/v1/lineage/batch", chain_events())
        assert all(r["status"] in ("created", "duplicate") for r in result["results"]), result
        yield server
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope, not session: Playwright's sync API keeps an event loop running on the main thread
    # while it is open, and every later test that calls asyncio.run() would fail.
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context (own sessionStorage) per test; its screenshot is kept afterwards."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    try:
        yield tab
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):
            tab.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"))
        context.close()
