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

import contextlib
import functools
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import sqlalchemy as sa

from movecar_adapters.sql.errors import StorageError
from movecar_adapters.sql.writes import (
    RETRIES,
    Row,
    bind_processors,
    insert_rows,
    insert_sql,
    transient,
    write_transaction,
)

T = TypeVar("T")


#: A parameter's value comes from the call (no value fixed by the statement).
_FROM_CALL: Any = object()


@attrs.frozen
class Compiled:
    """One statement for one dialect: its SQL, and how a call's values become the driver's
    parameters."""

    sql: str
    #: per parameter in order: (name, bind processor or None, value the statement fixes
    #: itself, e.g. ``status == "pending"``, or _FROM_CALL)
    binds: tuple[tuple[str, Callable[[Any], Any] | None, Any], ...]
    #: whether the driver takes the parameters by position (else by name)
    positional: bool
    #: a result processor per selected column (None: the driver's value as it is), or ()
    #: when no column has one
    results: tuple[Callable[[Any], Any] | None, ...]

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        out = []
        for name, proc, fixed in self.binds:
            value = values[name] if fixed is _FROM_CALL else fixed
            out.append(value if proc is None or value is None else proc(value))
        if self.positional:
            return out
        return {name: value for (name, _, _), value in zip(self.binds, out, strict=True)}


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
    by_name = {name: bind for bind, name in compiled.bind_names.items()}
    names = compiled.positiontup if compiled.positional else list(by_name)
    binds = []
    for name in names:
        bind = by_name[name]
        proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
        binds.append((name, proc, _FROM_CALL if bind.required else bind.value))
    results: list[Callable[[Any], Any] | None] = []
    if isinstance(statement, sa.Select):
        for column in statement.selected_columns:
            results.append(column.type.dialect_impl(dialect).result_processor(dialect, None))
    kept = tuple(results) if any(results) else ()
    return Compiled(compiled.string, tuple(binds), bool(compiled.positional), kept)


@functools.cache
def _inserter(
    table: sa.Table, columns: tuple[str, ...], dialect: sa.Dialect
) -> tuple[str, tuple[Callable[[Any], Any] | None, ...]]:
    """The INSERT of ``columns`` into ``table`` and each column's bind processor (None: the
    value as it is), as :func:`~movecar_adapters.sql.writes.insert_columns` applies them."""
    processors = dict(bind_processors(table, columns, dialect))
    return insert_sql(table, columns, dialect), tuple(
        processors.get(i) for i in range(len(columns))
    )


def _bound(processors: tuple[Callable[[Any], Any] | None, ...], row: Row) -> list[Any]:
    return [v if p is None or v is None else p(v) for p, v in zip(processors, row, strict=True)]


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
        return _processed(raw, compiled.results) if compiled.results else raw

    def write(self, statement: Statement, **values: Any) -> int:
        """Run an UPDATE or DELETE; the number of rows it changed."""
        compiled = statement.compiled(self.dialect)
        count: int = self._run(compiled.sql, compiled.parameters(values), fetch=False)
        return count

    def insert(self, table: sa.Table, columns: tuple[str, ...], rows: Sequence[Row]) -> None:
        """Insert ``rows`` (tuples of ``columns``): one statement, run once per row."""
        if not rows:
            return
        if self._cursor is None:
            assert self.conn is not None
            insert_rows(self.conn, table, columns, rows)
            return
        sql, processors = _inserter(table, columns, self.dialect)
        if len(rows) == 1:  # a command's usual insert
            self._run(sql, _bound(processors, rows[0]), fetch=False)
        else:
            self._run(sql, [_bound(processors, row) for row in rows], fetch=False, many=True)

    def insert_columns(
        self, table: sa.Table, columns: tuple[str, ...], values: Sequence[Sequence[Any]]
    ) -> None:
        """Insert the rows whose ``columns`` hold ``values`` (one sequence per column)."""
        self.insert(table, columns, list(zip(*values, strict=True)))

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


#: Which process this is, counted up in each forked child: a connection made in another
#: process is never used (comparing it costs nothing, unlike ``os.getpid()``, a syscall).
_process = [0]


def _forked() -> None:
    _process[0] += 1


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_forked)


