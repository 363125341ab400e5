"""Validation of incoming OpenLineage events against the vendored 2-0-2 JSON Schema.

Two levels, following the issue's acceptance criteria:

* The CORE schema (``OpenLineage.json``) decides acceptance. Breaking it yields :class:`FieldError` s
  naming the offending field (``run.runId``, ``outputs[0].name``, ``""`` for the root).
* A STANDARD facet (a key defined by one of the ``facets/*.json`` files) that breaks its own facet
  schema does not reject the event; it yields :class:`FacetWarning` s instead. Custom facet keys are
  only checked by the core schema (``_producer``/``_schemaURL``).

Formats: ``uuid`` and ``date-time`` (RFC 3339, time zone required) are asserted; every other format
(``uri`` in particular: producers send ``bigquery`` as a data source uri) is an annotation only. The
non-asserted ``format`` keywords are dropped from the in-memory schema copies, which is cheaper than
a Python format callback. Every schema comes from the spec directory; retrieval is disabled, so no
network access is ever attempted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jsonschema_rs

CORE_ID: Final = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
DEFAULT_SPEC_DIR: Final = Path(__file__).resolve().parent.parent / "spec" / "openlineage" / "2-0-2"
ASSERTED_FORMATS: Final = frozenset({"uuid", "date-time"})
MAX_ERRORS: Final = 20
MAX_MESSAGE: Final = 300

EVENT_KINDS: Final = ("RunEvent", "DatasetEvent", "JobEvent")
# The core facet base definitions; a facet file's definition extends one of them, which tells where
# the facet may appear.
FACET_BASES: Final = ("RunFacet", "JobFacet", "DatasetFacet", "InputDatasetFacet", "OutputDatasetFacet")
# Bases with a ``_deleted`` flag: a deletion marker carries no payload, so it is not checked.
_DELETABLE: Final = frozenset({"JobFacet", "DatasetFacet"})
_DELETED: Final = {"properties": {"_deleted": {"const": True}}, "required": ["_deleted"]}
_COMBINATOR_KEYS: Final = frozenset({"anyOf", "oneOf", "description", "title", "$comment"})
_FACET_CONTAINERS: Final = frozenset({"facets", "inputFacets", "outputFacets"})


@dataclass(frozen=True, slots=True)
class FieldError:
    """A core-schema violation; ``path`` is the JSON path of the field (``""`` for the root)."""

    path: str
    message: str


@dataclass(frozen=True, slots=True)
class FacetWarning:
    """A standard facet that breaks its facet schema; the event is still accepted."""

    path: str
    facet: str
    message: str


@dataclass(frozen=True, slots=True)
class ValidationOutcome:
    kind: str
    errors: tuple[FieldError, ...]
    facet_warnings: tuple[FacetWarning, ...]

    @property
    def ok(self) -> bool:
        """True when the event satisfies the core schema (facet warnings do not count)."""
        return not self.errors


def guess_kind(event: object) -> str:
    """The event kind the schema would check: has ``run`` -> RunEvent, ``dataset`` -> DatasetEvent."""
    if isinstance(event, dict):
        if "run" in event:
            return "RunEvent"
        if "dataset" in event:
            return "DatasetEvent"
    return "JobEvent"


def format_path(parts: Iterable[str | int]) -> str:
    """``["outputs", 0, "name"]`` -> ``"outputs[0].name"``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else part
    return out


