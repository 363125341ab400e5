"""The keys a chain session (the demo, the end-to-end tests) makes: a producer key for Airflow's
transport and an admin key for people, in the store the service uses, recorded in an owner-only file."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from chaintrace_cli.chain_session import (
    KEYS_FILE,
    ChainSession,
    LineageService,
    ensure_service_keys,
    free_port,
)
from lineage.store.db import create_store_engine
from lineage.store.keys import authenticate, list_keys, revoke_key, split_token


def _roles(db_url: str, *tokens: str) -> list[str | None]:
    engine = create_store_engine(db_url)
    try:
        return [key.role if (key := authenticate(engine, token)) else None for token in tokens]
    finally:
        engine.dispose()


def test_keys_are_made_once_kept_owner_only_and_remade_when_revoked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lineage.db'}"
    path = tmp_path / "lineage" / KEYS_FILE
    keys = ensure_service_keys(url, path)
    assert _roles(url, keys.producer, keys.admin) == ["producer", "admin"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    recorded = json.loads(path.read_text())
    assert recorded["producer"]["token"] == keys.producer and recorded["admin"]["token"] == keys.admin
    assert keys.producer not in repr(keys) and keys.admin not in repr(keys)

    again = ensure_service_keys(url, path)  # a second demo run on the same data root
    assert (again.producer, again.admin) == (keys.producer, keys.admin)
    engine = create_store_engine(url)
    try:
        assert len(list_keys(engine)) == 2
        revoke_key(engine, (split_token(keys.admin) or ("", ""))[0])
    finally:
        engine.dispose()
    path.chmod(0o644)
    renewed = ensure_service_keys(url, path)
    assert renewed.producer == keys.producer and renewed.admin != keys.admin
    assert _roles(url, renewed.admin) == ["admin"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "a loosened file is made owner-only again"


def test_the_session_gives_airflow_the_producer_key_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = ChainSession(tmp_path / "data")
    started: list[str] = []

    def step(name: str) -> Any:
        def record(*_args: Any, **_kwargs: Any) -> None:
            # Airflow's environment is read at migrate and start: the key must be in it by then.
            transport = json.loads(session.stack.environment()["AIRFLOW__OPENLINEAGE__TRANSPORT"])
            assert transport.get("auth", {}).get("type") == "api_key", name
            started.append(name)
        return record

    monkeypatch.setattr(session.lineage, "start", step("lineage"))
    monkeypatch.setattr(session.stack, "migrate", step("migrate"))
    monkeypatch.setattr(session.stack, "start", step("airflow"))
    monkeypatch.setattr(session.client, "wait_healthy", step("healthy"))
    monkeypatch.setattr(session.client, "wait_dags", step("dags"))
    session.start([])
    assert started == ["lineage", "migrate", "airflow", "healthy", "dags"]
    transport = json.loads(session.stack.environment()["AIRFLOW__OPENLINEAGE__TRANSPORT"])
    token = transport["auth"]["apiKey"]
    assert _roles(session.lineage.store_url(), token) == ["producer"]
    assert (session.data_root / "lineage" / KEYS_FILE).is_file()
    assert session.lineage.store_url() == f"sqlite:///{session.data_root / 'lineage' / 'lineage.db'}"


def test_the_service_process_honours_the_session_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHAINTRACE_DB_URL", raising=False)
    monkeypatch.delenv("CHAINTRACE_AUTH", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the repository
    service = LineageService(tmp_path / "data", free_port(), airflow_url="http://127.0.0.1:18080")
    try:
        service.start()
        assert httpx.get(f"{service.url}/api/v1/namespaces", timeout=10).status_code == 401
        # The web UI's run view links into the session's Airflow.
        ui = httpx.get(f"{service.url}/api/v1/ui/session", headers=service.headers(), timeout=10).json()
        assert ui["airflowUrl"] == "http://127.0.0.1:18080"
        reply = httpx.get(f"{service.url}/api/v1/namespaces", headers=service.headers(), timeout=10)
        assert reply.status_code == 200, reply.text
        producer = httpx.get(f"{service.url}/api/v1/namespaces", headers=service.headers("producer"),
                             timeout=10)
        assert producer.status_code == 403
    finally:
        service.stop()
