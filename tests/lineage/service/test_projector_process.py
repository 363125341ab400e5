"""Projection in a second process: same graph as a replay, nothing lost, and the shortcuts it relies on."""

from __future__ import annotations

import copy
import os
import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from lineage.service import store_limits as limits
from lineage.service.ingest import IngestService
from lineage.service.validation import EventValidator
from lineage.store.db import create_store_engine, migrate
from lineage.store.events import counts, graph_hash, projected_upto, rebuild
from lineage.store.projector import _VERSION_NS, dataset_version_id
from lineage.synthetic import airflow_style_events, five_stage_chain_events


def _service(tmp_path: Path, *, projector_process: bool) -> IngestService:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'store.db'}")
    migrate(engine)
    return IngestService(engine, EventValidator.from_spec_dir(), projector_process=projector_process)


def test_the_projector_process_builds_the_graph_a_rebuild_reproduces(tmp_path: Path) -> None:
    service = _service(tmp_path, projector_process=True)
    writer = service.writer
    events = airflow_style_events(300, seed=3)
    try:
        futures = [writer.submit(service.prepare_all(events[i:i + 7])[0]) for i in range(0, len(events), 7)]
        assert all(all(f.result(timeout=60)) for f in futures)
        assert writer._projector is not None, "the store is a file: the child process must be in use"
        assert writer.wait_projected(timeout=60)
        assert writer.projected == writer.acknowledged == len(events)
    finally:
        writer.stop()
    with service.engine.connect() as connection:
        assert projected_upto(connection) == len(events)
    projected = graph_hash(service.engine)
    assert counts(service.engine)["runs"] > 0
    rebuild(service.engine)
    assert graph_hash(service.engine) == projected


def test_the_child_and_the_writer_thread_give_the_same_graph(tmp_path: Path) -> None:
    hashes = []
    for projector_process in (True, False):
        folder = tmp_path / str(projector_process)
        folder.mkdir()
        service = _service(folder, projector_process=projector_process)
        try:
            service.ingest_sync(five_stage_chain_events())
            service.ingest_sync(airflow_style_events(120, seed=9))
        finally:
            service.writer.stop()
        hashes.append(graph_hash(service.engine))
    assert hashes[0] == hashes[1]


def test_a_lost_child_hands_projection_back_to_the_writer_thread(tmp_path: Path) -> None:
    service = _service(tmp_path, projector_process=True)
    writer = service.writer
    try:
        service.ingest_sync(airflow_style_events(20, seed=1))
        projector = writer._projector
        assert projector is not None
        projector.process.kill()
        projector.process.wait(10)
        service.ingest_sync(airflow_style_events(20, seed=2))  # returns once projected, by the thread
        assert writer.projected == writer.acknowledged == 40
    finally:
        writer.stop()


def test_dataset_version_ids_are_uuid5() -> None:
    rng = random.Random(4)
    for _ in range(500):
        namespace = "".join(rng.choices("abcé/:_字 ", k=rng.randint(0, 20)))
        name = "".join(rng.choices("xyz.-", k=rng.randint(1, 30)))
        run = str(uuid.UUID(int=rng.getrandbits(128)))
        expected = str(uuid.uuid5(_VERSION_NS, f"{namespace}\x00{name}\x00{run}"))
        assert dataset_version_id(namespace, name, run) == expected


_BAD_VALUES: list[Any] = ["", "a\x00b", "x" * 70, "y" * 300, "z" * 700, "é" * 200, 5, None, ["l"]]


def _mutate(node: Any, rng: random.Random) -> None:
    if isinstance(node, dict) and node:
        key = rng.choice(list(node))
        if isinstance(node[key], dict | list) and rng.random() < 0.7:
            _mutate(node[key], rng)
        else:
            node[key] = copy.deepcopy(rng.choice(_BAD_VALUES))
        if rng.random() < 0.05:
            node["x" * 300 if rng.random() < 0.5 else ""] = "v"
    elif isinstance(node, list) and node:
        index = rng.randrange(len(node))
        if isinstance(node[index], dict | list):
            _mutate(node[index], rng)
        else:
            node[index] = copy.deepcopy(rng.choice(_BAD_VALUES))


def test_the_store_limits_shortcut_agrees_with_the_full_check(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(5)
    originals = airflow_style_events(60, seed=1) + list(five_stage_chain_events())
    full_check_found = 0
    for _ in range(3_000):
        event = copy.deepcopy(rng.choice(originals))
        for _ in range(rng.randint(1, 4)):
            _mutate(event, rng)
        fits = limits._event_fits(event)
        with monkeypatch.context() as patched:
            patched.setattr(limits, "_event_fits", lambda _event, _serialized=None: False)
            errors = limits.store_limits(event)
        if b"\\u0000" in orjson.dumps(event):
            # NUL anywhere sends the event to the full check, which judges only the stored fields
            assert not fits
        else:
            assert fits == (not errors), errors
        full_check_found += bool(errors)
    assert full_check_found > 50  # the mutations did reach the checked fields


def _nudge_pipe() -> tuple[Any, int]:
    from lineage.service.projector_process import _Nudges

    read_fd, write_fd = os.pipe()
    return _Nudges(read_fd), write_fd


def test_outside_a_burst_the_gathering_ends_when_the_nudges_pause() -> None:
    from lineage.service.projector_process import BURST_RATE, _wait_for_batch

    nudges, write_fd = _nudge_pipe()
    os.write(write_fd, b"10\n")
    assert nudges.next() == 10
    assert nudges.rate() < BURST_RATE
    later = threading.Timer(0.2, os.write, (write_fd, b"20\n"))  # far past IDLE_S
    later.start()
    try:
        assert _wait_for_batch(nudges, 10) == (10, False, False), "a pause of 0.2 s ends the gathering"
    finally:
        later.join()
    assert nudges.next() == 20


def test_during_a_burst_the_child_gathers_through_short_pauses_and_a_reader_ends_it() -> None:
    from lineage.service.projector_process import BURST_IDLE_S, BURST_RATE, _wait_for_batch

    nudges, write_fd = _nudge_pipe()
    os.write(write_fd, b"1000\n2000\n3000\n")  # thousands of events within moments: a burst
    assert [nudges.next() for _ in range(3)] == [1000, 2000, 3000]
    assert nudges.rate() > BURST_RATE

    def feed() -> None:
        for upto in (4000, 5000, 6000):
            time.sleep(BURST_IDLE_S / 4)  # pauses of batch requests, shorter than BURST_IDLE_S
            os.write(write_fd, f"{upto}\n".encode())

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        assert _wait_for_batch(nudges, 3000) == (6000, False, False), "the burst's nudges gathered together"
    finally:
        feeder.join()
    os.write(write_fd, b"7000\n-7000\n")  # a reader waits: the gathering ends at once
    assert _wait_for_batch(nudges, nudges.next()) == (7000, False, True), "urgent"
    os.close(write_fd)
    assert _wait_for_batch(nudges, 7000) == (7000, True, False), "end of the pipe: stop"
