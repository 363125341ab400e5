"""Marquez's read API (GET /api/v1/...): same paths, parameters and JSON shapes as Marquez.

Name path parameters go through :func:`decode_name` so that names with ``/`` (sent as ``%2F``, see
:mod:`lineage.api.paths`) round-trip. Handlers are plain ``def``: FastAPI runs them in its thread pool,
so blocking database reads never stall the event loop.

Every answer is redacted by the caller's clearance (:mod:`lineage.governance.redaction`); a caller
cleared for L4 gets the answer as it always was, with no extra work. Dataset routes also accept the
placeholder name of a withheld dataset (a client following a placeholder gets the placeholder back).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from lineage.api.auth import requires
from lineage.api.errors import ApiError, json_response
from lineage.api.paths import decode_name
from lineage.context import LineageContext
from lineage.governance.principal import principal_of
from lineage.governance.redaction import ClearanceView, Key, redact
from lineage.service.reads import NotFoundError, ReadService, parse_instant

router = APIRouter(prefix="/api/v1", dependencies=[requires("read")])

MAX_LIMIT = 10_000

Limit = Annotated[int, Query(ge=0, le=MAX_LIMIT, description="Results to return, from offset")]
Offset = Annotated[int, Query(ge=0, description="Results to skip")]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found (Marquez error body)"}}
_BAD_REQUEST: dict[int | str, dict[str, Any]] = {400: {"description": "Invalid parameter"}}


def _reads(request: Request) -> ReadService:
    context: LineageContext = request.app.state.context
    return context.reads


def clearance_view(request: Request) -> ClearanceView | None:
    """What the caller may not see; None for a caller cleared for everything (nothing to redact)."""
    principal = principal_of(request)
    if principal.sees_everything:
        return None
    context: LineageContext = request.app.state.context
    return context.classification.view(principal.clearance)


def redacted(view: ClearanceView, body: Any, also: Iterable[Key] = ()) -> Response:
    """``body`` redacted for ``view`` (``also``: withheld datasets left out before the answer was made)."""
    out, headers = redact(body, view, also)
    return Response(orjson.dumps(out), media_type="application/json", headers=headers)


def _answer(request: Request, produce: Callable[[], dict[str, Any]], *, view: ClearanceView | None = None,
            fragments: bool = False) -> Response:
    view = view or clearance_view(request)
    try:
        body = produce()
    except NotFoundError as exc:
        raise ApiError(404, exc.message) from exc
    if view is None:
        return json_response(body)
    if fragments:  # stored JSON spliced in as orjson.Fragment: parse it to redact it
        body = orjson.loads(orjson.dumps(body))
    return redacted(view, body)


def _dataset_key(view: ClearanceView | None, namespace: str, dataset: str) -> tuple[str, str]:
    ns, name = decode_name(namespace), decode_name(dataset)
    return (ns, name) if view is None else view.resolve(ns, name)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    """Marquez's enum parameters are case-insensitive; anything else is a 400."""
    folded = value.strip().lower()
    if folded not in allowed:
        raise ApiError(400, f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return folded


def instant_param(name: str, value: str | None) -> str | None:
    """A time query parameter as stored (UTC); None when absent or blank; 400 naming it otherwise."""
    # The Marquez web UI sends ``before=&after=`` when no bound is set: empty means no bound.
    if value is None or not value.strip():
        return None
    try:
        return parse_instant(value)
    except (ValueError, OverflowError) as exc:
        raise ApiError(400, f"{name} is not an ISO-8601 date-time with a time zone: {value!r}") from exc


# -- namespaces ------------------------------------------------------------------------------------


@router.get("/namespaces", tags=["Namespaces"], summary="List namespaces", responses=_BAD_REQUEST)
def list_namespaces(request: Request, limit: Limit = 100, offset: Offset = 0) -> Response:
    return _answer(request, lambda: _reads(request).list_namespaces(limit, offset))


@router.get("/namespaces/{namespace}", tags=["Namespaces"], summary="Get a namespace", responses=_NOT_FOUND)
def get_namespace(request: Request, namespace: str) -> Response:
    return _answer(request, lambda: _reads(request).get_namespace(decode_name(namespace)))


# -- datasets --------------------------------------------------------------------------------------


@router.get("/namespaces/{namespace}/datasets", tags=["Datasets"], summary="List datasets of a namespace",
            responses={**_NOT_FOUND, **_BAD_REQUEST})
def list_datasets(request: Request, namespace: str, limit: Limit = 100, offset: Offset = 0) -> Response:
    return _answer(request, lambda: _reads(request).list_datasets(decode_name(namespace), limit, offset))


@router.get("/namespaces/{namespace}/datasets/{dataset}", tags=["Datasets"], summary="Get a dataset",
            responses=_NOT_FOUND)
def get_dataset(request: Request, namespace: str, dataset: str) -> Response:
    view = clearance_view(request)
    key = _dataset_key(view, namespace, dataset)
    return _answer(request, lambda: _reads(request).get_dataset(*key), view=view)


@router.get("/namespaces/{namespace}/datasets/{dataset}/versions", tags=["Datasets"],
            summary="List versions of a dataset, newest first", responses={**_NOT_FOUND, **_BAD_REQUEST})
def list_dataset_versions(
    request: Request, namespace: str, dataset: str, limit: Limit = 100, offset: Offset = 0
) -> Response:
    view = clearance_view(request)
    key = _dataset_key(view, namespace, dataset)
    return _answer(request, lambda: _reads(request).list_dataset_versions(*key, limit, offset), view=view)


@router.get("/namespaces/{namespace}/datasets/{dataset}/versions/{version}", tags=["Datasets"],
            summary="Get a version of a dataset", responses=_NOT_FOUND)
def get_dataset_version(request: Request, namespace: str, dataset: str, version: str) -> Response:
    view = clearance_view(request)
    key = _dataset_key(view, namespace, dataset)
    return _answer(request, lambda: _reads(request).get_dataset_version(*key, version), view=view)


# -- jobs and runs ---------------------------------------------------------------------------------


@router.get("/namespaces/{namespace}/jobs", tags=["Jobs"], summary="List jobs of a namespace",
            responses={**_NOT_FOUND, **_BAD_REQUEST})
def list_jobs(request: Request, namespace: str, limit: Limit = 100, offset: Offset = 0) -> Response:
    return _answer(request, lambda: _reads(request).list_jobs(decode_name(namespace), limit, offset))


@router.get("/namespaces/{namespace}/jobs/{job}", tags=["Jobs"], summary="Get a job", responses=_NOT_FOUND)
def get_job(request: Request, namespace: str, job: str) -> Response:
    return _answer(request, lambda: _reads(request).get_job(decode_name(namespace), decode_name(job)))


@router.get("/namespaces/{namespace}/jobs/{job}/versions", tags=["Jobs"],
            summary="List versions of a job, newest first", responses={**_NOT_FOUND, **_BAD_REQUEST})
def list_job_versions(
    request: Request, namespace: str, job: str, limit: Limit = 100, offset: Offset = 0
) -> Response:
    return _answer(request, lambda: _reads(request).list_job_versions(
        decode_name(namespace), decode_name(job), limit, offset))


@router.get("/namespaces/{namespace}/jobs/{job}/versions/{version}", tags=["Jobs"],
            summary="Get a version of a job", responses=_NOT_FOUND)
def get_job_version(request: Request, namespace: str, job: str, version: str) -> Response:
    return _answer(request, lambda: _reads(request).get_job_version(
        decode_name(namespace), decode_name(job), version))


@router.get("/namespaces/{namespace}/jobs/{job}/runs", tags=["Jobs"],
            summary="List runs of a job, newest first", responses={**_NOT_FOUND, **_BAD_REQUEST})
def list_runs(request: Request, namespace: str, job: str, limit: Limit = 100, offset: Offset = 0) -> Response:
    return _answer(request, lambda: _reads(request).list_runs(
        decode_name(namespace), decode_name(job), limit, offset))


@router.get("/jobs/runs/{id}", tags=["Jobs"], summary="Get a run", responses=_NOT_FOUND)
def get_run(request: Request, id: str) -> Response:
    return _answer(request, lambda: _reads(request).get_run(id))


@router.get("/jobs/runs/{id}/facets", tags=["Jobs"], summary="Facets of a run, or the job facets it saw",
            responses={**_NOT_FOUND, **_BAD_REQUEST})
def get_run_facets(
    request: Request,
    id: str,
    type: Annotated[str, Query(description="run or job")] = "run",
) -> Response:
    facet_type = _choice("type", type, ("run", "job"))
    return _answer(request, lambda: _reads(request).get_run_facets(id, facet_type))


# -- events, search, tags, sources -----------------------------------------------------------------


@router.get("/events/lineage", tags=["Lineage"], summary="Raw OpenLineage run events, newest first",
            responses=_BAD_REQUEST)
def list_events(
    request: Request,
    before: Annotated[str | None, Query(description="Only events with eventTime before this")] = None,
    after: Annotated[str | None, Query(description="Only events with eventTime at or after this")] = None,
    sortDirection: Annotated[str, Query(description="desc (default) or asc")] = "desc",
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response:
    ascending = _choice("sortDirection", sortDirection, ("asc", "desc")) == "asc"
    window = {"before": instant_param("before", before), "after": instant_param("after", after)}
    return _answer(request, lambda: _reads(request).list_events(
        **window, ascending=ascending, limit=limit, offset=offset), fragments=True)


@router.get("/search", tags=["Search"], summary="Find datasets and jobs by name", responses=_BAD_REQUEST)
def search(
    request: Request,
    q: Annotated[str, Query(description="Case-insensitive; % matches any run of characters, _ one")],
    filter: Annotated[str | None, Query(description="dataset or job")] = None,
    sort: Annotated[str, Query(description="name (default) or updated_at")] = "name",
    limit: Annotated[int, Query(ge=0, le=MAX_LIMIT)] = 10,  # Marquez's search default
    offset: Offset = 0,
) -> Response:
    if not q.strip():
        raise ApiError(400, "q must not be blank")
    kind = _choice("filter", filter, ("dataset", "job")).upper() if filter else None
    order = _choice("sort", sort, ("name", "updated_at"))
    reads, view = _reads(request), clearance_view(request)
    if view is None:
        return _answer(request, lambda: reads.search(q, kind=kind, sort=order, limit=limit, offset=offset))
    # Withheld datasets are left out before paging, so pages stay full and totalCount stays exact.
    exclude = sorted(view.datasets) if kind != "JOB" else []
    body = reads.search(q, kind=kind, sort=order, limit=limit, offset=offset, exclude=exclude)
    return redacted(view, body, also=reads.search_matches(q, exclude) if exclude else ())


@router.get("/tags", tags=["Tags"], summary="List tags", responses=_BAD_REQUEST)
def list_tags(request: Request, limit: Limit = 100, offset: Offset = 0) -> Response:
    return _answer(request, lambda: _reads(request).list_tags(limit, offset))


@router.get("/sources", tags=["Sources"], summary="List sources", responses=_BAD_REQUEST)
def list_sources(request: Request, limit: Limit = 100, offset: Offset = 0) -> Response:
    return _answer(request, lambda: _reads(request).list_sources(limit, offset))


@router.get("/sources/{source}", tags=["Sources"], summary="Get a source", responses=_NOT_FOUND)
def get_source(request: Request, source: str) -> Response:
    return _answer(request, lambda: _reads(request).get_source(decode_name(source)))
