"""GET /api/v1/audit: the governance audit log (admins only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from lineage.api.auth import requires
from lineage.api.errors import ApiError, json_response
from lineage.api.routes_read import MAX_LIMIT, instant_param
from lineage.context import LineageContext
from lineage.store.audit import AUDIT_KINDS

router = APIRouter(prefix="/api/v1", dependencies=[requires("admin")])


@router.get(
    "/audit", tags=["Governance"], summary="The governance audit log",
    description="Governance decisions (levels assigned, publications allowed or refused, accesses granted "
    "or denied, violations), newest first, with the reason. Filters: dataset `namespace` and `name`, "
    f"`kind` ({', '.join(AUDIT_KINDS)}), `subject` (key name or job), `since` (inclusive) and `until` "
    "(exclusive) as ISO-8601 date-times with a zone.",
    responses={400: {"description": "Unknown kind, or a time that is not ISO-8601 with a zone"}},
)
def list_audit(
    request: Request,
    namespace: str | None = None,
    name: str | None = None,
    kind: str | None = None,
    subject: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: Annotated[int, Query(ge=0, le=MAX_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    if kind is not None and kind not in AUDIT_KINDS:
        raise ApiError(400, f"kind must be one of {', '.join(AUDIT_KINDS)}; got {kind!r}")
    context: LineageContext = request.app.state.context
    entries, total = context.audit.query(
        namespace=namespace, name=name, kind=kind, subject=subject, since=instant_param("since", since),
        until=instant_param("until", until), limit=limit, offset=offset,
    )
    return json_response({"entries": entries, "totalCount": total})
