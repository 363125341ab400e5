"""Redaction of read answers by the caller's clearance (issue 4).

A caller cleared for L4 gets every answer untouched (the routes never call in here). For anyone else:

- a dataset whose effective level is above the clearance becomes a placeholder that keeps the graph's
  shape: its name is replaced, everywhere it appears, by ``withheld:<16 hex of sha256(ns:name)>``
  (graph node ids and edges alike, job inputs and outputs, run dataset versions, raw events), and it
  shows no fields, facets, tags, schema or description;
- a column above the clearance is removed from its dataset's fields and from the facets that list
  columns (schema, columnLineage, tags, dataQualityMetrics, dataQualityAssertions), and where a column is
  *referred to* (column-lineage nodes and inputs, governance decisions, explanations) it becomes
  ``withheld:<16 hex of sha256(ns:name:field)>``, with the transformation descriptions of that edge;
- the answer says so: a top-level ``withheld`` object (Marquez clients ignore unknown keys) and the
  header ``X-Chaintrace-Withheld: <datasets>,<fields>``.

The work is one structural walk of the answer: any object with a string ``namespace`` and ``name`` (or
``dataset``, in column lineage) is a dataset reference, so every Marquez and OpenLineage shape is covered
by the same few rules instead of one redactor per route, and new shapes are covered by default.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from lineage.governance.levels import Level

Key = tuple[str, str]
FieldKey = tuple[str, str, str]

WITHHELD_HEADER = "X-Chaintrace-Withheld"
PREFIX = "withheld:"
_FIELD_NODE = "datasetField:"
_FACET_KEYS = frozenset({"facets", "inputFacets", "outputFacets"})
_DESCRIPTIONS = frozenset({"description", "transformationDescription"})
# What a placeholder dataset (or column node) shows nothing of.
_EMPTY_LISTS = frozenset({"fields", "tags", "inputFields"})
_NULLED = frozenset({"description", "transformationDescription", "transformationType", "fieldType",
                     "columnLineage", "lifecycleState"})
_PLACEHOLDER = re.compile(r"withheld:[0-9a-f]{16}")


def placeholder(namespace: str, name: str) -> str:
    """The stable opaque name a withheld dataset goes by."""
    return PREFIX + hashlib.sha256(f"{namespace}:{name}".encode()).hexdigest()[:16]


def field_placeholder(namespace: str, name: str, field_name: str) -> str:
    """The stable opaque name a withheld column goes by."""
    return PREFIX + hashlib.sha256(f"{namespace}:{name}:{field_name}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ClearanceView:
    """What one clearance may not see (built by the classification service, cached per change)."""

    clearance: Level
    datasets: Mapping[Key, Level]  # withheld datasets and their levels
    fields: Mapping[Key, frozenset[str]]  # columns above the clearance, per dataset
    names: Mapping[str, Key]  # bare names only withheld datasets have: replaced wherever they stand alone

    def hides_field(self, key: Key, name: str) -> bool:
        return key in self.datasets or name in self.fields.get(key, ())

    @cached_property
    def node_ids(self) -> dict[str, tuple[str, Key]]:
        """``dataset:<ns>:<name>`` of each withheld dataset -> (its placeholder node id, its key)."""
        return {f"dataset:{ns}:{name}": (f"dataset:{ns}:{placeholder(ns, name)}", (ns, name))
                for ns, name in self.datasets}

    @cached_property
    def _by_placeholder(self) -> dict[Key, Key]:
        return {(ns, placeholder(ns, name)): (ns, name) for ns, name in self.datasets}

    @cached_property
    def _by_field_placeholder(self) -> dict[str, FieldKey]:
        return {field_placeholder(*key, name): (*key, name) for key, names in self.fields.items()
                for name in names}

    def resolve(self, namespace: str, name: str) -> Key:
        """The real key of a placeholder name (a client following a placeholder), else the key as is."""
        if name.startswith(PREFIX):
            return self._by_placeholder.get((namespace, name), (namespace, name))
        return namespace, name

    def resolve_node_id(self, node_id: str) -> str:
        """``dataset:<ns>:withheld:...`` and ``datasetField:...:withheld:...`` back to real node ids."""
        if PREFIX not in node_id:
            return node_id
        kind, _, rest = node_id.partition(":")
        if kind == "dataset":
            ns, _, name = rest.rpartition(":" + PREFIX)
            found = self._by_placeholder.get((ns, PREFIX + name))
            return f"dataset:{found[0]}:{found[1]}" if found else node_id
        if kind == "datasetField":
            tail = _PLACEHOLDER.search(rest[-(len(PREFIX) + 16):])
            key = self._by_field_placeholder.get(tail.group(0)) if tail else None
            return f"datasetField:{key[0]}:{key[1]}:{key[2]}" if key else node_id
        return node_id


def build_view(clearance: Level, withheld: Mapping[Key, Level], hidden: Mapping[Key, frozenset[str]],
               name_count: Mapping[str, int]) -> ClearanceView:
    """A view; ``name_count``: how many known datasets (any namespace) have each bare name."""
    per_name = Counter(name for _, name in withheld)
    # A bare string equal to a withheld name is replaced only when no visible dataset has that name.
    names = {key[1]: key for key in sorted(withheld, reverse=True)
             if per_name[key[1]] == name_count.get(key[1], 0)}
    return ClearanceView(clearance, dict(withheld), {k: v for k, v in hidden.items() if v}, names)


@dataclass
class Withheld:
    """What one answer left out."""

    clearance: Level
    datasets: set[Key] = field(default_factory=set)
    fields: set[FieldKey] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.datasets or self.fields)

    def json(self) -> dict[str, Any]:
        n, m = len(self.datasets), len(self.fields)
        return {
            "datasets": n, "fields": m, "clearance": self.clearance,
            "message": (f"Parts of this answer are above your clearance {self.clearance} and are withheld: "
                        f"{n} dataset(s) (shown as placeholders named withheld:<hash>, without fields, "
                        f"facets, tags or schema, or left out of search results) and {m} column(s) "
                        "(removed, or shown as placeholders)."),
        }

    def headers(self) -> dict[str, str]:
        return {WITHHELD_HEADER: f"{len(self.datasets)},{len(self.fields)}"} if self else {}


def _ref(d: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(namespace, name, the key holding the name) of a dataset reference, else None."""
    ns = d.get("namespace")
    if isinstance(ns, str):
        for name_key in ("name", "dataset"):
            name = d.get(name_key)
            if isinstance(name, str):
                return ns, name, name_key
    return None


