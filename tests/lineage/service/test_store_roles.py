"""One projector and one derivations process per store, however many workers serve it (store_roles)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from lineage.monitoring.store import alerts
from lineage.service.ingest import IngestService
from lineage.service.store_roles import StoreRole
from lineage.service.validation import EventValidator
from lineage.store.db import create_store_engine, migrate
from lineage.store.events import graph_hash, projected_upto, rebuild
from lineage.synthetic import airflow_style_events
from tests.conftest import build_context, wait_for

PRODUCER = "https://github.com/chaintrace/chaintrace/tests/store-roles"


def role_takers(text: str, role: str) -> list[int]:
    """The pids of the child processes that logged taking ``role``."""
    return [int(pid) for pid in re.findall(rf"^\S+ \S+ (\d+) \S+ INFO this process took the {role} role",
                                            text, re.MULTILINE)]


@pytest.fixture
def engines(store_url: str) -> Any:
    made: list[Engine] = []

    def make() -> Engine:
        engine = create_store_engine(store_url)
        made.append(engine)
        return engine

    migrate(make())
    yield make
    for engine in made:
        engine.dispose()


def test_one_process_holds_a_role_in_a_store_until_it_lets_go(engines: Callable[[], Engine]) -> None:
    first, second = StoreRole(engines(), "projector"), StoreRole(engines(), "projector", retry_s=0)
    try:
        assert first.try_take()
        assert first.try_take(), "asking again while holding it keeps it"
        assert not second.try_take(), "a second holder of the same role in the same store"
        other_role = StoreRole(engines(), "derivations")
        assert other_role.try_take(), "roles are independent"
        other_role.release()
        first.release()
        assert second.try_take(), "a released role goes to the next who asks"
    finally:
        first.release()
        second.release()


def test_a_follower_asks_the_store_again_only_after_its_retry_interval(engines: Callable[[], Engine]) -> None:
    leader, follower = StoreRole(engines(), "derivations"), StoreRole(engines(), "derivations", retry_s=60)
    try:
        assert leader.try_take()
        assert not follower.try_take()
        leader.release()
        assert not follower.try_take(), "asked again before retry_s passed"
        follower.retry_s = 0
        assert follower.try_take()
    finally:
        leader.release()
        follower.release()


def test_an_unknown_role_is_refused_by_name(sqlite_url: str) -> None:
    engine = create_store_engine(sqlite_url)
    with pytest.raises(ValueError, match="unknown store role 'indexer'"):
        StoreRole(engine, "indexer")
    engine.dispose()


def _worker(url: str) -> IngestService:
    """What one ``--workers`` process has for ingest: its own writer and projector child."""
    engine = create_store_engine(url)
    return IngestService(engine, EventValidator.from_spec_dir(), projector_process=True)


def test_two_workers_share_one_projector_and_a_survivor_takes_over(
    store_url: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHAINTRACE_LOG_LEVEL", "INFO")  # the children log who takes the role
    migrate(create_store_engine(store_url))
    first, second = _worker(store_url), _worker(store_url)
    events = airflow_style_events(2_000, seed=11)
    stored = 0

    def store(service: IngestService, count: int = 20) -> None:
        nonlocal stored
        results = service.ingest_sync(events[stored:stored + count])
        assert all(r.accepted for r in results)
        stored += count

    try:
        for turn in range(10):  # both workers store, in turns
            store(first if turn % 2 == 0 else second)
        assert first.writer.wait_projected(timeout=60) and second.writer.wait_projected(timeout=60)
        children = {first.writer._projector.process.pid: first,  # type: ignore[union-attr]
                    second.writer._projector.process.pid: second}  # type: ignore[union-attr]
        takers = role_takers(capfd.readouterr().err, "projector")
        assert len(takers) == 1 and takers[0] in children, f"one leader among {children}: {takers}"
        leader = children[takers[0]]
        survivor = second if leader is first else first

        leader.writer.stop()  # that worker stops: its projector lets the role go
        survivor_pid = survivor.writer._projector.process.pid  # type: ignore[union-attr]
        assert wait_for(lambda: role_takers(capfd.readouterr().err, "projector"),
                        every=lambda: store(survivor, 5)) == [survivor_pid]
        store(survivor)
        assert survivor.writer.wait_projected(timeout=60)
    finally:
        first.writer.stop()
        second.writer.stop()
    engine = create_store_engine(store_url)
    with engine.connect() as connection:
        assert projected_upto(connection) == stored
    projected = graph_hash(engine)
    rebuild(engine)
    assert graph_hash(engine) == projected, "the graph two projectors built equals a rebuild"
    engine.dispose()


def _failed_run(job: str) -> dict[str, Any]:
    return {
        "eventType": "FAIL", "eventTime": "2026-05-01T08:00:00Z", "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": str(uuid.uuid4())}, "job": {"namespace": "etl", "name": job},
        "inputs": [], "outputs": [],
    }


def test_two_workers_share_one_derivations_process_and_a_survivor_takes_over(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHAINTRACE_LOG_LEVEL", "INFO")
    workers = [build_context(store_url, tmp_path / name, derivations_in="process") for name in "ab"]
    for context in workers:
        context.start()

    def failed_alerts() -> int:
        with workers[0].engine.connect() as connection:
            return len(connection.execute(select(alerts.c.id).where(alerts.c.kind == "run_failed")).all())

    try:
        children = {c._derivations.process.pid: c for c in workers}  # type: ignore[union-attr]
        takers = wait_for(lambda: role_takers(capfd.readouterr().err, "derivations"))
        assert len(takers) == 1 and takers[0] in children, f"one leader among {children}: {takers}"
        leader = children[takers[0]]
        survivor = workers[1] if leader is workers[0] else workers[0]
        survivor.ingest.ingest_sync([_failed_run("etl.first")])  # stored by the follower's worker
        wait_for(lambda: failed_alerts() == 1)

        leader.close()
        assert wait_for(lambda: role_takers(capfd.readouterr().err, "derivations")) == [
            survivor._derivations.process.pid]  # type: ignore[union-attr]
        survivor.ingest.ingest_sync([_failed_run("etl.second")])
        wait_for(lambda: failed_alerts() == 2)
        time.sleep(0.5)
        assert failed_alerts() == 2, "no alert twice across the hand-over"
    finally:
        for context in workers:
            context.close()
