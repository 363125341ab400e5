"""Governance routes: why a column or dataset has its classification level, and current violations.

Answers are redacted by the caller's clearance like every read (:mod:`lineage.governance.redaction`):
a withheld dataset or column keeps its levels but shows as a placeholder, in the path as well.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from lineage.api.auth import requires
from lineage.api.errors import ApiError, json_response
from lineage.api.routes_read import MAX_LIMIT, clearance_view, redacted
from lineage.context import LineageContext
from lineage.service.classification import ClassificationService
from lineage.service.graph import BadNodeId, NodeNotFound

router = APIRouter(prefix="/api/v1", dependencies=[requires("read")])

_LEVEL = {"type": "string", "enum": ["L1", "L2", "L3", "L4"], "nullable": True}
_EXAMPLE_FIELD: dict[str, Any] = {
    "nodeId": "datasetField:file:/data/analysis/stops:race", "type": "DATASET_FIELD",
    "namespace": "file", "dataset": "/data/analysis/stops", "field": "race",
    "declaredLevel": "L2", "propagatedLevel": "L3", "effectiveLevel": "L3", "violation": True,
    "reason": "policy violation: declared L2, but L3 is carried in through 1 column-lineage edge(s) that "
              "do not lower (neither masking nor a k-safe aggregate)",
    "path": [
        {"step": "column", "nodeId": "datasetField:file:/data/analysis/stops:race", "namespace": "file",
         "dataset": "/data/analysis/stops", "field": "race", "declaredLevel": "L2", "effectiveLevel": "L3",
         "declaredHere": False},
        {"step": "edge", "origin": "datasetField:file:/data/raw/stops:race",
         "destination": "datasetField:file:/data/analysis/stops:race",
         "transformations": [
             {"type": "DIRECT", "subtype": "IDENTITY", "masking": False, "description": None}],
         "lowers": False,
         "why": "not masking (DIRECT/IDENTITY) and the output has no disclosureControl facet"},
        {"step": "column", "nodeId": "datasetField:file:/data/raw/stops:race", "namespace": "file",
         "dataset": "/data/raw/stops", "field": "race", "declaredLevel": "L3", "effectiveLevel": "L3",
         "declaredHere": True},
    ],
    "inputs": [],
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed nodeId; body {code, message}"},
    404: {"description": "No such dataset or column in the store; body {code, message}"},
}


def _classification(request: Request) -> ClassificationService:
    context: LineageContext = request.app.state.context
    return context.classification


def _respond(request: Request, body: dict[str, Any]) -> Response:
    view = clearance_view(request)
    return json_response(body) if view is None else redacted(view, body)


@router.get(
    "/classification",
    tags=["Governance"],
    summary="Explain the classification level of a column or dataset",
    description=(
        "`nodeId=datasetField:<namespace>:<dataset>:<field>` answers the column's `declaredLevel` (the "
        "producer's `tags` facet entry with key `classification`), `propagatedLevel` (the highest level its "
        "inputs carry in through column-lineage edges that do not lower), `effectiveLevel` (the higher of "
        "the two; null when unclassified, which access treats as L1) and `violation` (declared below what "
        "is carried in). `path` is the chain that set the level: from the column upstream, alternating "
        "`column` and `edge` steps (each edge with its transformations, `lowers` and `why`), to the column "
        "that declares it (`declaredHere`). An edge lowers when it masks or leads into a k-safe aggregate "
        "(`disclosureControl` facet with minRowsPerCell >= the policy's k). `inputs` lists every direct "
        "input. `nodeId=dataset:<namespace>:<name>` answers the dataset's level (the highest of its columns "
        "and its own tag) and each column's levels. Namespaces may contain ':'. Parts above the caller's "
        "clearance are shown as placeholders (see `withheld`)."
    ),
    responses={200: {"description": "The explanation", "content": {"application/json": {
        "example": _EXAMPLE_FIELD,
        "schema": {"type": "object", "properties": {
            "nodeId": {"type": "string"}, "declaredLevel": _LEVEL, "propagatedLevel": _LEVEL,
            "effectiveLevel": _LEVEL, "violation": {"type": "boolean"}, "reason": {"type": "string"},
            "path": {"type": "array", "items": {"type": "object"}},
            "inputs": {"type": "array", "items": {"type": "object"}},
            "fields": {"type": "array", "items": {"type": "object"}, "description": "dataset nodes only"},
        }}}}}, **_ERRORS},
)
def get_classification(
    request: Request,
    node_id: Annotated[str, Query(alias="nodeId", description=(
        "`datasetField:<namespace>:<dataset>:<field>` or `dataset:<namespace>:<name>`"))],
) -> Response:
    view = clearance_view(request)
    start = node_id if view is None else view.resolve_node_id(node_id)
    try:
        body = _classification(request).explain(start)
    except BadNodeId as exc:
        raise ApiError(400, str(exc)) from exc
    except NodeNotFound as exc:
        raise ApiError(404, str(exc)) from exc
    return json_response(body) if view is None else redacted(view, body)


@router.get(
    "/classification/violations",
    tags=["Governance"],
    summary="List current classification violations",
    description=(
        "Every column whose declared level is lower than the level its inputs carry in through "
        "column-lineage edges that neither mask nor lead into a k-safe aggregate, sorted by nodeId. Each "
        "entry has the column's nodeId, namespace, dataset, field, declaredLevel, propagatedLevel, "
        "effectiveLevel and a reason; `GET /api/v1/classification?nodeId=...` gives the path."
    ),
    responses={200: {"description": "`{violations: [...], totalCount}`"},
               400: {"description": "Invalid limit or offset"}},
)
def list_violations(
    request: Request,
    limit: Annotated[int, Query(ge=0, le=MAX_LIMIT, description="Results to return, from offset")] = 100,
    offset: Annotated[int, Query(ge=0, description="Results to skip")] = 0,
) -> Response:
    found = _classification(request).violations()
    return _respond(request, {"violations": found[offset : offset + limit], "totalCount": len(found)})
