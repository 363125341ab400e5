"""Run one stage of a dataset's chain for one run: read the inputs, call the transform, write the
outputs atomically, and keep a report of what was read, written and counted.

The report (``<root>/reports/<dataset>/run=<run>/<stage>.json``) is what the gate, the lineage facets
and the demo summary read, so the operators stay thin and everything here runs without Airflow.
"""

from __future__ import annotations

import importlib
import io
import json
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from chaintrace_chain.governance import (
    ColumnLevel,
    GovernanceError,
    assign_levels,
    assigned_levels,
    chain_policy,
    column_level,
    governance_record,
    is_k_safe,
    level_assigned_decisions,
    measure_disclosure,
    violation_decisions,
)
from chaintrace_chain.spec import DatasetSpec
from chaintrace_chain.stage_output import FieldSource, StageOutput
from chaintrace_chain.storage import ZonePath
from chaintrace_chain.zones import STAGES, Zones, atomic_write_bytes

if TYPE_CHECKING:
    import pandas as pd

    from lineage.governance.policy import GovernancePolicy

PREVIOUS_STAGE = dict(zip(STAGES[1:], STAGES[:-1], strict=True))


class StageError(RuntimeError):
    """A stage that cannot run (its input is missing); the message names what is missing."""


@dataclass
class TableReport:
    """One table (or landed file) a stage wrote or read: a lineage dataset."""

    table: str
    folder: str  # the zone folder that is the lineage dataset: absolute path (local root) or URL
    file: str  # the run's partition file (or the landed file), spelled the same way
    rows: int | None = None
    columns: list[dict[str, str]] = field(default_factory=list)  # [{"name", "type"}]
    levels: dict[str, str] = field(default_factory=dict)  # effective, by THE RULE (see governance)
    lineage: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)  # collect: the CollectRecord
    declared: dict[str, str] = field(default_factory=dict)  # the levels the transform declared
    disclosure: dict[str, Any] | None = None  # serve: the disclosureControl facet, measured as written


@dataclass
class StageReport:
    dataset: str
    stage: str
    run: str
    inputs: list[TableReport]
    outputs: list[TableReport]
    counts: dict[str, int]
    started_at: float
    finished_at: float
    governance: dict[str, Any] | None = None  # {"policyVersion", "k", "decisions"}: the run facet's content

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, default=str).encode()

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StageReport:
        return cls(
            dataset=raw["dataset"],
            stage=raw["stage"],
            run=raw["run"],
            inputs=[TableReport(**item) for item in raw["inputs"]],
            outputs=[TableReport(**item) for item in raw["outputs"]],
            counts=dict(raw["counts"]),
            started_at=raw["started_at"],
            finished_at=raw["finished_at"],
            governance=raw.get("governance"),
        )

    def output(self, table: str) -> TableReport:
        for item in self.outputs:
            if item.table == table:
                return item
        raise KeyError(f"{self.dataset}/{self.stage}: no output table {table!r}")


def load_report(zones: Zones, dataset: str, run: str, stage: str) -> StageReport:
    path = zones.report(dataset, run, stage)
    try:
        return StageReport.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise StageError(f"{dataset}: stage {stage!r} has no report for run {run} ({path})") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise StageError(f"{dataset}: report {path} is unreadable: {exc}") from exc


def transforms_module(spec: DatasetSpec) -> Any:
    try:
        return importlib.import_module(spec.transforms)
    except ImportError as exc:
        raise StageError(
            f"{spec.name}: transforms module {spec.transforms!r} cannot be imported: {exc}"
        ) from exc


def resolve_levels(
    output: StageOutput,
    input_levels: dict[str, dict[str, str]],
    *,
    k_safe: frozenset[str] | set[str] = frozenset(),
    where: str = "stage",
) -> dict[str, dict[str, ColumnLevel]]:
    """Each output column's level by THE RULE (see :mod:`chaintrace_chain.governance`).

    ``k_safe``: output tables measured as k-safe aggregates; every edge into them lowers, so the level
    the transform declares applies. Elsewhere only masking edges lower.
    """
    result: dict[str, dict[str, ColumnLevel]] = {}
    for table, frame in output.tables.items():
        declared = output.levels.get(table, {})
        lineage = output.lineage.get(table, {})
        try:
            result[table] = {
                str(column): column_level(
                    lineage.get(str(column), []),
                    declared.get(str(column)),
                    input_levels,
                    into_k_safe=table in k_safe,
                    where=f"{where}: {table}.{column}",
                )
                for column in frame.columns
            }
        except GovernanceError as exc:
            raise StageError(str(exc)) from exc
    return result


def propagate_levels(
    output: StageOutput,
    input_levels: dict[str, dict[str, str]],
    *,
    k_safe: frozenset[str] | set[str] = frozenset(),
) -> dict[str, dict[str, str]]:
    """Each output column's effective level (see :func:`resolve_levels`)."""
    resolved = resolve_levels(output, input_levels, k_safe=k_safe)
    return {table: {name: item.level for name, item in cols.items()} for table, cols in resolved.items()}


def read_table(path: ZonePath) -> pd.DataFrame:
    """A Parquet file of the zones, read through their filesystem."""
    import pandas as pd

    with path.open("rb") as handle:
        return pd.read_parquet(handle)


def _write_parquet(frame: pd.DataFrame, path: ZonePath) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())


