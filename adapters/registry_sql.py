"""The owner data source as a table: a local mirror of the traffic-police platform.

二(二): a host that receives the platform's nightly extract (instead of asking it for each
plate) keeps it in a table, and :class:`SqlVehicleRegistry` looks plates up there
(SQLAlchemy Core; SQLite, PostgreSQL, MariaDB). The table is the host's, not movecar's: it
is in none of the store's migrations. By default it is ``mc_vehicle_mirror``, made by
:func:`create_mirror_table` (or the DDL in ``docs/registry.md``) and filled by
:func:`load_mirror_csv` (``movecar registry load-mirror FILE``)::

    plate         VARCHAR(16)  PRIMARY KEY   canonical: 苏D12345
    owner_phone   VARCHAR(200) NOT NULL      sealed (AES-256-GCM, bound to the plate)
    source        VARCHAR(100) NOT NULL      e.g. jsjj-extract
    extracted_at  DATETIME     NOT NULL      UTC, when the platform made the extract

The extract is every registered owner's phone: the largest store of personal data a
deployment holds. 七(三) "防止 ... 个人信息和数据的泄露" — so the loader seals each phone
with the deployment's :class:`~movecar_adapters.crypto.KeyRing`, as the case store seals
the phones of its cases, bound to the row's plate (a phone copied onto another plate's
row does not decrypt). A dump of the table, a backup or a replica gives plates and
tokens, not phones. The cost is one AES-GCM opening per look-up (microseconds). A host
whose own pipeline writes a table with plain phones (and columns of its own names) reads
it with ``encrypted=False`` and the column options.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final, TextIO

import attrs
import sqlalchemy as sa

from movecar_adapters.config import ConfigError, mask_url
from movecar_adapters.crypto import DecryptionFailed, KeyRing
from movecar_adapters.registry import (
    MAX_SOURCE,
    MirrorExtractInvalid,
    RegistryAnswerInvalid,
    check_source,
    contact_from,
    mirror_place,
)
from movecar_adapters.sql.engine import READ_ONLY, make_engine
from movecar_adapters.sql.schema import UTCDateTime
from movecar_core.calendar import SHANGHAI
from movecar_core.errors import InvalidPhone, InvalidPlate, RegistryUnavailable
from movecar_core.phones import parse_phone
from movecar_core.plates import parse_plate
from movecar_core.ports import OwnerContact

__all__ = [
    "MIRROR_TABLE",
    "MirrorLoad",
    "SqlVehicleRegistry",
    "create_mirror_table",
    "load_mirror",
    "load_mirror_csv",
    "mirror_table",
]

MIRROR_TABLE: Final = "mc_vehicle_mirror"
#: Rows inserted per statement while loading.
BATCH: Final = 1000
#: The longest field of an extract: a plate, a phone or a source is far shorter.
_MAX_FIELD: Final = 200
_IDENTIFIER_MAX: Final = 63  # PostgreSQL's limit, the smallest of the three


def _identifier(name: object, what: str) -> str:
    """A table or column name the host gives: plain, so it is never SQL of its own."""
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= _IDENTIFIER_MAX
        or not name.isascii()
        or not (name[0].isalpha() or name[0] == "_")
        or not name.replace("_", "").isalnum()
    ):
        raise ConfigError(f"{what}={str(name)[:80]!r}: letters, digits and _ (at most 63)")
    return name


def mirror_table(
    name: str = MIRROR_TABLE, *, schema: str | None = None, metadata: sa.MetaData | None = None
) -> sa.Table:
    """The default mirror table (a MetaData of its own: never the store's)."""
    return sa.Table(
        _identifier(name, "table"),
        metadata if metadata is not None else sa.MetaData(),
        sa.Column("plate", sa.String(16), primary_key=True),
        sa.Column("owner_phone", sa.String(200), nullable=False),
        sa.Column("source", sa.String(MAX_SOURCE), nullable=False),
        sa.Column("extracted_at", UTCDateTime, nullable=False),
        schema=None if schema is None else _identifier(schema, "schema"),
    )


def create_mirror_table(
    engine: sa.Engine, name: str = MIRROR_TABLE, *, schema: str | None = None
) -> sa.Table:
    """Create the mirror table if it does not exist; returns it."""
    table = mirror_table(name, schema=schema)
    try:
        table.create(engine, checkfirst=True)
    except sa.exc.SQLAlchemyError as exc:
        raise RegistryUnavailable(
            f"cannot create the mirror table {name}: {_reason(exc)}"
        ) from None
    return table


def _reason(exc: sa.exc.SQLAlchemyError) -> str:
    """A short reason without the statement or its parameters (they hold plates)."""
    orig = getattr(exc, "orig", None)
    shown = orig if orig is not None else exc
    text = str(shown).splitlines()[0] if str(shown) else ""
    return f"{type(shown).__name__}: {text[:120]}" if text else type(shown).__name__


class SqlVehicleRegistry:
    """The :class:`~movecar_core.ports.VehicleRegistry` of a mirror table.

    ``engine``: an SQLAlchemy engine (not closed by :meth:`close`) or a database URL (its
    engine is the registry's own, disposed by :meth:`close`). ``keys``: the KeyRing that
    sealed the phones (required unless ``encrypted=False``). ``table``/``schema``: where the
    mirror is; ``plate_column``/``phone_column``/``source_column`` (None: no such column):
    its columns, for a table of the host's own making. ``source``: the look-up's source
    when the row gives none.
    """

    def __init__(
        self,
        engine: sa.Engine | str,
        *,
        keys: KeyRing | None = None,
        table: str = MIRROR_TABLE,
        schema: str | None = None,
        plate_column: str = "plate",
        phone_column: str = "owner_phone",
        source_column: str | None = "source",
        source: str = "mirror",
        encrypted: bool = True,
    ) -> None:
        if encrypted and not isinstance(keys, KeyRing):
            raise ConfigError(
                "the mirror's phones are sealed: give the KeyRing that sealed them "
                "(MOVECAR_KEYS), or encrypted=False for a table of plain phones"
            )
        try:
            self.source = check_source(source)
        except RegistryAnswerInvalid as exc:
            raise ConfigError(f"source: {exc}") from None
        self.keys = keys
        self.encrypted = encrypted
        self.table_name = _identifier(table, "table")
        columns: list[sa.ColumnClause[Any]] = [
            sa.column(_identifier(plate_column, "plate_column")),
            sa.column(_identifier(phone_column, "phone_column")),
        ]
        if source_column is not None:
            columns.append(sa.column(_identifier(source_column, "source_column")))
        shape = sa.table(
            self.table_name,
            *columns,
            schema=None if schema is None else _identifier(schema, "schema"),
        )
        self._query = sa.select(*shape.c[1:]).where(shape.c[0] == sa.bindparam("plate"))
        self._owns = isinstance(engine, str)
        if isinstance(engine, str):
            engine = _engine(engine)
        self.engine = engine

    def __repr__(self) -> str:
        return f"SqlVehicleRegistry({self.table_name!r}, encrypted={self.encrypted})"

    def close(self) -> None:
        """Dispose of the engine this registry made (an engine given to it stays open)."""
        if self._owns:
            self.engine.dispose()

    def lookup(self, plate: str) -> OwnerContact | None:
        """The owner's contact from the mirror, or None for a plate it does not hold.

        Raises :class:`~movecar_core.errors.InvalidPlate` for a plate that is not one,
        :class:`~movecar_core.errors.RegistryUnavailable` when the database or the table
        cannot be read, and :class:`~movecar_adapters.registry.RegistryAnswerInvalid` for a
        row whose phone does not decrypt or is not a phone.
        """
        canonical = parse_plate(plate).canonical
        try:
            with self.engine.connect().execution_options(**{READ_ONLY: True}) as conn:
                row = conn.execute(self._query, {"plate": canonical}).first()
        except sa.exc.SQLAlchemyError as exc:
            raise RegistryUnavailable(
                f"the mirror table {self.table_name} cannot be read ({_reason(exc)})"
            ) from None
        if row is None:
            return None
        what = f"the mirror's row for {parse_plate(canonical).masked()}"
        stored = row[0]
        source = row[1] if len(row) > 1 and row[1] not in (None, "") else self.source
        if self.encrypted and isinstance(stored, str):
            assert self.keys is not None
            try:
                stored = self.keys.decrypt(stored, mirror_place(canonical))
            except DecryptionFailed as exc:
                raise RegistryAnswerInvalid(
                    f"{what}: its phone does not decrypt ({type(exc).__name__}: a row "
                    "copied from another plate, altered, or sealed with a key not configured)"
                ) from None
        return contact_from(stored, source, what=what)


def _engine(url: str) -> sa.Engine:
    """An engine on the mirror's database; a SQLite file must exist (opening a path with
    a typo would create an empty database and every plate would be unknown)."""
    try:
        engine = make_engine(url)
    except (ValueError, sa.exc.ArgumentError, ImportError) as exc:
        raise ConfigError(f"mirror database {mask_url(url)[:120]!r}: {str(exc)[:200]}") from None
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if path and not Path(path).is_file():
        engine.dispose()
        raise ConfigError(f"mirror database {mask_url(url)[:120]!r}: no such file")
    return engine


@attrs.frozen
class MirrorLoad:
    """What :func:`load_mirror` did: rows written, rows removed before (the old extract, in
    ``replace`` mode; the rows the new one replaced, in merge mode), the table."""

    table: str
    rows: int
    removed: int
    merged: bool


def _field(row: Mapping[str, Any], name: str, line: int) -> str:
    value = row.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MirrorExtractInvalid(f"line {line}: {name}: expected text")
    if len(value) > _MAX_FIELD:
        raise MirrorExtractInvalid(f"line {line}: {name}: longer than {_MAX_FIELD} characters")
    return value.strip()


def _extracted_at(text: str, line: int, default: dt.datetime) -> dt.datetime:
    if not text:
        return default
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise MirrorExtractInvalid(
            f"line {line}: extracted_at={text[:40]!r}: not an ISO 8601 time"
        ) from None
    # A time without offset is a China Standard Time one (三: contract times are CST).
    return when if when.tzinfo is not None else when.replace(tzinfo=SHANGHAI)


def _checked_rows(
    rows: Iterable[tuple[int, Mapping[str, Any]]],
    keys: KeyRing,
    *,
    source: str,
    now: dt.datetime,
) -> Iterator[dict[str, Any]]:
    """Each row of the extract checked, its plate and phone canonical, its phone sealed."""
    seen: dict[str, int] = {}
    for line, row in rows:
        plate_text = _field(row, "plate", line)
        phone_text = _field(row, "owner_phone", line)
        try:
            plate = parse_plate(plate_text).canonical
        except InvalidPlate as exc:
            raise MirrorExtractInvalid(f"line {line}: plate: {exc}") from None
        try:
            phone = parse_phone(phone_text).canonical
        except InvalidPhone as exc:
            raise MirrorExtractInvalid(f"line {line}: owner_phone: {exc}") from None
        first = seen.setdefault(plate, line)
        if first != line:
            raise MirrorExtractInvalid(
                f"line {line}: plate {parse_plate(plate).masked()} is on line {first} too: "
                "one owner per plate"
            )
        row_source = _field(row, "source", line) or source
        try:
            check_source(row_source)
        except RegistryAnswerInvalid as exc:
            raise MirrorExtractInvalid(f"line {line}: {exc}") from None
        yield {
            "plate": plate,
            "owner_phone": keys.encrypt(phone, mirror_place(plate)),
            "source": row_source,
            "extracted_at": _extracted_at(_field(row, "extracted_at", line), line, now),
        }


def load_mirror(
    engine: sa.Engine,
    rows: Iterable[tuple[int, Mapping[str, Any]]],
    keys: KeyRing,
    *,
    now: dt.datetime,
    table: str = MIRROR_TABLE,
    schema: str | None = None,
    source: str = "mirror",
    merge: bool = False,
) -> MirrorLoad:
    """Load an extract's rows (``(line number, {column: text})``) into the mirror table,
    in one transaction: the readers see the old extract or the new one, never a part.

    ``merge`` False (the nightly full extract): the table then holds exactly these rows.
    ``merge`` True (a partial extract): these rows replace those of the same plates and
    the others stay. Every row is checked (plate, phone, no plate twice, source,
    ``extracted_at``, default ``now``); the first bad one raises
    :class:`~movecar_adapters.registry.MirrorExtractInvalid` naming its line, and nothing
    is written. Phones are sealed with ``keys`` (see the module docstring).
    """
    if not isinstance(keys, KeyRing):
        raise ConfigError("loading the mirror seals its phones: give the KeyRing (MOVECAR_KEYS)")
    if now.tzinfo is None:
        raise ConfigError("now: an aware time (the load's time, for rows without extracted_at)")
    try:
        check_source(source)
    except RegistryAnswerInvalid as exc:
        raise MirrorExtractInvalid(f"source: {exc}") from None
    target = mirror_table(table, schema=schema)
    checked = _checked_rows(rows, keys, source=source, now=now)
    written = removed = 0
    try:
        with engine.begin() as conn:
            if not merge:
                removed = conn.execute(sa.delete(target)).rowcount
            while True:
                batch = [row for _, row in zip(range(BATCH), checked, strict=False)]
                if not batch:
                    break
                if merge:
                    plates = [row["plate"] for row in batch]
                    removed += conn.execute(
                        sa.delete(target).where(target.c.plate.in_(plates))
                    ).rowcount
                conn.execute(sa.insert(target), batch)
                written += len(batch)
    except sa.exc.SQLAlchemyError as exc:
        raise RegistryUnavailable(
            f"cannot write the mirror table {table}: {_reason(exc)}"
        ) from None
    return MirrorLoad(table=table, rows=written, removed=removed, merged=merge)


def _csv_rows(handle: TextIO, name: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    reader = csv.DictReader(handle)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise MirrorExtractInvalid(f"{name}: line 1: not CSV ({exc})") from None
    except UnicodeDecodeError:
        raise MirrorExtractInvalid(f"{name}: line 1: not in the file's encoding") from None
    if not header:
        raise MirrorExtractInvalid(f"{name}: empty; the first line names the columns")
    names = [h.strip() if isinstance(h, str) else h for h in header]
    missing = [c for c in ("plate", "owner_phone") if c not in names]
    if missing:
        raise MirrorExtractInvalid(
            f"{name}: line 1: no {' or '.join(missing)} column (columns: plate, owner_phone, "
            "and optionally source, extracted_at)"
        )
    if len(set(names)) != len(names):
        raise MirrorExtractInvalid(f"{name}: line 1: a column is named twice")
    reader.fieldnames = names
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise MirrorExtractInvalid(f"{name}: line {reader.line_num}: not CSV ({exc})") from None
        except UnicodeDecodeError:
            raise MirrorExtractInvalid(
                f"{name}: after line {reader.line_num}: not in the file's encoding"
            ) from None
        if None in row:
            raise MirrorExtractInvalid(
                f"{name}: line {reader.line_num}: more fields than the header names"
            )
        yield reader.line_num, row


def load_mirror_csv(
    engine: sa.Engine,
    path: str | os.PathLike[str],
    keys: KeyRing,
    *,
    now: dt.datetime,
    encoding: str = "utf-8-sig",
    **options: Any,
) -> MirrorLoad:
    """:func:`load_mirror` from a CSV file whose first line names the columns ``plate``,
    ``owner_phone`` and optionally ``source`` and ``extracted_at`` (other columns are not
    read: the mirror keeps nothing but what a look-up needs). ``encoding``: UTF-8 (with or
    without a BOM) by default; ``gb18030`` for an extract from a GBK system."""
    file = Path(path)
    try:
        handle = file.open(encoding=encoding, newline="", errors="strict")
    except LookupError:
        raise MirrorExtractInvalid(f"encoding={encoding[:40]!r}: not a known encoding") from None
    with handle:
        return load_mirror(engine, _csv_rows(handle, file.name), keys, now=now, **options)
