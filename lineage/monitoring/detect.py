"""What is worth an alert: findings from events, from the audit log and from the clock, and the rules
that turn findings into alerts.

Messages never name a dataset or a column: names travel in structured fields (``job``, ``dataset``,
``details.columns[].field``), where the read API's redaction can find them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection

from lineage.monitoring.late import ScheduleCache, late_jobs
from lineage.monitoring.rules import AlertKind, AlertRules
from lineage.monitoring.store import NewAlert
from lineage.store.projector import run_key

Key = tuple[str, str]

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
    rule: str | None = None  # the one rule this finding is for (data_late: intervals differ per rule)


def alerts_for(rules: AlertRules, findings: Iterable[Finding]) -> list[NewAlert]:
    """One alert per finding and matching rule of its kind."""
    out: list[NewAlert] = []
    for finding in findings:
        datasets = ([finding.dataset] if finding.dataset else []) + list(finding.related)
        namespaces = ([finding.job[0]] if finding.job else []) + [ns for ns, _ in datasets]
        job_name = finding.job[1] if finding.job else None
        for rule in rules.of_kind(finding.kind):
            if finding.rule is not None and rule.name != finding.rule:
                continue
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
    """Gate and run failures an event reports (schema changes: :mod:`lineage.monitoring.schemas`)."""
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

def late_findings(connection: Connection, rules: AlertRules, now_s: float,
                  schedules: ScheduleCache | None = None) -> list[Finding]:
    """Jobs late by a data_late rule (see :mod:`lineage.monitoring.late`), one finding per rule.

    The last complete run is part of the alert's key: one alert per late spell.
    """
    out: list[Finding] = []
    for rule, late in late_jobs(connection, rules, now_s, schedules or ScheduleCache()):
        out.append(Finding(
            kind="data_late", subject=f"job:{late.namespace}:{late.name}", job=(late.namespace, late.name),
            run_id=late.last_run if late.last_run is not None else "never-completed",
            message=late.message, details=late.details(), event_time=late.since, rule=rule.name))
    return out


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
