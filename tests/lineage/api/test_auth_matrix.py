"""Every route against every kind of caller: 401 without a valid key, 403 when the role lacks the
permission, neither when it has it.

The routes are read from ``create_app(...)`` when the test runs, so routes added later are covered
without touching this file; each route's permissions come from its ``requires`` dependency (the
``permissions`` attribute of the dependency callable), and a route without one fails unless its path
is in ``PUBLIC_PATHS``. Which role may do what is written down here, independently of the code.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi import WebSocket, WebSocketDisconnect
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import text
from starlette.routing import Mount, Route

from lineage.api.app import create_app
from lineage.api.auth import PUBLIC_PATHS
from lineage.api.auth import permissions_of as requires_permissions
from lineage.context import LineageContext
from lineage.governance.principal import principal_of
from lineage.settings import LineageSettings
from lineage.store.keys import create_key, revoke_key

#: The specification (issue 4): what each role may do.
GRANTS: dict[str, set[str]] = {
    "producer": {"write"},
    "reader": {"read"},
    "consumer": {"consume"},
    "admin": {"write", "read", "consume", "admin"},
}
KNOWN_PERMISSIONS = {"public", "write", "read", "consume", "admin"}
# Callers without a valid key, and callers with a key of a role.
UNAUTHENTICATED = ("no key", "malformed key", "unknown key", "revoked key")
ROLE_CALLERS = {"producer": "producer", "reader L1": "reader", "reader L4": "reader",
                "consumer": "consumer", "admin": "admin"}
CALLERS = (*UNAUTHENTICATED, *ROLE_CALLERS)
INGEST_PATHS = ("/api/v1/lineage", "/api/v1/lineage/batch")


@dataclass
class Matrix:
    context: LineageContext
    client: TestClient
    headers: dict[str, dict[str, str]]  # caller -> request headers
    tokens: list[str]  # every token made, to check none is echoed


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    """One SQLite store with a key of every kind; a client that sends no key unless told."""
    root: Path = tmp_path_factory.mktemp("auth-matrix")
    context = LineageContext.build(LineageSettings(db_url=f"sqlite:///{root / 'lineage.db'}", data_root=root))
    engine = context.engine

    def token(role: str, clearance: str = "L4") -> str:
        return create_key(engine, name=f"matrix-{role}-{clearance}", role=role, clearance=clearance)[1]

    revoked_key, revoked = create_key(engine, name="matrix-revoked", role="admin", clearance="L4")
    revoke_key(engine, revoked_key.key_id)
    tokens = {
        "malformed key": "not-a-chaintrace-key",
        "unknown key": f"ct_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}",
        "revoked key": revoked,
        "producer": token("producer", "L1"),
        "reader L1": token("reader", "L1"),
        "reader L4": token("reader", "L4"),
        "consumer": token("consumer", "L2"),
        "admin": token("admin"),
    }
    headers: dict[str, dict[str, str]] = {"no key": {}}
    headers.update({caller: {"Authorization": f"Bearer {value}"} for caller, value in tokens.items()})
    with TestClient(create_app(context), raise_server_exceptions=False) as client:
        yield Matrix(context, client, headers, list(tokens.values()))


def api_routes(app: Any) -> list[tuple[str, str, list[tuple[str, ...]]]]:
    """(path, method, permissions) of every APIRoute of the app."""
    rows = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            for method in sorted(route.methods):
                rows.append((route.path_format, method, requires_permissions(route)))
    return rows


def concrete(path: str) -> str:
    """A requestable path: every ``{param}`` (or ``{param:path}``) filled with a made-up name."""
    return re.sub(r"\{[^}]+\}", "matrix-missing", path)


def expected(caller: str, path: str, permissions: list[tuple[str, ...]]) -> str:
    """"401", "403" or "ok" (neither) for ``caller`` on a route needing ``permissions``."""
    if path in PUBLIC_PATHS or any("public" in p for p in permissions):
        return "ok"
    if caller in UNAUTHENTICATED:
        return "401"
    role = ROLE_CALLERS[caller]
    if path in INGEST_PATHS and ("write",) in permissions and not GRANTS[role] & {"write"}:
        return "401"  # the governance contract: a write without a producer key is a 401
    # Every requires on the route must be satisfied (FastAPI runs them all).
    return "ok" if all(GRANTS[role] & set(p) for p in permissions) else "403"


def call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> Any:
    if method in ("POST", "PUT", "PATCH"):
        return client.request(method, path, headers={**headers, "Content-Type": "application/json"},
                              content=b"{}")
    return client.request(method, path, headers=headers)


def test_every_route_declares_its_permissions(matrix: Matrix) -> None:
    rows = api_routes(matrix.client.app)
    assert len(rows) >= 20, "the app's routes were not found"
    undeclared = [f"{method} {path}" for path, method, perms in rows
                  if not perms and path not in PUBLIC_PATHS]
    assert not undeclared, f"routes without a requires(...) dependency: {undeclared}"
    unknown = [(path, perms) for path, _m, perms in rows for p in perms if not set(p) <= KNOWN_PERMISSIONS]
    assert not unknown, f"routes requiring unknown permissions: {unknown}"
    for path in INGEST_PATHS:
        assert (path, "POST", [("write",)]) in rows


@pytest.mark.parametrize("caller", CALLERS)
def test_route_matrix(matrix: Matrix, caller: str) -> None:
    headers = matrix.headers[caller]
    wrong: list[str] = []
    for path, method, permissions in api_routes(matrix.client.app):
        want = expected(caller, path, permissions)
        reply = call(matrix.client, method, concrete(path), headers)
        got = str(reply.status_code) if reply.status_code in (401, 403) else "ok"
        if got != want:
            wrong.append(f"{method} {path} {permissions}: want {want}, "
                         f"got {reply.status_code} {reply.text[:200]}")
            continue
        if got in ("401", "403"):
            body = reply.json()
            assert body["code"] == reply.status_code and body["message"], body
        if got == "401":
            assert reply.headers.get("www-authenticate", "").startswith("Bearer"), (method, path)
        assert not any(token in reply.text for token in matrix.tokens), f"{method} {path} echoes a key"
    assert not wrong, f"{caller}:\n" + "\n".join(wrong)


def test_other_routes_outside_the_public_paths_need_a_key(matrix: Matrix) -> None:
    """Plain Starlette routes and mounts (the API description, a UI) are public only when listed."""
    for route in matrix.client.app.routes:
        if isinstance(route, APIRoute) or not isinstance(route, Route | Mount):
            continue
        path = concrete(route.path)
        reply = matrix.client.get(path or "/")
        if route.path in PUBLIC_PATHS:
            assert reply.status_code not in (401, 403), route.path
        else:
            assert reply.status_code == 401, (route.path, reply.status_code)


def _event(job: str) -> dict[str, Any]:
    return {
        "eventType": "START", "eventTime": "2026-01-01T00:00:00Z",
        "producer": "https://github.com/chaintrace/chaintrace/tests/auth-matrix",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": "01234567-89ab-4def-8123-456789abcdef"},
        "job": {"namespace": "auth-matrix", "name": job},
    }


def _stored(context: LineageContext) -> int:
    with context.engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM events")).scalar_one())


@pytest.mark.parametrize("path", INGEST_PATHS)
@pytest.mark.parametrize("caller", CALLERS)
def test_the_ingest_fast_path_stores_events_of_write_keys_only(
    matrix: Matrix, caller: str, path: str
) -> None:
    """The two ingest POSTs are answered before FastAPI's routing: the auth layer guards them itself."""
    event = _event(f"{caller}-{path}".replace(" ", "-").replace("/", "_"))
    body = orjson.dumps([event] if path.endswith("batch") else event)
    before = _stored(matrix.context)
    reply = matrix.client.post(path, content=body,
                               headers={**matrix.headers[caller], "Content-Type": "application/json"})
    want = expected(caller, path, [("write",)])
    if want == "ok":
        assert reply.status_code in (200, 201), reply.text
        assert _stored(matrix.context) == before + 1
    else:
        assert reply.status_code == int(want), reply.text
        assert _stored(matrix.context) == before, "a refused event was stored"


