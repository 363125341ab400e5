"""``chaintrace keys create|list|revoke``: a token shown once, stored hashed, never listed, revocable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from chaintrace_cli.main import app
from lineage.store.db import create_store_engine
from lineage.store.keys import authenticate, split_token

TOKEN_RE = re.compile(r"\bct_[0-9a-f]+_[A-Za-z0-9_-]+")


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["keys", *args], env={"COLUMNS": "250", **(env or {})})
    return result.exit_code, result.stdout, result.stderr


def create(db: str, *args: str) -> str:
    code, out, err = run("create", "--db", db, *args)
    assert code == 0, (out, err)
    tokens = TOKEN_RE.findall(out)
    assert len(tokens) == 1, f"the token must be printed exactly once: {out!r}"
    return tokens[0]


def stored_rows(db: str) -> list[str]:
    """Every api_keys row as text, to look for a token or secret in it."""
    engine = create_store_engine(db)
    try:
        with engine.connect() as connection:
            return [" ".join(map(str, row)) for row in connection.execute(text("SELECT * FROM api_keys"))]
    finally:
        engine.dispose()


def test_create_prints_a_working_token_once_and_stores_only_its_digest(store_url: str) -> None:
    token = create(store_url, "--role", "reader", "--clearance", "l2", "--name", "alice",
                   "--jurisdiction", "EU")
    engine = create_store_engine(store_url)
    try:
        key = authenticate(engine, token)
    finally:
        engine.dispose()
    assert key is not None
    assert (key.name, key.role, key.clearance, key.jurisdiction) == ("alice", "reader", "L2", "EU")
    parts = split_token(token)
    assert parts is not None and parts[0] == key.key_id
    rows = stored_rows(store_url)
    assert len(rows) == 1
    assert token not in rows[0] and parts[1] not in rows[0]


def test_list_shows_every_key_without_any_secret_and_revoke_ends_a_key(store_url: str) -> None:
    reader = create(store_url, "--role", "reader", "--clearance", "L3", "--name", "bob")
    producer = create(store_url, "--role", "producer", "--name", "airflow")
    reader_id = reader.split("_")[1]

    code, out, err = run("list", "--db", store_url)
    assert code == 0, err
    for token in (reader, producer):
        key_id, secret = split_token(token) or ("", "")
        assert key_id in out
        assert secret not in out and token not in out
    assert "bob" in out and "airflow" in out and "L3" in out
    assert not TOKEN_RE.search(out)

    code, out, err = run("revoke", reader_id, "--db", store_url)
    assert code == 0, err
    assert f"revoked key {reader_id}" in out
    engine = create_store_engine(store_url)
    try:
        assert authenticate(engine, reader) is None
        assert authenticate(engine, producer) is not None
    finally:
        engine.dispose()
    code, out, err = run("list", "--db", store_url)
    revoked_line = next(line for line in out.splitlines() if reader_id in line)
    assert re.search(r"\d{4}-\d\d-\d\dT", revoked_line.split("bob", 1)[1].split("L3", 1)[1]), revoked_line

    code, out, err = run("revoke", reader_id, "--db", store_url)
    assert code == 1
    assert "no live key" in err and reader_id in err


@pytest.mark.parametrize(("args", "names"), [
    (["--role", "superuser"], ["superuser", "producer, reader, consumer, admin"]),
    (["--role", "reader", "--clearance", "L5"], ["--clearance", "'L5'", "L1, L2, L3, L4"]),
    (["--role", "reader", "--clearance", "secret"], ["--clearance", "'secret'"]),
])
def test_a_bad_role_or_clearance_is_a_clear_error_with_exit_code_2(
    sqlite_url: str, args: list[str], names: list[str]
) -> None:
    code, out, err = run("create", "--db", sqlite_url, *args)
    assert code == 2
    for name in names:
        assert name in err, err
    assert not TOKEN_RE.search(out + err)
    # Checked before the store is even opened: nothing was created.
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()


def test_admin_keys_default_to_the_highest_clearance_and_token_only_prints_just_the_token(
    sqlite_url: str,
) -> None:
    code, out, err = run("create", "--db", sqlite_url, "--role", "admin", "--token-only")
    assert code == 0, err
    assert TOKEN_RE.fullmatch(out.strip()), out
    engine = create_store_engine(sqlite_url)
    try:
        key = authenticate(engine, out.strip())
    finally:
        engine.dispose()
    assert key is not None and key.role == "admin" and key.clearance == "L4"


def test_revoke_refuses_a_token_in_place_of_a_key_id_without_echoing_it(sqlite_url: str) -> None:
    token = create(sqlite_url, "--role", "consumer", "--name", "dash")
    code, out, err = run("revoke", token, "--db", sqlite_url)
    assert code == 2
    assert "not a key id" in err
    secret = (split_token(token) or ("", ""))[1]
    assert secret not in out + err
    engine = create_store_engine(sqlite_url)
    try:
        assert authenticate(engine, token) is not None, "nothing was revoked"
    finally:
        engine.dispose()


def test_the_store_defaults_to_the_lineage_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --db, keys go to the store `chaintrace lineage serve` uses: CHAINTRACE_DB_URL, else the
    SQLite file under CHAINTRACE_DATA_ROOT (migrated first)."""
    monkeypatch.chdir(tmp_path)  # no .env of the repository
    monkeypatch.delenv("CHAINTRACE_DB_URL", raising=False)
    code, out, err = run("create", "--role", "producer", env={"CHAINTRACE_DATA_ROOT": str(tmp_path / "root")})
    assert code == 0, err
    db = tmp_path / "root" / "lineage" / "lineage.db"
    assert db.is_file()
    token = TOKEN_RE.findall(out)[0]
    engine = create_store_engine(f"sqlite:///{db}")
    try:
        key = authenticate(engine, token)
    finally:
        engine.dispose()
    assert key is not None and key.role == "producer" and key.name == "producer-key"
    code, out, err = run("list", env={"CHAINTRACE_DATA_ROOT": str(tmp_path / "root")})
    assert code == 0 and key.key_id in out
