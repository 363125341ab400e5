"""ClassificationService over a real store (SQLite and PostgreSQL): small hand-built event sets go in
through ingest, levels, violations, explanations and audit rows come out."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

from lineage.context import LineageContext
from lineage.governance.levels import InputLevel, effective_level
from lineage.service.classification import SUBJECT
from lineage.service.graph import BadNodeId, NodeNotFound
from lineage.store import audit

PRODUCER = "https://github.com/chaintrace/tests"
DC_URL = ("https://chaintrace.dev/spec/facets/1-0-0/DisclosureControlDatasetFacet.json"
          "#/$defs/DisclosureControlDatasetFacet")
NS = "file"
Edge = tuple[str, str, str]  # (input dataset, input field, mode): mode "", "mask" or "indirect"


def facet(schema: str, **fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER,
            "_schemaURL": f"https://openlineage.io/spec/facets/1-0-0/{schema}.json#/$defs/{schema}", **fields}


def dataset(name: str, levels: dict[str, str | None], lineage: dict[str, list[Edge]] | None = None,
            disclosure: dict[str, Any] | None = None, own: str | None = None, ns: str = NS) -> dict[str, Any]:
    """A dataset with a schema of ``levels``' columns, a tag per classified column, column lineage."""
    tags = [{"key": "classification", "value": lv, "source": "chaintrace", "field": col}
            for col, lv in levels.items() if lv is not None]
    if own is not None:
        tags.append({"key": "classification", "value": own, "source": "chaintrace"})
    facets: dict[str, Any] = {
        "schema": facet("SchemaDatasetFacet", fields=[{"name": c, "type": "string"} for c in levels]),
        "tags": facet("TagsDatasetFacet", tags=tags),
    }
    if lineage:
        facets["columnLineage"] = facet("ColumnLineageDatasetFacet", fields={
            out: {"inputFields": [
                {"namespace": ns, "name": src, "field": col, "transformations": [
                    {"type": "INDIRECT" if mode == "indirect" else "DIRECT",
                     "subtype": "FILTER" if mode == "indirect" else "TRANSFORMATION",
                     "description": f"from {col}", "masking": mode == "mask"}]}
                for src, col, mode in inputs]}
            for out, inputs in lineage.items()})
    if disclosure is not None:
        facets["disclosureControl"] = {"_producer": PRODUCER, "_schemaURL": DC_URL, **disclosure}
    return {"namespace": ns, "name": name, "facets": facets}


def event(job: str, outputs: list[dict[str, Any]], inputs: tuple[str, ...] | list[str] = (), minute: int = 0,
          ns: str = NS) -> dict[str, Any]:
    return {
        "eventType": "COMPLETE", "eventTime": f"2026-03-01T12:{minute:02d}:00.000000Z", "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": str(uuid.uuid4())}, "job": {"namespace": "etl", "name": job},
        "inputs": [{"namespace": ns, "name": n} for n in inputs], "outputs": outputs,
    }


def ingest(context: LineageContext, *events: dict[str, Any]) -> None:
    results = context.ingest.ingest_sync(list(events))
    assert all(r.accepted for r in results), [r.errors for r in results]


def k_safe(min_rows: int | None, rows: int = 120, k: int = 10) -> dict[str, Any]:
    return {"k": k, "countColumn": "n", "rows": rows, "minRowsPerCell": min_rows, "suppressedCells": 2}


def levels_of(context: LineageContext, name: str, ns: str = NS) -> dict[str, str]:
    return dict(context.classification.field_levels(ns, name))


def test_identity_carries_masking_lowers_and_dataset_takes_the_highest(context: LineageContext) -> None:
    ingest(context,
           event("load", [dataset("raw", {"id": "L4", "zip": "L3", "n": "L1"})]),
           event("mask", [dataset("clean", {"id_hash": "L2", "zip": None, "n": "L1"}, {
               "id_hash": [("raw", "id", "mask")], "zip": [("raw", "zip", "")], "n": [("raw", "n", "")]})],
               ["raw"], 1))
    service = context.classification
    assert levels_of(context, "clean") == {"id_hash": "L2", "zip": "L3", "n": "L1"}
    assert service.dataset_level(NS, "clean") == "L3"
    assert service.dataset_level(NS, "raw") == "L4"
    assert service.dataset_level(NS, "nothing-here") is None
    assert service.violations() == []


