"""Monitoring: the live stream (server-sent events), stored alerts and their webhook deliveries.

Readers below L4 get what the read API gives them: datasets above their clearance as placeholders,
and an alert about such a dataset without its message and details (an alert about a visible dataset
loses the columns above the clearance from its details).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response, StreamingResponse

from lineage.api.auth import requires
from lineage.api.errors import ApiError, json_response
from lineage.api.routes_read import MAX_LIMIT, clearance_view, instant_param
from lineage.governance.principal import principal_of
from lineage.governance.redaction import ClearanceView, redact
from lineage.monitoring.rules import ALERT_KINDS
from lineage.monitoring.store import deliveries_of, get_alert, query_alerts
from lineage.monitoring.stream import StreamFull, StreamHub, StreamItem, Subscription, comment, frame
from lineage.store.times import now

if TYPE_CHECKING:
    from lineage.monitoring.service import MonitoringService

router = APIRouter(prefix="/api/v1", tags=["Monitoring"])

STREAM_TYPES = {"events": "event", "alerts": "alert"}
WITHHELD_MESSAGE = "withheld: the alert is about a dataset above your clearance"
_RETRY_MS = 3_000


def monitoring_of(request: Request) -> MonitoringService:
    service = getattr(request.app.state.context, "monitoring", None)
    if service is None:
        raise ApiError(503, "monitoring is not enabled in this service")
    return service  # type: ignore[no-any-return]


def screen_alert(alert: dict[str, Any], view: ClearanceView) -> dict[str, Any]:
    """What of an alert a caller of ``view.clearance`` may see, before the structural redaction (which
    turns names into placeholders) runs over it."""
    dataset = alert.get("dataset")
    if not isinstance(dataset, dict):
        return alert
    key = (dataset["namespace"], dataset["name"])
    if key in view.datasets:
        return {**alert, "message": WITHHELD_MESSAGE, "details": {}}
    hidden = view.fields.get(key)
    details = alert.get("details")
    if not hidden or not isinstance(details, dict):
        return alert
    columns = details.get("columns")
    if not isinstance(columns, list):
        return alert
    kept = [c for c in columns if not (isinstance(c, dict) and c.get("field") in hidden)]
    if len(kept) == len(columns):
        return alert
    screened = {**details, "columns": kept, "columnsWithheld": len(columns) - len(kept)}
    screened.pop("reason", None)  # a violation's reason names its column
    return {**alert, "details": screened}


# -- the stream ---------------------------------------------------------------------------------------

def _stream_types(types: str) -> set[str]:
    chosen = {part.strip() for part in types.split(",") if part.strip()}
    unknown = chosen - STREAM_TYPES.keys()
    if not chosen or unknown:
        raise ApiError(400, f"types must be a comma-separated list of {', '.join(STREAM_TYPES)}; "
                            f"got {types!r}")
    return {STREAM_TYPES[part] for part in chosen}


def _encode(item: StreamItem, view: ClearanceView | None) -> bytes:
    if view is None:
        return item.encoded
    body, _ = redact(screen_alert(item.body, view) if item.type == "alert" else item.body, view)
    return frame(item.id, item.type, body)


def _position(hub: StreamHub, subscription: Subscription) -> bytes:
    """An ``id:`` line naming the item the subscriber has read up to, shown to it or not: the client's
    Last-Event-ID then resumes after everything its filter passed over (an id without data moves the
    client's last event id and dispatches nothing)."""
    item_id = hub.id_at(subscription.position)
    return b"id: %s\n" % item_id.encode() if item_id else b""


async def _frames(request: Request, service: MonitoringService, subscription: Subscription, lost: str | None,
                  kinds: set[str], namespace: str | None, max_seconds: float | None) -> AsyncIterator[bytes]:
    hub = service.hub
    principal = principal_of(request)
    classification = request.app.state.context.classification
    loop = asyncio.get_running_loop()
    lifetime = service.stream_max_s if max_seconds is None else min(max_seconds, service.stream_max_s)
    deadline = loop.time() + lifetime
    next_beat = loop.time() + service.heartbeat_s
    try:
        yield b"retry: %d\n" % _RETRY_MS + comment(f"connected {now()}")
        if lost is not None:
            yield b"event: reset\ndata: %s\n\n" % orjson.dumps({
                "lastEventId": lost, "message": "the stream no longer holds that id; items after it may "
                "have been missed (read them from the API); streaming from now on"})
        while True:
            subscription.wake.clear()
            items = hub.take(subscription)
            if items is None:
                yield b"event: dropped\ndata: %s\n\n" % orjson.dumps({
                    "message": "this client fell too far behind the stream and was dropped; reconnect "
                    "with Last-Event-ID to resume"})
                return
            chosen = [item for item in items
                      if item.type in kinds and (namespace is None or namespace in item.namespaces)]
            if chosen:
                view = None
                if not principal.sees_everything:
                    view = await asyncio.to_thread(classification.view, principal.clearance)
                yield b"".join(_encode(item, view) for item in chosen)
                next_beat = loop.time() + service.heartbeat_s
            moment = loop.time()
            if items and moment < deadline:
                continue  # more may wait
            if moment >= deadline:
                # The client reconnects (EventSource does by itself) and resumes from here.
                yield _position(hub, subscription) + b"\n"
                return
            try:
                await asyncio.wait_for(subscription.wake.wait(), max(min(next_beat, deadline) - moment, 0.0))
            except TimeoutError:
                if loop.time() >= next_beat:
                    yield _position(hub, subscription) + comment(f"heartbeat {now()}")
                    next_beat = loop.time() + service.heartbeat_s
    finally:
        hub.unsubscribe(subscription)


@router.get(
    "/stream", dependencies=[requires("read")], summary="Live stream of ingested events and alerts",
    description="Server-sent events (`text/event-stream`; send `Accept: text/event-stream`, as EventSource "
    "does). Each item has an `id` (`e<event id>` or `a<alert id>`), an `event` type (`event` or `alert`) "
    "and a JSON `data` line: an event's summary (eventType, eventTime, job, runId, inputs, outputs) or "
    "the alert as `GET /api/v1/alerts` shows it. `namespace` keeps items whose job or datasets are in "
    "that namespace; `types` chooses `events`, `alerts` or both (default). A comment line comes every "
    "15 s when nothing else does. Reconnecting with `Last-Event-ID` (or `lastEventId`) resumes after "
    "that item while the service's buffer still holds it; otherwise a `reset` event says items may have "
    "been missed. A client that falls a whole buffer behind gets a `dropped` event and is disconnected. "
    "The stream ends after 30 s (`maxSeconds`: sooner), with an `id` line naming how far it got, so that "
    "a service can stop without waiting on its streams: SSE clients reconnect by themselves and resume.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "The stream"},
               400: {"description": "An unknown type"},
               406: {"description": "The client does not accept text/event-stream"},
               503: {"description": "Too many subscribers"}},
)
async def stream(
    request: Request,
    namespace: str | None = None,
    types: str = "events,alerts",
    max_seconds: Annotated[float | None, Query(alias="maxSeconds", ge=0)] = None,
    last_event_id_param: Annotated[str | None, Query(alias="lastEventId", max_length=64)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    # The stream never ends by itself: a client that did not ask for one (a crawler, a plain GET of
    # every route) gets an answer instead of a connection that stays open forever.
    if "text/event-stream" not in (accept or ""):
        raise ApiError(406, "GET /api/v1/stream is a server-sent event stream: send "
                            "'Accept: text/event-stream' (EventSource and SSE clients do)")
    kinds = _stream_types(types)
    service = monitoring_of(request)
    resume = last_event_id or last_event_id_param
    try:
        subscription, lost = service.hub.subscribe(asyncio.get_running_loop(), resume)
    except StreamFull as exc:
        raise ApiError(503, str(exc)) from exc
    body = _frames(request, service, subscription, resume if lost else None, kinds, namespace or None,
                   max_seconds)
    return StreamingResponse(body, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# -- alerts -------------------------------------------------------------------------------------------

@router.get(
    "/alerts", dependencies=[requires("read")], summary="Stored alerts",
    description="Alerts raised by the rules of the alert rules file, newest first, with `totalCount`. "
    f"Filters: `rule` (its name), `kind` ({', '.join(ALERT_KINDS)}), `since` (raised at or after, an "
    "ISO-8601 date-time with a zone).",
    responses={400: {"description": "Unknown kind, or a time that is not ISO-8601 with a zone"}},
)
def list_alerts(
    request: Request,
    rule: str | None = None,
    kind: str | None = None,
    since: str | None = None,
    limit: Annotated[int, Query(ge=0, le=MAX_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    if kind is not None and kind not in ALERT_KINDS:
        raise ApiError(400, f"kind must be one of {', '.join(ALERT_KINDS)}; got {kind!r}")
    instant = instant_param("since", since)
    service = monitoring_of(request)
    alerts, total = query_alerts(service.engine, rule=rule, kind=kind, since=instant, limit=limit,
                                 offset=offset)
    view = clearance_view(request)
    if view is None:
        return json_response({"alerts": alerts, "totalCount": total})
    body, headers = redact({"alerts": [screen_alert(a, view) for a in alerts], "totalCount": total}, view)
    return Response(orjson.dumps(body), media_type="application/json", headers=headers)


@router.get(
    "/alerts/{alert_id}/deliveries", dependencies=[requires("admin")],
    summary="Webhook deliveries of an alert",
    description="Every attempt to POST the alert to a webhook, oldest first: the webhook (scheme, host "
    "and port, and the first hex digits of the URL's SHA-256), the attempt number, when, the HTTP status "
    "(none when there was no answer), whether it was delivered, the error, and its `state`: `queued` (owed, "
    "not tried yet), `sending` (under way), `delivered`, `retry` (failed; another attempt is due, also "
    "after a restart of the service) or `failed` (given up).",
    responses={404: {"description": "No such alert"}},
)
def alert_deliveries(request: Request, alert_id: int) -> Response:
    service = monitoring_of(request)
    if get_alert(service.engine, alert_id) is None:
        raise ApiError(404, f"alert {alert_id} not found")
    deliveries = deliveries_of(service.engine, alert_id)
    return json_response({"alert": alert_id, "deliveries": deliveries, "totalCount": len(deliveries)})
