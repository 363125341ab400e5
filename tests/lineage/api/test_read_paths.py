"""The encoded-slash middleware and decode_name, as pure functions and over ASGI (no store needed)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from lineage.api.paths import EncodedSlashMiddleware, decode_name, rebuild_path


def test_rebuild_path_keeps_an_encoded_segment_whole() -> None:
    raw = b"/api/v1/namespaces/s3%3A%2F%2Fbucket/datasets/%2Fdata%2Fraw%2Fflights"
    assert rebuild_path(raw) == "/api/v1/namespaces/s3:\x00\x00bucket/datasets/\x00data\x00raw\x00flights"
    assert decode_name("\x00data\x00raw\x00flights") == "/data/raw/flights"
    # Lower-case hex and other escapes decode as uvicorn decodes them.
    assert rebuild_path(b"/a%2fb/%C3%A9t%C3%A9%202026") == "/a\x00b/été 2026"
    assert decode_name("plain.name") == "plain.name"


def echo_app() -> FastAPI:
    app = FastAPI()

    @app.get("/ns/{namespace}/ds/{dataset}")
    def echo(namespace: str, dataset: str) -> dict[str, Any]:
        return {"namespace": decode_name(namespace), "dataset": decode_name(dataset)}

    return app


@pytest.mark.parametrize("name", [
    "/data/raw/flights", "données/été 2026.csv", "a.b.c", "x'); DROP TABLE events;--", "<script>", "50%/x",
])
def test_names_with_slashes_route_through_the_middleware(name: str) -> None:
    with TestClient(EncodedSlashMiddleware(echo_app())) as client:
        response = client.get(f"/ns/{quote('s3://b', safe='')}/ds/{quote(name, safe='')}")
    assert response.status_code == 200, response.text
    assert response.json() == {"namespace": "s3://b", "dataset": name}


def test_without_the_middleware_an_encoded_slash_breaks_routing() -> None:
    """Why the middleware exists: the server decodes %2F before routing."""
    with TestClient(echo_app()) as client:
        assert client.get("/ns/a/ds/%2Fdata%2Fx").status_code == 404


def test_paths_without_encoded_slashes_are_left_alone() -> None:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    async def receive() -> Message:
        return {}

    async def send(message: Message) -> None:
        return None

    middleware = EncodedSlashMiddleware(app)
    scope: Scope = {"type": "http", "path": "/a b", "raw_path": b"/a%20b"}
    asyncio.run(middleware(scope, receive, send))
    assert seen[0] is scope
