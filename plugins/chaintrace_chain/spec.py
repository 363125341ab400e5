"""Declarative dataset specs: one YAML file per public dataset in ``specs/``.

A spec names the sources (where collect fetches them, their licence and format), the typed schema of
every table the store stage writes, and the data products the serve stage publishes (audience, allowed
level, purposes, small-cell threshold, jurisdictions, and the external sinks each product is exported
to). Adding a dataset means a spec, its suites and its transforms module, nothing else.

Classification levels (L1..L4) come from the governance policy (``policy/governance.yaml``: rules by
column name and type); a spec only states where it knows better: ``level`` on a column overrides the
policy for that column, ``default_level`` on a table replaces the policy's default level for the
columns no rule matches (a table copied from already-published open data). See ``governance``.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lineage.governance.levels import LEVELS, Level

if TYPE_CHECKING:
    from lineage.governance.policy import GovernancePolicy

SPEC_DIR = Path(__file__).with_name("specs")
__all__ = [
    "LEVELS", "ColumnSpec", "DatasetSpec", "ExportSpec", "Level", "ProductSpec", "SpecError", "TableSpec",
]
DATA_ROOT_PLACEHOLDER = "{data_root}"
_EXPORT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# ISO 3166 country codes with an optional subdivision ("US", "US-PA"), as the policy names them.
_JURISDICTION = re.compile(r"^[A-Z]{2,3}(-[A-Z0-9]{1,3})?$")
ColumnType = Literal["int64", "float64", "str", "bool", "datetime", "date", "category"]


class SpecError(ValueError):
    """A dataset spec that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    """One file collect fetches. ``kind`` decides which of url/path/package+member is used."""

    kind: Literal["url", "file", "package"]
    url: str | None = None
    path: str | None = None
    package: str | None = None
    member: str | None = Field(default=None, description="Path of the file inside the installed package.")
    format: Literal["csv", "csv.zip", "pickle.xz", "parquet"]
    licence: str
    description: str = ""

    @model_validator(mode="after")
    def _location_matches_kind(self) -> SourceSpec:
        needed = {"url": ("url",), "file": ("path",), "package": ("package", "member")}[self.kind]
        missing = [name for name in needed if not getattr(self, name)]
        if missing:
            raise ValueError(f"source of kind {self.kind!r} needs {', '.join(missing)}")
        return self


class ColumnSpec(_Strict):
    name: str
    type: ColumnType
    level: Level | None = Field(
        default=None, description="Explicit override of the level the policy assigns; say why in a comment."
    )
    nullable: bool = True
    description: str = ""


class TableSpec(_Strict):
    """A table as the store stage writes it (typed, raw values kept)."""

    source: str = Field(description="Key of the source this table is parsed from.")
    primary_key: list[str] = Field(default_factory=list)
    default_level: Level | None = Field(
        default=None,
        description="Level of the columns no policy rule matches (instead of the policy's default level).",
    )
    columns: list[ColumnSpec]

    def column(self, name: str) -> ColumnSpec:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)


class ExportSpec(_Strict):
    """An external sink a product is copied to after the serve gate passes (a partner office's folder).

    ``url``: any fsspec URL or absolute path; ``{data_root}`` at its start stands for the data root
    (the demo's sink is a folder under it). The copy lands at ``<url>/<product>.parquet``.
    """

    name: str = Field(description="The sink's name, as the lineage and the audit log show it.")
    url: str = Field(description="Folder the product is copied to: an fsspec URL or an absolute path.")
    jurisdiction: str = Field(description="Where the sink is (US, US-PA ...).")

    @model_validator(mode="after")
    def _well_formed(self) -> ExportSpec:
        if not _EXPORT_NAME.match(self.name):
            raise ValueError(f"name {self.name!r}: letters, digits, '.', '_' and '-' only")
        if not _JURISDICTION.match(self.jurisdiction):
            raise ValueError(
                f"jurisdiction {self.jurisdiction!r}: an ISO 3166 code such as 'US' or 'US-PA'"
            )
        check_export_url(self.url)
        return self

    def resolved_url(self, data_root: str) -> str:
        """The URL with ``{data_root}`` replaced by the zones' root (an absolute path or a URL)."""
        if self.url.startswith(DATA_ROOT_PLACEHOLDER):
            return data_root.rstrip("/") + "/" + self.url[len(DATA_ROOT_PLACEHOLDER) :].lstrip("/")
        return self.url


