"""``data_late``: no successful run within the expected interval of the DAG's schedule.

Airflow's OpenLineage provider puts the DAG's schedule in the run facets of its events (``airflowDagRun``
on the DAG run's events, ``airflow`` on its tasks'; both carry ``dag``): ``timetable`` (the serialised
timetable: ``expression`` and ``timezone`` for cron schedules and presets, ``expressions`` for several
crons, ``delta`` in seconds for a timedelta, ``asset_condition`` for asset-triggered DAGs),
``timetable_summary`` (Airflow 3) and ``schedule_interval`` (Airflow 2).

The interval is the schedule's gap around the job's last COMPLETE run: for a cron, from the tick at or
before the run's end to the next tick (a weekday cron's Friday run is due by Monday's tick); for a
timedelta, the timedelta. A job is late when its last COMPLETE run (or, without one, its first sighting)
is older than that interval plus the rule's ``grace`` (default: a tenth of the interval).

Not late-checked: DAGs triggered by assets (datasets) or only by hand (``None``, ``@once``) and
``@continuous`` ones: nothing is due by the clock. For jobs whose events carry no schedule this module
can read (not Airflow's, a custom timetable, a relativedelta timedelta) the rule's ``expected_interval``,
when it has one, is the interval (a fallback). A rule with ``interval_source: rule`` always uses its
``expected_interval`` (an override), schedule or not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter  # type: ignore[import-untyped]  # no stubs shipped
from sqlalchemy import Connection, func, select

from lineage.monitoring.rules import AlertRules, Rule
from lineage.store import schema as s
from lineage.store.event_facets import load_run_facets
from lineage.store.times import format_time

#: Runs of a job looked through (newest first) for one whose events carry the DAG's schedule.
RUNS_LOOKED_AT = 3
_DELTA_TEXT = re.compile(r"^(?:(\d+) days?, )?(\d+):(\d\d):(\d\d)(?:\.\d+)?$")  # str(timedelta)
_UNSCHEDULED = {"none", "@once", "once", "@continuous", "continuous", "asset", "dataset"}


@dataclass(frozen=True)
class Schedule:
    """A DAG's schedule as its events describe it; ``checkable`` when it runs by the clock."""

    summary: str  # what to show: the cron expression(s), the timedelta, or why it is not checked
    crons: tuple[str, ...] = ()
    timezone: str = "UTC"
    delta_s: float | None = None

    @property
    def checkable(self) -> bool:
        return bool(self.crons) or self.delta_s is not None

    def interval_at(self, moment_s: float) -> float | None:
        """Seconds from the schedule's tick at or before ``moment_s`` to the next tick after it."""
        if self.delta_s is not None:
            return self.delta_s
        if not self.crons:
            return None
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("UTC")
        at = datetime.fromtimestamp(moment_s, zone)
        # A tick exactly at moment_s counts as "at or before": start the next search just after it.
        prev = max(croniter(c, at + timedelta(microseconds=1)).get_prev(datetime) for c in self.crons)
        nxt = min(croniter(c, at).get_next(datetime) for c in self.crons)
        return float((nxt - prev).total_seconds())


def _from_text(text: str, timezone: str = "UTC") -> Schedule | None:
    value = text.strip()
    if not value:
        return None
    if value.lower() in _UNSCHEDULED or value.lower().startswith(("asset", "dataset")):
        return Schedule(f"not by the clock ({value})")
    delta = _DELTA_TEXT.match(value)
    if delta:
        days, hours, minutes, seconds = (int(g or 0) for g in delta.groups())
        total = days * 86400 + hours * 3600 + minutes * 60 + seconds
        return Schedule(value, delta_s=float(total)) if total > 0 else None
    if croniter.is_valid(value):
        return Schedule(value, crons=(value,), timezone=timezone)
    return None


def schedule_of(dag: Any) -> Schedule | None:
    """The schedule in a ``dag`` object of Airflow's run facets; None when it names none."""
    if not isinstance(dag, dict):
        return None
    timetable = dag.get("timetable")
    if isinstance(timetable, dict) and timetable:
        named = timetable.get("timezone")
        zone = named if isinstance(named, str) and named else "UTC"
        expression = timetable.get("expression")
        expressions = timetable.get("expressions")
        if isinstance(expression, str) and croniter.is_valid(expression):
            return Schedule(expression, crons=(expression,), timezone=zone)
        if isinstance(expressions, list) and expressions and all(
                isinstance(e, str) and croniter.is_valid(e) for e in expressions):
            return Schedule(" | ".join(expressions), crons=tuple(expressions), timezone=zone)
        delta = timetable.get("delta")
        if isinstance(delta, int | float) and not isinstance(delta, bool) and delta > 0:
            return Schedule(str(timedelta(seconds=float(delta))), delta_s=float(delta))
        if "asset_condition" in timetable or "dataset_condition" in timetable:
            return Schedule("not by the clock (assets)")
    for key in ("timetable_summary", "schedule_interval"):
        value = dag.get(key)
        if isinstance(value, str):
            found = _from_text(value)
            if found is not None:
                return found
    return None


