"""What one run of a dataset's chain did, read back from its stage and gate reports (no Airflow)."""

from __future__ import annotations

from dataclasses import dataclass, field

from chaintrace_chain.quality import load_gate_report
from chaintrace_chain.spec import DatasetSpec
from chaintrace_chain.stages import StageError, load_report
from chaintrace_chain.zones import STAGES, Zones


@dataclass
class RunSummary:
    dataset: str
    run: str
    stages_run: list[str] = field(default_factory=list)
    gates_passed: list[str] = field(default_factory=list)
    gates_failed: list[str] = field(default_factory=list)
    rows_in: int | None = None  # rows the store stage parsed from the sources
    rows_out: int | None = None  # rows of the published products
    quarantined: list[str] = field(default_factory=list)
    products: dict[str, str] = field(default_factory=dict)  # product -> published file
    exports: dict[str, str] = field(default_factory=dict)  # "<product> -> <sink>" -> the copy there
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # stage -> named counts

    @property
    def stages_passed(self) -> int:
        return len(self.gates_passed)


def summarise_run(spec: DatasetSpec, zones: Zones, run: str) -> RunSummary:
    summary = RunSummary(spec.name, run)
    for stage in STAGES:
        try:
            report = load_report(zones, spec.name, run, stage)
        except StageError:
            break
        summary.stages_run.append(stage)
        summary.counts[stage] = dict(report.counts)
        if stage == "store":
            summary.rows_in = sum(item.rows or 0 for item in report.outputs)
        gate = load_gate_report(zones, spec.name, run, stage)
        if gate is None:
            break
        (summary.gates_passed if gate.success else summary.gates_failed).append(stage)
        summary.quarantined.extend(gate.quarantined)
        if gate.published:
            summary.products.update(gate.published)
            summary.exports.update({f"{e['product']} -> {e['sink']}": e["file"] for e in gate.exported})
            summary.rows_out = sum(item.rows or 0 for item in report.outputs)
        if not gate.success:
            break
    return summary
