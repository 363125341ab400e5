"""Close the lineage of task tries that died without a word (their worker was killed).

A try whose process is SIGKILLed (a worker, container or machine lost) emits no terminal OpenLineage
event itself: the provider's listener runs in that process. In Airflow 3.3 the scheduler usually makes
up for it: its heartbeat-timeout handling fails the task instance through the executor, and the
OpenLineage listener in the scheduler emits FAIL for that try (seen in tests/scaleout). This module is
the safety net for when that does not happen (the scheduler's listener is off, or its emission failed):
the next try of the same task closes every earlier try that never ended. The provider derives a try's
run id from (dag, task, try number, logical date, map index) alone, so the retry can name the previous
try's run and emit FAIL for it, with an ``errorMessage`` facet saying the try was lost.

Never over a real terminal event. The store keeps, among terminal events, the one with the latest
eventTime. The FAIL sent here carries the time the lost try was last known alive: when it began its
work (``TryLedger.mark_started``, from the operators' ``pre_execute``, after the provider emitted
START). Any terminal event someone really emitted for that try (the task itself, the scheduler) is
later, so it keeps its state, end time and message; the FAIL here only ends a run left RUNNING.

Only tries that did not end get one, so the event log holds no FAIL for a try that completed (a task
cleared and run again). A try "ended" when the provider built its terminal event: the operators call
``TryLedger.mark_ended`` from ``get_openlineage_facets_on_complete/failure``. Ledger entries are small
marker files under the data root, which every worker shares, so the retry sees them on any machine. A
try closed here is marked ended too, so a third try does not close it again.

Pure functions and a ledger on a folder; the Airflow glue (``begin_try``, ``mark_try_ended``) imports
Airflow lazily and never raises: lineage must not fail a task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from chaintrace_chain.zones import run_key

log = logging.getLogger(__name__)

LOST_MESSAGE = (
    "try {try_number} of {task} was lost: its process ended without reporting (worker killed or its "
    "machine gone); Airflow timed it out and retried it as try {next_try}"
)
ERROR_FACET_SCHEMA = "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json"
PARENT_FACET_SCHEMA = "https://openlineage.io/spec/facets/1-1-0/ParentRunFacet.json"
EVENT_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"


@dataclass(frozen=True)
class TaskTry:
    """One try of one task instance, as the OpenLineage provider names it."""

    dag_id: str
    task_id: str
    airflow_run_id: str
    try_number: int
    logical_date: datetime  # the DAG run's logical date, or its run_after when it has none
    map_index: int = -1

    @property
    def job_name(self) -> str:
        return f"{self.dag_id}.{self.task_id}"

    def previous(self) -> list[TaskTry]:
        """Every earlier try of this task instance, oldest first."""
        return [
            TaskTry(self.dag_id, self.task_id, self.airflow_run_id, number, self.logical_date, self.map_index)
            for number in range(1, self.try_number)
        ]


class LedgerPath(Protocol):
    """What the ledger needs of a folder: a ``pathlib.Path``, or the chain's fsspec ``ZonePath``."""

    def __truediv__(self, name: str) -> LedgerPath: ...
    @property
    def parent(self) -> LedgerPath: ...
    def exists(self) -> bool: ...
    def mkdir(self, *, parents: bool = ..., exist_ok: bool = ...) -> None: ...
    def write_bytes(self, data: bytes) -> Any: ...
    def read_bytes(self) -> bytes: ...


@dataclass(frozen=True)
class TryLedger:
    """When tries began their work and which ended, as marker files on the data root's storage (every
    worker sees them): ``<root>/<dag>/<run key>/<task>[.<map index>].<try>.{started,ended}``."""

    root: LedgerPath

    def _marker(self, attempt: TaskTry, kind: str) -> LedgerPath:
        task = attempt.task_id if attempt.map_index < 0 else f"{attempt.task_id}.{attempt.map_index}"
        folder = self.root / attempt.dag_id / run_key(attempt.airflow_run_id)
        return folder / f"{task}.{attempt.try_number}.{kind}"

    def _write(self, marker: LedgerPath, data: bytes) -> None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_bytes(data)

    def mark_started(self, attempt: TaskTry, at: datetime) -> None:
        self._write(self._marker(attempt, "started"), at.isoformat().encode())

    def started_at(self, attempt: TaskTry) -> datetime | None:
        marker = self._marker(attempt, "started")
        try:
            return datetime.fromisoformat(marker.read_bytes().decode()) if marker.exists() else None
        except ValueError:  # a marker cut short: the try's start is unknown
            return None

    def mark_ended(self, attempt: TaskTry) -> None:
        self._write(self._marker(attempt, "ended"), b"")  # empty: its existence is the record

    def has_ended(self, attempt: TaskTry) -> bool:
        return self._marker(attempt, "ended").exists()


def lost_try_event(
    attempt: TaskTry,
    *,
    run_id: str,
    namespace: str,
    producer: str,
    next_try: int,
    parent: tuple[str, str, str] | None = None,
    event_time: datetime | None = None,
) -> dict[str, Any]:
    """The FAIL event of a lost try, as OpenLineage 2-0-2 JSON. ``parent``: (namespace, job name, run id)
    of the DAG run, as the provider links every task run to it; ``event_time``: default now."""
    message = LOST_MESSAGE.format(try_number=attempt.try_number, task=attempt.job_name, next_try=next_try)
    facets: dict[str, Any] = {
        "errorMessage": {
            "_producer": producer,
            "_schemaURL": ERROR_FACET_SCHEMA,
            "message": message,
            "programmingLanguage": "python",
        }
    }
    if parent is not None:
        parent_namespace, parent_job, parent_run = parent
        facets["parent"] = {
            "_producer": producer,
            "_schemaURL": PARENT_FACET_SCHEMA,
            "job": {"namespace": parent_namespace, "name": parent_job},
            "run": {"runId": parent_run},
        }
    return {
        "eventType": "FAIL",
        "eventTime": (event_time or datetime.now(UTC)).isoformat(),
        "producer": producer,
        "schemaURL": EVENT_SCHEMA,
        "run": {"runId": run_id, "facets": facets},
        "job": {"namespace": namespace, "name": attempt.job_name, "facets": {}},
        "inputs": [],
        "outputs": [],
    }


