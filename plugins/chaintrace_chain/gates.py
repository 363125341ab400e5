"""The Great Expectations quality gate that follows every stage of the chain.

``run_gate`` validates one stage output table against the suite ``<dataset>__<stage>`` kept as JSON in
git (``expectations/gx/expectations/``), fills its suite parameters (row-count bounds from the previous
passed run, reference sets from the other tables given), and returns a JSON-serialisable
:class:`GateResult`. ``gate_facets`` (from :mod:`chaintrace_chain.gate_facets`) turns that result into the
OpenLineage ``dataQualityAssertions`` / ``dataQualityMetrics`` facets; ``quarantine`` moves a refused
batch aside with a ``reason.json``.

Concurrency: the git-tracked GX folder is only read. Every run builds an ephemeral GX context whose
validation-results store and Data Docs site live in the zones' local quality folder (``<root>/quality/``
for a local data root; GX writes local files, so any other root keeps a local one, see
``zones.default_quality_dir`` and ``CHAINTRACE_QUALITY_DIR``): each run
writes its own result file, and the shared site (index, static assets) is rebuilt under an exclusive
file lock, so gates running at the same time in different Airflow task processes do not interleave.

Speed: see :mod:`chaintrace_chain.gate_validate` (each group of expectations sees only its columns,
GX's frame fingerprint and the unused unexpected-index query are off, duplicates are found by sorting,
and on large frames the groups and the table metrics run in two forked workers); bench/gate.py
measures it on the flights process gate at 3.37M rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaintrace_chain.gate_facets import (
    EMPTY_TABLE,
    AssertionResult,
    GateResult,
    assertion_from_gx,
    facets_as_json,
    gate_facets,
)
from chaintrace_chain.gate_suite import (
    GateConfigError,
    check_tables,
    load_suite_file,
    read_baseline,
    reference_values,
    row_bounds,
    suite_path,
    write_baseline,
)
from chaintrace_chain.gate_validate import frame_columns, load_gx_suite, validate_with_metrics
from chaintrace_chain.storage import ZonePath
from chaintrace_chain.zones import Zones, atomic_write_bytes, move_to_quarantine

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "EMPTY_TABLE",
    "AssertionResult",
    "GateConfigError",
    "GateResult",
    "facets_as_json",
    "gate_facets",
    "quarantine",
    "run_gate",
]

log = logging.getLogger(__name__)

SITE_NAME = "chaintrace_quality"
INDEX_LIMIT = 200  # validation results listed on the Data Docs index page
_frame_columns = frame_columns  # the name the profiling scripts know


def _context(zones: Zones) -> Any:
    """An ephemeral GX context: suites in memory, results and Data Docs under the data root."""
    import great_expectations as gx
    import great_expectations.execution_engine.pandas_execution_engine as pandas_engine
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    # GX md5-hashes every cell of a frame under 1 GB to fingerprint the batch: ~2 s on 3M rows, for a
    # batch marker the gate never reads. Frames over the threshold already skip it.
    pandas_engine.HASH_THRESHOLD = 0
    quality = zones.quality
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    config.stores[config.validation_results_store_name] = {
        "class_name": "ValidationResultsStore",
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(quality / "validations"),
        },
    }
    config.data_docs_sites = {
        SITE_NAME: {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(zones.docs_dir()),
            },
            "site_index_builder": {
                "class_name": "DefaultSiteIndexBuilder",
                "validation_results_limit": INDEX_LIMIT,
            },
        }
    }
    return gx.get_context(project_config=config, mode="ephemeral")


@contextlib.contextmanager
def _docs_lock(zones: Zones) -> Iterator[None]:
    """Serialise Data Docs site writes across processes (index and static files are shared)."""
    path = zones.quality / ".docs.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _build_docs(
    context: Any, zones: Zones, gx_suite: Any, results: list[Any], meta: Any, run_key: str
) -> str | None:
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    run_id = RunIdentifier(run_name=run_key, run_time=datetime.now(UTC))
    failed = sum(not r.success for r in results)
    suite_result = ExpectationSuiteValidationResult(
        success=failed == 0,
        results=results,
        suite_name=gx_suite.name,
        statistics={
            "evaluated_expectations": len(results),
            "successful_expectations": len(results) - failed,
            "unsuccessful_expectations": failed,
            "success_percent": 100.0 * (len(results) - failed) / len(results) if results else None,
        },
        meta={**(meta or {}), "run_id": run_id, "validation_time": run_id.run_time},
    )
    identifier = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=gx_suite.name),
        run_id=run_id,
        batch_identifier=f"{gx_suite.name}-{run_key}",
    )
    context.suites.add(gx_suite)
    context.validation_results_store.set(identifier, suite_result)  # its own file: no lock needed
    with _docs_lock(zones):
        context.build_data_docs(site_names=[SITE_NAME], resource_identifiers=[identifier])
    urls = context.get_docs_sites_urls(resource_identifier=identifier, site_name=SITE_NAME)
    return urls[0].get("site_url") if urls else None


# ---------------------------------------------------------------------------------------- public API
def run_gate(
    dataset: str,
    stage: str,
    tables: dict[str, pd.DataFrame],
    *,
    run_key: str,
    zones: Zones,
    gx_root: Path | None = None,
    build_docs: bool = True,
    result_format: str = "SUMMARY",
) -> GateResult:
    """Validate ``tables[<suite's table>]`` against the suite ``<dataset>__<stage>``.

    ``tables``: the stage's output tables, plus any table a ``reference_sets`` entry names. Raises
    :class:`GateConfigError` when the gate cannot run (missing or corrupt suite, table, column). On
    success the row count becomes the new baseline; a failed gate leaves the baseline where it was.
    """
    if gx_root is None:
        from chaintrace_chain.settings import ChainSettings

        gx_root = ChainSettings().gx_root
    suite = load_suite_file(suite_path(Path(gx_root), dataset, stage), dataset=dataset, stage=stage)
    frame = check_tables(suite, tables)
    previous = read_baseline(zones, dataset, stage)
    min_rows, max_rows = row_bounds(suite, previous)
    references = reference_values(suite, tables)
    parameters: dict[str, Any] = {"min_rows": min_rows, "max_rows": max_rows, **references}

    # Large frames: the column groups and the metrics (null and distinct counts, min/max) run as tasks
    # in two forked workers that share the frame copy-on-write (see gate_validate).
    gx_suite = load_gx_suite(suite)
    results, meta, metrics, timings = validate_with_metrics(
        lambda: _context(zones), suite, gx_suite, frame, parameters, result_format
    )
    assertions = [assertion_from_gx(r) for r in results]
    if len(frame) == 0:
        assertions.append(
            AssertionResult(
                expectation_type=EMPTY_TABLE,
                success=False,
                column=None,
                columns=[],
                severity="critical",
                expected={"min_rows": 1},
                observed_value=0,
            )
        )
    success = all(a.success or a.severity != "critical" for a in assertions)
    passed = sum(a.success for a in assertions)
    docs_page = None
    if build_docs:
        started = time.perf_counter()
        try:
            docs_page = _build_docs(_context(zones), zones, gx_suite, results, meta, run_key)
        except Exception:  # the verdict stands without its HTML page; say so loudly
            log.exception("gate %s: building Data Docs under %s failed", suite.name, zones.docs_dir())
        timings["docs"] = time.perf_counter() - started
    result = GateResult(
        dataset=dataset,
        stage=stage,
        suite=suite.name,
        table=suite.table,
        run_key=run_key,
        success=success,
        row_count=len(frame),
        statistics={
            "evaluated": len(assertions),
            "successful": passed,
            "unsuccessful": len(assertions) - passed,
            "success_percent": round(100.0 * passed / len(assertions), 2),
        },
        assertions=assertions,
        metrics=metrics,
        parameters={
            "min_rows": min_rows,
            "max_rows": max_rows,
            "previous_rows": previous,
            "reference_set_sizes": {k: len(v) for k, v in references.items()},
        },
        validated_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        docs_page=docs_page,
        timings={k: round(v, 4) for k, v in timings.items()},
    )
    if success:
        write_baseline(zones, dataset, stage, rows=len(frame), run_key=run_key, suite=suite.name)
    return result


def quarantine(result: GateResult, partitions: list[ZonePath], *, zones: Zones) -> ZonePath:
    """Move a refused batch's partitions to ``zones.quarantine(dataset, stage, run)`` with a reason.json.

    ``reason.json`` names the suite, the failed expectations (with counts and examples) and where each
    partition came from and went. Returns the quarantine folder.
    """
    if result.success:
        raise ValueError(f"gate {result.suite} run {result.run_key} passed: nothing to quarantine")
    target = zones.quarantine(result.dataset, result.stage, result.run_key)
    existing = [p for p in partitions if p.exists()]
    moved = move_to_quarantine(existing, target)
    reason = {
        "suite": result.suite,
        "dataset": result.dataset,
        "stage": result.stage,
        "table": result.table,
        "run": result.run_key,
        "row_count": result.row_count,
        "validated_at": result.validated_at,
        "failed_expectations": [asdict(a) for a in result.failed],
        "partitions": [{"from": str(src), "to": str(dst)} for src, dst in zip(existing, moved, strict=True)],
        "missing_partitions": [str(p) for p in partitions if p not in existing],
        "docs_page": result.docs_page,
    }
    atomic_write_bytes(target / "reason.json", json.dumps(reason, indent=2, sort_keys=True).encode() + b"\n")
    return target
