"""Render bench/results/latest.json as a Markdown table; rewrite README.md's results block with it.

``python -m bench.readme_table`` replaces whatever lies between ``<!-- bench:start -->`` and
``<!-- bench:end -->`` in README.md. If README.md or the markers are missing, the table is printed
instead and no file is touched. ``--print`` only prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.common import LATEST, ROOT, target_line

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
ORDER = ("ingest", "graph", "rebuild", "gate", "lineage_overhead", "demo_chain", "reports", "ui", "alerts",
         "backfill")
TITLES = {
    "ingest": "A. Ingest",
    "graph": "B. Graph queries",
    "rebuild": "C. Rebuild",
    "gate": "D. Quality gate",
    "lineage_overhead": "F. Lineage overhead per task",
    "demo_chain": "G. The whole demo chain",
    "reports": "H. Quality reports",
    "ui": "I. Lineage UI in a browser",
    "alerts": "J. Alerts to webhooks",
    "backfill": "K. Backfill on Celery",
}


def load(path: Path = LATEST) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


def _sections(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    sections = data.get("sections") or {}
    names = [n for n in ORDER if n in sections] + [n for n in sections if n not in ORDER]
    return [(n, sections[n]) for n in names]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(data: dict[str, Any]) -> str:
    """The Markdown block: one row per target or reference figure, then the machine line."""
    if not data.get("sections"):
        return "_No benchmark results yet: run `python -m bench`._"
    rows = ["| | Figure | Measured | Target | Notes |", "|---|---|---:|---|---|"]
    for _name, section in _sections(data):
        for t in section.get("targets", []):
            status, label, figure, goal = target_line(t)
            mark = {"PASS": "PASS", "MISS": "**MISS**", "INFO": "ref"}.get(status, status)
            note = _cell(t.get("note", ""))
            rows.append(f"| {mark} | {_cell(label)} | {figure} | {goal or '-'} | {note} |")
    lines = ["\n".join(rows), ""]
    for name, section in _sections(data):
        run = section.get("run", {})
        commit = (run.get("git_commit") or "?")[:10] + ("+dirty" if run.get("git_dirty") else "")
        lines.append(f"- {TITLES.get(name, name)}: {run.get('date', '?')}, commit {commit}"
                     f"{', --quick' if section.get('quick') else ''}")
    m = data.get("machine") or {}
    lines.append(f"- Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('mem_gb', '?')} GB; "
                 f"Python {m.get('python', '?')}, SQLite {m.get('sqlite', '?')}, "
                 f"PostgreSQL {m.get('postgresql', '?')}")
    lines.append("- Reproduce: `python -m bench` (~40 min) or `python -m bench SECTION ... [--quick]` with "
                 f"sections {', '.join(ORDER)}; figures in `bench/results/latest.json`.")
    return "\n".join(lines)


def render_summary(path: Path = LATEST) -> str:
    """Plain-text summary table for the terminal."""
    data = load(path)
    if not data.get("sections"):
        return "no results yet"
    rows: list[tuple[str, str, str, str]] = []
    heads: list[str] = []
    for name, section in _sections(data):
        run = section.get("run", {})
        dirty = "+dirty" if run.get("git_dirty") else ""
        quick = ", --quick" if section.get("quick") else ""
        heads.append(f"  {name}: {run.get('date', '?')}, commit {(run.get('git_commit') or '?')[:10]}"
                     f"{dirty}{quick}")
        for t in section.get("targets", []):
            rows.append(target_line(t))
    if not rows:
        return "no targets in the results"
    w_label = max(len(r[1]) for r in rows)
    w_fig = max(len(r[2]) for r in rows)
    out = ["SUMMARY (bench/results/latest.json)", *heads, "-" * (w_label + w_fig + 30)]
    for status, label, figure, goal in rows:
        out.append(f"{status:<7} {label:<{w_label}}  {figure:>{w_fig}}  {goal}")
    return "\n".join(out)


def rewrite(readme: Path, block: str) -> bool:
    """Replace the marked block of ``readme``; False (untouched) when the file or a marker is missing."""
    if not readme.exists():
        return False
    text = readme.read_text()
    start, end = text.find(START), text.find(END)
    if start < 0 or end < 0 or end < start:
        return False
    new = text[: start + len(START)] + "\n" + block + "\n" + text[end:]
    if new != text:
        readme.write_text(new)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--results", type=Path, default=LATEST)
    parser.add_argument("--print", dest="only_print", action="store_true", help="print, do not edit")
    args = parser.parse_args(argv)
    block = markdown(load(args.results))
    if args.only_print:
        print(block)
        return 0
    if rewrite(args.readme, block):
        print(f"updated the results block of {args.readme}")
    else:
        print(f"{args.readme} has no {START} ... {END} block; the table is:\n")
        print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
