"""Fixtures of the monitoring tests: a monitoring service wired onto the ``context`` (both backends),
OpenLineage event builders, the app with the monitoring routes (TestClient, or uvicorn in a thread),
and a local webhook server.

The service is wired here as the context will wire it (a writer listener, ``context.monitoring``); a
context that wires one already has it replaced by the test's, so that only the test's rules raise alerts.
"""

from __future__ import annotations

import http.server
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lineage.api import routes_monitoring
from lineage.api.app import create_app
from lineage.context import LineageContext
from lineage.monitoring import MonitoringService
from lineage.monitoring.rules import load_rules
from lineage.monitoring.store import alerts
from lineage.store.keys import create_key

PRODUCER = "https://github.com/chaintrace/chaintrace/tests/monitoring"
RUN_EVENT = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"


def facet(schema: str, **fields: Any) -> dict[str, Any]:
    """A standard facet; ``schema`` is ``<version>/<Name>``."""
    name = schema.split("/")[-1]
    return {"_producer": PRODUCER,
            "_schemaURL": f"https://openlineage.io/spec/facets/{schema}.json#/$defs/{name}", **fields}


def ingest(context: LineageContext, *events: dict[str, Any]) -> None:
    results = context.ingest.ingest_sync(list(events))
    assert all(r.accepted for r in results), [r.errors for r in results]
    assert all(not r.facet_warnings for r in results), [r.facet_warnings for r in results]
    assert context.ingest.writer.wait_projected()


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def monitoring_app(context: LineageContext) -> FastAPI:
    app = create_app(context)
    app.include_router(routes_monitoring.router)
    return app


def key_headers(context: LineageContext, role: str = "admin", clearance: str = "L4") -> dict[str, str]:
    _key, token = create_key(context.engine, name=f"monitoring-{role}-{uuid.uuid4().hex[:6]}", role=role,
                             clearance=clearance)
    return {"Authorization": f"Bearer {token}"}


class Kit:
    """What the tests share: builders of OpenLineage events (eventTime: minutes after 2026-03-01T00:00Z),
    ingest, keys, waiting."""

    @staticmethod
    def at(minutes: float) -> str:
        seconds = int(minutes * 60)
        return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(1_772_323_200 + seconds))

    @staticmethod
    def epoch(minutes: float) -> float:
        return 1_772_323_200 + minutes * 60

    ingest = staticmethod(ingest)
    wait_for = staticmethod(wait_for)
    headers = staticmethod(key_headers)

    @staticmethod
    def run_id() -> str:
        return str(uuid.uuid4())

    @staticmethod
    def dataset(namespace: str, name: str, *, schema: dict[str, str] | None = None,
                assertions: list[tuple[str | None, bool]] | None = None,
                tags: dict[str, str] | None = None) -> dict[str, Any]:
        """``schema``: column -> type; ``assertions``: (column, success) as gate input facets;
        ``tags``: column ('' for the dataset) -> classification level."""
        body: dict[str, Any] = {"namespace": namespace, "name": name}
        facets: dict[str, Any] = {}
        if schema is not None:
            facets["schema"] = facet("1-0-0/SchemaDatasetFacet",
                                     fields=[{"name": c, "type": t} for c, t in schema.items()])
        if tags is not None:
            facets["tags"] = facet("1-0-0/TagsDatasetFacet", tags=[
                {"key": "classification", "value": level, "source": "chaintrace",
                 **({"field": c} if c else {})}
                for c, level in tags.items()])
        if facets:
            body["facets"] = facets
        if assertions is not None:
            body["inputFacets"] = {"dataQualityAssertions": facet(
                "1-1-0/DataQualityAssertionsDatasetFacet",
                assertions=[{"assertion": "not_null", "success": ok, **({"column": c} if c else {})}
                            for c, ok in assertions])}
        return body

    @staticmethod
    def run(event_type: str, job: str, minutes: float = 0, *, namespace: str = "etl",
            run_id: str | None = None, inputs: list[dict[str, Any]] | None = None,
            outputs: list[dict[str, Any]] | None = None,
            run_facets: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "eventType": event_type, "eventTime": Kit.at(minutes), "producer": PRODUCER,
            "schemaURL": RUN_EVENT,
            "run": {"runId": run_id or Kit.run_id(), "facets": run_facets or {}},
            "job": {"namespace": namespace, "name": job}, "inputs": inputs or [], "outputs": outputs or [],
        }


@pytest.fixture
def kit() -> type[Kit]:
    return Kit


@dataclass
class Monitored:
    context: LineageContext
    service: MonitoringService

    def stored(self) -> int:
        with self.context.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(alerts)).scalar_one())

    def _new(self, work: Callable[[], object]) -> int:
        # Counted in the store: the service's own worker may raise them first (it is running).
        before = self.stored()
        work()
        return self.stored() - before

    def ingest(self, *events: dict[str, Any]) -> int:
        """Store the events and derive their alerts now; returns how many alerts that added."""
        def work() -> None:
            ingest(self.context, *events)
            self.service.catch_up()

        return self._new(work)

    def catch_up(self) -> int:
        return self._new(self.service.catch_up)

    def check_late(self) -> int:
        return self._new(self.service.check_late)


def wire(context: LineageContext, service: MonitoringService) -> None:
    existing = getattr(context, "monitoring", None)
    if existing is not None:
        existing.close()
        if existing.on_commit in context.ingest.writer.listeners:
            context.ingest.writer.listeners.remove(existing.on_commit)
    context.monitoring = service  # type: ignore[attr-defined]
    context.ingest.writer.listeners.append(service.on_commit)


@pytest.fixture
def monitor(context: LineageContext, tmp_path: Path) -> Iterator[Callable[..., Monitored]]:
    """``monitor(rules, **service_options)``: a started monitoring service with ``rules`` (a dict written
    to a YAML file and loaded from it) wired onto ``context``."""
    made: list[MonitoringService] = []

    def make(rules: dict[str, Any], **options: Any) -> Monitored:
        path = tmp_path / f"rules-{len(made)}.yaml"
        path.write_text(yaml.safe_dump(rules), encoding="utf-8")
        service = MonitoringService(context.engine, rules=load_rules(path), **options)
        made.append(service)
        wire(context, service)
        service.start()
        return Monitored(context, service)

    yield make
    for service in made:
        service.close()


@pytest.fixture
def api(context: LineageContext) -> Iterator[TestClient]:
    """The app with the monitoring routes; sends an admin key."""
    with TestClient(monitoring_app(context), headers=key_headers(context)) as client:
        yield client


@pytest.fixture
def serve() -> Iterator[Callable[[LineageContext], str]]:
    """``serve(context) -> base URL``: the app with the monitoring routes under uvicorn, in a thread."""
    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(context: LineageContext) -> str:
        config = uvicorn.Config(monitoring_app(context), host="127.0.0.1", port=0, log_level="warning",
                                access_log=False)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="lineage-service", daemon=True)
        thread.start()
        running.append((server, thread))
        wait_for(lambda: server.started or not thread.is_alive(), timeout=30)
        assert thread.is_alive(), "the lineage service thread died"
        return f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=30)


# -- a webhook ---------------------------------------------------------------------------------------

@dataclass
class Hook:
    """A local HTTP server that answers each POST with the next status of ``statuses`` (then 200)."""

    statuses: list[int]
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/s3cr3t-t0ken"


@pytest.fixture
def webhook() -> Iterator[Callable[..., Hook]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def make(*statuses: int) -> Hook:
        hook = Hook(list(statuses))
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:
                    hook.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, name="webhook", daemon=True).start()
        servers.append(server)
        hook.server = server
        return hook

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()
