"""Lineage graph queries (Marquez /lineage and /column-lineage semantics) over an in-memory index.

``/lineage`` (Marquez's ``LineageDao.getLineage``): the starting job is the job itself, or for a dataset
the job that wrote it last, else the one that read it last (Marquez's ``getJobFromInputOrOutput``; a
dataset no job touches answers with just itself). Depth counts job
hops: two jobs are adjacent when they share a dataset (input or output). The answer holds the jobs
reached within ``depth`` hops plus all their input and output datasets; a dataset's edges go only to jobs
of the answer. ``direction`` upstream/downstream (our extension) follows producer -> consumer edges one
way only and answers with the start node and what lies upstream (downstream) of it.

``/column-lineage``: field nodes reached from the start field(s) over column-lineage edges, up to
``depth`` field hops upstream, and also downstream when ``withDownstream``. A dataset means all its
fields, a job all fields of the datasets it writes.

Where this knowingly differs from Marquez:
- column-lineage edges always run input -> output (Marquez's inEdges have origin = the node itself),
  every reached field has ``data`` (Marquez leaves input-only fields' data null), start fields are
  in the answer even without edges, ``depth=0`` is just the start fields, and upstream/downstream are
  walked separately (Marquez's recursive CTE also mixes directions when withDownstream is set).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Literal

import orjson
from sqlalchemy import Engine, select

from lineage.store import schema as s
from lineage.store.graph_index import (
    BadNodeId,
    ColumnIndex,
    GraphIndex,
    Key,
    NodeNotFound,
    NodeSet,
    split_key,
)

__all__ = ["BadNodeId", "Direction", "GraphService", "NodeNotFound"]

Direction = Literal["both", "upstream", "downstream"]
MAX_DEPTH = 100


def parse_node_id(node_id: str, kinds: tuple[str, ...]) -> tuple[str, str]:
    """``("dataset", "<ns>:<name>")`` from ``"dataset:<ns>:<name>"``; BadNodeId when malformed."""
    kind, _, rest = node_id.partition(":")
    if kind not in kinds or ":" not in rest:
        expected = " or ".join(f"'{k}:<namespace>:<name>'" for k in kinds)
        raise BadNodeId(f"nodeId {node_id!r} is malformed; expected {expected}")
    if kind == "datasetField" and rest.count(":") < 2:
        expected = "'datasetField:<namespace>:<dataset>:<field>'"
        raise BadNodeId(f"nodeId {node_id!r} is malformed; expected {expected}")
    return kind, rest


def _resolve(nodes: NodeSet, rest: str, node_id: str) -> int:
    key = split_key(rest, nodes.ids.__contains__)
    if key is None:
        raise NodeNotFound(f"node {node_id!r} not found")
    return nodes.ids[key]


def _check_depth(depth: int) -> None:
    if not 0 <= depth <= MAX_DEPTH:
        raise BadNodeId(f"depth must be between 0 and {MAX_DEPTH}")


class GraphService:
    def __init__(self, engine: Engine, *, probe_interval: float = 0.0) -> None:
        self.engine = engine
        self.index = GraphIndex(engine, probe_interval=probe_interval)

    def warm(self) -> None:
        """Load the index now (bulk), so that the first query does not pay for it."""
        self.index.ensure_fresh()

    def on_commit(self, created: int) -> None:
        """Called by the ingest writer after each commit that stored ``created`` new events."""
        if created:
            self.index.mark_dirty()

    # ------------------------------------------------------------------------------------ /lineage
    def lineage(self, node_id: str, depth: int, direction: Direction = "both") -> bytes:
        """The Marquez ``{"graph": [...]}`` answer as JSON bytes."""
        index = self.index
        with index.reading():
            return index.graph_json(*self.reached(node_id, depth, direction))

    def reached(self, node_id: str, depth: int, direction: Direction = "both") -> tuple[set[int], set[int]]:
        """(job ids, dataset ids) of the lineage answer around ``node_id``; the caller holds
        ``index.reading()``. BadNodeId for a bad id or depth, NodeNotFound for an unknown node."""
        _check_depth(depth)
        kind, rest = parse_node_id(node_id, ("dataset", "job"))
        index = self.index
        if kind == "job":
            jobs, datasets = {_resolve(index.jobs, rest, node_id)}, set[int]()
        else:
            d = _resolve(index.datasets, rest, node_id)
            ds = index.datasets
            datasets = {d}
            if direction == "both":
                jobs = self._marquez_seed(d)
            else:
                jobs = set(ds.outs[d] if direction == "downstream" else ds.ins[d])
        if direction == "both":
            return self._both(jobs, datasets, depth)
        self._directed(jobs, datasets, depth, direction == "upstream")
        return jobs, datasets

    def _marquez_seed(self, dataset: int) -> set[int]:
        """Marquez's ``getJobFromInputOrOutput``: the job that wrote the dataset last, else the job
        that read it last; none for a dataset no job touches."""
        index = self.index
        ns, name = index.datasets.keys[dataset]
        io = s.job_io
        with self.engine.connect() as connection:
            row = connection.execute(
                select(io.c.job_namespace, io.c.job_name)
                .where(io.c.dataset_namespace == ns, io.c.dataset_name == name)
                .order_by((io.c.direction == "OUTPUT").desc(), io.c.last_seen.desc(),
                          io.c.job_namespace, io.c.job_name)
                .limit(1)
            ).first()
        if row is None:
            return set()
        job = index.jobs.ids.get((row[0], row[1]))
        return set() if job is None else {job}

    def _both(self, seeds: set[int], datasets: set[int], depth: int) -> tuple[set[int], set[int]]:
        jb, ds = self.index.jobs, self.index.datasets
        jobs = set(seeds)
        frontier = list(seeds)
        expanded: set[int] = set()  # datasets whose jobs are all in ``jobs`` already
        for _ in range(depth):
            found: list[int] = []
            for j in frontier:
                for d in (jb.ins[j] | jb.outs[j]) - expanded:
                    expanded.add(d)
                    new = (ds.ins[d] | ds.outs[d]) - jobs
                    if new:
                        jobs |= new
                        found.extend(new)
            if not found:
                break
            frontier = found
        datasets |= expanded
        for j in frontier:
            datasets |= jb.ins[j]
            datasets |= jb.outs[j]
        return jobs, datasets

    def _directed(self, jobs: set[int], datasets: set[int], depth: int, upstream: bool) -> None:
        """Grow ``jobs``/``datasets`` (in place) against (upstream) or along the data flow."""
        jb, ds = self.index.jobs, self.index.datasets
        job_side, ds_side = (jb.ins, ds.ins) if upstream else (jb.outs, ds.outs)
        frontier = list(jobs)
        level = 0
        while frontier:
            found: list[int] = []
            for j in frontier:
                new_ds = job_side[j] - datasets
                datasets |= new_ds
                if level >= depth:
                    continue
                for d in new_ds:
                    new = ds_side[d] - jobs
                    if new:
                        jobs |= new
                        found.extend(new)
            frontier = found
            level += 1

    # ----------------------------------------------------------------------------- /column-lineage
    def column_lineage(self, node_id: str, depth: int, with_downstream: bool = False) -> bytes:
        """Marquez's column-lineage ``{"graph": [...]}`` of DATASET_FIELD nodes as JSON bytes."""
        _check_depth(depth)
        kind, rest = parse_node_id(node_id, ("datasetField", "dataset", "job"))
        index = self.index
        with index.reading(columns=True):
            col = index.columns
            types: dict[Key, dict[str, Any]] = {}
            seeds = self._field_seeds(kind, rest, node_id, col, types)
            reached = set(seeds)
            reached |= _walk(seeds, col.inputs, depth)
            if with_downstream:
                reached |= _walk(seeds, col.outputs, depth)
            return self._column_json(col, reached, types)

    def _types(self, key: Key, types: dict[Key, dict[str, Any]]) -> dict[str, Any]:
        found = types.get(key)
        if found is None:
            found = types[key] = self.index.field_types(key)
        return found

    def _field_seeds(
        self, kind: str, rest: str, node_id: str, col: ColumnIndex, types: dict[Key, dict[str, Any]]
    ) -> list[int]:
        index = self.index
        if kind == "datasetField":
            best: tuple[str, str, str] | None = None
            colons = [i for i, c in enumerate(rest) if c == ":"]
            for a_pos, a in enumerate(colons):
                for b in colons[a_pos + 1 :]:
                    fkey = (rest[:a], rest[a + 1 : b], rest[b + 1 :])
                    if fkey in col.ids or fkey[2] in self._types((fkey[0], fkey[1]), types):
                        best = fkey  # later split points: longer namespace, then longer dataset name
            if best is None:
                raise NodeNotFound(f"node {node_id!r} not found")
            return [col.add(best)]
        if kind == "job":
            j = _resolve(index.jobs, rest, node_id)
            keys = [index.datasets.keys[d] for d in index.jobs.outs[j]]
        else:
            key = split_key(rest, lambda k: k in index.datasets.ids or k in col.by_dataset)
            if key is None:
                raise NodeNotFound(f"node {node_id!r} not found")
            keys = [key]
        seeds: set[int] = set()
        for ns, name in keys:
            seeds |= col.by_dataset.get((ns, name), set())
            seeds.update(col.add((ns, name, field)) for field in self._types((ns, name), types))
        return sorted(seeds)

    def _column_json(self, col: ColumnIndex, reached: set[int], types: dict[Key, dict[str, Any]]) -> bytes:
        names, keys = col.node_ids, col.keys
        nodes: list[dict[str, Any]] = []
        for f in sorted(reached, key=names.__getitem__):
            me = names[f]
            ns, dataset, field = keys[f]
            inputs = col.inputs[f]
            input_fields: list[dict[str, Any]] = []
            for i in sorted(inputs, key=keys.__getitem__):
                transformations = [
                    {"type": t or None, "subtype": sub or None, "description": desc, "masking": masking}
                    for (t, sub), (desc, masking) in sorted(inputs[i].items())
                ]
                first = transformations[0] if transformations else {}
                in_ns, in_ds, in_field = keys[i]
                input_fields.append({
                    "namespace": in_ns, "dataset": in_ds, "datasetVersion": None, "field": in_field,
                    "transformationDescription": first.get("description"),
                    "transformationType": first.get("type"),
                    "transformations": transformations,
                })
            first_in = input_fields[0] if input_fields else {}
            data = {
                "namespace": ns, "dataset": dataset, "datasetVersion": None, "field": field,
                "fieldType": self._types((ns, dataset), types).get(field),
                "transformationDescription": first_in.get("transformationDescription"),
                "transformationType": first_in.get("transformationType"),
                "inputFields": input_fields,
            }
            in_edges = [{"origin": names[i], "destination": me}
                        for i in sorted(inputs.keys() & reached, key=names.__getitem__)]
            out_edges = [{"origin": me, "destination": names[o]}
                         for o in sorted(col.outputs[f] & reached, key=names.__getitem__)]
            nodes.append({"id": me, "type": "DATASET_FIELD", "data": data, "inEdges": in_edges,
                          "outEdges": out_edges})
        return orjson.dumps({"graph": nodes})


def _walk(seeds: list[int], adjacency: Sequence[Collection[int]], depth: int) -> set[int]:
    """Fields reached from ``seeds`` within ``depth`` hops along ``adjacency`` (one direction)."""
    seen = set(seeds)
    frontier = list(seeds)
    for _ in range(depth):
        found: list[int] = []
        for f in frontier:
            new = [x for x in adjacency[f] if x not in seen]
            seen.update(new)
            found.extend(new)
        if not found:
            break
        frontier = found
    return seen
