"""In-memory index of the lineage graph, kept fresh incrementally from the store.

The job<->dataset graph is held with int ids per side (:class:`NodeSet`): every edge runs
``ins -> node -> outs`` (a job reads its ``ins`` and writes its ``outs``; a dataset is written by its
``ins`` and read by its ``outs``). Each node keeps its Marquez JSON (``data``) serialised once, and the
JSON of its complete in/out edge lists, so an answer is spliced from cached bytes with ``orjson.Fragment``.
Column-level edges (:class:`ColumnIndex`) are loaded on first use.

Freshness: ``seq`` columns hold the id of the newest raw event that touched a row, and raw event ids grow
in commit order (writers serialise, see :func:`lineage.store.events.lock_writers`). The index remembers
the newest event id it reflects; a refresh reads only rows with a larger ``seq`` (indexed), and reloads
everything when ``store_meta.generation`` moved (rebuild, retention). Before a query one cheap probe
(``max(events.id)`` and the generation, one round trip) tells whether anything changed, also when other
processes wrote. The ingest writer only marks the index dirty.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, select

from lineage.store import schema as s
from lineage.store.events import PROJECTED_KEY
from lineage.store.nodes import load_datasets, load_jobs

Key = tuple[str, str]
FieldKey = tuple[str, str, str]
Loader = Callable[[Connection, Collection[Key]], dict[Key, dict[str, Any]]]
# (type, subtype) -> (description, masking) of one input field of one output field
Transformations = dict[tuple[str, str], tuple[str | None, bool]]

LOAD_BATCH = 500  # node objects built per loader call: bounds the memory (and RSS) of a cold load
_NULL = b"null"


class BadNodeId(ValueError):
    """A nodeId that is not of a supported form (-> 400)."""


class NodeNotFound(LookupError):
    """A well-formed nodeId naming nothing in the store (-> 404)."""


def split_key(rest: str, known: Callable[[Key], bool]) -> Key | None:
    """Split ``"<namespace>:<name>"`` where either part may contain ':'.

    Every ':' is a candidate split point; among the splits naming a known node the longest namespace wins.
    """
    best: Key | None = None
    at = rest.find(":")
    while at >= 0:
        key = (rest[:at], rest[at + 1 :])
        if known(key):
            best = key  # later split points give longer namespaces
        at = rest.find(":", at + 1)
    return best


def compact_dumps(value: Any) -> bytes:
    """``orjson.dumps`` trimmed to size: its buffers keep >= 4 KB of capacity, too much to cache 100k of."""
    return bytes(memoryview(orjson.dumps(value)))


def _edges(pairs: Iterable[tuple[str, str]]) -> orjson.Fragment:
    return orjson.Fragment(compact_dumps([{"origin": o, "destination": d} for o, d in pairs]))


# Graph job nodes show latestRun only (as Marquez's do): loading one run per job, not ten.
_load_graph_jobs = partial(load_jobs, latest_runs=1)


class NodeSet:
    """One side (datasets or jobs) of the bipartite graph, with dense int ids."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.type_name = kind.upper()
        self.ids: dict[Key, int] = {}
        self.keys: list[Key] = []
        self.node_ids: list[str] = []
        self.seq: list[int] = []
        self.data: list[bytes] = []
        self.frag: list[orjson.Fragment] = []
        self.ins: list[set[int]] = []
        self.outs: list[set[int]] = []
        self.in_json: list[orjson.Fragment | None] = []  # complete edge lists, None = not built yet
        self.out_json: list[orjson.Fragment | None] = []

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, key: Key) -> int:
        found = self.ids.get(key)
        if found is not None:
            return found
        i = len(self.keys)
        self.ids[key] = i
        self.keys.append(key)
        self.node_ids.append(f"{self.kind}:{key[0]}:{key[1]}")
        self.seq.append(-1)
        self.data.append(_NULL)
        self.frag.append(orjson.Fragment(_NULL))
        self.ins.append(set())
        self.outs.append(set())
        self.in_json.append(None)
        self.out_json.append(None)
        return i

    def set_data(self, i: int, data: bytes) -> None:
        self.data[i] = data
        self.frag[i] = orjson.Fragment(data)

    def nodes(self, order: Iterable[int], other: NodeSet, members: set[int]) -> list[dict[str, Any]]:
        """The Marquez Nodes of ``order``; edges only to ``members`` (ids of ``other`` in the answer).

        A node whose neighbours are all in the answer reuses its cached edge JSON; otherwise the
        filtered edges are left as plain lists for the one ``orjson.dumps`` of the whole answer.
        """
        names, key = other.node_ids, other.node_ids.__getitem__
        my_names, type_name, frag = self.node_ids, self.type_name, self.frag
        all_ins, all_outs, in_cache, out_cache = self.ins, self.outs, self.in_json, self.out_json
        result: list[dict[str, Any]] = []
        for i in order:
            me = my_names[i]
            ins, outs = all_ins[i], all_outs[i]
            in_edges: orjson.Fragment | list[dict[str, str]] | None
            if ins <= members:
                in_edges = in_cache[i]
                if in_edges is None:
                    in_edges = in_cache[i] = _edges((names[o], me) for o in sorted(ins, key=key))
            else:
                in_edges = [{"origin": names[o], "destination": me} for o in sorted(ins & members, key=key)]
            out_edges: orjson.Fragment | list[dict[str, str]] | None
            if outs <= members:
                out_edges = out_cache[i]
                if out_edges is None:
                    out_edges = out_cache[i] = _edges((me, names[o]) for o in sorted(outs, key=key))
            else:
                out_edges = [{"origin": me, "destination": names[o]} for o in sorted(outs & members, key=key)]
            result.append(
                {"id": me, "type": type_name, "data": frag[i], "inEdges": in_edges, "outEdges": out_edges}
            )
        return result


