"""Classification levels on the graph, kept fresh from the store (issue 4).

The rule and its explanations live in :mod:`lineage.service.classification_model`; this service feeds
that model from the store and keeps it fresh incrementally, like the graph index: ``seq`` columns say
which datasets and column-lineage edges changed since the last refresh, only their declarations and
``disclosureControl`` facets are read again, and only the columns downstream of a real change are
recomputed. The ingest writer only wakes a background worker (:meth:`ClassificationService.on_commit`);
the worker refreshes and writes the audit rows (``level_assigned`` when a dataset's level is first
computed or changes, ``violation`` once per distinct violation), so nothing heavy runs on the writer
thread. Readers refresh on demand, so a read sees the levels of every event it can see.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from collections.abc import Collection, Iterable
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, event, select

from lineage.governance.levels import Level, LevelError, parse_level, rank
from lineage.governance.policy import GovernancePolicy
from lineage.governance.redaction import ClearanceView, build_view
from lineage.service.background import BackgroundWorker
from lineage.service.classification_model import ColumnLevels, Disclosure, FieldKey, Key
from lineage.service.graph import parse_node_id
from lineage.store import audit
from lineage.store import read_queries as q
from lineage.store import schema as s
from lineage.store.audit import AuditEntry
from lineage.store.db import WriterLock
from lineage.store.graph_index import NodeNotFound, probe_watermark, split_key

log = logging.getLogger(__name__)

TAG_KEY = "classification"
FACET = "disclosureControl"
SUBJECT = "classification"  # the audit rows this service writes
DEBOUNCE_S = 0.5  # commits within it are handled in one refresh (a dataset touched often is read once)
IDLE_EXIT_S = 5.0  # an idle worker ends (contexts come and go in tests); the next commit starts one
AUDIT_CHUNK = 500
DEDUP_MAX = 200  # audit_log.dedup_key width


def dedup_key(*parts: object) -> str:
    """``kind:part:part...``, hashed when it would not fit the audit log's dedup column."""
    text = ":".join(str(p) for p in parts)
    if len(text) <= DEDUP_MAX:
        return text
    return f"{parts[0]}:sha256:{hashlib.sha256(text.encode()).hexdigest()}"


@functools.lru_cache(maxsize=256)
def _level_of(value: str) -> Level | None:
    """A tag value as a level; None (the tag is ignored) when it is not one. Few distinct values exist,
    and this runs for every tag of every touched dataset: cached."""
    try:
        return parse_level(value)
    except LevelError:
        log.info("ignoring classification tag value %r: not one of L1..L4", value)
        return None


def _schema_fields(connection: Connection, keys: list[Key]) -> dict[Key, list[str]]:
    """Column names of the ``schema`` facet of each dataset (unclassified columns have levels too)."""
    f = s.dataset_facets
    out: dict[Key, list[str]] = {}
    for chunk in q.chunked(keys):
        rows = connection.execute(select(f.c.namespace, f.c.name, f.c.value).where(
            f.c.facet == "schema", q.key_in(connection, [f.c.namespace, f.c.name], chunk)))
        for ns, name, value in rows:
            fields = orjson.loads(value).get("fields")
            out[(ns, name)] = [str(x["name"]) for x in fields if isinstance(x, dict) and "name" in x] \
                if isinstance(fields, list) else []
    return out


