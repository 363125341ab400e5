"""The serve gate's governance rules on the real covid_testing chain (stages run once, serve and its
gate once per case on a copy): products published with their decisions and facets, and refused when a
column is above the allowed level, when a cell under k survives, or when sensitive data would flow to a
jurisdiction outside the policy; and a transform that declares a level too low is reported."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest
from openlineage.client.serde import Serde

from chaintrace_chain.facets import dataset_id
from chaintrace_chain.lineage_build import gate_lineage, stage_lineage
from chaintrace_chain.quality import GateFailed, gate_stage, load_gate_report
from chaintrace_chain.spec import DatasetSpec, load_spec
from chaintrace_chain.stages import run_stage
from chaintrace_chain.transforms import covid_testing
from chaintrace_chain.zones import Zones

SPEC = load_spec("covid_testing")
RUN = "governed"
BY_CLINIC = "covid_positivity_by_clinic"


@pytest.fixture
def zones(covid_zones: Zones) -> Zones:
    """covid_testing analysed under this module's RUN, on a fresh root for serve (conftest)."""
    return covid_zones


def _variant(product: str = BY_CLINIC, **changes: Any) -> DatasetSpec:
    products = [p.model_copy(update=changes) if p.name == product else p for p in SPEC.products]
    return SPEC.model_copy(update={"products": products})


def _as_json(facet: Any) -> dict[str, Any]:
    return dict(Serde.to_dict(facet))


def _decisions(zones: Zones, spec: DatasetSpec = SPEC) -> list[dict[str, Any]]:
    lineage = gate_lineage(spec, "serve", RUN, zones)
    return list(_as_json(lineage.run_facets["governance"])["decisions"])


def test_products_are_published_with_their_decisions_and_disclosure_facets(zones: Zones) -> None:
    report = run_stage(SPEC, "serve", zones=zones, run=RUN)
    assert report.governance is None  # no violation: every product measured k-safe
    for item in report.outputs:
        assert item.disclosure is not None and item.disclosure["minRowsPerCell"] >= 10
        assert set(item.levels.values()) == {"L1"}
    staged = stage_lineage(SPEC, report, zones).outputs[0].facets
    assert _as_json(staged["disclosureControl"])["_schemaURL"].endswith(
        "DisclosureControlDatasetFacet.json#/$defs/DisclosureControlDatasetFacet"
    )
    gate = gate_stage(SPEC, "serve", zones=zones, run=RUN)
    assert gate.success and set(gate.published) == {p.name for p in SPEC.products} and not gate.refused
    decisions = _decisions(zones)
    assert [d["kind"] for d in decisions] == ["publish_allowed"] * 3
    for product, entry in zip(SPEC.products, decisions, strict=True):
        assert entry["product"] == product.name and entry["level"] == "L1"
        namespace, name = dataset_id(gate.published[product.name])
        assert entry["dataset"] == {"namespace": namespace, "name": name}
        written = pd.read_parquet(gate.published[product.name])
        suppressed = report.counts[f"{product.name}.suppressed_cells"]
        assert suppressed > 0 and entry["details"]["suppressedCells"] == suppressed
        assert entry["details"]["minRowsPerCell"] == int(written["n_tests"].min()) >= 10
    for output in gate_lineage(SPEC, "serve", RUN, zones).outputs:
        if "destination" in output.facets:  # a copy in an external sink: see test_exports.py
            continue
        assert _as_json(output.facets["purpose"])["product"] == Path(output.name).stem
        disclosure = _as_json(output.facets["disclosureControl"])
        assert disclosure["k"] == 10 and disclosure["countColumn"] == "n_tests"
        assert disclosure["rows"] == len(pd.read_parquet(output.name))


def _refused(spec: DatasetSpec, zones: Zones, *, enabled: bool = True) -> str:
    with pytest.raises(GateFailed) as failed:
        gate_stage(spec, "serve", zones=zones, run=RUN, enabled=enabled)
    gate = load_gate_report(zones, spec.name, RUN, "serve")
    assert gate is not None and not gate.success and not gate.published
    assert not any(zones.published(spec.name, p.name).exists() for p in spec.products)
    reason = json.loads((Path(gate.quarantined[0]) / "reason.json").read_text())
    assert reason["governance_refused"] == gate.refused
    lineage = gate_lineage(spec, "serve", RUN, zones)
    assert all("/quarantine/" in output.name for output in lineage.outputs)
    return str(failed.value)