class Redactor:
    """One walk over one answer; :attr:`withheld` counts what it left out."""

    def __init__(self, view: ClearanceView) -> None:
        self.view = view
        self.withheld = Withheld(view.clearance)
        self._field_nodes: dict[str, str] = {}

    def __call__(self, value: Any) -> Any:
        return self._walk(value, False)

    def answer(self, body: Any) -> Any:
        """The redacted answer, with the ``withheld`` object when something was left out."""
        out = self(body)
        if self.withheld and isinstance(out, dict):
            out["withheld"] = self.withheld.json()
        return out

    # -- the walk ---------------------------------------------------------------------------------
    def _walk(self, value: Any, opaque: bool) -> Any:
        if isinstance(value, dict):
            return self._dict(value, opaque)
        if isinstance(value, list):
            return [self._walk(item, opaque) for item in value]
        if isinstance(value, str):
            return self._string(value)
        return value

    def _dict(self, d: dict[str, Any], opaque: bool) -> dict[str, Any]:
        view = self.view
        ref = _ref(d)
        if ref is not None:
            key = ref[:2]
            if key in view.datasets:
                return self._placeholder(d, key, ref[2])
            hidden = view.fields.get(key)
            if hidden:
                d = self._visible(d, key, hidden)
                name = d.get("field")
                if isinstance(name, str) and name in hidden:
                    d = {**d, "field": self._field(key, name), "fieldType": None, "withheld": True}
                    opaque = True
        else:
            d, opaque = self._owned(d, opaque)
        out = {k: None if opaque and k in _DESCRIPTIONS else self._walk(v, opaque) for k, v in d.items()}
        inputs = d.get("inputFields")
        if isinstance(inputs, list) and any(self._hidden(item) for item in inputs) and \
                "transformationDescription" in out:
            out["transformationDescription"] = None  # Marquez copies the first input's description here
        return out

    def _owned(self, d: dict[str, Any], opaque: bool) -> tuple[dict[str, Any], bool]:
        """Objects that belong to a dataset without being a reference to it."""
        version = d.get("datasetVersionId")  # a run's input/output version and its facets
        vref = _ref(version) if isinstance(version, dict) else None
        if vref is not None and isinstance(d.get("facets"), dict):
            if vref[:2] in self.view.datasets:
                d = {**d, "facets": {}}
            elif hidden := self.view.fields.get(vref[:2]):
                d = {**d, "facets": self._facets(vref[:2], hidden, d["facets"])}
        owner, name = d.get("dataset"), d.get("field")  # e.g. a governance decision about a column
        oref = _ref(owner) if isinstance(owner, dict) else None
        if oref is not None and isinstance(name, str) and self.view.hides_field(oref[:2], name):
            d, opaque = {**d, "field": self._field(oref[:2], name)}, True
        origin, destination = d.get("origin"), d.get("destination")  # an edge into or out of the hidden
        if isinstance(origin, str) and isinstance(destination, str) and (
                self._string(origin) != origin or self._string(destination) != destination):
            opaque = True
        return d, opaque

    def _hidden(self, item: Any) -> bool:
        ref = _ref(item) if isinstance(item, dict) else None
        name = item.get("field") if isinstance(item, dict) else None
        return ref is not None and (ref[:2] in self.view.datasets or (
            isinstance(name, str) and name in self.view.fields.get(ref[:2], ())))

    def _placeholder(self, d: dict[str, Any], key: Key, name_key: str) -> dict[str, Any]:
        ph = placeholder(*key)
        self.withheld.datasets.add(key)
        out: dict[str, Any] = {}
        for k, v in d.items():
            if k in (name_key, "physicalName"):
                out[k] = ph
            elif k in _FACET_KEYS:
                out[k] = {}
            elif k in _EMPTY_LISTS:
                out[k] = []
            elif k in _NULLED:
                out[k] = None
            elif k == "sourceName":
                out[k] = key[0]
            elif k == "field" and isinstance(v, str):
                out[k] = self._field(key, v)
            else:
                out[k] = self._walk(v, True)
        if "physicalName" in d or "fieldType" in d:  # a Marquez dataset, version or column node
            out["withheld"] = True
        return out

    def _visible(self, d: dict[str, Any], key: Key, hidden: frozenset[str]) -> dict[str, Any]:
        """A visible dataset (or reference) without its hidden columns."""
        out = dict(d)
        fields = out.get("fields")
        if isinstance(fields, list):
            out["fields"] = [f for f in fields if not self._drop(key, hidden, f, "name")]
        for facet_key in _FACET_KEYS:
            if isinstance(out.get(facet_key), dict):
                out[facet_key] = self._facets(key, hidden, out[facet_key])
        return out

    def _facets(self, key: Key, hidden: frozenset[str], facets: dict[str, Any]) -> dict[str, Any]:
        """Facets without the entries of hidden columns."""
        out = dict(facets)
        for facet, inner, kind, by in (("schema", "fields", list, "name"), ("tags", "tags", list, "field"),
                                       ("columnLineage", "fields", dict, ""),
                                       ("dataQualityMetrics", "columnMetrics", dict, ""),
                                       ("dataQualityAssertions", "assertions", list, "column")):
            value = out.get(facet)
            entries = value.get(inner) if isinstance(value, dict) else None
            if isinstance(value, dict) and isinstance(entries, list) and kind is list:
                out[facet] = {**value, inner: [e for e in entries if not self._drop(key, hidden, e, by)]}
            elif isinstance(value, dict) and isinstance(entries, dict) and kind is dict:
                out[facet] = {**value, inner: {c: e for c, e in entries.items()
                                               if not self._drop(key, hidden, {"": c}, "")}}
        return out

    def _drop(self, key: Key, hidden: frozenset[str], entry: Any, by: str) -> bool:
        name = entry.get(by) if isinstance(entry, dict) else None
        if isinstance(name, str) and name in hidden:
            self.withheld.fields.add((*key, name))
            return True
        return False

    def _field(self, key: Key, name: str) -> str:
        self.withheld.fields.add((*key, name))
        return field_placeholder(*key, name)

    def _string(self, value: str) -> str:
        view = self.view
        mapped = view.node_ids.get(value)
        if mapped is not None:
            self.withheld.datasets.add(mapped[1])
            return mapped[0]
        if value.startswith(_FIELD_NODE):
            return self._field_node(value)
        key = view.names.get(value)
        if key is not None:
            self.withheld.datasets.add(key)
            return placeholder(*key)
        return value

    def _field_node(self, node_id: str) -> str:
        """``datasetField:<ns>:<dataset>:<field>`` of a hidden column -> its placeholder id."""
        found = self._field_nodes.get(node_id)
        if found is not None:
            return found
        rest, result = node_id[len(_FIELD_NODE):], node_id
        colons = [i for i, c in enumerate(rest) if c == ":"]
        # The longest namespace, then the longest dataset name, as the graph service splits them.
        for a, b in sorted(((a, b) for n, a in enumerate(colons) for b in colons[n + 1:]), reverse=True):
            key, name = (rest[:a], rest[a + 1 : b]), rest[b + 1 :]
            if self.view.hides_field(key, name):
                shown = placeholder(*key) if key in self.view.datasets else key[1]
                if key in self.view.datasets:
                    self.withheld.datasets.add(key)
                result = f"{_FIELD_NODE}{key[0]}:{shown}:{self._field(key, name)}"
                break
        self._field_nodes[node_id] = result
        return result


def redact(body: Any, view: ClearanceView, also: Iterable[Key] = ()) -> tuple[Any, dict[str, str]]:
    """The answer for a caller of ``view.clearance`` and the headers that say what was withheld;
    ``also``: withheld datasets the answer left out before it was made (search results)."""
    redactor = Redactor(view)
    redactor.withheld.datasets.update(also)
    out = redactor.answer(body)
    return out, redactor.withheld.headers()
