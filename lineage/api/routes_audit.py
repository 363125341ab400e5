"""GET /api/v1/audit: the governance audit log (skeleton; see issue 4)."""

from __future__ import annotations

from fastapi import APIRouter

from lineage.api.auth import requires

router = APIRouter(prefix="/api/v1", dependencies=[requires("admin")])
