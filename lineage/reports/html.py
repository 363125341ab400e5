"""Self-contained HTML of the quality reports: inline CSS, inline SVG, no script, no external asset.

The HTML is rendered from the report JSON *after* redaction, so the page and the API answer show the
same thing. Every value goes through :func:`html.escape`; links (the GX Data Docs pages) are kept only
for http, https and file URLs, so a stored ``javascript:`` link cannot become a live one.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any
from urllib.parse import urlsplit

from lineage.reports.charts import line_chart

SAFE_SCHEMES = frozenset({"http", "https", "file"})
TEXT_LIMIT = 400  # characters of expected/observed shown in a cell (the JSON has them whole)

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1f2933}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d9e2ec}
h3{font-size:15px;margin:18px 0 6px}.muted{color:#627d98}.mono{font-family:ui-monospace,Menlo,monospace}
table{border-collapse:collapse;margin:6px 0 12px;width:100%}th,td{border:1px solid #d9e2ec;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f0f4f8}td.num{text-align:right}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.PASSED,.ok{background:#e3f9e5;color:#05400a}.FAILED,.bad{background:#ffe3e3;color:#610404}
.RUNNING,.warn{background:#fff3c4;color:#5c4813}.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{border:1px solid #d9e2ec;border-radius:6px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:20px}.withheld{background:#fff3c4;padding:8px 12px;border-radius:6px}
pre{margin:0;white-space:pre-wrap;word-break:break-word;font-size:12px}
svg.chart{display:block;margin:8px 0;background:#fbfcfd;border:1px solid #e4e7eb}
svg .ct{font-size:13px;font-weight:600;fill:#243b53}svg .ax{font-size:11px;fill:#627d98}
svg .axis{stroke:#bcccdc}svg .line{fill:none;stroke:#2680c2;stroke-width:1.5}
svg .dot{fill:#2680c2}svg .dot.fail{fill:#cf1124}svg .failband{fill:#ffe3e3}
"""


def _e(value: Any) -> str:
    return "" if value is None else escape(str(value), quote=True)


def _badge(status: str) -> str:
    return f'<span class="badge {_e(status)}">{_e(status)}</span>'


def _ok(success: bool) -> str:
    return '<span class="badge ok">pass</span>' if success else '<span class="badge bad">fail</span>'


def _json(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    if len(text) > TEXT_LIMIT:
        text = text[: TEXT_LIMIT - 1] + "…"
    return f"<pre>{_e(text)}</pre>"


def _link(url: Any, text: str) -> str:
    if not isinstance(url, str) or urlsplit(url).scheme.lower() not in SAFE_SCHEMES:
        return ""
    return f'<a href="{_e(url)}">{_e(text)}</a>'


def _num(value: Any) -> str:
    return f'<td class="num">{_e(f"{value:,}" if isinstance(value, int) else value)}</td>'


def _page(title: str, body: list[str]) -> str:
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
            + "".join(body) + "</body></html>\n")


def _withheld(report: dict[str, Any]) -> list[str]:
    withheld = report.get("withheld")
    return [f'<p class="withheld">{_e(withheld.get("message"))}</p>'] if isinstance(withheld, dict) else []


def _cards(items: list[tuple[str, Any]]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card"><b>{_e(v)}</b><span class="muted">{_e(k)}</span></div>' for k, v in items
    ) + "</div>"


def _gate(gate: dict[str, Any]) -> list[str]:
    out = [f'<h3 id="{_e(gate["job"])}">{_e(gate["job"])} {_badge(gate["status"])}</h3>',
           f'<p class="muted">run <span class="mono">{_e(gate["runId"])}</span> · task state '
           f'{_e(gate["state"])}</p>']
    for item in gate["quarantined"]:
        moved = item.get("from") or {}
        out.append(f'<p><span class="badge bad">quarantined</span> <span class="mono">{_e(moved.get("name"))}'
                   f'</span> moved to <span class="mono">{_e(item["name"])}</span></p>')
    for item in gate["refused"]:
        out.append(f'<p><span class="badge bad">refused</span> product {_e(item["product"])}: '
                   f'{_e(item["reason"])}</p>')
    for d in gate["datasets"]:
        docs = _link(d.get("docsPage"), "Data Docs")
        out.append(f'<p><b class="mono">{_e(d["namespace"])}:{_e(d["name"])}</b> {_ok(d["success"])} · suite '
                   f'{_e(d.get("suite"))} · rows {_e(d.get("rowCount"))} · {d["passed"]}/{d["evaluated"]} '
                   f"expectations passed {('· ' + docs) if docs else ''}</p>")
        if d.get("withheld"):
            out.append('<p class="withheld">Above your clearance: expectations and metrics withheld.</p>')
            continue
        rows = "".join(
            f'<tr><td class="mono">{_e(x["name"])}</td><td>{_e(x.get("column"))}</td><td>{_ok(x["success"])}'
            f'</td><td>{_e(x.get("severity"))}</td><td>{_json(x.get("expected"))}</td>'
            f'<td>{_json(x.get("observed"))}</td></tr>'
            for x in sorted(d["expectations"], key=lambda x: (x["success"], x["name"] or ""))
        )
        out.append("<table><tr><th>expectation</th><th>column</th><th>result</th><th>severity</th>"
                   f"<th>expected</th><th>observed</th></tr>{rows}</table>")
    return out


