"""J. Alerts to webhooks: from an event's POST to its alert's arrival at a webhook, under a steady load.

Set-up, per backend (SQLite; PostgreSQL too in a full run when it is up): a real ``chaintrace lineage serve``
(uvicorn, API keys on) on a fresh store, with an alert rules file whose gate_failed, run_failed and
schema_changed rules deliver to a webhook: an HTTP server in this process that records when each alert
arrives. A background thread posts ordinary Airflow-style events (lineage.synthetic) at about 200 events/s
(batches of 20 every 100 ms) the whole time.

Measured: events that raise an alert (a run FAIL, a gate whose assertions failed, a new dataset version
that drops a column; in turn), posted one at a time to POST /api/v1/lineage; for each, the time from the
POST's 201 to the alert's arrival at the webhook; p50/p95/max over >= 50 alerts. Target (issue 5): an
alert reaches a webhook within 1 s of the event that raised it (p95 <= 1,000 ms).

BASELINES, same process, same server, same load: (1) ingest lag: from a POST's 201 until the run is
readable at GET /api/v1/jobs/runs/{id} (the service's own projection delay, which any alert has to wait
for too); (2) the webhook round trip alone: a POST from this process straight to the webhook. Printed:
the alert p95 over each.

Also (J3, the monitoring worker's cost): HTTP ingest throughput, 8 clients, single events (as bench ingest
A1), with the shipped rules versus a rules file without rules, alternated, each side twice in a full run.
``python -m bench.alerts overhead`` runs that part alone.
"""

from __future__ import annotations

import http.client
import http.server
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import yaml

from bench.common import (
    Server,
    Target,
    finish_section,
    log,
    percentile,
    pg_available,
    run_info,
    run_load,
    store,
    summary,
    write_bodies,
)

SIZES = {"full": {"alerts": 120, "lag": 80, "round_trips": 100, "overhead_repeats": 2,
                  "overhead_events": 12_000, "overhead_s": 8.0},
         "quick": {"alerts": 60, "lag": 50, "round_trips": 60, "overhead_repeats": 1,
                   "overhead_events": 5_000, "overhead_s": 4.0}}
TARGET_MS = 1_000.0
LOAD_BATCH, LOAD_EVERY_S = 20, 0.1  # 200 events/s
PACE_S = 0.12  # between two alert-raising events: each is timed on its own
NS = "benchalerts"
PRODUCER = "https://github.com/chaintrace/chaintrace/bench/alerts"
RULES_ENV = "CHAINTRACE_MONITORING_RULES_FILE"


# ------------------------------------------------------------------------------------------ the webhook
class Receiver:
    """A local webhook: records the arrival time (perf_counter) of each alert by its run id."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.kinds: dict[str, str] = {}
        self.pings: dict[str, float] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                at = time.perf_counter()
                message = orjson.loads(body)
                with receiver.lock:
                    if "ping" in message:
                        receiver.pings[message["ping"]] = at
                    else:
                        alert = message["alert"]
                        receiver.arrivals.setdefault(str(alert["runId"]), at)
                        receiver.kinds.setdefault(str(alert["runId"]), alert["kind"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/bench"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def rules_file(folder: Path, url: str | None) -> Path:
    """Rules that deliver the bench namespace's alerts to ``url`` (None: a file without rules)."""
    rules: dict[str, Any] = {"version": 1, "rules": [],
                             "webhook": {"timeout_s": 5, "max_attempts": 3, "backoff_s": 0.5}}
    if url is not None:
        rules["rules"] = [{"name": kind, "kind": kind, "match": {"namespace": NS}, "webhooks": [url]}
                          for kind in ("gate_failed", "run_failed", "schema_changed")]
    path = folder / ("rules.yaml" if url else "no-rules.yaml")
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ events
def _facet(schema: str, **fields: Any) -> dict[str, Any]:
    name = schema.split("/")[-1]
    return {"_producer": PRODUCER,
            "_schemaURL": f"https://openlineage.io/spec/facets/{schema}.json#/$defs/{name}", **fields}


