"""Data-quality reports over HTTP: a DAG run's report and a dataset's quality history, JSON or HTML.

``GET /api/v1/reports/runs/{runId}`` (``.html`` suffix or ``?format=html`` for the page) and
``GET /api/v1/reports/datasets/{namespace}/{name}`` (``?format=html``; a name ending in ``.html`` with
no history of its own is read as the page of the name without it). Both are redacted by the caller's
clearance like every other read (:mod:`lineage.reports.redact`); the HTML is rendered from the
redacted JSON, so the page never shows more than the JSON would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import HTMLResponse, Response

from lineage.api.auth import requires
from lineage.api.errors import ApiError
from lineage.api.paths import decode_name
from lineage.context import LineageContext
from lineage.governance.principal import principal_of
from lineage.governance.redaction import ClearanceView
from lineage.reports import ReportNotFoundError, ReportService, render_dataset, render_run
from lineage.reports.redact import redact_dataset_report, redact_run_report
from lineage.reports.timeline import MAX_LIMIT

router = APIRouter(prefix="/api/v1/reports", dependencies=[requires("read")], tags=["Reports"])

HTML_SUFFIX = ".html"
Format = Annotated[Literal["json", "html"], Query(description="json (default) or a standalone HTML page")]
_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such run, or no gate result for the dataset"},
    400: {"description": "Invalid parameter"},
}
Redact = Callable[[dict[str, Any], ClearanceView], tuple[dict[str, Any], dict[str, str]]]


def _service(request: Request) -> ReportService:
    context: LineageContext = request.app.state.context
    return ReportService(context.engine)


def _view(request: Request) -> ClearanceView | None:
    principal = principal_of(request)
    if principal.sees_everything:
        return None
    context: LineageContext = request.app.state.context
    return context.classification.view(principal.clearance)


def _respond(body: dict[str, Any], view: ClearanceView | None, redact: Redact, html: bool,
             render: Callable[[dict[str, Any]], str]) -> Response:
    headers: dict[str, str] = {}
    if view is not None:
        body, headers = redact(body, view)
    if html:
        return HTMLResponse(render(body), headers=headers)
    return Response(orjson.dumps(body), media_type="application/json", headers=headers)


@router.get("/runs/{run_id}", summary="Quality report of a DAG run", responses=_RESPONSES)
def run_report(request: Request, run_id: str, format: Format = "json") -> Response:
    """Every gate of the run with its expectations (expected versus observed), row counts in and out
    per stage, quarantined batches and links to the GX Data Docs pages."""
    html = format == "html"
    if run_id.endswith(HTML_SUFFIX):  # run ids are UUIDs: the suffix can only ask for the page
        run_id, html = run_id[: -len(HTML_SUFFIX)], True
    try:
        body = _service(request).run(run_id)
    except ReportNotFoundError as exc:
        raise ApiError(404, exc.message) from exc
    return _respond(body, _view(request), redact_run_report, html, render_run)


@router.get("/datasets/{namespace}/{name}", summary="Quality history of a dataset", responses=_RESPONSES)
def dataset_report(
    request: Request,
    namespace: str,
    name: str,
    format: Format = "json",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Newest gate runs to include")] = 100,
    metric: Annotated[list[str] | None, Query(
        description="Charted metrics as <metric>:<column>, metric one of nullCount, distinctCount, min, max; "
                    "repeat for several (default: the columns whose counts moved)")] = None,
) -> Response:
    """Pass rate, row counts and the chosen column metrics per gate run, failed runs marked."""
    view = _view(request)
    ns, dataset = decode_name(namespace), decode_name(name)
    html = format == "html"
    candidates = [(dataset, html)]
    if dataset.endswith(HTML_SUFFIX):
        candidates.append((dataset[: -len(HTML_SUFFIX)], True))
    service = _service(request)
    for index, (candidate, as_html) in enumerate(candidates):
        key = (ns, candidate) if view is None else view.resolve(ns, candidate)
        try:
            body = service.dataset(*key, limit=limit, metrics=metric)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from exc
        except ReportNotFoundError as exc:
            if index == len(candidates) - 1:
                raise ApiError(404, exc.message) from exc
            continue
        return _respond(body, view, redact_dataset_report, as_html, render_dataset)
    raise AssertionError("unreachable: the last candidate returns or raises")
