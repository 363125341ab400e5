"""The classification rule applied to a whole graph: declared levels, column-lineage edges, and the
effective level of every column and dataset (pure: no store; :mod:`lineage.service.classification`
feeds it from the store and keeps it fresh).

A column's *declared* level is the ``tags`` facet entry with key ``classification`` and its ``field``;
its *propagated* level is the highest effective level its inputs carry in through edges that do not
lower; its *effective* level follows :func:`lineage.governance.levels.effective_level` (one
implementation of the rule). An edge lowers when every transformation of it is ``masking``, or when it
leads into a k-safe aggregate (a dataset with the ``disclosureControl`` facet and ``rows == 0 or
minRowsPerCell >= k``). A dataset carries the highest effective level of its columns and of its
dataset-level tag. A column with nothing declared and nothing carried in is unclassified (None), which
access control treats as L1.

Levels are the least fixpoint of the rule (computed from the bottom), so cycles settle and the order
in which facts arrive does not matter; :meth:`ColumnLevels.settle` recomputes only the columns
downstream of what changed.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from lineage.governance.levels import (
    InputLevel,
    Level,
    effective_level,
    highest,
    is_violation,
    propagated_level,
    rank,
)

Key = tuple[str, str]
FieldKey = tuple[str, str, str]
Transformations = dict[tuple[str, str], tuple[str | None, bool]]  # (type, subtype) -> (description, masking)
_INPUT_KEYS = ("nodeId", "namespace", "dataset", "field", "effectiveLevel")


def field_node_id(key: FieldKey) -> str:
    return f"datasetField:{key[0]}:{key[1]}:{key[2]}"


@dataclass(frozen=True)
class Disclosure:
    """The ``disclosureControl`` facet of an aggregate output, as far as the rule needs it."""

    rows: int | None
    min_rows: int | None
    k: int | None

    @classmethod
    def parse(cls, value: Any) -> Disclosure | None:
        if not isinstance(value, dict):
            return None
        return cls(_int(value.get("rows")), _int(value.get("minRowsPerCell")), _int(value.get("k")))

    def safe(self, k: int) -> bool:
        return self.rows == 0 or (self.min_rows is not None and self.min_rows >= k)

    def why(self, k: int) -> str:
        if self.rows == 0:
            return "it published no rows"
        if self.min_rows is None:
            return "its disclosureControl facet gives no minRowsPerCell"
        relation = ">=" if self.min_rows >= k else "<"
        return f"disclosureControl minRowsPerCell {self.min_rows} {relation} k {k}"


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class ColumnLevels:
    """Declarations, column-lineage edges and the levels they give (no locking: the service locks)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.ids: dict[FieldKey, int] = {}
        self.keys: list[FieldKey] = []
        self.inputs: list[dict[int, Transformations]] = []
        self.outputs: list[set[int]] = []
        self.by_dataset: dict[Key, set[int]] = {}
        self.declared: dict[int, Level] = {}
        self.eff: list[Level | None] = []
        self.violating: set[int] = set()
        self.ds_declared: dict[Key, Level] = {}
        self.disclosure: dict[Key, Disclosure] = {}
        self.ds_level: dict[Key, Level] = {}
        self.known: set[Key] = set()  # every dataset seen (store rows and column-lineage ends)
        self.name_count: Counter[str] = Counter()  # datasets per bare name, over all namespaces

    def add(self, key: FieldKey) -> int:
        found = self.ids.get(key)
        if found is not None:
            return found
        i = len(self.keys)
        self.ids[key] = i
        self.keys.append(key)
        self.inputs.append({})
        self.outputs.append(set())
        self.eff.append(None)
        self.by_dataset.setdefault(key[:2], set()).add(i)
        self.know([key[:2]])
        return i

    def know(self, datasets: Iterable[Key]) -> None:
        for key in datasets:
            if key not in self.known:
                self.known.add(key)
                self.name_count[key[1]] += 1

    def add_edge(
        self, out: int, src: int, kind: tuple[str, str], description: str | None, masking: bool
    ) -> bool:
        """Record one transformation of ``src -> out``; True when that may change levels."""
        transformations = self.inputs[out].setdefault(src, {})
        self.outputs[src].add(out)
        old = transformations.get(kind)
        transformations[kind] = (description, masking)
        return old is None or old[1] != masking

    # -- the rule --------------------------------------------------------------------------------
    def k_safe(self, dataset: Key) -> bool:
        found = self.disclosure.get(dataset)
        return found is not None and found.safe(self.k)

    def lowers(self, src: int, out: int) -> bool:
        """Whether the edge ``src -> out`` lowers: it leads into a k-safe aggregate, or every
        transformation of it masks."""
        if self.k_safe(self.keys[out][:2]):
            return True
        kinds = self.inputs[out].get(src)
        return kinds is not None and len(kinds) > 0 and all(masking for _, masking in kinds.values())

    def why(self, src: int, out: int) -> str:
        """Why the edge ``src -> out`` lowers, or why it does not."""
        found = self.disclosure.get(self.keys[out][:2])
        if found is not None and found.safe(self.k):
            return f"into a k-safe aggregate: {found.why(self.k)}"
        kinds = self.inputs[out].get(src, {})
        if kinds and all(masking for _, masking in kinds.values()):
            return "masking transformation (hashing, generalisation): the declared level applies"
        carrying = sorted("/".join(p for p in kind if p) or "unspecified"
                          for kind, (_, masking) in kinds.items() if not masking)
        aggregate = "no disclosureControl facet" if found is None else f"not k-safe: {found.why(self.k)}"
        return f"not masking ({', '.join(carrying)}) and the output has {aggregate}"

    def input_levels(self, out: int) -> list[InputLevel]:
        """The classified inputs of ``out`` and whether each edge lowers (:meth:`lowers`, inlined: this
        runs for every column of every recomputation)."""
        eff, into_k_safe = self.eff, self.k_safe(self.keys[out][:2])
        return [InputLevel(level, into_k_safe or all(masking for _, masking in kinds.values()))
                for src, kinds in self.inputs[out].items() if (level := eff[src]) is not None]

    def _level(self, f: int) -> Level | None:
        inputs = self.input_levels(f)
        declared = self.declared.get(f)
        if declared is None and propagated_level(inputs) is None:
            return None
        return effective_level(declared, inputs)

    def propagated(self, f: int) -> Level | None:
        return propagated_level(self.input_levels(f))

    def settle(self, seeds: Iterable[int], datasets: Iterable[Key] = ()) -> tuple[set[int], set[Key]]:
        """Recompute the columns downstream of ``seeds`` (the least fixpoint: cycles settle) and the
        levels of their datasets and of ``datasets`` (whose own tag changed).

        Returns the columns recomputed and the datasets whose level changed.
        """
        region: set[int] = set()
        stack = list(seeds)
        while stack:
            f = stack.pop()
            if f not in region:
                region.add(f)
                stack.extend(self.outputs[f] - region)
        for f in region:
            self.eff[f] = None  # from the bottom: what remains is what declarations carry
        queue, queued = deque(sorted(region)), set(region)
        while queue:
            f = queue.popleft()
            queued.discard(f)
            level = self._level(f)
            if level != self.eff[f]:
                self.eff[f] = level
                for out in self.outputs[f]:
                    if out in region and out not in queued:
                        queue.append(out)
                        queued.add(out)
        for f in region:
            if is_violation(self.declared.get(f), self.input_levels(f)):
                self.violating.add(f)
            else:
                self.violating.discard(f)
        changed: set[Key] = set()
        for dataset in {self.keys[f][:2] for f in region} | set(datasets):
            levels = [lv for f in self.by_dataset.get(dataset, ()) if (lv := self.eff[f]) is not None]
            own = self.ds_declared.get(dataset)
            level = highest([*levels, own]) if own is not None else highest(levels) if levels else None
            if self.ds_level.get(dataset) != level:
                changed.add(dataset)
                if level is None:
                    del self.ds_level[dataset]
                else:
                    self.ds_level[dataset] = level
        return region, changed

    def declare(self, dataset: Key, declared: dict[str, Level], seeds: set[int], own: set[Key]) -> None:
        """Set a dataset's declared levels (``''``: its own tag); adds to ``seeds`` the columns whose
        declaration changed and to ``own`` the dataset when its own tag changed."""
        dataset_tag = declared.get("")
        if self.ds_declared.get(dataset) != dataset_tag:
            own.add(dataset)
            if dataset_tag is None:
                self.ds_declared.pop(dataset, None)
            else:
                self.ds_declared[dataset] = dataset_tag
        fields = {self.add((*dataset, name)): level for name, level in declared.items() if name}
        for fid in set(fields) | {f for f in self.by_dataset.get(dataset, ()) if f in self.declared}:
            if self.declared.get(fid) != fields.get(fid):
                seeds.add(fid)
                if fid in fields:
                    self.declared[fid] = fields[fid]
                else:
                    del self.declared[fid]

    # -- explanations ------------------------------------------------------------------------------
    def summary(self, key: FieldKey) -> dict[str, Any]:
        f = self.ids.get(key)
        return {
            "nodeId": field_node_id(key), "namespace": key[0], "dataset": key[1], "field": key[2],
            "declaredLevel": None if f is None else self.declared.get(f),
            "propagatedLevel": None if f is None else self.propagated(f),
            "effectiveLevel": None if f is None else self.eff[f],
            "violation": f is not None and f in self.violating,
        }

    def _reason(self, key: FieldKey, hops: int = 0) -> str:
        summary = self.summary(key)
        declared, carried = summary["declaredLevel"], summary["propagatedLevel"]
        level = summary["effectiveLevel"]
        edges = f"{hops} column-lineage edge(s)" if hops else "column-lineage edges"
        through = f"through {edges} that do not lower"
        if level is None:
            return "unclassified: no level is declared and no classified input reaches it (treated as L1)"
        if declared is None:
            return f"{level} carried in {through}, from the column that declares it (see path)"
        if carried is None:
            return (f"declared {declared} by its producer (tags facet); no input carries a level in "
                    "through an edge that does not lower")
        if rank(carried) <= rank(declared):
            return f"declared {declared} by its producer, at or above the {carried} its inputs carry in"
        return (f"policy violation: declared {declared}, but {carried} is carried in {through} "
                "(neither masking nor a k-safe aggregate)")

    def _edge(self, src: int, out: int) -> dict[str, Any]:
        return {
            "origin": field_node_id(self.keys[src]), "destination": field_node_id(self.keys[out]),
            "transformations": [{"type": t or None, "subtype": sub or None, "masking": masking,
                                 "description": desc}
                                for (t, sub), (desc, masking) in sorted(self.inputs[out][src].items())],
            "lowers": self.lowers(src, out), "why": self.why(src, out),
        }

    def _column(self, f: int, here: bool) -> dict[str, Any]:
        summary = self.summary(self.keys[f])
        return {"step": "column", **{k: summary[k] for k in (
            "nodeId", "namespace", "dataset", "field", "declaredLevel", "effectiveLevel")},
            "declaredHere": here}

    def _path(self, f: int) -> list[dict[str, Any]]:
        """From ``f`` upstream, over edges that do not lower, to the column that declares its level.

        Breadth first through columns at the same level, so the path is a shortest one; the least
        fixpoint guarantees such a column exists (a cycle cannot create a level by itself).
        """
        level = self.eff[f]
        if level is None:
            return []
        if self.declared.get(f) == level:
            return [self._column(f, True)]
        downstream: dict[int, int] = {f: -1}
        queue, origin = deque([f]), -1
        while queue and origin < 0:
            cur = queue.popleft()
            for src in sorted(self.inputs[cur], key=self.keys.__getitem__):
                if src in downstream or self.eff[src] != level or self.lowers(src, cur):
                    continue
                downstream[src] = cur
                if self.declared.get(src) == level:
                    origin = src
                    break
                queue.append(src)
        chain = [origin]
        while chain[-1] >= 0 and downstream[chain[-1]] >= 0:
            chain.append(downstream[chain[-1]])
        chain.reverse()  # f first, the declaring column last
        steps = [self._column(f, False)]
        for out, src in pairwise(chain):
            steps += [{"step": "edge", **self._edge(src, out)}, self._column(src, src == origin)]
        return steps

    def explain_field(self, key: FieldKey) -> dict[str, Any]:
        f = self.ids.get(key)
        path = [] if f is None else self._path(f)
        inputs = [] if f is None else [
            {**{k: v for k, v in self.summary(self.keys[src]).items() if k in _INPUT_KEYS},
             **{k: v for k, v in self._edge(src, f).items() if k not in ("origin", "destination")}}
            for src in sorted(self.inputs[f], key=self.keys.__getitem__)]
        hops = sum(1 for step in path if step["step"] == "edge")
        return {**self.summary(key), "type": "DATASET_FIELD", "reason": self._reason(key, hops),
                "path": path, "inputs": inputs}

    def explain_dataset(self, key: Key, schema: list[str]) -> dict[str, Any]:
        names = list(dict.fromkeys([*schema, *sorted(self.keys[f][2] for f in self.by_dataset.get(key, ()))]))
        fields = [self.summary((*key, name)) for name in names]
        level, own, disclosure = self.ds_level.get(key), self.ds_declared.get(key), self.disclosure.get(key)
        reason = ("unclassified: neither a column nor the dataset carries a level (treated as L1)"
                  if level is None else
                  f"{level}: the highest effective level of its columns and of its dataset-level tag")
        return {
            "nodeId": f"dataset:{key[0]}:{key[1]}", "type": "DATASET", "namespace": key[0], "name": key[1],
            "declaredLevel": own, "effectiveLevel": level, "reason": reason,
            "kSafe": None if disclosure is None else disclosure.safe(self.k),
            "violation": any(item["violation"] for item in fields), "fields": fields,
        }

    def violations(self) -> list[dict[str, Any]]:
        """Every column whose declared level is below what non-lowering edges carry in."""
        return [{**self.summary(self.keys[f]), "reason": self._reason(self.keys[f])}
                for f in sorted(self.violating, key=self.keys.__getitem__)]
