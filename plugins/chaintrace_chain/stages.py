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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaintrace_chain.spec import LEVELS, DatasetSpec
from chaintrace_chain.stage_output import FieldSource, StageOutput
from chaintrace_chain.zones import STAGES, Zones, atomic_write_bytes

if TYPE_CHECKING:
    import pandas as pd

PREVIOUS_STAGE = dict(zip(STAGES[1:], STAGES[:-1], strict=True))


class StageError(RuntimeError):
    """A stage that cannot run (its input is missing); the message names what is missing."""


@dataclass
class TableReport:
    """One table (or landed file) a stage wrote or read: a lineage dataset."""

    table: str
    folder: str  # the lineage dataset name: absolute path of the zone folder
    file: str  # the run's partition file (or the landed file)
    rows: int | None = None
    columns: list[dict[str, str]] = field(default_factory=list)  # [{"name", "type"}]
    levels: dict[str, str] = field(default_factory=dict)
    lineage: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)  # collect: the CollectRecord


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


def _highest(levels: list[str]) -> str:
    return max(levels, key=LEVELS.index) if levels else "L1"


def propagate_levels(
    output: StageOutput, input_levels: dict[str, dict[str, str]]
) -> dict[str, dict[str, str]]:
    """Each output column's level: the one the transform declares (masking, aggregation), else the
    highest level of the input columns it derives from directly."""
    result: dict[str, dict[str, str]] = {}
    for table, frame in output.tables.items():
        declared = output.levels.get(table, {})
        lineage = output.lineage.get(table, {})
        table_levels: dict[str, str] = {}
        for column in frame.columns:
            if column in declared:
                table_levels[column] = declared[column]
                continue
            sources = [
                input_levels.get(source.table, {}).get(source.column, "L1")
                for source in lineage.get(column, [])
                if source.type == "DIRECT"
            ]
            table_levels[column] = _highest(sources)
        result[table] = table_levels
    return result


def read_table(path: str | Path) -> pd.DataFrame:
    import pandas as pd

    return pd.read_parquet(path)


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())


def _collect(
    spec: DatasetSpec, zones: Zones, run: str
) -> tuple[list[TableReport], list[TableReport], dict[str, int]]:
    from chaintrace_chain.collect import collect_all

    records = collect_all(spec, zones=zones, run_key=run)
    # The columns each source file carries, as the tables parsed from it declare them (as fetched: text).
    source_levels: dict[str, dict[str, str]] = {}
    for table in spec.tables.values():
        source_levels.setdefault(table.source, {}).update({c.name: c.level for c in table.columns})
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
    """Run ``stage`` of ``spec`` for ``run`` and write its report."""
    if stage not in STAGES:
        raise StageError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    started = time.time()
    if stage == "collect":
        inputs, outputs, counts = _collect(spec, zones, run)
    else:
        inputs, outputs, counts = _transform(spec, stage, zones, run)
    report = StageReport(spec.name, stage, run, inputs, outputs, counts, started, time.time())
    atomic_write_bytes(zones.report(spec.name, run, stage), report.to_json())
    return report


def _transform(
    spec: DatasetSpec, stage: str, zones: Zones, run: str
) -> tuple[list[TableReport], list[TableReport], dict[str, int]]:
    previous = stage_inputs(spec, stage, zones, run)
    module = transforms_module(spec)
    function = getattr(module, stage, None)
    if not callable(function):
        raise StageError(f"{spec.name}: {spec.transforms} has no {stage}() function")
    if stage == "store":
        landed = {item.table: Path(item.file) for item in previous.outputs}
        output: StageOutput = function(spec, landed)
    else:
        frames = {item.table: read_table(item.file) for item in previous.outputs}
        output = function(spec, frames)
    input_levels = {item.table: item.levels for item in previous.outputs}
    levels = propagate_levels(output, input_levels)
    outputs: list[TableReport] = []
    for table, frame in output.tables.items():
        part = zones.part_file(stage, spec.name, table, run)
        _write_parquet(frame, part)
        missing = [column for column in frame.columns if column not in output.lineage.get(table, {})]
        if missing:
            raise StageError(f"{spec.name}/{stage}: table {table} has no column lineage for {missing}")
        outputs.append(
            TableReport(
                table=table,
                folder=str(part.parent.parent),
                file=str(part),
                rows=len(frame),
                columns=[{"name": str(c), "type": str(t)} for c, t in frame.dtypes.items()],
                levels=levels[table],
                lineage={
                    column: [asdict(source) for source in sources]
                    for column, sources in output.lineage[table].items()
                    if column in frame.columns
                },
            )
        )
    return list(previous.outputs), outputs, dict(output.counts)


def field_sources(report: TableReport, column: str) -> list[FieldSource]:
    return [FieldSource(**item) for item in report.lineage.get(column, [])]
