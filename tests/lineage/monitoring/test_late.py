"""data_late from the DAG's schedule, as Airflow's OpenLineage events carry it (the ``airflowDagRun`` and
``airflow`` run facets): stored runs of DAGs that are late and DAGs that are not, asset-triggered DAGs
left alone, and the rules file's interval as a fallback and as an override; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from lineage.context import LineageContext
from lineage.monitoring.late import Schedule, schedule_of
from lineage.monitoring.store import alerts as alerts_table

CRON = {"timezone": "UTC", "interval": 0.0, "run_immediately": False}


def dag_facets(dag_id: str, timetable: dict[str, Any], summary: str | None, key: str = "airflowDagRun",
               ) -> dict[str, Any]:
    """Run facets as the Airflow 3 provider writes them (DagInfo: timetable, timetable_summary)."""
    return {key: {"_producer": "https://github.com/apache/airflow/tree/providers-openlineage/2.x",
                  "_schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunFacet",
                  "dag": {"dag_id": dag_id, "timetable": timetable, "timetable_summary": summary,
                          "owner": "airflow"},
                  "dagRun": {"run_id": "scheduled__x"}}}


def late_rows(context: LineageContext) -> dict[str, dict[str, Any]]:
    with context.engine.connect() as connection:
        rows = connection.execute(select(alerts_table).where(alerts_table.c.kind == "data_late")
                                  .order_by(alerts_table.c.id)).mappings().all()
    return {f"{row['rule']}/{row['job_name']}": {**row, "details": orjson.loads(row["details"])}
            for row in rows}


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_schedules_read_from_airflow_facets() -> None:
    hourly = schedule_of({"timetable": {"expression": "0 * * * *", **CRON}, "timetable_summary": "0 * * * *"})
    assert hourly == Schedule("0 * * * *", crons=("0 * * * *",))
    assert hourly.interval_at(epoch("2026-03-02T10:30:00")) == 3600
    weekdays = schedule_of({"timetable": {"expression": "0 9 * * 1-5", **CRON}})
    assert weekdays is not None
    # A Friday run is due by Monday's tick; a Tuesday run by Wednesday's; a run at a tick, by the next.
    assert weekdays.interval_at(epoch("2026-03-06T09:05:00")) == 72 * 3600
    assert weekdays.interval_at(epoch("2026-03-03T09:05:00")) == 24 * 3600
    assert weekdays.interval_at(epoch("2026-03-03T09:00:00")) == 24 * 3600
    delta = schedule_of({"timetable": {"delta": 7200.0, "interval": 0.0}, "timetable_summary": "2:00:00"})
    assert delta is not None and delta.delta_s == 7200 and delta.summary == "2:00:00"
    several = schedule_of({"timetable": {"expressions": ["0 6 * * *", "0 18 * * *"], **CRON}})
    assert several is not None and several.interval_at(epoch("2026-03-02T07:00:00")) == 12 * 3600
    berlin = schedule_of({"timetable": {"expression": "0 2 * * *", "timezone": "Europe/Berlin"}})
    assert berlin is not None and berlin.interval_at(epoch("2026-03-02T07:00:00")) == 24 * 3600
    # Airflow 2's schedule_interval: presets, crons and str(timedelta).
    assert schedule_of({"schedule_interval": "@hourly"}) == Schedule("@hourly", crons=("@hourly",))
    assert schedule_of({"schedule_interval": "1 day, 0:00:00"}) == Schedule("1 day, 0:00:00", delta_s=86400)
    # Not by the clock: asset-triggered, manual, once; and nothing readable.
    for dag in ({"timetable": {"asset_condition": {"__type": "asset_all", "objects": []}},
                 "timetable_summary": "Asset"},
                {"timetable": {}, "timetable_summary": "None"},
                {"timetable": {}, "timetable_summary": "@once"},
                {"schedule_interval": "Dataset"}):
        found = schedule_of(dag)
        assert found is not None and not found.checkable and found.interval_at(0) is None, dag
    assert schedule_of({"timetable": {"custom": 1}, "timetable_summary": "my own timetable"}) is None
    assert schedule_of(None) is None and schedule_of({"dag_id": "x"}) is None


def test_late_and_not_late_dags_by_their_schedules(monitor: Callable[..., Any], kit: Any) -> None:
    # Minute 0 is 2026-03-01T00:00Z. The check runs at 01:10.
    now = [kit.epoch(70)]
    rules = {"late_check_s": 3600, "rules": [
        # The schedule decides; 30m is for jobs whose events carry none.
        {"name": "dags-late", "kind": "data_late", "match": {"namespace": "dags"},
         "expected_interval": "30m"},
        # The rules file decides, schedule or not.
        {"name": "fixed", "kind": "data_late", "match": {"namespace": "dags", "job": "hourly"},
         "interval_source": "rule", "expected_interval": "10d"},
    ]}
    m = monitor(rules, clock=lambda: now[0])
    hourly = dag_facets("hourly", {"expression": "0 * * * *", **CRON}, "0 * * * *")
    daily = dag_facets("daily", {"expression": "0 0 * * *", **CRON}, "0 0 * * *")
    two_hours = dag_facets("every2h", {"delta": 7200.0, "interval": 0.0}, "2:00:00")
    assets = dag_facets("on_assets", {"asset_condition": {"__type": "asset_any", "objects": []}}, "Asset")

    def dag_run(job: str, minutes: float, facets: dict[str, Any], state: str = "COMPLETE",
                namespace: str = "dags") -> list[dict[str, Any]]:
        run = kit.run_id()
        return [kit.run("START", job, minutes - 1, namespace=namespace, run_id=run, run_facets=facets),
                kit.run(state, job, minutes, namespace=namespace, run_id=run, run_facets=facets)]

    m.ingest(
        *dag_run("hourly", 2, hourly),  # due by 01:00 + 6 min grace: late at 01:10
        *dag_run("daily", 5, daily),  # due a day later: not late
        *dag_run("every2h", 3, two_hours),  # due by 02:00 + 12 min: not late
        *dag_run("on_assets", 1, assets),  # triggered by assets: never late
        *dag_run("plain", 1, {}),  # no schedule in its events: the rule's 30m
        # The schedule from a task's `airflow` facet, on a run that failed: clock from first sighting.
        *dag_run("tasky", 1, dag_facets("tasky", {"expression": "*/15 * * * *", **CRON}, "*/15 * * * *",
                                        key="airflow"), state="FAIL"),
        *dag_run("elsewhere", 1, hourly, namespace="other"),  # no rule matches it
    )
    m.check_late()
    late = late_rows(m.context)
    assert set(late) == {"dags-late/hourly", "dags-late/plain", "dags-late/tasky"}
    by_schedule = late["dags-late/hourly"]
    assert by_schedule["message"] == ("no COMPLETE run within the expected 1h of the DAG's schedule "
                                      "(0 * * * *) plus 6m grace")
    details = by_schedule["details"]
    assert (details["intervalSource"], details["expectedIntervalSeconds"], details["graceSeconds"]) == (
        "schedule", 3600, 360)
    assert details["lastCompleteAt"] == kit.at(2) and details["dueBy"] == kit.at(68)
    assert late["dags-late/plain"]["message"] == "no COMPLETE run within the expected 30m"
    assert late["dags-late/plain"]["details"]["intervalSource"] == "rule"
    tasky = late["dags-late/tasky"]
    assert tasky["run_id"] == "never-completed" and "(*/15 * * * *)" in tasky["message"]
    assert m.check_late() == 0  # one alert per late spell

    # The daily DAG misses its next day; the two-hourly one its next run: both late by 02:30 the next day.
    now[0] = kit.epoch(26.5 * 60)
    assert m.check_late() == 2
    assert {"dags-late/daily", "dags-late/every2h"} <= set(late_rows(m.context))
    assert "fixed/hourly" not in late_rows(m.context)  # 10 days, whatever the schedule says
    assert all(not key.endswith("/on_assets") for key in late_rows(m.context))


@pytest.mark.parametrize("grace", ["15m", None])
def test_grace_from_the_rule(monitor: Callable[..., Any], kit: Any, grace: str | None) -> None:
    now = [kit.epoch(69)]  # 01:09: past 01:02 + 1h, within a 15 min grace, past the default 6 min
    rule: dict[str, Any] = {"name": "late", "kind": "data_late", "match": {"job": "hourly"}}
    if grace:
        rule["grace"] = grace
    m = monitor({"late_check_s": 3600, "rules": [rule]}, clock=lambda: now[0])
    run = kit.run_id()
    facets = dag_facets("hourly", {"expression": "0 * * * *", **CRON}, "0 * * * *")
    m.ingest(kit.run("COMPLETE", "hourly", 2, run_id=run, run_facets=facets))
    assert m.check_late() == (0 if grace else 1)
