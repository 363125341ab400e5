"""How the gate runs a GX suite on a (large) pandas frame quickly, with GX's own expectations.

Measured on flights x10 (3.37M rows, the flights process suite; bench/gate.py), three things cost
most and none of them is part of what an expectation checks:

* GX's pandas engine filters the *whole* batch frame for each metric of a column expectation. Each
  group of expectations therefore gets a batch with only the columns it names.
* In SUMMARY, every column expectation also computes an "unexpected index query": a Python list of
  the index of *every* unexpected row, filtered out of the frame once more, rendered as a string.
  Nothing reads it (the gate keeps counts and the first examples, whose indexes SUMMARY still
  lists), so it is switched off with GX's own ``return_unexpected_index_query`` option.
* ``expect_column_values_to_be_unique`` uses ``Series.duplicated(keep=False)``, a hash table: 1.8 to
  2.6 s on a near-unique int64 column of 3.4M rows. For numbers and times the same mask comes from a
  sort in 0.35 s; :func:`duplicated_mask` computes it that way, other dtypes keep pandas' hashing.

The column groups (and the table metrics) then run as tasks in two forked worker processes: the
frame is inherited copy-on-write, never pickled, and each GX result comes back by pickle (it
round-trips equal), so Data Docs and ``assertion_from_gx`` see the same objects as an inline run.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from chaintrace_chain.gate_facets import table_metrics
from chaintrace_chain.gate_suite import GateConfigError, SuiteFile

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

FORK_ROWS = 200_000  # from this many rows the work runs in forked workers; below, a fork costs more
WORKERS = 2
METRIC_CHUNKS = 4  # the table metrics as this many tasks (by column), so the two workers stay balanced
_SORTABLE = {"i", "u", "f", "M", "m"}  # numpy kinds whose duplicates a sort finds exactly


def frame_columns(kwargs: dict[str, Any], all_columns: list[str]) -> tuple[str, ...]:
    """The columns an expectation needs to see; every column when it filters rows or is table-level."""
    if kwargs.get("row_condition"):
        return tuple(all_columns)
    named: tuple[str, ...] = ()
    if isinstance(kwargs.get("column"), str):
        named = (kwargs["column"],)
    elif isinstance(kwargs.get("column_A"), str) and isinstance(kwargs.get("column_B"), str):
        named = (kwargs["column_A"], kwargs["column_B"])
    elif kwargs.get("column_list"):
        named = tuple(kwargs["column_list"])
    if not named:
        return tuple(all_columns)
    # A column the data lacks is a data failure, not a config error: GX reports the expectation as
    # failed (with the missing column in its exception), so only the columns present are passed on.
    return tuple(column for column in named if column in all_columns)


def duplicated_mask(column: pd.Series) -> pd.Series:
    """``column.duplicated(keep=False)``: True for every value that occurs more than once.

    By a stable sort for plain numeric and datetime numpy columns (GX hands over the non-null
    values), else by pandas' hashing.
    """
    import numpy as np
    import pandas as pd

    values = column.to_numpy() if isinstance(column.dtype, np.dtype) else None
    if values is None or values.dtype.kind not in _SORTABLE or column.hasnans:
        return column.duplicated(keep=False)
    if values.dtype.kind in "Mm":
        values = values.view("int64")
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    same_as_next = ordered[1:] == ordered[:-1]
    in_sorted = np.zeros(len(values), dtype=bool)
    in_sorted[1:] |= same_as_next
    in_sorted[:-1] |= same_as_next
    mask = np.empty(len(values), dtype=bool)
    mask[order] = in_sorted
    return pd.Series(mask, index=column.index, name=column.name)


_UNIQUE_INSTALLED = False


def install_fast_unique() -> None:
    """Register the sort-based pandas implementation of GX's ``column_values.unique`` condition.

    A subclass of GX's own metric provider with the same metric name: GX's registry keeps the last
    pandas provider registered, every other engine keeps GX's code.
    """
    global _UNIQUE_INSTALLED
    if _UNIQUE_INSTALLED:
        return
    from great_expectations.execution_engine import PandasExecutionEngine
    from great_expectations.expectations.metrics.column_map_metrics.column_values_unique import (
        ColumnValuesUnique,
    )
    from great_expectations.expectations.metrics.map_metric_provider import column_condition_partial

    registry_log = logging.getLogger("great_expectations.expectations.registry")
    level = registry_log.level
    registry_log.setLevel(logging.ERROR)  # GX warns that it overwrites the provider: that is the point
    try:

        class SortedColumnValuesUnique(ColumnValuesUnique):
            @column_condition_partial(engine=PandasExecutionEngine)
            def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
                return ~duplicated_mask(column)

    finally:
        registry_log.setLevel(level)
    _UNIQUE_INSTALLED = True


def result_format_for(result_format: str | dict[str, Any]) -> str | dict[str, Any]:
    """The GX result format: the level asked for, without the unexpected index query nobody reads."""
    if isinstance(result_format, dict):
        return result_format
    if result_format.upper() in ("BASIC", "SUMMARY", "COMPLETE"):
        return {"result_format": result_format.upper(), "return_unexpected_index_query": False}
    return result_format


def load_gx_suite(suite: SuiteFile) -> Any:
    from great_expectations.core import ExpectationSuite

    try:
        gx_suite = ExpectationSuite(**suite.raw)
    except Exception as exc:  # GX raises assorted types for unknown expectation types or bad kwargs
        raise GateConfigError(f"gate suite {suite.path} is not a valid GX ExpectationSuite: {exc}") from exc
    loaded = {e.expectation_type for e in gx_suite.expectations}
    dropped = [e["type"] for e in suite.expectations if e["type"] not in loaded]
    if dropped or len(gx_suite.expectations) != len(suite.expectations):  # GX skips unknown types silently
        raise GateConfigError(
            f"gate suite {suite.path} is not a valid GX ExpectationSuite: GX could not load "
            f"expectation(s) {dropped or 'of some entries'}"
        )
    return gx_suite


def column_groups(gx_suite: Any, frame: pd.DataFrame) -> list[tuple[tuple[str, ...], list[int]]]:
    """(columns, indexes of the expectations on exactly those columns), in suite order."""
    all_columns = [str(c) for c in frame.columns]
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, expectation in enumerate(gx_suite.expectations):
        groups.setdefault(frame_columns(expectation.configuration.kwargs, all_columns), []).append(index)
    return list(groups.items())


def batch_definition_for(context: Any, table: str) -> Any:
    """A whole-dataframe batch definition in ``context`` (one per context: each batch brings its frame)."""
    return (
        context.data_sources.add_pandas("chaintrace")
        .add_dataframe_asset(table)
        .add_batch_definition_whole_dataframe("whole")
    )


def validate_group(
    batch_definition: Any,
    suite_name: str,
    frame: pd.DataFrame,
    columns: tuple[str, ...],
    expectations: list[Any],
    parameters: dict[str, Any],
    result_format: str | dict[str, Any],
) -> tuple[list[Any], Any]:
    """One GX validation of ``expectations`` on ``frame[columns]``: (results in order, GX run meta)."""
    from great_expectations.core import ExpectationSuite

    install_fast_unique()
    part = frame if len(columns) == frame.shape[1] else frame[list(columns)]
    batch = batch_definition.get_batch(batch_parameters={"dataframe": part})
    validated = batch.validate(
        ExpectationSuite(name=suite_name, expectations=expectations),
        result_format=result_format_for(result_format),
        expectation_parameters=parameters,
    )
    return list(validated.results), validated.meta


# ------------------------------------------------------------------------------- forked workers
_FORKED: dict[str, Any] = {}  # what forked workers inherit: the frame and a context factory
_WORKER_BATCHES: dict[int, Any] = {}  # per worker process: a batch definition in its own GX context


def _group_in_worker(
    table: str, suite_name: str, columns: tuple[str, ...], expectations: list[dict[str, Any]],
    parameters: dict[str, Any], result_format: str | dict[str, Any],
) -> tuple[list[Any], Any, float]:
    started = time.perf_counter()
    pid = os.getpid()
    if pid not in _WORKER_BATCHES:
        _WORKER_BATCHES[pid] = batch_definition_for(_FORKED["make_context"](), table)
    results, meta = validate_group(
        _WORKER_BATCHES[pid], suite_name, _FORKED["frame"], columns, expectations, parameters,
        result_format,
    )
    return results, meta, time.perf_counter() - started


def _metrics_in_worker(columns: list[str]) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    return table_metrics(_FORKED["frame"][columns]), time.perf_counter() - started


def _heaviest_first(
    groups: list[tuple[tuple[str, ...], list[int]]], frame: pd.DataFrame
) -> list[tuple[tuple[str, ...], list[int]]]:
    """The groups in the order the workers should take them: largest estimated cost first (so the
    last task to finish is a short one). GX copies a column's non-null rows several times per
    expectation when it has nulls, and text columns copy slowest."""
    import pandas as pd

    def cost(group: tuple[tuple[str, ...], list[int]]) -> float:
        columns, indexes = group
        weight = 1.0
        for column in columns[:3]:  # table-level groups carry every column: their checks are cheap
            series = frame[column]
            weight *= 3.0 if series.hasnans else 1.0
            weight *= 2.0 if not pd.api.types.is_numeric_dtype(series.dtype) else 1.0
        return weight * len(indexes)

    return sorted(groups, key=cost, reverse=True)


def _forked_pool(frame: pd.DataFrame) -> ProcessPoolExecutor | None:
    if len(frame) < FORK_ROWS or "fork" not in multiprocessing.get_all_start_methods():
        return None
    if multiprocessing.current_process().daemon:
        # A daemonic process (a Celery prefork pool worker) may not have children: validate inline.
        return None
    try:
        return ProcessPoolExecutor(max_workers=WORKERS, mp_context=multiprocessing.get_context("fork"))
    except (OSError, RuntimeError):  # no fork here: do it inline
        log.warning("gate: could not start forked workers; validating inline", exc_info=True)
        return None


def validate_with_metrics(
    make_context: Callable[[], Any],
    suite: SuiteFile,
    gx_suite: Any,
    frame: pd.DataFrame,
    parameters: dict[str, Any],
    result_format: str | dict[str, Any],
) -> tuple[list[Any], Any, dict[str, Any], dict[str, float]]:
    """Validate every column group and compute the table metrics.

    Returns (GX results in suite order, GX run meta, table metrics, timings: validate = wall time
    until the last result, metrics = the metrics' own compute time).
    """
    started = time.perf_counter()
    install_fast_unique()  # before any fork, so the workers inherit it
    groups = column_groups(gx_suite, frame)
    results: list[Any] = [None] * len(gx_suite.expectations)
    meta: Any = None
    pool = _forked_pool(frame)
    if pool is not None:
        try:
            return _validate_forked(
                pool, make_context, suite, groups, frame, parameters, result_format, started
            )
        except BrokenProcessPool:  # a worker died (killed, out of memory): the verdict still matters
            log.warning("gate %s: a forked worker died; validating inline", suite.name, exc_info=True)
    batch_definition = batch_definition_for(make_context(), suite.table)
    for columns, indexes in groups:
        group_results, group_meta = validate_group(
            batch_definition, suite.name, frame, columns,
            [gx_suite.expectations[i] for i in indexes], parameters, result_format,
        )
        meta = meta or group_meta
        for index, result in zip(indexes, group_results, strict=True):
            results[index] = result
    validate_s = time.perf_counter() - started
    metrics_started = time.perf_counter()
    metrics = table_metrics(frame)
    metrics_s = time.perf_counter() - metrics_started
    return results, meta, metrics, {"validate": validate_s, "metrics": metrics_s}


def _validate_forked(
    pool: ProcessPoolExecutor,
    make_context: Callable[[], Any],
    suite: SuiteFile,
    groups: list[tuple[tuple[str, ...], list[int]]],
    frame: pd.DataFrame,
    parameters: dict[str, Any],
    result_format: str | dict[str, Any],
    started: float,
) -> tuple[list[Any], Any, dict[str, Any], dict[str, float]]:
    results: list[Any] = [None] * len(suite.expectations)
    meta: Any = None
    _FORKED.update(frame=frame, make_context=make_context)
    raw = suite.expectations
    ordered = _heaviest_first(groups, frame)
    names = list(frame.columns)
    chunks = [names[i::METRIC_CHUNKS] for i in range(METRIC_CHUNKS)]
    try:
        with pool:
            # The two workers take tasks as they free up. Order: the heaviest group, the metrics in
            # column chunks, then the other groups heaviest first, so the last tasks are short ones
            # and neither worker idles long while the other finishes.
            group_futures: list[tuple[list[int], Future[Any]]] = []

            def submit(columns: tuple[str, ...], indexes: list[int]) -> None:
                future = pool.submit(
                    _group_in_worker, suite.table, suite.name, columns, [raw[i] for i in indexes],
                    parameters, result_format,
                )
                group_futures.append((indexes, future))

            for columns, indexes in ordered[:1]:
                submit(columns, indexes)
            metric_futures = [pool.submit(_metrics_in_worker, chunk) for chunk in chunks if chunk]
            for columns, indexes in ordered[1:]:
                submit(columns, indexes)
            for indexes, future in group_futures:
                group_results, group_meta, _ = future.result()
                meta = meta or group_meta
                for index, result in zip(indexes, group_results, strict=True):
                    results[index] = result
            validate_s = time.perf_counter() - started
            by_column: dict[str, Any] = {}
            metrics_s = 0.0
            for future in metric_futures:
                part, seconds = future.result()
                by_column.update(part["columnMetrics"])
                metrics_s += seconds
    finally:
        _FORKED.clear()
    metrics = {"rowCount": len(frame), "columnMetrics": {str(c): by_column[str(c)] for c in names}}
    return results, meta, metrics, {"validate": validate_s, "metrics": metrics_s}
