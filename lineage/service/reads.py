"""Read services (namespaces, datasets, jobs, runs, events, search, tags) in Marquez's shapes."""

from __future__ import annotations

from sqlalchemy import Engine


class ReadService:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
