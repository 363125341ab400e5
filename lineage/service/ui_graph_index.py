"""The UI's condensed graph for a caller who sees everything, read straight from the graph index.

The general path (:func:`lineage.service.ui_graph.compact_graph`) condenses the Marquez answer after the
redaction walk, which needs the whole answer parsed: for 2,000 nodes that is megabytes of node data
(every facet of every dataset) parsed to keep a few fields of each. A caller cleared for L4 has nothing
redacted (the lineage route then sends the cached bytes as they are), so here the same node selection
as ``GET /api/v1/lineage`` (``GraphService``'s own steps, in the same order) is condensed from the
index's keys and edges, and the two things the UI marks come from two indexed queries: the gate facets
of the selected datasets and the latest run state of the selected jobs. The answer is the same as the
general path's (the tests compare both with the lineage route).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, select

from lineage.governance.levels import Level
from lineage.service.graph import Direction, GraphService
from lineage.store import read_queries as q
from lineage.store import schema as s

Key = tuple[str, str]
GATE_FACETS = ("gateResult", "dataQualityAssertions")


def select_nodes(graph: GraphService, node_id: str, depth: int, direction: Direction
                 ) -> tuple[list[Key], list[Key], list[tuple[int, int]]]:
    """(datasets, jobs, edges) of the lineage answer around ``node_id``; edges index into
    ``datasets + jobs`` (nodes sorted by id, as Marquez sorts them) and run along the data flow.

    The same selection as :meth:`GraphService.lineage` (both use :meth:`GraphService.reached`); BadNodeId
    and NodeNotFound as it raises them.
    """
    index = graph.index
    with index.reading():
        jb, ds = index.jobs, index.datasets
        jobs, datasets = graph.reached(node_id, depth, direction)
        dataset_order = sorted(datasets, key=ds.node_ids.__getitem__)
        job_order = sorted(jobs, key=jb.node_ids.__getitem__)
        position = {d: i for i, d in enumerate(dataset_order)}
        offset = len(dataset_order)
        edges: list[tuple[int, int]] = []
        for i, j in enumerate(job_order, start=offset):
            edges.extend((position[d], i) for d in sorted(jb.ins[j] & datasets, key=ds.node_ids.__getitem__))
            edges.extend((i, position[d]) for d in sorted(jb.outs[j] & datasets, key=ds.node_ids.__getitem__))
        return [ds.keys[d] for d in dataset_order], [jb.keys[j] for j in job_order], edges


def gate_facets(connection: Connection, datasets: Sequence[Key]) -> dict[Key, dict[str, Any]]:
    """The current gate facets (``gateResult``, ``dataQualityAssertions``) of each dataset having any."""
    f = s.dataset_facets
    found: dict[Key, dict[str, Any]] = {}
    for chunk in q.chunked(datasets):
        rows = connection.execute(
            select(f.c.namespace, f.c.name, f.c.facet, f.c.value)
            .where(q.key_in(connection, [f.c.namespace, f.c.name], chunk), f.c.facet.in_(GATE_FACETS)))
        for row in rows:
            found.setdefault((row.namespace, row.name), {})[row.facet] = orjson.loads(row.value)
    return found


def latest_states(connection: Connection, jobs: Sequence[Key]) -> dict[Key, str]:
    """The state of each job's newest run: the run Marquez's ``latestRun`` shows."""
    newest = {ids[0]: key for key, ids in q.latest_run_ids(connection, jobs, 1).items() if ids}
    r = s.runs
    found: dict[Key, str] = {}
    for chunk in q.chunked(list(newest)):
        for run_id, state in connection.execute(select(r.c.run_id, r.c.state).where(r.c.run_id.in_(chunk))):
            found[newest[run_id]] = str(state)
    return found


def condensed(datasets: list[Key], jobs: list[Key], edges: list[tuple[int, int]], levels: Mapping[Key, Level],
              gates: Mapping[Key, str], states: Mapping[Key, str]) -> dict[str, Any]:
    """The ``{"nodes", "edges"}`` answer (see :func:`lineage.service.ui_graph.compact_graph`)."""
    nodes: list[dict[str, Any]] = [
        {"id": f"dataset:{ns}:{name}", "kind": "dataset", "namespace": ns, "name": name, "withheld": False,
         "level": levels.get((ns, name)), "gate": gates.get((ns, name), "none")} for ns, name in datasets]
    nodes += [{"id": f"job:{ns}:{name}", "kind": "job", "namespace": ns, "name": name, "withheld": False,
               "state": states.get((ns, name))} for ns, name in jobs]
    return {"nodes": nodes, "edges": [list(edge) for edge in edges]}
