"""Statements of the command path, compiled once per dialect and run on the driver's cursor.

A command is a handful of small statements. Built and compiled by SQLAlchemy on every
call, each costs ten to thirty times what SQLite takes to run it (measured: 58 µs for a
``select()`` built per call, 16 µs through ``exec_driver_sql``, 1.6 µs on the ``sqlite3``
cursor), which made the store's statements, not its fsyncs, most of a command's time.
So the command path writes its statements once with SQLAlchemy Core (the SQL text is the
dialect's own, and the tables are :mod:`~movecar_adapters.sql.schema`'s), compiles each
once per dialect, and runs it with the values already through the columns' own bind
processors, as :func:`~movecar_adapters.sql.writes.insert_columns` does for the bulk path.

On SQLite it runs on the ``sqlite3`` cursor of the transaction's connection, with driver
errors raised as SQLAlchemy's (:class:`sqlalchemy.exc.DBAPIError` and its subclasses), so
the store's retries and conflict handling see what they always saw. PostgreSQL and
MariaDB go through ``exec_driver_sql`` (a network round trip there costs far more than
SQLAlchemy's execution).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import sqlalchemy as sa

from movecar_adapters.sql.errors import StorageError
from movecar_adapters.sql.writes import (
    RETRIES,
    Row,
    bind_columns,
    insert_columns,
    insert_sql,
    transient,
    write_transaction,
)

T = TypeVar("T")


@attrs.frozen
class Compiled:
    """One statement for one dialect: its SQL, and how a call's values become the driver's
    parameters."""

    sql: str
    #: the parameter names in order (positional paramstyles), else None (named)
    order: tuple[str, ...] | None
    #: the value of each parameter the statement fixes itself (``status == "pending"``)
    fixed: Mapping[str, Any]
    processors: Mapping[str, Callable[[Any], Any]]
    #: a result processor per selected column (None: the driver's value as it is)
    results: tuple[Callable[[Any], Any] | None, ...]

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        procs, fixed = self.processors, self.fixed
        named = {**fixed, **values} if fixed else values
        if self.order is None:
            return {n: procs[n](v) if n in procs else v for n, v in named.items()}
        return tuple(procs[n](named[n]) if n in procs else named[n] for n in self.order)


class Statement:
    """A statement of the command path: built once with SQLAlchemy Core by ``build(dialect)``,
    compiled once per dialect (its parameters are named :func:`sqlalchemy.bindparam` s)."""

    def __init__(self, build: Callable[[sa.Dialect], sa.Executable]) -> None:
        self._build = build
        self._compiled: dict[str, Compiled] = {}

    def compiled(self, dialect: sa.Dialect) -> Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = _compile(self._build(dialect), dialect)
        return found


def _compile(statement: sa.Executable, dialect: sa.Dialect) -> Compiled:
    compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    processors, fixed = {}, {}
    for bind, name in compiled.bind_names.items():
        proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if proc is not None:
            processors[name] = proc
        if not bind.required:
            fixed[name] = bind.value
    results: list[Callable[[Any], Any] | None] = []
    if isinstance(statement, sa.Select):
        for column in statement.selected_columns:
            results.append(column.type.dialect_impl(dialect).result_processor(dialect, None))
    order = tuple(compiled.positiontup) if compiled.positional else None
    return Compiled(compiled.string, order, fixed, processors, tuple(results))


class Runner:
    """Runs :class:`Statement` s (and row inserts) in one transaction: on the ``sqlite3``
    cursor on SQLite, through ``conn.exec_driver_sql`` elsewhere."""

    def __init__(self, conn: sa.Connection | None, dialect: sa.Dialect, cursor: Any = None) -> None:
        self.conn = conn
        self.dialect = dialect
        self._cursor = cursor
        self._error: type[Exception] = dialect.loaded_dbapi.Error

    def rows(self, statement: Statement, **values: Any) -> list[tuple[Any, ...]]:
        """The rows of a SELECT, each value through its column's result processor."""
        compiled = statement.compiled(self.dialect)
        raw = self._run(compiled.sql, compiled.parameters(values), fetch=True)
        return _processed(raw, compiled.results)

    def write(self, statement: Statement, **values: Any) -> int:
        """Run an UPDATE or DELETE; the number of rows it changed."""
        compiled = statement.compiled(self.dialect)
        count: int = self._run(compiled.sql, compiled.parameters(values), fetch=False)
        return count

    def insert(self, table: sa.Table, columns: tuple[str, ...], rows: Sequence[Row]) -> None:
        """Insert ``rows`` (tuples of ``columns``): one statement, run once per row."""
        if rows:
            self.insert_columns(table, columns, list(zip(*rows, strict=True)))

    def insert_columns(
        self, table: sa.Table, columns: tuple[str, ...], values: Sequence[Sequence[Any]]
    ) -> None:
        """Insert the rows whose ``columns`` hold ``values`` (one sequence per column)."""
        if self._cursor is None:
            assert self.conn is not None
            insert_columns(self.conn, table, columns, values)
            return
        sql = insert_sql(table, columns, self.dialect)
        rows = list(zip(*bind_columns(table, columns, values, self.dialect), strict=True))
        if len(rows) == 1:
            self._run(sql, rows[0], fetch=False)
        elif rows:
            self._run(sql, rows, fetch=False, many=True)

    def _run(self, sql: str, params: Any, *, fetch: bool, many: bool = False) -> Any:
        cursor = self._cursor
        if cursor is None:
            assert self.conn is not None
            result = self.conn.exec_driver_sql(sql, params)
            return [tuple(row) for row in result.all()] if fetch else result.rowcount
        try:
            if many:
                cursor.executemany(sql, params)
            else:
                cursor.execute(sql, params)
            return cursor.fetchall() if fetch else cursor.rowcount
        except self._error as exc:
            raise sa.exc.DBAPIError.instance(
                sql, params, exc, self._error, dialect=self.dialect
            ) from exc


