"""F. Lineage overhead per task: what one chain task pays for its OpenLineage events.

Input: real reports. ``covid_testing`` goes through the whole chain in this process (``run_stage`` and
``gate_stage`` for the five stages, in a temporary data root), which leaves 10 reports on disk.

Per simulated task (cycling over the 10 stage/gate reports), timed as one unit, as the chain's
operators do it: read the stage report from disk and build the ``OperatorLineage``
(``stage_lineage`` / ``gate_lineage``, which reads the gate report itself), build a START and a COMPLETE
``RunEvent`` (the COMPLETE one with the lineage's datasets and facets), and emit both through
``SpoolingHttpTransport`` (serialising is part of ``emit``). Cases:

- service up, spool-first (the goal's "service up" figure; the chain's configuration): the real lineage
  service (``chaintrace lineage serve``, SQLite) as a subprocess, watching the spool folder
  (``CHAINTRACE_SPOOL_DIR``, polled every 100 ms); the transport with ``delivery: spool`` writes each
  event there and returns. ``fsync`` off (as ``AirflowStack.transport``), and on as a reference row;
- service up, HTTP direct (reference): ``delivery: http``, two synchronous POSTs per task;
- service down, closed port: nothing listens; the first event trips the circuit, the rest are spooled;
- service down, hanging: a socket that listens but never accepts or reads, so the first event waits
  for the transport's read timeout before the circuit opens.

BASELINE, measured in this run: openlineage-python's stock ``HttpTransport`` (the provider's default),
default settings (5 s timeout, 5 retries, backoff 0.3), same tasks, against the same service up, and
against the closed port (a couple of tasks only: each event retries for about 9 s, then fails).

Checks (not timed): after each "down" case the spool holds exactly the events emitted (by run id and
event type); after ``Spool.replay`` to the service, the service stores each of them exactly once;
the "up" cases' events are stored exactly once too (spool-first: once the service's watcher emptied
the spool, within a bounded wait).

Delivery latency (reference, spool-first): tasks emitted one at a time with the service otherwise idle;
for each, the time from the COMPLETE event's emit returning to the run showing COMPLETED in the read API
(``GET /api/v1/jobs/runs/{id}``, polled every 2 ms).
Targets: p99 per task <= 5 ms with the service up, <= 50 ms with it down.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.common import (
    Target,
    finish_section,
    log,
    run_info,
    summary,
)

DATASET = "covid_testing"
RUN = "bench_lineage"
TASKS = {"full": 300, "quick": 60}
LATENCY_TASKS = {"full": 100, "quick": 30}
DELIVERY_WAIT_S = 120.0  # bound on the watcher taking every spool-first event
STOCK_DOWN_TASKS = {"full": 2, "quick": 1}
PRODUCER = "https://github.com/chaintrace/chaintrace/bench"


# ------------------------------------------------------------------------------------------ machine noise
def _cpu_ticks() -> tuple[int, int]:
    """(total, steal) jiffies of all CPUs since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(fields), fields[7] if len(fields) > 7 else 0


@dataclass
class Noise:
    """Load average and CPU steal over a stretch of the bench (the VM is shared)."""

    load_before: float = 0.0
    ticks: tuple[int, int] = (0, 0)

    def start(self) -> Noise:
        self.load_before = os.getloadavg()[0]
        self.ticks = _cpu_ticks()
        return self

    def report(self) -> dict[str, float]:
        total, steal = _cpu_ticks()
        spent = max(total - self.ticks[0], 1)
        return {"load_1m_before": round(self.load_before, 2), "load_1m_after": round(os.getloadavg()[0], 2),
                "steal_pct": round(100 * (steal - self.ticks[1]) / spent, 1)}


# -------------------------------------------------------------------------------------------- the tasks
@dataclass(frozen=True)
class TaskKind:
    """One of the 10 chain tasks: its job name and how its operator builds the lineage."""

    job: str
    build: Callable[[], Any]  # -> OperatorLineage


