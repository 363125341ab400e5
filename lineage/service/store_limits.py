"""What the store needs of an event beyond the OpenLineage schema: sizes and characters it can index.

Every string the projector writes into a key or a plain text column is checked here, so a valid event
is either stored whole on both backends or rejected with the path of the offending value (never a 500
from PostgreSQL, never SQLite accepting what PostgreSQL refuses). The limits keep every composite key
inside a PostgreSQL b-tree entry (about 2.7 KB); PostgreSQL text cannot hold NUL at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from lineage.service.validation import FieldError

MAX_NAMESPACE_BYTES = 256
MAX_NAME_BYTES = 640
MAX_FIELD_BYTES = 256
MAX_FACET_KEY_BYTES = 255
MAX_TAG_PART_BYTES = 255  # tag key, tag value and source each; "key:value" stays within 512
MAX_TRANSFORMATION_BYTES = 32
MAX_SOURCE_NAME_BYTES = 1024
MAX_RUN_ID_BYTES = 64


def _shown(key: str) -> str:
    """A key as it appears in an error path: long keys are cut so the message stays readable."""
    return key if len(key) <= 64 else key[:61] + "..."


_TAG_LIMITS: dict[str, int | None] = {
    "key": MAX_TAG_PART_BYTES, "value": MAX_TAG_PART_BYTES, "source": MAX_TAG_PART_BYTES,
    "field": MAX_FIELD_BYTES,
}
_FIELD_SPEC_LIMITS: dict[str, int | None] = {
    "transformationType": MAX_TRANSFORMATION_BYTES, "transformationDescription": None,
}
_INPUT_FIELD_LIMITS: dict[str, int | None] = {
    "namespace": MAX_NAMESPACE_BYTES, "name": MAX_NAME_BYTES, "field": MAX_FIELD_BYTES,
}
_TRANSFORMATION_LIMITS: dict[str, int | None] = {
    "type": MAX_TRANSFORMATION_BYTES, "subtype": MAX_TRANSFORMATION_BYTES, "description": None,
}


def _dicts(value: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, item) of the dict items of a list; anything else yields nothing."""
    if isinstance(value, list):
        yield from ((i, item) for i, item in enumerate(value) if isinstance(item, dict))


def _too_long(value: str, limit: int) -> bool:
    # A character is at most 4 UTF-8 bytes: short strings need no encoding.
    return len(value) * 4 > limit and len(value.encode("utf-8", "surrogatepass")) > limit


class _Checker:
    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def text(self, path: str, value: Any, limit: int | None = None, *, required: bool = False) -> None:
        """A string bound for a column: no NUL, at most ``limit`` UTF-8 bytes, non-empty if required."""
        if not isinstance(value, str):
            return
        if "\x00" in value:
            self.errors.append(FieldError(path, "must not contain the NUL character"))
        elif limit is not None and _too_long(value, limit):
            self.errors.append(FieldError(path, f"is longer than {limit} bytes"))
        elif required and not value:
            self.errors.append(FieldError(path, "must not be empty"))

    def facet_keys(self, path: str, facets: Any) -> dict[str, Any]:
        if not isinstance(facets, dict):
            return {}
        for key in facets:
            self.text(f"{path}.{_shown(str(key))}", key, MAX_FACET_KEY_BYTES, required=True)
        return facets

    def fields(self, base: str, obj: dict[str, Any], limits: dict[str, int | None]) -> None:
        """Check ``obj[key]`` against ``limits[key]`` for each key (None: no size limit)."""
        for key, limit in limits.items():
            self.text(f"{base}.{key}", obj.get(key), limit)

    def tags(self, path: str, facet: Any) -> None:
        entries = facet.get("tags") if isinstance(facet, dict) else None
        for i, entry in _dicts(entries):
            self.fields(f"{path}.tags[{i}]", entry, _TAG_LIMITS)

    def column_lineage(self, path: str, facet: Any) -> None:
        fields = facet.get("fields") if isinstance(facet, dict) else None
        if not isinstance(fields, dict):
            return
        for out_field, spec in fields.items():
            base = f"{path}.fields.{_shown(str(out_field))}"
            self.text(base, out_field, MAX_FIELD_BYTES)
            if not isinstance(spec, dict):
                continue
            self.fields(base, spec, _FIELD_SPEC_LIMITS)
            for j, source in _dicts(spec.get("inputFields")):
                at = f"{base}.inputFields[{j}]"
                self.fields(at, source, _INPUT_FIELD_LIMITS)
                for k, transformation in _dicts(source.get("transformations")):
                    self.fields(f"{at}.transformations[{k}]", transformation, _TRANSFORMATION_LIMITS)

    def dataset(self, base: str, ds: Any) -> None:
        if not isinstance(ds, dict):
            return
        self.text(f"{base}.namespace", ds.get("namespace"), MAX_NAMESPACE_BYTES, required=True)
        self.text(f"{base}.name", ds.get("name"), MAX_NAME_BYTES, required=True)
        facets = self.facet_keys(f"{base}.facets", ds.get("facets"))
        self.facet_keys(f"{base}.inputFacets", ds.get("inputFacets"))
        self.facet_keys(f"{base}.outputFacets", ds.get("outputFacets"))
        source = facets.get("dataSource")
        if isinstance(source, dict):
            self.text(f"{base}.facets.dataSource.name", source.get("name"), MAX_SOURCE_NAME_BYTES)
            self.text(f"{base}.facets.dataSource.uri", source.get("uri"))
        self.column_lineage(f"{base}.facets.columnLineage", facets.get("columnLineage"))
        self.tags(f"{base}.facets.tags", facets.get("tags"))


