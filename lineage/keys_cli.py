"""``chaintrace keys ...``: create, list and revoke the API keys of the lineage service.

The store keeps a SHA-256 of each key's secret, never the key: ``create`` prints the token once and
nothing can show it again. A running service trusts a key it has checked for ``key_cache_s`` seconds
(default 30), so a revoked key stops working within that time.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from lineage.governance.levels import Level, LevelError, parse_level
from lineage.settings import LineageSettings
from lineage.store.db import create_store_engine, migrate
from lineage.store.keys import (
    ROLES,
    ApiKeyError,
    Role,
    create_key,
    list_keys,
    parse_role,
    revoke_key,
    split_token,
)

app = typer.Typer(help="API keys of the lineage service (stored hashed; a token is shown once).",
                  no_args_is_help=True)
# soft_wrap: a token stays on one line when the output is piped (no terminal width to wrap at).
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="SQLAlchemy URL of the store (default: CHAINTRACE_DB_URL or SQLite)."),
]


def _engine(db: str | None) -> Engine:
    settings = LineageSettings(db_url=db) if db else LineageSettings()
    engine = create_store_engine(settings.resolved_db_url())
    migrate(engine)
    return engine


def _fail(message: str, code: int) -> typer.Exit:
    errors.print(f"[red]{message}[/red]", highlight=False)
    return typer.Exit(code)


def _default_clearance(role: Role) -> Level:
    # Admins see everything whatever their key says; others start at the lowest level.
    return "L4" if role == "admin" else "L1"


@app.command()
def create(
    role: Annotated[str, typer.Option("--role", help=f"One of: {', '.join(ROLES)}.")],
    clearance: Annotated[str | None, typer.Option(
        "--clearance", help="Highest level it may read, L1..L4 (default: L4 for admin, else L1).")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="Who holds the key (shown in lists, audit rows and consumer jobs).")] = None,
    jurisdiction: Annotated[str | None, typer.Option(
        "--jurisdiction", help="Where the holder is (checked for products carrying L3/L4 data).")] = None,
    token_only: Annotated[bool, typer.Option(
        "--token-only", help="Print only the token (scripts: KEY=$(chaintrace keys create ...)).")] = False,
    db: DbOption = None,
) -> None:
    """Create a key; its token is printed once and cannot be shown again."""
    try:
        checked_role = parse_role(role)
        level = parse_level(clearance, where="--clearance") if clearance is not None \
            else _default_clearance(checked_role)
    except (ApiKeyError, LevelError) as exc:
        raise _fail(f"cannot create the key: {exc}", 2) from None
    if checked_role == "admin" and level != "L4":
        errors.print(f"note: an admin key sees everything; --clearance {level} is recorded but not applied")
    engine = _engine(db)
    try:
        key, token = create_key(engine, name=name or f"{checked_role}-key", role=checked_role,
                                clearance=level, jurisdiction=jurisdiction or None)
    except ApiKeyError as exc:
        raise _fail(f"cannot create the key: {exc}", 2) from None
    finally:
        engine.dispose()
    if token_only:
        console.print(token, highlight=False)
        return
    console.print(f"created key {key.key_id} ({key.name}): role {key.role}, clearance {key.clearance}"
                  + (f", jurisdiction {key.jurisdiction}" if key.jurisdiction else ""), highlight=False)
    console.print("token (shown only now; send it as Authorization: Bearer <token>):", highlight=False)
    console.print(token, highlight=False)


@app.command("list")
def list_command(db: DbOption = None) -> None:
    """List the keys (never their secrets), revoked ones included."""
    engine = _engine(db)
    try:
        found = list_keys(engine)
    finally:
        engine.dispose()
    table = Table(title=f"API keys ({len(found)})")
    # Key ids are what `revoke` takes: never cut; the rest folds onto more lines in a narrow terminal.
    table.add_column("key id", no_wrap=True, min_width=12)
    for column in ("name", "role", "clearance", "jurisdiction", "created", "revoked"):
        table.add_column(column, overflow="fold")
    for key in found:
        table.add_row(key.key_id, key.name, key.role, key.clearance, key.jurisdiction or "-",
                      key.created_at, key.revoked_at or "-")
    console.print(table)


@app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (from `chaintrace keys list`), not the token.")],
    db: DbOption = None,
) -> None:
    """Revoke a key; a running service refuses it within key_cache_s seconds (default 30)."""
    if split_token(key_id) is not None:
        # Never echo it: a token pasted here is a secret in the wrong place.
        raise _fail("that is a token, not a key id; pass the key id shown by `chaintrace keys list`", 2)
    engine = _engine(db)
    try:
        key = revoke_key(engine, key_id.strip())
    except ApiKeyError as exc:
        raise _fail(f"cannot revoke: {exc}", 1) from None
    finally:
        engine.dispose()
    cache_s = LineageSettings().key_cache_s
    console.print(f"revoked key {key.key_id} ({key.name}, {key.role}) at {key.revoked_at}; a running "
                  f"service refuses it within {cache_s:g} s", highlight=False)
