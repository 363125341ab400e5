"""Who is calling: the API key behind a request, as routes and services see it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from lineage.governance.levels import Level, at_or_below
from lineage.store.keys import ApiKey, Role


@dataclass(frozen=True)
class Principal:
    key_id: str | None
    name: str
    role: Role | Literal["anonymous"]
    clearance: Level
    jurisdiction: str | None = None

    @classmethod
    def of_key(cls, key: ApiKey) -> Principal:
        # Admins see everything whatever clearance their key was created with.
        clearance: Level = "L4" if key.role == "admin" else key.clearance
        return cls(key.key_id, key.name, key.role, clearance, key.jurisdiction)

    def may_see(self, level: Level | None) -> bool:
        """May this caller see something classified at ``level`` (None: unclassified, L1)?"""
        return level is None or at_or_below(level, self.clearance)

    @property
    def sees_everything(self) -> bool:
        return self.clearance == "L4"


#: The caller when the service runs with ``auth=off`` (a trusted single-user machine).
OPEN_MODE = Principal(key_id=None, name="open-mode", role="admin", clearance="L4")

#: The caller on a public path (``/healthz``, the API description) who sent no valid key.
ANONYMOUS = Principal(key_id=None, name="anonymous", role="anonymous", clearance="L1")

PRINCIPAL_STATE_KEY = "principal"


def principal_of(scope_or_request: Any) -> Principal:
    """The principal the auth layer put on the request (``request.state.principal``).

    Raises when there is none: a route reached without the auth layer is a wiring bug, and failing
    closed is the safe answer to it.
    """
    state = getattr(scope_or_request, "scope", scope_or_request).get("state") or {}
    principal = state.get(PRINCIPAL_STATE_KEY)
    if not isinstance(principal, Principal):
        raise RuntimeError("no principal on the request: the auth layer did not run")
    return principal