class ColumnIndex:
    """Column-level edges: output field <- input field, with the transformations of each edge."""

    def __init__(self) -> None:
        self.ids: dict[FieldKey, int] = {}
        self.keys: list[FieldKey] = []
        self.node_ids: list[str] = []
        self.inputs: list[dict[int, Transformations]] = []
        self.outputs: list[set[int]] = []
        self.by_dataset: dict[Key, set[int]] = {}
        self.seq = -1

    def add(self, key: FieldKey) -> int:
        found = self.ids.get(key)
        if found is not None:
            return found
        i = len(self.keys)
        self.ids[key] = i
        self.keys.append(key)
        self.node_ids.append(f"datasetField:{key[0]}:{key[1]}:{key[2]}")
        self.inputs.append({})
        self.outputs.append(set())
        self.by_dataset.setdefault((key[0], key[1]), set()).add(i)
        return i

    def load(self, connection: Connection, after: int) -> None:
        cl = s.column_lineage
        rows = connection.execute(
            select(
                cl.c.out_namespace, cl.c.out_name, cl.c.out_field, cl.c.in_namespace, cl.c.in_name,
                cl.c.in_field, cl.c.transformation_type, cl.c.transformation_subtype, cl.c.description,
                cl.c.masking,
            ).where(cl.c.seq > after)
        )
        for ons, oname, ofield, ins_, iname, ifield, ttype, subtype, desc, masking in rows:
            out = self.add((ons, oname, ofield))
            src = self.add((ins_, iname, ifield))
            self.inputs[out].setdefault(src, {})[(ttype, subtype)] = (desc, bool(masking))
            self.outputs[src].add(out)


def probe_watermark(connection: Connection) -> tuple[int, int]:
    """(projection watermark, generation) in one round trip: derived rows carry seq <= the watermark."""
    row = connection.execute(
        select(
            select(s.store_meta.c.value).where(s.store_meta.c.key == PROJECTED_KEY).scalar_subquery(),
            select(s.store_meta.c.value).where(s.store_meta.c.key == "generation").scalar_subquery(),
        )
    ).one()
    return int(row[0] or 0), int(row[1] or 0)


