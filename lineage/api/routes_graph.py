"""GET /api/v1/lineage and /api/v1/column-lineage (Marquez's lineage graph read API)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from lineage.api.auth import requires
from lineage.api.errors import ApiError
from lineage.context import LineageContext
from lineage.service.graph import MAX_DEPTH, BadNodeId, Direction, GraphService, NodeNotFound

router = APIRouter(prefix="/api/v1", dependencies=[requires("read")])

_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "Malformed nodeId, or depth out of range; body {code, message}"},
    404: {"description": "No such node in the store; body {code, message}"},
}

NodeIdParam = Annotated[
    str,
    Query(
        alias="nodeId",
        description="`dataset:<namespace>:<name>` or `job:<namespace>:<name>`; the namespace may itself "
        "contain ':' (e.g. `dataset:postgres://db:5432:public.orders`).",
    ),
]


def _graph(request: Request) -> GraphService:
    context: LineageContext = request.app.state.context
    return context.graph


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


@router.get(
    "/lineage",
    tags=["Lineage"],
    summary="Lineage graph around a dataset or job",
    description=(
        "Marquez's `GET /api/v1/lineage`. The starting jobs are the job itself, or every job that reads or "
        "writes the dataset. `depth` counts job hops (two jobs are one hop apart when they share a "
        "dataset); the graph holds the jobs reached plus all their input and output datasets, nodes sorted "
        "by id. `direction` (chaintrace extension, default `both`): `upstream` / `downstream` follow the "
        "data flow one way only and answer with the start node and what lies upstream / downstream of it."
    ),
    responses=_ERRORS,
)
def get_lineage(
    request: Request,
    node_id: NodeIdParam,
    depth: Annotated[int, Query(ge=0, le=MAX_DEPTH, description="Job hops to follow")] = 20,
    direction: Annotated[Direction, Query(description="both | upstream | downstream")] = "both",
) -> Response:
    try:
        return _json(_graph(request).lineage(node_id, depth, direction))
    except BadNodeId as exc:
        raise ApiError(400, str(exc)) from exc
    except NodeNotFound as exc:
        raise ApiError(404, str(exc)) from exc


@router.get(
    "/column-lineage",
    tags=["Lineage"],
    summary="Column-level lineage around a field, dataset or job",
    description=(
        "Marquez's `GET /api/v1/column-lineage`. `nodeId` is `datasetField:<namespace>:<dataset>:<field>`, "
        "`dataset:<namespace>:<name>` (all its fields) or `job:<namespace>:<name>` (all fields it writes). "
        "Follows column-lineage edges up to `depth` field hops upstream, and downstream too when "
        "`withDownstream`. Nodes are DATASET_FIELD; `data.inputFields` lists every direct input field "
        "with its transformations (type, subtype, description, masking); edges run input -> output."
    ),
    responses=_ERRORS,
)
def get_column_lineage(
    request: Request,
    node_id: NodeIdParam,
    depth: Annotated[int, Query(ge=0, le=MAX_DEPTH, description="Field hops to follow")] = 10,
    with_downstream: Annotated[bool, Query(alias="withDownstream")] = False,
) -> Response:
    try:
        return _json(_graph(request).column_lineage(node_id, depth, with_downstream))
    except BadNodeId as exc:
        raise ApiError(400, str(exc)) from exc
    except NodeNotFound as exc:
        raise ApiError(404, str(exc)) from exc
