"""The one place that wires the lineage service together (Marquez's MarquezContext).

Routes get services from here; services get the store from here; nothing else builds engines.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine

from lineage.governance.policy import GovernancePolicy, load_policy
from lineage.monitoring import MonitoringService
from lineage.service.access import AccessService
from lineage.service.audit import AuditService
from lineage.service.batch_processes import BatchProcessPool
from lineage.service.child_derivations import DerivationProcess, derivation_config
from lineage.service.classification import ClassificationService
from lineage.service.graph import GraphService
from lineage.service.ingest import IngestService
from lineage.service.products import ProductService
from lineage.service.projector_process import detached_enabled
from lineage.service.reads import ReadService
from lineage.service.validation import EventValidator
from lineage.settings import LineageSettings
from lineage.spool_format import REJECTED_DIR, ReplaySummary, SpooledEvent, Verdict, replay
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
    policy: GovernancePolicy
    access: AccessService
    classification: ClassificationService
    audit: AuditService
    products: ProductService
    monitoring: MonitoringService
    spool_thread: threading.Thread | None = field(default=None, init=False)
    # What this process's spool replays did since start, summed (left and error: of the latest round).
    spool_summary: ReplaySummary | None = field(default=None, init=False)
    _closing: threading.Event = field(default_factory=threading.Event, init=False)
    _spool_failing: bool = field(default=False, init=False)
    # The child deriving classification, audit and monitoring (settings.derivations_in), if any.
    _derivations: DerivationProcess | None = field(default=None, init=False)
    # The children answering big batch requests (settings.batch_processes), if any.
    batch_processes: BatchProcessPool | None = field(default=None, init=False)

    @classmethod
    def build(cls, settings: LineageSettings | None = None, *, run_migrations: bool = True) -> LineageContext:
        settings = settings or LineageSettings()
        engine = create_store_engine(settings.resolved_db_url())
        if run_migrations:
            migrate(engine)
        validator = EventValidator.from_spec_dir(settings.ol_schema_dir)
        ingest = IngestService(engine, validator, commit_batch_max=settings.commit_batch_max,
                               projector_process=settings.projector_process)
        graph = GraphService(engine)
        policy = load_policy(settings.policy_file)
        classification = ClassificationService(engine, policy)
        audit = AuditService(engine)
        # The graph index (and what is derived from the graph) learns of new rows from the writer right
        # after each projection.
        monitoring = MonitoringService(engine, settings.monitoring_rules_file)
        context = cls(
            settings, engine, validator, ingest, ReadService(engine), graph, WalCheckpointer(engine),
            policy=policy, access=AccessService(engine, settings), classification=classification,
            audit=audit, products=ProductService(engine, settings, policy, classification, audit, ingest),
            monitoring=monitoring,
        )
        ingest.writer.listeners.append(context._on_projected)
        return context

    def _on_projected(self, count: int) -> None:
        """After each projection: the graph index learns of new rows, the derivations are woken."""
        self.graph.on_commit(count)
        child = self._derivations
        if child is None or not child.nudge(count):
            self.classification.on_commit(count)
            self.audit.on_commit(count)
        self.monitoring.on_commit(count)  # derives here, or only streams (see _start_derivations)

    def _start_derivations(self) -> None:
        """Derive in this process, or in a child process of their own (settings.derivations_in)."""
        if self.settings.derivations_in == "process" and self._derivations is None \
                and detached_enabled(self.engine):
            try:
                self._derivations = DerivationProcess(
                    self.engine, derivation_config(self.settings.policy_file,
                                                   self.settings.monitoring_rules_file),
                    self._take_over_derivations)
            except Exception:  # no second process here (sandbox, resource limits): derive here
                log.warning("could not start the derivations process; deriving in the service process",
                            exc_info=True)
        if self._derivations is not None:
            self.classification.audit_rows = False
            self.monitoring.derive = False
            self.monitoring.start()  # streams events and the alerts the child stores
            log.info("classification, audit and monitoring are derived in a child process")
            return
        self.classification.audit_rows = True
        self.monitoring.derive = True
        # Levels and audit rows of what a previous process stored are derived in the background.
        self.classification.start()
        self.audit.start()
        self.monitoring.start()

    def _start_batch_processes(self) -> None:
        """Children for big batch requests (settings.batch_processes); they need the projector process,
        which projects whatever any process stores."""
        count = self.settings.batch_processes
        if not count or self.batch_processes is not None or not self.ingest.writer.projects_in_child:
            return
        config = {"spec_dir": str(self.settings.ol_schema_dir) if self.settings.ol_schema_dir else None,
                  "max_events": self.settings.max_batch_events}
        try:
            writer = self.ingest.writer
            self.batch_processes = BatchProcessPool(self.engine, config, count, writer.note_stored,
                                                    writer.backlog)
        except Exception:  # no child processes here (sandbox, resource limits): the service does it all
            log.warning("could not start the batch processes; the service stores batches itself",
                        exc_info=True)

    def _take_over_derivations(self) -> None:
        """The derivations process stopped: derive here again, from its stored watermarks."""
        self._derivations = None
        if self._closing.is_set():
            return
        log.warning("classification, audit and monitoring are derived in the service process again")
        self.classification.take_over()
        self.audit.start()
        self.monitoring.take_over()

    def start(self) -> None:
        # Events a previous process stored but did not project go into the graph before we serve.
        recovered = self.ingest.writer.recover()
        if recovered:
            log.info("projected %d events left unprojected by a previous run", recovered)
        self.ingest.writer.start()
        self._start_derivations()
        self._start_batch_processes()
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
        """Ingest the producers' spool (``spool_dir``) off start-up, then keep watching it.

        Call after :meth:`start` (the writer must run). The initial replay takes what producers spooled
        while the service was away; afterwards the folder is looked at every ``spool_poll_ms`` (0: never)
        for the events of spool-first producers, until :meth:`close`. Files go only once their events
        are committed (or found stored already); several processes on one spool (uvicorn workers) take
        turns through the spool's lock, and a process that finds it held skips that round.
        """
        if self.settings.spool_dir is None:
            return
        self._closing.clear()  # a context may be started again after close (tests, app restarts)
        self.spool_summary = None
        self.spool_thread = threading.Thread(target=self._watch_spool, name="spool-watch", daemon=True)
        self.spool_thread.start()

    def _watch_spool(self) -> None:
        assert self.settings.spool_dir is not None
        spool_dir = self.settings.spool_dir
        poll_s = self.settings.spool_poll_ms / 1000
        # Watching: a lock held means another worker is replaying the folder right now, and this one
        # looks again in poll_s. Start only: wait for the lock, this is the one chance.
        summary = self._replay_spool_once(lock_timeout_s=0.0 if poll_s > 0 else 60.0)
        if summary is not None and not summary.locked_out:
            log.info("spool %s: %d delivered, %d already present, %d rejected, %d left%s", spool_dir,
                     summary.delivered, summary.already_present, summary.rejected, summary.left,
                     f" ({summary.error})" if summary.error else "")
        if poll_s <= 0:
            return
        log.info("watching the spool %s every %d ms", spool_dir, self.settings.spool_poll_ms)
        while not self._closing.wait(poll_s):
            # Another worker holding the lock is replaying this same folder: no need to wait for it.
            summary = self._replay_spool_once(lock_timeout_s=0.0)
            if summary is not None and summary.rejected:
                log.warning("spool %s: %d event(s) rejected, kept in %s", spool_dir, summary.rejected,
                            spool_dir / REJECTED_DIR)

    def _replay_spool_once(self, *, lock_timeout_s: float) -> ReplaySummary | None:
        """One replay of the spool, added to :attr:`spool_summary`; None when it failed (logged)."""
        assert self.settings.spool_dir is not None
        try:
            summary = replay(self.settings.spool_dir, self._ingest_spooled, should_stop=self._closing.is_set,
                             lock_timeout_s=lock_timeout_s)
        except Exception:  # the files stay for the next round, start or replay-spool; serving goes on
            if not self._spool_failing:  # once per streak: the watcher retries every poll
                log.exception("replaying the spool %s failed; retrying each round", self.settings.spool_dir)
            self._spool_failing = True
            return None
        if self._spool_failing:
            log.info("replaying the spool %s works again", self.settings.spool_dir)
            self._spool_failing = False
        if summary.locked_out:
            return summary  # another process is replaying this folder: nothing done here this round
        total = self.spool_summary or ReplaySummary()
        total.delivered += summary.delivered
        total.already_present += summary.already_present
        total.rejected += summary.rejected
        total.left = summary.left
        total.error = summary.error
        self.spool_summary = total
        return summary

    def _ingest_spooled(self, events: Sequence[SpooledEvent]) -> list[Verdict]:
        results = self.ingest.ingest_sync([event.event for event in events])
        return [
            Verdict("rejected", "; ".join(f"{e.path or '(event)'}: {e.message}" for e in r.errors))
            if not r.accepted else Verdict("created" if r.status == "created" else "duplicate")
            for r in results
        ]

    def close(self) -> None:
        self._closing.set()
        child, self._derivations = self._derivations, None
        if child is not None:
            child.stop()
        pool, self.batch_processes = self.batch_processes, None
        if pool is not None:
            pool.stop()
        self.audit.close()
        self.monitoring.close()
        self.classification.close()
        if self.spool_thread is not None:
            # The watcher wakes at once; a batch in flight finishes (its files are deleted only after
            # the commit), then it stops.
            self.spool_thread.join(timeout=30)
            if self.spool_thread.is_alive():
                log.warning("the spool watcher did not stop within 30 s; its files stay for next start")
        self.ingest.writer.stop()
        self.checkpointer.stop()
        self.engine.dispose()