def render_run(report: dict[str, Any]) -> str:
    """The HTML page of a run report (from :func:`lineage.reports.runs.run_report`, redacted)."""
    job, summary = report["job"], report["summary"]
    name = job.get("name") or "run"
    body = [f"<h1>Quality report: {_e(name)}</h1>",
            f'<p class="muted">DAG run <span class="mono">{_e(report["runId"])}</span> · state '
            f'{_e(job.get("state"))} · {_e(job.get("startedAt"))} → {_e(job.get("endedAt"))}</p>',
            *_withheld(report),
            _cards([("gates", summary["gates"]), ("gates passed", summary["gatesPassed"]),
                    ("gates failed", summary["gatesFailed"]), ("expectations", summary["expectations"]),
                    ("expectations failed", summary["expectationsFailed"]),
                    ("quarantined batches", summary["quarantined"])]),
            "<h2>Row counts per stage</h2><table><tr><th>stage</th><th>job</th><th>state</th>"
            "<th>rows in</th><th>rows out</th><th>counts</th></tr>"]
    for stage in report["stages"]:
        counts = ", ".join(f"{k}: {v:,}" if isinstance(v, int) else f"{k}: {v}"
                           for k, v in sorted(stage["counts"].items()))
        body.append(f'<tr><td>{_e(stage["stage"])}</td><td class="mono">{_e(stage["job"])}</td>'
                    f'<td>{_e(stage["state"])}</td>{_num(stage.get("rowsIn"))}{_num(stage.get("rowsOut"))}'
                    f"<td>{_e(counts)}</td></tr>")
    body.append("</table><h2>Gates</h2>")
    body.append("<table><tr><th>gate</th><th>stage</th><th>result</th><th>expectations failed</th></tr>")
    for gate in report["gates"]:
        failed = sum(not x["success"] for d in gate["datasets"] for x in d["expectations"])
        body.append(f'<tr><td class="mono"><a href="#{_e(gate["job"])}">{_e(gate["job"])}</a></td>'
                    f'<td>{_e(gate["stage"])}</td><td>{_badge(gate["status"])}</td>{_num(failed)}</tr>')
    body.append("</table>")
    for gate in report["gates"]:
        body.extend(_gate(gate))
    return _page(f"Quality report {name} {report['runId']}", body)


def render_dataset(report: dict[str, Any]) -> str:
    """The HTML page of a dataset's quality history, with inline SVG charts."""
    points, summary = report["points"], report["summary"]
    failed = [not p["success"] for p in points]
    labels = [f'{p["time"]} {p["job"]}' for p in points]
    title = f'{report["namespace"]}:{report["name"]}'
    rate = summary["passRate"]
    body = [f"<h1>Quality history: {_e(title)}</h1>", *_withheld(report),
            _cards([("runs", summary["runs"]), ("runs failed", summary["runsFailed"]),
                    ("gate pass rate", f"{100 * rate:.1f}%"),
                    ("expectation pass rate", "" if summary["expectationPassRate"] is None
                     else f'{100 * summary["expectationPassRate"]:.1f}%')]),
            "<h2>Charts</h2>",
            line_chart("expectations passed (fraction)", [p["passRate"] for p in points], failed, labels),
            line_chart("rows", [p["rowCount"] for p in points], failed, labels)]
    for series in report["series"]:
        body.append(line_chart(f'{series["metric"]} of {series["column"]}', series["values"], failed, labels))
    body.append("<h2>Runs</h2><table><tr><th>time</th><th>gate</th><th>result</th><th>passed</th>"
                "<th>rows</th><th>failed expectations</th><th>Data Docs</th></tr>")
    for p in reversed(points):
        names = ", ".join(f'{x["name"]}({x["column"]})' if x.get("column") else str(x["name"])
                          for x in p["failedExpectations"])
        passed = f'{p["passed"]}/{p["evaluated"]}'
        body.append(f'<tr><td>{_e(p["time"])}</td><td class="mono">{_e(p["job"])}</td><td>{_ok(p["success"])}'
                    f'</td>{_num(passed)}{_num(p["rowCount"])}<td>{_e(names)}</td>'
                    f'<td>{_link(p.get("docsPage"), "open")}</td></tr>')
    body.append("</table>")
    return _page(f"Quality history {title}", body)