def test_a_product_that_is_not_k_safe_is_above_its_allowed_level_and_refused(zones: Zones) -> None:
    spec = _variant(count_column=None)  # no count column: no small-cell suppression, no k-safety
    report = run_stage(spec, "serve", zones=zones, run=RUN)
    by_clinic = next(item for item in report.outputs if item.table == BY_CLINIC)
    assert by_clinic.disclosure is None and by_clinic.levels["positivity_pct"] == "L3"
    # the serve transform still declares L1: a violation, reported by the stage
    violations = [d for d in report.governance["decisions"] if d["kind"] == "violation"]  # type: ignore[index]
    assert {d["field"] for d in violations} == set(SPEC.products[1].columns)
    assert all(d["details"] == {"declared": "L1", "carried": d["level"]} for d in violations)
    message = _refused(spec, zones)
    assert f"governance refused product {BY_CLINIC}: columns above its allowed level L1" in message
    assert "positivity_pct (L3)" in message and "not a k-safe aggregate" in message
    decisions = {d["product"]: d for d in _decisions(zones, spec)}
    assert decisions[BY_CLINIC]["kind"] == "publish_refused" and decisions[BY_CLINIC]["level"] == "L3"
    others = [d for name, d in decisions.items() if name != BY_CLINIC]
    assert [d["kind"] for d in others] == ["publish_refused"] * 2
    assert all(d["reason"].startswith("not published: the serve batch was refused") for d in others)


def test_a_cell_under_k_that_survives_serve_is_refused(zones: Zones) -> None:
    report = run_stage(SPEC, "serve", zones=zones, run=RUN)
    staged = next(item for item in report.outputs if item.table == "covid_positivity_by_age_gender")
    frame = pd.read_parquet(staged.file)
    leaked = frame.iloc[[0]].assign(gender="other", n_tests=3, n_conclusive=3)
    pd.concat([frame, leaked]).to_parquet(staged.file, index=False)  # as a buggy transform would
    message = _refused(SPEC, zones, enabled=False)  # the governance rules hold without the GX suites
    gate = load_gate_report(zones, SPEC.name, RUN, "serve")
    assert gate is not None
    assert "1 cell(s) stand for fewer than k=10 rows (n_tests down to 3)" in gate.refused[staged.table]
    assert "governance refused product covid_positivity_by_age_gender" in message


def test_sensitive_data_to_a_jurisdiction_outside_the_policy_is_refused_as_a_violation(zones: Zones) -> None:
    # An L3 product (not k-safe, so its counts of results stay sensitive) is allowed in the US only.
    spec = _variant(count_column=None, allowed_level="L3", jurisdictions=["US-PA", "CA-ON"])
    run_stage(spec, "serve", zones=zones, run=RUN)
    message = _refused(spec, zones)
    assert "L3 data may not flow to CA-ON" in message
    decisions = [d for d in _decisions(zones, spec) if d.get("product") == BY_CLINIC]
    assert [d["kind"] for d in decisions] == ["violation", "publish_refused"]
    assert decisions[0]["details"] == {"jurisdiction": "CA-ON"} and decisions[0]["level"] == "L3"


def test_the_same_sensitive_product_inside_the_allowed_jurisdictions_is_published(zones: Zones) -> None:
    spec = _variant(count_column=None, allowed_level="L3", jurisdictions=["US-PA"])
    run_stage(spec, "serve", zones=zones, run=RUN)
    gate = gate_stage(spec, "serve", zones=zones, run=RUN)
    assert gate.success and BY_CLINIC in gate.published
    allowed = next(d for d in _decisions(zones, spec) if d.get("product") == BY_CLINIC)
    assert (allowed["kind"], allowed["level"]) == ("publish_allowed", "L3")


def test_a_transform_declaring_a_level_too_low_is_reported_and_overruled(
    zones: Zones, monkeypatch: pytest.MonkeyPatch
) -> None:
    def process(spec: DatasetSpec, raw: dict[str, pd.DataFrame]) -> Any:
        output = covid_testing.process(spec, raw)
        output.levels["tests"]["result"] = "L1"  # wrong: the result passes through unmasked
        return output

    wrong = ModuleType("chaintrace_test_wrong_transforms")
    wrong.store, wrong.process = covid_testing.store, process  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, wrong.__name__, wrong)
    spec = SPEC.model_copy(update={"transforms": wrong.__name__})
    report = run_stage(spec, "process", zones=zones, run=RUN)
    assert report.outputs[0].levels["result"] == "L3" and report.outputs[0].declared["result"] == "L1"
    facet = _as_json(stage_lineage(SPEC, report, zones).run_facets["governance"])
    assert facet["policyVersion"] == 2 and facet["k"] == 10
    [violation] = facet["decisions"]
    assert (violation["kind"], violation["field"], violation["level"]) == ("violation", "result", "L3")
    assert violation["details"] == {"declared": "L1", "carried": "L3"}
    assert violation["dataset"]["name"] == report.outputs[0].folder


def test_the_store_stage_reports_the_level_assigned_to_every_column(zones: Zones) -> None:
    report = run_stage(SPEC, "store", zones=zones, run=RUN)
    decisions = _as_json(stage_lineage(SPEC, report, zones).run_facets["governance"])["decisions"]
    by_field = {d["field"]: d for d in decisions}
    assert {d["kind"] for d in decisions} == {"level_assigned"}
    assert set(by_field) == {column.name for column in SPEC.tables["tests"].columns}
    assert by_field["subject_id"]["level"] == "L4"
    assert by_field["subject_id"]["reason"] == "policy rule 'direct identifiers of people'"
    assert by_field["col_rec_tat"]["reason"] == "override in the dataset spec"
