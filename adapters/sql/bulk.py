"""The writers of a bulk import: in the calling process, or in a writer process beside it.

:meth:`~movecar_adapters.sql.store.SqlStore.bulk_import` spends its time on two kinds of work of
about the same size: preparing rows in Python (validate, encode, encrypt, fold, hash) and
the database's inserts. ``writer="inline"`` does both in turn. ``writer="process"`` hands
each chunk's finished rows to a child process that owns its own connection and writes
them, one transaction per chunk, while the caller prepares the next chunks, so the two
kinds of work run on two cores. (Threads cannot do this: a writer thread takes the GIL
back after every row it inserts, while the preparing thread holds it.)

The child is ``python -I -c BOOT movecar_adapters.sql.bulk_child``, started isolated as
:mod:`movecar_adapters.sql.child` describes. It needs no key (this process encrypts); the
database URL, with its password, reaches it over the pipe. The frames:

* parent to child: ``(url, engine options)`` once (see
  :func:`~movecar_adapters.sql.engine.engine_recipe`), then one list of :data:`Part` per chunk,
  then ``None``;
* child to parent: one reply per chunk written, ``("ok", None)``,
  ``("integrity", message)`` or ``("error", message)``. After a failed chunk the child
  writes nothing more, so what is stored is always a prefix of the chunks, as inline.

A thread in the child reads frames ahead (up to ``depth``), so the parent's writes to the
pipe do not wait for the child's current transaction.
"""

from __future__ import annotations

import functools
import pickle
import queue
import threading
from collections.abc import Callable, Sequence
from typing import IO, Any, NoReturn

import sqlalchemy as sa

from movecar_adapters.sql import schema as t
from movecar_adapters.sql.child import Child, child_url, frame, read_body, read_frame
from movecar_adapters.sql.engine import engine_recipe, make_engine
from movecar_adapters.sql.errors import StorageError, StorageInputError
from movecar_adapters.sql.writes import (
    bind_columns,
    insert_bound,
    insert_columns,
    write_transaction,
)

#: One table's rows of a chunk, by column: (table name, column names, one value list per
#: column). By column, not by row: a tenth fewer objects to pickle, and the bind
#: processors run per column anyway.
Part = tuple[str, tuple[str, ...], list[Sequence[Any]]]

#: Called with a failed chunk's case ids and the database's message; raises the error
#: to report (a conflict with an existing case, or a storage error).
OnIntegrityError = Callable[[Sequence[str], str], NoReturn]


def write_parts(conn: sa.Connection, parts: Sequence[Part], *, bound: bool = False) -> None:
    """Insert ``parts``; ``bound``: their values went through the bind processors already.

    A chunk with ledger leaves first shares the ledger state row's lock, as every writer
    of leaves does (:mod:`movecar_adapters.sql.ledger`): the sequencer then never passes
    a leaf id this chunk has taken but not committed.
    """
    if conn.dialect.name != "sqlite" and any(p[0] == t.ledger_leaves.name for p in parts):
        conn.execute(
            sa.select(t.ledger_state.c.id)
            .where(t.ledger_state.c.id == 1)
            .with_for_update(read=True)
        )
    for name, columns, values in parts:
        insert = insert_bound if bound else insert_columns
        insert(conn, t.metadata.tables[name], columns, values)


#: What goes down the pipe for a column: ("text", values joined by NUL) or ("values", list).
Packed = tuple[str, Any]


def _pack(values: Sequence[Any]) -> Packed:
    """A column for the pipe. One NUL-joined string pickles in a tenth of the time of ten
    thousand strings; it is used when every value is a str without NUL (case ids, type
    names, hashes, canonical JSON, which escapes control characters), checked here."""
    try:
        joined = "\x00".join(values)
    except TypeError:  # not all str
        return ("values", list(values))
    if not values or joined.count("\x00") != len(values) - 1:
        return ("values", list(values))
    return ("text", joined)


def _unpack(packed: Packed) -> Sequence[Any]:
    kind, data = packed
    values: Sequence[Any] = data.split("\x00") if kind == "text" else data
    return values


def _pack_parts(parts: Sequence[Part]) -> list[tuple[str, tuple[str, ...], list[Packed]]]:
    return [(name, columns, [_pack(v) for v in values]) for name, columns, values in parts]


