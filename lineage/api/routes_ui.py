"""The web UI: the page at ``/``, its static assets under ``/ui/``, and the compact reads it makes.

The page and its assets are public (they hold no data); every ``/api/v1/ui/...`` read needs a read key
and is redacted by the caller's clearance like the route it condenses: the graph exactly as
``GET /api/v1/lineage`` (the Marquez answer is redacted first, then condensed), the side panel and the
run view by the same structural walk (:func:`lineage.governance.redaction.redact`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, FastAPI, Query, Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

from lineage.api.auth import requires
from lineage.api.errors import ApiError
from lineage.api.routes_read import clearance_view
from lineage.context import LineageContext
from lineage.governance.principal import principal_of
from lineage.governance.redaction import ClearanceView, Withheld, placeholder, redact
from lineage.service.graph import MAX_DEPTH, BadNodeId, Direction, NodeNotFound
from lineage.service.reads import NotFoundError
from lineage.service.ui_graph import UiService, compact_graph, dataset_levels, gate_verdict
from lineage.service.ui_graph_index import condensed, gate_facets, latest_states, select_nodes
from lineage.service.ui_runs import ReportNotFoundError, RunView

STATIC_DIR = Path(__file__).resolve().parent.parent / "ui" / "static"
#: Where the UI's assets are served; the auth layer lets anyone fetch them (see auth.PUBLIC_PREFIXES).
ASSET_PREFIX = "/ui"

router = APIRouter(prefix="/api/v1/ui", dependencies=[requires("read")], tags=["Web UI"])

_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "Malformed nodeId, or a parameter out of range; body {code, message}"},
    404: {"description": "No such node or run in the store; body {code, message}"},
}


def _context(request: Request) -> LineageContext:
    context: LineageContext = request.app.state.context
    return context


def _json(body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), media_type="application/json", headers=headers)


def _redacted_json(body: Any, view: ClearanceView | None) -> Response:
    """``body`` as the caller may see it (``view`` None: cleared for everything), with the withheld header."""
    if view is None:
        return _json(body)
    out, headers = redact(body, view)
    return _json(out, headers)


@router.get("/session", summary="Who the caller is, for the page")
def session(request: Request) -> Response:
    """The key's name, role and clearance, whether the service checks keys, and Airflow's UI URL."""
    context, principal = _context(request), principal_of(request)
    return _json({"name": principal.name, "role": principal.role, "clearance": principal.clearance,
                  "auth": context.settings.auth, "airflowUrl": context.settings.airflow_url})


@router.get(
    "/graph", summary="The lineage graph, condensed for drawing", responses=_ERRORS,
    description="The nodes and edges of `GET /api/v1/lineage` with the same `nodeId`, `depth` and "
    "`direction`, redacted the same way, as `{nodes, edges, withheld?}`: a node is `{id, kind, namespace, "
    "name, withheld}` plus, for a dataset, its effective classification `level` and the `gate` verdict "
    "of the last gate that validated it (`pass`, `fail`, `none`), for a job the `state` of its latest "
    "run; an edge is `[from, to]`, indexes into `nodes`, along the data flow.",
)
def graph(
    request: Request,
    node_id: Annotated[str, Query(alias="nodeId", description="`dataset:<ns>:<name>` or `job:<ns>:<name>`")],
    depth: Annotated[int, Query(ge=0, le=MAX_DEPTH, description="Job hops to follow")] = 20,
    direction: Annotated[Direction, Query(description="both | upstream | downstream")] = "both",
) -> Response:
    context, view = _context(request), clearance_view(request)
    try:
        if view is None:  # nothing to redact: condensed from the index, no Marquez answer to parse
            return _json(_unredacted_graph(context, node_id, depth, direction))
        marquez = orjson.loads(context.graph.lineage(view.resolve_node_id(node_id), depth, direction))
    except BadNodeId as exc:
        raise ApiError(400, str(exc)) from exc
    except NodeNotFound as exc:
        raise ApiError(404, str(exc)) from exc
    marquez, headers = redact(marquez, view)
    keys = [(str(n["data"]["namespace"]), str(n["data"]["name"])) for n in marquez.get("graph", [])
            if n.get("type") == "DATASET" and isinstance(n.get("data"), dict)]
    body = compact_graph(marquez, dataset_levels(context.classification, keys))
    if "withheld" in marquez:
        body["withheld"] = marquez["withheld"]
    return _json(body, headers)


def _unredacted_graph(context: LineageContext, node_id: str, depth: int,
                      direction: Direction) -> dict[str, Any]:
    datasets, jobs, edges = select_nodes(context.graph, node_id, depth, direction)
    with context.engine.connect() as connection:
        gates = {key: gate_verdict(*key, facets) for key, facets in gate_facets(connection, datasets).items()}
        states = latest_states(connection, jobs)
    return condensed(datasets, jobs, edges, dataset_levels(context.classification, datasets), gates, states)


@router.get(
    "/node", summary="What the side panel shows of one dataset or job", responses=_ERRORS,
    description="A dataset: its schema with each column's effective and declared level, latest versions, "
    "runs that read or wrote it, quality history (the points of the dataset's quality report) and the "
    "purpose-of-use records of its downloads. A job: its latest runs with their DAG runs, inputs and "
    "outputs. A withheld dataset (placeholder name) answers `{withheld: true}` and nothing more.",
)
def node(
    request: Request,
    kind: Annotated[Literal["dataset", "job"], Query(description="dataset or job")],
    namespace: str,
    name: str,
) -> Response:
    context, view = _context(request), clearance_view(request)
    service = UiService(context.engine, context.reads, context.classification)
    try:
        if kind == "job":
            body = service.job_panel(namespace, name)
        else:
            key = (namespace, name) if view is None else view.resolve(namespace, name)
            if view is not None and key in view.datasets:
                withheld = Withheld(view.clearance, datasets={key})
                return _json({"kind": "dataset", "namespace": namespace, "name": placeholder(*key),
                              "withheld": True, "message": withheld.json()["message"]}, withheld.headers())
            body = service.dataset_panel(*key)
    except NotFoundError as exc:
        raise ApiError(404, exc.message) from exc
    return _redacted_json(body, view)


@router.get(
    "/runs/{run_id}", summary="A DAG run's tasks for the run view", responses=_ERRORS,
    description="The DAG run `runId` is (or, for a task run, belongs to): its Airflow DAG id and run id, "
    "and each task run with its state, start and end, gate verdict (gate tasks), inputs and outputs, "
    "and links into Airflow's UI (`/dags/{dag_id}/runs/{run_id}[/tasks/{task_id}]`) when the service "
    "knows Airflow's URL (`CHAINTRACE_AIRFLOW_URL`).",
)
def run_view(request: Request, run_id: str) -> Response:
    context, view = _context(request), clearance_view(request)
    try:
        body = RunView(context.engine, context.settings.airflow_url).dag_run(run_id)
    except ReportNotFoundError as exc:
        raise ApiError(404, exc.message) from exc
    return _redacted_json(body, view)


def install_ui(app: FastAPI) -> None:
    """Serve the page at ``/`` and its assets under ``/ui/`` (both public: they hold no data)."""

    async def index(_request: Request) -> FileResponse:
        # no-cache: a new deployment's page is picked up at once; the assets are small.
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.router.add_route("/", index, methods=["GET"], include_in_schema=False)
    app.mount(ASSET_PREFIX, StaticFiles(directory=STATIC_DIR), name="ui-assets")
