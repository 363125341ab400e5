"""lineage.governance.redaction on hand-built answers: the rules of the walk, one at a time."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from lineage.governance.redaction import (
    WITHHELD_HEADER,
    build_view,
    field_placeholder,
    placeholder,
    redact,
)

SECRET = ("file", "/raw/people")
OPEN = ("file", "/out/report")
# The view of an L2 reader: /raw/people is withheld; /out/report is visible but its column "dob" is not
# (a view the walk must honour even though today's rule puts such columns in withheld datasets only).
VIEW = build_view("L2", {SECRET: "L4"}, {SECRET: frozenset({"name"}), OPEN: frozenset({"dob"})},
                  {"/raw/people": 1, "/out/report": 1})


def test_placeholders_are_stable_opaque_and_distinct() -> None:
    expected = "withheld:" + hashlib.sha256(b"file:/raw/people").hexdigest()[:16]
    assert placeholder(*SECRET) == expected
    assert placeholder("s3://b", "/raw/people") != expected
    assert field_placeholder(*SECRET, "name") != field_placeholder(*SECRET, "dob")
    assert len(field_placeholder(*SECRET, "name")) == len("withheld:") + 16


def dataset(key: tuple[str, str], *columns: str) -> dict[str, Any]:
    return {
        "id": {"namespace": key[0], "name": key[1]}, "namespace": key[0], "name": key[1],
        "physicalName": key[1], "sourceName": "https://source.example", "description": "about it",
        "fields": [{"name": c, "type": "string", "tags": [], "description": None} for c in columns],
        "tags": ["classification:L2"],
        "facets": {
            "schema": {"fields": [{"name": c, "type": "string"} for c in columns]},
            "tags": {"tags": [{"key": "classification", "value": "L2", "field": c} for c in columns]},
            "columnLineage": {"fields": {c: {"inputFields": [
                {"namespace": SECRET[0], "name": SECRET[1], "field": "name",
                 "transformations": [{"type": "DIRECT", "description": "sha256(name)", "masking": True}]}]}
                for c in columns}},
            "dataQualityMetrics": {"rowCount": 3, "columnMetrics": {c: {"nullCount": 0} for c in columns}},
            "dataQualityAssertions": {"assertions": [{"assertion": "not_null", "success": True, "column": c}
                                                     for c in columns]},
        },
    }


def test_a_withheld_dataset_becomes_a_placeholder() -> None:
    body, headers = redact({"datasets": [dataset(SECRET, "name")]}, VIEW)
    [shown] = body["datasets"]
    ph = placeholder(*SECRET)
    assert shown["id"] == {"namespace": "file", "name": ph} and shown["name"] == shown["physicalName"] == ph
    assert (shown["fields"], shown["tags"], shown["facets"]) == ([], [], {})
    assert (shown["description"], shown["sourceName"], shown["withheld"]) == (None, "file", True)
    assert body["withheld"]["datasets"] == 1 and headers == {WITHHELD_HEADER: "1,0"}


def test_hidden_columns_leave_a_visible_dataset_and_its_facets() -> None:
    original = dataset(OPEN, "region", "dob")
    body, headers = redact(original, VIEW)
    assert original == dataset(OPEN, "region", "dob")  # the input is not changed
    assert [f["name"] for f in body["fields"]] == ["region"]
    facets = body["facets"]
    assert [f["name"] for f in facets["schema"]["fields"]] == ["region"]
    assert [t["field"] for t in facets["tags"]["tags"]] == ["region"]
    assert list(facets["columnLineage"]["fields"]) == ["region"]
    assert list(facets["dataQualityMetrics"]["columnMetrics"]) == ["region"]
    assert [a["column"] for a in facets["dataQualityAssertions"]["assertions"]] == ["region"]
    # The lineage of "region" comes from the withheld source: its input column is a placeholder, and the
    # description of that edge (which names the column) is gone.
    [source] = facets["columnLineage"]["fields"]["region"]["inputFields"]
    assert source["name"] == placeholder(*SECRET) and source["field"] == field_placeholder(*SECRET, "name")
    assert source["transformations"] == [{"type": "DIRECT", "description": None, "masking": True}]
    assert "dob" not in str(body) and "/raw/people" not in str(body)
    assert headers == {WITHHELD_HEADER: "1,2"}  # the source; dob and the source's name column


def test_references_everywhere_use_the_same_placeholder() -> None:
    ph = placeholder(*SECRET)
    answer = {
        "graph": [{"id": "dataset:file:/raw/people", "inEdges": [],
                   "outEdges": [{"origin": "dataset:file:/raw/people", "destination": "job:etl:x"}]}],
        "run": {"inputDatasetVersions": [
            {"datasetVersionId": {"namespace": "file", "name": "/raw/people", "version": "v1"},
             "facets": {"dataQualityMetrics": {"columnMetrics": {"name": {}}}}}]},
        "decision": {"dataset": {"namespace": "file", "name": "/out/report"}, "field": "dob", "level": "L3"},
        "note": "/raw/people",
        "column": {"namespace": "file", "dataset": "/out/report", "field": "dob", "fieldType": "date",
                   "transformationDescription": "age(dob)",
                   "inputFields": [{"namespace": "file", "dataset": "/raw/people", "field": "name",
                                    "transformationDescription": "from name"}]},
        "edge": {"origin": "datasetField:file:/out/report:dob",
                 "destination": "datasetField:file:/out/report:x"},
    }
    body, _ = redact(copy.deepcopy(answer), VIEW)
    node = body["graph"][0]
    assert node["id"] == node["outEdges"][0]["origin"] == f"dataset:file:{ph}"
    version = body["run"]["inputDatasetVersions"][0]
    assert version["datasetVersionId"]["name"] == ph and version["facets"] == {}
    assert body["decision"]["field"] == field_placeholder(*OPEN, "dob")
    assert body["note"] == ph
    column = body["column"]
    assert column["field"] == field_placeholder(*OPEN, "dob") and column["withheld"] is True
    assert column["fieldType"] is None and column["transformationDescription"] is None
    assert column["inputFields"][0]["transformationDescription"] is None
    assert body["edge"]["origin"] == f"datasetField:file:/out/report:{field_placeholder(*OPEN, 'dob')}"
    assert "dob" not in str(body) and "/raw/people" not in str(body)


def test_a_name_shared_with_a_visible_dataset_is_not_replaced_in_free_text() -> None:
    shared = build_view("L2", {SECRET: "L4"}, {}, {"/raw/people": 2})
    body, _ = redact({"note": "/raw/people", "ref": {"namespace": "file", "name": "/raw/people"}}, shared)
    assert body["note"] == "/raw/people"  # another namespace has a visible /raw/people
    assert body["ref"]["name"] == placeholder(*SECRET)


def test_nothing_withheld_changes_nothing() -> None:
    answer = {"datasets": [dataset(("file", "/plain"), "a")]}
    del answer["datasets"][0]["facets"]["columnLineage"]  # (it names the withheld source)
    answer["jobs"] = [{"namespace": "etl", "name": "x", "inputs": [{"namespace": "file", "name": "/plain"}]}]
    body, headers = redact(copy.deepcopy(answer), VIEW)
    assert body == answer and headers == {}


def test_placeholders_resolve_back_for_the_caller_who_follows_them() -> None:
    ph = placeholder(*SECRET)
    assert VIEW.resolve("file", ph) == SECRET
    assert VIEW.resolve("file", "withheld:0000000000000000") == ("file", "withheld:0000000000000000")
    assert VIEW.resolve(*OPEN) == OPEN
    assert VIEW.resolve_node_id(f"dataset:file:{ph}") == "dataset:file:/raw/people"
    assert VIEW.resolve_node_id(f"datasetField:file:{ph}:{field_placeholder(*SECRET, 'name')}") == \
        "datasetField:file:/raw/people:name"
    assert VIEW.resolve_node_id("dataset:file:/out/report") == "dataset:file:/out/report"
