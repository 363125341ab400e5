"""``chaintrace report DATASET``: a DAG run's data-quality report as one standalone HTML file.

DATASET is a chain dataset (``flights``): its tasks are the jobs named ``<dataset>.<stage>.<kind>``.
Without ``--run`` the newest DAG run of those jobs is reported. The page is the one the lineage service
serves at ``/api/v1/reports/runs/{runId}.html``, read straight from the store (``--db``, else the
service's settings), so it works with the service down; it is unredacted, as anyone holding the store's
URL can read the store itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from lineage.reports import ReportNotFoundError, ReportService, render_run
from lineage.settings import LineageSettings
from lineage.store.db import create_store_engine

_DATASET = re.compile(r"^[A-Za-z0-9_-]+$")
RUN_HELP = "DAG run id (the OpenLineage runId of the DAG run); default: the newest"
OUT_HELP = "HTML file to write (default: report-<dataset>-<run>.html)"
DB_HELP = "Lineage store URL (default: the lineage service's settings)"


def report(
    dataset: Annotated[str, typer.Argument(help="Chain dataset name, e.g. flights")],
    run: Annotated[str | None, typer.Option("--run", help=RUN_HELP)] = None,
    out: Annotated[Path | None, typer.Option("--out", help=OUT_HELP)] = None,
    db: Annotated[str | None, typer.Option("--db", help=DB_HELP)] = None,
) -> None:
    """Write the data-quality report of a dataset's DAG run as a standalone HTML file."""
    if not _DATASET.match(dataset):
        raise typer.BadParameter(f"{dataset!r} is not a dataset name (letters, digits, '_' and '-')",
                                 param_hint="DATASET")
    url = db or LineageSettings().resolved_db_url()
    engine = create_store_engine(url, pool_size=1)
    try:
        service = ReportService(engine)
        prefix = f"{dataset}."
        run_id = run or service.newest_run(prefix)
        body = service.run(run_id, job_prefix=prefix)
    except ReportNotFoundError as exc:
        typer.echo(f"chaintrace report: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    except SQLAlchemyError as exc:  # the message names the problem, never the URL (it may hold a password)
        typer.echo(f"chaintrace report: cannot read the lineage store: {type(exc).__name__}: "
                   f"{str(exc.orig if hasattr(exc, 'orig') else exc).splitlines()[0]}", err=True)
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()
    target = out or Path(f"report-{dataset}-{body['runId']}.html")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_run(body), encoding="utf-8")
    summary = body["summary"]
    typer.echo(f"{target}: {summary['gates']} gate(s), {summary['gatesFailed']} failed, "
               f"{summary['expectationsFailed']} failed expectation(s), {summary['quarantined']} quarantined")