def check_export_url(url: str) -> None:
    """An export URL must name a folder an fsspec filesystem can reach; raises ValueError saying why."""
    if not url.strip():
        raise ValueError("url: empty")
    if url.startswith(DATA_ROOT_PLACEHOLDER):
        return
    if "://" not in url:
        if not url.startswith("/"):
            raise ValueError(f"url {url!r}: an absolute path, a URL (s3://, file://) or {{data_root}}/...")
        return
    import fsspec

    scheme = urlsplit(url).scheme
    if scheme not in fsspec.available_protocols():
        raise ValueError(f"url {url!r}: no fsspec filesystem knows the scheme {scheme!r}")


class ProductSpec(_Strict):
    """A data product the serve stage publishes from a table of the analysis zone."""

    name: str
    title: str
    table: str = Field(description="Table of the analysis zone it is cut from.")
    columns: list[str]
    audience: str
    allowed_level: Level
    purposes: list[str]
    jurisdictions: list[str] = Field(default_factory=lambda: ["US"])
    min_cell_rows: int = Field(default=10, ge=1, description="k: aggregate cells below it are suppressed.")
    count_column: str | None = Field(default=None, description="Column holding the rows behind each cell.")
    exports: list[ExportSpec] = Field(
        default_factory=list, description="External sinks the published product is copied to."
    )

    @model_validator(mode="after")
    def _exports_are_unique(self) -> ProductSpec:
        names = [export.name for export in self.exports]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"products.{self.name}.exports: names must be unique, repeated: {repeated}")
        return self

    @model_validator(mode="after")
    def _count_column_is_published(self) -> ProductSpec:
        # k-safety is measured on the written product, so the rows behind each cell must be in it.
        if self.count_column is not None and self.count_column not in self.columns:
            raise ValueError(
                f"products.{self.name}.count_column: {self.count_column!r} "
                "must be one of the product's columns"
            )
        return self


class DatasetSpec(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str
    domain: str
    description: str = ""
    owner: str
    licence: str
    schedule: str | None = "@daily"
    transforms: str = Field(description="Module with store/process/analyze/serve functions.")
    sources: dict[str, SourceSpec]
    tables: dict[str, TableSpec]
    products: list[ProductSpec]

    @model_validator(mode="after")
    def _references_resolve(self) -> DatasetSpec:
        names = [product.name for product in self.products]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"products: names must be unique, repeated: {repeated}")
        for table_name, table in self.tables.items():
            if table.source not in self.sources:
                raise ValueError(f"tables.{table_name}.source: unknown source {table.source!r}")
            declared = {column.name for column in table.columns}
            unknown = [key for key in table.primary_key if key not in declared]
            if unknown:
                raise ValueError(f"tables.{table_name}.primary_key: unknown columns {unknown}")
        return self

    def level_of(self, table: str, column: str, policy: GovernancePolicy | None = None) -> Level:
        """The level ``column`` of ``table`` gets: its override, else the policy's (default: the chain's)."""
        from chaintrace_chain.governance import assign_levels

        return assign_levels(self, policy)[table][column].level


def load_spec_file(path: Path) -> DatasetSpec:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot read spec: {exc}") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a spec is a YAML mapping")
    try:
        spec = DatasetSpec.model_validate(raw)
    except ValueError as exc:
        raise SpecError(f"{path}: {exc}") from exc
    if spec.name != path.stem:
        raise SpecError(f"{path}: name {spec.name!r} must match the file name {path.stem!r}")
    return spec


@cache
def load_spec(name: str, spec_dir: Path = SPEC_DIR) -> DatasetSpec:
    path = spec_dir / f"{name}.yaml"
    if not path.exists():
        raise SpecError(f"no dataset spec {name!r} in {spec_dir}")
    return load_spec_file(path)


def all_specs(spec_dir: Path = SPEC_DIR) -> list[DatasetSpec]:
    return [load_spec(path.stem, spec_dir) for path in sorted(spec_dir.glob("*.yaml"))]
