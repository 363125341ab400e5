"""Dataset specs: every shipped spec loads, and a broken one gets an error naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chaintrace_chain.spec import SPEC_DIR, SpecError, all_specs, load_spec_file


def test_every_shipped_spec_loads_and_names_an_importable_transforms_module() -> None:
    import importlib

    specs = all_specs()
    assert {spec.name for spec in specs} == {path.stem for path in SPEC_DIR.glob("*.yaml")}
    for spec in specs:
        module = importlib.import_module(spec.transforms)
        for stage in ("store", "process", "analyze", "serve"):
            assert callable(getattr(module, stage)), f"{spec.transforms}.{stage}"
        assert spec.products, spec.name
        for product in spec.products:
            assert product.allowed_level in ("L1", "L2", "L3", "L4")


def _write(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _minimal() -> dict[str, object]:
    return {
        "name": "tiny",
        "title": "Tiny",
        "domain": "test",
        "owner": "a@b.c",
        "licence": "CC0-1.0",
        "transforms": "chaintrace_chain.transforms.common",
        "sources": {"main": {"kind": "file", "path": "/tmp/x.csv", "format": "csv", "licence": "CC0-1.0"}},
        "tables": {
            "main": {"source": "main", "primary_key": ["id"], "columns": [{"name": "id", "type": "int64"}]}
        },
        "products": [],
    }


def test_a_minimal_spec_loads_and_its_levels_come_from_the_policy(tmp_path: Path) -> None:
    spec = load_spec_file(_write(tmp_path, "tiny", _minimal()))
    assert spec.tables["main"].columns[0].level is None  # no override: the policy decides
    assert spec.level_of("main", "id") == "L2"  # no rule matches a bare "id": the policy's default


def _product(**changes: object) -> dict[str, object]:
    product: dict[str, object] = {
        "name": "p", "title": "P", "table": "t", "columns": ["k", "n"], "audience": "public",
        "allowed_level": "L1", "purposes": ["x"], "count_column": "n",
    }  # fmt: skip
    product.update(changes)
    return product


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["tables"]["main"].update(source="nowhere"), "unknown source 'nowhere'"),
        (lambda d: d["tables"]["main"].update(primary_key=["nope"]), "unknown columns ['nope']"),
        (lambda d: d["sources"]["main"].pop("path"), "needs path"),
        (lambda d: d["tables"]["main"]["columns"][0].update(level="L9"), "level"),
        (lambda d: d.update(surprise=1), "surprise"),
        (lambda d: d.update(name="other"), "must match the file name"),
        (lambda d: d["tables"]["main"].update(default_level="L5"), "default_level"),
        (lambda d: d.update(products=[_product(count_column="rows")]), "'rows' must be one of the product"),
        (lambda d: d.update(products=[_product(), _product()]), "names must be unique, repeated: ['p']"),
    ],
)
def test_a_broken_spec_is_refused_naming_what_is_wrong(tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    data = _minimal()
    change(data)
    with pytest.raises(SpecError) as error:
        load_spec_file(_write(tmp_path, "tiny", data))
    assert "tiny.yaml" in str(error.value)
    assert message in str(error.value)


def test_a_spec_that_is_not_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec_file(path)
