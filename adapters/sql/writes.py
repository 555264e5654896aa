"""Write transactions and row inserts, shared by the store and the bulk writer process.

Kept apart from :mod:`movecar_adapters.sql.store` so that the bulk writer process
(:mod:`movecar_adapters.sql.bulk`) starts without the store's imports.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa

from movecar_adapters.sql.errors import StorageError

T = TypeVar("T")
Row = tuple[Any, ...]

#: Attempts of a write transaction that meets a deadlock or a busy database.
RETRIES = 8


def transient(exc: sa.exc.DBAPIError) -> bool:
    """A failure that the same transaction, run again, may not meet."""
    orig = exc.orig
    code = getattr(orig, "sqlstate", None)
    if code in ("40001", "40P01", "55P03"):
        return True
    args = getattr(orig, "args", ())
    if args and args[0] in (1205, 1213):  # MariaDB lock wait timeout, deadlock
        return True
    text = str(orig).lower()
    return "database is locked" in text or "database is busy" in text


def write_transaction(engine: sa.Engine, fn: Callable[[sa.Connection], T]) -> T:
    """Run ``fn`` in one write transaction, retrying deadlocks and busy databases."""
    for attempt in range(RETRIES):
        try:
            with engine.begin() as conn:
                return fn(conn)
        except sa.exc.DBAPIError as exc:
            if isinstance(exc, sa.exc.IntegrityError) or not transient(exc):
                raise
            if attempt == RETRIES - 1:
                raise StorageError(f"gave up after {RETRIES} attempts: {exc.orig}") from exc
            time.sleep(random.uniform(0, 0.005 * 2**attempt))
    raise AssertionError("unreachable")  # pragma: no cover


@functools.cache
def _insert_plan(
    table: sa.Table, columns: tuple[str, ...], dialect: sa.Dialect
) -> tuple[str, bool, tuple[tuple[int, Callable[[Any], Any]], ...]]:
    """The INSERT of ``columns`` into ``table``: SQL, whether it is positional, and the
    bind processors SQLAlchemy would run (by column position), compiled once."""
    compiled = sa.insert(table).compile(dialect=dialect, column_keys=list(columns))
    if compiled.positional and tuple(compiled.positiontup or ()) != columns:
        raise AssertionError(f"{table.name}: parameters {compiled.positiontup} not {columns}")
    processors = tuple(
        (i, proc)
        for i, name in enumerate(columns)
        if (proc := table.c[name].type.dialect_impl(dialect).bind_processor(dialect))
    )
    return compiled.string, compiled.positional, processors


def insert_sql(table: sa.Table, columns: tuple[str, ...], dialect: sa.Dialect) -> str:
    """The INSERT of ``columns`` into ``table`` for ``dialect``, compiled once."""
    return _insert_plan(table, columns, dialect)[0]


def bind_processors(
    table: sa.Table, columns: tuple[str, ...], dialect: sa.Dialect
) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
    """The bind processor of each of ``columns`` that has one, by position."""
    return _insert_plan(table, columns, dialect)[2]


def insert_rows(
    conn: sa.Connection, table: sa.Table, columns: tuple[str, ...], rows: Sequence[Row]
) -> None:
    """Insert ``rows`` (tuples of ``columns``) with the driver's own executemany."""
    if rows:
        insert_columns(conn, table, columns, list(zip(*rows, strict=True)))


def insert_columns(
    conn: sa.Connection,
    table: sa.Table,
    columns: tuple[str, ...],
    values: Sequence[Sequence[Any]],
) -> None:
    """Insert the rows whose ``columns`` hold ``values`` (one sequence per column, all of
    one length), with the driver's own executemany.

    The values go through the same bind processors as SQLAlchemy's ``insert()`` (times to
    naive UTC and the dialect's format), column by column, but without its per-row
    parameter bookkeeping, which costs more than SQLite's insert itself on the bulk path.
    """
    insert_bound(conn, table, columns, bind_columns(table, columns, values, conn.dialect))


def bind_columns(
    table: sa.Table,
    columns: tuple[str, ...],
    values: Sequence[Sequence[Any]],
    dialect: sa.Dialect,
) -> list[Sequence[Any]]:
    """``values`` as the driver receives them: through the columns' bind processors."""
    if len(values) != len(columns):
        raise ValueError(f"{len(values)} value columns for {len(columns)} column names")
    bound = list(values)
    for i, proc in _insert_plan(table, columns, dialect)[2]:
        bound[i] = list(map(proc, bound[i]))
    return bound


def insert_bound(
    conn: sa.Connection, table: sa.Table, columns: tuple[str, ...], bound: Sequence[Sequence[Any]]
) -> None:
    """Insert columns of values already through :func:`bind_columns` (for this dialect)."""
    if not bound or not bound[0]:
        return
    sql, positional, _ = _insert_plan(table, columns, conn.dialect)
    rows = list(zip(*bound, strict=True))
    if positional:
        conn.exec_driver_sql(sql, rows)
    else:
        conn.exec_driver_sql(sql, [dict(zip(columns, row, strict=True)) for row in rows])
