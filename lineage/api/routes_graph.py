"""GET /api/v1/lineage and /api/v1/column-lineage (Marquez's lineage graph read API).

Callers cleared for L4 get the graph's cached bytes as they are. For anyone else the graph is redacted
(:mod:`lineage.governance.redaction`): withheld datasets and columns stay in the graph as placeholder
nodes, so it keeps its node and edge counts; a placeholder ``nodeId`` may be used to start from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from lineage.api.auth import requires
from lineage.api.errors import ApiError
from lineage.api.routes_read import clearance_view, redacted
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


def _json(request: Request, produce: Callable[[str], bytes], node_id: str) -> Response:
    view = clearance_view(request)
    try:
        if view is None:
            return Response(produce(node_id), media_type="application/json")
        return redacted(view, orjson.loads(produce(view.resolve_node_id(node_id))))
    except BadNodeId as exc:
        raise ApiError(400, str(exc)) from exc
    except NodeNotFound as exc:
        raise ApiError(404, str(exc)) from exc


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
    return _json(request, lambda start: _graph(request).lineage(start, depth, direction), node_id)


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
    graph = _graph(request)
    return _json(request, lambda start: graph.column_lineage(start, depth, with_downstream), node_id)
