"""Who may call what: API keys (Authorization: Bearer ct_... or X-API-Key: ct_...) and per-route permissions.

Every route declares what it needs with ``dependencies=[requires(...)]`` (routers may declare it once
for all their routes). The auth layer resolves the caller's key to a
:class:`~lineage.governance.principal.Principal` and puts it on the request: 401 (with
``WWW-Authenticate``) when a non-public path is called without a valid key, and when events are written
without a producer key; ``requires`` answers 403 when the key's role lacks another permission. Roles:
producer (write events), reader (read, redacted above its clearance), consumer (download products),
admin (everything).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Literal

import orjson
from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from lineage.api.errors import ApiError
from lineage.governance.principal import ANONYMOUS, OPEN_MODE, PRINCIPAL_STATE_KEY, Principal, principal_of

if TYPE_CHECKING:
    from fastapi import FastAPI

    from lineage.api.routes_ingest import ASGIApp, Receive, Scope, Send
    from lineage.context import LineageContext

Permission = Literal["public", "write", "read", "consume", "admin"]

#: What each role may do. Admins may do everything.
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "producer": frozenset({"write"}),
    "reader": frozenset({"read"}),
    "consumer": frozenset({"consume"}),
    "admin": frozenset({"write", "read", "consume", "admin"}),
}


def requires(*permissions: Permission) -> Any:
    """A route dependency: the caller must hold one of ``permissions``."""
    if not permissions:
        raise ValueError("requires() needs at least one permission")

    def check(request: Request) -> None:
        if "public" in permissions:
            return
        principal = principal_of(request)
        if principal.role == "anonymous":
            raise ApiError(401, _MISSING)  # only on a public path, where the auth layer lets anyone in
        if not ROLE_PERMISSIONS.get(principal.role, frozenset()) & set(permissions):
            raise ApiError(403, f"a {principal.role} key may not do this; it needs one of: "
                                f"{', '.join(permissions)}")

    check.permissions = permissions  # type: ignore[attr-defined]  # read by the route-matrix test
    return Depends(check)


def permissions_of(route: APIRoute) -> list[tuple[str, ...]]:
    """The permissions of every ``requires`` on ``route`` (its own and its routers'), outermost first."""
    found: list[tuple[str, ...]] = []

    def walk(dependant: Dependant) -> None:
        for dependency in dependant.dependencies:
            permissions = getattr(dependency.call, "permissions", None)
            if permissions is not None:
                found.append(tuple(permissions))
            walk(dependency)

    walk(route.dependant)
    return found


# -- the OpenAPI description of the keys ---------------------------------------------------------------

BEARER_SCHEME = "bearerAuth"
HEADER_SCHEME = "apiKeyHeader"
_SECURITY_SCHEMES: dict[str, Any] = {
    BEARER_SCHEME: {
        "type": "http", "scheme": "bearer", "bearerFormat": "ct_<key id>_<secret>",
        "description": "An API key made with `chaintrace keys create --role ROLE --clearance LEVEL`.",
    },
    HEADER_SCHEME: {"type": "apiKey", "in": "header", "name": "X-API-Key",
                    "description": "The same API key in a header of its own."},
}
_AUTH_RESPONSES: dict[str, Any] = {
    "401": {"description": "No API key, or not a valid one (unknown, revoked or malformed)"},
    "403": {"description": "The key's role may not call this route"},
}


def install_openapi_security(app: FastAPI) -> None:
    """Describe the keys in ``app``'s OpenAPI document: the security schemes, and on every route that
    needs a key its ``security``, the permissions it needs and its 401/403 answers."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = base()
        schema.setdefault("components", {}).setdefault("securitySchemes", {}).update(_SECURITY_SCHEMES)
        for route in app.routes:
            if not isinstance(route, APIRoute) or not route.include_in_schema:
                continue
            needed = [p for p in permissions_of(route) if "public" not in p]
            operations = schema.get("paths", {}).get(route.path_format, {})
            for method in route.methods:
                operation = operations.get(method.lower())
                if operation is None:
                    continue
                if not needed:
                    operation["security"] = []
                    continue
                operation["security"] = [{BEARER_SCHEME: []}, {HEADER_SCHEME: []}]
                operation["x-permissions"] = [list(p) for p in needed]
                responses = operation.setdefault("responses", {})
                for status, answer in _AUTH_RESPONSES.items():
                    responses.setdefault(status, dict(answer))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


# -- the auth layer (pure ASGI, outermost: the ingest fast path sits inside it) -----------------------

#: Paths anyone may call: liveness, the API description and the web UI's page (it holds no data).
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/"})
#: Path prefixes anyone may call: the web UI's static assets (every data call they make needs a key).
PUBLIC_PREFIXES = ("/ui/",)
#: Paths the ingest fast path answers before FastAPI's routing (so before ``requires`` could run).
WRITE_PATHS = frozenset({"/api/v1/lineage", "/api/v1/lineage/batch"})


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key a request carries: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif lowered == b"x-api-key" and value.strip():
            return value.decode("latin-1").strip()
    return None


_MISSING = "this route needs an API key (Authorization: Bearer <key> or X-API-Key: <key>)"
_INVALID = "the API key is not valid (unknown, revoked or malformed)"
_CHALLENGE = b'Bearer realm="chaintrace"'
_CHALLENGE_INVALID = b'Bearer realm="chaintrace", error="invalid_token"'
_CHALLENGE_WRITE = b'Bearer realm="chaintrace", error="invalid_token", scope="write"'


class AuthLayer:
    """Puts the caller's principal on every HTTP request; 401 for a missing or invalid key.

    Never logs or echoes a token: messages say only that a key is missing or not valid. Known keys are
    answered from the access service's cache on the event loop; a cache miss asks the store in a
    worker thread, so a slow store never stalls the other requests.
    """

    def __init__(self, app: ASGIApp, context: LineageContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        principal: Principal | None
        if self.context.settings.auth == "off":
            principal = OPEN_MODE
        else:
            token = bearer_token(scope["headers"])
            principal = None if token is None else await self._principal(token)
            if principal is None and path not in PUBLIC_PATHS and not path.startswith(PUBLIC_PREFIXES):
                await _send_json(send, 401, {"code": 401, "message": _MISSING if token is None else _INVALID},
                                 [(b"www-authenticate", _CHALLENGE if token is None else _CHALLENGE_INVALID)])
                return
        if (path in WRITE_PATHS and scope["method"] == "POST" and principal is not None
                and "write" not in ROLE_PERMISSIONS.get(principal.role, frozenset())):
            # The governance contract: a write without a producer key is unauthenticated *as a writer*
            # (401 with a challenge), whatever else the key may do; other routes keep 403 for a role.
            await _send_json(send, 401, {"code": 401, "message":
                                         f"writing events needs a producer key; a {principal.role} key "
                                         "is not one"}, [(b"www-authenticate", _CHALLENGE_WRITE)])
            return
        state = scope.setdefault("state", {})
        state[PRINCIPAL_STATE_KEY] = principal if principal is not None else ANONYMOUS
        await self.app(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """No route takes WebSockets today; one that comes later needs a valid key too (fail closed)."""
        principal: Principal | None = OPEN_MODE
        if self.context.settings.auth != "off":
            token = bearer_token(scope["headers"])
            principal = None if token is None else await self._principal(token)
        if principal is None:
            await receive()  # websocket.connect; closing before accepting answers the handshake with 403
            await send({"type": "websocket.close", "code": 1008})
            return
        scope.setdefault("state", {})[PRINCIPAL_STATE_KEY] = principal
        await self.app(scope, receive, send)

    async def _principal(self, token: str) -> Principal | None:
        access = self.context.access
        hit, principal = access.cached(token)
        if hit:
            return principal
        return await asyncio.to_thread(access.authenticate, token)


async def _send_json(send: Send, status: int, body: dict[str, Any],
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = orjson.dumps(body)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
        *(headers or [])]})
    await send({"type": "http.response.body", "body": payload})
