"""Classification levels on the graph: propagation along column lineage (skeleton; see issue 4)."""

from __future__ import annotations

from sqlalchemy import Engine

from lineage.governance.levels import Level
from lineage.governance.policy import GovernancePolicy


class ClassificationService:
    def __init__(self, engine: Engine, policy: GovernancePolicy) -> None:
        self.engine = engine
        self.policy = policy

    def on_commit(self, created: int) -> None:
        """Called by the ingest writer after each projection of ``created`` new events."""

    def dataset_level(self, namespace: str, name: str) -> Level | None:
        raise NotImplementedError

    def field_levels(self, namespace: str, name: str) -> dict[str, Level]:
        raise NotImplementedError
