"""Governance in the chain without running it: the levels the policy gives the real specs, THE RULE in
the stage runner's propagation, disclosure control measured on a product, and the serve gate's rules
for one product (levels, small cells, jurisdictions)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from chaintrace_chain.governance import (
    OVERRIDE_REASON,
    TABLE_DEFAULT_REASON,
    assign_levels,
    chain_policy,
    check_product,
    is_k_safe,
    measure_disclosure,
    publish_decisions,
)
from chaintrace_chain.settings import DEFAULT_POLICY_FILE, ChainSettings
from chaintrace_chain.spec import ProductSpec, load_spec
from chaintrace_chain.stage_output import FieldSource, StageOutput
from chaintrace_chain.stages import StageError, propagate_levels, resolve_levels
from lineage.governance.policy import GovernancePolicy, load_policy

POLICY = load_policy(DEFAULT_POLICY_FILE)


def _levels(dataset: str, table: str) -> dict[str, tuple[str, str]]:
    assigned = assign_levels(load_spec(dataset), POLICY)[table]
    return {column: (item.level, item.reason) for column, item in assigned.items()}


# ------------------------------------------------------------------ the policy on the real specs
def test_covid_names_and_subject_ids_are_restricted_age_and_results_sensitive() -> None:
    levels = _levels("covid_testing", "tests")
    assert levels["fake_first_name"] == levels["fake_last_name"] == ("L4", "policy rule 'names of people'")
    assert levels["subject_id"] == ("L4", "policy rule 'direct identifiers of people'")
    assert levels["age"] == ("L3", "policy rule 'exact age of people'")
    assert levels["result"] == levels["ct_result"] == ("L3", "policy rule 'health results'")
    assert levels["gender"] == ("L2", "policy rule 'gender of people'")
    assert levels["clinic_name"] == levels["test_id"] == ("L2", "policy default level")  # not a person's
    assert levels["col_rec_tat"] == levels["rec_ver_tat"] == ("L1", OVERRIDE_REASON)


def test_mpls_coordinates_race_and_incident_numbers_are_sensitive() -> None:
    stops = _levels("mpls_stops", "stops")
    assert stops["lat"] == stops["long"] == ("L3", "policy rule 'exact coordinates'")
    assert stops["race"] == stops["preRace"] == ("L3", "policy rule 'race and ethnicity of people'")
    assert stops["idNum"] == ("L3", "policy rule 'identifiers of records about people'")
    assert stops["date"][0] == stops["personSearch"][0] == "L2"
    assert {stops[c] for c in ("problem", "policePrecinct", "neighborhood")} == {("L1", OVERRIDE_REASON)}
    assert set(_levels("mpls_stops", "neighbourhoods").values()) == {("L1", TABLE_DEFAULT_REASON)}


def test_flights_are_public_but_tail_numbers_internal_and_airport_coordinates_overridden() -> None:
    assert _levels("flights", "flights")["tailnum"] == ("L2", "policy rule 'identifiers of vehicles'")
    assert _levels("flights", "planes")["tailnum"][0] == "L2"
    # the policy alone would make the airports' coordinates sensitive; the spec says why they are not
    assert POLICY.assign("lat", "float64").level == "L3"
    assert _levels("flights", "airports")["lat"] == ("L1", OVERRIDE_REASON)
    for table in ("flights", "weather", "airlines"):
        others = {item for column, item in _levels("flights", table).items() if column != "tailnum"}
        assert others == {("L1", TABLE_DEFAULT_REASON)}, table


@pytest.mark.parametrize("dataset", ["covid_testing", "flights", "mpls_stops"])
def test_every_explicit_level_in_a_spec_is_a_real_override(dataset: str) -> None:
    """A spec writes a level only where the policy (with the table default) would say otherwise."""
    spec = load_spec(dataset)
    for table in spec.tables.values():
        for column in table.columns:
            if column.level is None:
                continue
            ruled = any(rule.matches(column.name, column.type) for rule in POLICY.rules)
            without = POLICY.assign(column.name, column.type).level
            if not ruled and table.default_level:
                without = table.default_level
            assert without != column.level, f"{dataset}.{column.name}: level {column.level} is the policy's"


@pytest.mark.parametrize(
    ("column", "column_type", "level"),
    [
        ("firstName", "str", "L4"), ("patient_surname", "str", "L4"), ("PatientID", "int64", "L4"),
        ("dateOfBirth", "date", "L4"), ("email", "str", "L4"), ("home_address", "str", "L4"),
        ("case_number", "str", "L3"), ("latitude", "float64", "L3"), ("pickup_lng", "float64", "L3"),
        ("zip_code", "str", "L3"), ("perceivedRace", "str", "L3"), ("ethnicity", "str", "L3"),
        ("diagnosis", "str", "L3"), ("age_years", "int64", "L3"), ("sex", "str", "L2"),
        ("license_plate", "str", "L2"),
        # look-alikes stay at the default level
        ("clinic_name", "str", "L2"), ("name", "str", "L2"), ("test_id", "str", "L2"),
        ("lat_grid", "float64", "L2"), ("latitude", "str", "L2"), ("age_band", "str", "L2"),
        ("trace", "str", "L2"), ("stage", "int64", "L2"),
    ],
)  # fmt: skip
def test_policy_rules_fit_real_column_names(column: str, column_type: str, level: str) -> None:
    assert POLICY.assign(column, column_type).level == level


def test_the_policy_file_comes_from_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ChainSettings().policy_file == DEFAULT_POLICY_FILE and DEFAULT_POLICY_FILE.is_file()
    path = tmp_path / "policy.yaml"
    path.write_text("version: 7\nk: 25\nrules: []\n")
    monkeypatch.setenv("CHAINTRACE_POLICY_FILE", str(path))
    assert (chain_policy().version, chain_policy().k) == (7, 25)
    assert load_spec("covid_testing").level_of("tests", "subject_id", chain_policy()) == "L2"


# ------------------------------------------------------------------ THE RULE in the stage runner
def _output(lineage: dict[str, list[FieldSource]], levels: dict[str, str] | None = None) -> StageOutput:
    frame = pd.DataFrame({column: [1] for column in lineage})
    return StageOutput({"t": frame}, {"t": lineage}, levels={"t": levels or {}})


INPUTS = {"src": {"name": "L4", "race": "L3", "day": "L2", "delay": "L1"}}


def test_indirect_edges_carry_levels_and_only_masking_lowers() -> None:
    output = _output(
        {
            "n": [FieldSource("src", "delay", subtype="AGGREGATION"), FieldSource("src", "race", "INDIRECT")],
            "masked": [FieldSource("src", "name", subtype="TRANSFORMATION", masking=True)],
            "undeclared_mask": [FieldSource("src", "name", masking=True), FieldSource("src", "day")],
        },
        {"masked": "L2"},
    )
    # a transform lowers only by declaring; an undeclared masked column keeps its inputs' highest level
    assert propagate_levels(output, INPUTS) == {"t": {"n": "L3", "masked": "L2", "undeclared_mask": "L4"}}


def test_a_declared_level_below_what_the_edges_carry_is_a_violation_and_kept_higher() -> None:
    output = _output({"n": [FieldSource("src", "race", "INDIRECT", "GROUP_BY")]}, {"n": "L1"})
    got = resolve_levels(output, INPUTS)["t"]["n"]
    assert (got.level, got.declared, got.carried, got.violation) == ("L3", "L1", "L3", True)


def test_every_edge_into_a_k_safe_dataset_lowers_to_the_declared_level() -> None:
    output = _output({"n": [FieldSource("src", "name"), FieldSource("src", "race", "INDIRECT")]}, {"n": "L1"})
    safe = resolve_levels(output, INPUTS, k_safe={"t"})["t"]["n"]
    assert (safe.level, safe.violation) == ("L1", False)
    assert resolve_levels(output, INPUTS)["t"]["n"].level == "L4"


def test_lineage_naming_a_column_without_a_level_is_an_error() -> None:
    with pytest.raises(StageError, match=r"t\.n: its lineage names src\.ghost, which has no classification"):
        propagate_levels(_output({"n": [FieldSource("src", "ghost")]}), INPUTS)


# ------------------------------------------------------------------ disclosure control and the serve rules
def _product(**changes: object) -> ProductSpec:
    fields: dict[str, object] = {
        "name": "p", "title": "P", "table": "agg", "columns": ["race", "n"], "audience": "public",
        "allowed_level": "L1", "purposes": ["x"], "jurisdictions": ["US-MN"], "count_column": "n",
    }  # fmt: skip
    fields.update(changes)
    return ProductSpec.model_validate(fields)


AGG_LEVELS = {"agg": {"race": "L3", "n": "L3"}}
LINEAGE = {"race": [FieldSource("agg", "race")], "n": [FieldSource("agg", "n")]}


def _check(frame: pd.DataFrame, product: ProductSpec, policy: GovernancePolicy = POLICY):  # type: ignore[no-untyped-def]
    declared = dict.fromkeys(product.columns, "L1")
    dataset = ("file", "/service/p.parquet")
    return check_product(product, dataset, frame, LINEAGE, declared, AGG_LEVELS, policy, suppressed=2)


def test_disclosure_is_measured_on_the_written_cells() -> None:
    frame = pd.DataFrame({"race": ["a", "b"], "n": [12, 40]})
    measured = measure_disclosure(frame, _product(min_cell_rows=5), POLICY, suppressed=3)
    assert measured == {"k": 10, "countColumn": "n", "rows": 2, "minRowsPerCell": 12, "suppressedCells": 3}
    assert is_k_safe(measured, POLICY)
    assert measure_disclosure(frame, _product(min_cell_rows=20), POLICY, suppressed=0)["k"] == 20  # type: ignore[index]
    empty = measure_disclosure(frame.iloc[0:0], _product(), POLICY, suppressed=2)
    assert empty is not None and empty["minRowsPerCell"] is None and is_k_safe(empty, POLICY)
    missing_count = pd.DataFrame({"race": ["a"], "n": [None]})
    assert not is_k_safe(measure_disclosure(missing_count, _product(), POLICY, suppressed=0), POLICY)
    assert measure_disclosure(frame, _product(count_column=None), POLICY, suppressed=0) is None


def test_a_k_safe_product_at_its_allowed_level_passes() -> None:
    verdict = _check(pd.DataFrame({"race": ["a", "b"], "n": [12, 40]}), _product())
    assert (verdict.problems, verdict.level) == ([], "L1")
    [allowed] = publish_decisions([verdict], batch_refused=None)
    assert allowed["kind"] == "publish_allowed" and allowed["product"] == "p"
    assert allowed["details"]["minRowsPerCell"] == 12 and allowed["details"]["suppressedCells"] == 2


def test_a_product_that_is_not_k_safe_carries_its_inputs_levels_and_is_refused() -> None:
    verdict = _check(pd.DataFrame({"race": ["a", "b"], "n": [12, 40]}), _product(count_column=None))
    assert verdict.level == "L3"
    assert verdict.problems == [
        "columns above its allowed level L1: n (L3), race (L3) "
        "(not a k-safe aggregate, so its inputs' levels carry through)"
    ]


def test_a_cell_under_k_is_refused_even_when_the_levels_would_allow_it() -> None:
    # k-safe for the policy (k=10) but the product asks for 20 rows per cell
    verdict = _check(pd.DataFrame({"race": ["a", "b"], "n": [15, 40]}), _product(min_cell_rows=20))
    assert verdict.problems == ["1 cell(s) stand for fewer than k=20 rows (n down to 15)"]
    # under the policy's k: not k-safe either, so the levels are refused too
    small = _check(pd.DataFrame({"race": ["a", "b"], "n": [3, 40]}), _product(allowed_level="L3"))
    assert small.problems == ["1 cell(s) stand for fewer than k=10 rows (n down to 3)"]


def test_sensitive_data_to_a_jurisdiction_outside_the_policy_is_a_violation() -> None:
    raw = _product(allowed_level="L3", count_column=None, jurisdictions=["US-MN", "FR"])
    verdict = _check(pd.DataFrame({"race": ["a"], "n": [40]}), raw)
    assert verdict.level == "L3" and verdict.blocked_jurisdictions == ["FR"]
    assert verdict.problems == ["L3 data may not flow to FR (policy jurisdictions: L3: ['US'], L4: "
                                "['US-PA', 'US-MN', 'US-NY'])"]  # fmt: skip
    decisions = publish_decisions([verdict], batch_refused=None)
    assert [d["kind"] for d in decisions] == ["violation", "publish_refused"]
    assert decisions[0]["details"] == {"jurisdiction": "FR"} and decisions[0]["level"] == "L3"
    # public data flows anywhere
    assert _check(pd.DataFrame({"race": ["a"], "n": [40]}), _product(jurisdictions=["FR"])).problems == []


def test_a_refused_batch_refuses_the_products_that_passed_their_own_rules() -> None:
    verdict = _check(pd.DataFrame({"race": ["a"], "n": [40]}), _product())
    [refused] = publish_decisions([verdict], batch_refused="the serve batch was refused (products q)")
    assert refused["kind"] == "publish_refused"
    assert refused["reason"] == "not published: the serve batch was refused (products q)"
