"""The FastAPI application of the lineage service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

from fastapi import FastAPI
from starlette import types
from starlette.responses import Response

from lineage.api import (
    routes_audit,
    routes_governance,
    routes_graph,
    routes_ingest,
    routes_monitoring,
    routes_products,
    routes_read,
    routes_reports,
    routes_ui,
)
from lineage.api.auth import AuthLayer, install_openapi_security
from lineage.api.errors import install_error_handlers, json_response
from lineage.api.paths import EncodedSlashMiddleware
from lineage.api.routes_ingest import ASGIApp, Receive, Scope, Send
from lineage.context import LineageContext
from lineage.settings import LineageSettings
from lineage.tuning import tune_gc

API_VERSION = "0.1.0"


class ReadYourWrites:
    """Before a read, wait until the graph shows every event this process has acknowledged.

    Ingest acknowledges an event once it is in the raw log and projects it a few milliseconds later;
    a client that posts and then reads must still see its event.
    """

    def __init__(self, app: ASGIApp, context: LineageContext) -> None:
        self.app = app
        self.writer = context.ingest.writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and self.writer.lagging():
            await asyncio.to_thread(self.writer.wait_projected)
        await self.app(scope, receive, send)


class LineageApp(FastAPI):
    """FastAPI, except that ingest POSTs go straight to the auth layer and the ingest fast path: they
    are most of the requests, and Starlette's outer layers (error middleware, routing set-up) cost them
    more per request than they add (an unexpected error is still answered 500, by uvicorn)."""

    ingest_chain: ASGIApp | None = None

    async def __call__(self, scope: types.Scope, receive: types.Receive, send: types.Send) -> None:
        chain = self.ingest_chain
        if chain is not None and scope["type"] == "http" and scope["method"] == "POST" \
                and scope["path"] in routes_ingest.INGEST_PATHS:
            await chain(scope, receive, send)  # type: ignore[arg-type]  # plain dicts at runtime
            return
        await super().__call__(scope, receive, send)


def create_app(context: LineageContext | None = None, settings: LineageSettings | None = None) -> FastAPI:
    """Build the app around ``context`` (or a context built from ``settings`` / the environment)."""
    ctx = context or LineageContext.build(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        tune_gc()
        ctx.start()
        ctx.warm_in_background()
        ctx.replay_spool_in_background()
        try:
            yield
        finally:
            ctx.close()

    app = LineageApp(
        title="chaintrace lineage service",
        version=API_VERSION,
        description="OpenLineage ingest and a Marquez-compatible read API, with quality and governance.",
        lifespan=lifespan,
    )
    app.state.context = ctx
    # Names with '/' arrive as %2F; routing must see them as one path segment.
    app.add_middleware(EncodedSlashMiddleware)
    app.add_middleware(ReadYourWrites, context=ctx)
    app.add_middleware(AuthLayer, context=ctx)
    install_error_handlers(app)
    # Ingest POSTs skip FastAPI's stack (see LineageApp and routes_ingest), behind the same auth layer.
    # The fast path hands on what it does not answer; here it only ever sees ingest POSTs.
    app.ingest_chain = AuthLayer(routes_ingest.IngestFastPath(cast("ASGIApp", app), ctx), ctx)
    app.include_router(routes_ingest.router)
    app.include_router(routes_read.router)
    app.include_router(routes_graph.router)
    app.include_router(routes_governance.router)
    app.include_router(routes_products.router)
    app.include_router(routes_audit.router)
    app.include_router(routes_monitoring.router)
    app.include_router(routes_reports.router)
    app.include_router(routes_ui.router)
    routes_ui.install_ui(app)

    @app.get("/healthz", tags=["Service"], summary="Liveness, and how far the graph is behind the log")
    def healthz() -> Response:
        writer = ctx.ingest.writer
        return json_response({"status": "ok", "acknowledged": writer.acknowledged,
                              "projected": writer.projected})

    # The API description says which routes need a key and which permission (worked out on first use).
    install_openapi_security(app)
    return app


def app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory`` (multi-worker serving): settings from the environment."""
    return create_app(settings=LineageSettings())