def build_chain(root: Path) -> list[TaskKind]:
    """Run covid_testing's five stages and gates here; the 10 tasks whose lineage the bench builds."""
    from chaintrace_chain.lineage_build import gate_lineage, stage_lineage
    from chaintrace_chain.quality import gate_stage
    from chaintrace_chain.spec import load_spec
    from chaintrace_chain.stages import load_report, run_stage
    from chaintrace_chain.zones import STAGES, Zones

    spec = load_spec(DATASET)
    zones = Zones.at(root)
    kinds: list[TaskKind] = []
    for stage in STAGES:
        run_stage(spec, stage, zones=zones, run=RUN)
        gate = gate_stage(spec, stage, zones=zones, run=RUN)
        if not gate.success:
            raise RuntimeError(f"{DATASET}/{stage}: the gate failed on the shipped data: {gate.summary()}")

        def stage_task(stage: str = stage) -> Any:  # as StageOperator: report from disk, then lineage
            return stage_lineage(spec, load_report(zones, DATASET, RUN, stage), zones)

        def gate_task(stage: str = stage) -> Any:
            return gate_lineage(spec, stage, RUN, zones)

        kinds += [TaskKind(f"{DATASET}.{stage}.run", stage_task),
                  TaskKind(f"{DATASET}.{stage}.gate", gate_task)]
    return kinds


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def task_events(kind: TaskKind) -> tuple[Any, Any]:
    """START (no datasets, as our operators answer on start) and COMPLETE (the full lineage)."""
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState

    lineage = kind.build()
    run_id = str(uuid.uuid4())
    start = RunEvent(eventType=RunState.START, eventTime=_now(), run=Run(runId=run_id),
                     job=Job(namespace="chaintrace", name=kind.job), inputs=[], outputs=[], producer=PRODUCER)
    complete = RunEvent(
        eventType=RunState.COMPLETE, eventTime=_now(),
        run=Run(runId=run_id, facets=lineage.run_facets),
        job=Job(namespace="chaintrace", name=kind.job, facets=lineage.job_facets),
        inputs=lineage.inputs, outputs=lineage.outputs, producer=PRODUCER,
    )
    return start, complete


@dataclass
class CaseResult:
    label: str
    per_task_ms: list[float]
    build_ms: list[float]  # report from disk + OperatorLineage + the two RunEvents
    sent: list[tuple[str, str]]  # (runId, eventType) of every event emitted
    outcomes: Counter[str]
    failures: int = 0  # emits that raised (the stock transport raises when it gives up)
    complete_bytes_max: int = 0

    def figures(self) -> dict[str, Any]:
        emit_ms = [total - build for total, build in zip(self.per_task_ms, self.build_ms, strict=True)]
        return {"per_task_ms": summary(self.per_task_ms), "build_ms": summary(self.build_ms),
                "emit_both_ms": summary(emit_ms), "events": len(self.sent),
                "outcomes": dict(self.outcomes), "emit_errors": self.failures}


def run_tasks(label: str, kinds: list[TaskKind], transport: Any, tasks: int) -> CaseResult:
    """``tasks`` tasks cycling over ``kinds``; each timed from building the lineage to both emits."""
    from openlineage.client.serde import Serde

    result = CaseResult(label, [], [], [], Counter())
    gc.collect()
    for i in range(tasks):
        kind = kinds[i % len(kinds)]
        t0 = time.perf_counter()
        start, complete = task_events(kind)
        built = time.perf_counter()
        for event in (start, complete):
            try:
                outcome = transport.emit(event)
                result.outcomes[str(getattr(outcome, "value", "sent"))] += 1
            except Exception:
                result.failures += 1
        result.per_task_ms.append((time.perf_counter() - t0) * 1000)
        result.build_ms.append((built - t0) * 1000)
        result.sent += [(start.run.runId, "START"), (complete.run.runId, "COMPLETE")]
        if i < len(kinds):
            result.complete_bytes_max = max(result.complete_bytes_max, len(Serde.to_json(complete)))
    s, parts = summary(result.per_task_ms), result.figures()
    log(f"  {label}: {tasks} tasks, per task p50 {s['p50']:.2f} ms, p99 {s['p99']:.2f} ms, "
        f"max {s['max']:.2f} ms (building p50/p99 {parts['build_ms']['p50']}/{parts['build_ms']['p99']} ms, "
        f"emitting both {parts['emit_both_ms']['p50']}/{parts['emit_both_ms']['p99']} ms); "
        f"outcomes {dict(result.outcomes)}, emit errors {result.failures}")
    return result


# ------------------------------------------------------------------------------------------- transports
def spooling(url: str, spool_dir: Path, **extra: Any) -> Any:
    from chaintrace_chain.transport import SpoolingHttpConfig, SpoolingHttpTransport

    params = {"url": url, "spool_dir": str(spool_dir), **extra}
    return SpoolingHttpTransport(SpoolingHttpConfig.from_dict(params))