def _unpack_parts(packed: Sequence[tuple[str, tuple[str, ...], list[Packed]]]) -> list[Part]:
    return [(name, columns, [_unpack(v) for v in values]) for name, columns, values in packed]


class InlineWriter:
    """Writes each chunk in the calling process, in turn with preparing the next."""

    def __init__(self, engine: sa.Engine, on_integrity_error: OnIntegrityError) -> None:
        self.engine = engine
        self.on_integrity_error = on_integrity_error

    def write(self, case_ids: Sequence[str], parts: list[Part]) -> None:
        try:
            write_transaction(self.engine, lambda conn: write_parts(conn, parts))
        except sa.exc.IntegrityError as exc:
            self.on_integrity_error(case_ids, str(exc.orig))

    def close(self) -> None:
        """Nothing is pending: every chunk was written by :meth:`write`."""

    def abandon(self) -> None:
        """Nothing is pending: the chunks before the failure are written."""


class ProcessWriter:
    """Writes chunks in a child process, up to ``depth`` chunks behind the caller."""

    #: The module the child runs as ``__main__`` (a test points it at a probe).
    child_module = "movecar_adapters.sql.bulk_child"

    def __init__(
        self, engine: sa.Engine, on_integrity_error: OnIntegrityError, depth: int = 3
    ) -> None:
        recipe = engine_recipe(engine)
        if recipe is None:
            raise StorageInputError(
                "writer", "process", "needs an engine made by movecar_adapters.sql.make_engine"
            )
        url, options = recipe
        try:
            opening = frame(((child_url(url), options), depth))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise StorageInputError(
                "writer", "process", f"the engine's options cannot go to another process: {exc}"
            ) from exc
        self.on_integrity_error = on_integrity_error
        self.dialect = engine.dialect
        self.depth = depth
        self.in_flight: list[Sequence[str]] = []
        self.child = Child(self.child_module, url, "the bulk writer process")
        self.child.send_bytes(opening)

    def _receive(self) -> None:
        """Wait for the oldest chunk in flight and raise its failure, if it failed."""
        status, message = self.child.receive()
        case_ids = self.in_flight.pop(0)
        if status == "ok":
            return
        self.child.stop()
        if status == "integrity":
            self.on_integrity_error(case_ids, message)
        raise StorageError(f"bulk import: {message}")

    def write(self, case_ids: Sequence[str], parts: list[Part]) -> None:
        while len(self.in_flight) >= self.depth:
            self._receive()
        # Bound here, not in the child: text packs and pickles cheaper than datetimes.
        bound = [
            (name, columns, bind_columns(t.metadata.tables[name], columns, values, self.dialect))
            for name, columns, values in parts
        ]
        data = frame(_pack_parts(bound))
        self.in_flight.append(case_ids)
        self.child.send_bytes(data)

    def close(self) -> None:
        """Wait until every chunk sent is written (or one fails), then end the child."""
        try:
            self.child.send(None)
            while self.in_flight:
                self._receive()
        finally:
            self.child.stop()

    def abandon(self) -> None:
        """The caller failed: end the child once it has written the chunks it was sent
        (it stops at the end of its input), as inline would have written them."""
        self.child.stop()


def serve(source: IO[bytes], replies: IO[bytes]) -> None:
    """The child's side: write each chunk read from ``source``, reply on ``replies``."""
    (url, options), depth = read_frame(source)
    engine = make_engine(url, **options)
    ahead: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)

    def read_ahead() -> None:
        # Bytes only: unpickling here would hold the GIL the writing thread needs back
        # after every row it inserts.
        try:
            while True:
                ahead.put(read_body(source))
        except EOFError:  # the end, or the parent went away: what is not committed is lost
            ahead.put(None)

    threading.Thread(target=read_ahead, daemon=True).start()
    failed = False
    try:
        while (body := ahead.get()) is not None and (packed := pickle.loads(body)) is not None:
            if failed:
                continue  # nothing after a failed chunk is written
            parts = _unpack_parts(packed)
            reply: tuple[str, Any]
            try:
                write_transaction(engine, functools.partial(write_parts, parts=parts, bound=True))
                reply = ("ok", None)
            except sa.exc.IntegrityError as exc:
                reply, failed = ("integrity", str(exc.orig)), True
            except Exception as exc:  # the parent raises it; this process only reports
                reply, failed = ("error", f"{type(exc).__name__}: {exc}"), True
            replies.write(frame(reply))
            replies.flush()
    finally:
        engine.dispose()
