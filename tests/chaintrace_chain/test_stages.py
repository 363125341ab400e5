"""The stage runner's own rules: level propagation, reports, missing inputs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from chaintrace_chain.facets import dataset_id, tags_facet
from chaintrace_chain.spec import load_spec
from chaintrace_chain.stage_output import FieldSource, StageOutput
from chaintrace_chain.stages import StageError, load_report, propagate_levels, run_stage
from chaintrace_chain.zones import Zones, move_to_quarantine, run_key


def test_levels_follow_direct_sources_unless_the_transform_declares_one() -> None:
    output = StageOutput(
        tables={"t": pd.DataFrame({"name": ["a"], "band": ["b"], "n": [1], "key": ["k"]})},
        lineage={
            "t": {
                "name": [FieldSource("src", "first_name")],
                "band": [FieldSource("src", "age", subtype="TRANSFORMATION", masking=True)],
                "n": [
                    FieldSource("src", "id", subtype="AGGREGATION"),
                    FieldSource("src", "race", "INDIRECT", "GROUP_BY"),
                ],
                "key": [FieldSource("src", "id"), FieldSource("src", "age")],
            }
        },
        levels={"t": {"band": "L2"}},
    )
    inputs = {"src": {"first_name": "L4", "age": "L3", "id": "L3", "race": "L3"}}
    assert propagate_levels(output, inputs) == {"t": {"name": "L4", "band": "L2", "n": "L3", "key": "L3"}}


def test_a_stage_without_its_previous_report_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="stage 'collect' has no report for run r1"):
        run_stage(load_spec("covid_testing"), "store", zones=Zones.at(tmp_path), run="r1")
    with pytest.raises(StageError, match="unknown stage 'bake'"):
        run_stage(load_spec("covid_testing"), "bake", zones=Zones.at(tmp_path), run="r1")


def test_a_corrupt_report_is_an_error_naming_the_file(tmp_path: Path) -> None:
    zones = Zones.at(tmp_path)
    path = zones.report("covid_testing", "r1", "collect")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(StageError, match="unreadable"):
        load_report(zones, "covid_testing", "r1", "collect")


def test_run_keys_are_safe_folder_names() -> None:
    assert run_key("scheduled__2026-11-27T00:00:00+00:00") == "scheduled__2026-11-27T00_00_00+00_00"
    assert "/" not in run_key("manual/../x")


def test_dataset_ids_follow_the_openlineage_naming_spec() -> None:
    assert dataset_id("/data/raw/flights/flights") == ("file", "/data/raw/flights/flights")
    assert dataset_id("file:///srv/x.csv") == ("file", "/srv/x.csv")
    assert dataset_id("https://example.org:8443/a/b.csv") == ("https://example.org:8443", "/a/b.csv")


def test_tags_carry_a_level_per_column_and_the_dataset_level() -> None:
    tags = tags_facet({"a": "L1", "b": "L3"}).tags
    assert {(t.field, t.value) for t in tags} == {("a", "L1"), ("b", "L3"), (None, "L3")}


@pytest.mark.parametrize("root", ["local", "memory://quarantine-test/root"])
def test_quarantine_moves_partitions_out_of_the_zone(tmp_path: Path, root: str) -> None:
    zones = Zones.at(tmp_path if root == "local" else root)
    partition = zones.partition("store", "ds", "t", "r1")
    (partition / "part.parquet").write_bytes(b"x")
    moved = move_to_quarantine([partition], zones.quarantine("ds", "store", "r1"))
    assert not partition.exists()
    assert (moved[0] / "part.parquet").read_bytes() == b"x"
