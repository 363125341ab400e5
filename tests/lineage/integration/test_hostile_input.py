"""Hostile request bodies against a real server: always a 4xx (or an honest 2xx), never a 5xx.

One server per backend serves every case of this module, so the store accumulates. Before and after
each request the events are counted: a refused request adds nothing, an accepted one adds exactly its
events, and nothing accepted earlier is ever lost. Accepted events with hostile names must come back
from ``events.payload`` exactly as sent (same objects, same code points).

The body limit is the default (``CHAINTRACE_MAX_BODY_BYTES`` unset: 5 MiB) and the batch limit the
default ``max_batch_events`` (10,000).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, text

from lineage.service.ingest import MAX_FIELD_BYTES, MAX_NAME_BYTES, MAX_NAMESPACE_BYTES
from lineage.settings import LineageSettings
from lineage.store.db import create_store_engine

LIMIT = LineageSettings.model_fields["max_body_bytes"].default
MAX_BATCH = LineageSettings.model_fields["max_batch_events"].default
SINGLE, BATCH = "/api/v1/lineage", "/api/v1/lineage/batch"
T0 = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
PRODUCER = "https://example.com/hostile"
RUN = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
CUSTOM = "https://example.com/facets/Custom.json#/$defs/Custom"
_FACETS = "https://openlineage.io/spec/facets/"
CL_FACET = _FACETS + "1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet"
TAGS_FACET = _FACETS + "1-0-0/TagsDatasetFacet.json#/$defs/TagsDatasetFacet"
SOURCE_FACET = _FACETS + "1-0-1/DatasourceDatasetFacet.json#/$defs/DatasourceDatasetFacet"


@dataclass
class Target:
    backend: str
    server: Any
    engine: Engine

    def count(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM events")).scalar_one())


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def target(
    request: pytest.FixtureRequest, module_server_factory: Any, pg_pool: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Target]:
    backend = request.param
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'lineage.db'}"
    else:
        url = pg_pool.fresh("hostile")
    server = module_server_factory(url, log_name=f"hostile-{backend}")
    engine = create_store_engine(url)
    try:
        yield Target(backend, server, engine)
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------------------ events
_serial = iter(range(1, 1_000_000))


def event(
    job: str = "hostile_job", namespace: str = "hostile", *, inputs: list[dict[str, Any]] | None = None,
    outputs: list[dict[str, Any]] | None = None, run_facets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A valid RunEvent with a run id of its own (so every accepted case adds a new event)."""
    n = next(_serial)
    ev: dict[str, Any] = {
        "eventType": "START", "eventTime": T0.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "producer": PRODUCER,
        "schemaURL": RUN, "run": {"runId": f"00000000-0000-4000-8000-{n:012d}"},
        "job": {"namespace": namespace, "name": job},
        "inputs": inputs if inputs is not None else [{"namespace": "hostile-ds", "name": "in"}],
        "outputs": outputs if outputs is not None else [{"namespace": "hostile-ds", "name": "out"}],
    }
    if run_facets is not None:
        ev["run"]["facets"] = run_facets
    return ev