def lost_tries(current: TaskTry, ledger: TryLedger) -> list[TaskTry]:
    """The earlier tries of ``current`` that never ended."""
    return [attempt for attempt in current.previous() if not ledger.has_ended(attempt)]


def close_tries(
    current: TaskTry,
    ledger: TryLedger,
    *,
    run_id_of: Callable[[TaskTry], str],
    emit: Callable[[dict[str, Any]], None],
    namespace: str,
    producer: str,
    not_after: datetime,
    parent: tuple[str, str, str] | None = None,
) -> list[dict[str, Any]]:
    """Emit FAIL for every earlier try that never ended, and mark it ended; the events sent.

    Each FAIL is stamped with the try's recorded start, or ``not_after`` (a time before any event of
    the DAG run, e.g. its start) when the try died before recording it."""
    sent = []
    for attempt in lost_tries(current, ledger):
        event = lost_try_event(attempt, run_id=run_id_of(attempt), namespace=namespace, producer=producer,
                               next_try=current.try_number, parent=parent,
                               event_time=ledger.started_at(attempt) or not_after)
        emit(event)
        ledger.mark_ended(attempt)
        sent.append(event)
    return sent


# ------------------------------------------------------------------------------------ Airflow glue
def task_try_of(task_instance: Any, dag_run: Any) -> TaskTry:
    """The try a running task instance (Task SDK or ORM) is on, with the provider's logical date."""
    date = getattr(dag_run, "logical_date", None) or dag_run.run_after
    map_index = getattr(task_instance, "map_index", None)
    return TaskTry(str(task_instance.dag_id), str(task_instance.task_id), str(task_instance.run_id),
                   int(task_instance.try_number), date, -1 if map_index is None else int(map_index))


def mark_try_ended(task_instance: Any, ledger_root: Callable[[], LedgerPath]) -> None:
    """Record that this try's terminal event is being built; never raises."""
    try:
        dag_run = task_instance.get_template_context()["dag_run"]
        TryLedger(ledger_root()).mark_ended(task_try_of(task_instance, dag_run))
    except Exception:
        log.exception("chaintrace: could not record the end of %s", getattr(task_instance, "task_id", "?"))


def begin_try(task_instance: Any, dag_run: Any, ledger_root: Callable[[], LedgerPath]) -> int:
    """At the start of a try's work: record its start, and emit FAIL for the earlier tries of this task
    that were lost, through the provider's client (the configured transport: the chain's spooling
    transport). The number of tries closed; never raises."""
    try:
        current = task_try_of(task_instance, dag_run)
        ledger = TryLedger(ledger_root())
        ledger.mark_started(current, datetime.now(UTC))
        if current.try_number <= 1 or not lost_tries(current, ledger):
            return 0
        from airflow.providers.openlineage import conf as ol_conf

        if ol_conf.is_disabled():
            return 0
        from airflow.providers.openlineage.plugins import adapter as adapter_module
        from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter

        producer = str(vars(adapter_module)["_PRODUCER"])  # the provider's own producer URI
        adapter = OpenLineageAdapter()
        date = current.logical_date
        clear_number = int(getattr(dag_run, "clear_number", 0) or 0)
        parent_run = adapter.build_dag_run_id(current.dag_id, date, clear_number)

        def run_id_of(attempt: TaskTry) -> str:
            return str(adapter.build_task_instance_run_id(dag_id=attempt.dag_id, task_id=attempt.task_id,
                                                          try_number=attempt.try_number, logical_date=date,
                                                          map_index=attempt.map_index))

        client = adapter.get_or_create_openlineage_client()
        run_began = getattr(dag_run, "start_date", None) or dag_run.run_after
        sent = close_tries(current, ledger, run_id_of=run_id_of,
                           emit=lambda event: client.emit(_run_event(event)), namespace=ol_conf.namespace(),
                           producer=producer, not_after=run_began,
                           parent=(ol_conf.namespace(), current.dag_id, parent_run))
        for event in sent:
            log.warning("chaintrace: %s", event["run"]["facets"]["errorMessage"]["message"])
        return len(sent)
    except Exception:
        log.exception("chaintrace: could not close lost tries of %s", getattr(task_instance, "task_id", "?"))
        return 0


def _run_event(event: dict[str, Any]) -> Any:
    """``event`` as the client's RunEvent (its facets as plain attrs classes of openlineage-python)."""
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import error_message_run, parent_run

    facets: dict[str, Any] = {}
    error = event["run"]["facets"]["errorMessage"]
    facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
        message=error["message"], programmingLanguage=error["programmingLanguage"])
    parent = event["run"]["facets"].get("parent")
    if parent is not None:
        facets["parent"] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=parent["run"]["runId"]),
            job=parent_run.Job(namespace=parent["job"]["namespace"], name=parent["job"]["name"]))
    return RunEvent(
        eventType=RunState.FAIL, eventTime=event["eventTime"], producer=event["producer"],
        run=Run(runId=event["run"]["runId"], facets=facets),
        job=Job(namespace=event["job"]["namespace"], name=event["job"]["name"]), inputs=[], outputs=[])
