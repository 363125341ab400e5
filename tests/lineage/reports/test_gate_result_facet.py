"""The chain's custom ``gateResult`` input facet follows its JSON Schema (what the reports rely on)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

if TYPE_CHECKING:
    from tests.lineage.reports.conftest import ChainRuns

ROOT = Path(__file__).resolve().parents[3]


def test_every_gate_input_carries_a_valid_gate_result_facet(chain_runs: ChainRuns) -> None:
    core = json.loads((ROOT / "lineage/spec/openlineage/2-0-2/OpenLineage.json").read_text())
    schema_file = ROOT / "plugins/chaintrace_chain/schemas/GateResultInputDatasetFacet.json"
    schema = json.loads(schema_file.read_text())
    registry = Registry().with_resources([(d["$id"], Resource.from_contents(d)) for d in (core, schema)])
    validator = Draft202012Validator(schema, registry=registry)
    gates = [e for e in chain_runs.events if e["job"]["name"].endswith(".gate")]
    verdicts = []
    for event in gates:
        (validated,) = [d for d in event["inputs"] if "gateResult" in d.get("inputFacets", {})]
        facet = validated["inputFacets"]["gateResult"]
        validator.validate({"gateResult": facet})
        assert facet["_schemaURL"] == schema["$id"] + "#/$defs/GateResultInputDatasetFacet"
        assert facet["docsPage"].startswith("file://")
        assert facet["stage"] == event["job"]["name"].split(".")[1]
        assert facet["evaluated"] == len(validated["inputFacets"]["dataQualityAssertions"]["assertions"])
        verdicts.append(facet["success"])
    assert verdicts.count(False) == 1  # the corrupted analyze batch of the bad run
    bad = {"success": False, "stage": "nowhere", "suite": "s", "evaluated": 1, "successful": 0,
           "_producer": "p", "_schemaURL": "u"}
    assert not validator.is_valid({"gateResult": bad})
