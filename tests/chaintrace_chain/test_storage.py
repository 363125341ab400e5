"""The storage layer under the data zones: the one naming function (OpenLineage dataset naming per
storage scheme), its inverse in the lineage service, locating paths and URLs, and atomic publish on a
filesystem with a rename (local, memory) and on an object store (one put)."""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
import pytest

from chaintrace_chain.settings import ChainSettings
from chaintrace_chain.storage import ZonePath, atomic_writer, copy_atomic, dataset_id, locate
from chaintrace_chain.zones import Zones
from lineage.service.product_files import dataset_location

NAMING = [
    # location, namespace, name
    ("/srv/data/raw/flights/flights", "file", "/srv/data/raw/flights/flights"),
    ("file:///srv/data/service/x.parquet", "file", "/srv/data/service/x.parquet"),
    ("s3://zones-bucket/chaintrace/raw/flights", "s3://zones-bucket", "chaintrace/raw/flights"),
    ("s3a://zones-bucket/a/b.parquet", "s3://zones-bucket", "a/b.parquet"),
    ("gs://zones-bucket/chaintrace/raw", "gs://zones-bucket", "chaintrace/raw"),
    ("gcs://zones-bucket/chaintrace/raw", "gs://zones-bucket", "chaintrace/raw"),
    (
        "abfss://zones@office.dfs.core.windows.net/chaintrace/raw",
        "abfss://zones@office.dfs.core.windows.net",
        "chaintrace/raw",
    ),
    (
        "abfs://zones@office.dfs.core.windows.net/chaintrace/raw",
        "abfss://zones@office.dfs.core.windows.net",
        "chaintrace/raw",
    ),
    (
        "wasbs://zones@office.blob.core.windows.net/chaintrace/raw",
        "wasbs://zones@office.dfs.core.windows.net",
        "chaintrace/raw",
    ),
    ("memory:///bucket/root/raw/flights", "memory://", "/bucket/root/raw/flights"),
    ("memory://bucket/root/raw/flights", "memory://", "/bucket/root/raw/flights"),
    ("hdfs://namenode:8020/zones/raw", "hdfs://namenode:8020", "/zones/raw"),
    ("https://example.org:8443/a/b.csv", "https://example.org:8443", "/a/b.csv"),
]


@pytest.mark.parametrize(("location", "namespace", "name"), NAMING)
def test_dataset_names_follow_the_openlineage_naming_spec(location: str, namespace: str, name: str) -> None:
    assert dataset_id(location) == (namespace, name)


@pytest.mark.parametrize(
    "location",
    [
        "/srv/data/raw/flights/flights",
        "s3://zones-bucket/chaintrace/raw/flights",
        "gs://zones-bucket/chaintrace/raw",
        "memory:///bucket/root/raw/flights",
    ],
)
def test_the_service_turns_a_dataset_name_back_into_its_location(location: str) -> None:
    assert dataset_location(*dataset_id(location)) == location


def test_names_that_are_not_storage_have_no_location() -> None:
    assert dataset_location("file", "relative/path") is None
    assert dataset_location("postgres://db:5432", "") is None
    assert dataset_location("chaintrace-consumers", "consumer.alice") is None


def test_an_azure_url_without_the_account_cannot_be_named() -> None:
    with pytest.raises(ValueError, match="storage account"):
        dataset_id("abfs://zones/chaintrace/raw")


def test_locate_resolves_local_paths_and_keeps_urls(tmp_path: Path) -> None:
    local = locate(tmp_path / "a" / ".." / "b")
    assert (local.protocol, local.path, str(local)) == ("file", str(tmp_path / "b"), str(tmp_path / "b"))
    assert locate(f"file://{tmp_path}/b") == local and local.url == f"file://{tmp_path}/b"
    memory = locate("memory://bucket/root")
    assert (memory.protocol, memory.path, str(memory)) == ("memory", "/bucket/root", "memory:///bucket/root")
    assert str(memory / "raw" / "x.parquet") == "memory:///bucket/root/raw/x.parquet"
    assert (memory / "raw").parent == memory and (memory / "x.parquet").suffix == ".parquet"
    with pytest.raises(ValueError, match="no usable fsspec filesystem"):
        locate("nosuchscheme://bucket/root")


