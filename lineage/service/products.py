"""Published data products: found from the serve stage's lineage, downloaded for a purpose (skeleton)."""

from __future__ import annotations

from sqlalchemy import Engine


class ProductService:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
