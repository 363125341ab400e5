"""Big batch requests answered by child processes (settings.batch_processes): the same answers and the
same store as the service's own path, reads that see the events at once, nothing lost when a child dies."""

from __future__ import annotations

import asyncio
import copy
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from lineage.api.app import create_app
from lineage.context import LineageContext
from lineage.service.batch_processes import MAX_BACKLOG_EVENTS, MIN_BODY_BYTES
from lineage.store.events import counts, graph_hash
from lineage.synthetic import airflow_style_events
from tests.conftest import auth_headers, build_context

BATCH = "/api/v1/lineage/batch"


def batch_body(events: list[dict[str, Any]]) -> bytes:
    body = orjson.dumps(events)
    assert len(body) >= MIN_BODY_BYTES, "the test batch must be big enough to go to a child"
    return body


def with_bad_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``events`` with one core-schema violation and one facet warning mixed in."""
    events = copy.deepcopy(events)
    events[3]["eventTime"] = "yesterday"
    events[5]["run"]["facets"]["errorMessage"] = {
        "_producer": "https://example.com/dbt", "_schemaURL":
        "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
        "message": "boom", "programmingLanguage": "sql", "stackTrace": None}
    return events


@pytest.fixture
def served(store_url: str, tmp_path: Path) -> Iterator[tuple[LineageContext, TestClient]]:
    context = build_context(store_url, tmp_path, batch_processes=2)
    context.start()
    try:
        with TestClient(create_app(context), headers=auth_headers(context)) as client:
            yield context, client
    finally:
        context.close()


def test_children_answer_big_batches_as_the_service_would(
    served: tuple[LineageContext, TestClient], tmp_path: Path, sqlite_url: str
) -> None:
    context, client = served
    pool = context.batch_processes
    assert pool is not None and len(pool.children) == 2
    events = with_bad_events(airflow_style_events(400, seed=21))
    first = client.post(BATCH, content=batch_body(events))
    again = client.post(BATCH, content=batch_body(events))
    assert pool.answered == 2, "both requests must have been answered by a child"
    assert first.status_code == again.status_code == 207
    body = first.json()
    assert (body["created"], body["duplicate"], body["rejected"]) == (399, 0, 1)
    assert body["results"][3]["status"] == "rejected"
    assert body["results"][3]["errors"][0]["path"] == "eventTime"
    assert body["results"][5]["facetWarnings"][0]["facet"] == "errorMessage"
    assert (again.json()["created"], again.json()["duplicate"]) == (0, 399)

    # The service's own path, on a second store, gives the same answer and the same graph.
    reference = build_context(f"sqlite:///{tmp_path / 'reference.db'}", tmp_path)
    reference.start()
    try:
        with TestClient(create_app(reference), headers=auth_headers(reference)) as own:
            expected = own.post(BATCH, content=batch_body(events))
        assert reference.batch_processes is None
        assert expected.json() == body
        reference.ingest.writer.wait_projected(60)
        context.ingest.writer.wait_projected(60)
        assert graph_hash(reference.engine) == graph_hash(context.engine)
    finally:
        reference.close()


def test_a_read_right_after_the_batch_sees_its_events(served: tuple[LineageContext, TestClient]) -> None:
    context, client = served
    events = airflow_style_events(300, seed=22)
    assert client.post(BATCH, content=batch_body(events)).status_code == 200
    job = events[-1]["job"]
    read = client.get(f"/api/v1/namespaces/{job['namespace']}/jobs/{job['name']}")
    assert read.status_code == 200, "the read must wait for the projection of what was acknowledged"
    assert context.ingest.writer.acknowledged >= 300
    assert counts(context.engine)["events"] == 300


def test_small_batches_and_single_events_stay_in_the_service(
    served: tuple[LineageContext, TestClient]
) -> None:
    context, client = served
    events = airflow_style_events(3, seed=23)
    assert client.post(BATCH, json=events).json()["created"] == 3
    assert context.batch_processes is not None and context.batch_processes.answered == 0


def test_a_child_that_dies_loses_nothing(served: tuple[LineageContext, TestClient]) -> None:
    context, client = served
    pool = context.batch_processes
    assert pool is not None
    for child in pool.children:
        os.kill(child.process.pid, signal.SIGKILL)
        child.process.wait(10)
    events = airflow_style_events(300, seed=24)
    answer = client.post(BATCH, content=batch_body(events))
    assert answer.status_code == 200 and answer.json()["created"] == 300, "the service answers it"
    deadline = time.monotonic() + 10
    while pool.alive and time.monotonic() < deadline:  # the watch threads see the deaths too
        time.sleep(0.05)
    assert not pool.alive and pool.answered == 0
    again = client.post(BATCH, content=batch_body(events))  # no child left: straight to the service
    assert again.json()["duplicate"] == 300
    context.ingest.writer.wait_projected(60)
    assert counts(context.engine)["events"] == 300


def test_without_a_projector_process_there_are_no_batch_processes(tmp_path: Path) -> None:
    context = build_context("sqlite://", tmp_path, batch_processes=2)  # in memory: no second process
    context.start()
    try:
        assert context.batch_processes is None
    finally:
        context.close()


def test_a_batch_waits_while_the_graph_is_far_behind(
    served: tuple[LineageContext, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    context, client = served
    pool = context.batch_processes
    assert pool is not None
    checks = iter([MAX_BACKLOG_EVENTS + 1] * 5)
    monkeypatch.setattr(pool, "backlog", lambda: next(checks, 0))  # far behind for five looks
    answer = client.post(BATCH, content=batch_body(airflow_style_events(300, seed=25)))
    assert answer.status_code == 200 and answer.json()["created"] == 300
    assert pool.held_back == 1 and next(checks, "used up") == "used up", "it waited, then stored"


def test_a_request_cancelled_on_the_way_keeps_its_child_and_its_events(
    store_url: str, tmp_path: Path
) -> None:
    context = build_context(store_url, tmp_path, batch_processes=1)
    context.start()
    try:
        pool = context.batch_processes
        assert pool is not None
        body = batch_body(airflow_style_events(2_000, seed=28))  # a few hundred ms of the child's work

        async def cancel_then_post_again() -> tuple[int, bytes] | None:
            request = asyncio.create_task(pool.answer(body))
            await asyncio.sleep(0.05)  # the child has the body by now
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request
            # the one child comes back once it is done, and answers the next request
            return await asyncio.wait_for(pool.answer(body), 60)

        answered = asyncio.run(cancel_then_post_again())
        assert answered is not None and answered[0] == 200
        assert orjson.loads(answered[1])["duplicate"] == 2_000, "the cancelled request's events were stored"
        assert context.ingest.writer.acknowledged >= 2_000, "and counted acknowledged when the child finished"
    finally:
        context.close()


def test_a_child_refuses_a_batch_over_the_event_limit(sqlite_url: str, tmp_path: Path) -> None:
    context = build_context(sqlite_url, tmp_path, batch_processes=1, max_batch_events=100)
    context.start()
    try:
        with TestClient(create_app(context), headers=auth_headers(context)) as client:
            answer = client.post(BATCH, content=batch_body(airflow_style_events(300, seed=29)))
            assert context.batch_processes is not None and context.batch_processes.answered == 1
        assert answer.status_code == 413
        assert answer.json()["message"] == "batch holds 300 events; the limit is 100"
        assert counts(context.engine)["events"] == 0
    finally:
        context.close()
