"""The one place that wires the lineage service together (Marquez's MarquezContext).

Routes get services from here; services get the store from here; nothing else builds engines.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine

from lineage.service.graph import GraphService
from lineage.service.ingest import IngestService
from lineage.service.reads import ReadService
from lineage.service.validation import EventValidator
from lineage.settings import LineageSettings
from lineage.spool_format import ReplaySummary, SpooledEvent, Verdict, replay
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
    spool_thread: threading.Thread | None = field(default=None, init=False)
    spool_summary: ReplaySummary | None = field(default=None, init=False)
    _closing: threading.Event = field(default_factory=threading.Event, init=False)

    @classmethod
    def build(cls, settings: LineageSettings | None = None, *, run_migrations: bool = True) -> LineageContext:
        settings = settings or LineageSettings()
        engine = create_store_engine(settings.resolved_db_url())
        if run_migrations:
            migrate(engine)
        validator = EventValidator.from_spec_dir(settings.spec_dir)
        ingest = IngestService(engine, validator, commit_batch_max=settings.commit_batch_max,
                               projector_process=settings.projector_process)
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

    def replay_spool_in_background(self) -> None:
        """Ingest the events producers spooled while the service was away (``spool_dir``), off start-up.

        Call after :meth:`start` (the writer must run). Files go only once their events are committed.
        """
        if self.settings.spool_dir is None:
            return
        self._closing.clear()  # a context may be started again after close (tests, app restarts)
        self.spool_thread = threading.Thread(target=self._replay_spool, name="spool-replay", daemon=True)
        self.spool_thread.start()

    def _replay_spool(self) -> None:
        assert self.settings.spool_dir is not None
        try:
            summary = replay(self.settings.spool_dir, self._ingest_spooled, should_stop=self._closing.is_set)
        except Exception:  # the files stay for the next start or replay-spool; serving goes on
            log.exception("replaying the spool %s failed", self.settings.spool_dir)
            return
        self.spool_summary = summary
        log.info("spool %s: %d delivered, %d already present, %d rejected, %d left%s",
                 self.settings.spool_dir, summary.delivered, summary.already_present, summary.rejected,
                 summary.left, f" ({summary.error})" if summary.error else "")

    def _ingest_spooled(self, events: Sequence[SpooledEvent]) -> list[Verdict]:
        results = self.ingest.ingest_sync([event.event for event in events])
        return [
            Verdict("rejected", "; ".join(f"{e.path or '(event)'}: {e.message}" for e in r.errors))
            if not r.accepted else Verdict("created" if r.status == "created" else "duplicate")
            for r in results
        ]

    def close(self) -> None:
        self._closing.set()
        if self.spool_thread is not None:
            # A batch in flight finishes (its files are deleted only after the commit); then it stops.
            self.spool_thread.join(timeout=30)
        self.ingest.writer.stop()
        self.checkpointer.stop()
        self.engine.dispose()