def _clip(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


def _strip_formats(node: object) -> None:
    """Drop ``format`` keywords that must not be asserted (in place)."""
    if isinstance(node, dict):
        fmt = node.get("format")
        if isinstance(fmt, str) and fmt not in ASSERTED_FORMATS:
            del node["format"]
        for value in node.values():
            _strip_formats(value)
    elif isinstance(node, list):
        for value in node:
            _strip_formats(value)


def _load_schema(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("$id"), str):
        raise ValueError(f"{path}: not a JSON Schema document with an $id")
    return doc


class _FacetFile:
    """Works out which facet keys a facet schema file defines, and for which facet bases."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.defs: dict[str, Any] = doc.get("$defs", {})

    def _local(self, ref: object) -> tuple[str, dict[str, Any]] | None:
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = self.defs.get(ref.removeprefix("#/$defs/"))
            if isinstance(target, dict):
                return ref, target
        return None

    def bases(self, schema: dict[str, Any], seen: frozenset[str] = frozenset()) -> frozenset[str]:
        """Core facet bases ``schema`` extends, through local ``$ref`` and allOf/anyOf/oneOf only."""
        found: set[str] = set()
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith(f"{CORE_ID}#/$defs/"):
            name = ref.rsplit("/", 1)[1]
            if name in FACET_BASES:
                found.add(name)
        local = self._local(ref)
        if local is not None and local[0] not in seen:
            found |= self.bases(local[1], seen | {local[0]})
        for keyword in ("allOf", "anyOf", "oneOf"):
            for sub in schema.get(keyword, ()):
                if isinstance(sub, dict):
                    found |= self.bases(sub, seen)
        return frozenset(found)

    def branches(self, pointer: str, schema: dict[str, Any]) -> Iterator[tuple[str, frozenset[str]]]:
        """Split a facet's schema into alternatives (absolute ``$ref`` + bases each).

        ``lineage`` is ``anyOf`` [dataset facet, job facet] and ``subset`` is ``oneOf`` [input, output]:
        each location then only gets the alternative of its own kind, and precise error paths.
        """
        local = self._local(schema.get("$ref"))
        if local is not None and len(schema) == 1:
            yield from self.branches(local[0], local[1])
            return
        combinators = [keyword for keyword in ("anyOf", "oneOf") if keyword in schema]
        # A pure anyOf/oneOf is split. (Two alternatives of one kind are recombined with anyOf, so a
        # oneOf's exclusivity is not enforced: acceptable for warnings.)
        if (
            len(combinators) == 1
            and set(schema) <= _COMBINATOR_KEYS
            and isinstance(schema[combinators[0]], list)
        ):
            for index, sub in enumerate(schema[combinators[0]]):
                if isinstance(sub, dict):
                    yield from self.branches(f"{pointer}/{combinators[0]}/{index}", sub)
            return
        yield f"{self.doc['$id']}{pointer}", self.bases(schema)

    def facets(self) -> Iterator[tuple[str, str, frozenset[str]]]:
        """(facet key, absolute schema ref, facet bases) for every top-level property."""
        for key, schema in self.doc.get("properties", {}).items():
            if isinstance(schema, dict):
                token = key.replace("~", "~0").replace("/", "~1")
                for ref, bases in self.branches(f"#/properties/{token}", schema):
                    yield key, ref, bases


def _facets_schema(by_base: dict[str, dict[str, list[str]]]) -> dict[str, Any]:
    """One schema checking every facet location of an event against the standard facet schemas."""

    def facet_map(base: str) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        for key, refs in sorted(by_base[base].items()):
            alternatives = [{"$ref": ref} for ref in refs]
            check = alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}
            properties[key] = {"if": _DELETED, "else": check} if base in _DELETABLE else check
        return {"properties": properties}

    dataset = facet_map("DatasetFacet")
    inputs = {"facets": dataset, "inputFacets": facet_map("InputDatasetFacet")}
    outputs = {"facets": dataset, "outputFacets": facet_map("OutputDatasetFacet")}
    return {
        "properties": {
            "run": {"properties": {"facets": facet_map("RunFacet")}},
            "job": {"properties": {"facets": facet_map("JobFacet")}},
            "dataset": {"properties": {"facets": dataset}},
            "inputs": {"items": {"properties": inputs}},
            "outputs": {"items": {"properties": outputs}},
        }
    }


def _error_depth(error: jsonschema_rs.ValidationError) -> int:
    # a ``required`` error is about a field one level below the object it is reported on
    return len(error.instance_path) + isinstance(error.kind, jsonschema_rs.ValidationErrorKind.Required)


def _misfit(branch: list[jsonschema_rs.ValidationError], depth: int) -> bool:
    """The alternative does not fit at all: wrong type here, or a wrong const/enum tag one level down."""
    kinds = jsonschema_rs.ValidationErrorKind
    return any(
        (len(e.instance_path) == depth and isinstance(e.kind, kinds.Type))
        or (len(e.instance_path) == depth + 1 and isinstance(e.kind, kinds.Constant | kinds.Enum))
        for e in branch
    )


def _pick_branch(
    error: jsonschema_rs.ValidationError, context: list[list[jsonschema_rs.ValidationError]]
) -> list[jsonschema_rs.ValidationError] | None:
    """The alternative of a failed anyOf/oneOf worth reporting, or None to report the combinator.

    A single alternative (the core schema's facet maps) is always unwrapped. With several, the only
    one that fits the value's shape wins, else the one that failed deepest when that is unique.
    """
    branches = [branch for branch in context if branch]
    depth = len(error.instance_path)
    fitting = [branch for branch in branches if not _misfit(branch, depth)]
    if len(branches) == 1 or len(fitting) == 1:
        return (fitting or branches)[0]
    candidates = fitting or branches
    scored = sorted(((min(map(_error_depth, b)), i) for i, b in enumerate(candidates)), reverse=True)
    if scored and scored[0][0] > depth and (len(scored) == 1 or scored[1][0] < scored[0][0]):
        return candidates[scored[0][1]]
    return None


def _flatten(errors: Iterable[jsonschema_rs.ValidationError]) -> Iterator[tuple[list[str | int], str]]:
    """(instance path, message) per leaf error; a ``required`` error points at the missing field."""
    kinds = jsonschema_rs.ValidationErrorKind
    for error in errors:
        kind = error.kind
        if isinstance(kind, kinds.AnyOf | kinds.OneOfNotValid):
            branch = _pick_branch(error, kind.context)
            if branch is not None:
                yield from _flatten(branch)
                continue
        path = list(error.instance_path)
        if isinstance(kind, kinds.Required):
            path.append(kind.property)
        yield path, _clip(error.message)


def _facet_key(path: Sequence[str | int]) -> str:
    for index, part in enumerate(path[:-1]):
        if isinstance(part, str) and part in _FACET_CONTAINERS:
            return str(path[index + 1])
    return ""


class EventValidator:
    """Validators compiled once (:meth:`from_spec_dir`); :meth:`validate` is then cheap per event."""

    def __init__(self, core: dict[str, Any], facet_docs: Sequence[dict[str, Any]]) -> None:
        if core.get("$id") != CORE_ID:
            raise ValueError(f"core schema $id is {core.get('$id')!r}, expected {CORE_ID!r}")
        for doc in (core, *facet_docs):
            _strip_formats(doc)
        by_base: dict[str, dict[str, list[str]]] = {base: {} for base in FACET_BASES}
        for doc in facet_docs:
            for key, ref, bases in _FacetFile(doc).facets():
                for base in bases or FACET_BASES:  # no known base: check it wherever the key appears
                    by_base[base].setdefault(key, []).append(ref)
        self.standard_facets: dict[str, frozenset[str]] = {
            base: frozenset(keys) for base, keys in by_base.items()
        }
        registry = jsonschema_rs.Registry([(doc["$id"], doc) for doc in (core, *facet_docs)])
        facets = _facets_schema(by_base)

        def compile_(schema: dict[str, Any]) -> jsonschema_rs.Validator:
            return jsonschema_rs.Draft202012Validator(
                schema, registry=registry, validate_formats=True, offline=True
            )

        self._core = compile_({"$ref": CORE_ID})
        self._kinds = {kind: compile_({"$ref": f"{CORE_ID}#/$defs/{kind}"}) for kind in EVENT_KINDS}
        self._facets = compile_(facets)
        self._all = compile_({"allOf": [{"$ref": CORE_ID}, facets]})

    @classmethod
    def from_spec_dir(cls, spec_dir: Path | None = None) -> EventValidator:
        """Load ``OpenLineage.json`` and ``facets/*.json`` (default: the vendored 2-0-2 spec)."""
        root = DEFAULT_SPEC_DIR if spec_dir is None else Path(spec_dir)
        core = _load_schema(root / "OpenLineage.json")
        facet_docs = [_load_schema(path) for path in sorted((root / "facets").glob("*.json"))]
        return cls(core, facet_docs)

    def validate(self, event: object) -> ValidationOutcome:
        kind = guess_kind(event)
        if not isinstance(event, dict):
            found = "null" if event is None else type(event).__name__
            return ValidationOutcome(
                kind, (FieldError("", f"an event must be a JSON object, not {found}"),), ()
            )
        try:
            if self._all.is_valid(event):
                return ValidationOutcome(self._refine_kind(event, kind), (), ())
            if self._core.is_valid(event):
                return ValidationOutcome(self._refine_kind(event, kind), (), self._facet_warnings(event, ()))
            errors = self._core_errors(event, kind)
            return ValidationOutcome(kind, errors, self._facet_warnings(event, errors))
        except ValueError as exc:  # values that are not JSON data (datetime, bytes, non-str keys, ...)
            # jsonschema_rs reads the Python objects lazily, so this can surface from any call
            return ValidationOutcome(kind, (FieldError("", _clip(f"event is not JSON data: {exc}")),), ())

    def _refine_kind(self, event: dict[str, Any], kind: str) -> str:
        # {"dataset": ..., "job": ...} passes the oneOf only as a JobEvent when the dataset part is bad.
        if kind == "DatasetEvent" and "job" in event and not self._kinds[kind].is_valid(event):
            return "JobEvent"
        return kind

    def _core_errors(self, event: dict[str, Any], kind: str) -> tuple[FieldError, ...]:
        errors: dict[FieldError, None] = {}
        for path, message in _flatten(self._kinds[kind].iter_errors(event)):
            errors.setdefault(FieldError(format_path(path), message))
            if len(errors) >= MAX_ERRORS:
                break
        if not errors:  # valid as its own kind, so the top-level oneOf matched more than one kind
            valid = [name for name, validator in self._kinds.items() if validator.is_valid(event)]
            message = f"event matches more than one event kind ({', '.join(valid)}), the spec needs one"
            if kind == "DatasetEvent":
                message += ": a DatasetEvent must not carry a job"
            errors[FieldError("", message)] = None
        return tuple(errors)

    def _facet_warnings(
        self, event: dict[str, Any], errors: tuple[FieldError, ...]
    ) -> tuple[FacetWarning, ...]:
        already = set(errors)
        warnings: dict[FacetWarning, None] = {}
        for path, message in _flatten(self._facets.iter_errors(event)):
            text = format_path(path)
            if FieldError(text, message) not in already:  # the core schema reported it already
                warnings.setdefault(FacetWarning(text, _facet_key(path), message))
            if len(warnings) >= MAX_ERRORS:
                break
        return tuple(warnings)