class GraphIndex:
    """The lineage graph in memory; thread-safe (hold :attr:`lock` while reading the structures)."""

    def __init__(
        self,
        engine: Engine,
        *,
        probe_interval: float = 0.0,
        dataset_loader: Loader = load_datasets,
        job_loader: Loader = _load_graph_jobs,
    ) -> None:
        self.engine = engine
        self.probe_interval = probe_interval
        self.lock = threading.RLock()
        self.datasets = NodeSet("dataset")
        self.jobs = NodeSet("job")
        self._columns: ColumnIndex | None = None
        self._load_datasets = dataset_loader
        self._load_jobs = job_loader
        self.seq = -1  # newest raw event id reflected (-1: never loaded)
        self.generation = -1
        self._dirty = True
        self._last_probe = -math.inf
        self.full_loads = 0
        self.incremental_loads = 0
        self.probes = 0

    # ------------------------------------------------------------------------------------ freshness
    def mark_dirty(self) -> None:
        """A local commit stored new events (called from the writer thread; cheap)."""
        self._dirty = True

    def ensure_fresh(self, *, columns: bool = False) -> None:
        """Bring the index (and the column index when ``columns``) up to date with the store."""
        want_columns = columns and self._columns is None
        recent = time.monotonic() - self._last_probe < self.probe_interval
        if recent and not self._dirty and not want_columns and self.seq >= 0:
            return
        self._dirty = False  # cleared before probing: a commit after the probe marks it again
        try:
            with self.engine.connect() as connection:
                head = probe_watermark(connection)
                self.probes += 1
                self._last_probe = time.monotonic()
                if self._current(head, columns):
                    return
                with self.lock:
                    head = probe_watermark(connection)  # another thread may have refreshed meanwhile
                    self._refresh(connection, head, columns)
        except BaseException:
            self._dirty = True
            raise

    def _current(self, head: tuple[int, int], columns: bool) -> bool:
        if head != (self.seq, self.generation):
            return False
        col = self._columns
        return (col is not None and col.seq == self.seq) if columns else True

    def _refresh(self, connection: Connection, head: tuple[int, int], columns: bool) -> None:
        try:
            self._refresh_to(connection, head, columns)
        except BaseException:
            # a half-applied refresh may have recorded new seqs without their data: start over
            self.seq, self.generation = -1, -1
            raise

    def _refresh_to(self, connection: Connection, head: tuple[int, int], columns: bool) -> None:
        seq, gen = head
        if gen != self.generation or self.seq < 0:
            self._load_full(connection)
            self.full_loads += 1
        elif seq > self.seq:
            self._load_since(connection, self.seq)
            self.incremental_loads += 1
        if gen != self.generation:
            self.seq, self.generation = seq, gen
        else:
            self.seq = max(seq, self.seq)
        if columns and self._columns is None:
            self._columns = ColumnIndex()
        col = self._columns
        if col is not None and col.seq < self.seq:
            col.load(connection, col.seq)
            col.seq = self.seq

    def _load_full(self, connection: Connection) -> None:
        self.datasets, self.jobs, self._columns = NodeSet("dataset"), NodeSet("job"), None
        self._load_since(connection, -1)

    def _load_since(self, connection: Connection, after: int) -> None:
        stale_ds = self._read_nodes(connection, s.datasets, self.datasets, after)
        stale_jobs = self._read_nodes(connection, s.jobs, self.jobs, after)
        io = s.job_io
        rows = connection.execute(
            select(
                io.c.job_namespace, io.c.job_name, io.c.dataset_namespace, io.c.dataset_name, io.c.direction
            ).where(io.c.seq > after)
        )
        ds, jobs = self.datasets, self.jobs
        for job_ns, job_name, ds_ns, ds_name, direction in rows:
            known_j, known_d = len(jobs), len(ds)
            j, d = jobs.add((job_ns, job_name)), ds.add((ds_ns, ds_name))
            if j >= known_j:
                stale_jobs.append(j)
            if d >= known_d:
                stale_ds.append(d)
            if direction == "INPUT":
                self._link(ds, d, jobs, j)
            else:
                self._link(jobs, j, ds, d)
        self._load_data(connection, ds, stale_ds, self._load_datasets)
        self._load_data(connection, jobs, stale_jobs, self._load_jobs)

    @staticmethod
    def _link(src: NodeSet, i: int, dst: NodeSet, k: int) -> None:
        """Edge ``src[i] -> dst[k]``; drops the cached edge JSON of both ends when new."""
        if k in src.outs[i]:
            return
        src.outs[i].add(k)
        src.out_json[i] = None
        dst.ins[k].add(i)
        dst.in_json[k] = None

    @staticmethod
    def _read_nodes(connection: Connection, table: Any, nodes: NodeSet, after: int) -> list[int]:
        stale: list[int] = []
        rows = connection.execute(
            select(table.c.namespace, table.c.name, table.c.seq).where(table.c.seq > after)
        )
        for ns, name, seq in rows:
            i = nodes.add((ns, name))
            if nodes.seq[i] != seq:
                nodes.seq[i] = int(seq)
                stale.append(i)
        return stale

    @staticmethod
    def _load_data(connection: Connection, nodes: NodeSet, ids: Sequence[int], loader: Loader) -> None:
        """(Re)serialise the node objects of ``ids`` in bulk, :data:`LOAD_BATCH` at a time."""
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), LOAD_BATCH):
            batch = unique[start : start + LOAD_BATCH]
            found = loader(connection, [nodes.keys[i] for i in batch])
            for i in batch:
                obj = found.get(nodes.keys[i])
                nodes.set_data(i, _NULL if obj is None else compact_dumps(obj))

    # ------------------------------------------------------------------------------------- reading
    @contextmanager
    def reading(self, *, columns: bool = False) -> Iterator[None]:
        """Refresh, then hold :attr:`lock` (and, with ``columns``, a loaded column index) while reading."""
        while True:
            self.ensure_fresh(columns=columns)
            self.lock.acquire()
            if not columns or self._columns is not None:
                break
            self.lock.release()  # a generation change dropped the column index meanwhile: again
        try:
            yield
        finally:
            self.lock.release()

    @property
    def columns(self) -> ColumnIndex:
        """The column index (inside ``reading(columns=True)``)."""
        if self._columns is None:
            raise RuntimeError("the column index is not loaded; use reading(columns=True)")
        return self._columns

    def graph_json(self, job_ids: set[int], dataset_ids: set[int]) -> bytes:
        """``{"graph": [...]}`` of these jobs and datasets, nodes sorted by id, edges inside the answer."""
        ds, jobs = self.datasets, self.jobs
        # "dataset:..." sorts before "job:...", so each side is sorted on its own
        nodes = ds.nodes(sorted(dataset_ids, key=ds.node_ids.__getitem__), jobs, job_ids)
        nodes += jobs.nodes(sorted(job_ids, key=jobs.node_ids.__getitem__), ds, dataset_ids)
        return orjson.dumps({"graph": nodes})

    def field_types(self, dataset: Key) -> dict[str, Any]:
        """Field name -> type from the dataset's cached ``fields`` (its schema facet)."""
        i = self.datasets.ids.get(dataset)
        if i is None:
            return {}
        obj = orjson.loads(self.datasets.data[i])
        fields = obj.get("fields") if isinstance(obj, dict) else None
        if not isinstance(fields, list):
            return {}
        return {str(f["name"]): f.get("type") for f in fields if isinstance(f, dict) and "name" in f}
