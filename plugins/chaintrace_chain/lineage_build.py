"""Turn stage and gate reports into the ``OperatorLineage`` the OpenLineage provider emits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.openlineage.extractors import OperatorLineage
from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.facet_v2 import (
    column_lineage_dataset,
    dataset_version_dataset,
    lifecycle_state_change_dataset,
)

from chaintrace_chain import facets
from chaintrace_chain.governance import EXTERNAL_SINK
from chaintrace_chain.quality import load_gate_report
from chaintrace_chain.stages import PREVIOUS_STAGE, StageError, StageReport, TableReport, load_report

if TYPE_CHECKING:
    from chaintrace_chain.spec import DatasetSpec
    from chaintrace_chain.zones import Zones


def _inputs_of(report: StageReport) -> list[InputDataset]:
    return [facets.input_dataset(item) for item in report.inputs]


def stage_lineage(spec: DatasetSpec, report: StageReport, zones: Zones) -> OperatorLineage:
    """A completed stage: what it read, what it wrote (schema, tags, column lineage), its counts."""
    outputs = [facets.output_dataset(item, report, data_root=zones.root.url) for item in report.outputs]
    run_facets: dict[str, Any] = {"stageCounts": facets.stage_counts_facet(report)}
    governance = facets.governance_facet(report.governance)
    if governance is not None:  # store: the levels assigned; any stage: violations of THE RULE
        run_facets["governance"] = governance
    return OperatorLineage(inputs=_inputs_of(report), outputs=outputs, run_facets=run_facets)


def stage_failure_lineage(spec: DatasetSpec, stage: str, run: str, zones: Zones) -> OperatorLineage:
    """A failed stage wrote nothing usable; its inputs are still worth recording."""
    if stage == "collect":
        return OperatorLineage()
    try:
        previous = load_report(zones, spec.name, run, PREVIOUS_STAGE[stage])
    except StageError:
        return OperatorLineage()
    return OperatorLineage(inputs=[facets.input_dataset(item) for item in previous.outputs])


def _quarantine_dataset(
    zones: Zones, spec: DatasetSpec, stage: str, moved_from: TableReport
) -> OutputDataset:
    folder = zones.quarantine(spec.name, stage, "x").parent
    previous_namespace, previous_name = facets.dataset_id(moved_from.folder)
    change = lifecycle_state_change_dataset.LifecycleStateChangeDatasetFacet(
        lifecycleStateChange=lifecycle_state_change_dataset.LifecycleStateChange.RENAME,
        previousIdentifier=lifecycle_state_change_dataset.PreviousIdentifier(
            name=previous_name, namespace=previous_namespace
        ),
    )
    namespace, name = facets.dataset_id(str(folder / moved_from.table))
    return OutputDataset(namespace, name, facets={"lifecycleStateChange": change})


def _copied_from(
    location: str, columns: list[dict[str, str]]
) -> column_lineage_dataset.ColumnLineageDatasetFacet:
    """Column lineage of a byte-for-byte copy: every column comes from the same column of ``location``."""
    namespace, name = facets.dataset_id(location)
    identity = column_lineage_dataset.Transformation(type="DIRECT", subtype="IDENTITY", masking=False)
    fields = {
        column["name"]: column_lineage_dataset.Fields(
            inputFields=[column_lineage_dataset.InputField(namespace, name, column["name"], [identity])]
        )
        for column in columns
    }
    return column_lineage_dataset.ColumnLineageDatasetFacet(fields=fields)


def _published_dataset(
    spec: DatasetSpec, staged: TableReport, published_path: str, run: str, zones: Zones
) -> OutputDataset:
    dataset_facets: dict[str, Any] = {
        "schema": facets.schema_facet(staged.columns),
        "columnLineage": _copied_from(staged.folder, staged.columns),
        "version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=run),
        "lifecycleStateChange": lifecycle_state_change_dataset.LifecycleStateChangeDatasetFacet(
            lifecycleStateChange=lifecycle_state_change_dataset.LifecycleStateChange.OVERWRITE
        ),
    }
    if staged.levels:
        dataset_facets["tags"] = facets.tags_facet(staged.levels)
    if staged.disclosure is not None:
        dataset_facets["disclosureControl"] = facets.disclosure_facet(staged.disclosure)
    product = facets.product_of(spec, staged.table)
    if product is not None:
        dataset_facets["purpose"] = facets.purpose_facet(product)
    published_namespace, published_name = facets.dataset_id(published_path)
    return OutputDataset(published_namespace, published_name, facets=dataset_facets)


def _exported_dataset(
    staged: TableReport, published_path: str, export: dict[str, Any], run: str
) -> OutputDataset:
    """A product's copy in an external sink: copied from the published product, with its destination."""
    dataset_facets: dict[str, Any] = {
        "schema": facets.schema_facet(staged.columns),
        "columnLineage": _copied_from(published_path, staged.columns),
        "version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=run),
        "lifecycleStateChange": lifecycle_state_change_dataset.LifecycleStateChangeDatasetFacet(
            lifecycleStateChange=lifecycle_state_change_dataset.LifecycleStateChange.OVERWRITE
        ),
        "destination": facets.DestinationDatasetFacet(
            kind=EXTERNAL_SINK,
            name=str(export["sink"]),
            jurisdiction=str(export["jurisdiction"]),
            product=str(export["product"]),
        ),
    }
    if staged.levels:
        dataset_facets["tags"] = facets.tags_facet(staged.levels)
    # No purpose facet: the service lists datasets carrying one as products, and this is a copy of one.
    namespace, name = facets.dataset_id(str(export["file"]))
    return OutputDataset(namespace, name, facets=dataset_facets)


def gate_lineage(spec: DatasetSpec, stage: str, run: str, zones: Zones) -> OperatorLineage:
    """A gate's run: the stage outputs it validated carry ``dataQualityAssertions`` and
    ``dataQualityMetrics``; a refused batch shows up as moved to quarantine, a passed serve gate as
    the products it published; the serve gate's governance decisions ride in the ``governance`` facet."""
    from chaintrace_chain.gate_facets import assertions_facet, gate_result_facet, metrics_facet

    report = load_report(zones, spec.name, run, stage)
    gate = load_gate_report(zones, spec.name, run, stage)
    inputs: list[InputDataset] = []
    for item in report.outputs:
        input_facets: dict[str, Any] = {}
        if gate is not None and gate.table == item.table and gate.result is not None:
            input_facets["dataQualityAssertions"] = assertions_facet(gate.result)
            metrics = metrics_facet(gate.result)
            if metrics is not None:
                input_facets["dataQualityMetrics"] = metrics
            input_facets["gateResult"] = gate_result_facet(gate.result)  # verdict and Data Docs link
        inputs.append(facets.input_dataset(item, extra_input_facets=input_facets))
    outputs: list[OutputDataset] = []
    if gate is not None:
        by_table = {item.table: item for item in report.outputs}
        if gate.quarantined:
            outputs = [_quarantine_dataset(zones, spec, stage, item) for item in report.outputs]
        for table, path in gate.published.items():
            if table in by_table:
                outputs.append(_published_dataset(spec, by_table[table], path, run, zones))
        for export in gate.exported:
            product = str(export["product"])
            if product in by_table and product in gate.published:
                outputs.append(_exported_dataset(by_table[product], gate.published[product], export, run))
    run_facets: dict[str, Any] = {}
    governance = facets.governance_facet(gate.governance if gate is not None else None)
    if governance is not None:
        run_facets["governance"] = governance
    return OperatorLineage(inputs=inputs, outputs=outputs, run_facets=run_facets)