def run_event(event_type: str, job: str, run_id: str, **extra: Any) -> dict[str, Any]:
    return {"eventType": event_type, "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
            "producer": PRODUCER,
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
            "run": {"runId": run_id, "facets": {}}, "job": {"namespace": NS, "name": job},
            "inputs": extra.get("inputs", []), "outputs": extra.get("outputs", [])}


def with_schema(name: str, columns: dict[str, str]) -> dict[str, Any]:
    return {"namespace": "file", "name": name, "facets": {"schema": _facet(
        "1-1-1/SchemaDatasetFacet", fields=[{"name": c, "type": t} for c, t in columns.items()])}}


def alerting_event(i: int) -> tuple[str, dict[str, Any]]:
    """(kind, event): a FAIL, a failed gate, a dropped column, in turn (the schema's first version is
    posted beforehand by :func:`schema_prelude`)."""
    run_id = str(uuid.uuid4())
    kind = ("run_failed", "gate_failed", "schema_changed")[i % 3]
    if kind == "run_failed":
        return kind, run_event("FAIL", f"bench.load_{i}", run_id)
    if kind == "gate_failed":
        checked = {"namespace": "file", "name": f"/bench/landing/t{i}", "inputFacets": {
            "dataQualityAssertions": _facet("1-0-1/DataQualityAssertionsDatasetFacet", assertions=[
                {"assertion": "not_null", "success": False, "column": "id"},
                {"assertion": "row_count", "success": True}])}}
        return kind, run_event("COMPLETE", f"bench.check_{i}.gate", run_id, inputs=[checked])
    return kind, run_event("COMPLETE", f"bench.write_{i}", run_id,
                           outputs=[with_schema(f"/bench/tables/t{i}", {"id": "INT"})])


def schema_prelude(count: int) -> list[dict[str, Any]]:
    return [run_event("COMPLETE", f"bench.write_{i}", str(uuid.uuid4()),
                      outputs=[with_schema(f"/bench/tables/t{i}", {"id": "INT", "name": "TEXT"})])
            for i in range(count) if i % 3 == 2]


# ------------------------------------------------------------------------------------------ HTTP
class Client:
    """One keep-alive connection to the service."""

    def __init__(self, port: int, key: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, float]:
        self.connection.request(method, path, body=body, headers=self.headers)
        response = self.connection.getresponse()
        response.read()
        return response.status, time.perf_counter()

    def close(self) -> None:
        self.connection.close()


class Load(threading.Thread):
    """Ordinary events at LOAD_BATCH / LOAD_EVERY_S events/s until stopped."""

    def __init__(self, port: int, key: str, events: list[dict[str, Any]]) -> None:
        super().__init__(name="bench-load", daemon=True)
        self.client = Client(port, key)
        self.bodies = [orjson.dumps(events[i:i + LOAD_BATCH]) for i in range(0, len(events), LOAD_BATCH)]
        self.stop = threading.Event()
        self.sent = 0
        self.errors = 0
        self.started_at = self.ended_at = 0.0

    def run(self) -> None:
        self.started_at = next_at = time.perf_counter()
        for body in self.bodies:
            if self.stop.is_set():
                break
            status, _ = self.client.request("POST", "/api/v1/lineage/batch", body)
            self.sent += LOAD_BATCH if status == 200 else 0
            self.errors += status != 200
            next_at += LOAD_EVERY_S
            self.stop.wait(max(0.0, next_at - time.perf_counter()))
        self.ended_at = time.perf_counter()
        self.client.close()

    @property
    def rate(self) -> float:
        return self.sent / max(self.ended_at - self.started_at, 1e-9)


