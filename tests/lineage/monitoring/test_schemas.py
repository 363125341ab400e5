"""schema_changed through the database's JSON functions (SQLite JSON1, PostgreSQL jsonb): every version
compared with the one before it, also when several arrive in one pass, nested columns, outputs without a
usable schema, and repeated schemas compared without parsing; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import select

from lineage.context import LineageContext
from lineage.monitoring.schemas import output_schemas
from lineage.monitoring.store import alerts as alerts_table
from lineage.store import schema as s

RULES = {"rules": [{"name": "schemas", "kind": "schema_changed"}]}


def schema_alerts(context: LineageContext) -> list[dict[str, Any]]:
    with context.engine.connect() as connection:
        rows = connection.execute(select(alerts_table).order_by(alerts_table.c.id)).mappings().all()
    return [{**row, "details": orjson.loads(row["details"])} for row in rows]


def test_every_version_of_a_pass_is_compared_with_the_one_before(
    monitor: Callable[..., Any], kit: Any, context: LineageContext
) -> None:
    m = monitor(RULES)

    def version(minutes: float, schema: dict[str, str], name: str = "orders") -> tuple[str, dict[str, Any]]:
        run = kit.run_id()
        return run, kit.run("COMPLETE", "etl.write", minutes, run_id=run,
                            outputs=[kit.dataset("wh", name, schema=schema)])

    r1, v1 = version(0, {"id": "INT", "note": "TEXT"})
    r2, v2 = version(1, {"id": "INT"})  # note removed
    r3, v3 = version(2, {"id": "INT", "note": "TEXT"})  # note back: compatible
    r4, v4 = version(3, {"id": "TEXT", "note": "TEXT"})  # id retyped
    # One ingest, one pass: the removal in the middle is not hidden by the version after it.
    assert m.ingest(v1, v2, v3, v4) == 2
    first, second = schema_alerts(m.context)
    assert (first["run_id"], first["details"]["previousRunId"]) == (r2, r1)
    assert first["details"]["columns"] == [{"field": "note", "change": "removed", "from": "TEXT", "to": None}]
    assert (second["run_id"], second["details"]["previousRunId"]) == (r4, r3)
    assert second["details"]["columns"][0]["change"] == "type_changed"
    assert second["job_name"] == "etl.write" and second["event_id"] is not None


def test_nested_columns_and_unusable_schemas(monitor: Callable[..., Any], kit: Any) -> None:
    m = monitor(RULES)
    nested = kit.dataset("wh", "people", schema={"who": "STRUCT"})
    nested["facets"]["schema"]["fields"][0]["fields"] = [{"name": "name", "type": "TEXT"},
                                                         {"name": "age", "type": "INT"}]
    assert m.ingest(kit.run("COMPLETE", "load", 0, outputs=[nested])) == 0
    broken = kit.dataset("wh", "people", schema={})
    broken["facets"]["schema"]["fields"] = "not a list"  # no columns to compare: skipped, not "all removed"
    no_schema = {"namespace": "wh", "name": "people"}
    m.context.ingest.ingest_sync([kit.run("COMPLETE", "load", 1, outputs=[broken]),
                                  kit.run("COMPLETE", "load", 2, outputs=[no_schema])])
    assert m.context.ingest.writer.wait_projected()
    assert m.catch_up() == 0
    shrunk = kit.dataset("wh", "people", schema={"who": "STRUCT"})
    shrunk["facets"]["schema"]["fields"][0]["fields"] = [{"name": "name", "type": "TEXT"}]
    assert m.ingest(kit.run("COMPLETE", "load", 3, outputs=[shrunk])) == 1
    (alert,) = schema_alerts(m.context)
    assert alert["details"]["columns"] == [
        {"field": "who.age", "change": "removed", "from": "INT", "to": None}]


def test_repeated_schemas_are_compared_without_parsing(
    monitor: Callable[..., Any], kit: Any, context: LineageContext
) -> None:
    m = monitor(RULES)
    schema = {"id": "INT", "amount": "DECIMAL"}
    events = [kit.run("COMPLETE", "etl.write", i, outputs=[kit.dataset("wh", f"t{i % 3}", schema=schema),
                                                          kit.dataset("wh", "other")])
              for i in range(30)]
    assert m.ingest(*events) == 0
    watch = m.service.schema_watch
    assert watch.parsed == 3  # once per dataset; the other 27 versions were one string comparison each
    with context.engine.connect() as connection:
        newest = connection.execute(select(s.events.c.id).order_by(s.events.c.id.desc())).scalars().first()
        found = output_schemas(connection, 0, int(newest or 0))
    assert len(found) == 30 and {f.dataset for f in found} == {("wh", "t0"), ("wh", "t1"), ("wh", "t2")}
    assert all(orjson.loads(f.text)["fields"][0] == {"name": "id", "type": "INT"} for f in found)