class ScheduleCache:
    """The schedule of each job, looked up in its newest runs' facets once per newest run."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], tuple[str | None, Schedule | None]] = {}

    def of(self, connection: Connection, namespace: str, name: str) -> Schedule | None:
        r = s.runs
        runs = [str(run) for run in connection.execute(
            select(r.c.run_id).where(r.c.job_namespace == namespace, r.c.job_name == name)
            .order_by(r.c.created_at.desc()).limit(RUNS_LOOKED_AT)).scalars()]
        newest = runs[0] if runs else None
        cached = self._known.get((namespace, name))
        if cached is not None and cached[0] == newest:
            return cached[1]
        found: Schedule | None = None
        merged = load_run_facets(connection, runs) if runs else {}
        for run in runs:
            facets = merged.get(run)
            if facets is None:
                continue
            for key in ("airflowDagRun", "airflow"):
                holder = facets.run.get(key)
                found = schedule_of(holder.get("dag")) if isinstance(holder, dict) else None
                if found is not None:
                    break
            if found is not None:
                break
        self._known[(namespace, name)] = (newest, found)
        return found


@dataclass(frozen=True)
class Expectation:
    interval_s: float
    grace_s: float
    source: str  # "schedule" or "rule"
    schedule: str | None


def expectation(rule: Rule, schedule: Schedule | None, since_s: float) -> Expectation | None:
    """How long after ``since_s`` a COMPLETE run is due, under ``rule`` (None: not checked)."""
    if rule.uses_schedule and schedule is not None:
        interval = schedule.interval_at(since_s)
        if interval is None or interval <= 0:
            return None  # triggered by assets or by hand: nothing is due by the clock
        grace = rule.grace_s if rule.grace_s is not None else interval / 10
        return Expectation(interval, grace, "schedule", schedule.summary)
    if rule.expected_interval_s is not None:
        return Expectation(rule.expected_interval_s, 0.0, "rule",
                           schedule.summary if schedule is not None else None)
    return None


def _epoch(stored_time: str) -> float:
    return datetime.fromisoformat(stored_time).timestamp()


def describe_interval(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Late:
    """A job found late: what :func:`lineage.monitoring.detect.late_findings` turns into a finding."""

    namespace: str
    name: str
    last_run: str | None
    since: str
    first_seen: str
    expected: Expectation

    @property
    def message(self) -> str:
        text = f"no COMPLETE run within the expected {describe_interval(self.expected.interval_s)}"
        if self.expected.source == "schedule":
            text += f" of the DAG's schedule ({self.expected.schedule})"
            if self.expected.grace_s:
                text += f" plus {describe_interval(round(self.expected.grace_s))} grace"
        return text + ("" if self.last_run is not None else " (never completed)")

    def details(self) -> dict[str, Any]:
        due = _epoch(self.since) + self.expected.interval_s + self.expected.grace_s
        return {"lastCompleteRunId": self.last_run,
                "lastCompleteAt": self.since if self.last_run is not None else None,
                "firstSeen": self.first_seen, "expectedIntervalSeconds": self.expected.interval_s,
                "graceSeconds": self.expected.grace_s, "intervalSource": self.expected.source,
                "schedule": self.expected.schedule,
                "dueBy": format_time(datetime.fromtimestamp(due, UTC))}


def late_jobs(connection: Connection, rules: AlertRules, now_s: float, cache: ScheduleCache
              ) -> list[tuple[Rule, Late]]:
    """Jobs matched by a data_late rule whose last COMPLETE run (else first sighting) is older than the
    expected interval plus grace."""
    late_rules = rules.of_kind("data_late")
    if not late_rules:
        return []
    j, r = s.jobs, s.runs
    out: list[tuple[Rule, Late]] = []
    jobs = connection.execute(select(j.c.namespace, j.c.name, j.c.created_at)).all()
    for namespace, name, created_at in jobs:
        matching = [rule for rule in late_rules if rule.match.matches([namespace], name, [])]
        if not matching:
            continue
        last = connection.execute(
            select(r.c.run_id, r.c.ended_at).where(
                r.c.job_namespace == namespace, r.c.job_name == name, r.c.state == "COMPLETED",
                r.c.ended_at == select(func.max(r.c.ended_at)).where(
                    r.c.job_namespace == namespace, r.c.job_name == name,
                    r.c.state == "COMPLETED").scalar_subquery())
            .order_by(r.c.run_id).limit(1)).first()
        since = last.ended_at if last is not None else created_at
        if since is None:
            continue
        schedule = cache.of(connection, namespace, name) if any(m.uses_schedule for m in matching) else None
        for rule in matching:
            expected = expectation(rule, schedule, _epoch(since))
            if expected is None or _epoch(since) + expected.interval_s + expected.grace_s >= now_s:
                continue
            out.append((rule, Late(namespace, name, last.run_id if last is not None else None, since,
                                   created_at, expected)))
    return out
