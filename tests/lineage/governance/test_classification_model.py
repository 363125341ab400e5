"""The classification rule over a whole graph (lineage.service.classification_model), without a store.

Facts (declarations, edges, disclosureControl facets) are applied the way the service applies what it
reads from the store: each fact names the columns it may change, and ``settle`` recomputes downstream.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any

import pytest

from lineage.governance.levels import Level
from lineage.service.classification_model import ColumnLevels, Disclosure, Key

K = 10


@dataclass(frozen=True)
class Declare:
    dataset: str
    levels: tuple[tuple[str, Level], ...]


@dataclass(frozen=True)
class Edge:
    src: str  # "dataset.column"
    out: str
    masking: bool = False
    kind: tuple[str, str] = ("DIRECT", "IDENTITY")


@dataclass(frozen=True)
class Aggregate:
    dataset: str
    min_rows: int | None
    rows: int = 100


Fact = Declare | Edge | Aggregate


def key(column: str) -> tuple[str, str, str]:
    dataset, name = column.split(".")
    return ("ns", dataset, name)


def apply(model: ColumnLevels, fact: Fact) -> tuple[set[int], set[Key]]:
    """Apply one fact; returns (columns that may change, datasets whose own tag changed)."""
    seeds: set[int] = set()
    own: set[Key] = set()
    if isinstance(fact, Declare):
        model.declare(("ns", fact.dataset), dict(fact.levels), seeds, own)
    elif isinstance(fact, Edge):
        out, src = model.add(key(fact.out)), model.add(key(fact.src))
        if model.add_edge(out, src, fact.kind, None, fact.masking):
            seeds.add(out)
    else:
        dataset = ("ns", fact.dataset)
        was = model.k_safe(dataset)
        model.disclosure[dataset] = Disclosure(fact.rows, fact.min_rows, K)
        if model.k_safe(dataset) != was:
            seeds.update(model.by_dataset.get(dataset, ()))
    return seeds, own


def state(model: ColumnLevels) -> dict[str, Any]:
    return {
        "fields": {model.keys[f]: model.eff[f] for f in range(len(model.keys))},
        "datasets": dict(model.ds_level),
        "violations": {model.keys[f] for f in model.violating},
    }


def build(facts: list[Fact], *, incremental: bool) -> ColumnLevels:
    model = ColumnLevels(K)
    for fact in facts:
        seeds, own = apply(model, fact)
        if incremental:
            model.settle(seeds, own)
    if not incremental:
        model.settle(range(len(model.keys)), model.ds_declared.keys())
    return model


def levels(facts: list[Fact]) -> dict[str, Level | None]:
    model = build(facts, incremental=False)
    return {f"{k[1]}.{k[2]}": model.eff[i] for i, k in enumerate(model.keys)}


def test_masking_lowers_identity_carries() -> None:
    found = levels([Declare("raw", (("ssn", "L4"), ("zip", "L3"))), Declare("out", (("h", "L1"),)),
                    Edge("raw.ssn", "out.h", masking=True), Edge("raw.zip", "out.zip")])
    assert found == {"raw.ssn": "L4", "raw.zip": "L3", "out.h": "L1", "out.zip": "L3"}


def test_an_edge_carries_when_any_of_its_transformations_does_not_mask() -> None:
    found = levels([Declare("raw", (("ssn", "L4"),)), Declare("out", (("h", "L1"),)),
                    Edge("raw.ssn", "out.h", masking=True),
                    Edge("raw.ssn", "out.h", kind=("INDIRECT", "FILTER"))])
    assert found["out.h"] == "L4"


@pytest.mark.parametrize(("min_rows", "rows", "lowered"), [(10, 50, True), (200, 50, True), (9, 50, False),
                                                           (None, 50, False), (None, 0, True)])
def test_k_safe_aggregates_lower(min_rows: int | None, rows: int, lowered: bool) -> None:
    found = levels([Declare("raw", (("race", "L3"),)), Declare("agg", (("n", "L1"),)),
                    Edge("raw.race", "agg.n", kind=("INDIRECT", "GROUP_BY")),
                    Aggregate("agg", min_rows, rows)])
    assert found["agg.n"] == ("L1" if lowered else "L3")


def test_cycles_settle_from_the_bottom() -> None:
    cycle = [Edge("a.x", "b.x"), Edge("b.x", "a.x")]
    assert levels(cycle) == {"b.x": None, "a.x": None}  # a cycle cannot create a level by itself
    assert levels([*cycle, Declare("c", (("s", "L3"),)), Edge("c.s", "a.x")]) == {
        "b.x": "L3", "a.x": "L3", "c.s": "L3"}


def test_violations_and_dataset_levels() -> None:
    model = build([Declare("raw", (("name", "L4"),)),
                   Declare("out", (("name", "L2"), ("n", "L1"), ("", "L3"))),
                   Edge("raw.name", "out.name")], incremental=False)
    assert {model.keys[f] for f in model.violating} == {("ns", "out", "name")}
    assert model.ds_level == {("ns", "raw"): "L4", ("ns", "out"): "L4"}
    explained = model.explain_field(("ns", "out", "name"))
    assert explained["violation"] and [s["step"] for s in explained["path"]] == ["column", "edge", "column"]


def test_a_dataset_tag_counts_towards_the_dataset_level() -> None:
    model = build([Declare("doc", (("", "L3"), ("a", "L1")))], incremental=True)
    assert model.ds_level == {("ns", "doc"): "L3"}


def chain_facts() -> list[Fact]:
    return [
        Declare("src", (("name", "L4"), ("city", "L2"), ("age", "L3"))),
        Declare("clean", (("name_hash", "L1"), ("age", "L2"))),
        Edge("src.name", "clean.name_hash", masking=True), Edge("src.city", "clean.city"),
        Edge("src.age", "clean.age"),
        Edge("clean.city", "report.city"), Edge("clean.name_hash", "report.who"),
        Edge("copy.who", "report.who"),
        Edge("report.who", "copy.who"), Edge("report.city", "agg.city"), Edge("clean.age", "agg.n"),
        Declare("agg", (("city", "L1"), ("n", "L1"))), Aggregate("agg", 12),
        Declare("report", (("city", "L1"),)),
    ]


def test_order_and_incremental_settling_give_the_same_levels() -> None:
    facts = chain_facts()
    expected = state(build(facts, incremental=False))
    assert expected["violations"] == {("ns", "clean", "age"), ("ns", "report", "city")}
    rng = random.Random(4)
    orders = [list(reversed(facts)), *(rng.sample(facts, len(facts)) for _ in range(30))]
    for order in orders:
        assert state(build(order, incremental=True)) == expected
        assert state(build(order, incremental=False)) == expected


def test_changes_undo_cleanly() -> None:
    """A masking edge turned off and on again, a k-safe aggregate that stops being one and recovers."""
    facts = chain_facts()
    before = state(build(facts, incremental=False))
    model = build(facts, incremental=True)
    for change, undo in ((Edge("src.name", "clean.name_hash", masking=False),
                          Edge("src.name", "clean.name_hash", masking=True)),
                         (Aggregate("agg", 3), Aggregate("agg", 12))):
        model.settle(*apply(model, change))
        assert state(model) != before
        model.settle(*apply(model, undo))
        assert state(model) == before


def test_every_permutation_of_a_small_graph() -> None:
    facts: list[Fact] = [Declare("a", (("x", "L3"),)), Edge("a.x", "b.y"), Edge("b.y", "c.z", masking=True),
                         Declare("c", (("z", "L2"),)), Edge("c.z", "b.y")]
    expected = state(build(facts, incremental=False))
    assert expected["fields"][("ns", "b", "y")] == "L3"
    for order in itertools.permutations(facts):
        assert state(build(list(order), incremental=True)) == expected