def test_the_data_root_setting_takes_paths_and_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAINTRACE_DATA_ROOT", "memory://office/zones")
    monkeypatch.setenv("CHAINTRACE_DATA_STORAGE_OPTIONS", '{"skip_instance_cache": true}')
    settings = ChainSettings()
    assert settings.data_root_url() == "memory://office/zones"
    assert settings.data_storage_options == {"skip_instance_cache": True}
    with pytest.raises(ValueError, match="not a local folder"):
        settings.resolved_data_root()
    zones = Zones.from_settings(settings)
    assert str(zones.root) == "memory:///office/zones"
    assert zones.storage_options == {"skip_instance_cache": True}
    assert zones.quality.is_absolute() and "memory" in zones.quality.name  # GX needs a local folder
    local = ChainSettings(data_root=f"file://{tmp_path}/zones")
    assert local.data_root_url() == f"{tmp_path}/zones"
    assert Zones.from_settings(local).quality == tmp_path / "zones" / "quality"


# ------------------------------------------------------------------------------------ atomic publish
def _roots(tmp_path: Path) -> list[ZonePath]:
    memory = locate(f"memory://atomic-{uuid.uuid4().hex}/root")
    # An object store: the memory filesystem under the s3 protocol takes the single-put branch.
    object_store = ZonePath(fsspec.filesystem("memory"), f"/object-{uuid.uuid4().hex}/root", "s3")
    return [locate(tmp_path), memory, object_store]


@pytest.mark.parametrize("kind", ["local", "memory", "object store"])
def test_a_publish_is_invisible_until_complete_and_replaces_the_old_file(tmp_path: Path, kind: str) -> None:
    root = dict(zip(["local", "memory", "object store"], _roots(tmp_path), strict=True))[kind]
    target = root / "service" / "ds" / "product.parquet"
    target.write_atomic(b"old")
    with atomic_writer(target) as handle:
        handle.write(b"new, first half ")
        assert target.read_bytes() == b"old"  # a reader meanwhile sees the whole old file
        handle.write(b"second half")
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"new, first half second half"
    assert [p.name for p in target.parent.iterdir()] == ["product.parquet"]  # no temporary file left


@pytest.mark.parametrize("kind", ["local", "memory", "object store"])
def test_a_failed_publish_leaves_the_old_file_and_no_trace(tmp_path: Path, kind: str) -> None:
    root = dict(zip(["local", "memory", "object store"], _roots(tmp_path), strict=True))[kind]
    target = root / "service" / "ds" / "product.parquet"
    target.write_atomic(b"old")
    with pytest.raises(RuntimeError, match="disk gone"), atomic_writer(target) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("disk gone")
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["product.parquet"]
    fresh = root / "landing" / "never" / "file.csv"
    with pytest.raises(RuntimeError), atomic_writer(fresh) as handle:
        raise RuntimeError("no bytes")
    assert not fresh.exists() and not fresh.parent.exists()


def test_copies_cross_filesystems_atomically(tmp_path: Path) -> None:
    source = locate(tmp_path) / "published.parquet"
    source.write_atomic(b"PAR1 product")
    target = locate(f"memory://sink-{uuid.uuid4().hex}/drop") / "published.parquet"
    copy_atomic(source, target)
    assert target.read_bytes() == b"PAR1 product"
    assert [p.name for p in target.parent.iterdir()] == ["published.parquet"]


def test_listing_and_moving_go_through_the_filesystem(tmp_path: Path) -> None:
    for root in _roots(tmp_path)[:2]:
        (root / "a" / "run=r1" / "part.parquet").write_atomic(b"x")
        (root / "a" / "run=r1" / "more" / "deep.json").write_atomic(b"{}")
        files = sorted(p.name for p in (root / "a").rglob("*") if p.is_file())
        assert files == ["deep.json", "part.parquet"]
        assert [p.name for p in (root / "a").rglob("*.json")] == ["deep.json"]
        (root / "a" / "run=r1").move_to(root / "q" / "run=r1")
        assert not (root / "a" / "run=r1").exists()
        assert (root / "q" / "run=r1" / "more" / "deep.json").read_text() == "{}"
        assert (root / "q" / "run=r1").is_relative_to(root) and not root.is_relative_to(root / "q")
