"""The GX quality gate with real Great Expectations 1.x on small frames (suites written per test)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from chaintrace_chain.gate_suite import GateConfigError, baseline_path, read_baseline
from chaintrace_chain.gates import EMPTY_TABLE, GateResult, facets_as_json, gate_facets, quarantine, run_gate
from chaintrace_chain.zones import Zones

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "lineage" / "spec" / "openlineage" / "2-0-2"
SUITES = Path(__file__).resolve().parent / "gate_suites"


def write_suite(gx_root: Path, stem: str = "demo__process", **changes: Any) -> Path:
    """Copy the fixture suite into ``gx_root`` (a tmp GX folder), with top-level keys replaced."""
    suite = json.loads((SUITES / "demo__process.json").read_text())
    suite.update(changes)
    path = gx_root / "expectations" / f"{stem}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(suite))
    return path


def good_flights(rows: int = 8) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "flight_id": list(range(1, rows + 1)),
            "carrier": (["AA", "UA", "DL"] * rows)[:rows],
            "distance": [100 + 10 * i for i in range(rows)],
            "tailnum": [f"N{100 + i}AA" for i in range(rows)],
        }
    )


def airlines() -> pd.DataFrame:
    return pd.DataFrame({"carrier": ["AA", "UA", "DL", None], "name": ["American", "United", "Delta", "?"]})


@pytest.fixture
def gx_root(tmp_path: Path) -> Path:
    root = tmp_path / "gx"
    write_suite(root)
    return root


@pytest.fixture
def zones(tmp_path: Path) -> Zones:
    return Zones.at(tmp_path / "data")


def gate(frame: pd.DataFrame, zones: Zones, gx_root: Path, run: str = "r1") -> GateResult:
    return run_gate(
        "demo",
        "process",
        {"flights": frame, "airlines": airlines()},
        run_key=run,
        zones=zones,
        gx_root=gx_root,
    )


def failed_types(result: GateResult) -> set[str]:
    return {a.expectation_type for a in result.failed}


def test_passing_gate_records_baseline_and_builds_docs_under_the_data_root(
    zones: Zones, gx_root: Path
) -> None:
    before = sorted(p.relative_to(gx_root) for p in gx_root.rglob("*"))
    result = gate(good_flights(), zones, gx_root)
    assert result.success, result.failed
    assert result.row_count == 8 and result.table == "flights" and result.suite == "demo__process"
    assert result.statistics["unsuccessful"] == 0 and result.statistics["evaluated"] == 8
    assert read_baseline(zones, "demo", "process") == 8
    assert result.parameters["reference_set_sizes"] == {"known_carriers": 3}  # None is not a carrier
    # metrics: rowCount, per column nulls/distinct, min/max only where numeric
    assert result.metrics["rowCount"] == 8
    assert result.metrics["columnMetrics"]["distance"] == {
        "nullCount": 0,
        "distinctCount": 8,
        "min": 100.0,
        "max": 170.0,
    }
    assert "min" not in result.metrics["columnMetrics"]["carrier"]
    # Data Docs: the run's page under <root>/quality/docs, nothing written into the git-tracked folder
    assert result.docs_page and result.docs_page.startswith(zones.docs_dir().as_uri())
    page = Path(result.docs_page.removeprefix("file://"))
    assert page.is_file() and "demo__process" in page.read_text()
    assert (zones.docs_dir() / "index.html").is_file()
    assert sorted(p.relative_to(gx_root) for p in gx_root.rglob("*")) == before
    # the whole result is plain JSON and reads back
    data = json.loads(json.dumps(result.to_dict()))
    assert GateResult.from_dict(data) == result


def bad(column: str, index: int, value: Any) -> pd.DataFrame:
    frame = good_flights()
    frame.loc[index, column] = value
    return frame


@pytest.mark.parametrize(
    ("frame", "expectation", "column", "example"),
    [
        (bad("carrier", 2, None), "expect_column_values_to_not_be_null", "carrier", None),
        (bad("distance", 3, 99_999), "expect_column_values_to_be_between", "distance", 99_999),
        (bad("carrier", 1, "ZZ"), "expect_column_values_to_be_in_set", "carrier", "ZZ"),
        (bad("flight_id", 4, 1), "expect_column_values_to_be_unique", "flight_id", 1),
    ],
    ids=["null", "out_of_range", "not_in_reference_set", "duplicate_key"],
)
def test_each_kind_of_bad_value_fails_the_right_assertion(
    frame: pd.DataFrame, expectation: str, column: str, example: Any, zones: Zones, gx_root: Path
) -> None:
    result = gate(frame, zones, gx_root)
    assert not result.success
    failing = [a for a in result.failed if a.expectation_type == expectation]
    assert len(failing) == 1, [a.expectation_type for a in result.failed]
    assertion = failing[0]
    assert assertion.column == column and assertion.unexpected_count in (1, 2)
    if example is not None:
        assert example in assertion.partial_unexpected
    assert read_baseline(zones, "demo", "process") is None  # a failed gate never sets the baseline


def test_reference_set_parameter_reaches_value_set(zones: Zones, gx_root: Path) -> None:
    result = gate(bad("carrier", 1, "ZZ"), zones, gx_root)
    in_set = next(a for a in result.assertions if a.expectation_type == "expect_column_values_to_be_in_set")
    assert in_set.expected["value_set"] == ["AA", "DL", "UA"]


def test_duplicate_compound_key_fails(zones: Zones, gx_root: Path) -> None:
    frame = good_flights()
    frame.loc[5, ["carrier", "tailnum"]] = frame.loc[0, ["carrier", "tailnum"]].to_list()
    result = gate(frame, zones, gx_root)
    assert failed_types(result) == {"expect_compound_columns_to_be_unique"}
    assert result.failed[0].columns == ["carrier", "tailnum"] and result.failed[0].column is None


def test_wrong_type_fails(zones: Zones, gx_root: Path) -> None:
    frame = good_flights()
    frame["distance"] = frame["distance"].astype(str)
    result = gate(frame, zones, gx_root)
    assert "expect_column_values_to_be_in_type_list" in failed_types(result)


def test_empty_frame_fails_even_when_first_run_allows_zero_rows(zones: Zones, gx_root: Path) -> None:
    suite = json.loads((SUITES / "demo__process.json").read_text())
    suite["meta"]["chaintrace"]["first_run_rows"] = [0, 100]
    write_suite(gx_root, meta=suite["meta"])
    result = gate(good_flights().iloc[0:0], zones, gx_root)
    assert not result.success
    assert [a.expectation_type for a in result.failed] == [EMPTY_TABLE]
    assert read_baseline(zones, "demo", "process") is None


def test_row_count_far_from_the_previous_passed_run_fails_and_keeps_the_baseline(
    zones: Zones, gx_root: Path
) -> None:
    assert gate(good_flights(10), zones, gx_root, "r1").success
    assert read_baseline(zones, "demo", "process") == 10
    grown = gate(good_flights(30), zones, gx_root, "r2")  # tolerance 0.5: 5..15 rows allowed
    assert failed_types(grown) == {"expect_table_row_count_to_be_between"}
    row_check = grown.failed[0]
    assert row_check.observed_value == 30 and row_check.expected == {"min_value": 5, "max_value": 15}
    assert grown.parameters["previous_rows"] == 10
    assert read_baseline(zones, "demo", "process") == 10
    assert gate(good_flights(14), zones, gx_root, "r3").success
    assert json.loads(baseline_path(zones, "demo", "process").read_text())["run"] == "r3"


def test_first_run_uses_first_run_rows(zones: Zones, gx_root: Path) -> None:
    result = gate(good_flights(2), zones, gx_root)  # fixture: first_run_rows [3, 1000]
    assert failed_types(result) == {"expect_table_row_count_to_be_between"}
    assert result.parameters["min_rows"] == 3 and result.parameters["previous_rows"] is None


def test_warning_severity_is_reported_but_does_not_fail(zones: Zones, gx_root: Path) -> None:
    frame = good_flights()
    frame.loc[2, "tailnum"] = "BAD-TAIL"
    result = gate(frame, zones, gx_root)
    assert result.success
    (warned,) = result.failed
    assert warned.expectation_type == "expect_column_values_to_match_regex" and warned.severity == "warning"
    facet = facets_as_json(gate_facets(result))["dataQualityAssertions"]
    assert {a["severity"] for a in facet["assertions"] if not a["success"]} == {"warn"}


# ---------------------------------------------------------------------------------- OpenLineage facets
def facet_validator(facet_file: str) -> Draft202012Validator:
    core = json.loads((SPEC / "OpenLineage.json").read_text())
    schema = json.loads((SPEC / "facets" / facet_file).read_text())
    registry = Registry().with_resources(
        [
            (core["$id"], Resource.from_contents(core)),
            (schema["$id"], Resource.from_contents(schema)),
        ]
    )
    return Draft202012Validator(schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_facets_validate_against_the_official_schemas(zones: Zones, gx_root: Path) -> None:
    assertions_schema = facet_validator("DataQualityAssertionsDatasetFacet.json")
    metrics_schema = facet_validator("DataQualityMetricsInputDatasetFacet.json")
    for frame in (good_flights(), bad("carrier", 2, None), good_flights().iloc[0:0]):
        facets = facets_as_json(
            gate_facets(gate(frame, zones, gx_root), producer="https://example.org/chaintrace")
        )
        assertions, metrics = facets["dataQualityAssertions"], facets["dataQualityMetrics"]
        assertions_schema.validate({"dataQualityAssertions": assertions})
        metrics_schema.validate({"dataQualityMetrics": metrics})
        assert assertions["_producer"] == metrics["_producer"] == "https://example.org/chaintrace"
        assert assertions["_schemaURL"].endswith(
            "DataQualityAssertionsDatasetFacet.json#/$defs/DataQualityAssertionsDatasetFacet"
        )
        assert metrics["_schemaURL"].endswith("#/$defs/DataQualityMetricsInputDatasetFacet")
    empty_check = next(a for a in assertions["assertions"] if a["name"] == EMPTY_TABLE)  # the last frame
    assert empty_check == {
        "assertion": "row_count",
        "success": False,
        "severity": "error",
        "name": EMPTY_TABLE,
        "expected": '{"min_rows": 1}',
        "actual": "0",
        "params": {},
    }
    # the failed not-null run: counts and examples end up in `actual` as a string
    facets = facets_as_json(gate_facets(gate(bad("carrier", 2, None), zones, gx_root)))
    not_null = next(a for a in facets["dataQualityAssertions"]["assertions"] if a["assertion"] == "not_null")
    assert not not_null["success"] and not_null["column"] == "carrier"
    assert json.loads(not_null["actual"])["unexpected_count"] == 1


def test_a_column_the_data_lacks_fails_the_gate_instead_of_erroring(zones: Zones, gx_root: Path) -> None:
    """A source that lost a column is bad data: quarantined like any failure, not a config error."""
    result = gate(good_flights().drop(columns=["tailnum"]), zones, gx_root)
    assert not result.success
    on_tailnum = [a for a in result.assertions if a.column == "tailnum"]
    assert on_tailnum and not any(a.success for a in on_tailnum)
    assert read_baseline(zones, "demo", "process") is None


# -------------------------------------------------------------------------------------- config errors
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda root, tables: (root / "expectations" / "demo__process.json").unlink(), "not found"),
        (
            lambda root, tables: (root / "expectations" / "demo__process.json").write_text("{not json"),
            "not valid JSON",
        ),
        (lambda root, tables: tables.pop("flights"), "table 'flights'"),
        (
            lambda root, tables: tables.pop("airlines"),
            "reference set 'known_carriers' needs table 'airlines'",
        ),
        (
            lambda root, tables: write_suite(root, meta={"chaintrace": {"dataset": "demo"}}),
            "meta.chaintrace.stage",
        ),
        (
            lambda root, tables: write_suite(
                root,
                expectations=[
                    {
                        "type": "expect_column_values_to_be_in_set",
                        "kwargs": {"column": "carrier", "value_set": {"$PARAMETER": "x"}},
                    }
                ],
            ),
            "['x']",
        ),
        (
            lambda root, tables: write_suite(
                root,
                expectations=[{"type": "expect_column_values_to_be_purple", "kwargs": {"column": "carrier"}}],
            ),
            "not a valid GX ExpectationSuite",
        ),
    ],
    ids=[
        "missing_suite",
        "corrupt_json",
        "missing_table",
        "missing_reference_table",
        "bad_meta",
        "unknown_parameter",
        "unknown_expectation",
    ],
)
def test_config_errors_are_clear_and_distinct_from_failures(
    change: Any, message: str, zones: Zones, gx_root: Path
) -> None:
    tables = {"flights": good_flights(), "airlines": airlines()}
    change(gx_root, tables)
    with pytest.raises(GateConfigError) as caught:
        run_gate("demo", "process", tables, run_key="r1", zones=zones, gx_root=gx_root)
    assert message in str(caught.value)
    assert read_baseline(zones, "demo", "process") is None


# ------------------------------------------------------------------------------------------ quarantine
def test_quarantine_moves_partitions_and_writes_the_reason(zones: Zones, gx_root: Path) -> None:
    partition = zones.partition("process", "demo", "flights", "r1")
    partition.mkdir(parents=True)
    (partition / "part.parquet").write_bytes(b"PAR1")
    result = gate(bad("distance", 3, 99_999), zones, gx_root)
    target = quarantine(result, [partition], zones=zones)
    assert target == zones.quarantine("demo", "process", "r1")
    assert not partition.exists() and (target / "flights" / "part.parquet").read_bytes() == b"PAR1"
    reason = json.loads((target / "reason.json").read_text())
    assert reason["suite"] == "demo__process"
    assert [f["expectation_type"] for f in reason["failed_expectations"]] == [
        "expect_column_values_to_be_between"
    ]
    assert reason["partitions"] == [{"from": str(partition), "to": str(target / "flights")}]
    with pytest.raises(ValueError, match="passed"):
        quarantine(gate(good_flights(), zones, gx_root, "r2"), [partition], zones=zones)


def test_gates_in_parallel_processes_share_one_docs_site(zones: Zones, gx_root: Path) -> None:
    for name in ("one__process", "two__process"):
        suite = json.loads((SUITES / "demo__process.json").read_text())
        suite["meta"]["chaintrace"]["dataset"] = name.split("__")[0]
        write_suite(gx_root, name, name=name, meta=suite["meta"])
    script = textwrap.dedent(f"""
        import sys, pandas as pd
        from pathlib import Path
        from chaintrace_chain.gates import run_gate
        from chaintrace_chain.zones import Zones
        frame = pd.DataFrame({{"flight_id": range(1, 9), "carrier": ["AA"] * 8, "distance": [100] * 8,
                              "tailnum": [f"N{{i}}AA" for i in range(8)]}})
        airlines = pd.DataFrame({{"carrier": ["AA"]}})
        result = run_gate(sys.argv[1], "process", {{"flights": frame, "airlines": airlines}}, run_key="r1",
                          zones=Zones.at({str(zones.root)!r}), gx_root=Path({str(gx_root)!r}))
        sys.exit(0 if result.success and result.docs_page else 1)
    """)
    procs = [
        subprocess.Popen([sys.executable, "-c", script, dataset], stderr=subprocess.PIPE)
        for dataset in ("one", "two")
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    index = (zones.docs_dir() / "index.html").read_text()
    assert "one__process" in index and "two__process" in index
    assert read_baseline(zones, "one", "process") == read_baseline(zones, "two", "process") == 8