def _fits(value: Any, limit: int | None = None, required: bool = False) -> bool:
    """:meth:`_Checker.text` without the error (and without building its path), and without the NUL
    check: :func:`_event_fits` looks for NUL once in the whole serialised event."""
    if not isinstance(value, str):
        return True
    if limit is not None and len(value) * 4 > limit and _too_long(value, limit):
        return False
    return bool(value) or not required


def _fields_fit(obj: dict[str, Any], limits: dict[str, int | None]) -> bool:
    return all(_fits(obj.get(key), limit) for key, limit in limits.items())


def _facet_keys_fit(facets: Any) -> bool:
    return not isinstance(facets, dict) or all(_fits(key, MAX_FACET_KEY_BYTES, True) for key in facets)


def _tags_fit(facet: Any) -> bool:
    entries = facet.get("tags") if isinstance(facet, dict) else None
    return all(_fields_fit(entry, _TAG_LIMITS) for _, entry in _dicts(entries))


def _column_lineage_fits(facet: Any) -> bool:
    fields = facet.get("fields") if isinstance(facet, dict) else None
    if not isinstance(fields, dict):
        return True
    for out_field, spec in fields.items():
        if not _fits(out_field, MAX_FIELD_BYTES):
            return False
        if not isinstance(spec, dict):
            continue
        if not _fields_fit(spec, _FIELD_SPEC_LIMITS):
            return False
        for _, source in _dicts(spec.get("inputFields")):
            if not _fields_fit(source, _INPUT_FIELD_LIMITS):
                return False
            for _, transformation in _dicts(source.get("transformations")):
                if not _fields_fit(transformation, _TRANSFORMATION_LIMITS):
                    return False
    return True


def _dataset_fits(ds: Any) -> bool:
    if not isinstance(ds, dict):
        return True
    facets = ds.get("facets")
    if not (
        _fits(ds.get("namespace"), MAX_NAMESPACE_BYTES, True) and _fits(ds.get("name"), MAX_NAME_BYTES, True)
        and _facet_keys_fit(facets) and _facet_keys_fit(ds.get("inputFacets"))
        and _facet_keys_fit(ds.get("outputFacets"))
    ):
        return False
    if not isinstance(facets, dict):
        return True
    source = facets.get("dataSource")
    if isinstance(source, dict) and not (
        _fits(source.get("name"), MAX_SOURCE_NAME_BYTES) and _fits(source.get("uri"))
    ):
        return False
    return _column_lineage_fits(facets.get("columnLineage")) and _tags_fit(facets.get("tags"))


def _event_fits(event: dict[str, Any], serialized: bytes | None = None) -> bool:
    """True when :func:`store_limits` would find nothing: the same checks, no paths built.

    Nearly every event fits; building the JSON path of every checked value cost more than the checks.
    NUL is looked for once, in ``serialized`` (the event as JSON, where every NUL of a key or a string
    is the escape ``\\u0000``); a literal backslash-u0000 in a string only sends the event to the full
    check, which finds nothing.
    """
    if serialized is None:
        try:
            serialized = orjson.dumps(event)
        except (orjson.JSONEncodeError, TypeError):
            return False  # the full check (and then the caller) says what is wrong
    if b"\\u0000" in serialized:
        return False
    job = event.get("job")
    if isinstance(job, dict):
        job_facets = job.get("facets")
        if not (
            _fits(job.get("namespace"), MAX_NAMESPACE_BYTES, True)
            and _fits(job.get("name"), MAX_NAME_BYTES, True)
            and _facet_keys_fit(job_facets)
            and (not isinstance(job_facets, dict) or _tags_fit(job_facets.get("tags")))
        ):
            return False
    run = event.get("run")
    if isinstance(run, dict):
        run_facets = run.get("facets")
        if not _facet_keys_fit(run_facets):
            return False
        parent = run_facets.get("parent") if isinstance(run_facets, dict) else None
        parent_run = parent.get("run") if isinstance(parent, dict) else None
        if isinstance(parent_run, dict) and not _fits(parent_run.get("runId"), MAX_RUN_ID_BYTES):
            return False
    for key in ("inputs", "outputs"):
        items = event.get(key)
        if isinstance(items, list) and not all(_dataset_fits(ds) for ds in items):
            return False
    return _dataset_fits(event.get("dataset"))


def store_limits(event: dict[str, Any], serialized: bytes | None = None) -> list[FieldError]:
    """Errors for every value of a schema-valid ``event`` the store could not keep as it is
    (``serialized``: the event as orjson writes it, when the caller has it already)."""
    if _event_fits(event, serialized):
        return []
    check = _Checker()
    job = event.get("job")
    if isinstance(job, dict):
        check.text("job.namespace", job.get("namespace"), MAX_NAMESPACE_BYTES, required=True)
        check.text("job.name", job.get("name"), MAX_NAME_BYTES, required=True)
        job_facets = check.facet_keys("job.facets", job.get("facets"))
        check.tags("job.facets.tags", job_facets.get("tags"))
    run = event.get("run")
    if isinstance(run, dict):
        run_facets = check.facet_keys("run.facets", run.get("facets"))
        parent = run_facets.get("parent")
        parent_run = parent.get("run") if isinstance(parent, dict) else None
        if isinstance(parent_run, dict):
            check.text("run.facets.parent.run.runId", parent_run.get("runId"), MAX_RUN_ID_BYTES)
    for key in ("inputs", "outputs"):
        items = event.get(key)
        if isinstance(items, list):
            for i, ds in enumerate(items):
                check.dataset(f"{key}[{i}]", ds)
    if isinstance(event.get("dataset"), dict):
        check.dataset("dataset", event["dataset"])
    return check.errors
