"""The product service on its own: the registry, fail-closed levels, and the consumer's lineage event."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from referencing import Registry, Resource

import lineage
from lineage.context import LineageContext
from lineage.governance.principal import Principal
from lineage.service.products import (
    CONSUMER_NAMESPACE,
    ProductError,
    consumer_event,
    product_of,
)
from lineage.service.validation import DEFAULT_SPEC_DIR

PRODUCER = "https://github.com/chaintrace/chaintrace/tests/products"
PURPOSE_URL = "https://chaintrace.dev/spec/facets/1-0-0/PurposeDatasetFacet.json#/$defs/PurposeDatasetFacet"
FACET_FILE = Path(lineage.__file__).parent / "spec" / "chaintrace" / "PurposeOfUseRunFacet.json"
ALICE = Principal(key_id="k1", name="alice", role="consumer", clearance="L2", jurisdiction="US")


def purpose(**extra: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": PURPOSE_URL, "audience": "public",
            "allowedPurposes": ["research"], "allowedLevel": "L1", **extra}


def register(context: LineageContext, name: str, facet: dict[str, Any], minute: int) -> None:
    event = {
        "eventType": "COMPLETE", "eventTime": f"2026-04-02T09:{minute:02d}:00Z", "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": str(uuid.uuid4())}, "job": {"namespace": "chaintrace", "name": f"serve{minute}"},
        "inputs": [], "outputs": [{"namespace": "file", "name": name, "facets": {"purpose": facet}}],
    }
    assert all(r.accepted for r in context.ingest.ingest_sync([event]))


def test_product_of_a_purpose_facet() -> None:
    product = product_of("file", "/d/service/flights/delays.parquet",
                         purpose(jurisdictions=["US", 3], minCellRows=10), "t|h")
    assert product is not None
    assert product.name == "delays"  # no product field: the file stem
    assert product.allowed_purposes == ("research",) and product.allowed_level == "L1"
    assert product.jurisdictions == ("US",) and product.min_cell_rows == 10
    named = product_of("file", "/d/x.parquet", purpose(product="headline", allowedLevel="L9"), "t|h")
    assert named is not None and named.name == "headline" and named.allowed_level is None
    assert product_of("file", "/d/x.parquet", {"_deleted": True}, "t|h") is None
    assert product_of("file", "/d/x.parquet", "text", "t|h") is None


def test_newest_registration_of_a_name_wins(context: LineageContext, tmp_path: Path) -> None:
    register(context, str(tmp_path / "new.parquet"), purpose(product="p"), minute=9)
    register(context, str(tmp_path / "old.parquet"), purpose(product="p"), minute=1)
    register(context, str(tmp_path / "q.parquet"), purpose(), minute=2)
    products = context.products.products()
    assert set(products) == {"p", "q"}
    assert products["p"].dataset == str(tmp_path / "new.parquet")


def test_an_unknown_level_fails_closed(context: LineageContext, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "service" / "p.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"n": [1, 2]}), path)
    register(context, str(path), purpose(), minute=0)

    def not_yet(namespace: str, name: str) -> None:
        raise NotImplementedError

    monkeypatch.setattr(context.classification, "dataset_level", not_yet)
    [product] = context.products.products().values()
    assert context.products.effective_level(product) == "L4"
    listing = context.products.list_for(ALICE)
    assert listing["products"] == [] and listing["withheld"] == 1
    with pytest.raises(ProductError) as refused:
        context.products.download("p", ALICE, "research", "csv")
    assert refused.value.code == 403

    monkeypatch.setattr(context.classification, "dataset_level", lambda namespace, name: None)
    assert context.products.effective_level(product) == context.policy.default_level


def test_the_consumer_event_passes_the_validator_and_the_facet_schema(context: LineageContext) -> None:
    product = product_of("file", "/d/service/delays.parquet", purpose(), "t|h")
    assert product is not None
    event = consumer_event(ALICE, product, "research", "csv", 12, "2026-04-02T09:00:00.000000Z")
    outcome = context.validator.validate(event)
    assert outcome.ok and not outcome.facet_warnings, outcome
    assert event["job"] == {"namespace": CONSUMER_NAMESPACE, "name": "consumer.alice", "facets": {}}
    assert event["inputs"] == [{"namespace": "file", "name": "/d/service/delays.parquet"}]

    core = json.loads((DEFAULT_SPEC_DIR / "OpenLineage.json").read_text())
    schema = json.loads(FACET_FILE.read_text())
    registry: Registry[Any] = Registry().with_resources(
        [(core["$id"], Resource.from_contents(core)), (schema["$id"], Resource.from_contents(schema))])
    validator = jsonschema.Draft202012Validator(schema, registry=registry,
                                                format_checker=jsonschema.FormatChecker())
    run_facets = event["run"]["facets"]
    assert list(validator.iter_errors(run_facets)) == []
    assert run_facets["purpose"]["_schemaURL"].startswith(schema["$id"])
    broken = {"purpose": {**run_facets["purpose"], "rows": -1, "format": "xlsx"}}
    assert len(list(validator.iter_errors(broken))) == 2