def test_k_safe_aggregate_lowers_and_k_unsafe_does_not(context: LineageContext) -> None:
    raw = dataset("stops", {"race": "L3", "age": "L3"})
    lineage = {"race": [("stops", "race", "")], "n": [("stops", "age", "indirect")]}
    declared: dict[str, str | None] = {"race": "L1", "n": "L1"}
    ingest(context, event("load", [raw]),
           event("serve", [dataset("safe", declared, lineage, k_safe(12))], ["stops"], 1),
           event("serve", [dataset("empty", declared, lineage, k_safe(None, rows=0))], ["stops"], 2),
           event("serve", [dataset("small", declared, lineage, k_safe(3))], ["stops"], 3),
           event("serve", [dataset("bare", declared, lineage)], ["stops"], 4))
    service = context.classification
    assert context.policy.k == 10
    assert service.dataset_level(NS, "safe") == "L1"
    assert service.dataset_level(NS, "empty") == "L1"
    for unsafe in ("small", "bare"):
        assert levels_of(context, unsafe) == {"race": "L3", "n": "L3"}, unsafe
    violations = {(v["dataset"], v["field"]) for v in service.violations()}
    assert violations == {("small", "race"), ("small", "n"), ("bare", "race"), ("bare", "n")}
    one = next(v for v in service.violations() if v["dataset"] == "small" and v["field"] == "race")
    assert (one["declaredLevel"], one["propagatedLevel"], one["effectiveLevel"]) == ("L1", "L3", "L3")


def test_cycles_settle_and_unclassified_stays_none(context: LineageContext) -> None:
    ingest(context,
           event("a", [dataset("a", {"x": None, "y": None},
                               {"x": [("b", "x", "")], "y": [("b", "y", "")]})], ["b"]),
           event("b", [dataset("b", {"x": None, "y": "L2"},
                               {"x": [("a", "x", ""), ("src", "s", "")], "y": [("a", "y", "")]})], ["a"], 1),
           event("src", [dataset("src", {"s": "L3"})], [], 2))
    assert levels_of(context, "a") == {"x": "L3", "y": "L2"}
    assert levels_of(context, "b") == {"x": "L3", "y": "L2"}
    path = context.classification.explain(f"datasetField:{NS}:a:x")["path"]
    assert path[-1]["nodeId"] == f"datasetField:{NS}:src:s" and path[-1]["declaredHere"]
    assert [s["step"] for s in path] == ["column", "edge", "column", "edge", "column"]


def chain(ns: str) -> list[dict[str, Any]]:
    """src -> (masking) clean -> report <-> copy (a cycle), report -> agg (a k-safe aggregate)."""
    return [
        event("src", [dataset("src", {"name": "L4", "city": "L2"}, ns=ns)], ns=ns),
        event("clean", [dataset("clean", {"name_hash": "L1", "city": None}, {
            "name_hash": [("src", "name", "mask")], "city": [("src", "city", "")]}, ns=ns)],
              ["src"], 1, ns=ns),
        event("report", [dataset("report", {"who": None, "city": "L1"}, {
            "who": [("clean", "name_hash", ""), ("copy", "who", "")], "city": [("clean", "city", "")]},
            ns=ns)], ["clean", "copy"], 2, ns=ns),
        event("copy", [dataset("copy", {"who": None}, {"who": [("report", "who", "")]}, ns=ns)],
              ["report"], 3, ns=ns),
        event("agg", [dataset("agg", {"city": "L1"}, {"city": [("report", "city", "")]}, k_safe(40), ns=ns)],
              ["report"], 4, ns=ns),
    ]


def unmasked_clean(minute: int = 9) -> dict[str, Any]:
    """The producer of clean stops masking the name: L4 flows on into clean, report and copy."""
    return event("clean", [dataset("clean", {"name_hash": "L1", "city": None}, {
        "name_hash": [("src", "name", "")], "city": [("src", "city", "")]})], ["src"], minute)


def snapshot(context: LineageContext, ns: str) -> dict[str, Any]:
    service = context.classification
    names = ("src", "clean", "report", "copy", "agg")
    return {
        "fields": {n: levels_of(context, n, ns) for n in names},
        "datasets": {n: service.dataset_level(ns, n) for n in names},
        "violations": sorted((v["dataset"], v["field"], v["declaredLevel"], v["propagatedLevel"])
                             for v in service.violations() if v["namespace"] == ns),
    }