def command_transaction(engine: sa.Engine, fn: Callable[[Runner], T]) -> T:
    """Run ``fn`` in one write transaction, retrying deadlocks and busy databases, as
    :func:`~movecar_adapters.sql.writes.write_transaction` does.

    On SQLite the transaction is the driver's own on a pooled connection: ``BEGIN
    IMMEDIATE`` (the database's write lock, as every write transaction of the store takes
    it), the statements, ``COMMIT`` (with ``synchronous=FULL``, on disk when it returns).
    SQLAlchemy's transaction around it cost a command about as much as all its statements.
    """
    dialect = engine.dialect
    if dialect.name != "sqlite":
        return write_transaction(engine, lambda conn: fn(Runner(conn, dialect)))
    error: type[Exception] = dialect.loaded_dbapi.Error
    for attempt in range(RETRIES):
        pooled = engine.raw_connection()
        try:
            driver: Any = pooled.driver_connection
            step = "BEGIN IMMEDIATE"
            try:
                driver.execute(step)
                result = fn(Runner(None, dialect, driver.cursor()))
                step = "COMMIT"
                driver.commit()
                return result
            except error as exc:
                raise sa.exc.DBAPIError.instance(step, (), exc, error, dialect=dialect) from exc
            finally:
                if driver.in_transaction:  # refused, or failed: nothing of it stays
                    driver.rollback()
        except sa.exc.DBAPIError as exc:
            if isinstance(exc, sa.exc.IntegrityError) or not transient(exc):
                raise
            if attempt == RETRIES - 1:
                raise StorageError(f"gave up after {RETRIES} attempts: {exc.orig}") from exc
            time.sleep(random.uniform(0, 0.005 * 2**attempt))
        finally:
            pooled.close()
    raise AssertionError("unreachable")  # pragma: no cover


def read_rows(engine: sa.Engine, statement: Statement, **values: Any) -> list[tuple[Any, ...]]:
    """The rows of one SELECT, read outside any transaction of ours.

    On SQLite the statement runs alone in autocommit (SQLite reads it in one implicit
    transaction, so it sees one committed state of the database) on a pooled connection,
    without the ``BEGIN``/``ROLLBACK`` a read transaction adds; elsewhere in a read-only
    connection as usual.
    """
    dialect = engine.dialect
    compiled = statement.compiled(dialect)
    params = compiled.parameters(values)
    if dialect.name != "sqlite":
        with engine.connect() as conn:
            raw = [tuple(row) for row in conn.exec_driver_sql(compiled.sql, params).all()]
        return _processed(raw, compiled.results)
    pooled = engine.raw_connection()
    try:
        raw = pooled.driver_connection.execute(compiled.sql, params).fetchall()  # type: ignore[union-attr]
    except dialect.loaded_dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(
            compiled.sql, params, exc, dialect.loaded_dbapi.Error, dialect=dialect
        ) from exc
    finally:
        pooled.close()
    return _processed(raw, compiled.results)


def _processed(
    raw: list[tuple[Any, ...]], results: tuple[Callable[[Any], Any] | None, ...]
) -> list[tuple[Any, ...]]:
    if not any(results):
        return raw
    return [
        tuple(v if p is None or v is None else p(v) for p, v in zip(results, row, strict=True))
        for row in raw
    ]
