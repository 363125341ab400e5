"""Transforms every dataset shares: parsing landed files into typed tables, and publishing products."""

from __future__ import annotations

from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pandas as pd

from chaintrace_chain.governance import assigned_levels, cell_threshold, chain_policy
from chaintrace_chain.spec import ColumnSpec, DatasetSpec, SourceSpec
from chaintrace_chain.stage_output import ColumnLineage, FieldSource, StageOutput

if TYPE_CHECKING:
    from collections.abc import Mapping

    from chaintrace_chain.storage import ZonePath


class TransformError(ValueError):
    """Input a transform cannot work with (a missing table or column); the message names it."""


def _open(path: Path | ZonePath) -> IO[Any]:
    # A landed file of the zones opens through their filesystem; a plain Path (a test's fixture) locally.
    return path.open("rb")


def read_landed(source: SourceSpec, path: Path | ZonePath, *, as_text: bool = False) -> pd.DataFrame:
    """Read a landed file as its format says. ``as_text`` keeps every value as text (the collect gate)."""
    try:
        with _open(path) as handle:
            if source.format in ("csv", "csv.zip"):
                compression = "zip" if source.format == "csv.zip" else None
                if as_text:
                    return pd.read_csv(handle, compression=compression, dtype=str, keep_default_na=True)
                return pd.read_csv(handle, compression=compression, low_memory=False)
            if source.format == "pickle.xz":
                frame = pd.read_pickle(handle, compression="xz")
            elif source.format == "parquet":
                frame = pd.read_parquet(handle)
            else:  # pragma: no cover - the spec model admits no other format
                raise TransformError(f"{path}: unsupported format {source.format!r}")
    except TransformError:
        raise
    except Exception as exc:
        raise TransformError(f"{path}: cannot read as {source.format}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(frame, pd.DataFrame):
        raise TransformError(f"{path}: holds a {type(frame).__name__}, not a table")
    if as_text:
        return frame.astype("str").where(frame.notna(), None)
    return frame


def require_columns(frame: pd.DataFrame, columns: list[str], where: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise TransformError(f"{where}: missing column(s) {', '.join(missing)}")


def require_tables(tables: Mapping[str, pd.DataFrame], names: list[str], where: str) -> None:
    missing = [name for name in names if name not in tables]
    if missing:
        raise TransformError(f"{where}: missing input table(s) {', '.join(missing)}")


def _cast(series: pd.Series, column: ColumnSpec) -> tuple[pd.Series, int]:
    """Cast to the declared type. Values that do not parse are kept raw (the column stays text) and
    counted, so the store gate's type expectations fail on them instead of the values vanishing."""
    present = series.notna()
    try:
        if column.type == "int64":
            numeric = pd.to_numeric(series, errors="coerce")
            whole = numeric.notna() & (numeric % 1 == 0)
            bad = int((present & ~whole).sum())
            if bad:
                return series.astype("str").where(present, None), bad
            return numeric.astype("Int64") if column.nullable else numeric.astype("int64"), 0
        if column.type == "float64":
            numeric = pd.to_numeric(series, errors="coerce")
            bad = int((present & numeric.isna()).sum())
            if bad:
                return series.astype("str").where(present, None), bad
            return numeric.astype("float64"), 0
        if column.type in ("datetime", "date"):
            parsed = pd.to_datetime(series, errors="coerce", utc=True, format="ISO8601")
            bad = int((present & parsed.isna()).sum())
            if bad:
                return series.astype("str").where(present, None), bad
            return (parsed.dt.normalize() if column.type == "date" else parsed), 0
        if column.type == "bool":
            mapping = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}
            lowered = series.astype("str").str.strip().str.lower()
            parsed = lowered.map(mapping)
            bad = int((present & parsed.isna()).sum())
            if bad:
                return series.astype("str").where(present, None), bad
            return parsed.astype("boolean"), 0
        if column.type == "category":
            return series.astype("str").where(present, None).astype("category"), 0
        return series.astype("str").where(present, None), 0
    except (TypeError, ValueError, OverflowError):
        return series.astype("str").where(present, None), int(present.sum())


def store_tables(spec: DatasetSpec, landed: Mapping[str, Path | ZonePath]) -> StageOutput:
    """The generic store stage: parse each landed source into its declared typed table.

    Columns the spec does not declare are dropped (and counted); declared columns missing from the
    source are an error naming them.
    """
    tables: dict[str, pd.DataFrame] = {}
    lineage: dict[str, ColumnLineage] = {}
    counts: dict[str, int] = {}
    for table_name, table in spec.tables.items():
        if table.source not in landed:
            raise TransformError(f"{spec.name}.{table_name}: source {table.source!r} was not collected")
        source = spec.sources[table.source]
        frame = read_landed(source, landed[table.source])
        declared = [column.name for column in table.columns]
        require_columns(frame, declared, f"{spec.name}.{table_name} ({landed[table.source]})")
        undeclared = [column for column in frame.columns if column not in declared]
        if undeclared:
            counts[f"{table_name}.undeclared_columns_dropped"] = len(undeclared)
        typed = pd.DataFrame(index=frame.index)
        table_lineage: ColumnLineage = {}
        for column in table.columns:
            typed[column.name], bad = _cast(frame[column.name], column)
            if bad:
                counts[f"{table_name}.{column.name}.type_mismatch"] = bad
            subtype = "IDENTITY" if column.type == "str" else "TRANSFORMATION"
            table_lineage[column.name] = [
                FieldSource(
                    table.source, column.name, "DIRECT", subtype, description=f"parsed as {column.type}"
                )
            ]
        tables[table_name] = typed.reset_index(drop=True)
        lineage[table_name] = table_lineage
        counts[f"{table_name}.rows"] = len(typed)
    # Classification starts here: the policy's levels, with the spec's overrides.
    return StageOutput(tables=tables, lineage=lineage, counts=counts, levels=assigned_levels(spec))


def serve_products(spec: DatasetSpec, analysis: Mapping[str, pd.DataFrame]) -> StageOutput:
    """The generic serve stage: cut each product from its analysis table, keeping only the product's
    columns, and suppress aggregate cells that stand for fewer than k rows (k: the policy's, or the
    product's ``min_cell_rows`` when larger), counting them.

    It declares no levels: each dataset's serve says what its products are once k-safe."""
    policy = chain_policy()
    tables: dict[str, pd.DataFrame] = {}
    lineage: dict[str, ColumnLineage] = {}
    counts: dict[str, int] = {}
    for product in spec.products:
        where = f"{spec.name} product {product.name}"
        require_tables(analysis, [product.table], where)
        frame = analysis[product.table]
        needed = list(product.columns)
        if product.count_column and product.count_column not in needed:
            needed.append(product.count_column)
        require_columns(frame, needed, f"{where} (table {product.table})")
        cut = frame[needed]
        suppressed = 0
        k = cell_threshold(product, policy)
        if product.count_column:
            # A cell without a count stands for an unknown number of rows: suppressed too.
            small = cut[product.count_column].isna() | (cut[product.count_column] < k)
            suppressed = int(small.sum())
            cut = cut[~small]
        counts[f"{product.name}.suppressed_cells"] = suppressed
        counts[f"{product.name}.rows"] = len(cut)
        tables[product.name] = cut[list(product.columns)].reset_index(drop=True)
        product_lineage: ColumnLineage = {}
        for column in product.columns:
            sources = [FieldSource(product.table, column, "DIRECT", "IDENTITY")]
            if product.count_column:
                sources.append(
                    FieldSource(
                        product.table,
                        product.count_column,
                        "INDIRECT",
                        "FILTER",
                        description=f"cells under {k} rows suppressed",
                    )
                )
            product_lineage[column] = sources
        lineage[product.name] = product_lineage
    return StageOutput(tables=tables, lineage=lineage, counts=counts)
