"""Commutative row merging, in Python (within a batch) and in SQL (against stored rows).

Every derived table is written through a :class:`MergeSpec`: per column, how two versions of the same
row combine. The combinations are commutative and idempotent (min, max, last-writer-wins on a total
order), which is what makes the derived graph independent of event arrival order and duplicates, and
lets a rebuild reproduce it exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Table, text

Row = dict[str, Any]


@dataclass(frozen=True)
class MergeSpec:
    """How rows of one table merge.

    ``lww_groups`` maps an ordering column to the columns that travel with it: the row with the
    greater ordering value supplies all of them (ties cannot happen: the order ends in an event hash).
    Columns not named anywhere are taken from the first row seen and never updated (constants).
    """

    table: Table
    keys: tuple[str, ...]
    min_cols: tuple[str, ...] = ()
    max_cols: tuple[str, ...] = ()
    lww_groups: tuple[tuple[str, tuple[str, ...]], ...] = ()
    _sql: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def columns(self) -> list[str]:
        return [c.name for c in self.table.columns]

    def merge_into(self, acc: dict[tuple[Any, ...], Row], row: Row) -> None:
        """Fold ``row`` into the batch accumulator ``acc`` (keyed by primary key)."""
        key = tuple(row[k] for k in self.keys)
        old = acc.get(key)
        if old is None:
            acc[key] = row
            return
        for col in self.min_cols:
            old[col] = _pick_min(old[col], row[col])
        for col in self.max_cols:
            old[col] = _pick_max(old[col], row[col])
        for order_col, carried in self.lww_groups:
            if row[order_col] > old[order_col]:
                old[order_col] = row[order_col]
                for col in carried:
                    old[col] = row[col]

    def upsert_sql(self, dialect: str) -> str:
        cached = self._sql.get(dialect)
        if cached is not None:
            return cached
        name = self.table.name
        cols = self.columns
        updates: list[str] = []
        for col in self.min_cols:
            updates.append(f"{col} = {_sql_pick(name, col, '<')}")
        for col in self.max_cols:
            updates.append(f"{col} = {_sql_pick(name, col, '>')}")
        for order_col, carried in self.lww_groups:
            newer = f"excluded.{order_col} > {name}.{order_col}"
            for col in (order_col, *carried):
                updates.append(f"{col} = CASE WHEN {newer} THEN excluded.{col} ELSE {name}.{col} END")
        conflict = "DO NOTHING" if not updates else "DO UPDATE SET " + ", ".join(updates)
        sql = (
            f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)}) "
            f"ON CONFLICT ({', '.join(self.keys)}) {conflict}"
        )
        self._sql[dialect] = sql
        return sql

    def write(self, connection: Connection, rows: Iterable[Row]) -> int:
        batch: Sequence[Row] = rows if isinstance(rows, list) else list(rows)
        if not batch:
            return 0
        connection.execute(text(self.upsert_sql(connection.dialect.name)), batch)
        return len(batch)


def _pick_min(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return b if b < a else a


def _pick_max(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return b if b > a else a


def _sql_pick(table: str, col: str, op: str) -> str:
    """SQL of _pick_min ('<') or _pick_max ('>'): NULL loses to any value."""
    return (
        f"CASE WHEN {table}.{col} IS NULL THEN excluded.{col} "
        f"WHEN excluded.{col} IS NULL THEN {table}.{col} "
        f"WHEN excluded.{col} {op} {table}.{col} THEN excluded.{col} ELSE {table}.{col} END"
    )
