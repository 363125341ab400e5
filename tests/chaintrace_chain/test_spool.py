"""The spool: atomic, ordered, safe with concurrent writer processes; replay to a real service (SQLite
and PostgreSQL stores) delivers every event exactly once, however often or however far it runs."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.serde import Serde
from sqlalchemy import text
from typer.testing import CliRunner

from chaintrace_chain.spool import Spool
from lineage.cli import app as lineage_cli
from lineage.context import LineageContext
from lineage.spool_format import (
    DeliveryError,
    HttpDelivery,
    SpooledEvent,
    Verdict,
    list_events,
    replay,
)


def event_body(job: str, namespace: str = "spool-tests") -> bytes:
    ev = RunEvent(
        eventType=RunState.COMPLETE, eventTime=datetime.now(UTC).isoformat(),
        run=Run(runId=str(uuid.uuid4())), job=Job(namespace=namespace, name=job),
        producer="https://github.com/chaintrace/chaintrace/tests",
    )
    return Serde.to_json(ev).encode()


def count_events(context: LineageContext) -> int:
    with context.engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM events")).scalar_one())


@pytest.fixture
def service_url(context: LineageContext, start_lineage_service: Callable[[LineageContext], str]) -> str:
    """The real app around the ``context`` fixture (SQLite and PostgreSQL), under uvicorn in a thread."""
    return start_lineage_service(context)


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


def fill(spool: Spool, n: int) -> list[bytes]:
    bodies = [event_body(f"job-{i}") for i in range(n)]
    for body in bodies:
        spool.write(body)
    return bodies


# ------------------------------------------------------------------------------------------- format
def test_write_is_ordered_unique_exact_and_leaves_no_temporary_file(spool: Spool) -> None:
    bodies = fill(spool, 50)
    files = spool.events()
    assert [spool.read(f) for f in files] == bodies, "oldest first, bytes exactly as given"
    assert len({f.name for f in files}) == 50
    assert all(f.name.split("-")[1] == str(os.getpid()) for f in files)
    assert sorted(p.name for p in spool.directory.iterdir()) == sorted(f.name for f in files)


def test_listing_ignores_temporary_lock_and_rejected_files(spool: Spool) -> None:
    fill(spool, 2)
    (spool.directory / ".tmp-half-written").write_bytes(b'{"eventTy')
    (spool.directory / "rejected").mkdir()
    (spool.directory / "rejected" / "0-1-x.json").write_bytes(b"{}")
    assert len(spool.events()) == 2
    assert spool.read(spool.directory / "gone.json") is None


def test_concurrent_writer_processes_lose_and_corrupt_nothing(spool: Spool) -> None:
    workers, total = 6, 900
    bodies = [json.dumps({"seq": i, "pad": "x" * 2000}).encode() for i in range(total)]
    # spawn: fresh interpreters, each importing chaintrace_chain like an Airflow task process does.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        written = pool.starmap(Spool.write, [(spool, body) for body in bodies], chunksize=1)
    assert len({p.name.split("-")[1] for p in written}) > 1, "the writes came from several processes"
    seen = set()
    for path in spool.events():
        record = json.loads(path.read_bytes())  # a half-written file would fail here
        assert len(record["pad"]) == 2000
        seen.add(record["seq"])
    assert seen == set(range(total))
    assert len(spool.events()) == total


# ------------------------------------------------------------------------------------------- replay
def test_replay_delivers_every_event_exactly_once(
    spool: Spool, service_url: str, context: LineageContext
) -> None:
    fill(spool, 120)
    summary = spool.replay(service_url, batch=25)
    assert (summary.delivered, summary.already_present, summary.rejected, summary.left) == (120, 0, 0, 0)
    assert summary.error is None
    assert count_events(context) == 120
    assert spool.events() == []


def test_replaying_the_same_events_again_stores_nothing_twice(
    spool: Spool, service_url: str, context: LineageContext, tmp_path: Path
) -> None:
    fill(spool, 40)
    backup = tmp_path / "backup"
    shutil.copytree(spool.directory, backup)
    assert spool.replay(service_url).delivered == 40
    assert spool.replay(service_url).delivered == 0  # nothing left to send
    # The same files again (as if deletes had been lost): all answered as present.
    for path in backup.glob("*.json"):
        shutil.copy(path, spool.directory / path.name)
    again = spool.replay(service_url)
    assert (again.delivered, again.already_present, again.left) == (0, 40, 0)
    assert count_events(context) == 40


def test_interrupted_replay_then_full_replay_is_exactly_once(
    spool: Spool, service_url: str, context: LineageContext
) -> None:
    fill(spool, 90)
    # First cut: a replay that stops after 30 events.
    assert spool.replay(service_url, batch=10, limit=30).delivered == 30
    assert len(spool.events()) == 60
    # Second cut, the dangerous one: the service acknowledges a batch, then the replayer dies before
    # deleting its files.
    with HttpDelivery(service_url) as http:
        calls = 0

        def dies_after_ack(events: Sequence[SpooledEvent]) -> Sequence[Verdict]:
            nonlocal calls
            calls += 1
            verdicts = http(events)
            if calls == 2:
                raise DeliveryError("replayer killed after the acknowledgement")
            return verdicts

        cut = replay(spool.directory, dies_after_ack, batch=10)
    assert cut.delivered == 10 and cut.error is not None
    assert len(spool.events()) == 50  # the acknowledged-but-not-deleted batch is still there
    assert count_events(context) == 50

    full = spool.replay(service_url, batch=7)
    assert (full.delivered, full.already_present, full.left) == (40, 10, 0)
    assert count_events(context) == 90


def test_invalid_and_unreadable_events_move_to_rejected(
    spool: Spool, service_url: str, context: LineageContext
) -> None:
    fill(spool, 5)
    bad = spool.write(event_body("bad", namespace=""))
    (spool.directory / "00000000000000000001-1-garbled.json").write_bytes(b'{"eventType": ')
    summary = spool.replay(service_url)
    assert (summary.delivered, summary.rejected, summary.left) == (5, 2, 0)
    rejected = {p.name for p in spool.rejected()}
    assert rejected == {bad.name, "00000000000000000001-1-garbled.json"}
    reason = json.loads((spool.directory / "rejected" / bad.name.replace(".json", ".error.json")).read_text())
    assert "job.namespace" in reason["message"]
    assert count_events(context) == 5
    assert spool.replay(service_url).rejected == 0, "rejected events are never retried"


def test_batches_over_the_body_limit_are_split_and_an_oversized_event_rejected(
    spool: Spool, service_url: str, context: LineageContext
) -> None:
    context.settings.max_body_bytes = 4_000  # read per request by the ingest path
    fill(spool, 30)  # ~400 bytes each: a batch of 30 is over the limit
    huge = spool.write(event_body("x" * 5_000))
    summary = spool.replay(service_url, batch=30)
    assert (summary.delivered, summary.rejected, summary.left) == (30, 1, 0)
    assert [p.name for p in spool.rejected()] == [huge.name]
    assert count_events(context) == 30


def test_replay_to_a_down_service_keeps_every_file(spool: Spool, tmp_path: Path) -> None:
    fill(spool, 3)
    summary = spool.replay("http://127.0.0.1:9")  # discard port: nothing listens
    assert summary.error is not None and "cannot reach" in summary.error
    assert (summary.delivered, summary.left) == (0, 3)
    assert len(list_events(spool.directory)) == 3


def test_replay_spool_command_prints_the_summary(
    spool: Spool, service_url: str, context: LineageContext
) -> None:
    fill(spool, 12)
    spool.write(event_body("bad", namespace=""))
    result = CliRunner().invoke(
        lineage_cli, ["replay-spool", "--spool", str(spool.directory), "--url", service_url, "--batch", "5"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line.split("│")[2].strip()
             for line in result.output.splitlines() if line.count("│") == 3}
    assert lines["delivered"] == "12"
    assert lines["already present"] == "0"
    assert lines["rejected (moved to rejected/)"] == "1"
    assert lines["left in the spool"] == "0"
    assert count_events(context) == 12


def test_replay_spool_command_fails_when_the_service_is_down(spool: Spool) -> None:
    fill(spool, 2)
    result = CliRunner().invoke(
        lineage_cli, ["replay-spool", "--spool", str(spool.directory), "--url", "http://127.0.0.1:9"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 1
    assert "stopped early" in result.output and "cannot reach" in result.output
    assert len(spool.events()) == 2


def test_replay_spool_command_needs_a_spool(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CHAINTRACE_SPOOL_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the repository
    result = CliRunner().invoke(lineage_cli, ["replay-spool"], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "--spool" in result.output
