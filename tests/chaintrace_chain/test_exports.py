"""External sinks of products (``exports`` in the dataset spec), on the real covid_testing chain: an
allowed export is copied atomically after the serve gate passes and shows in the lineage as an output
with a ``destination`` facet; an export of L3 data to a jurisdiction outside the policy is not written,
refuses the batch and is a ``violation``; L1 products may go anywhere; a bad export is refused at load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from jsonschema import Draft202012Validator
from openlineage.client.serde import Serde
from referencing import Registry, Resource

from chaintrace_chain.facets import dataset_id
from chaintrace_chain.lineage_build import gate_lineage
from chaintrace_chain.quality import GateFailed, gate_stage, load_gate_report
from chaintrace_chain.spec import DatasetSpec, ExportSpec, SpecError, load_spec, load_spec_file
from chaintrace_chain.stages import run_stage
from chaintrace_chain.zones import Zones

SPEC = load_spec("covid_testing")
RUN = "exported"
DAILY = "covid_positivity_daily"
BY_CLINIC = "covid_positivity_by_clinic"
PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def zones(covid_zones: Zones) -> Zones:
    """covid_testing analysed under this module's RUN, on a fresh root for serve (conftest)."""
    return covid_zones


def _variant(product: str, **changes: Any) -> DatasetSpec:
    products = [p.model_copy(update=changes) if p.name == product else p for p in SPEC.products]
    return SPEC.model_copy(update={"products": products})


def _sink(name: str, jurisdiction: str, folder: str | None = None) -> ExportSpec:
    return ExportSpec(name=name, url=folder or f"{{data_root}}/exports/{name}", jurisdiction=jurisdiction)


def _as_json(facet: Any) -> dict[str, Any]:
    return dict(Serde.to_dict(facet))


def _schema_validator(name: str) -> Draft202012Validator:
    core = json.loads((PROJECT / "lineage/spec/openlineage/2-0-2/OpenLineage.json").read_text())
    doc = json.loads((PROJECT / "plugins/chaintrace_chain/schemas" / f"{name}.json").read_text())
    registry = Registry().with_resources([(d["$id"], Resource.from_contents(d)) for d in (core, doc)])
    return Draft202012Validator(doc, registry=registry)


def test_the_shipped_spec_exports_one_product_to_a_folder_under_the_data_root() -> None:
    [product] = [p for p in SPEC.products if p.exports]
    [sink] = product.exports
    assert (product.name, sink.name, sink.jurisdiction) == (DAILY, "pa-health-department", "US-PA")
    assert sink.resolved_url("/srv/data") == "/srv/data/exports/pa-health-department"
    assert sink.resolved_url("s3://bucket/zones") == "s3://bucket/zones/exports/pa-health-department"


def test_an_allowed_export_is_copied_after_the_gate_with_its_lineage(zones: Zones) -> None:
    run_stage(SPEC, "serve", zones=zones, run=RUN)
    gate = gate_stage(SPEC, "serve", zones=zones, run=RUN)
    assert gate.success
    [record] = gate.exported
    copy = zones.root / "exports" / "pa-health-department" / f"{DAILY}.parquet"
    assert record == {
        "product": DAILY, "sink": "pa-health-department", "jurisdiction": "US-PA",
        "url": str(zones.root / "exports" / "pa-health-department"), "file": str(copy),
    }  # fmt: skip
    assert copy.read_bytes() == zones.published(SPEC.name, DAILY).read_bytes()
    assert not [p for p in copy.parent.iterdir() if p.name != copy.name]  # no temporary file left
    outputs = {(o.namespace, o.name): o for o in gate_lineage(SPEC, "serve", RUN, zones).outputs}
    exported = outputs[dataset_id(str(copy))]
    destination = _as_json(exported.facets["destination"])
    assert {k: destination[k] for k in ("kind", "name", "jurisdiction", "product")} == {
        "kind": "externalSink", "name": "pa-health-department", "jurisdiction": "US-PA", "product": DAILY,
    }  # fmt: skip
    _schema_validator("DestinationDatasetFacet").validate({"destination": destination})
    assert "purpose" not in exported.facets  # a copy of a product is not another product
    published = dataset_id(gate.published[DAILY])
    lineage = _as_json(exported.facets["columnLineage"])["fields"]
    assert set(lineage) == set(pd.read_parquet(str(copy)).columns)
    assert {(f["namespace"], f["name"]) for c in lineage.values() for f in c["inputFields"]} == {published}
    decisions = _as_json(gate_lineage(SPEC, "serve", RUN, zones).run_facets["governance"])["decisions"]
    assert not [d for d in decisions if d["kind"] != "publish_allowed"]


