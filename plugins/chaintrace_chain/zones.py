"""The data zones under one data root, and the paths every stage reads and writes.

The data root is any fsspec URL (``/abs/path``, ``file:///...``, ``memory://bucket/root``,
``s3://bucket/prefix`` ...; see :mod:`chaintrace_chain.storage`): every read, write, listing, move and
report goes through its filesystem, so a local folder and an object store take the same code path.

A dataset in a zone is a folder (its OpenLineage name follows the naming spec for the storage:
namespace ``file`` and the absolute path for a local root, ``s3://<bucket>`` and the key for S3 ...);
each run writes one partition ``run=<run_key>/part.parquet`` inside it, so the lineage graph stays the
same across runs and the run is the dataset version. Writes are atomic (see ``storage``).

    <root>/landing/<dataset>/<source>/run=<run>/<file as fetched>      collect (immutable)
    <root>/raw/<dataset>/<table>/run=<run>/part.parquet                store
    <root>/processed/<dataset>/<table>/run=<run>/part.parquet          process
    <root>/analysis/<dataset>/<table>/run=<run>/part.parquet           analyze
    <root>/service/<dataset>/<product>/run=<run>/part.parquet          serve (staged, not yet public)
    <root>/service/<dataset>/<product>.parquet                         published after the serve gate
    <root>/quarantine/<dataset>/<stage>/run=<run>/...                  batches a gate refused
    <root>/reports/<dataset>/run=<run>/<stage>.json                    stage and gate reports
    <root>/state/<dataset>/                                            collect validators, previous counts
    <quality folder>/docs/                                             GX Data Docs site (a local folder:
                                                                       <root>/quality for a local root)
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaintrace_chain.storage import ZonePath, copy_atomic, locate

if TYPE_CHECKING:
    from chaintrace_chain.settings import ChainSettings

STAGES = ("collect", "store", "process", "analyze", "serve")
# The zone each stage writes.
STAGE_ZONE = {
    "collect": "landing",
    "store": "raw",
    "process": "processed",
    "analyze": "analysis",
    "serve": "service",
}

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def run_key(run_id: str) -> str:
    """A file-system-safe key for an Airflow run id (``scheduled__2026-11-27T00:00:00+00:00``)."""
    return _UNSAFE.sub("_", run_id)


def default_quality_dir(root: ZonePath) -> Path:
    """Where GX keeps validation results and Data Docs: GX writes local files, so a local root keeps
    them under ``<root>/quality`` (as always) and any other root in a local folder named after it."""
    if root.is_local:
        return Path(root.path) / "quality"
    return Path(tempfile.gettempdir()) / "chaintrace-quality" / _UNSAFE.sub("_", root.url)


@dataclass(frozen=True)
class Zones:
    root: ZonePath
    quality: Path = field(default=Path())  # local folder of GX results and Data Docs; see default_quality_dir
    storage_options: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def at(
        cls,
        root: str | Path,
        *,
        storage_options: Mapping[str, Any] | None = None,
        quality_dir: Path | None = None,
    ) -> Zones:
        """Zones under ``root`` (a local path or any fsspec URL)."""
        located = locate(root, storage_options)
        quality = quality_dir.expanduser().resolve() if quality_dir else default_quality_dir(located)
        return cls(located, quality, dict(storage_options or {}))

    @classmethod
    def from_settings(cls, settings: ChainSettings | None = None) -> Zones:
        """The zones the settings name: ``CHAINTRACE_DATA_ROOT``, ``CHAINTRACE_DATA_STORAGE_OPTIONS``,
        ``CHAINTRACE_QUALITY_DIR``."""
        if settings is None:
            from chaintrace_chain.settings import ChainSettings

            settings = ChainSettings()
        return cls.at(
            settings.data_root_url(),
            storage_options=settings.data_storage_options,
            quality_dir=settings.quality_dir,
        )

    def locate(self, location: str) -> ZonePath:
        """A path or URL a report keeps. The storage options of the root apply to URLs of its
        protocol only (an export to another store brings its credentials from that store's own
        environment, as fsspec's filesystems read them)."""
        scheme = location.split("://", 1)[0] if "://" in location else "file"
        same_store = scheme == self.root.protocol or (scheme == "file" and self.root.is_local)
        return locate(location, self.storage_options if same_store else None)

    def zone(self, name: str) -> ZonePath:
        return self.root / name

    def table_dir(self, stage: str, dataset: str, table: str) -> ZonePath:
        """The folder that is one lineage dataset: ``<root>/<zone>/<dataset>/<table>``."""
        return self.root / STAGE_ZONE[stage] / dataset / table

    def partition(self, stage: str, dataset: str, table: str, run: str) -> ZonePath:
        return self.table_dir(stage, dataset, table) / f"run={run}"

    def part_file(self, stage: str, dataset: str, table: str, run: str) -> ZonePath:
        return self.partition(stage, dataset, table, run) / "part.parquet"

    def published(self, dataset: str, product: str) -> ZonePath:
        return self.root / "service" / dataset / f"{product}.parquet"

    def quarantine(self, dataset: str, stage: str, run: str) -> ZonePath:
        return self.root / "quarantine" / dataset / stage / f"run={run}"

    def report(self, dataset: str, run: str, name: str) -> ZonePath:
        return self.root / "reports" / dataset / f"run={run}" / f"{name}.json"

    def docs_dir(self) -> Path:
        return self.quality / "docs"

    def state_dir(self, dataset: str) -> ZonePath:
        return self.root / "state" / dataset


def atomic_write_bytes(path: ZonePath, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half of one."""
    path.write_atomic(data)


def atomic_copy(source: ZonePath, target: ZonePath) -> None:
    copy_atomic(source, target)


def move_to_quarantine(paths: list[ZonePath], target: ZonePath) -> list[ZonePath]:
    """Move the refused partitions under ``target``; returns where each landed."""
    target.mkdir()
    moved: list[ZonePath] = []
    for path in paths:
        if not path.exists():
            continue
        destination = target / path.parent.name if path.name.startswith("run=") else target / path.name
        if destination.exists():
            destination.remove_tree()
        path.move_to(destination)
        moved.append(destination)
    return moved
