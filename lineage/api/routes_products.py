"""Governance routes (products) (skeleton; see issue 4)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1")
