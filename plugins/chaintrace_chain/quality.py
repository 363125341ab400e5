"""The gate step of every stage: validate the stage's output with its GX suite, then either pass it
on (the serve gate publishes the products) or quarantine the batch and stop the chain.

The serve gate also applies the governance rules to every product, on the files as written (see
:func:`chaintrace_chain.governance.check_product`): levels at or below the product's allowed level,
no cell under k rows, no flow of sensitive data outside the policy's jurisdictions (the product's own
and its external sinks'). One refused product refuses the batch: nothing of it is published or
exported. A passed serve gate publishes the products, then copies each to its sinks
(:mod:`chaintrace_chain.exports`). These rules hold even with the GX gates
switched off (``CHAINTRACE_GATES_ENABLED=false`` only skips the quality suites).

The gate report (``<root>/reports/<dataset>/run=<run>/<stage>.gate.json``) keeps the full result, what
was quarantined and what was published, and the governance decisions, for lineage and the reports.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from chaintrace_chain.governance import (
    ProductVerdict,
    chain_policy,
    check_product,
    governance_record,
    publish_decisions,
)
from chaintrace_chain.stages import StageReport, field_sources, load_report, read_table
from chaintrace_chain.zones import atomic_copy, atomic_write_bytes, move_to_quarantine

if TYPE_CHECKING:
    import pandas as pd

    from chaintrace_chain.gate_facets import GateResult
    from chaintrace_chain.spec import DatasetSpec
    from chaintrace_chain.storage import ZonePath
    from chaintrace_chain.zones import Zones
    from lineage.governance.policy import GovernancePolicy


class GateFailed(RuntimeError):
    """The stage's output broke its suite or (serve) the governance rules; the batch is quarantined.
    The message lists what failed."""


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
    refused: dict[str, str] = field(default_factory=dict)  # serve: product -> why governance refused it
    governance: dict[str, Any] | None = None  # serve: {"policyVersion", "k", "decisions"}
    exported: list[dict[str, Any]] = field(default_factory=list)  # serve: ExportRecord.to_dict() each

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
            "exported": {f"{e['product']}->{e['sink']}": e["file"] for e in self.exported},
            "refused": self.refused,
        }


def _gate_report_path(zones: Zones, dataset: str, run: str, stage: str) -> ZonePath:
    return zones.report(dataset, run, f"{stage}.gate")


def load_gate_report(zones: Zones, dataset: str, run: str, stage: str) -> GateReport | None:
    path = _gate_report_path(zones, dataset, run, stage)
    if not path.exists():
        return None
    return GateReport(**json.loads(path.read_text()))


def _frames(spec: DatasetSpec, report: StageReport, zones: Zones) -> dict[str, pd.DataFrame]:
    """What the gate sees: landed sources as text after collect, the written tables after the others."""
    if report.stage == "collect":
        from chaintrace_chain.transforms.common import read_landed

        return {
            item.table: read_landed(spec.sources[item.table], zones.locate(item.file), as_text=True)
            for item in report.outputs
        }
    return {item.table: read_table(zones.locate(item.file)) for item in report.outputs}


def _partitions(report: StageReport, zones: Zones) -> list[ZonePath]:
    return [zones.locate(item.file).parent for item in report.outputs]


def _publish(spec: DatasetSpec, report: StageReport, zones: Zones) -> dict[str, str]:
    """Make the staged products public: atomic replace, so readers never see half a file and a
    refused run leaves the previous products untouched."""
    published: dict[str, str] = {}
    for item in report.outputs:
        target = zones.published(spec.name, item.table)
        atomic_copy(zones.locate(item.file), target)
        published[item.table] = str(target)
    return published


def check_products(
    spec: DatasetSpec,
    report: StageReport,
    zones: Zones,
    policy: GovernancePolicy,
    frames: dict[str, pd.DataFrame] | None = None,
) -> list[ProductVerdict]:
    """The governance verdict on every staged product (and on any staged table no product declares)."""
    from chaintrace_chain.facets import dataset_id

    staged = {item.table: item for item in report.outputs}
    input_levels = {item.table: item.levels for item in report.inputs}
    verdicts: list[ProductVerdict] = []
    for product in spec.products:
        dataset = dataset_id(str(zones.published(spec.name, product.name)))
        item = staged.get(product.name)
        frame = None
        if item is not None:
            known = frames and item.table in frames
            frame = frames[item.table] if frames and known else read_table(zones.locate(item.file))
        verdicts.append(
            check_product(
                product,
                dataset,
                frame,
                {column: field_sources(item, column) for column in item.lineage} if item else {},
                item.declared if item else {},
                input_levels,
                policy,
                suppressed=int(report.counts.get(f"{product.name}.suppressed_cells", 0)),
            )
        )
    declared = {product.name for product in spec.products}
    for table in staged:
        if table not in declared:
            unknown = ProductVerdict(table, dataset_id(str(zones.published(spec.name, table))))
            unknown.problems.append("the serve stage wrote it but the dataset spec declares no such product")
            verdicts.append(unknown)
    return verdicts


def _quarantine(
    spec: DatasetSpec,
    stage: str,
    run: str,
    report: StageReport,
    zones: Zones,
    result: GateResult | None,
    refused: dict[str, str],
) -> ZonePath:
    """Move the batch aside; ``reason.json`` says which expectations failed and which products the
    governance rules refused, and why."""
    from chaintrace_chain.gates import quarantine

    partitions = _partitions(report, zones)
    if result is not None and not result.success:
        folder = quarantine(result, partitions, zones=zones)
        reason = json.loads((folder / "reason.json").read_text())
    else:
        folder = zones.quarantine(spec.name, stage, run)
        existing = [path for path in partitions if path.exists()]
        moved = move_to_quarantine(existing, folder)
        reason = {
            "dataset": spec.name,
            "stage": stage,
            "run": run,
            "partitions": [{"from": str(a), "to": str(b)} for a, b in zip(existing, moved, strict=True)],
        }
    if refused:
        reason["governance_refused"] = refused
    atomic_write_bytes(folder / "reason.json", json.dumps(reason, indent=2, sort_keys=True).encode() + b"\n")
    return folder


def gate_stage(spec: DatasetSpec, stage: str, *, zones: Zones, run: str, enabled: bool = True) -> GateReport:
    """Validate the stage's output; ``enabled=False`` (``CHAINTRACE_GATES_ENABLED=false``, for the
    benchmark that measures what the gates cost) passes every batch unchecked by the quality suites;
    the serve stage's governance rules still apply."""
    from chaintrace_chain.gates import run_gate

    report = load_report(zones, spec.name, run, stage)
    result: GateResult | None = None
    frames: dict[str, pd.DataFrame] | None = None
    if enabled:
        frames = _frames(spec, report, zones)
        result = run_gate(spec.name, stage, frames, run_key=run, zones=zones)
    gate = GateReport(
        dataset=spec.name,
        stage=stage,
        run=run,
        success=result is None or bool(result.success),
        table=result.table if result else None,
        result=result.to_dict() if result else None,
    )
    failed = gate.summary()["failed"] if result is not None and not result.success else []
    if stage == "serve":
        policy = chain_policy()
        verdicts = check_products(spec, report, zones, policy, frames)
        gate.refused = {v.product: "; ".join(v.problems) for v in verdicts if v.problems}
        batch_refused = None
        if failed:
            batch_refused = f"the serve batch failed its quality suite ({', '.join(failed)})"
        elif gate.refused:
            batch_refused = f"the serve batch was refused (products {', '.join(sorted(gate.refused))})"
        gate.governance = governance_record(policy, publish_decisions(verdicts, batch_refused=batch_refused))
        gate.success = gate.success and not gate.refused
    if not gate.success:
        folder = _quarantine(spec, stage, run, report, zones, result, gate.refused)
        gate.quarantined = [str(folder)]
        atomic_write_bytes(_gate_report_path(zones, spec.name, run, stage), json.dumps(asdict(gate)).encode())
        why = []
        if failed:
            suite = result.suite if result else f"{spec.name}__{stage}"
            why.append(f"gate {suite} failed {len(failed)} expectation(s): {', '.join(failed)}")
        if gate.refused:
            why.append(
                "governance refused "
                + "; ".join(f"product {name}: {reason}" for name, reason in sorted(gate.refused.items()))
            )
        raise GateFailed(f"{spec.name}/{stage}: {'; '.join(why)}; batch quarantined in {gate.quarantined}")
    if stage == "serve":
        from chaintrace_chain.exports import export_products

        gate.published = _publish(spec, report, zones)
        gate.exported = [record.to_dict() for record in export_products(spec, gate.published, zones)]
    atomic_write_bytes(_gate_report_path(zones, spec.name, run, stage), json.dumps(asdict(gate)).encode())
    return gate