def _wait(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


def measure(backend: str, size: dict[str, Any], load_events: list[dict[str, Any]]) -> dict[str, Any]:
    receiver = Receiver()
    with tempfile.TemporaryDirectory(prefix="chaintrace-bench-alerts-") as folder, \
            store(backend, "alerts") as url:
        os.environ[RULES_ENV] = str(rules_file(Path(folder), receiver.url))
        server = Server(url)
        try:
            server.start()
            writer = Client(server.port, server.producer_key)
            reader = Client(server.port, server.reader_key)
            for event in schema_prelude(size["alerts"]):  # the versions the changes are compared with
                assert writer.request("POST", "/api/v1/lineage", orjson.dumps(event))[0] == 201
            load = Load(server.port, server.producer_key, load_events)
            load.start()
            time.sleep(1.0)  # the load is flowing
            posted: dict[str, tuple[str, float]] = {}
            for i in range(size["alerts"]):
                kind, event = alerting_event(i)
                status, accepted = writer.request("POST", "/api/v1/lineage", orjson.dumps(event))
                assert status == 201, status
                posted[event["run"]["runId"]] = (kind, accepted)
                time.sleep(PACE_S)
            _wait(lambda: set(posted) <= set(receiver.arrivals), 15.0)
            latencies = {run: (receiver.arrivals[run] - at) * 1000 for run, (_, at) in posted.items()
                         if run in receiver.arrivals}
            by_kind = {kind: summary([ms for r, ms in latencies.items() if posted[r][0] == kind])
                       for kind in ("run_failed", "gate_failed", "schema_changed")}
            # Baseline 1: the event itself readable through the API.
            lags = []
            for i in range(size["lag"]):
                run_id = str(uuid.uuid4())
                plain = run_event("COMPLETE", f"bench.plain_{i}", run_id)
                status, accepted = writer.request("POST", "/api/v1/lineage", orjson.dumps(plain))
                assert status == 201
                while reader.request("GET", f"/api/v1/jobs/runs/{run_id}")[0] != 200:
                    time.sleep(0.002)
                lags.append((time.perf_counter() - accepted) * 1000)
                time.sleep(PACE_S / 2)
            # Baseline 2: the webhook round trip alone.
            hook = http.client.HTTPConnection("127.0.0.1", receiver.server.server_address[1], timeout=30)
            trips = []
            for i in range(size["round_trips"]):
                ping = f"p{i}"
                started = time.perf_counter()
                hook.request("POST", "/hooks/bench", body=orjson.dumps({"ping": ping}),
                             headers={"Content-Type": "application/json"})
                hook.getresponse().read()
                trips.append((receiver.pings[ping] - started) * 1000)
            hook.close()
            load.stop.set()
            load.join(timeout=30)
            writer.close()
            reader.close()
        finally:
            server.stop()
            os.environ.pop(RULES_ENV, None)
            receiver.close()
    values = list(latencies.values())
    return {"alerts_posted": len(posted), "alerts_arrived": len(values), "alert_ms": summary(values),
            "alert_p95_ms": percentile(values, 95) if values else None, "by_kind_ms": by_kind,
            "ingest_lag_ms": summary(lags), "ingest_lag_p95_ms": percentile(lags, 95),
            "webhook_round_trip_ms": summary(trips), "webhook_round_trip_p95_ms": percentile(trips, 95),
            "load_events_per_s": round(load.rate, 1), "load_errors": load.errors}


# ------------------------------------------------------------------------------------------ J3 overhead
def overhead(size: dict[str, Any]) -> dict[str, Any]:
    """Ingest throughput (8 clients, single events, SQLite) with the shipped rules and with none."""
    from lineage.monitoring.rules import default_rules_file
    from lineage.synthetic import airflow_style_events

    warm, count = 200, size["overhead_events"]
    runs: dict[str, list[dict[str, Any]]] = {"shipped rules": [], "no rules": []}
    with tempfile.TemporaryDirectory(prefix="chaintrace-bench-alerts-") as folder:
        bodies = Path(folder) / "single.ndjson"
        write_bodies(bodies, [orjson.dumps(e) for e in airflow_style_events(warm + count, seed=7)])
        files = {"shipped rules": default_rules_file(), "no rules": rules_file(Path(folder), None)}
        for repeat in range(size["overhead_repeats"]):
            order = ("shipped rules", "no rules")
            for label in order if repeat % 2 == 0 else order[::-1]:
                os.environ[RULES_ENV] = str(files[label])
                try:
                    with store("sqlite", "alerts-overhead") as url, Server(url) as server:
                        run_load(server.port, "/api/v1/lineage", bodies, clients=8, start=0, count=warm,
                                 events_per_body=1, expect=(201,), server=server)
                        result = run_load(server.port, "/api/v1/lineage", bodies, clients=8, start=warm,
                                          count=count, events_per_body=1, expect=(201,), server=server,
                                          max_seconds=size["overhead_s"])
                finally:
                    os.environ.pop(RULES_ENV, None)
                brief = result.brief()
                runs[label].append({"events_per_s": brief["events_per_s"],
                                    "p99_ms": brief["latency_ms"].get("p99"),
                                    "server_cpu_share": brief["server_cpu_share"]})
                log(f"  overhead {label} #{repeat + 1}: {brief['events_per_s']:,.0f} ev/s, "
                    f"server CPU {brief['server_cpu_share']} cores")
    best = {label: max(r["events_per_s"] for r in items) for label, items in runs.items()}
    return {"runs": runs, "best_events_per_s": best,
            "ratio": round(best["shipped rules"] / best["no rules"], 3) if best["no rules"] else None}


# ------------------------------------------------------------------------------------------ the section
def run(quick: bool = False) -> dict[str, Any]:
    info = run_info()
    from lineage.synthetic import airflow_style_events

    size = SIZES["quick" if quick else "full"]
    backends = ["sqlite"] + (["postgres"] if pg_available() and not quick else [])
    seconds = 2.0 + size["alerts"] * PACE_S * 1.5 + size["lag"] * PACE_S + 15
    load_events = airflow_style_events(int(seconds * LOAD_BATCH / LOAD_EVERY_S), seed=11,
                                       namespace="benchload")
    figures: dict[str, Any] = {"sizes": size, "load_rate_target": LOAD_BATCH / LOAD_EVERY_S}
    targets: list[Target] = []
    for backend in backends:
        log(f"alerts: {size['alerts']} alert-raising events under ~200 ev/s of load ({backend})")
        m = measure(backend, size, load_events)
        figures[backend] = m
        a, lag, trip = m["alert_ms"], m["ingest_lag_ms"], m["webhook_round_trip_ms"]
        log(f"  {backend}: alert {a}, ingest lag {lag}, webhook round trip {trip}, "
            f"load {m['load_events_per_s']} ev/s")
        p95 = m["alert_p95_ms"]
        targets += [
            Target(f"J1.{backend}", f"J alert -> webhook p95, under ~200 ev/s ({backend})",
                   round(p95, 1) if p95 is not None else None, TARGET_MS, "ms", higher_is_better=False,
                   note=f"p50 {a.get('p50')} ms, max {a.get('max')} ms, "
                        f"{m['alerts_arrived']}/{m['alerts_posted']} alerts, "
                        f"load {m['load_events_per_s']:.0f} ev/s"),
            Target(f"J2.{backend}", f"J alert p95 / ingest lag p95 (POST 201 -> run readable) ({backend})",
                   round(p95 / m["ingest_lag_p95_ms"], 1) if p95 else None, None, "x",
                   note=f"ingest lag p50 {lag.get('p50')} p95 {lag.get('p95')} ms; webhook round trip "
                        f"alone p95 {trip.get('p95')} ms"),
        ]
    log("alerts: monitoring cost on ingest (8 clients, SQLite): shipped rules vs none")
    cost = overhead(size)
    figures["overhead"] = cost
    best = cost["best_events_per_s"]
    targets.append(Target("J3.sqlite", "J ingest with the shipped alert rules / without (8 clients, SQLite)",
                          cost["ratio"], None, "x",
                          note=f"{best['shipped rules']:,.0f} vs {best['no rules']:,.0f} ev/s (best of "
                               f"{size['overhead_repeats']})"))
    return finish_section("alerts", "J. alerts", figures, targets, quick=quick, info=info)


if __name__ == "__main__":
    if sys.argv[1:2] == ["overhead"]:
        print(orjson.dumps(overhead(SIZES["quick" if "--quick" in sys.argv else "full"]),
                           option=orjson.OPT_INDENT_2).decode())
    else:
        run(quick="--quick" in sys.argv)