def test_levels_do_not_depend_on_arrival_order_or_batching(context: LineageContext) -> None:
    ingest(context, *chain("one"))
    # The same graph in reverse, one event at a time: every step is an incremental refresh.
    for item in reversed(chain("two")):
        ingest(context, item)
        context.classification.ensure_fresh()
    third = chain("three")
    ingest(context, *[third[i] for i in (2, 4, 0, 3, 1)])
    expected = snapshot(context, "one")
    assert expected["fields"]["report"] == {"who": "L1", "city": "L2"}
    assert expected["datasets"] == {"src": "L4", "clean": "L2", "report": "L2", "copy": "L1", "agg": "L1"}
    assert expected["violations"] == [("report", "city", "L1", "L2")]
    assert snapshot(context, "two") == expected
    assert snapshot(context, "three") == expected


def test_a_later_event_changes_levels_incrementally(context: LineageContext) -> None:
    ingest(context, *chain(NS))
    assert levels_of(context, "report")["who"] == "L1"
    ingest(context, unmasked_clean())
    assert levels_of(context, "report")["who"] == "L4"
    assert levels_of(context, "copy") == {"who": "L4"}
    assert context.classification.dataset_level(NS, "agg") == "L1"  # still k-safe
    assert ("clean", "name_hash") in {(v["dataset"], v["field"]) for v in context.classification.violations()}


def test_effective_levels_follow_the_one_rule(context: LineageContext) -> None:
    """Every column's level equals levels.effective_level over its inputs (the fixpoint is the rule)."""
    ingest(context, *chain(NS))
    context.classification.ensure_fresh()
    lv = context.classification.levels
    checked = 0
    for f, key in enumerate(lv.keys):
        inputs = [InputLevel(level, lv.lowers(src, f)) for src in lv.inputs[f]
                  if (level := lv.eff[src]) is not None]
        declared = lv.declared.get(f)
        if declared is None and all(i.lowers for i in inputs):
            assert lv.eff[f] is None, key
        else:
            assert lv.eff[f] == effective_level(declared, inputs), key
        checked += 1
    assert checked == 8


def test_explain_a_violation_walks_back_to_the_declaration(context: LineageContext) -> None:
    ingest(context, *chain(NS))
    body = context.classification.explain(f"datasetField:{NS}:report:city")
    assert (body["declaredLevel"], body["propagatedLevel"], body["effectiveLevel"]) == ("L1", "L2", "L2")
    assert body["violation"] is True and body["reason"].startswith("policy violation")
    steps = body["path"]
    assert [s["step"] for s in steps] == ["column", "edge", "column", "edge", "column"]
    assert [s["nodeId"] for s in steps if s["step"] == "column"] == [
        f"datasetField:{NS}:{d}:city" for d in ("report", "clean", "src")]
    assert steps[-1]["declaredHere"] and steps[-1]["declaredLevel"] == "L2"
    edge = steps[1]
    assert edge["origin"] == f"datasetField:{NS}:clean:city" and edge["lowers"] is False
    assert edge["transformations"] == [
        {"type": "DIRECT", "subtype": "TRANSFORMATION", "masking": False, "description": "from city"}]
    assert "not masking" in edge["why"]


def test_explain_masking_and_k_safe_inputs_say_why_they_lower(context: LineageContext) -> None:
    ingest(context, *chain(NS))
    hashed = context.classification.explain(f"datasetField:{NS}:clean:name_hash")
    assert hashed["effectiveLevel"] == "L1" and hashed["propagatedLevel"] is None
    assert hashed["path"] == [{"step": "column", "nodeId": f"datasetField:{NS}:clean:name_hash",
                               "namespace": NS, "dataset": "clean", "field": "name_hash",
                               "declaredLevel": "L1", "effectiveLevel": "L1", "declaredHere": True}]
    [masked] = hashed["inputs"]
    assert masked["nodeId"] == f"datasetField:{NS}:src:name" and masked["effectiveLevel"] == "L4"
    assert masked["lowers"] is True and "masking" in masked["why"]
    [aggregated] = context.classification.explain(f"datasetField:{NS}:agg:city")["inputs"]
    assert aggregated["lowers"] is True
    assert aggregated["why"] == "into a k-safe aggregate: disclosureControl minRowsPerCell 40 >= k 10"


def test_explain_a_dataset_lists_every_column(context: LineageContext) -> None:
    ingest(context, *chain(NS), event("extra", [dataset("plain", {"a": None})], [], 7))
    body = context.classification.explain(f"dataset:{NS}:report")
    assert (body["effectiveLevel"], body["violation"], body["kSafe"]) == ("L2", True, None)
    assert [(f["field"], f["effectiveLevel"]) for f in body["fields"]] == [("who", "L1"), ("city", "L2")]
    assert context.classification.explain(f"dataset:{NS}:agg")["kSafe"] is True
    plain = context.classification.explain(f"dataset:{NS}:plain")
    assert plain["effectiveLevel"] is None and plain["reason"].startswith("unclassified")
    # A column known only from the schema facet is unclassified, not unknown.
    assert context.classification.explain(f"datasetField:{NS}:plain:a")["effectiveLevel"] is None


