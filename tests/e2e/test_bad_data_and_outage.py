"""Corrupted sources are stopped by the right gate and quarantined, the products of the last good run
stay as they were, and the failed assertions reach the lineage store. A whole DAG run with the lineage
service down loses no event and duplicates none once the spool is replayed."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest

from chaintrace_chain.quality import load_gate_report
from chaintrace_chain.zones import STAGES, Zones

if TYPE_CHECKING:
    from conftest import ChainEnv

pytestmark = pytest.mark.slow


def _drop_distance(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["distance"])


def _negative_distances(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[frame.index[:50], "distance"] = "-" + frame.loc[frame.index[:50], "distance"]
    return frame


def _duplicate_keys(frame: pd.DataFrame) -> pd.DataFrame:
    # Whole rows repeated: same flight, same day, same origin.
    return pd.concat([frame, frame.iloc[:200]], ignore_index=True)


def _wrong_types(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[frame.index[:30], "dep_delay"] = "late"
    return frame


def _header_only(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.iloc[:0]


# corruption -> (the gate that must refuse it, an expectation type that must be among the failures)
CORRUPTIONS: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], str, str]] = {
    "missing_column": (_drop_distance, "collect", "expect_table_columns_to_match_set"),
    "negative_distances": (_negative_distances, "collect", "expect_column_values_to_match_regex"),
    "duplicate_keys": (_duplicate_keys, "store", "expect_compound_columns_to_be_unique"),
    "wrong_types": (_wrong_types, "collect", "expect_column_values_to_match_regex"),
    "empty_file": (_header_only, "collect", "expect_table_row_count_to_be_between"),
}


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def published_after_good_run(chain_env: ChainEnv, good_run: dict[str, str]) -> dict[str, str]:
    gate = load_gate_report(Zones.at(chain_env.session.data_root), "flights", "e2e_good", "serve")
    assert gate is not None and gate.published
    return {path: _digest(path) for path in gate.published.values()}


@pytest.fixture(scope="session")
def bad_runs(chain_env: ChainEnv, published_after_good_run: dict[str, str]) -> dict[str, str]:
    """One flights run per corruption, in turn; the pristine file is put back afterwards."""
    # As text, exactly as shipped: writing it back must change nothing but the corruption.
    pristine = pd.read_csv(chain_env.pristine_flights, compression="zip", dtype=str, keep_default_na=False)
    states: dict[str, str] = {}
    try:
        for label, (corrupt, _gate, _expectation) in CORRUPTIONS.items():
            chain_env.write_flights(corrupt(pristine))
            states[label] = chain_env.run(f"bad_{label}", ["flights"])["flights"]
    finally:
        chain_env.flights_file.write_bytes(chain_env.pristine_flights.read_bytes())
    chain_env.session.lineage.wait_projected()
    return states


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupted_source_is_refused_by_the_right_gate_and_quarantined(
    chain_env: ChainEnv, bad_runs: dict[str, str], published_after_good_run: dict[str, str], corruption: str
) -> None:
    _corrupt, gate_stage, expectation = CORRUPTIONS[corruption]
    run_id = f"e2e_bad_{corruption}"
    assert bad_runs[corruption] == "failed"
    instances = chain_env.session.client.task_instances("flights", run_id)
    states = {ti["task_id"]: ti["state"] for ti in instances}
    assert states[f"{gate_stage}.gate"] == "failed"
    # Gates have a retry (for a gate lost with its worker), but a refused batch is never retried.
    assert {ti["task_id"]: ti["try_number"] for ti in instances}[f"{gate_stage}.gate"] == 1
    for stage in STAGES[STAGES.index(gate_stage) + 1 :]:
        assert states[f"{stage}.run"] == "upstream_failed", states
    zones = Zones.at(chain_env.session.data_root)
    gate = load_gate_report(zones, "flights", run_id, gate_stage)
    assert gate is not None and not gate.success
    failed = {a["expectation_type"] for a in gate.result["assertions"] if not a["success"]}
    assert expectation in failed, failed
    quarantine = zones.quarantine("flights", gate_stage, run_id)
    assert (quarantine / "reason.json").is_file()
    assert any(path.is_file() for path in quarantine.rglob("*") if path.name != "reason.json")
    # Nothing of the refused batch is left where the next stage would read it.
    assert not zones.partition(gate_stage, "flights", "flights", run_id).exists()
    # The products of the last good run are untouched.
    assert {path: _digest(path) for path in published_after_good_run} == published_after_good_run
    # The store holds the gate's FAIL event with the failed assertions on the validated input.
    fail_events = [
        e
        for e in chain_env.events_of_run(run_id)
        if e["job"]["name"] == f"flights.{gate_stage}.gate" and e["eventType"] == "FAIL"
    ]
    assert len(fail_events) == 1
    assertions = [
        assertion
        for dataset in fail_events[0]["inputs"]
        for assertion in dataset.get("inputFacets", {}).get("dataQualityAssertions", {}).get("assertions", [])
    ]
    assert any(not a["success"] for a in assertions)
    assert {a["name"] for a in assertions if not a["success"]} >= {expectation}


@pytest.fixture(scope="session")
def outage_run(chain_env: ChainEnv, bad_runs: dict[str, str]) -> dict[str, Any]:
    """A whole flights run with the lineage service down, then the service back with spool replay."""
    session = chain_env.session
    spool = session.lineage.spool_dir
    assert spool is not None
    session.lineage.stop()
    started = time.monotonic()
    states = chain_env.run("outage", ["flights"])
    elapsed = time.monotonic() - started
    spooled = sorted(p for p in spool.glob("*.json"))
    session.lineage.start()  # replays the spool on start
    deadline = time.monotonic() + 120
    while any(spool.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.5)
    session.lineage.wait_projected()
    tasks = session.client.task_instances("flights", "e2e_outage")
    # Reported, not asserted (timing never goes in a test assertion): what the outage cost per event,
    # against the good run of the same DAG with the service up.
    good = session.client.task_instances("flights", "e2e_good")
    outage_s = sum(ti.get("duration") or 0.0 for ti in tasks)
    good_s = sum(ti.get("duration") or 0.0 for ti in good)
    task_events = 2 * len(tasks)
    print(
        f"\noutage run: {elapsed:.1f} s wall; task time {outage_s:.1f} s with the service down vs "
        f"{good_s:.1f} s up; {len(spooled)} events spooled; "
        f"{(outage_s - good_s) / task_events:+.3f} s per task event"
    )
    return {"states": states, "spooled": len(spooled), "tasks": tasks, "left": list(spool.glob("*.json"))}


def test_with_the_lineage_service_down_every_task_still_succeeds(outage_run: dict[str, Any]) -> None:
    assert outage_run["states"] == {"flights": "success"}
    assert {ti["state"] for ti in outage_run["tasks"]} == {"success"}
    assert outage_run["spooled"] > 0


def test_after_replay_the_store_holds_every_event_of_the_outage_run_exactly_once(
    chain_env: ChainEnv, outage_run: dict[str, Any]
) -> None:
    assert outage_run["left"] == []
    events = chain_env.events_of_run("e2e_outage")
    assert len(events) == outage_run["spooled"]
    per_job = Counter((e["job"]["name"], e["eventType"]) for e in events)
    assert all(count == 1 for count in per_job.values()), per_job
    jobs = {job for job, _ in per_job}
    assert len(jobs) == 1 + 2 * len(STAGES)
    for job in jobs:
        assert (job, "START") in per_job and (job, "COMPLETE") in per_job, job
