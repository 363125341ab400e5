"""Where product files live and how they stream: a dataset's location by the OpenLineage naming spec,
read through fsspec, and a Parquet file sent as is or as CSV in chunks."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import fsspec  # type: ignore[import-untyped]  # no stubs ship with fsspec
import pyarrow as pa  # type: ignore[import-untyped]  # no stubs ship with pyarrow
import pyarrow.csv as pacsv  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

BATCH_ROWS = 65_536  # rows per streamed CSV chunk


def safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "product"


def dataset_location(namespace: str, name: str) -> str | None:
    """The location (absolute path or URL) of a file dataset, by the OpenLineage naming spec the chain
    names them with (``chaintrace_chain.storage.dataset_id``); None for a namespace that is not storage."""
    if not name:
        return None
    if namespace == "file":
        return name if name.startswith("/") else None
    scheme, sep, authority = namespace.partition("://")
    if not sep or not scheme or "/" in authority:
        return None
    if scheme == "memory":  # "memory://" + "/b/x": the in-process store has no authority
        return f"memory://{name}" if name.startswith("/") and not authority else None
    return f"{namespace}/{name.lstrip('/')}" if authority else None


def storage_options_from_env() -> dict[str, Any]:
    """``CHAINTRACE_DATA_STORAGE_OPTIONS`` (a JSON object), the data root's fsspec storage options."""
    raw = os.environ.get("CHAINTRACE_DATA_STORAGE_OPTIONS", "").strip()
    if not raw:
        return {}
    try:
        options = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"CHAINTRACE_DATA_STORAGE_OPTIONS is not JSON: {exc}") from exc
    if not isinstance(options, dict):
        raise ValueError("CHAINTRACE_DATA_STORAGE_OPTIONS must be a JSON object")
    return options


@dataclass(frozen=True)
class Located:
    """A location on an fsspec filesystem: its protocol and the path as the filesystem spells it."""

    fs: Any
    protocol: str
    path: str

    def under(self, root: Located) -> bool:
        base = root.path.rstrip("/")
        # Object stores and memory keep ".." literally: a key with one never counts as under the root.
        inside = self.path == base or self.path.startswith(base + "/")
        return self.protocol == root.protocol and inside and ".." not in self.path.split("/")


def locate(location: str, options: Mapping[str, Any]) -> Located:
    """A location through fsspec; a local one resolved (symlinks and ``..`` followed) first."""
    if "://" not in location or location.startswith("file://"):
        local = Path(location.removeprefix("file://")).resolve()
        return Located(fsspec.filesystem("file"), "file", local.as_posix())
    fs, path = fsspec.core.url_to_fs(location, **options)
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    return Located(fs, str(protocol), str(path))


def file_chunks(handle: IO[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    try:
        handle.seek(0)
        while chunk := handle.read(size):
            yield chunk
    finally:
        handle.close()


def csv_chunks(handle: IO[bytes], parquet: pq.ParquetFile) -> Iterator[bytes]:
    try:
        header = True
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
            yield _csv(pa.Table.from_batches([batch]), header)
            header = False
        if header:  # no rows: the header alone
            yield _csv(parquet.schema_arrow.empty_table(), True)
    finally:
        handle.close()


def _csv(table: pa.Table, header: bool) -> bytes:
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, write_options=pacsv.WriteOptions(include_header=header))
    return bytes(sink.getvalue().to_pybytes())

