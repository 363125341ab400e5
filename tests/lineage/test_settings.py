"""The service's data root: a local folder (a Path) or any fsspec URL (kept as the URL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lineage.settings import LineageSettings


@pytest.mark.parametrize("raw", ["s3://bucket/zones", "memory://zones/root", "gs://b/p"])
def test_a_url_root_stays_a_url(raw: str) -> None:
    settings = LineageSettings(data_root=raw, db_url="sqlite://")
    assert settings.data_root == raw
    assert settings.local_data_root() is None


@pytest.mark.parametrize(("raw", "local"), [("/srv/zones", "/srv/zones"), ("file:///srv/z", "/srv/z"),
                                            ("data", "data")])
def test_a_local_root_is_a_path(raw: str, local: str) -> None:
    settings = LineageSettings(data_root=raw)
    assert settings.local_data_root() == Path(local)
    assert settings.resolved_db_url() == f"sqlite:///{(Path(local) / 'lineage' / 'lineage.db').resolve()}"


def test_the_environment_gives_a_url_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAINTRACE_DATA_ROOT", "s3://office/zones")
    monkeypatch.setenv("CHAINTRACE_DB_URL", "postgresql://db/lineage")
    settings = LineageSettings()
    assert settings.data_root == "s3://office/zones"
    assert settings.resolved_db_url() == "postgresql://db/lineage"


def test_a_url_root_without_a_store_url_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="CHAINTRACE_DB_URL"):
        LineageSettings(data_root="s3://office/zones").resolved_db_url()