class _Pinned:
    """A connection of the command path's, closed when its thread's data goes."""

    __slots__ = ("__weakref__", "driver", "process")

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.process = _process[0]

    def close(self) -> None:
        if self.process != _process[0]:
            return  # a forked child's copy: closing it could end the parent's WAL session
        with contextlib.suppress(Exception):  # closed already, or mid-interpreter-exit
            self.driver.close()

    def __del__(self) -> None:
        self.close()


class CommandPath:
    """Where a store runs its command path: the transactions of :meth:`transaction` and
    the reads of :meth:`read`.

    On SQLite each thread has a connection of its own for it, made by the engine's pool
    (with its settings: WAL, ``synchronous``, ``busy_timeout``) and then detached from it,
    so a command does not pay for a pool checkout and return per transaction and per read
    (measured: a tenth of a command's time). It is closed when its thread ends, by
    :meth:`close`, and never used in another process (a fork makes its own).
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self._error: type[Exception] = self.dialect.loaded_dbapi.Error
        self._local = threading.local()
        self._pinned: weakref.WeakSet[_Pinned] = weakref.WeakSet()
        self._lock = threading.Lock()

    def _driver(self) -> Any:
        pinned: _Pinned | None = getattr(self._local, "pinned", None)
        if pinned is None or pinned.process != _process[0]:
            pooled = self.engine.raw_connection()
            driver = pooled.driver_connection
            pooled.detach()  # ours now: the pool makes another for its own users
            pinned = self._local.pinned = _Pinned(driver)
            with self._lock:
                self._pinned.add(pinned)
        return pinned.driver

    def _drop(self) -> None:
        """Forget this thread's connection (after an error that may have spoilt it)."""
        pinned: _Pinned | None = getattr(self._local, "pinned", None)
        self._local.pinned = None
        if pinned is not None:
            pinned.close()

    def close(self) -> None:
        """Close every thread's connection (the next command makes a new one)."""
        with self._lock:
            pinned = list(self._pinned)
            self._pinned.clear()
        self._local = threading.local()
        for each in pinned:
            each.close()

    def transaction(self, fn: Callable[[Runner], T]) -> T:
        """Run ``fn`` in one write transaction, retrying deadlocks and busy databases, as
        :func:`~movecar_adapters.sql.writes.write_transaction` does.

        On SQLite the transaction is the driver's own: ``BEGIN IMMEDIATE`` (the database's
        write lock, as every write transaction of the store takes it), the statements,
        ``COMMIT`` (with ``synchronous=FULL``, on disk when it returns). SQLAlchemy's
        transaction around it cost a command about as much as all its statements.
        """
        dialect = self.dialect
        if dialect.name != "sqlite":
            return write_transaction(self.engine, lambda conn: fn(Runner(conn, dialect)))
        error = self._error
        for attempt in range(RETRIES):
            try:
                driver = self._driver()
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
                if isinstance(exc, sa.exc.IntegrityError):
                    raise
                if not transient(exc):
                    self._drop()
                    raise
                if attempt == RETRIES - 1:
                    raise StorageError(f"gave up after {RETRIES} attempts: {exc.orig}") from exc
                time.sleep(random.uniform(0, 0.005 * 2**attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def read(self, statement: Statement, **values: Any) -> list[tuple[Any, ...]]:
        """The rows of one SELECT, outside any transaction of ours.

        On SQLite the statement runs alone in autocommit: SQLite reads it in one implicit
        transaction, so it sees one committed state of the database, without the
        ``BEGIN``/``ROLLBACK`` a read transaction adds. Elsewhere, on a pooled connection.
        """
        dialect = self.dialect
        compiled = statement.compiled(dialect)
        params = compiled.parameters(values)
        if dialect.name != "sqlite":
            with self.engine.connect() as conn:
                raw = [tuple(row) for row in conn.exec_driver_sql(compiled.sql, params).all()]
            return _processed(raw, compiled.results) if compiled.results else raw
        try:
            raw = self._driver().execute(compiled.sql, params).fetchall()
        except self._error as exc:
            self._drop()
            raise sa.exc.DBAPIError.instance(
                compiled.sql, params, exc, self._error, dialect=dialect
            ) from exc
        return _processed(raw, compiled.results) if compiled.results else raw


def _processed(
    raw: list[tuple[Any, ...]], results: tuple[Callable[[Any], Any] | None, ...]
) -> list[tuple[Any, ...]]:
    return [
        tuple(v if p is None or v is None else p(v) for p, v in zip(results, row, strict=True))
        for row in raw
    ]
