"""API keys on the request path: token -> principal, with a short in-memory cache (skeleton; see issue 4)."""

from __future__ import annotations

from sqlalchemy import Engine

from lineage.governance.principal import Principal
from lineage.settings import LineageSettings
from lineage.store import keys


class AccessService:
    def __init__(self, engine: Engine, settings: LineageSettings) -> None:
        self.engine = engine
        self.settings = settings

    def authenticate(self, token: str) -> Principal | None:
        key = keys.authenticate(self.engine, token)
        return Principal.of_key(key) if key is not None else None
