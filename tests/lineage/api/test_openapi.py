"""The OpenAPI document is served and matches the routes the app really has."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient


def api_routes(app: Any) -> set[tuple[str, str]]:
    """(path, method) of every schema route, looking through FastAPI's included-router wrappers."""
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        candidates = [route] if isinstance(route, APIRoute) else list(
            getattr(route, "effective_route_contexts", lambda: [])()
        )
        for candidate in candidates:
            if candidate.include_in_schema:
                found.update((candidate.path, method) for method in candidate.methods)
    return found


def test_openapi_lists_exactly_the_routes(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    documented = {
        (path, method.upper())
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert documented == api_routes(client.app)
    for path in ("/api/v1/lineage", "/api/v1/lineage/batch"):
        assert (path, "POST") in documented
        assert "requestBody" in document["paths"][path]["post"]


def test_every_documented_get_answers_without_server_error(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    for path, operations in document["paths"].items():
        if "get" not in operations or "{" in path:
            continue
        response = client.get(path, params={"q": "x", "nodeId": "dataset:ns:missing"})
        assert response.status_code < 500, (path, response.status_code, response.text)
        assert response.status_code != 405, path