def test_l3_data_to_a_sink_outside_the_policy_is_blocked_written_nowhere_and_a_violation(
    zones: Zones,
) -> None:
    # L3 (not k-safe) may go to US jurisdictions only: the Ontario partner may not receive it.
    spec = _variant(
        BY_CLINIC, count_column=None, allowed_level="L3", exports=[_sink("ontario-partner", "CA-ON")]
    )
    run_stage(spec, "serve", zones=zones, run=RUN)
    with pytest.raises(GateFailed, match="external sink ontario-partner in CA-ON"):
        gate_stage(spec, "serve", zones=zones, run=RUN)
    gate = load_gate_report(zones, spec.name, RUN, "serve")
    assert gate is not None and not gate.success and not gate.published and not gate.exported
    assert not (zones.root / "exports").exists()  # no sink received anything, the allowed one neither
    assert not any(zones.published(spec.name, p.name).exists() for p in spec.products)
    assert gate.quarantined
    decisions = [
        d
        for d in _as_json(gate_lineage(spec, "serve", RUN, zones).run_facets["governance"])["decisions"]
        if d.get("product") == BY_CLINIC
    ]
    assert [d["kind"] for d in decisions] == ["violation", "publish_refused"]
    assert decisions[0]["level"] == "L3"
    assert decisions[0]["details"] == {
        "jurisdiction": "CA-ON",
        "destination": {
            "kind": "externalSink", "name": "ontario-partner", "url": "{data_root}/exports/ontario-partner",
        },
    }
    _schema_validator("GovernanceRunFacet").validate(
        {"governance": _as_json(gate_lineage(spec, "serve", RUN, zones).run_facets["governance"])}
    )


def test_the_same_l3_product_to_a_sink_inside_the_policy_is_exported(zones: Zones) -> None:
    spec = _variant(BY_CLINIC, count_column=None, allowed_level="L3", exports=[_sink("pa-lab", "US-PA")])
    run_stage(spec, "serve", zones=zones, run=RUN)
    gate = gate_stage(spec, "serve", zones=zones, run=RUN)
    assert gate.success
    assert {(e["product"], e["sink"]) for e in gate.exported} == {
        (DAILY, "pa-health-department"), (BY_CLINIC, "pa-lab"),
    }  # fmt: skip
    assert (zones.root / "exports" / "pa-lab" / f"{BY_CLINIC}.parquet").is_file()


@pytest.mark.parametrize("jurisdiction", ["CA-ON", "FR", "JP-13"])
def test_l1_products_may_be_exported_to_any_jurisdiction(zones: Zones, jurisdiction: str) -> None:
    spec = _variant(DAILY, exports=[_sink("abroad", jurisdiction)])
    run_stage(spec, "serve", zones=zones, run=RUN)
    gate = gate_stage(spec, "serve", zones=zones, run=RUN)
    assert gate.success and [(e["sink"], e["jurisdiction"]) for e in gate.exported] == [
        ("abroad", jurisdiction)
    ]
    assert (zones.root / "exports" / "abroad" / f"{DAILY}.parquet").is_file()


def test_an_export_to_another_filesystem_lands_there(zones: Zones) -> None:
    spec = _variant(DAILY, exports=[_sink("memory-sink", "US", "memory://partner-sink/drop")])
    run_stage(spec, "serve", zones=zones, run=RUN)
    gate = gate_stage(spec, "serve", zones=zones, run=RUN)
    [record] = gate.exported
    assert record["file"] == f"memory:///partner-sink/drop/{DAILY}.parquet"
    assert zones.locate(record["file"]).read_bytes() == zones.published(SPEC.name, DAILY).read_bytes()
    namespace, name = dataset_id(record["file"])
    assert (namespace, name) == ("memory://", f"/partner-sink/drop/{DAILY}.parquet")


@pytest.mark.parametrize(
    ("export", "field", "problem"),
    [
        ({"name": "x", "url": "relative/folder", "jurisdiction": "US"}, "url", "an absolute path"),
        ({"name": "x", "url": "nosuchscheme://b/p", "jurisdiction": "US"}, "url", "no fsspec filesystem"),
        ({"name": "x", "url": "/srv/drop", "jurisdiction": "somewhere"}, "jurisdiction", "ISO 3166"),
        ({"name": "bad name", "url": "/srv/drop", "jurisdiction": "US"}, "name", "letters, digits"),
        ({"name": "x", "url": "/srv/drop"}, "jurisdiction", "Field required"),
    ],
)
def test_a_bad_export_is_refused_at_spec_load_naming_the_field(
    tmp_path: Path, export: dict[str, Any], field: str, problem: str
) -> None:
    raw = yaml.safe_load((PROJECT / "plugins/chaintrace_chain/specs/covid_testing.yaml").read_text())
    raw["products"][1]["exports"] = [export]
    path = tmp_path / "covid_testing.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError) as caught:
        load_spec_file(path)
    message = str(caught.value)
    assert "products.1.exports.0" in message and problem in message
    assert field in message


def test_export_names_are_unique_within_a_product() -> None:
    sink = _sink("twice", "US").model_dump()
    with pytest.raises(ValueError, match="exports: names must be unique"):
        SPEC.products[0].model_validate({**SPEC.products[0].model_dump(), "exports": [sink, sink]})
