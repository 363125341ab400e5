"""``chaintrace lineage ...``: serve, rebuild, retention, stats, replay-spool."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table

from lineage.settings import LineageSettings
from lineage.spool_format import HttpDelivery, replay
from lineage.store import times
from lineage.store.db import create_store_engine, migrate
from lineage.store.events import counts, graph_hash, rebuild, retention

app = typer.Typer(help="The lineage service and its store.", no_args_is_help=True)
# soft_wrap: hashes and counts stay on one line when the output is piped (no terminal width).
console = Console(soft_wrap=True)

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="SQLAlchemy URL of the store (default: CHAINTRACE_DB_URL or SQLite)."),
]


def _settings(db: str | None, **overrides: object) -> LineageSettings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if db:
        values["db_url"] = db
    return LineageSettings(**values)  # type: ignore[arg-type]


@app.command()
def serve(
    db: DbOption = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 5000).")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Run the lineage service (FastAPI on uvicorn); migrations run first."""
    import os

    import uvicorn

    # The service derives in a child process unless told otherwise (see LineageSettings.derivations_in):
    # its own interpreter then serves requests and writes.
    os.environ.setdefault("CHAINTRACE_DERIVATIONS_IN", "process")
    # Big batches are parsed and stored by two child processes (LineageSettings.batch_processes).
    os.environ.setdefault("CHAINTRACE_BATCH_PROCESSES", "2")
    settings = _settings(db, host=host, port=port)
    engine = create_store_engine(settings.resolved_db_url())
    migrate(engine)
    console.print(f"lineage service on http://{settings.host}:{settings.port}  store: "
                  f"{engine.url.render_as_string(hide_password=True)}")
    engine.dispose()
    if workers > 1:
        os.environ["CHAINTRACE_DB_URL"] = settings.resolved_db_url()
        uvicorn.run("lineage.api.app:app_from_environment", factory=True, host=settings.host,
                    port=settings.port, workers=workers, log_level=settings.log_level, access_log=False)
        return
    from lineage.api.app import create_app

    uvicorn.run(create_app(settings=settings), host=settings.host, port=settings.port,
                log_level=settings.log_level, access_log=False)


@app.command("rebuild")
def rebuild_command(db: DbOption = None) -> None:
    """Drop the derived graph and replay every raw event; prints the graph hash."""
    engine = create_store_engine(_settings(db).resolved_db_url())
    migrate(engine)
    before = graph_hash(engine)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console,
                  disable=not console.is_terminal) as progress:
        task = progress.add_task("replaying events", total=None)
        replayed = rebuild(engine, progress=lambda n: progress.update(task, description=f"replayed {n:,}"))
    after = graph_hash(engine)
    console.print(f"replayed {replayed:,} events")
    console.print(f"graph hash before {before}")
    console.print(f"graph hash after  {after}  ({'unchanged' if before == after else 'CHANGED'})")


@app.command("retention")
def retention_command(
    days: Annotated[int, typer.Option("--days", min=0, help="Keep events of the last N days.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would go.")] = False,
    db: DbOption = None,
) -> None:
    """Delete raw events older than N days and rebuild the graph of what remains."""
    engine = create_store_engine(_settings(db).resolved_db_url())
    migrate(engine)
    cutoff = times.format_time(datetime.now(UTC) - timedelta(days=days))
    result = retention(engine, cutoff, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{verb} {result.events_deleted:,} events older than {cutoff}; "
                  f"{result.events_kept:,} kept")


@app.command()
def stats(db: DbOption = None) -> None:
    """Print row counts of the raw event log and the derived graph."""
    engine = create_store_engine(_settings(db).resolved_db_url())
    migrate(engine)
    table = Table(title="lineage store")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in counts(engine).items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    console.print(f"graph hash {graph_hash(engine)}")


@app.command("replay-spool")
def replay_spool(
    spool: Annotated[
        Path | None, typer.Option("--spool", help="Spool folder (default: CHAINTRACE_SPOOL_DIR).")
    ] = None,
    url: Annotated[
        str | None, typer.Option("--url", help="Service base URL (default: http://HOST:PORT).")
    ] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Events per request.")] = 100,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="CHAINTRACE_API_KEY",
                                                help="Producer API key (sent as Bearer).")] = None,
) -> None:
    """Deliver spooled events to a running service; each file goes once the service acknowledged it."""
    settings = LineageSettings()
    spool_dir = spool or settings.spool_dir
    if spool_dir is None:
        console.print("[red]no spool folder: pass --spool or set CHAINTRACE_SPOOL_DIR[/red]")
        raise typer.Exit(2)
    if not spool_dir.is_dir():
        console.print(f"[red]spool folder {spool_dir} does not exist[/red]")
        raise typer.Exit(2)
    base = url or f"http://{settings.host}:{settings.port}"
    with HttpDelivery(base, api_key=api_key) as deliver:
        summary = replay(spool_dir, deliver, batch=batch)
    table = Table(title=f"spool {spool_dir} -> {base}")
    table.add_column("events")
    table.add_column("count", justify="right")
    table.add_row("delivered", f"{summary.delivered:,}")
    table.add_row("already present", f"{summary.already_present:,}")
    table.add_row("rejected (moved to rejected/)", f"{summary.rejected:,}")
    table.add_row("left in the spool", f"{summary.left:,}")
    console.print(table)
    if summary.error:
        console.print(f"[red]stopped early: {summary.error}[/red]")
        raise typer.Exit(1)
