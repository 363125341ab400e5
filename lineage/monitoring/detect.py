"""What is worth an alert: findings from events, from the audit log and from the clock, and the rules
that turn findings into alerts.

Messages never name a dataset or a column: names travel in structured fields (``job``, ``dataset``,
``details.columns[].field``), where the read API's redaction can find them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from lineage.monitoring.rules import AlertKind, AlertRules
from lineage.monitoring.store import NewAlert
from lineage.store import schema as s
from lineage.store.event_facets import load_run_facets
from lineage.store.projector import run_key
from lineage.store.times import format_time

Key = tuple[str, str]
Fields = dict[str, str | None]  # column (nested ones dotted) -> type (None when not given)

FAILED_TYPES = frozenset({"FAIL", "ABORT"})
_TEXT_MAX = 1_000


@dataclass(frozen=True)
class Finding:
    """Something that happened, before any rule looked at it."""

    kind: AlertKind
    subject: str  # a node id
    message: str
    run_id: str | None = None
    job: Key | None = None
    dataset: Key | None = None
    related: tuple[Key, ...] = ()  # further datasets a rule's match may name (a run's inputs, outputs)
    details: dict[str, Any] = field(default_factory=dict)
    event_id: int | None = None
    event_time: str | None = None


def alerts_for(rules: AlertRules, findings: Iterable[Finding]) -> list[NewAlert]:
    """One alert per finding and matching rule of its kind."""
    out: list[NewAlert] = []
    for finding in findings:
        datasets = ([finding.dataset] if finding.dataset else []) + list(finding.related)
        namespaces = ([finding.job[0]] if finding.job else []) + [ns for ns, _ in datasets]
        job_name = finding.job[1] if finding.job else None
        for rule in rules.of_kind(finding.kind):
            if not rule.match.matches(namespaces, job_name, [name for _, name in datasets]):
                continue
            out.append(NewAlert(
                rule=rule.name, kind=finding.kind, severity=rule.severity, subject=finding.subject,
                message=finding.message, run_id=finding.run_id,
                job_namespace=finding.job[0] if finding.job else None, job_name=job_name,
                dataset_namespace=finding.dataset[0] if finding.dataset else None,
                dataset_name=finding.dataset[1] if finding.dataset else None,
                details=finding.details, event_id=finding.event_id, event_time=finding.event_time,
                webhooks=rule.webhooks,
            ))
    return out


# -- events -----------------------------------------------------------------------------------------

def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _datasets(event: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = event.get(key)
    return [d for d in items if isinstance(d, dict) and isinstance(d.get("namespace"), str)
            and isinstance(d.get("name"), str)] if isinstance(items, list) else []


def _clip(value: Any) -> Any:
    return value[:_TEXT_MAX] if isinstance(value, str) else value


def summary(event: Any) -> dict[str, Any]:
    """The compact form of an event the live stream carries."""
    event = _dict(event)
    job, run = _dict(event.get("job")), _dict(event.get("run"))
    out: dict[str, Any] = {
        "eventType": event.get("eventType"), "eventTime": event.get("eventTime"),
        "job": {"namespace": job.get("namespace"), "name": job.get("name")} if job else None,
        "runId": str(run["runId"]) if run.get("runId") is not None else None,
        "inputs": [{"namespace": d["namespace"], "name": d["name"]} for d in _datasets(event, "inputs")],
        "outputs": [{"namespace": d["namespace"], "name": d["name"]} for d in _datasets(event, "outputs")],
    }
    if isinstance(event.get("dataset"), dict) and not job:  # a DatasetEvent
        dataset = event["dataset"]
        out["dataset"] = {"namespace": dataset.get("namespace"), "name": dataset.get("name")}
    return out


def namespaces_of(event: Any) -> frozenset[str]:
    """Every namespace an event touches: its job's and its datasets' (the stream's filter)."""
    event = _dict(event)
    found = {d["namespace"] for key in ("inputs", "outputs") for d in _datasets(event, key)}
    for holder in (_dict(event.get("job")), _dict(event.get("dataset"))):
        if isinstance(holder.get("namespace"), str):
            found.add(holder["namespace"])
    return frozenset(found)


def _failed_assertions(ds: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    facet = {}
    for facets_key in ("inputFacets", "outputFacets", "facets"):
        candidate = _dict(_dict(ds.get(facets_key)).get("dataQualityAssertions"))
        if isinstance(candidate.get("assertions"), list):
            facet = candidate
            break
    items = [a for a in facet.get("assertions", []) if isinstance(a, dict)]
    failed = [
        {"field": a.get("column") if isinstance(a.get("column"), str) else None,
         "assertion": _clip(a.get("assertion")), "name": _clip(a.get("name")),
         "severity": a.get("severity"), "expected": _clip(a.get("expected")),
         "actual": _clip(a.get("actual"))}
        for a in items if a.get("success") is False
    ]
    return failed, len(items)


def event_findings(event_id: int, event_time: str, event: Any) -> list[Finding]:
    """Gate and run failures an event reports (schema changes need the store: :class:`SchemaWatch`)."""
    if not isinstance(event, dict):
        return []
    job_d, run_d = _dict(event.get("job")), _dict(event.get("run"))
    if not isinstance(job_d.get("namespace"), str) or not isinstance(job_d.get("name"), str):
        return []
    job: Key = (job_d["namespace"], job_d["name"])
    run_id = run_key(run_d["runId"]) if run_d.get("runId") is not None else None
    event_type = str(event.get("eventType") or "")
    io = [(d["namespace"], d["name"]) for key in ("inputs", "outputs") for d in _datasets(event, key)]
    common: dict[str, Any] = {"run_id": run_id, "job": job, "event_id": event_id, "event_time": event_time}
    findings: list[Finding] = []
    for ds in _datasets(event, "inputs") + _datasets(event, "outputs"):
        failed, total = _failed_assertions(ds)
        if failed:
            key: Key = (ds["namespace"], ds["name"])
            findings.append(Finding(
                kind="gate_failed", subject=f"dataset:{key[0]}:{key[1]}", dataset=key,
                message=f"quality gate failed: {len(failed)} of {total} assertions failed",
                details={"failed": len(failed), "total": total, "columns": failed}, **common))
    error = _dict(_dict(run_d.get("facets")).get("errorMessage")).get("message")
    failed_run = event_type in FAILED_TYPES
    if failed_run and job[1].endswith(".gate") and not findings:
        findings.append(Finding(
            kind="gate_failed", subject=f"job:{job[0]}:{job[1]}", related=tuple(io),
            message=f"quality gate task ended {event_type}",
            details={"eventType": event_type, "errorMessage": _clip(error)}, **common))
    if failed_run:
        findings.append(Finding(
            kind="run_failed", subject=f"job:{job[0]}:{job[1]}", related=tuple(io),
            message=f"run ended {event_type}",
            details={"eventType": event_type, "errorMessage": _clip(error)}, **common))
    return findings


# -- schema changes ---------------------------------------------------------------------------------

def schema_fields(facets: Any) -> Fields | None:
    """Columns of a ``schema`` facet (nested ones as ``parent.child``) and their types; None without one."""
    schema = _dict(_dict(facets).get("schema"))
    if not isinstance(schema.get("fields"), list):
        return None
    out: Fields = {}

    def walk(items: list[Any], prefix: str) -> None:
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue
            name = prefix + item["name"]
            kind = item.get("type")
            out[name] = kind.strip() if isinstance(kind, str) and kind.strip() else None
            if isinstance(item.get("fields"), list):
                walk(item["fields"], name + ".")

    walk(schema["fields"], "")
    return out


def incompatible(previous: Fields, current: Fields) -> list[dict[str, Any]]:
    """Columns removed, or whose type changed (types compared case-blind; a missing type is no change)."""
    changes: list[dict[str, Any]] = []
    for name, old in previous.items():
        if name not in current:
            changes.append({"field": name, "change": "removed", "from": old, "to": None})
            continue
        new = current[name]
        if old is not None and new is not None and old.lower() != new.lower():
            changes.append({"field": name, "change": "type_changed", "from": old, "to": new})
    return changes


@dataclass
class _Seen:
    event_time: str
    run_id: str
    fields: Fields
    raw: list[Any]  # the facet's fields as sent: compared first, as most versions repeat it
    previous: Fields | None  # the version before this one, as this one was compared with
    previous_run: str | None


class SchemaWatch:
    """Compares each new dataset version's schema with the version before it.

    The newest schema of recently seen datasets is kept in memory, so events in order cost no query;
    an event older than what is remembered, or a dataset not seen yet, asks the store (the newest
    older version of the dataset with a schema, through its run's events). :meth:`forget` drops the
    memory when this process has not seen every event since (another process derived some).
    """

    def __init__(self, capacity: int = 10_000, lookback: int = 5) -> None:
        self.capacity = capacity
        self.lookback = lookback
        self._seen: OrderedDict[Key, _Seen] = OrderedDict()

    def forget(self) -> None:
        self._seen.clear()

    def findings(self, connection: Connection, event_id: int, event_time: str, event: Any) -> list[Finding]:
        if not isinstance(event, dict):
            return []
        run_value = _dict(event.get("run")).get("runId")
        job_d = _dict(event.get("job"))
        if run_value is None:
            return []
        run_id = run_key(run_value)
        job: Key | None = ((job_d["namespace"], job_d["name"]) if isinstance(job_d.get("namespace"), str)
                           and isinstance(job_d.get("name"), str) else None)
        out: list[Finding] = []
        for ds in _datasets(event, "outputs"):
            raw = _dict(_dict(ds.get("facets")).get("schema")).get("fields")
            if not isinstance(raw, list):
                continue
            key: Key = (ds["namespace"], ds["name"])
            seen = self._seen.get(key)
            if (seen is not None and seen.raw == raw and seen.run_id != run_id
                    and event_time >= seen.event_time):
                # Most versions repeat the schema of the one before: nothing to compare.
                self._seen[key] = _Seen(event_time, run_id, seen.fields, raw, seen.fields, seen.run_id)
                self._seen.move_to_end(key)
                continue
            fields = schema_fields(ds.get("facets")) or {}
            previous, previous_run = self._previous(connection, key, run_id, event_time, fields, raw)
            changes = incompatible(previous, fields) if previous is not None else []
            if not changes:
                continue
            removed = sum(1 for c in changes if c["change"] == "removed")
            out.append(Finding(
                kind="schema_changed", subject=f"dataset:{key[0]}:{key[1]}", dataset=key, job=job,
                run_id=run_id, event_id=event_id, event_time=event_time,
                message=f"schema changed incompatibly: {removed} column(s) removed, "
                        f"{len(changes) - removed} type(s) changed versus the previous version",
                details={"previousRunId": previous_run, "columns": changes}))
        return out

    def _previous(self, connection: Connection, key: Key, run_id: str, event_time: str,
                  fields: Fields, raw: list[Any]) -> tuple[Fields | None, str | None]:
        seen = self._seen.get(key)
        if seen is not None and seen.run_id == run_id:
            seen.fields, seen.raw = fields, raw  # a later event of the same run: same previous version
            self._seen.move_to_end(key)
            return seen.previous, seen.previous_run
        previous: Fields | None
        previous_run: str | None
        if seen is not None and event_time >= seen.event_time:
            previous, previous_run = seen.fields, seen.run_id
        else:
            previous, previous_run = self._stored_previous(connection, key, run_id, event_time)
        if seen is None or event_time >= seen.event_time:
            self._seen[key] = _Seen(event_time, run_id, fields, raw, previous, previous_run)
            self._seen.move_to_end(key)
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
        return previous, previous_run

    def _stored_previous(self, connection: Connection, key: Key, run_id: str,
                         event_time: str) -> tuple[Fields | None, str | None]:
        v = s.dataset_versions
        runs = [str(r) for r in connection.execute(
            select(v.c.run_id).where(v.c.namespace == key[0], v.c.name == key[1], v.c.run_id != run_id,
                                     v.c.created_at <= event_time)
            .order_by(v.c.created_at.desc()).limit(self.lookback)).scalars()]
        if not runs:
            return None, None
        facets = load_run_facets(connection, runs)
        for previous_run in runs:
            merged = facets.get(run_key(previous_run))
            fields = schema_fields(merged.outputs.get(key)) if merged is not None else None
            if fields is not None:
                return fields, previous_run
        return None, None


# -- the audit log ----------------------------------------------------------------------------------

def violation_finding(row: Any) -> Finding:
    """A policy violation recorded in the audit log (a row of kind ``violation``)."""
    details = orjson.loads(row.details) if row.details else {}
    dataset: Key | None = ((row.dataset_namespace, row.dataset_name)
                           if row.dataset_name is not None else None)
    if dataset is None:
        subject = f"audit:{row.id}"
    elif row.field:
        subject = f"datasetField:{dataset[0]}:{dataset[1]}:{row.field}"
    else:
        subject = f"dataset:{dataset[0]}:{dataset[1]}"
    run_id = details.get("runId") if isinstance(details.get("runId"), str) else None
    return Finding(
        kind="policy_violation", subject=subject, dataset=dataset,
        # Violations the service computes carry no run: the audit row is then what makes one unique.
        run_id=run_id or f"audit:{row.id}",
        message="policy violation recorded in the audit log",
        details={"auditId": int(row.id), "reason": _clip(row.reason), "by": row.subject,
                 "columns": [{"field": row.field}] if row.field else [],
                 **{k: v for k, v in details.items() if k in ("declared", "propagated", "level", "product")}},
        event_time=row.at)


# -- the clock --------------------------------------------------------------------------------------

def late_findings(connection: Connection, rules: AlertRules, now_s: float) -> list[Finding]:
    """Jobs matched by a data_late rule with no COMPLETE run within the rule's expected interval.

    A job's clock starts at its last COMPLETE run's end, or, when it never completed, when it was first
    seen. The last complete run is part of the alert's key: one alert per late spell.
    """
    late_rules = rules.of_kind("data_late")
    if not late_rules:
        return []
    j, r = s.jobs, s.runs
    out: list[Finding] = []
    jobs = connection.execute(select(j.c.namespace, j.c.name, j.c.created_at)).all()
    for rule in late_rules:
        assert rule.expected_interval_s is not None
        cutoff = format_time_s(now_s - rule.expected_interval_s)
        for namespace, name, created_at in jobs:
            if not rule.match.matches([namespace], name, []):
                continue
            last = connection.execute(
                select(r.c.run_id, r.c.ended_at).where(
                    r.c.job_namespace == namespace, r.c.job_name == name, r.c.state == "COMPLETED",
                    r.c.ended_at == select(func.max(r.c.ended_at)).where(
                        r.c.job_namespace == namespace, r.c.job_name == name,
                        r.c.state == "COMPLETED").scalar_subquery())
                .order_by(r.c.run_id).limit(1)).first()
            since = last.ended_at if last is not None else created_at
            if since is None or since >= cutoff:
                continue
            out.append(Finding(
                kind="data_late", subject=f"job:{namespace}:{name}", job=(namespace, name),
                run_id=last.run_id if last is not None else "never-completed",
                message=(f"no COMPLETE run within the expected {describe_interval(rule.expected_interval_s)}"
                         + ("" if last is not None else " (never completed)")),
                details={"lastCompleteRunId": last.run_id if last is not None else None,
                         "lastCompleteAt": since if last is not None else None, "firstSeen": created_at,
                         "expectedIntervalSeconds": rule.expected_interval_s},
                event_time=since))
    return out


def format_time_s(epoch_s: float) -> str:
    return format_time(datetime.fromtimestamp(epoch_s, UTC))


def describe_interval(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def dedupe(findings: Sequence[Finding]) -> list[Finding]:
    """Findings in order, the first of each (kind, subject, run) kept."""
    seen: set[tuple[str, str, str | None]] = set()
    out = []
    for finding in findings:
        key = (finding.kind, finding.subject, finding.run_id)
        if key not in seen:
            seen.add(key)
            out.append(finding)
    return out
