"""The masking helpers: salted pseudonyms, age bands, coordinate grids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from chaintrace_chain.transforms.masking import (
    DEMO_SALT,
    SALT_ENV,
    MaskingError,
    age_bands,
    band_labels,
    pseudonym_salt,
    round_to_grid,
    salted_hash,
)


def test_salted_hash_is_deterministic_linkable_and_keeps_missing_values() -> None:
    ids = pd.Series([1412, 533, 1412, None], dtype="Int64")
    keys = salted_hash(ids, "salt-a")
    assert keys[0] == keys[2]
    assert keys[0] != keys[1]
    assert pd.isna(keys[3])
    assert keys.dropna().str.fullmatch(r"[0-9a-f]{16}").all()
    assert "1412" not in "".join(keys.dropna())


def test_salted_hash_depends_on_the_salt_and_honours_the_length() -> None:
    ids = pd.Series(["17-000003", "17-000073"])
    assert (salted_hash(ids, "one") != salted_hash(ids, "two")).all()
    assert salted_hash(ids, "one", length=32).str.len().eq(32).all()


@pytest.mark.parametrize(("salt", "length", "message"), [("", 16, "salt is empty"), ("s", 4, "length")])
def test_salted_hash_refuses_bad_arguments(salt: str, length: int, message: str) -> None:
    with pytest.raises(MaskingError, match=message):
        salted_hash(pd.Series(["a"]), salt, length=length)


def test_pseudonym_salt_comes_from_the_environment_else_the_documented_demo_default() -> None:
    assert pseudonym_salt({SALT_ENV: "s3cret"}) == "s3cret"
    assert pseudonym_salt({SALT_ENV: "   "}) == DEMO_SALT
    assert pseudonym_salt({}) == DEMO_SALT


def test_pseudonym_salt_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SALT_ENV, "from-env")
    assert pseudonym_salt() == "from-env"


def test_age_bands_use_half_open_bands_and_leave_out_of_range_missing() -> None:
    edges = [0, 1, 5, 18, np.inf]
    assert band_labels(edges) == ["0", "1-4", "5-17", "18+"]
    bands = age_bands(pd.Series([0.0, 0.8, 1.0, 4.99, 17.5, 18.0, 90.0, -1.0, None]), edges)
    assert bands.tolist()[:7] == ["0", "0", "1-4", "1-4", "5-17", "18+", "18+"]
    assert bands[7:].isna().all()


def test_age_bands_refuse_edges_that_do_not_increase() -> None:
    with pytest.raises(MaskingError, match="increasing"):
        age_bands(pd.Series([1.0]), [0, 5, 5])


def test_round_to_grid_snaps_to_the_step_exactly() -> None:
    snapped = round_to_grid(pd.Series([44.966617, 44.94835, -93.246458, None]), 0.01)
    assert snapped.tolist()[:3] == [44.97, 44.95, -93.25]
    assert pd.isna(snapped[3])
    assert round_to_grid(pd.Series([12.3456]), 0.5).tolist() == [12.5]


def test_round_to_grid_refuses_a_non_positive_step() -> None:
    with pytest.raises(MaskingError, match="positive"):
        round_to_grid(pd.Series([1.0]), 0)
