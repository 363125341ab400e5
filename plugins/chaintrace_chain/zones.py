"""The data zones under one data root, and the paths every stage reads and writes.

A dataset in a zone is a folder (its OpenLineage name is the folder's absolute path, namespace
``file``); each run writes one partition ``run=<run_key>/part.parquet`` inside it, so the lineage graph
stays the same across runs and the run is the dataset version. Writes are atomic (write, then rename).

    <root>/landing/<dataset>/<source>/run=<run>/<file as fetched>      collect (immutable)
    <root>/raw/<dataset>/<table>/run=<run>/part.parquet                store
    <root>/processed/<dataset>/<table>/run=<run>/part.parquet          process
    <root>/analysis/<dataset>/<table>/run=<run>/part.parquet           analyze
    <root>/service/<dataset>/<product>/run=<run>/part.parquet          serve (staged, not yet public)
    <root>/service/<dataset>/<product>.parquet                         published after the serve gate
    <root>/quarantine/<dataset>/<stage>/run=<run>/...                  batches a gate refused
    <root>/reports/<dataset>/run=<run>/<stage>.json                    stage and gate reports
    <root>/quality/docs/                                               GX Data Docs site
    <root>/state/<dataset>/                                            collect validators, previous counts
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class Zones:
    root: Path

    @classmethod
    def at(cls, root: str | Path) -> Zones:
        return cls(Path(root).expanduser().resolve())

    def zone(self, name: str) -> Path:
        return self.root / name

    def table_dir(self, stage: str, dataset: str, table: str) -> Path:
        """The folder that is one lineage dataset: ``<root>/<zone>/<dataset>/<table>``."""
        return self.root / STAGE_ZONE[stage] / dataset / table

    def partition(self, stage: str, dataset: str, table: str, run: str) -> Path:
        return self.table_dir(stage, dataset, table) / f"run={run}"

    def part_file(self, stage: str, dataset: str, table: str, run: str) -> Path:
        return self.partition(stage, dataset, table, run) / "part.parquet"

    def published(self, dataset: str, product: str) -> Path:
        return self.root / "service" / dataset / f"{product}.parquet"

    def quarantine(self, dataset: str, stage: str, run: str) -> Path:
        return self.root / "quarantine" / dataset / stage / f"run={run}"

    def report(self, dataset: str, run: str, name: str) -> Path:
        return self.root / "reports" / dataset / f"run={run}" / f"{name}.json"

    def docs_dir(self) -> Path:
        return self.root / "quality" / "docs"

    def state_dir(self, dataset: str) -> Path:
        return self.root / "state" / dataset


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def move_to_quarantine(paths: list[Path], target: Path) -> list[Path]:
    """Move the refused partitions under ``target``; returns where each landed."""
    target.mkdir(parents=True, exist_ok=True)
    moved: list[Path] = []
    for path in paths:
        if not path.exists():
            continue
        destination = target / path.parent.name if path.name.startswith("run=") else target / path.name
        if destination.exists():
            shutil.rmtree(destination) if destination.is_dir() else destination.unlink()
        shutil.move(str(path), str(destination))
        moved.append(destination)
    return moved
