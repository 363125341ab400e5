"""Closing the lineage of a lost try: which tries are lost, the FAIL event, and what the store makes of it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from fastapi.testclient import TestClient
from openlineage.client.serde import Serde

from chaintrace_chain.previous_try import TaskTry, TryLedger, _run_event, close_tries, lost_try_event
from lineage.service.validation import EventValidator

PRODUCER = "https://github.com/apache/airflow/tree/providers-openlineage/2.20.3"
LOGICAL = datetime(2026, 1, 3, tzinfo=UTC)
RUN_BEGAN = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)


def _try(number: int, task: str = "store.run") -> TaskTry:
    return TaskTry("flights", task, "backfill__2026-01-03T00:00:00+00:00", number, LOGICAL)


def _run_ids() -> dict[int, str]:
    return {number: str(uuid.uuid4()) for number in range(1, 5)}


def _close(current: TaskTry, ledger: TryLedger, run_ids: dict[int, str]) -> list[dict[str, Any]]:
    emitted: list[dict[str, Any]] = []
    sent = close_tries(current, ledger, run_id_of=lambda attempt: run_ids[attempt.try_number],
                       emit=emitted.append, namespace="chaintrace", producer=PRODUCER, not_after=RUN_BEGAN,
                       parent=("chaintrace", "flights", str(uuid.uuid4())))
    assert sent == emitted
    return emitted


def test_first_try_has_nothing_to_close(tmp_path: Path) -> None:
    assert _close(_try(1), TryLedger(tmp_path), _run_ids()) == []


def test_a_retry_closes_the_previous_try_that_never_ended_once(tmp_path: Path) -> None:
    ledger, run_ids = TryLedger(tmp_path), _run_ids()
    events = _close(_try(2), ledger, run_ids)
    assert [(e["eventType"], e["run"]["runId"], e["job"]["name"]) for e in events] == [
        ("FAIL", run_ids[1], "flights.store.run")]
    assert "try 1 of flights.store.run was lost" in events[0]["run"]["facets"]["errorMessage"]["message"]
    assert ledger.has_ended(_try(1))
    # The same try starting again (or a later one) does not close try 1 a second time.
    assert _close(_try(2), ledger, run_ids) == []


def test_the_fail_carries_the_lost_tries_start_or_else_the_runs_start(tmp_path: Path) -> None:
    ledger, run_ids = TryLedger(tmp_path), _run_ids()
    began_work = RUN_BEGAN + timedelta(seconds=42)
    ledger.mark_started(_try(2), began_work)  # try 1 died before it recorded its start
    events = _close(_try(3), ledger, run_ids)
    assert [(e["run"]["runId"], e["eventTime"]) for e in events] == [
        (run_ids[1], RUN_BEGAN.isoformat()), (run_ids[2], began_work.isoformat())]


def test_a_try_that_ended_is_left_alone(tmp_path: Path) -> None:
    ledger, run_ids = TryLedger(tmp_path), _run_ids()
    ledger.mark_ended(_try(1))
    assert _close(_try(2), ledger, run_ids) == []
    # Try 3 after a normal failure of try 1 and a lost try 2: only try 2 is closed.
    events = _close(_try(3), ledger, run_ids)
    assert [e["run"]["runId"] for e in events] == [run_ids[2]]


def test_the_ledger_keeps_tasks_runs_and_map_indexes_apart(tmp_path: Path) -> None:
    ledger = TryLedger(tmp_path)
    ledger.mark_ended(_try(1, "store.run"))
    assert not ledger.has_ended(_try(1, "store.gate"))
    mapped = TaskTry("flights", "store.run", _try(1).airflow_run_id, 1, LOGICAL, map_index=0)
    assert not ledger.has_ended(mapped)
    other_run = TaskTry("flights", "store.run", "manual__x", 1, LOGICAL)
    assert not ledger.has_ended(other_run)


def test_the_event_is_valid_openlineage_and_survives_the_client_model() -> None:
    event = lost_try_event(_try(1), run_id=str(uuid.uuid4()), namespace="chaintrace", producer=PRODUCER,
                           next_try=2, parent=("chaintrace", "flights", str(uuid.uuid4())))
    outcome = EventValidator.from_spec_dir().validate(event)
    assert not outcome.errors, outcome.errors
    assert not outcome.facet_warnings, outcome.facet_warnings
    # What the transport gets is the client's RunEvent; serialised, it says the same thing.
    sent = orjson.loads(Serde.to_json(_run_event(event)))
    assert sent["eventType"] == "FAIL" and sent["run"]["runId"] == event["run"]["runId"]
    sent_facets, facets = sent["run"]["facets"], event["run"]["facets"]
    assert sent_facets["errorMessage"]["message"] == facets["errorMessage"]["message"]
    assert sent_facets["parent"]["run"]["runId"] == facets["parent"]["run"]["runId"]
    assert sent["job"] == {"namespace": "chaintrace", "name": "flights.store.run", "facets": {}}


def _event(event_type: str, run_id: str, at: datetime) -> dict[str, Any]:
    return {"eventType": event_type, "eventTime": at.isoformat(), "producer": PRODUCER,
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
            "run": {"runId": run_id, "facets": {}},
            "job": {"namespace": "chaintrace", "name": "flights.store.run"}, "inputs": [], "outputs": []}


def _post(client: TestClient, events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    for event in events:
        assert client.post("/api/v1/lineage", json=event).status_code in (200, 201)
    runs = client.get("/api/v1/namespaces/chaintrace/jobs/flights.store.run/runs").json()["runs"]
    return {run["id"]: run for run in runs}


def test_the_store_shows_the_lost_try_failed_and_the_retry_completed_under_one_job(
    client: TestClient,
) -> None:
    run_ids = _run_ids()
    t0 = datetime.now(UTC).replace(microsecond=0)
    lost_fail = lost_try_event(_try(1), run_id=run_ids[1], namespace="chaintrace", producer=PRODUCER,
                               next_try=2, event_time=t0 + timedelta(seconds=1))
    retry_start = t0 + timedelta(seconds=39)
    runs = _post(client, [_event("START", run_ids[1], t0), _event("START", run_ids[2], retry_start),
                          lost_fail, _event("COMPLETE", run_ids[2], t0 + timedelta(seconds=60))])
    assert {run_id: run["state"] for run_id, run in runs.items()} == {
        run_ids[1]: "FAILED", run_ids[2]: "COMPLETED"}


def test_a_real_terminal_event_of_the_lost_try_keeps_its_time_whichever_arrives_first(
    client: TestClient,
) -> None:
    """The scheduler's FAIL (heartbeat timeout) is later than the lost try's start, which the FAIL sent
    here carries: the store keeps the scheduler's end time, in either order of arrival."""
    run_ids = _run_ids()
    t0 = datetime.now(UTC).replace(microsecond=0)
    ours = lost_try_event(_try(1), run_id=run_ids[1], namespace="chaintrace", producer=PRODUCER, next_try=2,
                          event_time=t0 + timedelta(seconds=1))
    scheduler = _event("FAIL", run_ids[1], t0 + timedelta(seconds=35))
    later_ours = lost_try_event(_try(1), run_id=run_ids[2], namespace="chaintrace", producer=PRODUCER,
                                next_try=2, event_time=t0 + timedelta(seconds=1))
    later_scheduler = _event("FAIL", run_ids[2], t0 + timedelta(seconds=35))
    runs = _post(client, [_event("START", run_ids[1], t0), scheduler, ours,
                          _event("START", run_ids[2], t0), later_ours, later_scheduler])
    for run_id in (run_ids[1], run_ids[2]):
        assert runs[run_id]["state"] == "FAILED"
        ended = datetime.fromisoformat(runs[run_id]["endedAt"].replace("Z", "+00:00"))
        assert ended == t0 + timedelta(seconds=35)
