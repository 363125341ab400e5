"""deploy/postgres-init.sql, run with psql as the postgres image runs it, on this machine's PostgreSQL.

The database and role names are overridden with unique ones (the file allows it for this), so the test
can share the server with everything else; all it creates is dropped afterwards.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "postgres-init.sql"
PG_ADMIN_URL = os.environ.get(
    "CHAINTRACE_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

pytestmark = pytest.mark.postgres


def _psql(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    url = make_url(PG_ADMIN_URL)
    # The image's entrypoint: psql -v ON_ERROR_STOP=1 --no-psqlrc --dbname "$POSTGRES_DB" -f <file>.
    return subprocess.run(
        ["psql", "-v", "ON_ERROR_STOP=1", "--no-psqlrc", "--host", url.host or "127.0.0.1",
         "--port", str(url.port or 5432), "--username", url.username or "postgres",
         "--dbname", url.database or "postgres", "-f", str(SCRIPT)],
        env={**os.environ, **env, "PGPASSWORD": url.password or ""},
        capture_output=True, text=True, timeout=60,
    )


@pytest.fixture
def names() -> Iterator[dict[str, str]]:
    stem = f"ct_init_{uuid.uuid4().hex[:8]}"
    chosen = {"AIRFLOW_DB_NAME": f"{stem}_af", "AIRFLOW_DB_USER": f"{stem}_afu",
              "LINEAGE_DB_NAME": f"{stem}_li", "LINEAGE_DB_USER": f"{stem}_liu"}
    try:
        yield chosen
    finally:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            for key in ("AIRFLOW_DB_NAME", "LINEAGE_DB_NAME"):
                connection.execute(text(f'DROP DATABASE IF EXISTS "{chosen[key]}" WITH (FORCE)'))
            for key in ("AIRFLOW_DB_USER", "LINEAGE_DB_USER"):
                connection.execute(text(f'DROP ROLE IF EXISTS "{chosen[key]}"'))
        admin.dispose()


def _role_url(role: str, password: str, database: str) -> str:
    url = make_url(PG_ADMIN_URL).set(username=role, password=password, database=database)
    return url.render_as_string(hide_password=False)


def test_each_database_belongs_to_its_own_role(names: dict[str, str]) -> None:
    passwords = {"AIRFLOW_DB_PASSWORD": uuid.uuid4().hex, "LINEAGE_DB_PASSWORD": uuid.uuid4().hex}
    done = _psql({**names, **passwords})
    assert done.returncode == 0, done.stderr
    # The passwords never reach the output.
    assert not any(password in done.stdout + done.stderr for password in passwords.values())
    pairs = [("AIRFLOW_DB_USER", "AIRFLOW_DB_PASSWORD", "AIRFLOW_DB_NAME", "LINEAGE_DB_NAME"),
             ("LINEAGE_DB_USER", "LINEAGE_DB_PASSWORD", "LINEAGE_DB_NAME", "AIRFLOW_DB_NAME")]
    for user, password, own, other in pairs:
        # The owner connects with the password the script set, and may create its tables.
        engine = create_engine(_role_url(names[user], passwords[password], names[own]))
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE migrated (id integer)"))
            owner = connection.execute(text(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
            )).scalar_one()
            assert owner == names[user]
        engine.dispose()
        # ... and cannot connect to the other database.
        stranger = create_engine(_role_url(names[user], passwords[password], names[other]))
        with pytest.raises(OperationalError, match=r"CONNECT privilege|permission denied"):
            stranger.connect().close()
        stranger.dispose()


def test_a_missing_password_stops_before_anything_is_created(names: dict[str, str]) -> None:
    done = _psql({**names, "AIRFLOW_DB_PASSWORD": uuid.uuid4().hex, "LINEAGE_DB_PASSWORD": ""})
    assert done.returncode != 0
    assert "LINEAGE_DB_PASSWORD is not set" in done.stderr
    admin = create_engine(PG_ADMIN_URL)
    with admin.connect() as connection:
        roles = connection.execute(text("SELECT count(*) FROM pg_roles WHERE rolname = ANY(:names)"),
                                   {"names": list(names.values())}).scalar_one()
        databases = connection.execute(text("SELECT count(*) FROM pg_database WHERE datname = ANY(:names)"),
                                       {"names": list(names.values())}).scalar_one()
    admin.dispose()
    assert (roles, databases) == (0, 0)
