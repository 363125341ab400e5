"""POST /api/v1/lineage and /api/v1/lineage/batch."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from lineage.api.errors import error_response, json_response
from lineage.context import LineageContext
from lineage.service.ingest import BodyError, decode_body, parse_batch, parse_json

router = APIRouter(prefix="/api/v1", tags=["Lineage"])

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


def _context(request: Request) -> LineageContext:
    context: LineageContext = request.app.state.context
    return context


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing early (413) when it is over ``limit`` instead of buffering it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyError(413, f"request body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_content_type(request: Request) -> None:
    content_type = request.headers.get("content-type")
    if content_type is None:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media in _JSON_TYPES or media.endswith("+json"):
        return
    raise BodyError(415, f"unsupported Content-Type {content_type!r}; send application/json")


async def _body(request: Request) -> bytes:
    limit = _context(request).settings.max_body_bytes
    _check_content_type(request)
    raw = await _read_body(request, limit)
    return decode_body(raw, request.headers.get("content-encoding"), limit)


@router.post(
    "/lineage",
    status_code=201,
    summary="Record one OpenLineage event",
    openapi_extra=_EVENT_BODY,
    responses={
        201: {"description": "Stored (or already stored: status 'duplicate')"},
        400: {"description": "Not JSON, or not an event"},
        413: {"description": "Body over the size limit"},
        415: {"description": "Unsupported content type or encoding"},
        422: {"description": "Breaks the OpenLineage 2-0-2 core schema; `errors` names the fields"},
    },
)
async def post_lineage(request: Request) -> Response:
    try:
        event = parse_json(await _body(request))
    except BodyError as exc:
        return error_response(exc.status, exc.message)
    if isinstance(event, list):
        return error_response(400, "expected one event object; send arrays to /api/v1/lineage/batch")
    (result,) = await _context(request).ingest.ingest([event])
    if not result.accepted:
        first = result.errors[0]
        where = first.path or "(event)"
        return error_response(
            422,
            f"event does not conform to OpenLineage 2-0-2: {where}: {first.message}",
            result.to_json()["errors"],
        )
    body = result.to_json()
    body.pop("index")
    return json_response(body, 201)


@router.post(
    "/lineage/batch",
    summary="Record many OpenLineage events (JSON array or NDJSON)",
    openapi_extra=_BATCH_BODY,
    responses={
        200: {"description": "Every event stored; one result per event"},
        207: {"description": "Some events rejected; valid ones stored; one result per event"},
        400: {"description": "Body is not a JSON array nor NDJSON"},
        413: {"description": "Body over the size limit or too many events"},
    },
)
async def post_lineage_batch(request: Request) -> Response:
    context = _context(request)
    try:
        events = parse_batch(await _body(request), request.headers.get("content-type"))
    except BodyError as exc:
        return error_response(exc.status, exc.message)
    limit = context.settings.max_batch_events
    if len(events) > limit:
        return error_response(413, f"batch holds {len(events)} events; the limit is {limit}")
    results = await context.ingest.ingest(events)
    summary = {"created": 0, "duplicate": 0, "rejected": 0}
    for result in results:
        summary[result.status] += 1
    body = {**summary, "results": [r.to_json() for r in results]}
    return json_response(body, 207 if summary["rejected"] else 200)