class ClassificationService:
    def __init__(self, engine: Engine, policy: GovernancePolicy) -> None:
        self.engine = engine
        self.policy = policy
        self.writer_lock = WriterLock(engine)
        self.lock = threading.RLock()  # guards the levels; held while refreshing
        self.levels = ColumnLevels(policy.k)
        self.head = (-1, -1)  # (watermark, generation) the levels reflect
        self.version = 0  # bumped on every change (clearance views are cached per version)
        self._views: dict[Level, tuple[int, ClearanceView]] = {}
        self._pending_levels: dict[Key, tuple[Level, int]] = {}
        self._pending_violations: dict[FieldKey, tuple[Level, Level]] = {}
        self._flush_lock = threading.Lock()
        # False while another process (the projector, see lineage.service.child_derivations) writes the
        # audit rows of level changes; this one then keeps its levels for reads only.
        self.audit_rows = True
        self.worker = BackgroundWorker("classification", self._refresh_and_audit, debounce_s=DEBOUNCE_S,
                                       idle_exit_s=IDLE_EXIT_S)
        # The context closes by disposing the engine: the worker must not outlive its store (in tests,
        # the next test's database would get its queries).
        event.listen(engine, "engine_disposed", lambda _engine: self.close())

    # -- public API ---------------------------------------------------------------------------------
    def dataset_level(self, namespace: str, name: str) -> Level | None:
        self.ensure_fresh()
        with self.lock:
            return self.levels.ds_level.get((namespace, name))

    def field_levels(self, namespace: str, name: str) -> dict[str, Level]:
        """Effective level of each classified column of a dataset (unclassified ones are absent)."""
        self.ensure_fresh()
        with self.lock:
            lv = self.levels
            return {lv.keys[f][2]: level for f in sorted(lv.by_dataset.get((namespace, name), ()))
                    if (level := lv.eff[f]) is not None}

    def explain(self, node_id: str) -> dict[str, Any]:
        """Why a column or dataset has its level (``GET /api/v1/classification``).

        BadNodeId for a malformed ``node_id``, NodeNotFound for one naming nothing in the store.
        """
        kind, rest = parse_node_id(node_id, ("datasetField", "dataset"))
        self.ensure_fresh()
        with self.engine.connect() as connection, self.lock:
            lv = self.levels
            if kind == "dataset":
                key = split_key(rest, lv.known.__contains__)
                if key is None:
                    raise NodeNotFound(f"node {node_id!r} not found")
                return lv.explain_dataset(key, _schema_fields(connection, [key]).get(key, []))
            colons = [i for i, c in enumerate(rest) if c == ":"]
            splits = [(rest[:a], rest[a + 1 : b], rest[b + 1 :])
                      for n, a in enumerate(colons) for b in colons[n + 1 :]]
            schemas = _schema_fields(connection, list({fk[:2] for fk in splits if fk[:2] in lv.known}))
            found = [fk for fk in splits if fk in lv.ids or fk[2] in schemas.get(fk[:2], ())]
            if not found:
                raise NodeNotFound(f"node {node_id!r} not found")
            return lv.explain_field(found[-1])  # later splits: longer namespace, then dataset name

    def violations(self) -> list[dict[str, Any]]:
        """Every column whose declared level is below what non-lowering edges carry in."""
        self.ensure_fresh()
        with self.lock:
            lv = self.levels
            return lv.violations()

    def view(self, clearance: Level) -> ClearanceView:
        """What a caller of ``clearance`` may not see (cached until the levels change)."""
        self.ensure_fresh()
        with self.lock:
            cached = self._views.get(clearance)
            if cached is not None and cached[0] == self.version:
                return cached[1]
            lv, ceiling = self.levels, rank(clearance)
            # A dataset's level is the highest of its columns': hidden columns live in withheld datasets.
            withheld = {key: level for key, level in lv.ds_level.items() if rank(level) > ceiling}
            hidden = {key: frozenset(lv.keys[f][2] for f in lv.by_dataset.get(key, ())
                                     if (level := lv.eff[f]) is not None and rank(level) > ceiling)
                      for key in withheld}
            view = build_view(clearance, withheld, hidden, lv.name_count)
            self._views[clearance] = (self.version, view)
            return view

    # -- freshness ----------------------------------------------------------------------------------
    def ensure_fresh(self) -> None:
        """Bring the levels up to date with the store (one cheap probe when nothing changed)."""
        with self.engine.connect() as connection:
            if probe_watermark(connection) == self.head:
                return
            with self.lock:
                head = probe_watermark(connection)
                if head != self.head:
                    self._refresh(connection, head)

    def _refresh(self, connection: Connection, head: tuple[int, int]) -> None:
        full = head[1] != self.head[1] or self.head[0] < 0
        if full:
            self.levels = ColumnLevels(self.policy.k)
        after = -1 if full else self.head[0]
        try:
            seeds, own = self._load(connection, after)
            region, changed = self.levels.settle(range(len(self.levels.keys)) if full else seeds, own)
        except BaseException:
            self.head = (-1, -1)  # half applied: start over next time
            raise
        self.head = head
        self.version += 1  # new datasets change what a view's names clash with, even at equal levels
        self._queue_audit(changed, region, head[0])

    def _load(self, connection: Connection, after: int) -> tuple[set[int], set[Key]]:
        """Read what changed since ``after`` (-1: everything): the columns whose levels may change and
        the datasets whose own tag changed."""
        lv, seeds = self.levels, set[int]()
        d, cl = s.datasets, s.column_lineage
        touched = [(ns, name) for ns, name in
                   connection.execute(select(d.c.namespace, d.c.name).where(d.c.seq > after)).all()]
        lv.know(touched)
        rows = connection.execute(select(
            cl.c.out_namespace, cl.c.out_name, cl.c.out_field, cl.c.in_namespace, cl.c.in_name, cl.c.in_field,
            cl.c.transformation_type, cl.c.transformation_subtype, cl.c.description, cl.c.masking,
        ).where(cl.c.seq > after)).all()  # fetchall: far cheaper than row by row
        for ons, oname, ofield, ins, iname, ifield, ttype, subtype, desc, masking in rows:
            out, src = lv.add((ons, oname, ofield)), lv.add((ins, iname, ifield))
            if lv.add_edge(out, src, (ttype, subtype), desc, bool(masking)):
                seeds.add(out)
        tags: dict[Key, dict[str, Level]] = {}
        facets: dict[Key, Disclosure] = {}
        t, f = s.dataset_tags, s.dataset_facets
        tag_stmt = select(t.c.namespace, t.c.name, t.c.field, t.c.tag_value).where(t.c.tag_key == TAG_KEY)
        facet_stmt = select(f.c.namespace, f.c.name, f.c.value).where(f.c.facet == FACET)
        chunks = [None] if after < 0 else list(q.chunked(touched))
        for chunk in chunks:
            where = [] if chunk is None else [q.key_in(connection, [t.c.namespace, t.c.name], chunk)]
            for ns, name, field, value in connection.execute(tag_stmt.where(*where)).all():
                level = _level_of(value)
                if level is not None:
                    tags.setdefault((ns, name), {})[field] = level
            where = [] if chunk is None else [q.key_in(connection, [f.c.namespace, f.c.name], chunk)]
            for ns, name, value in connection.execute(facet_stmt.where(*where)).all():
                found = Disclosure.parse(orjson.loads(value))
                if found is not None:
                    facets[(ns, name)] = found
        own: set[Key] = set()
        for dataset in set(touched) | set(tags):
            declared = tags.get(dataset, {})
            lv.declare(dataset, declared, seeds, own)
            disclosure = facets.get(dataset)
            if (disclosure is not None and disclosure.safe(lv.k)) != lv.k_safe(dataset):
                seeds.update(lv.by_dataset.get(dataset, ()))  # every edge into it lowers, or none does
            if disclosure is None:
                lv.disclosure.pop(dataset, None)
            else:
                lv.disclosure[dataset] = disclosure
        return seeds, own

    # -- audit --------------------------------------------------------------------------------------
    def _queue_audit(self, datasets: Collection[Key], fields: Iterable[int], seq: int) -> None:
        if not self.audit_rows:
            return
        lv = self.levels
        for dataset in datasets:
            level = lv.ds_level.get(dataset)
            if level is not None:
                self._pending_levels[dataset] = (level, seq)
        for f in fields:
            if f in lv.violating:
                declared, carried = lv.declared.get(f), lv.propagated(f)
                if declared is not None and carried is not None:
                    self._pending_violations[lv.keys[f]] = (declared, carried)
        pending = self._pending_levels or self._pending_violations
        if pending and not self.worker.on_worker_thread():
            self.on_commit(0)  # a reader refreshed: the worker writes the rows

    def flush_audit(self) -> int:
        """Write the queued audit rows (the worker calls this); returns how many were written."""
        with self._flush_lock:  # a second caller waits until the rows the first one took are written
            return self._flush()

    def _flush(self) -> int:
        with self.lock:
            levels, self._pending_levels = self._pending_levels, {}
            violations, self._pending_violations = self._pending_violations, {}
        try:
            recorded = self._recorded_levels(list(levels))
            entries = [
                AuditEntry(kind="level_assigned", dataset_namespace=ns, dataset_name=name, subject=SUBJECT,
                           reason=f"effective level {level}: the highest level of its columns and its tag",
                           details={"level": level, "previous": recorded.get((ns, name)), "seq": seq},
                           dedup_key=dedup_key("level", ns, name, level, seq))
                for (ns, name), (level, seq) in sorted(levels.items()) if recorded.get((ns, name)) != level
            ]
            entries += [
                AuditEntry(kind="violation", dataset_namespace=ns, dataset_name=name, field=field,
                           subject=SUBJECT, details={"declared": declared, "propagated": carried},
                           reason=f"declared {declared} below the {carried} that column lineage carries in "
                                  "through edges that neither mask nor aggregate k-safely",
                           dedup_key=dedup_key("violation", ns, name, field, declared, carried))
                for (ns, name, field), (declared, carried) in sorted(violations.items())
            ]
            written = 0
            for chunk in q.chunked(entries, AUDIT_CHUNK):
                with self.writer_lock.hold():
                    written += audit.record(self.engine, chunk)
            return written
        except BaseException:
            with self.lock:  # try again on the next wake-up; newer values win
                self._pending_levels = {**levels, **self._pending_levels}
                self._pending_violations = {**violations, **self._pending_violations}
            raise

    def _recorded_levels(self, keys: list[Key]) -> dict[Key, str]:
        """The level this service last recorded for each dataset (so a restart writes nothing new)."""
        a = s.audit_log
        out: dict[Key, str] = {}
        with self.engine.connect() as connection:
            for chunk in q.chunked(keys):
                rows = connection.execute(
                    select(a.c.dataset_namespace, a.c.dataset_name, a.c.details)
                    .where(a.c.kind == "level_assigned", a.c.subject == SUBJECT,
                           q.key_in(connection, [a.c.dataset_namespace, a.c.dataset_name], chunk))
                    .order_by(a.c.id))
                for ns, name, details in rows:
                    level = orjson.loads(details).get("level") if details else None
                    if isinstance(level, str):
                        out[(ns, name)] = level
        return out

    # -- the background worker ----------------------------------------------------------------------
    def on_commit(self, created: int) -> None:
        """Called by the ingest writer after each projection: wake the worker, never work here."""
        self.worker.wake()

    def start(self) -> None:
        """Compute the levels of what the store holds and audit them (on service start)."""
        self.worker.start()

    def take_over(self) -> None:
        """Write the audit rows here from now on (the process that wrote them stopped): recompute every
        level, so that changes that process saw but had not recorded yet are recorded (rows already
        recorded are not written again)."""
        with self.lock:
            self.audit_rows = True
            self.head = (-1, -1)
        self.worker.start()

    def close(self) -> None:
        """Stop the worker (after the pass it is in); :meth:`start` allows it again."""
        self.worker.close()

    def _refresh_and_audit(self) -> None:
        self.ensure_fresh()
        self.flush_audit()
