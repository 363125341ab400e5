"""Names with slashes in URL paths (``/datasets/%2Fdata%2Fraw%2Fflights``).

Marquez clients percent-encode a dataset or namespace name into one path segment, so ``/`` inside a
name arrives as ``%2F``. ASGI servers (uvicorn, Starlette's TestClient) decode ``%2F`` into ``/`` in
``scope["path"]`` before routing, which splits the name over several segments and the route no
longer matches. :class:`EncodedSlashMiddleware` rebuilds the path from ``scope["raw_path"]`` with a
slash *inside* a segment turned into NUL; routes turn NUL back into ``/`` with :func:`decode_name`.
NUL is a safe stand-in because ingest rejects it in every name, so it never stands for itself.
"""

from __future__ import annotations

from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

#: What a ``/`` inside one path segment becomes in ``scope["path"]``.
SLASH_IN_SEGMENT = "\x00"


def decode_name(value: str) -> str:
    """A path parameter back to the name the client encoded (NUL -> ``/``)."""
    return value.replace(SLASH_IN_SEGMENT, "/")


def rebuild_path(raw_path: bytes) -> str:
    """``scope["path"]`` from the raw path, keeping each encoded segment one segment.

    Segments are decoded the way uvicorn decodes the whole path (UTF-8, undecodable bytes replaced),
    so names without ``%2F`` route exactly as before.
    """
    # The raw path is percent-encoded ASCII on the wire; latin-1 maps any stray byte one to one.
    segments = raw_path.decode("latin-1").split("/")
    return "/".join(unquote(segment).replace("/", SLASH_IN_SEGMENT) for segment in segments)


class EncodedSlashMiddleware:
    """Pure-ASGI middleware: route on the raw path when it carries an encoded slash."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            raw = scope.get("raw_path")
            if isinstance(raw, bytes) and (b"%2F" in raw or b"%2f" in raw):
                # A copy: the server may keep using its own scope dict.
                scope = {**scope, "path": rebuild_path(raw)}
        await self.app(scope, receive, send)
