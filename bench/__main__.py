"""``python -m bench [SECTION ...] [--quick]``: run the benchmarks (all sections, or the ones named: ingest,
graph, rebuild, gate, lineage_overhead, demo_chain, reports, ui, alerts, backfill) and print a summary."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from bench.common import log

SECTIONS = ("ingest", "graph", "rebuild", "gate", "lineage_overhead", "demo_chain", "reports", "ui", "alerts",
            "backfill")


def _runner(name: str) -> Callable[..., dict[str, Any]]:
    # Imported on demand: each benchmark pulls in its own heavy dependencies (Airflow, GX, pandas).
    module = importlib.import_module(f"bench.{name}")
    run: Callable[..., dict[str, Any]] = module.run
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("sections", nargs="*", metavar="{" + ",".join(SECTIONS) + "}",
                        help="which benchmarks to run (default: all, in this order)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run, ~6 minutes)")
    args = parser.parse_args(argv)
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    chosen = args.sections or list(SECTIONS)
    started = time.perf_counter()
    failed: list[str] = []
    for name in chosen:
        log(f"=== bench {name}{' (quick)' if args.quick else ''}")
        t0 = time.perf_counter()
        try:
            _runner(name)(quick=args.quick)
        except Exception:
            traceback.print_exc()
            failed.append(name)
        log(f"=== bench {name} took {time.perf_counter() - t0:.0f} s")
    from bench.readme_table import render_summary

    print()
    print(render_summary())
    if failed:
        print(f"NOTE: {', '.join(failed)} failed in this run; the rows of those sections (if any) are "
              "from an earlier run (see its date above).")
    log(f"total {time.perf_counter() - started:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
