"""Commutative row merging, in Python (within a batch) and in SQL (against stored rows).

Every derived table is written through a :class:`MergeSpec`: per column, how two versions of the same
row combine. The combinations are commutative and idempotent (min, max, last-writer-wins on a total
order), which is what makes the derived graph independent of event arrival order and duplicates, and
lets a rebuild reproduce it exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Table

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
    _key: Callable[[Row], Any] = field(init=False, compare=False, repr=False)
    constants: tuple[str, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # itemgetter builds the batch key in C: this runs for every derived row of every event.
        object.__setattr__(self, "_key", itemgetter(*self.keys))
        merged = {*self.keys, *self.min_cols, *self.max_cols}
        merged.update(col for order_col, carried in self.lww_groups for col in (order_col, *carried))
        constants = tuple(c.name for c in self.table.columns if c.name not in merged)
        object.__setattr__(self, "constants", constants)

    @property
    def columns(self) -> list[str]:
        return [c.name for c in self.table.columns]

    def merge_into(self, acc: dict[Any, Row], row: Row) -> None:
        """Fold ``row`` into the batch accumulator ``acc`` (keyed by primary key)."""
        # setdefault inserts a new key in one C call; most rows of a batch are new or unchanged.
        old = acc.setdefault(self._key(row), row)
        if old is row:
            return
        for col in self.min_cols:
            new = row[col]
            if new is not None:
                current = old[col]
                if current is None or new < current:
                    old[col] = new
        for col in self.max_cols:
            new = row[col]
            if new is not None:
                current = old[col]
                if current is None or new > current:
                    old[col] = new
        for order_col, carried in self.lww_groups:
            if row[order_col] > old[order_col]:
                old[order_col] = row[order_col]
                for col in carried:
                    old[col] = row[col]

    def merge_into_descending(self, acc: dict[Any, Row], row: Row) -> None:
        """:meth:`merge_into` for rows folded in descending event order (a parallel rebuild's upper range).

        The constants must still come from the earliest event, which is now the row seen last.
        """
        old = acc.setdefault(self._key(row), row)
        if old is row:
            return
        self.merge_into(acc, row)
        for col in self.constants:
            old[col] = row[col]

    def upsert_sql(self, paramstyle: str) -> str:
        """The upsert for a DB-API driver of ``paramstyle`` (positional: qmark or format)."""
        cached = self._sql.get(paramstyle)
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
        # Only rows the merge changes get rewritten: an upsert that sets every column to its old value
        # still rewrites the whole row (facet values run to kilobytes) and, on PostgreSQL, leaves a
        # dead tuple. The condition is exactly "some SET expression yields a new value".
        changes = [f"(excluded.{c} IS NOT NULL AND ({name}.{c} IS NULL OR excluded.{c} < {name}.{c}))"
                   for c in self.min_cols]
        changes += [f"(excluded.{c} IS NOT NULL AND ({name}.{c} IS NULL OR excluded.{c} > {name}.{c}))"
                    for c in self.max_cols]
        changes += [f"excluded.{order_col} > {name}.{order_col}" for order_col, _ in self.lww_groups]
        conflict = (
            "DO NOTHING" if not updates
            else "DO UPDATE SET " + ", ".join(updates) + " WHERE " + " OR ".join(changes)
        )
        marker = "?" if paramstyle == "qmark" else "%s"
        sql = (
            f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({', '.join(marker for _ in cols)}) "
            f"ON CONFLICT ({', '.join(self.keys)}) {conflict}"
        )
        self._sql[paramstyle] = sql
        return sql

    def values(self, rows: Iterable[Row]) -> list[tuple[Any, ...]]:
        """``rows`` as parameter tuples in the table's column order."""
        columns = self.columns
        if len(columns) == 1:
            return [(row[columns[0]],) for row in rows]
        getter = itemgetter(*columns)
        return [getter(row) for row in rows]

    def write(self, connection: Connection, rows: Iterable[Row]) -> int:
        """Upsert ``rows`` with one executemany straight to the driver (no per-row SQLAlchemy work)."""
        return self.write_values(connection, self.values(rows))

    def write_values(self, connection: Connection, values: Sequence[tuple[Any, ...]]) -> int:
        """Upsert rows already in column order (:meth:`values`)."""
        if not values:
            return 0
        # The DB-API cursor itself: SQLAlchemy's per-statement dispatch cost more than small upserts.
        cursor = connection.connection.cursor()
        try:
            cursor.executemany(self.upsert_sql(connection.dialect.paramstyle), values)
        finally:
            cursor.close()
        return len(values)


def _sql_pick(table: str, col: str, op: str) -> str:
    """SQL of the merge's min ('<') or max ('>'): NULL loses to any value."""
    return (
        f"CASE WHEN {table}.{col} IS NULL THEN excluded.{col} "
        f"WHEN excluded.{col} IS NULL THEN {table}.{col} "
        f"WHEN excluded.{col} {op} {table}.{col} THEN excluded.{col} ELSE {table}.{col} END"
    )
