"""Facets of runs and dataset versions, merged on read from the run's raw events.

A run has a handful of events (START, RUNNING, COMPLETE ...), indexed by ``events.run_id``, so merging
their facets when someone asks is cheap, and it spares ingest and rebuild from writing a facet row per
run per facet. The merge is the projector's: per facet key, the event with the greatest
(eventTime, event_hash) wins, so the answer does not depend on arrival order.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, select

from lineage.store import schema as s
from lineage.store.projector import dataset_version_id, run_key

_CHUNK = 500

DatasetKey = tuple[str, str]


@dataclass
class RunFacets:
    """Everything facet-shaped one run reported, merged over its events."""

    run: dict[str, Any] = field(default_factory=dict)
    job: dict[str, Any] = field(default_factory=dict)
    # dataset facets + outputFacets of each output, keyed by dataset version id
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    inputs: dict[DatasetKey, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[DatasetKey, dict[str, Any]] = field(default_factory=dict)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _events_of_runs(connection: Connection, run_ids: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(run_id, event) for every raw event of ``run_ids``, oldest first (ties by hash)."""
    e = s.events
    for start in range(0, len(run_ids), _CHUNK):
        chunk = run_ids[start : start + _CHUNK]
        rows = connection.execute(
            select(e.c.run_id, e.c.payload)
            .where(e.c.run_id.in_(chunk))
            .order_by(e.c.run_id, e.c.event_time, e.c.event_hash)
        )
        for run_id, payload in rows:
            event = orjson.loads(payload)
            if isinstance(event, dict):
                yield str(run_id), event


def load_run_facets(connection: Connection, run_ids: Collection[str]) -> dict[str, RunFacets]:
    """Merged facets of each run in ``run_ids`` (runs without events are absent)."""
    wanted = list(dict.fromkeys(run_key(r) for r in run_ids))
    merged: dict[str, RunFacets] = {}
    for run_id, event in _events_of_runs(connection, wanted):
        facets = merged.setdefault(run_id, RunFacets())
        facets.run.update(_dict(_dict(event.get("run")).get("facets")))
        facets.job.update(_dict(_dict(event.get("job")).get("facets")))
        for key, io_key, target in (("inputs", "inputFacets", facets.inputs),
                                    ("outputs", "outputFacets", facets.outputs)):
            items = event.get(key)
            if not isinstance(items, list):
                continue
            for ds in items:
                if not isinstance(ds, dict) or "namespace" not in ds or "name" not in ds:
                    continue
                ds_key = (str(ds["namespace"]), str(ds["name"]))
                combined = target.setdefault(ds_key, {})
                combined.update(_dict(ds.get("facets")))
                combined.update(_dict(ds.get(io_key)))
                if key == "outputs":
                    version = dataset_version_id(ds_key[0], ds_key[1], run_id)
                    facets.versions[version] = combined
    return merged


def load_version_facets(
    connection: Connection, versions: Collection[tuple[str, str]]
) -> dict[str, dict[str, Any]]:
    """Facets of dataset versions, given (version, run_id) pairs."""
    runs = load_run_facets(connection, [run_id for _, run_id in versions])
    return {
        version: runs[run_key(run_id)].versions.get(version, {})
        for version, run_id in versions
        if run_key(run_id) in runs
    }
