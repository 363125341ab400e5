"""OpenLineage datasets and facets for the chain's stages, built from stage reports.

Standard facets (schema, dataSource, columnLineage, tags, lifecycleStateChange, version) come from
openlineage-python; our custom facets (``purpose``, ``sourceProvenance``, ``stageCounts``,
``disclosureControl``, ``governance``, ``destination``) carry their own JSON Schema (``schemas/``)
through ``_schemaURL``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attr
from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.facet_v2 import (
    DatasetFacet,
    RunFacet,
    column_lineage_dataset,
    dataset_version_dataset,
    datasource_dataset,
    lifecycle_state_change_dataset,
    schema_dataset,
    tags_dataset,
)

from chaintrace_chain.spec import LEVELS
from chaintrace_chain.storage import dataset_id

__all__ = ["dataset_id"]  # re-exported: the one naming function lives in storage

if TYPE_CHECKING:
    from chaintrace_chain.spec import DatasetSpec, ProductSpec
    from chaintrace_chain.stages import StageReport, TableReport

FACET_SCHEMA_BASE = "https://chaintrace.dev/spec/facets/1-0-0"
CLASSIFICATION_TAG = "classification"
TAG_SOURCE = "chaintrace"


@attr.define
# Fields are camelCase: OpenLineage facets are camelCase on the wire.
class PurposeDatasetFacet(DatasetFacet):
    audience: str
    allowedPurposes: list[str]
    allowedLevel: str
    jurisdictions: list[str] = attr.field(factory=list)
    minCellRows: int | None = attr.field(default=None)
    product: str | None = attr.field(default=None)  # the product's name (unique across datasets)

    @staticmethod
    def _get_schema() -> str:
        return f"{FACET_SCHEMA_BASE}/PurposeDatasetFacet.json#/$defs/PurposeDatasetFacet"


@attr.define
class DisclosureControlDatasetFacet(DatasetFacet):
    """Small-cell suppression of an aggregate, measured on the data as written. The dataset is k-safe
    (edges into it lower levels) when rows == 0 or minRowsPerCell >= the policy's k."""

    k: int  # the threshold applied: cells under it were suppressed
    countColumn: str  # the column holding the rows behind each cell
    rows: int  # cells published
    suppressedCells: int
    minRowsPerCell: int | None = attr.field(default=None)  # None when rows == 0

    @staticmethod
    def _get_schema() -> str:
        return f"{FACET_SCHEMA_BASE}/DisclosureControlDatasetFacet.json#/$defs/DisclosureControlDatasetFacet"


@attr.define
class DestinationDatasetFacet(DatasetFacet):
    """Where a dataset leaves the chain: the kind of destination (``externalSink``: a product's export),
    its name and the jurisdiction it is in, which the serve gate checked against the policy."""

    kind: str
    name: str
    jurisdiction: str
    product: str | None = attr.field(default=None)  # the product copied there

    @staticmethod
    def _get_schema() -> str:
        return f"{FACET_SCHEMA_BASE}/DestinationDatasetFacet.json#/$defs/DestinationDatasetFacet"


@attr.define
class GovernanceRunFacet(RunFacet):
    """The governance decisions a stage or gate made (levels assigned, publications, violations)."""

    policyVersion: int
    k: int
    decisions: list[dict[str, Any]]

    @staticmethod
    def _get_schema() -> str:
        return f"{FACET_SCHEMA_BASE}/GovernanceRunFacet.json#/$defs/GovernanceRunFacet"


@attr.define
class SourceProvenanceDatasetFacet(DatasetFacet):
    uri: str
    licence: str
    sha256: str
    bytes: int
    retrievedAt: str | None = attr.field(default=None)
    etag: str | None = attr.field(default=None)
    lastModified: str | None = attr.field(default=None)
    notModified: bool = attr.field(default=False)

    @staticmethod
    def _get_schema() -> str:
        return f"{FACET_SCHEMA_BASE}/SourceProvenanceDatasetFacet.json#/$defs/SourceProvenanceDatasetFacet"


@attr.define
class StageCountsRunFacet(RunFacet):
    dataset: str
    stage: str
    counts: dict[str, int]
    rowsIn: int | None = attr.field(default=None)
    rowsOut: int | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return f"{FACET_SCHEMA_BASE}/StageCountsRunFacet.json#/$defs/StageCountsRunFacet"


def highest_level(levels: dict[str, str]) -> str:
    return max(levels.values(), key=LEVELS.index) if levels else "L1"


def tags_facet(levels: dict[str, str]) -> tags_dataset.TagsDatasetFacet:
    tags = [
        tags_dataset.TagsDatasetFacetFields(CLASSIFICATION_TAG, level, TAG_SOURCE, field=column)
        for column, level in levels.items()
    ]
    tags.append(tags_dataset.TagsDatasetFacetFields(CLASSIFICATION_TAG, highest_level(levels), TAG_SOURCE))
    return tags_dataset.TagsDatasetFacet(tags=tags)


def schema_facet(columns: list[dict[str, str]]) -> schema_dataset.SchemaDatasetFacet:
    return schema_dataset.SchemaDatasetFacet(
        fields=[
            schema_dataset.SchemaDatasetFacetFields(
                name=column["name"], type=column["type"], ordinal_position=i
            )
            for i, column in enumerate(columns, start=1)
        ]
    )