def test_explain_rejects_malformed_and_unknown_nodes(context: LineageContext) -> None:
    ingest(context, *chain(NS))
    for bad in ("report", "job:etl:x", "datasetField:file:report"):
        with pytest.raises(BadNodeId):
            context.classification.explain(bad)
    for unknown in (f"dataset:{NS}:nope", f"datasetField:{NS}:report:nope"):
        with pytest.raises(NodeNotFound):
            context.classification.explain(unknown)


def test_namespaces_with_colons_resolve(context: LineageContext) -> None:
    ns = "postgres://db:5432"
    ingest(context, event("t", [dataset("public.t", {"c:1": "L3"}, ns=ns)], ns=ns))
    body = context.classification.explain(f"datasetField:{ns}:public.t:c:1")
    assert (body["namespace"], body["dataset"], body["field"], body["effectiveLevel"]) == (
        ns, "public.t", "c:1", "L3")


def audit_rows(context: LineageContext, kind: str) -> list[dict[str, Any]]:
    rows, _ = audit.query(context.engine, kind=kind, subject=SUBJECT, limit=1000)
    return rows


def settle(context: LineageContext) -> None:
    context.classification.ensure_fresh()
    context.classification.flush_audit()


def test_audit_levels_once_and_on_change_violations_once(context: LineageContext) -> None:
    ingest(context, *chain(NS))
    settle(context)
    levels = {(r["dataset"]["name"], r["details"]["level"]) for r in audit_rows(context, "level_assigned")}
    assert levels == {("src", "L4"), ("clean", "L2"), ("report", "L2"), ("copy", "L1"), ("agg", "L1")}
    [violation] = audit_rows(context, "violation")
    assert (violation["dataset"]["name"], violation["field"]) == ("report", "city")
    assert violation["details"] == {"declared": "L1", "propagated": "L2"}
    # The same events again, and a fresh service on the same store (a restart): nothing new.
    ingest(context, *chain(NS))
    settle(context)
    restarted = type(context.classification)(context.engine, context.policy)
    restarted.ensure_fresh()
    restarted.flush_audit()
    assert len(audit_rows(context, "level_assigned")) == 5
    assert len(audit_rows(context, "violation")) == 1
    ingest(context, unmasked_clean())
    settle(context)
    risen = [r for r in audit_rows(context, "level_assigned") if r["details"]["level"] == "L4"]
    assert sorted(r["dataset"]["name"] for r in risen) == ["clean", "copy", "report", "src"]
    assert {r["details"]["previous"] for r in risen if r["dataset"]["name"] != "src"} == {"L2", "L1"}
    assert {(r["dataset"]["name"], r["field"]) for r in audit_rows(context, "violation")} == {
        ("report", "city"), ("clean", "name_hash")}


def test_the_writer_only_wakes_the_worker(context: LineageContext) -> None:
    """on_commit does no work on the caller's thread: the worker refreshes and writes the audit rows."""
    service = context.classification
    threads: list[str] = []
    original = service.ensure_fresh

    def spy() -> None:
        threads.append(threading.current_thread().name)
        original()

    service.ensure_fresh = spy  # type: ignore[method-assign]
    context.ingest.ingest_sync(chain(NS))  # the writer calls on_commit after projecting these
    deadline = time.monotonic() + 30
    while not audit_rows(context, "violation") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r["field"] for r in audit_rows(context, "violation")] == ["city"]
    assert threads and set(threads) == {"classification"}


def test_long_names_still_get_one_audit_row_each(context: LineageContext) -> None:
    """Dedup keys of long names are hashed to fit the audit log's key column (PostgreSQL enforces it)."""
    long = "/data/" + "deep/" * 60 + "table"
    ingest(context, event("src", [dataset("src", {"c": "L3"})]),
           event("long", [dataset(long, {"c": "L1"}, {"c": [("src", "c", "")]})], ["src"], 1))
    settle(context)
    ingest(context, event("long", [dataset(long, {"c": "L1"}, {"c": [("src", "c", "")]})], ["src"], 2))
    settle(context)
    assert [r["dataset"]["name"] for r in audit_rows(context, "violation")] == [long]
    assigned = sorted(r["dataset"]["name"] for r in audit_rows(context, "level_assigned"))
    assert assigned == sorted([long, "src"])