def _collect(
    spec: DatasetSpec, zones: Zones, run: str, policy: GovernancePolicy
) -> tuple[list[TableReport], list[TableReport], dict[str, int]]:
    from chaintrace_chain.collect import collect_all

    records = collect_all(spec, zones=zones, run_key=run)
    # The columns each source file carries, as the tables parsed from it declare them (as fetched: text),
    # with the levels the policy (or the spec's overrides) gives them.
    source_levels: dict[str, dict[str, str]] = {}
    assigned = assign_levels(spec, policy)
    for table_name, table in spec.tables.items():
        source_levels.setdefault(table.source, {}).update(
            {c.name: assigned[table_name][c.name].level for c in table.columns}
        )
    inputs: list[TableReport] = []
    outputs: list[TableReport] = []
    counts: dict[str, int] = {}
    for key, record in records.items():
        info = record.to_dict()
        uri = str(info["source_uri"])
        levels = source_levels.get(key, {})
        columns = [{"name": name, "type": "str"} for name in levels]
        inputs.append(TableReport(table=key, folder=uri, file=uri, columns=columns, source=info))
        outputs.append(
            TableReport(
                table=key,
                folder=str(zones.partition("collect", spec.name, key, run).parent),
                file=str(info["landed_path"]),
                columns=columns,
                levels=levels,
                lineage={
                    name: [asdict(FieldSource(key, name, "DIRECT", "IDENTITY", description="fetched as is"))]
                    for name in levels
                },
                source=info,
            )
        )
        counts[f"{key}.bytes"] = int(info["bytes"])
    return inputs, outputs, counts


def stage_inputs(spec: DatasetSpec, stage: str, zones: Zones, run: str) -> StageReport:
    """The report of the stage this one reads from (it must have run, and its gate passed)."""
    return load_report(zones, spec.name, run, PREVIOUS_STAGE[stage])


def run_stage(spec: DatasetSpec, stage: str, *, zones: Zones, run: str) -> StageReport:
    """Run ``stage`` of ``spec`` for ``run`` and write its report. Levels follow the chain's policy
    (``CHAINTRACE_POLICY_FILE``, default the one in git)."""
    if stage not in STAGES:
        raise StageError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    policy = chain_policy()
    started = time.time()
    governance: dict[str, Any] | None = None
    if stage == "collect":
        inputs, outputs, counts = _collect(spec, zones, run, policy)
    else:
        inputs, outputs, counts, decisions = _transform(spec, stage, zones, run, policy)
        governance = governance_record(policy, decisions) if decisions else None
    report = StageReport(spec.name, stage, run, inputs, outputs, counts, started, time.time(), governance)
    atomic_write_bytes(zones.report(spec.name, run, stage), report.to_json())
    return report


def _transform(
    spec: DatasetSpec, stage: str, zones: Zones, run: str, policy: GovernancePolicy
) -> tuple[list[TableReport], list[TableReport], dict[str, int], list[dict[str, Any]]]:
    from chaintrace_chain.facets import dataset_id

    previous = stage_inputs(spec, stage, zones, run)
    module = transforms_module(spec)
    function = getattr(module, stage, None)
    if not callable(function):
        raise StageError(f"{spec.name}: {spec.transforms} has no {stage}() function")
    if stage == "store":
        landed = {item.table: zones.locate(item.file) for item in previous.outputs}
        output: StageOutput = function(spec, landed)
        # The store stage declares what the policy (with the spec's overrides) assigns, whatever the
        # transform says: classification starts here.
        output.levels = {**output.levels, **assigned_levels(spec, policy)}
    else:
        frames = {item.table: read_table(zones.locate(item.file)) for item in previous.outputs}
        output = function(spec, frames)
    parts: dict[str, ZonePath] = {}
    disclosures: dict[str, dict[str, Any]] = {}
    for table, frame in output.tables.items():
        missing = [column for column in frame.columns if column not in output.lineage.get(table, {})]
        if missing:
            raise StageError(f"{spec.name}/{stage}: table {table} has no column lineage for {missing}")
        parts[table] = zones.part_file(stage, spec.name, table, run)
        _write_parquet(frame, parts[table])
        product = next((p for p in spec.products if p.name == table), None) if stage == "serve" else None
        if product is not None:
            # Measured on what was written: the file the serve gate checks and publishes.
            suppressed = int(output.counts.get(f"{table}.suppressed_cells", 0))
            measured = measure_disclosure(read_table(parts[table]), product, policy, suppressed=suppressed)
            if measured is not None:
                disclosures[table] = measured
    k_safe = {table for table, measured in disclosures.items() if is_k_safe(measured, policy)}
    input_levels = {item.table: item.levels for item in previous.outputs}
    levels = resolve_levels(output, input_levels, k_safe=k_safe, where=f"{spec.name}/{stage}")
    outputs: list[TableReport] = []
    for table, frame in output.tables.items():
        part = parts[table]
        outputs.append(
            TableReport(
                table=table,
                folder=str(part.parent.parent),
                file=str(part),
                rows=len(frame),
                columns=[{"name": str(c), "type": str(t)} for c, t in frame.dtypes.items()],
                levels={column: item.level for column, item in levels[table].items()},
                lineage={
                    column: [asdict(source) for source in sources]
                    for column, sources in output.lineage[table].items()
                    if column in frame.columns
                },
                declared={column: item.declared for column, item in levels[table].items() if item.declared},
                disclosure=disclosures.get(table),
            )
        )
    datasets = {item.table: dataset_id(item.folder) for item in outputs}
    decisions = violation_decisions(levels, datasets)
    if stage == "store":
        decisions = [*level_assigned_decisions(assign_levels(spec, policy), datasets), *decisions]
    return list(previous.outputs), outputs, dict(output.counts), decisions


def field_sources(report: TableReport, column: str) -> list[FieldSource]:
    return [FieldSource(**item) for item in report.lineage.get(column, [])]
