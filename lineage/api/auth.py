"""Who may call what: API keys (Authorization: Bearer ct_...) and per-route permissions.

Every route declares what it needs with ``dependencies=[requires(...)]`` (routers may declare it once
for all their routes). The auth layer (implemented in issue 4) resolves the caller's key to a
:class:`~lineage.governance.principal.Principal` and puts it on the request; ``requires`` answers 401
when there is no valid key and 403 when the key's role lacks the permission.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import orjson
from fastapi import Depends, Request

from lineage.api.errors import ApiError
from lineage.governance.principal import ANONYMOUS, OPEN_MODE, PRINCIPAL_STATE_KEY, Principal, principal_of

if TYPE_CHECKING:
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

    def check(request: Request) -> None:
        if "public" in permissions:
            return
        principal = principal_of(request)
        if principal.role == "anonymous":
            raise ApiError(401, "this route needs an API key (Authorization: Bearer <key>)")
        if not ROLE_PERMISSIONS.get(principal.role, frozenset()) & set(permissions):
            raise ApiError(403, f"a {principal.role} key may not do this; it needs one of: "
                                f"{', '.join(permissions)}")

    check.permissions = permissions  # type: ignore[attr-defined]  # read by the route-matrix test
    return Depends(check)


# -- the auth layer (pure ASGI, outermost: the ingest fast path sits inside it) -----------------------

#: Paths anyone may call: liveness and the API description.
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
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
class AuthLayer:
    """Puts the caller's principal on every HTTP request; 401 for a missing or invalid key.

    Never logs or echoes a token: messages say only that a key is missing or not valid.
    """

    def __init__(self, app: ASGIApp, context: LineageContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        principal: Principal | None
        if self.context.settings.auth == "off":
            principal = OPEN_MODE
        else:
            token = bearer_token(scope["headers"])
            principal = self.context.access.authenticate(token) if token is not None else None
            if principal is None and path not in PUBLIC_PATHS:
                message = ("this route needs an API key (Authorization: Bearer <key>)" if token is None
                           else "the API key is not valid (unknown, revoked or malformed)")
                await _send_json(send, 401, {"code": 401, "message": message},
                                 [(b"www-authenticate", b'Bearer realm="chaintrace"')])
                return
        if (path in WRITE_PATHS and scope["method"] == "POST" and principal is not None
                and "write" not in ROLE_PERMISSIONS.get(principal.role, frozenset())):
            await _send_json(send, 403, {"code": 403, "message":
                                         f"a {principal.role} key may not write events; use a producer key"})
            return
        state = scope.setdefault("state", {})
        state[PRINCIPAL_STATE_KEY] = principal if principal is not None else ANONYMOUS
        await self.app(scope, receive, send)


async def _send_json(send: Send, status: int, body: dict[str, Any],
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = orjson.dumps(body)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
        *(headers or [])]})
    await send({"type": "http.response.body", "body": payload})