def facet(**fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": CUSTOM, **fields}


def with_raw_value(raw: bytes) -> bytes:
    """An event whose custom run facet ``x`` has the literal JSON ``raw`` as its ``value``."""
    body = orjson.dumps(event(run_facets={"x": facet(value="@@RAW@@")}))
    return body.replace(b'"@@RAW@@"', raw, 1)


def big_event() -> dict[str, Any]:
    return event(run_facets={"big": facet(value="x" * 10_000_000)})


def column_lineage_output(field_name: str) -> dict[str, Any]:
    lineage = {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json"
                      "#/$defs/ColumnLineageDatasetFacet",
        "fields": {field_name: {"inputFields": [{"namespace": "ds", "name": "src", "field": "a"}]}},
    }
    return {"namespace": "ds", "name": "cl", "facets": {"columnLineage": lineage}}


def noise(n: int, seed: str) -> str:
    """``n`` incompressible hex characters (an index cannot shrink them)."""
    out, state = "", seed.encode()
    while len(out) < n:
        state = hashlib.sha256(state).digest()
        out += state.hex()
    return out[:n]


def lineage_output(field: str = "a", kind: str = "DIRECT", subtype: str = "IDENTITY", namespace: str = "ds",
                   name: str = "src", description: str | None = None) -> dict[str, Any]:
    """An output whose columnLineage facet says column ``x`` comes from ``namespace/name.field``."""
    transformation = {"type": kind, "subtype": subtype}
    if description is not None:
        transformation["description"] = description
    lineage = {
        "_producer": PRODUCER, "_schemaURL": CL_FACET,
        "fields": {"x": {"inputFields": [{"namespace": namespace, "name": name, "field": field,
                                           "transformations": [transformation]}]}},
    }
    return {"namespace": "ds", "name": "lineage_out", "facets": {"columnLineage": lineage}}


def tags_output(**tag: str) -> dict[str, Any]:
    tags = {"_producer": PRODUCER, "_schemaURL": TAGS_FACET, "tags": [{"key": "k", "value": "v", **tag}]}
    return {"namespace": "ds", "name": "tagged", "facets": {"tags": tags}}


def source_output(name: str = "src", uri: str = "file:///x") -> dict[str, Any]:
    source = {"_producer": PRODUCER, "_schemaURL": SOURCE_FACET, "name": name, "uri": uri}
    return {"namespace": "ds", "name": "sourced", "facets": {"dataSource": source}}


def facet_keyed(key: str) -> dict[str, Any]:
    return {key: facet()}


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def padded_to(size: int) -> bytes:
    """A valid single event whose serialised body is exactly ``size`` bytes."""
    ev = event(run_facets={"pad": facet(value="")})
    body = orjson.dumps(ev)
    ev["run"]["facets"]["pad"]["value"] = "p" * (size - len(body))
    body = orjson.dumps(ev)
    assert len(body) == size
    return body


def gzip_bomb() -> bytes:
    """A few KB of gzip that inflates to an event over the limit."""
    body = padded_to(LIMIT + 1_000_000)
    bomb = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    data = bomb.compress(body) + bomb.flush()
    assert len(data) < 64 * 1024
    return data


def gz(data: bytes) -> bytes:
    comp = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return comp.compress(data) + comp.flush()


def deflate(data: bytes) -> bytes:
    return zlib.compress(data)


def multipart(data: bytes) -> bytes:
    head = b'--xyz\r\nContent-Disposition: form-data; name="event"\r\nContent-Type: application/json\r\n\r\n'
    return head + data + b"\r\n--xyz--\r\n"


# ------------------------------------------------------------------------------------------- cases
@dataclass
class Case:
    id: str
    body: Callable[[], bytes]
    expect: set[int]  # acceptable statuses
    path: str = SINGLE
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False
    added: int | dict[int, int] = 0  # events the request adds, or per reply status (default 0)
    sent: Callable[[], Any] | None = None  # the event(s) the body carries, to compare with the payload
    error_path: str | None = None  # expected errors[0].path of a 422


def _accept(ev_factory: Callable[[], dict[str, Any]], case_id: str) -> Case:
    """A hostile-but-legal event: 201, stored, payload identical to what was sent."""
    holder: dict[str, Any] = {}

    def body() -> bytes:
        holder["event"] = ev_factory()
        return orjson.dumps(holder["event"])

    return Case(case_id, body, {201}, added=1, sent=lambda: holder["event"])


def _store_or_422(case_id: str, ev_factory: Callable[[], dict[str, Any]]) -> Case:
    case = _accept(ev_factory, case_id)
    case.expect = {201, 422}
    case.added = {201: 1}
    return case


def event_with_job_facets(facets: dict[str, Any]) -> dict[str, Any]:
    ev = event()
    ev["job"]["facets"] = facets
    return ev


def _reject_name(case_id: str, ev_factory: Callable[[], dict[str, Any]], path: str) -> Case:
    return Case(case_id, lambda: orjson.dumps(ev_factory()), {422}, error_path=path)


HOSTILE_NAMES = {
    "sql": "x'); DROP TABLE events;--",
    "sql-double": 'x"); DELETE FROM runs; SELECT ("',
    "html": "<script>alert(1)</script>",
    "percent-00": "%00",
    "emoji": "\U0001f4e6\U0001f680 donn\u00e9es \U0001f1eb\U0001f1f7",
    "rtl": "\u202e\u05e2\u05d1\u05e8\u05d9\u05ea \u0627\u0644\u0639\u0631\u0628\u064a\u0629\u202c",
    "backslash-quote": 'a\\"b\\\\c\'d`e',
    "control-chars": "tab\tnew\nline\rbell\x07",
    "zero-width": "a\u200bb\ufeffc",
}

CASES: list[Case] = [
    # --- content type
    Case("ct-text-html", lambda: orjson.dumps(event()), {415}, headers={"Content-Type": "text/html"}),
    Case("ct-multipart", lambda: multipart(orjson.dumps(event())), {415},
         headers={"Content-Type": "multipart/form-data; boundary=xyz"}),
    Case("ct-form", lambda: b"event=" + orjson.dumps(event()), {415},
         headers={"Content-Type": "application/x-www-form-urlencoded"}),
    Case("ct-batch-text-html", lambda: orjson.dumps([event()]), {415}, path=BATCH,
         headers={"Content-Type": "text/html; charset=utf-8"}),
    Case("ct-batch-form", lambda: b"a=1&b=2", {415}, path=BATCH,
         headers={"Content-Type": "application/x-www-form-urlencoded"}),
    # --- not JSON
    Case("invalid-json", lambda: b'{"eventType": "START",, }', {400}),
    Case("truncated-json", lambda: orjson.dumps(event())[:-40], {400}),
    Case("truncated-json-batch", lambda: orjson.dumps([event(), event()])[:-7], {400}, path=BATCH),
    Case("empty-body", lambda: b"", {400}),
    Case("whitespace-body", lambda: b" \n\t ", {400}, path=BATCH),
    Case("non-utf8", lambda: orjson.dumps(event(job="@@")).replace(b"@@", b"caf\xe9\xff"), {400}),
    Case("non-utf8-batch", lambda: orjson.dumps([event(job="@@")]).replace(b"@@", b"\xc3\x28"), {400},
         path=BATCH),
    Case("lone-high-surrogate", lambda: orjson.dumps(event(job="@@")).replace(b"@@", rb"x\ud800y"),
         {400, 422}),
    Case("lone-low-surrogate", lambda: orjson.dumps(event(job="@@")).replace(b"@@", rb"\udc00"), {400, 422}),
    Case("surrogate-in-batch", lambda: orjson.dumps([event(job="@@")]).replace(b"@@", rb"\ud800"),
         {200, 207, 400, 422}, path=BATCH),
    # --- nesting
    Case("nesting-100k-array", lambda: b"[" * 100_000 + b"]" * 100_000, {400}),
    Case("nesting-100k-array-batch", lambda: b"[" * 100_000 + b"]" * 100_000, {400}, path=BATCH),
    Case("nesting-100k-in-facet", lambda: with_raw_value(nested(100_000)), {400, 422}),
    # orjson parses 1,024 levels but serialises only 254: between the two the service must still answer
    Case("nesting-500-in-facet", lambda: with_raw_value(nested(500)), {201, 400, 422}, added={201: 1}),
    Case("nesting-300-in-facet", lambda: with_raw_value(nested(300)), {201, 400, 422}, added={201: 1}),
    Case("nesting-250-in-facet", lambda: with_raw_value(nested(250)), {201}, added=1),
    Case("nesting-300-in-batch-with-a-good-event",
         lambda: b"[" + with_raw_value(nested(300)) + b"," + orjson.dumps(event()) + b"]",
         {200, 207, 400}, path=BATCH, added={200: 2, 207: 1}),
    # --- numbers
    Case("number-1e400", lambda: with_raw_value(b"1e400"), {400, 422}),
    Case("number--1e400", lambda: with_raw_value(b"-1e400"), {400, 422}),
    # JSON integers beyond 64 bits: refused, or stored with their value intact
    Case("int-2**70", lambda: with_raw_value(str(2**70).encode()), {201, 400, 422}, added={201: 1},
         sent=lambda: 2**70),
    Case("int-2**70+1", lambda: with_raw_value(str(2**70 + 1).encode()), {201, 400, 422}, added={201: 1},
         sent=lambda: 2**70 + 1),
    Case("int--2**63-1", lambda: with_raw_value(str(-(2**63) - 1).encode()), {201, 400, 422},
         added={201: 1}, sent=lambda: -(2**63) - 1),
    Case("int-2**64-1", lambda: with_raw_value(str(2**64 - 1).encode()), {201, 400, 422},
         added={201: 1}, sent=lambda: 2**64 - 1),
    Case("int-2**64+1-runid", lambda: orjson.dumps(event()).replace(b'"runId":"', b'"runId":' + str(2**64 + 1)
                                                                       .encode() + b',"x":"', 1), {400, 422}),
    # --- sizes
    Case("string-10mb", lambda: orjson.dumps(big_event()), {413}),
    Case("string-10mb-chunked", lambda: orjson.dumps(big_event()), {413}, chunked=True),
    Case("string-10mb-batch", lambda: orjson.dumps([big_event()]), {413}, path=BATCH),
    Case("body-exactly-at-limit", lambda: padded_to(LIMIT), {201}, added=1),
    Case("body-one-over-limit", lambda: padded_to(LIMIT + 1), {413}),
    Case("body-one-over-limit-chunked", lambda: padded_to(LIMIT + 1), {413}, chunked=True),
    Case("batch-over-max-events", lambda: orjson.dumps([{}] * (MAX_BATCH + 1)), {413}, path=BATCH),
    # --- content encoding
    Case("gzip-event", lambda: gz(orjson.dumps(event())), {201}, headers={"Content-Encoding": "gzip"},
         added=1),
    Case("gzip-batch", lambda: gz(orjson.dumps([event(), event()])), {200}, path=BATCH,
         headers={"Content-Encoding": "gzip"}, added=2),
    Case("deflate-event", lambda: deflate(orjson.dumps(event())), {201},
         headers={"Content-Encoding": "deflate"}, added=1),
    Case("gzip-bomb", gzip_bomb, {413}, headers={"Content-Encoding": "gzip"}),
    Case("gzip-bomb-batch", gzip_bomb, {413}, path=BATCH, headers={"Content-Encoding": "gzip"}),
    Case("gzip-truncated", lambda: gz(orjson.dumps(event()))[:-12], {400},
         headers={"Content-Encoding": "gzip"}),
    Case("gzip-cut-in-half", lambda: gz(orjson.dumps(event(run_facets={"p": facet(v="q" * 5000)})))[:40],
         {400}, headers={"Content-Encoding": "gzip"}),
    Case("gzip-header-but-plain-json", lambda: orjson.dumps(event()), {400},
         headers={"Content-Encoding": "gzip"}),
    Case("gzip-trailing-garbage", lambda: gz(orjson.dumps(event())) + b"garbage", {201, 400},
         headers={"Content-Encoding": "gzip"}, added={201: 1}),
    Case("encoding-br", lambda: orjson.dumps(event()), {415}, headers={"Content-Encoding": "br"}),
    Case("encoding-compress", lambda: orjson.dumps(event()), {415}, headers={"Content-Encoding": "compress"}),
    Case("encoding-zstd-batch", lambda: orjson.dumps([event()]), {415}, path=BATCH,
         headers={"Content-Encoding": "zstd"}),
    # --- names over the store limits, NUL, empty
    _reject_name("job-name-over-limit", lambda: event(job="j" * (MAX_NAME_BYTES + 1)), "job.name"),
    _reject_name("job-namespace-over-limit", lambda: event(namespace="n" * (MAX_NAMESPACE_BYTES + 1)),
                 "job.namespace"),
    _reject_name("job-name-multibyte-over-limit", lambda: event(job="\U0001f600" * (MAX_NAME_BYTES // 4 + 1)),
                 "job.name"),
    _reject_name("dataset-name-over-limit",
                 lambda: event(outputs=[{"namespace": "ds", "name": "d" * (MAX_NAME_BYTES + 1)}]),
                 "outputs[0].name"),
    _reject_name("dataset-namespace-over-limit",
                 lambda: event(inputs=[{"namespace": "s" * (MAX_NAMESPACE_BYTES + 1), "name": "d"}]),
                 "inputs[0].namespace"),
    _reject_name("column-name-over-limit",
                 lambda: event(outputs=[column_lineage_output("c" * (MAX_FIELD_BYTES + 1))]),
                 "outputs[0].facets.columnLineage.fields." + "c" * 61 + "..."),
    _accept(lambda: event(outputs=[column_lineage_output("c" * MAX_FIELD_BYTES)]), "column-name-at-limit"),
    _reject_name("nul-in-job-name", lambda: event(job="bad\u0000name"), "job.name"),
    _reject_name("nul-in-dataset-name", lambda: event(inputs=[{"namespace": "ds", "name": "\u0000"}]),
                 "inputs[0].name"),
    _reject_name("nul-in-namespace", lambda: event(namespace="ns\u0000"), "job.namespace"),
    # --- names exactly at the limits are fine
    _accept(lambda: event(job="j" * MAX_NAME_BYTES, namespace="n" * MAX_NAMESPACE_BYTES), "names-at-limit"),
    _accept(lambda: event(job="\U0001f600" * (MAX_NAME_BYTES // 4)), "multibyte-name-at-limit"),
    # --- schema-valid strings that the graph keeps in size-limited or NUL-free columns (facet keys, tags,
    # column lineage, data sources): either refused with a 422 or stored, on every backend alike
    _store_or_422("facet-key-300-dataset", lambda: event(outputs=[
        {"namespace": "ds", "name": "keyed", "facets": facet_keyed("g" * 300)}])),
    _store_or_422("facet-key-300-job", lambda: event_with_job_facets(facet_keyed("j" * 300))),
    _store_or_422("facet-key-nul-dataset", lambda: event(outputs=[
        {"namespace": "ds", "name": "keyed", "facets": facet_keyed("a\u0000b")}])),
    _store_or_422("facet-key-nul-job", lambda: event_with_job_facets(facet_keyed("a\u0000"))),
    _store_or_422("lineage-type-40", lambda: event(outputs=[lineage_output(kind="T" * 40)])),
    _store_or_422("lineage-subtype-40", lambda: event(outputs=[lineage_output(subtype="S" * 40)])),
    _store_or_422("lineage-input-field-nul", lambda: event(outputs=[lineage_output(field="a\u0000b")])),
    _store_or_422("lineage-input-name-1500", lambda: event(outputs=[lineage_output(name="n" * 1500)])),
    _store_or_422("lineage-input-field-3000", lambda: event(outputs=[lineage_output(field="f" * 3000)])),
    _store_or_422("lineage-input-ids-1000-each", lambda: event(outputs=[lineage_output(
        namespace=noise(1000, "ns"), name=noise(1000, "name"), field=noise(1000, "field"))])),
    _store_or_422("lineage-description-nul", lambda: event(outputs=[lineage_output(description="d\u0000")])),
    _store_or_422("tag-key-300", lambda: event(outputs=[tags_output(key="k" * 300)])),
    _store_or_422("tag-key-and-value-600",
                  lambda: event(outputs=[tags_output(key="k" * 200, value="v" * 400)])),
    _store_or_422("tag-value-nul", lambda: event(outputs=[tags_output(value="v\u0000")])),
    _store_or_422("tag-source-300", lambda: event(outputs=[tags_output(source="s" * 300)])),
    _store_or_422("tag-field-1100", lambda: event(outputs=[tags_output(field="f" * 1100)])),
    _store_or_422("datasource-name-nul", lambda: event(outputs=[source_output(name="x\u0000")])),
    _store_or_422("datasource-name-2000", lambda: event(outputs=[source_output(name="x" * 2000)])),
    _store_or_422("datasource-uri-nul", lambda: event(outputs=[source_output(uri="file:///\u0000")])),
    Case("batch-good-bad-good", lambda: orjson.dumps([event(), event(outputs=[tags_output(value="\u0000")]),
                                                      event()]),
         {200, 207}, path=BATCH, added={200: 3, 207: 2}),
    # --- empty structures
    Case("empty-object", lambda: b"{}", {422}),
    Case("empty-array-single", lambda: b"[]", {400}),
    Case("array-of-event-single", lambda: orjson.dumps([event()]), {400}),
    Case("json-null", lambda: b"null", {400, 422}),
    Case("json-number", lambda: b"42", {400, 422}),
    Case("json-string", lambda: b'"event"', {400, 422}),
    Case("empty-array-batch", lambda: b"[]", {200, 400}, path=BATCH),
    Case("empty-object-batch", lambda: b"{}", {207, 400, 422}, path=BATCH),
    Case("nulls-batch", lambda: b"[null, null]", {207, 400, 422}, path=BATCH),
    Case("batch-one-bad-one-good", lambda: orjson.dumps([{}, event()]), {207}, path=BATCH, added=1),
    Case("object-for-batch", lambda: orjson.dumps({"events": [event()]}), {207, 400, 422}, path=BATCH),
    _accept(lambda: event(inputs=[], outputs=[], run_facets={}), "empty-inputs-outputs-facets"),
    _accept(lambda: event(run_facets={"e": facet(list=[], obj={}, s="")}), "empty-values-in-facet"),
]


def _named_job(value: str) -> Callable[[], dict[str, Any]]:
    return lambda: event(job=value, namespace=f"ns {value}")


def _named_datasets(value: str) -> Callable[[], dict[str, Any]]:
    return lambda: event(inputs=[{"namespace": value, "name": value}],
                         outputs=[{"namespace": "out", "name": f"{value}/{value}"}])


for _name, _value in HOSTILE_NAMES.items():
    CASES.append(_accept(_named_job(_value), f"name-{_name}"))
    CASES.append(_accept(_named_datasets(_value), f"dataset-{_name}"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_request_is_a_4xx_or_stored_faithfully(case: Case, target: Target, it: Any) -> None:
    before = target.count()
    body = case.body()
    reply = target.server.post(case.path, body, case.headers, chunked=case.chunked)
    assert reply.status < 500, f"{case.id}: {reply.status} {reply.body[:500]!r}"
    assert reply.status in case.expect, f"{case.id}: {reply.status} {reply.body[:500]!r}"
    assert target.server.alive
    if reply.status >= 400:
        error = reply.json
        assert error["code"] == reply.status and error["message"], error
        if case.error_path is not None:
            assert reply.status == 422
            assert case.error_path in [e["path"] for e in error["errors"]], error
    added = case.added if isinstance(case.added, int) else case.added.get(reply.status, 0)
    assert target.count() == before + added, f"{case.id}: store count changed wrongly"

    if case.sent is not None and reply.status == 201:
        sent = case.sent()
        if isinstance(sent, dict):  # the whole event: the payload parses back to it exactly
            payload = it.stored_payload(target.engine, it.event_hash(sent))
            assert payload is not None, "accepted event not found under its hash"
            assert it.python_json(payload) == sent
            assert orjson.loads(payload) == sent
        else:  # a number inside facet x: its value must not have changed on the way in
            payload = _latest_payload(target.engine)
            value = it.python_json(payload)["run"]["facets"]["x"]["value"]
            assert value == sent, f"the integer {sent} was sent, events.payload holds {value!r}"


def _latest_payload(engine: Engine) -> str:
    with engine.connect() as connection:
        latest = connection.execute(text("SELECT payload FROM events ORDER BY id DESC LIMIT 1"))
        return str(latest.scalar_one())


def test_hostile_names_are_stored_verbatim_in_the_graph(target: Target) -> None:
    """Hostile names land in ``jobs`` and ``datasets`` as sent (no escaping, no truncation)."""
    events = [event(job=v, namespace=f"graph {v}", inputs=[{"namespace": f"graph {v}", "name": v}])
              for v in HOSTILE_NAMES.values()]
    reply = target.server.post(BATCH, orjson.dumps(events))
    assert reply.status == 200, reply.body
    target.server.wait_projected()
    with target.engine.connect() as connection:
        jobs = {(r[0], r[1]) for r in connection.execute(text("SELECT namespace, name FROM jobs"))}
        datasets = {(r[0], r[1]) for r in connection.execute(text("SELECT namespace, name FROM datasets"))}
    for value in HOSTILE_NAMES.values():
        assert (f"graph {value}", value) in jobs
        assert (f"graph {value}", value) in datasets


def test_the_server_still_serves_after_the_hostile_requests(target: Target, it: Any) -> None:
    ev = event(job="after_the_storm")
    before = target.count()
    first = target.server.post_event(ev)
    second = target.server.post_event(ev)
    assert (first.status, first.json["status"]) == (201, "created")
    assert (second.status, second.json["status"]) == (201, "duplicate")
    assert target.count() == before + 1