def spool_first(url: str, spool_dir: Path, *, fsync: bool, api_key: str | None = None) -> Any:
    return spooling(url, spool_dir, delivery="spool", fsync=fsync, api_key=api_key)


def stock_http(url: str, api_key: str | None = None) -> Any:
    from openlineage.client.transport.http import HttpConfig, HttpTransport

    params: dict[str, Any] = {"url": url, "endpoint": "api/v1/lineage"}
    if api_key:
        params["auth"] = {"type": "api_key", "apiKey": api_key}
    return HttpTransport(HttpConfig.from_dict(params))


def closed_port() -> int:
    """A port nothing listens on (bound and released; connecting is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def hanging_service() -> Iterator[int]:
    """A socket that listens (so connections complete in the kernel) but never accepts nor reads."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


# ------------------------------------------------------------------------------------------------ checks
def _event_key(body: bytes) -> tuple[str, str]:
    event = orjson.loads(body)
    return event["run"]["runId"], event["eventType"]


def check_spool(spool_dir: Path, case: CaseResult) -> int:
    """The spool holds exactly the events the case emitted, each once."""
    from chaintrace_chain.spool import Spool

    spool = Spool(spool_dir)
    held = Counter(_event_key(body) for path in spool.events() if (body := spool.read(path)) is not None)
    expected = Counter(case.sent)
    if held != expected:
        missing, extra = expected - held, held - expected
        raise AssertionError(f"{case.label}: the spool does not hold exactly the emitted events: "
                             f"{sum(missing.values())} missing, {sum(extra.values())} extra/duplicated")
    if spool.rejected():
        raise AssertionError(f"{case.label}: {len(spool.rejected())} event(s) were rejected")
    return len(case.sent)


def stored_events(url: str, headers: dict[str, str]) -> Counter[tuple[str, str]]:
    """(runId, eventType) of every event the service stores, counted (``headers``: a reading key)."""
    counts: Counter[tuple[str, str]] = Counter()
    offset, page_size = 0, 10_000
    with httpx.Client(base_url=url, timeout=120, headers=headers) as client:
        while True:
            page = client.get("/api/v1/events/lineage", params={"limit": page_size, "offset": offset})
            page.raise_for_status()
            events = page.json()["events"]
            counts.update((e["run"]["runId"], e["eventType"]) for e in events)
            if len(events) < page_size:
                return counts
            offset += page_size


def check_stored_once(stored: Counter[tuple[str, str]], case: CaseResult) -> None:
    wrong = {key: stored[key] for key in case.sent if stored[key] != 1}
    if wrong:
        sample = list(wrong.items())[:3]
        raise AssertionError(f"{case.label}: {len(wrong)} of {len(case.sent)} events are not stored exactly "
                             f"once (e.g. {sample})")


def wait_spool_taken(spool_dir: Path, timeout_s: float = DELIVERY_WAIT_S) -> float:
    """Seconds until the service's watcher took every file of ``spool_dir``; AssertionError past the bound."""
    from chaintrace_chain.spool import Spool

    started = time.monotonic()
    while (left := len(Spool(spool_dir).events())) > 0:
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"spool-first: {left} event file(s) still in {spool_dir} "
                                 f"after {timeout_s:.0f} s")
        time.sleep(0.05)
    return time.monotonic() - started


def delivery_latency(kinds: list[TaskKind], transport: Any, url: str, tasks: int,
                     headers: dict[str, str]) -> list[float]:
    """Per task, ms from the COMPLETE emit returning to the run reading COMPLETED from the service."""
    latencies: list[float] = []
    with httpx.Client(base_url=url, timeout=30, headers=headers) as client:
        for i in range(tasks):
            start, complete = task_events(kinds[i % len(kinds)])
            transport.emit(start)
            transport.emit(complete)
            emitted = time.perf_counter()
            deadline = emitted + 60
            while True:
                answer = client.get(f"/api/v1/jobs/runs/{complete.run.runId}")
                if answer.status_code == 200 and answer.json().get("state") == "COMPLETED":
                    break
                if time.perf_counter() > deadline:
                    raise AssertionError(f"spool-first: run {complete.run.runId} not COMPLETED after 60 s "
                                         f"(last answer {answer.status_code})")
                time.sleep(0.002)
            latencies.append((time.perf_counter() - emitted) * 1000)
    s = summary(latencies)
    log(f"  spool-first delivery latency (emit -> queryable), {tasks} tasks: p50 {s['p50']:.1f} ms, "
        f"p99 {s['p99']:.1f} ms, max {s['max']:.1f} ms")
    return latencies