def test_a_key_in_the_x_api_key_header_counts_like_a_bearer_key(matrix: Matrix) -> None:
    token = matrix.headers["reader L4"]["Authorization"].removeprefix("Bearer ")
    assert matrix.client.get("/api/v1/namespaces", headers={"X-API-Key": token}).status_code == 200
    assert matrix.client.post("/api/v1/lineage", headers={"X-API-Key": token},
                              content=orjson.dumps(_event("x-api-key"))).status_code == 401
    assert matrix.client.get("/api/v1/namespaces", headers={"X-API-Key": "ct_0_nope"}).status_code == 401
    # A key under another scheme is no bearer key.
    assert matrix.client.get("/api/v1/namespaces",
                             headers={"Authorization": f"Basic {token}"}).status_code == 401


def test_the_openapi_document_describes_the_keys(matrix: Matrix) -> None:
    document = matrix.client.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert {"type": "http", "scheme": "bearer"}.items() <= next(
        s for s in schemes.values() if s["type"] == "http").items()
    assert any(s["type"] == "apiKey" and s["name"] == "X-API-Key" and s["in"] == "header"
               for s in schemes.values())
    for path, method, permissions in api_routes(matrix.client.app):
        operation = document["paths"][path][method.lower()]
        if path in PUBLIC_PATHS:
            assert operation.get("security") == [], path
            continue
        assert {name for option in operation["security"] for name in option} == set(schemes), path
        assert operation["x-permissions"] == [list(p) for p in permissions], path
        assert {"401", "403"} <= set(operation["responses"]), path


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_keys_are_looked_up_in_a_postgresql_store(context: LineageContext) -> None:
    _key, reader = create_key(context.engine, name="pg-reader", role="reader", clearance="L2")
    producer_key, producer = create_key(context.engine, name="pg-producer", role="producer")

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    with TestClient(create_app(context)) as client:
        assert client.get("/api/v1/namespaces", headers=bearer(reader)).status_code == 200
        assert client.get("/api/v1/namespaces", headers=bearer(producer)).status_code == 403
        reply = client.post("/api/v1/lineage", content=orjson.dumps(_event("pg")), headers=bearer(producer))
        assert reply.status_code == 201, reply.text
        revoke_key(context.engine, producer_key.key_id)
        context.access.forget()  # as if key_cache_s had passed
        reply = client.post("/api/v1/lineage", content=orjson.dumps(_event("pg-2")), headers=bearer(producer))
        assert reply.status_code == 401
        wrong = reader[:-4] + ("aaaa" if not reader.endswith("aaaa") else "bbbb")
        assert client.get("/api/v1/namespaces", headers=bearer(wrong)).status_code == 401


def test_websockets_need_a_valid_key_too(tmp_path: Path) -> None:
    """No route takes WebSockets yet: one added later must not bypass the keys."""
    settings = LineageSettings(db_url=f"sqlite:///{tmp_path / 'ws.db'}", data_root=tmp_path)
    context = LineageContext.build(settings)
    app = create_app(context)

    @app.websocket("/ws-probe")
    async def probe(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(principal_of(websocket).role)
        await websocket.close()

    _key, reader = create_key(context.engine, name="ws-reader", role="reader")
    with TestClient(app) as client:
        for headers in ({}, {"Authorization": "Bearer ct_000000000000_nope"}):
            with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/ws-probe",
                                                                                        headers=headers):
                pass
            assert refused.value.code == 1008
        with client.websocket_connect("/ws-probe", headers={"Authorization": f"Bearer {reader}"}) as ws:
            assert ws.receive_text() == "reader"
