"""The chain's delivery with API keys on (the service's default): the transport and spool replay send the
producer key, a missing or wrong key never loses an event (it waits in the spool), and no key is logged
or written to the spool. The transport config is the one the demo gives Airflow."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from sqlalchemy import text

from chaintrace_chain.spool import Spool
from chaintrace_chain.transport import EmitOutcome, SpoolingHttpConfig, SpoolingHttpTransport
from chaintrace_cli.airflow_stack import AirflowStack
from lineage.context import LineageContext
from lineage.settings import LineageSettings
from lineage.store.keys import create_key


def event(job: str) -> RunEvent:
    return RunEvent(
        eventType=RunState.START, eventTime=datetime.now(UTC).isoformat(),
        run=Run(runId=str(uuid.uuid4())), job=Job(namespace="auth-tests", name=job),
        producer="https://github.com/chaintrace/chaintrace/tests",
    )


class Keyed:
    """A real service with keys on, and a key of each role a producer might hold."""

    def __init__(self, url: str, context: LineageContext) -> None:
        self.url = url
        self.context = context
        self.producer = create_key(context.engine, name="airflow", role="producer")[1]
        self.reader = create_key(context.engine, name="someone", role="reader", clearance="L4")[1]

    def count(self) -> int:
        with self.context.engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM events")).scalar_one())


@pytest.fixture
def keyed(sqlite_url: str, tmp_path: Path, start_lineage_service: Callable[..., str]) -> Keyed:
    context = LineageContext.build(LineageSettings(db_url=sqlite_url, data_root=tmp_path / "service"))
    return Keyed(start_lineage_service(context, auth="keys"), context)


def airflow_transport(
    url: str, spool_dir: Path, api_key: str | None, **changes: Any
) -> SpoolingHttpTransport:
    """The transport exactly as the demo configures Airflow's OpenLineage provider, with ``changes``."""
    stack = AirflowStack(home=spool_dir.parent / "airflow", data_root=spool_dir.parent, api_port=0,
                         lineage_url=url, spool_dir=spool_dir, api_key=api_key)
    params = {**stack.transport(), **changes}
    return SpoolingHttpTransport(SpoolingHttpConfig.from_dict(params))


def test_the_demo_transport_config_carries_the_producer_key_and_http_delivery_sends_it(
    keyed: Keyed, tmp_path: Path
) -> None:
    config = AirflowStack(home=tmp_path / "a", data_root=tmp_path, api_port=0, lineage_url=keyed.url,
                          spool_dir=tmp_path / "spool", api_key=keyed.producer).transport()
    assert config["auth"] == {"type": "api_key", "apiKey": keyed.producer}
    assert "auth" not in AirflowStack(home=tmp_path / "a", data_root=tmp_path, api_port=0,
                                      lineage_url=keyed.url, spool_dir=tmp_path / "spool").transport()

    target = airflow_transport(keyed.url, tmp_path / "spool", keyed.producer, delivery="http")
    assert "api_key" not in repr(target.config) and keyed.producer not in repr(target.config)
    before = keyed.count()
    assert target.emit(event("with-key")) is EmitOutcome.SENT
    assert keyed.count() == before + 1
    assert Spool(tmp_path / "spool").events() == []


@pytest.mark.parametrize("who", ["no key", "reader key", "made-up key"])
def test_a_missing_or_wrong_key_spools_the_event_and_logs_no_key(
    who: str, keyed: Keyed, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = {"no key": None, "reader key": keyed.reader, "made-up key": "ct_000000000000_nope"}[who]
    target = airflow_transport(keyed.url, tmp_path / "spool", key, delivery="http")
    caplog.set_level(logging.DEBUG)
    before = keyed.count()
    assert target.emit(event(who.replace(" ", "-"))) is EmitOutcome.SPOOLED
    assert keyed.count() == before
    spool = Spool(tmp_path / "spool")
    assert len(spool.events()) == 1 and spool.rejected() == []
    expected_status = "401"  # a reader key is no producer key: writes without one get 401
    assert f"answered {expected_status}" in caplog.text
    if key is not None:
        assert key not in caplog.text
        body = spool.read(spool.events()[0])
        assert body is not None and key.encode() not in body


def test_spool_first_delivery_needs_no_key_and_writes_none(keyed: Keyed, tmp_path: Path) -> None:
    target = airflow_transport(keyed.url, tmp_path / "spool", keyed.producer)
    assert target.config.delivery == "spool"
    before = keyed.count()
    assert target.emit(event("spool-first")) is EmitOutcome.SPOOLED
    assert keyed.count() == before, "spool-first delivery must not touch the network"
    spool = Spool(tmp_path / "spool")
    (path,) = spool.events()
    assert keyed.producer.encode() not in path.read_bytes()


def test_replay_delivers_with_the_producer_key_and_keeps_everything_without_it(
    keyed: Keyed, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    target = airflow_transport(keyed.url, spool.directory, None)
    for i in range(3):
        target.emit(event(f"replayed-{i}"))
    before = keyed.count()

    refused = spool.replay(keyed.url)
    assert refused.delivered == 0 and refused.left == 3 and refused.error
    assert keyed.count() == before
    wrong_role = spool.replay(keyed.url, api_key=keyed.reader)
    assert wrong_role.delivered == 0 and wrong_role.left == 3
    assert keyed.reader not in (wrong_role.error or "")

    done = spool.replay(keyed.url, api_key=keyed.producer)
    assert done.delivered == 3 and done.left == 0 and done.error is None
    assert keyed.count() == before + 3
