"""POST /api/v1/lineage and /api/v1/lineage/batch.

The two endpoints are the hot path (every task of every DAG run posts here), so they are answered by
:class:`IngestFastPath`, a plain ASGI layer in front of FastAPI: measured on this machine FastAPI's
routing, dependency and middleware stack cost more per request than parsing and validating the event.
The FastAPI routes below run the same code (:func:`answer_single`, :func:`answer_batch`); they document
the endpoints in OpenAPI and serve any request the fast path declines.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from lineage.api.auth import requires
from lineage.context import LineageContext
from lineage.service.batch_processes import MIN_BODY_BYTES
from lineage.service.ingest import (
    BodyError,
    batch_answer,
    decode_body,
    error_answer,
    parse_batch_limited,
    parse_json,
)

router = APIRouter(prefix="/api/v1", tags=["Lineage"], dependencies=[requires("write")])

SINGLE_PATH = "/api/v1/lineage"
BATCH_PATH = "/api/v1/lineage/batch"
_JSON_TYPES = ("application/json", "application/x-ndjson", "application/ndjson", "text/plain")

_EVENT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "$ref": "https://openlineage.io/spec/2-0-2/OpenLineage.json",
                    "description": "An OpenLineage 2-0-2 RunEvent, DatasetEvent or JobEvent. "
                    "May be sent with Content-Encoding: gzip.",
                }
            }
        },
    }
}
_BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            "application/x-ndjson": {"schema": {"type": "string", "description": "one event per line"}},
        },
    }
}

Answer = tuple[int, bytes]


async def read_limited(
    chunks: AsyncIterator[bytes], headers: Mapping[str, str], limit: int
) -> bytes:
    """The decoded request body; 413 early when it is over ``limit``, 415 for a non-JSON type."""
    content_type = headers.get("content-type")
    if content_type is not None:
        media = content_type.split(";", 1)[0].strip().lower()
        if not (media in _JSON_TYPES or media.endswith("+json")):
            raise BodyError(415, f"unsupported Content-Type {content_type!r}; send application/json")
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyError(413, f"request body is {declared} bytes; the limit is {limit}")
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise BodyError(413, f"request body exceeds the limit of {limit} bytes")
        parts.append(chunk)
    return decode_body(b"".join(parts), headers.get("content-encoding"), limit)


async def answer_single(context: LineageContext, body: bytes) -> Answer:
    try:
        event = parse_json(body)
    except BodyError as exc:
        return error_answer(exc.status, exc.message)
    if isinstance(event, list):
        return error_answer(400, "expected one event object; send arrays to /api/v1/lineage/batch")
    (result,) = await context.ingest.ingest([event])
    if not result.accepted:
        first = result.errors[0]
        where = first.path or "(event)"
        return error_answer(422, f"event does not conform to OpenLineage 2-0-2: {where}: {first.message}",
                            result.to_json()["errors"])
    answer = result.to_json()
    answer.pop("index")
    return 201, orjson.dumps(answer)


async def answer_batch(context: LineageContext, body: bytes) -> Answer:
    pool = context.batch_processes
    if pool is not None and len(body) >= MIN_BODY_BYTES:
        answered = await pool.answer(body)  # a child parses and stores it (see batch_processes)
        if answered is not None:
            return answered
    try:
        events = parse_batch_limited(body, context.settings.max_batch_events)
    except BodyError as exc:
        return error_answer(exc.status, exc.message)
    return batch_answer(await context.ingest.ingest(events))


_ANSWERS: dict[str, Callable[[LineageContext, bytes], Awaitable[Answer]]] = {
    SINGLE_PATH: answer_single,
    BATCH_PATH: answer_batch,
}
INGEST_PATHS = frozenset(_ANSWERS)


async def _answer(context: LineageContext, path: str, chunks: AsyncIterator[bytes],
                  headers: Mapping[str, str]) -> Answer:
    try:
        body = await read_limited(chunks, headers, context.settings.max_body_bytes)
    except BodyError as exc:
        return error_answer(exc.status, exc.message)
    return await _ANSWERS[path](context, body)


def _context(request: Request) -> LineageContext:
    context: LineageContext = request.app.state.context
    return context


async def _via_fastapi(request: Request) -> Response:
    status, body = await _answer(_context(request), request.url.path, request.stream(), request.headers)
    return Response(body, status_code=status, media_type="application/json")


_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Not JSON, or not an event"},
    413: {"description": "Body over the size limit (or too many events in a batch)"},
    415: {"description": "Unsupported content type or encoding"},
}


@router.post(
    "/lineage",
    status_code=201,
    summary="Record one OpenLineage event",
    openapi_extra=_EVENT_BODY,
    responses={
        201: {"description": "Stored (or already stored: status 'duplicate')"},
        422: {"description": "Breaks the OpenLineage 2-0-2 core schema; `errors` names the fields"},
        **_RESPONSES,
    },
)
async def post_lineage(request: Request) -> Response:
    return await _via_fastapi(request)


@router.post(
    "/lineage/batch",
    summary="Record many OpenLineage events (JSON array or NDJSON)",
    openapi_extra=_BATCH_BODY,
    responses={
        200: {"description": "Every event stored; one result per event"},
        207: {"description": "Some events rejected; valid ones stored; one result per event"},
        **_RESPONSES,
    },
)
async def post_lineage_batch(request: Request) -> Response:
    return await _via_fastapi(request)


Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class IngestFastPath:
    """Answers POSTs to the two ingest paths directly; passes everything else to the app."""

    def __init__(self, app: ASGIApp, context: LineageContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in _ANSWERS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}

        async def chunks() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return

        status, body = await _answer(self.context, scope["path"], chunks(), headers)
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())],
        })
        await send({"type": "http.response.body", "body": body})
