"""Shared fixtures: a lineage store on each real backend, a wired context, an HTTP client.

PostgreSQL is the real server on this machine (``CHAINTRACE_TEST_PG_ADMIN_URL`` to point elsewhere):
one throw-away database per test session, emptied before each test that uses it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from lineage.api.app import create_app
from lineage.context import LineageContext
from lineage.settings import LineageSettings
from lineage.store.keys import create_key

PG_ADMIN_URL = os.environ.get(
    "CHAINTRACE_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ("sqlite", "postgres")


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    name = f"chaintrace_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def reset_postgres(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def store_url_for(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'lineage.db'}"
    url: str = request.getfixturevalue("pg_database_url")
    reset_postgres(url)
    return url


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store URL, once per backend (SQLite file, real PostgreSQL)."""
    return store_url_for(request.param, tmp_path, request)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'lineage.db'}"


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, *,
             every: Callable[[], Any] | None = None) -> Any:
    """``predicate()``'s first truthy value, polled every 50 ms (calling ``every`` between polls);
    AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        if every is not None:
            every()
        time.sleep(0.05)
    return value


def build_context(url: str, tmp_path: Path, **overrides: object) -> LineageContext:
    settings = LineageSettings(db_url=url, data_root=tmp_path, **overrides)  # type: ignore[arg-type]
    return LineageContext.build(settings)


@pytest.fixture
def context(store_url: str, tmp_path: Path) -> Iterator[LineageContext]:
    ctx = build_context(store_url, tmp_path)
    ctx.start()
    try:
        yield ctx
    finally:
        ctx.close()


def auth_headers(context: LineageContext, role: str = "admin", clearance: str = "L4",
                 jurisdiction: str | None = None) -> dict[str, str]:
    """Headers that carry a fresh API key of ``role`` in ``context``'s store."""
    _key, token = create_key(context.engine, name=f"test-{role}-{uuid.uuid4().hex[:6]}", role=role,
                             clearance=clearance, jurisdiction=jurisdiction)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client(context: LineageContext) -> Iterator[TestClient]:
    """A client of the app that sends an admin key (sees and may do everything)."""
    with TestClient(create_app(context), headers=auth_headers(context)) as test_client:
        yield test_client


@pytest.fixture
def make_auth_headers() -> object:
    """``make_auth_headers(context, role="reader", clearance="L2")`` -> headers with a fresh key."""
    return auth_headers
