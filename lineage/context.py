"""The one place that wires the lineage service together (Marquez's MarquezContext).

Routes get services from here; services get the store from here; nothing else builds engines.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from sqlalchemy import Engine

from lineage.service.graph import GraphService
from lineage.service.ingest import IngestService
from lineage.service.reads import ReadService
from lineage.service.validation import EventValidator
from lineage.settings import LineageSettings
from lineage.store.db import WalCheckpointer, create_store_engine, migrate

log = logging.getLogger(__name__)


@dataclass
class LineageContext:
    settings: LineageSettings
    engine: Engine
    validator: EventValidator
    ingest: IngestService
    reads: ReadService
    graph: GraphService
    checkpointer: WalCheckpointer

    @classmethod
    def build(cls, settings: LineageSettings | None = None, *, run_migrations: bool = True) -> LineageContext:
        settings = settings or LineageSettings()
        engine = create_store_engine(settings.resolved_db_url())
        if run_migrations:
            migrate(engine)
        validator = EventValidator.from_spec_dir(settings.spec_dir)
        ingest = IngestService(engine, validator, commit_batch_max=settings.commit_batch_max)
        graph = GraphService(engine)
        # The graph index learns of new rows from the writer right after each commit.
        ingest.writer.listeners.append(graph.on_commit)
        return cls(settings, engine, validator, ingest, ReadService(engine), graph, WalCheckpointer(engine))

    def start(self) -> None:
        # Events a previous process stored but did not project go into the graph before we serve.
        recovered = self.ingest.writer.recover()
        if recovered:
            log.info("projected %d events left unprojected by a previous run", recovered)
        self.ingest.writer.start()
        self.checkpointer.start()

    def warm_in_background(self) -> None:
        """Load the graph index off the request path: on a large store the first query would pay for it."""
        threading.Thread(target=self._warm_graph, name="graph-warm-up", daemon=True).start()

    def _warm_graph(self) -> None:
        try:
            self.graph.warm()
        except Exception:  # the first query loads it instead; nothing is lost
            log.warning("graph index warm-up failed", exc_info=True)

    def close(self) -> None:
        self.ingest.writer.stop()
        self.checkpointer.stop()
        self.engine.dispose()
