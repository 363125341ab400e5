"""Storage of the data zones: any fsspec URL, one code path for every read, write, listing and move.

A :class:`ZonePath` is a path on one fsspec filesystem with the small part of ``pathlib`` the chain
uses (``/``, ``parent``, ``name``, ``exists``, ``read_bytes``, ``rglob`` ...). A local root is fsspec's
``LocalFileSystem``, a ``memory://`` root its ``MemoryFileSystem``, an ``s3://`` root s3fs: the chain
does not know which. ``str(path)`` is what reports and lineage keep: the absolute path on a local disk
(as before), the URL elsewhere, and :func:`dataset_id` turns it into the OpenLineage (namespace, name).

Atomic publish (:meth:`ZonePath.write_atomic`, :func:`atomic_writer`): readers see the old file or the
new one, never half of one. On a filesystem with a rename (local disk, memory, HDFS, SFTP ...) the bytes
go to a hidden sibling that is then renamed over the target. Object stores (S3, GCS, Azure) have no
rename (theirs is a copy and a delete) but need none: an object becomes visible only when its single PUT
(or a multipart upload's completion) succeeds, so the bytes are staged in a local temporary file and
uploaded in one put.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import os
import posixpath
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import urlsplit

import fsspec
from fsspec import AbstractFileSystem

# Protocols of object stores: an object appears whole when its upload completes (see the module doc).
OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl", "wasb", "wasbs", "oss"})
LOCAL_PROTOCOLS = frozenset({"file", "local"})
CHUNK_SIZE = 1 << 20


class StorageError(ValueError):
    """A data root or location that cannot be used; the message names it and why."""


def _protocol_of(fs: AbstractFileSystem) -> str:
    protocol = fs.protocol
    return str(protocol[0] if isinstance(protocol, (tuple, list)) else protocol)


@dataclass(frozen=True, order=True)
class ZonePath:
    """A path on an fsspec filesystem (``path`` as the filesystem spells it, without the protocol)."""

    fs: AbstractFileSystem = field(compare=False, repr=False)
    path: str
    protocol: str

    # -- naming -----------------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return self.protocol in LOCAL_PROTOCOLS

    @property
    def is_object_store(self) -> bool:
        return self.protocol in OBJECT_STORES

    @property
    def url(self) -> str:
        """The full URL, protocol included (``file:///...`` for a local file)."""
        return str(self.fs.unstrip_protocol(self.path))

    def __str__(self) -> str:
        # Local files keep the plain absolute path reports and lineage names have always used.
        return self.path if self.is_local else self.url

    def __truediv__(self, name: str) -> ZonePath:
        return ZonePath(self.fs, posixpath.join(self.path, name), self.protocol)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def suffix(self) -> str:
        return posixpath.splitext(self.name)[1]

    @property
    def parent(self) -> ZonePath:
        return ZonePath(self.fs, posixpath.dirname(self.path.rstrip("/")) or "/", self.protocol)

    def is_relative_to(self, other: ZonePath) -> bool:
        if self.protocol != other.protocol:
            return False
        base = other.path.rstrip("/")
        return self.path == base or self.path.startswith(base + "/")

    # -- queries ----------------------------------------------------------------------------------
    def exists(self) -> bool:
        return bool(self.fs.exists(self.path))

    def is_file(self) -> bool:
        return bool(self.fs.isfile(self.path))

    def is_dir(self) -> bool:
        return bool(self.fs.isdir(self.path))

    def size(self) -> int:
        return int(self.fs.size(self.path))

    def iterdir(self) -> list[ZonePath]:
        if not self.is_dir():
            return []
        listed = self.fs.ls(self.path, detail=False)
        return [ZonePath(self.fs, str(p).rstrip("/"), self.protocol) for p in listed]

    def rglob(self, pattern: str = "*") -> list[ZonePath]:
        """Every file and folder below, whose name matches ``pattern`` (as ``Path.rglob``)."""
        if not self.is_dir():
            return []
        found = self.fs.find(self.path, withdirs=True, detail=False)
        own = self.path.rstrip("/")
        return [
            ZonePath(self.fs, str(p).rstrip("/"), self.protocol)
            for p in sorted(found)
            if str(p).rstrip("/") != own and fnmatch.fnmatch(posixpath.basename(str(p).rstrip("/")), pattern)
        ]

    # -- reading ----------------------------------------------------------------------------------
    def open(self, mode: str = "rb") -> IO[Any]:
        return cast("IO[Any]", self.fs.open(self.path, mode))

    def read_bytes(self) -> bytes:
        return bytes(self.fs.cat_file(self.path))

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    # -- writing ----------------------------------------------------------------------------------
    def mkdir(self, *, parents: bool = True, exist_ok: bool = True) -> None:
        """Make the folder and its parents (a no-op on object stores, which have no folders); the
        keywords are ``pathlib``'s, accepted so callers read the same: parents are always made."""
        del parents
        self.fs.makedirs(self.path, exist_ok=exist_ok)

    def write_atomic(self, data: bytes) -> None:
        """Publish ``data`` at this path atomically (see the module doc)."""
        with atomic_writer(self) as handle:
            handle.write(data)

    def write_bytes(self, data: bytes) -> None:
        self.write_atomic(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_atomic(text.encode(encoding))

    def unlink(self, *, missing_ok: bool = False) -> None:
        if missing_ok and not self.exists():
            return
        self.fs.rm_file(self.path)

    def remove_tree(self) -> None:
        if self.exists():
            self.fs.rm(self.path, recursive=True)

    def move_to(self, target: ZonePath) -> None:
        """Move a file or folder (a rename where there is one; copy and delete on object stores)."""
        target.parent.mkdir()
        self.fs.mv(self.path, target.path, recursive=self.is_dir())


def _fsync(handle: Any) -> None:
    """Flush a local file to disk; other filesystems have no descriptor (their durability is theirs)."""
    try:
        handle.flush()
        os.fsync(handle.fileno())
    except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
        pass


@contextlib.contextmanager
def atomic_writer(target: ZonePath) -> Iterator[IO[bytes]]:
    """A binary handle whose bytes appear at ``target`` all at once when the block ends without error,
    and nowhere when it raises (see the module doc for how each kind of filesystem does it)."""
    folder = target.parent
    if target.is_object_store:
        # Staged locally, then one put: the object is visible only once the upload has completed (a
        # large file goes up as a multipart upload, which also appears only when it is completed).
        with tempfile.NamedTemporaryFile(prefix="chaintrace-", suffix=".upload") as staged:
            yield cast("IO[bytes]", staged)
            staged.flush()
            target.fs.put_file(staged.name, target.path)
        return
    made_folder = not folder.exists()
    folder.mkdir()
    hidden = folder / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        with hidden.open("wb") as handle:
            yield cast("IO[bytes]", handle)
            _fsync(handle)
        target.fs.mv(hidden.path, target.path)  # a rename: replaces the old file in one step
    except BaseException:
        with contextlib.suppress(Exception):
            hidden.unlink(missing_ok=True)
            if made_folder and not folder.iterdir():  # leave no empty folder a reader could take for data
                folder.fs.rmdir(folder.path)
        raise


def copy_atomic(source: ZonePath, target: ZonePath) -> None:
    """Copy a file, possibly across filesystems, publishing it atomically at ``target``."""
    with source.open("rb") as reader, atomic_writer(target) as writer:
        while chunk := reader.read(CHUNK_SIZE):
            writer.write(chunk)


def locate(location: str | Path, storage_options: Mapping[str, Any] | None = None) -> ZonePath:
    """The :class:`ZonePath` of an absolute path or URL (``file://``, ``memory://``, ``s3://`` ...).

    A local path is expanded and resolved; anything else is left to fsspec, whose filesystem
    instances are cached, so locating many paths of one root costs one filesystem."""
    raw = str(location)
    if "://" not in raw or raw.startswith("file://"):
        local = raw[len("file://") :] if raw.startswith("file://") else raw
        if not local:
            raise StorageError(f"{location!r}: an empty path")
        resolved = Path(local).expanduser().resolve()
        return ZonePath(fsspec.filesystem("file"), resolved.as_posix(), "file")
    scheme = urlsplit(raw).scheme
    try:
        fs, path = fsspec.core.url_to_fs(raw, **dict(storage_options or {}))
    except (ImportError, ValueError) as exc:
        raise StorageError(f"{raw}: no usable fsspec filesystem for {scheme!r}: {exc}") from exc
    protocol = _protocol_of(fs)
    if protocol in LOCAL_PROTOCOLS:
        return ZonePath(fs, Path(path).resolve().as_posix(), "file")
    return ZonePath(fs, str(path).rstrip("/") or "/", scheme or protocol)


# --------------------------------------------------------------------------------- lineage naming
def dataset_id(location: str) -> tuple[str, str]:
    """OpenLineage (namespace, name) of a file or folder, by the dataset naming spec:

    ============================  ==========================================  ==============================
    location                      namespace                                   name
    ============================  ==========================================  ==============================
    ``/abs/path``, ``file://``    ``file``                                    the absolute path
    ``s3://bucket/key``           ``s3://bucket``                             ``key`` (the object key)
    ``gs://bucket/key``           ``gs://bucket``                             ``key``
    ``abfs[s]://c@acct.dfs...``   ``abfss://c@acct.dfs.core.windows.net``     ``path`` in the container
    ``wasb[s]://c@acct.blob...``  ``wasbs://c@acct.dfs.core.windows.net``     ``key`` (as the client does)
    ``memory://...``              ``memory://``                               the absolute path (ours: the
                                                                              in-process store has no host)
    other ``scheme://host/p``     ``scheme://host``                           ``/p``
    ============================  ==========================================  ==============================

    Namespace and name joined give the URL back for every scheme (``memory://`` + ``/b/x``), except
    object stores, whose names are keys without the leading slash the spec's examples leave out.
    """
    if "://" not in location:
        return "file", location
    parts = urlsplit(location)
    scheme, netloc, path = parts.scheme, parts.netloc, parts.path
    key = path.lstrip("/")
    if scheme == "file":
        return "file", path
    if scheme == "memory":
        # fsspec's memory store is one tree per process: "memory://b/x" and "memory:///b/x" are the
        # same object, spelled "/b/x" by the filesystem.
        return "memory://", "/" + (netloc + path).strip("/")
    if scheme in ("s3", "s3a"):
        return f"s3://{netloc}", key or "/"
    if scheme in ("gs", "gcs"):
        return f"gs://{netloc}", key or "/"
    if scheme in ("abfs", "abfss", "az", "wasb", "wasbs"):
        container, _, host = netloc.partition("@")
        account = host.split(".", 1)[0]
        if not account:
            raise StorageError(
                f"{location}: name the storage account in the URL (container@account.dfs.core.windows.net) "
                "so the lineage can name it"
            )
        kind = "wasbs" if scheme.startswith("wasb") else "abfss"
        return f"{kind}://{container}@{account}.dfs.core.windows.net", key or "/"
    return f"{scheme}://{netloc}", path or "/"