def column_lineage_facet(
    table: TableReport, inputs_by_table: dict[str, TableReport]
) -> column_lineage_dataset.ColumnLineageDatasetFacet | None:
    fields: dict[str, column_lineage_dataset.Fields] = {}
    for column, sources in table.lineage.items():
        input_fields = []
        for source in sources:
            origin = inputs_by_table.get(source["table"])
            if origin is None:
                continue
            namespace, name = dataset_id(origin.folder)
            transformation = column_lineage_dataset.Transformation(
                type=source["type"],
                subtype=source.get("subtype"),
                description=source.get("description") or None,
                masking=bool(source.get("masking", False)),
            )
            input_fields.append(
                column_lineage_dataset.InputField(namespace, name, source["column"], [transformation])
            )
        if input_fields:
            fields[column] = column_lineage_dataset.Fields(inputFields=input_fields)
    return column_lineage_dataset.ColumnLineageDatasetFacet(fields=fields) if fields else None


def _source_facets(table: TableReport) -> dict[str, Any]:
    info = table.source
    uri = str(info.get("source_uri", table.file))
    facets: dict[str, Any] = {
        # The licence rides on dataSource too (the facet admits extra properties), where catalogues look.
        "dataSource": datasource_dataset.DatasourceDatasetFacet(
            name=str(info.get("source_key", table.table)), uri=uri
        ).with_additional_properties(licence=str(info.get("licence", ""))),
    }
    if info.get("sha256"):
        facets["sourceProvenance"] = SourceProvenanceDatasetFacet(
            uri=uri,
            licence=str(info.get("licence", "")),
            sha256=str(info["sha256"]),
            bytes=int(info.get("bytes", 0)),
            retrievedAt=info.get("retrieved_at"),
            etag=info.get("etag"),
            lastModified=info.get("last_modified"),
            notModified=bool(info.get("not_modified", False)),
        )
        facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
            datasetVersion=str(info["sha256"])
        )
    return facets


def input_dataset(table: TableReport, *, extra_input_facets: dict[str, Any] | None = None) -> InputDataset:
    namespace, name = dataset_id(table.folder)
    facets: dict[str, Any] = {}
    if table.source and table.file == table.folder:  # a source outside the zones
        facets.update(_source_facets(table))
    if table.columns:
        facets["schema"] = schema_facet(table.columns)
    return InputDataset(namespace, name, facets=facets, inputFacets=extra_input_facets or {})


def output_dataset(
    table: TableReport,
    report: StageReport,
    *,
    data_root: str,
    lifecycle: str | None = "CREATE",
) -> OutputDataset:
    """``data_root``: the zones' root URL (``file:///...`` for a local root), the datasets' source."""
    namespace, name = dataset_id(table.folder)
    facets: dict[str, Any] = {
        "dataSource": datasource_dataset.DatasourceDatasetFacet(name=dataset_id(data_root)[0], uri=data_root),
        "version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=report.run),
    }
    if table.columns:
        facets["schema"] = schema_facet(table.columns)
    if table.levels:
        facets["tags"] = tags_facet(table.levels)
    if table.disclosure is not None:
        facets["disclosureControl"] = disclosure_facet(table.disclosure)
    inputs_by_table = {item.table: item for item in report.inputs}
    if report.stage == "collect" and table.source.get("sha256"):
        facets["sourceProvenance"] = _source_facets(table)["sourceProvenance"]
    lineage = column_lineage_facet(table, inputs_by_table)
    if lineage is not None:
        facets["columnLineage"] = lineage
    if lifecycle:
        facets["lifecycleStateChange"] = lifecycle_state_change_dataset.LifecycleStateChangeDatasetFacet(
            lifecycleStateChange=lifecycle_state_change_dataset.LifecycleStateChange(lifecycle)
        )
    return OutputDataset(namespace, name, facets=facets)


def purpose_facet(product: ProductSpec) -> PurposeDatasetFacet:
    return PurposeDatasetFacet(
        audience=product.audience,
        allowedPurposes=list(product.purposes),
        allowedLevel=product.allowed_level,
        jurisdictions=list(product.jurisdictions),
        minCellRows=product.min_cell_rows,
        product=product.name,
    )


def disclosure_facet(measured: dict[str, Any]) -> DisclosureControlDatasetFacet:
    return DisclosureControlDatasetFacet(
        k=int(measured["k"]),
        countColumn=str(measured["countColumn"]),
        rows=int(measured["rows"]),
        suppressedCells=int(measured["suppressedCells"]),
        minRowsPerCell=None if measured.get("minRowsPerCell") is None else int(measured["minRowsPerCell"]),
    )


def governance_facet(record: dict[str, Any] | None) -> GovernanceRunFacet | None:
    """The ``governance`` run facet of a report's record; None when it made no decision."""
    if not record or not record.get("decisions"):
        return None
    return GovernanceRunFacet(
        policyVersion=int(record["policyVersion"]), k=int(record["k"]), decisions=list(record["decisions"])
    )


def stage_counts_facet(report: StageReport) -> StageCountsRunFacet:
    rows_in = [item.rows for item in report.inputs if item.rows is not None]
    rows_out = [item.rows for item in report.outputs if item.rows is not None]
    return StageCountsRunFacet(
        dataset=report.dataset,
        stage=report.stage,
        counts=dict(report.counts),
        rowsIn=sum(rows_in) if rows_in else None,
        rowsOut=sum(rows_out) if rows_out else None,
    )


def product_of(spec: DatasetSpec, table: str) -> ProductSpec | None:
    return next((product for product in spec.products if product.name == table), None)
