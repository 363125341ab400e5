"""Reports for a caller below a dataset's level, through :mod:`lineage.governance.redaction`.

The generic walk of :class:`~lineage.governance.redaction.Redactor` replaces withheld dataset names by
their placeholders wherever they appear and says what was withheld. It knows the OpenLineage facet shapes,
not the report's own lists, so this module first empties what the report shows *about* a withheld
dataset (expectations, metrics, row counts, the Data Docs link) and drops the expectations and metrics
of hidden columns, recording each in the same redactor, whose answer then carries the ``withheld``
object and header like every other read.

An expectation on no single column (a compound uniqueness check, a table check) of a dataset with hidden
columns keeps its name and verdict but loses expected and observed: those can quote values of the hidden
columns (GX's unexpected examples).
"""

from __future__ import annotations

from typing import Any

from lineage.governance.redaction import ClearanceView, Key, Redactor


def _validated(d: dict[str, Any], view: ClearanceView, redactor: Redactor) -> None:
    key: Key = (d["namespace"], d["name"])
    if key in view.datasets:
        redactor.withheld.datasets.add(key)
        d.update(expectations=[], columnMetrics={}, rowCount=None, docsPage=None, suite=None, withheld=True)
        return
    hidden = view.fields.get(key)
    if not hidden:
        return
    kept = []
    for item in d["expectations"]:
        column = item.get("column")
        if isinstance(column, str) and column in hidden:
            redactor.withheld.fields.add((*key, column))
        elif column is None:
            kept.append({**item, "expected": None, "observed": None, "withheld": True})
        else:
            kept.append(item)
    d["expectations"] = kept
    d["columnMetrics"] = _columns(d["columnMetrics"], key, hidden, redactor)


def _columns(metrics: dict[str, Any], key: Key, hidden: frozenset[str], redactor: Redactor) -> dict[str, Any]:
    for column in metrics.keys() & hidden:
        redactor.withheld.fields.add((*key, column))
    return {c: m for c, m in metrics.items() if c not in hidden}


def redact_run_report(body: dict[str, Any], view: ClearanceView) -> tuple[dict[str, Any], dict[str, str]]:
    """The run report as a caller of ``view.clearance`` may see it, and the ``withheld`` header."""
    redactor = Redactor(view)
    for gate in body["gates"]:
        for dataset in gate["datasets"]:
            _validated(dataset, view, redactor)
    out = redactor.answer(body)
    return out, redactor.withheld.headers()


def redact_dataset_report(body: dict[str, Any], view: ClearanceView) -> tuple[dict[str, Any], dict[str, str]]:
    """The dataset history as a caller of ``view.clearance`` may see it, and the ``withheld`` header."""
    redactor = Redactor(view)
    key: Key = (body["namespace"], body["name"])
    hidden = view.fields.get(key, frozenset())
    if key in view.datasets:  # the verdicts stay (pass/fail per run), what was measured does not
        redactor.withheld.datasets.add(key)
        body["series"] = []
        for point in body["points"]:
            point.update(rowCount=None, docsPage=None, failedExpectations=[], columnMetrics={})
    elif hidden:
        body["series"] = [s for s in body["series"] if s["column"] not in hidden]
        for point in body["points"]:
            point["columnMetrics"] = _columns(point["columnMetrics"], key, hidden, redactor)
            point["failedExpectations"] = [e for e in point["failedExpectations"]
                                           if e["column"] not in hidden]
    out = redactor.answer(body)
    return out, redactor.withheld.headers()
