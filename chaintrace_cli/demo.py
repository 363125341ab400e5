"""``chaintrace demo``: the main job. Starts the lineage service and Airflow (scheduler, dag-processor,
api-server), unpauses and triggers every dataset DAG, shows progress while they run, and prints a
summary per dataset; then keeps everything up until Ctrl-C (or exits with ``--once``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from chaintrace_chain.settings import ChainSettings
from chaintrace_chain.spec import all_specs
from chaintrace_chain.summary import RunSummary, summarise_run
from chaintrace_chain.zones import Zones, run_key
from chaintrace_cli.chain_session import ChainSession

# Wide enough for the summary table when the output is a file or a pipe (CI logs, tests).
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
DONE_STATES = {"success", "failed", "upstream_failed", "skipped", "removed"}


def _summary_table(summaries: dict[str, RunSummary], states: dict[str, str]) -> Table:
    table = Table(title="chaintrace: one run of every dataset")
    for column in (
        "dataset", "run", "stages passed", "rows in", "rows out", "gates passed", "gates failed",
        "quarantined", "products served",
    ):  # fmt: skip
        table.add_column(column)
    for name, summary in summaries.items():
        table.add_row(
            name,
            states.get(name, "?"),
            f"{summary.stages_passed}/5",
            f"{summary.rows_in:,}" if summary.rows_in is not None else "-",
            f"{summary.rows_out:,}" if summary.rows_out is not None else "-",
            ", ".join(summary.gates_passed) or "-",
            ", ".join(summary.gates_failed) or "-",
            str(len(summary.quarantined)),
            "\n".join(summary.products) or "-",
        )
    return table


def run_demo(
    once: bool, data_root: Path, lineage_port: int, airflow_port: int, timeout: float, datasets: list[str]
) -> int:
    settings = ChainSettings(data_root=data_root)
    specs = all_specs(settings.resolved_spec_dir())
    unknown = sorted(set(datasets) - {spec.name for spec in specs})
    if unknown:
        console.print(f"[red]unknown dataset(s) {unknown}; the specs define {[spec.name for spec in specs]}")
        return 2
    specs = [spec for spec in specs if not datasets or spec.name in datasets]
    dag_ids = [spec.name for spec in specs]
    session = ChainSession(
        settings.resolved_data_root(), lineage_port=lineage_port, airflow_port=airflow_port
    )
    console.print(f"[bold]data root[/] {session.data_root}")
    console.print(
        f"[bold]lineage service[/] {session.lineage.url}   [bold]Airflow[/] {session.stack.base_url}"
    )
    try:
        with console.status(
            "starting the lineage service and Airflow (scheduler, dag-processor, api-server)"
        ):
            session.start(dag_ids)
        keys = session.lineage.provision_keys()
        # Shown once; it stays in the keys file (owner-only) for later.
        console.print(f"[bold]admin API key[/] (reads everything; kept in {keys.path}, mode 0600):")
        console.print(keys.admin, highlight=False)
        run_id = f"demo__{time.strftime('%Y%m%dT%H%M%S')}"
        runs = session.trigger_all(dag_ids, run_id)
        with Progress(
            TextColumn("{task.description:<14}"), BarColumn(),
            TextColumn("{task.completed}/{task.total} tasks"), TimeElapsedColumn(), console=console,
        ) as progress:  # fmt: skip
            bars = {dag_id: progress.add_task(dag_id, total=10) for dag_id in dag_ids}

            def on_progress(dag_id: str, states: dict[str, str | None]) -> None:
                done = sum(1 for state in states.values() if state in DONE_STATES)
                progress.update(bars[dag_id], completed=done, total=max(len(states), 1))

            final = session.wait_runs(runs, timeout=timeout, on_progress=on_progress)
        session.lineage.wait_projected()
        zones = Zones.at(session.data_root)
        summaries = {spec.name: summarise_run(spec, zones, run_key(run_id)) for spec in specs}
        console.print(_summary_table(summaries, {dag: run["state"] for dag, run in final.items()}))
        for summary in summaries.values():
            for product, path in summary.products.items():
                node = quote(f"dataset:file:{path}", safe="")
                url = f"{session.lineage.url}/#/graph?nodeId={node}"
                console.print(f"lineage of {summary.dataset}/{product}: {url}")
        console.print(f"web UI: {session.lineage.url}/ (log in with the admin key)   lineage API: "
                      f"{session.lineage.url}/docs   Airflow UI: {session.stack.base_url}")
        console.print("the lineage API needs the key: curl -H \"Authorization: Bearer $(jq -r .admin.token "
                      f"{keys.path})\" URL", highlight=False)
        failed = [dag for dag, run in final.items() if run["state"] != "success"]
        if once:
            return 1 if failed else 0
        console.print("everything stays up; Ctrl-C to stop")
        while True:
            session.stack.check_alive()
            time.sleep(2)
    except KeyboardInterrupt:
        return 0
    finally:
        with console.status("stopping Airflow and the lineage service"):
            session.stop()


def demo(
    once: Annotated[
        bool, typer.Option("--once", help="Exit after the summary instead of staying up.")
    ] = False,
    data_root: Annotated[Path, typer.Option(help="Data root: zones, store, Airflow home.")] = Path("data"),
    port: Annotated[int, typer.Option(help="Preferred port of the lineage service (0: any).")] = 5000,
    airflow_port: Annotated[
        int, typer.Option(help="Preferred port of Airflow's api-server (0: any).")
    ] = 8080,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the DAG runs.")] = 1800,
    dataset: Annotated[
        list[str] | None, typer.Option(help="Run only this dataset's DAG (repeatable; default: all).")
    ] = None,
) -> None:
    """Run the main job: every dataset DAG under the real scheduler, with lineage and quality gates."""
    raise typer.Exit(run_demo(once, data_root, port, airflow_port, timeout, dataset or []))
