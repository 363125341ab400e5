"""``chaintrace``: the project's single command-line entry point."""

from __future__ import annotations

import typer

from chaintrace_cli.demo import demo
from chaintrace_cli.report import report
from lineage.cli import app as lineage_app
from lineage.keys_cli import app as keys_app

app = typer.Typer(help="chaintrace: full-chain traceability for public data.", no_args_is_help=True)
app.add_typer(lineage_app, name="lineage")
app.add_typer(keys_app, name="keys")
app.command()(demo)
app.command()(report)

if __name__ == "__main__":
    app()