# --------------------------------------------------------------------------------------------------- run
def run(quick: bool = False) -> dict[str, Any]:
    from chaintrace_chain.spool import Spool
    from chaintrace_cli.chain_session import LineageService, free_port

    info = run_info()
    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # one info line per GX call
    tasks = TASKS["quick" if quick else "full"]
    noise = Noise().start()
    figures: dict[str, Any] = {"tasks": tasks, "dataset": DATASET}
    with tempfile.TemporaryDirectory(prefix="chaintrace-bench-lineage-") as folder:
        root = Path(folder)
        t0 = time.perf_counter()
        kinds = build_chain(root / "chain")
        log(f"lineage: {DATASET} chain run in process in {time.perf_counter() - t0:.0f} s; "
            f"{len(kinds)} task kinds")
        for kind in kinds[:2]:  # warm imports and caches; not timed
            task_events(kind)
        watched = root / "spool-first"  # the service watches it, as in the chain
        service = LineageService(root / "service", free_port(), spool_dir=watched)
        service.start()
        # Keys on, as the chain runs: producers send the producer key, checks read with the admin key.
        producer, reading = service.provision_keys().producer, service.headers()
        try:
            first = run_tasks("ours, spool-first, service up (fsync off)", kinds,
                              spool_first(service.url, watched, fsync=False, api_key=producer), tasks)
            first_sync = run_tasks("ours, spool-first, service up (fsync on)", kinds,
                                   spool_first(service.url, watched, fsync=True, api_key=producer), tasks)
            up = run_tasks("ours, HTTP direct, service up", kinds,
                           spooling(service.url, root / "spool-up", api_key=producer), tasks)
            if Spool(root / "spool-up").events():
                raise AssertionError("service up: some events were spooled instead of sent")
            taken_s = wait_spool_taken(watched)
            log(f"  spool-first: the service's watcher had taken every file {taken_s:.2f} s after the "
                f"cases ended (bound {DELIVERY_WAIT_S:.0f} s)")
            stock_up = run_tasks("stock HttpTransport, service up", kinds, stock_http(service.url, producer),
                                 tasks)
            closed_url = f"http://127.0.0.1:{closed_port()}"
            down = run_tasks("ours, service down (closed port)", kinds,
                             spooling(closed_url, root / "spool-closed"), tasks)
            with hanging_service() as port:
                hang = run_tasks("ours, service down (hangs)", kinds,
                                 spooling(f"http://127.0.0.1:{port}", root / "spool-hang"), tasks)
            stock_down = run_tasks("stock HttpTransport, service down (closed port)", kinds,
                                   stock_http(closed_url), STOCK_DOWN_TASKS["quick" if quick else "full"])
            # Checks, not timed: each spool holds exactly its events; replayed, each is stored once.
            for case, spool_name in ((down, "spool-closed"), (hang, "spool-hang")):
                check_spool(root / spool_name, case)
                replayed = Spool(root / spool_name).replay(service.url, api_key=producer)
                log(f"  {case.label}: spool held exactly its {len(case.sent)} events; replay: {replayed}")
                if Spool(root / spool_name).events():
                    raise AssertionError(f"{case.label}: events left in the spool after replay")
            service.wait_projected(timeout=DELIVERY_WAIT_S)
            stored = stored_events(service.url, reading)
            for case in (first, first_sync, up, stock_up, down, hang):
                check_stored_once(stored, case)
            if Spool(watched).rejected():
                raise AssertionError(f"spool-first: {len(Spool(watched).rejected())} event(s) rejected")
            log(f"  the service stores every event of the spool-first, HTTP-direct, closed-port and hanging "
                f"cases exactly once ({sum(stored.values())} events in the store)")
            latency_transport = spool_first(service.url, watched, fsync=False, api_key=producer)
            latency = delivery_latency(kinds, latency_transport, service.url,
                                       LATENCY_TASKS["quick" if quick else "full"], reading)
        finally:
            service.stop()
    figures.update({
        "ours_spool_first_up": first.figures(), "ours_spool_first_fsync_up": first_sync.figures(),
        "spool_first_delivery_latency_ms": summary(latency),
        "ours_http_up": up.figures(), "stock_up": stock_up.figures(), "ours_down_closed": down.figures(),
        "ours_down_hang": hang.figures(), "stock_down_closed": stock_down.figures(),
        "complete_event_bytes_max": up.complete_bytes_max, "noise": noise.report(),
    })
    p99 = {name: summary(case.per_task_ms)["p99"] for name, case in
           (("first", first), ("first_sync", first_sync), ("up", up), ("stock_up", stock_up),
            ("down", down), ("hang", hang))}
    latency_s = summary(latency)
    stock_down_per_event_s = sum(stock_down.per_task_ms) / 1000 / max(len(stock_down.sent), 1)
    figures["stock_down_seconds_per_event"] = round(stock_down_per_event_s, 2)
    log(f"  COMPLETE events up to {up.complete_bytes_max / 1000:.1f} KB; noise: {figures['noise']} "
        f"({os.cpu_count()} CPUs shared with other work)")
    up_ratio = p99["up"] / p99["stock_up"]
    down_ratio = stock_down_per_event_s * 2000 / p99["down"]
    log(f"  service up: p99 {p99['first']:.2f} ms spool-first (fsync off), {p99['first_sync']:.2f} ms "
        f"(fsync on), {p99['up']:.2f} ms HTTP direct vs {p99['stock_up']:.2f} ms stock: HTTP direct / stock "
        f"= {up_ratio:.2f}x")
    log(f"  service down: stock {stock_down_per_event_s:.1f} s per event ({stock_down.failures} of "
        f"{len(stock_down.sent)} emits raised, events lost); ours p99 {p99['down']:.2f} ms per task "
        f"(closed port), {p99['hang']:.2f} ms (hanging): stock per task / ours = {down_ratio:,.0f}x")
    targets = [
        Target("F1", "F lineage overhead per task p99, service up (spool-first)", p99["first"], 5.0, "ms",
               higher_is_better=False,
               note=f"{tasks} tasks over covid_testing's 10 stage/gate reports: load report + build "
               f"lineage + emit START and COMPLETE (COMPLETE up to {up.complete_bytes_max / 1000:.0f} KB) "
               f"to the spool the running service watches, fsync off; p50 "
               f"{first.figures()['per_task_ms']['p50']} ms; building alone p99 "
               f"{first.figures()['build_ms']['p99']} ms, emitting both p99 "
               f"{first.figures()['emit_both_ms']['p99']} ms; every event stored once"),
        Target("F1.fsync", "F spool-first per task p99, service up, fsync on", p99["first_sync"], None, "ms",
               note=f"file + folder fsync per event; emitting both p99 "
               f"{first_sync.figures()['emit_both_ms']['p99']} ms"),
        Target("F1.http", "F HTTP-direct per task p99, service up (delivery: http)", p99["up"], None, "ms",
               note=f"two synchronous POSTs; emitting both p99 {up.figures()['emit_both_ms']['p99']} ms"),
        Target("F1.latency", "F spool-first delivery latency p99 (emit -> queryable)", latency_s["p99"], None,
               "ms", note=f"p50 {latency_s['p50']} ms, max {latency_s['max']} ms; the service polls the "
               "spool every 100 ms"),
        Target("F2", "F lineage overhead per task p99, service down (closed port, spool)", p99["down"], 50.0,
               "ms", higher_is_better=False,
               note=f"max {down.figures()['per_task_ms']['max']} ms; spool = emitted events, each stored "
               "once after replay"),
        Target("F3", "F lineage overhead per task p99, service down (hangs, spool)", p99["hang"], 50.0, "ms",
               higher_is_better=False,
               note=f"max {hang.figures()['per_task_ms']['max']} ms (the first event waits the 1 s read "
               "timeout, then the circuit opens)"),
        Target("F.stock_up", "F stock HttpTransport per task p99, service up", p99["stock_up"], None, "ms",
               note=f"ours HTTP direct / stock = {up_ratio:.2f}x"),
        Target("F.stock_down", "F stock HttpTransport, service down: seconds per event",
               round(stock_down_per_event_s, 2), None, "s",
               note=f"default retries, then the event is dropped; per task {down_ratio:,.0f}x ours p99"),
    ]
    return finish_section("lineage_overhead", "F. lineage overhead per task", figures, targets, quick=quick,
                          info=info)
