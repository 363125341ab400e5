"""The gate step of every stage: validate the stage's output with its GX suite, then either pass it
on (the serve gate publishes the products) or quarantine the batch and stop the chain.

The gate report (``<root>/reports/<dataset>/run=<run>/<stage>.gate.json``) keeps the full result, what
was quarantined and what was published, for lineage and for the quality reports.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaintrace_chain.stages import StageReport, load_report, read_table
from chaintrace_chain.zones import atomic_copy, atomic_write_bytes

if TYPE_CHECKING:
    import pandas as pd

    from chaintrace_chain.spec import DatasetSpec
    from chaintrace_chain.zones import Zones


class GateFailed(RuntimeError):
    """The stage's output broke its suite; the batch is quarantined. The message lists what failed."""


@dataclass
class GateReport:
    dataset: str
    stage: str
    run: str
    success: bool
    table: str | None
    result: dict[str, Any] | None
    quarantined: list[str] = field(default_factory=list)
    published: dict[str, str] = field(default_factory=dict)  # product -> published file
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        failed = [a for a in (self.result or {}).get("assertions", []) if not a.get("success")]
        names = [
            f"{a.get('expectation_type')}({a.get('column') or ','.join(a.get('columns') or [])})"
            for a in failed
        ]
        return {
            "dataset": self.dataset,
            "stage": self.stage,
            "success": self.success,
            "table": self.table,
            "failed": names,
            "quarantined": self.quarantined,
            "published": self.published,
        }


def _gate_report_path(zones: Zones, dataset: str, run: str, stage: str) -> Path:
    return zones.report(dataset, run, f"{stage}.gate")


def load_gate_report(zones: Zones, dataset: str, run: str, stage: str) -> GateReport | None:
    path = _gate_report_path(zones, dataset, run, stage)
    if not path.exists():
        return None
    return GateReport(**json.loads(path.read_text()))


def _frames(spec: DatasetSpec, report: StageReport) -> dict[str, pd.DataFrame]:
    """What the gate sees: landed sources as text after collect, the written tables after the others."""
    if report.stage == "collect":
        from chaintrace_chain.transforms.common import read_landed

        return {
            item.table: read_landed(spec.sources[item.table], Path(item.file), as_text=True)
            for item in report.outputs
        }
    return {item.table: read_table(item.file) for item in report.outputs}


def _partitions(report: StageReport) -> list[Path]:
    return [Path(item.file).parent for item in report.outputs]


def _publish(spec: DatasetSpec, report: StageReport, zones: Zones) -> dict[str, str]:
    """Make the staged products public: atomic replace, so readers never see half a file and a
    refused run leaves the previous products untouched."""
    published: dict[str, str] = {}
    for item in report.outputs:
        target = zones.published(spec.name, item.table)
        atomic_copy(Path(item.file), target)
        published[item.table] = str(target)
    return published


def gate_stage(spec: DatasetSpec, stage: str, *, zones: Zones, run: str, enabled: bool = True) -> GateReport:
    """Validate the stage's output; ``enabled=False`` (``CHAINTRACE_GATES_ENABLED=false``, for the
    benchmark that measures what the gates cost) passes every batch unchecked and still publishes."""
    from chaintrace_chain.gates import GateResult, quarantine, run_gate

    report = load_report(zones, spec.name, run, stage)
    if not enabled:
        gate = GateReport(dataset=spec.name, stage=stage, run=run, success=True, table=None, result=None)
        if stage == "serve":
            gate.published = _publish(spec, report, zones)
        atomic_write_bytes(_gate_report_path(zones, spec.name, run, stage), json.dumps(asdict(gate)).encode())
        return gate
    frames = _frames(spec, report)
    result: GateResult = run_gate(spec.name, stage, frames, run_key=run, zones=zones)
    result_dict = result.to_dict()
    gate = GateReport(
        dataset=spec.name,
        stage=stage,
        run=run,
        success=bool(result.success),
        table=result.table,
        result=result_dict,
    )
    if not result.success:
        folder = quarantine(result, _partitions(report), zones=zones)
        gate.quarantined = [str(folder)]
        atomic_write_bytes(_gate_report_path(zones, spec.name, run, stage), json.dumps(asdict(gate)).encode())
        failed = gate.summary()["failed"]
        raise GateFailed(
            f"{spec.name}/{stage}: gate {result.suite} failed {len(failed)} expectation(s): "
            f"{', '.join(failed)}; batch quarantined in {gate.quarantined}"
        )
    if stage == "serve":
        gate.published = _publish(spec, report, zones)
    atomic_write_bytes(_gate_report_path(zones, spec.name, run, stage), json.dumps(asdict(gate)).encode())
    return gate
