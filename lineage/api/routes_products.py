"""Data products: the catalogue, downloads for a declared purpose, and who used each product.

Handlers are plain ``def`` (FastAPI's thread pool): they read the store, write audit rows and ingest the
consumer's lineage event, all blocking calls.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response, StreamingResponse

from lineage.api.auth import requires
from lineage.api.errors import ApiError, json_response
from lineage.api.paths import decode_name
from lineage.context import LineageContext
from lineage.governance.principal import principal_of
from lineage.service.products import ProductError, ProductService

router = APIRouter(prefix="/api/v1")

MAX_LIMIT = 10_000


def _products(request: Request) -> ProductService:
    context: LineageContext = request.app.state.context
    return context.products


@router.get(
    "/products", tags=["Products"], summary="Published data products",
    description="Every product (a dataset with the `purpose` facet) the caller's clearance covers: audience, "
    "allowed purposes and level, jurisdictions, effective classification level, last publication. "
    "Products above the caller's clearance are left out and counted in `withheld`.",
    dependencies=[requires("read", "consume")],
)
def list_products(request: Request) -> Response:
    return json_response(_products(request).list_for(principal_of(request)))


@router.get(
    "/products/{name}", tags=["Products"], summary="Download a product for a declared purpose",
    description="Streams the product as CSV (default) or Parquet. Needs a consumer (or admin) key and a "
    "`purpose` the product allows; the key's clearance must cover the product's effective level, and L3/L4 "
    "products flow only to jurisdictions the policy allows. Every decision is written to the audit log; a "
    "download is also recorded as a lineage run of job `consumer.<key name>` reading the product.",
    responses={400: {"description": "No purpose, or an unknown format"},
               403: {"description": "Purpose not allowed, clearance too low, or jurisdiction not allowed"},
               404: {"description": "No such product, or its file is gone"}},
    dependencies=[requires("consume")],
)
def download_product(
    request: Request,
    name: str,
    purpose: Annotated[str | None, Query(description="What the data will be used for")] = None,
    format: Annotated[str | None, Query(description="csv (default) or parquet")] = None,
) -> Response:
    try:
        download = _products(request).download(decode_name(name), principal_of(request), purpose, format)
    except ProductError as exc:
        raise ApiError(exc.code, exc.message) from exc
    return StreamingResponse(
        download.chunks, media_type=download.media_type,
        headers={"Content-Disposition": f'attachment; filename="{download.filename}"',
                 "X-Chaintrace-Rows": str(download.rows)},
    )


@router.get(
    "/products/{name}/usage", tags=["Products"], summary="Who used a product, when, for what",
    description="Granted downloads of the product from the audit log, newest first: consumer, time, "
    "declared purpose, rows and format.",
    responses={404: {"description": "No such product"}},
    dependencies=[requires("read", "admin")],
)
def product_usage(
    request: Request,
    name: str,
    limit: Annotated[int, Query(ge=0, le=MAX_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    try:
        return json_response(_products(request).usage(decode_name(name), limit, offset))
    except ProductError as exc:
        raise ApiError(exc.code, exc.message) from exc
