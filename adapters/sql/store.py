"""The SQL store: event streams, state rows, outbox, reports, retention, on one database.

:class:`SqlStore` implements :class:`~movecar_core.ports.CaseStore` and
:class:`~movecar_core.outbox.OutboxStore` on SQLite, PostgreSQL and MariaDB.

One ``append`` is one transaction that

1. checks the expected version against the case's state row (locked ``FOR UPDATE`` on
   PostgreSQL and MariaDB; SQLite's ``BEGIN IMMEDIATE`` holds the database's write lock),
2. folds the stored events with the new ones through the state machine (a batch that no
   valid command sequence could produce is refused),
3. inserts the events, each with its hash chained to the previous one
   (:func:`movecar_core.integrity.chain_hash`, over the plaintext payload),
4. updates the state row (state, version, closed time, head hash),
5. records owner look-ups (二(二)/四) and the effects and timers the events cause
   (:func:`movecar_core.outbox.plan`), cancelling timers the events make moot.

Either all of it is stored or none of it. Phone numbers are encrypted with the
:class:`~movecar_adapters.crypto.KeyRing` before they reach the database.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal, NoReturn, TypeVar

import attrs
import sqlalchemy as sa
from movecar_adapters.clock import SystemClock
from movecar_adapters.crypto import KeyRing
from movecar_adapters.sql import schema as t
from movecar_adapters.sql.bulk import InlineWriter, Part, ProcessWriter
from movecar_adapters.sql.engine import READ_ONLY, current_revision, head_revision, make_engine
from movecar_adapters.sql.errors import SchemaNotReady, StorageError, StorageInputError
from movecar_adapters.sql.writes import Row, insert_columns, insert_rows, write_transaction

from movecar_core.calendar import SHANGHAI
from movecar_core.case import CaseOpened, CaseRecord, Event, OwnerLookedUp
from movecar_core.codec import CanonicalEncoder, MalformedEvent, UnknownEventType, decode, encode
from movecar_core.contract import WUJIN_114_2024, Contract
from movecar_core.errors import ConcurrencyConflict
from movecar_core.integrity import (
    GENESIS,
    canonical_json,
    chain_hash,
    chain_of_json,
    report_digest,
)
from movecar_core.machine import CorruptHistory, fold
from movecar_core.outbox import Claimed, Effect, EffectPolicy, plan
from movecar_core.ports import Clock

T = TypeVar("T")

#: Personal data encrypted at rest (七(三)), per stored event type.
PII_FIELDS: dict[str, tuple[str, ...]] = {
    "CaseOpened": ("requester_phone",),
    "OwnerLookedUp": ("owner_phone",),
}
#: Events to canonical JSON, plaintext (hashed) and with the phones sealed (stored).
_ENCODE = CanonicalEncoder(name for names in PII_FIELDS.values() for name in names)
#: Case ids: opaque tokens, no spaces (MariaDB ignores trailing spaces when comparing).
CASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}\Z")
#: Longest text a single event field may hold (the facade allows 2000 for notes).
MAX_FIELD_CHARS = 4000
#: Longest stored payload, in UTF-8 bytes.
MAX_PAYLOAD_BYTES = 60_000
#: Column limits of the state row and the look-up log.
MAX_PLATE = 16
MAX_AGENT = 100
MAX_SOURCE = 100


def _utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)


def add_years(when: dt.datetime, years: int) -> dt.datetime:
    """``when`` plus whole calendar years in Asia/Shanghai; 29 Feb goes to 1 Mar.

    Rounding 29 Feb up (not down to 28 Feb) means retention is never shortened.
    """
    local = when.astimezone(SHANGHAI)
    try:
        return local.replace(year=local.year + years)
    except ValueError:  # 29 Feb into a common year
        return local.replace(year=local.year + years, month=3, day=1)


def month_bounds(year: int, month: int) -> tuple[dt.datetime, dt.datetime]:
    """The month as [start, end) in Asia/Shanghai (三: monthly settlement)."""
    if not 1 <= month <= 12:
        raise StorageInputError("month", month, "must be 1..12")
    start = dt.datetime(year, month, 1, tzinfo=SHANGHAI)
    end = dt.datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=SHANGHAI)
    return start, end


def next_month(label: str) -> str:
    """ "2025-12" -> "2026-01"."""
    year, month = int(label[:4]), int(label[5:7])
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def previous_month(label: str) -> str:
    year, month = int(label[:4]), int(label[5:7])
    return f"{year - (month == 1):04d}-{(month - 2) % 12 + 1:02d}"


def report_hash(previous: str, month: str, inbound: int, billable: int, digest: str) -> str:
    """A monthly report's hash, chained to the previous report's."""
    return chain_hash(
        previous, "report", 0, month, {"inbound": inbound, "billable": billable, "digest": digest}
    )


@attrs.frozen
class Prepared:
    """A case's new events as they are stored, in parallel lists (one entry per event):
    the type name, the plaintext canonical JSON (what the chain hash covers) and the stored
    JSON (phones encrypted). Lists, not an object per event: the bulk path makes a million.
    """

    case_id: str
    events: Sequence[Event]
    type_names: list[str]
    plain: list[str]
    stored: list[str]


@attrs.frozen
class MonthlyReport:
    month: str
    inbound_calls: int
    billable_calls: int
    digest: str
    previous_hash: str
    hash: str


@attrs.frozen
class PurgeResult:
    """What a retention run removed (or, with ``dry_run``, would remove)."""

    dry_run: bool
    cutoff_note: str
    cases: tuple[str, ...]
    held: tuple[str, ...]
    recordings: tuple[str, ...]  # audio locations whose files the operator must delete


@attrs.frozen
class Recording:
    case_id: str
    call_id: str
    location: str
    checksum_sha256: str
    duration_ms: int
    recorded_at: dt.datetime


def check_case_id(case_id: object) -> str:
    if not isinstance(case_id, str):
        raise StorageInputError("case_id", case_id, "must be a string")
    if not CASE_ID.match(case_id):
        raise StorageInputError(
            "case_id", case_id, "must be 1-64 characters of A-Z a-z 0-9 . _ : - (no spaces)"
        )
    return case_id


#: Columns the store writes when it creates rows (the rest have defaults or stay NULL).
CASE_COLUMNS = (
    "case_id", "plate", "state", "version", "opened_at", "closed_at", "opened_hash", "head_hash"
)  # fmt: skip
EVENT_COLUMNS = ("case_id", "version", "type_name", "payload", "hash")
LOOKUP_COLUMNS = ("case_id", "version", "at", "agent_id", "plate", "found", "source")
OUTBOX_COLUMNS = ("effect_key", "case_id", "kind", "due_at", "payload", "status", "attempts")


def _check_text(name: str, value: object, limit: int) -> None:
    if isinstance(value, str) and len(value) > limit:
        raise StorageInputError(name, value, f"longer than {limit} characters")


class SqlStore:
    """Cases, their outbox, reports and retention on one SQL database.

    ``SqlStore("sqlite:///movecar.db", keys=KeyRing.from_env())``; the schema must have
    been migrated first (``movecar db upgrade`` or :func:`movecar_adapters.sql.upgrade`).
    """

    def __init__(
        self,
        engine: sa.Engine | str,
        keys: KeyRing,
        *,
        clock: Clock | None = None,
        contract: Contract = WUJIN_114_2024,
        effects: EffectPolicy | None = None,
        lease: dt.timedelta = dt.timedelta(minutes=2),
        check_schema: bool = True,
    ) -> None:
        self.engine = make_engine(engine) if isinstance(engine, str) else engine
        self.keys = keys
        self.clock: Clock = clock or SystemClock()
        self.contract = contract
        self.effects = effects or EffectPolicy()
        self.lease = lease
        self.dialect = self.engine.dialect.name
        if check_schema:
            have, want = current_revision(self.engine), head_revision()
            if have != want:
                raise SchemaNotReady(
                    f"database schema is at {have!r}, this library needs {want!r}: "
                    "run `movecar db upgrade`"
                )

    # --- transactions -------------------------------------------------------------------

    def _write(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run ``fn`` in one write transaction, retrying deadlocks and busy databases."""
        return write_transaction(self.engine, fn)

    def _read(self) -> sa.Connection:
        return self.engine.connect().execution_options(**{READ_ONLY: True})

    def _lock(self, query: sa.Select[Any]) -> sa.Select[Any]:
        return query if self.dialect == "sqlite" else query.with_for_update()

    # --- events in and out --------------------------------------------------------------

    def prepare(self, case_id: str, events: Sequence[Event]) -> Prepared:
        """Validate, encode and encrypt ``events`` (no database access)."""
        check_case_id(case_id)
        if not isinstance(events, Sequence) or not events:
            raise StorageInputError("events", events, "must be a non-empty sequence of events")
        seal = self.keys.encrypt
        writers = _ENCODE.writers
        type_names: list[str] = []
        plains: list[str] = []
        stored_forms: list[str] = []
        for i, event in enumerate(events):
            try:
                # checks every field's type
                type_name, plain, stored = writers[type(event)](event, seal)
            except (UnknownEventType, MalformedEvent) as exc:
                raise StorageInputError(f"events[{i}]", event, str(exc)) from exc
            if event.case_id != case_id:
                raise StorageInputError(
                    f"events[{i}].case_id", event.case_id, f"appended to case {case_id}"
                )
            if len(plain) > MAX_FIELD_CHARS:  # else no field can be longer than the payload
                for key, value in encode(event)[1].items():
                    _check_text(f"{type_name}.{key}", value, MAX_FIELD_CHARS)
            # Column limits, checked inline: a call per event shows on the bulk path.
            if type(event) is CaseOpened:
                if len(event.plate) > MAX_PLATE:
                    _check_text("CaseOpened.plate", event.plate, MAX_PLATE)
            elif type(event) is OwnerLookedUp and (
                len(event.agent_id) > MAX_AGENT or len(event.source) > MAX_SOURCE
            ):
                _check_text("OwnerLookedUp.agent_id", event.agent_id, MAX_AGENT)
                _check_text("OwnerLookedUp.source", event.source, MAX_SOURCE)
            # A character is 1 to 4 bytes of UTF-8: encode only when it could be too long.
            if len(stored) * 4 > MAX_PAYLOAD_BYTES and len(stored.encode()) > MAX_PAYLOAD_BYTES:
                raise StorageInputError(
                    f"events[{i}]", type_name, f"payload larger than {MAX_PAYLOAD_BYTES} bytes"
                )
            type_names.append(type_name)
            plains.append(plain)
            stored_forms.append(stored)
        return Prepared(case_id, events, type_names, plains, stored_forms)

    def _decode_row(
        self, case_id: str, type_name: str, stored: str, *, decrypt: bool = True
    ) -> tuple[Event, dict[str, Any]]:
        try:
            payload = json.loads(stored)
        except ValueError as exc:
            raise MalformedEvent(f"case {case_id}: {type_name} payload is not JSON") from exc
        if not isinstance(payload, dict):
            raise MalformedEvent(f"case {case_id}: {type_name} payload is not an object")
        if decrypt:
            for key in PII_FIELDS.get(type_name, ()):
                value = payload.get(key)
                if isinstance(value, str):
                    payload[key] = self.keys.decrypt(value)
        return decode(case_id, type_name, payload), payload

    def load(self, case_id: str) -> Sequence[Event]:
        check_case_id(case_id)
        with self._read() as conn:
            rows = conn.execute(
                sa.select(t.events.c.type_name, t.events.c.payload)
                .where(t.events.c.case_id == case_id)
                .order_by(t.events.c.version)
            ).all()
        return tuple(self._decode_row(case_id, r.type_name, r.payload)[0] for r in rows)

    def version(self, case_id: str) -> int:
        with self._read() as conn:
            found = conn.execute(
                sa.select(t.cases.c.version).where(t.cases.c.case_id == case_id)
            ).scalar()
        return int(found or 0)

    def case_ids(self) -> Iterator[str]:
        """Every case still holding events, in creation order (paged, not all in memory)."""
        last = 0
        while True:
            with self._read() as conn:
                rows = conn.execute(
                    sa.select(t.cases.c.seq, t.cases.c.case_id)
                    .where(t.cases.c.seq > last, t.cases.c.purged_at.is_(None))
                    .order_by(t.cases.c.seq)
                    .limit(5000)
                ).all()
            if not rows:
                return
            for row in rows:
                yield row.case_id
            last = rows[-1].seq

    def append(self, case_id: str, events: Sequence[Event], expected_version: int) -> int:
        if type(expected_version) is not int or expected_version < 0:
            raise StorageInputError("expected_version", expected_version, "must be an int >= 0")
        prepared = self.prepare(case_id, events)
        try:
            return self._write(lambda conn: self._append(conn, case_id, prepared, expected_version))
        except sa.exc.IntegrityError as exc:
            # Another writer created the case (or the version) between our check and write.
            actual = self.version(case_id)
            if actual != expected_version:
                raise ConcurrencyConflict(case_id, expected_version, actual) from exc
            raise StorageError(f"case {case_id}: {exc.orig}") from exc

    def _append(self, conn: sa.Connection, case_id: str, prepared: Prepared, expected: int) -> int:
        new = prepared.events
        if expected == 0:
            previous_hash = GENESIS
            record = self._fold(case_id, new)
            exists = conn.execute(
                sa.select(t.cases.c.version).where(t.cases.c.case_id == case_id)
            ).scalar()
            if exists is not None:
                raise ConcurrencyConflict(case_id, 0, int(exists))
        else:
            row = conn.execute(
                self._lock(
                    sa.select(t.cases.c.version, t.cases.c.head_hash, t.cases.c.purged_at).where(
                        t.cases.c.case_id == case_id
                    )
                )
            ).one_or_none()
            actual = 0 if row is None else int(row.version)
            if row is None or actual != expected or row.purged_at is not None:
                raise ConcurrencyConflict(case_id, expected, actual)
            previous_hash = row.head_hash
            stored = conn.execute(
                sa.select(t.events.c.type_name, t.events.c.payload)
                .where(t.events.c.case_id == case_id)
                .order_by(t.events.c.version)
            ).all()
            history = [
                self._decode_row(case_id, r.type_name, r.payload, decrypt=False)[0] for r in stored
            ]
            record = self._fold(case_id, [*history, *new])
        hashes = self._chain(prepared, expected + 1, previous_hash)
        head = hashes[-1]
        if expected == 0:
            insert_rows(conn, t.cases, CASE_COLUMNS, [self._case_row(record, hashes[0], head)])
        else:
            done = conn.execute(
                t.cases.update()
                .where(t.cases.c.case_id == case_id, t.cases.c.version == expected)
                .values(**self._state_values(record, head))
            )
            if done.rowcount != 1:  # pragma: no cover - the lock makes this impossible
                raise ConcurrencyConflict(case_id, expected, self.version(case_id))
        columns = self._event_columns(prepared, expected + 1, hashes)
        insert_columns(conn, t.events, EVENT_COLUMNS, columns)
        lookups = self._lookup_rows(record.plate, prepared, expected + 1)
        if lookups:
            insert_rows(conn, t.owner_lookups, LOOKUP_COLUMNS, lookups)
        self._write_effects(conn, case_id, new, expected + 1, record)
        return record.version

    def _fold(self, case_id: str, events: Sequence[Event]) -> CaseRecord:
        try:
            return fold(events)
        except CorruptHistory as exc:
            raise StorageInputError("events", case_id, f"not a valid case history: {exc}") from exc

    @staticmethod
    def _chain(prepared: Prepared, first_version: int, previous: str) -> list[str]:
        """The hashes of the prepared events, chained after ``previous``."""
        return chain_of_json(
            previous, prepared.case_id, first_version, prepared.type_names, prepared.plain
        )

    @staticmethod
    def _event_columns(
        prepared: Prepared, first_version: int, hashes: list[str]
    ) -> list[Sequence[Any]]:
        """The events' rows by column (:data:`EVENT_COLUMNS`): by column, so the bulk path
        extends five lists per case instead of making a tuple per event."""
        n = len(hashes)
        return [
            [prepared.case_id] * n,
            range(first_version, first_version + n),
            prepared.type_names,
            prepared.stored,
            hashes,
        ]

    @staticmethod
    def _state_values(record: CaseRecord, head: str) -> dict[str, Any]:
        return {
            "state": record.state.value,
            "version": record.version,
            "closed_at": record.closed_at,
            "head_hash": head,
        }

    @staticmethod
    def _case_row(record: CaseRecord, first_hash: str, head: str) -> Row:
        """The state row (:data:`CASE_COLUMNS`) of a new case."""
        return (
            record.case_id,
            record.plate,
            record.state.value,
            record.version,
            record.opened_at,
            record.closed_at,
            first_hash,
            head,
        )

    @staticmethod
    def _lookup_rows(plate: str, prepared: Prepared, first_version: int) -> list[Row]:
        """二(二)/四: look-up log rows (:data:`LOOKUP_COLUMNS`) of the look-ups in ``prepared``."""
        return [
            (e.case_id, version, e.at, e.agent_id, plate, e.found, e.source)
            for version, e in enumerate(prepared.events, first_version)
            if type(e) is OwnerLookedUp
        ]

    def _write_effects(
        self,
        conn: sa.Connection,
        case_id: str,
        new: Sequence[Event],
        first_version: int,
        record: CaseRecord,
    ) -> None:
        todo = plan(new, first_version, self.effects, terminal=record.state.is_terminal)
        if todo.cancel:
            conn.execute(
                t.outbox.update()
                .where(
                    t.outbox.c.case_id == case_id,
                    t.outbox.c.status == "pending",
                    t.outbox.c.kind.in_(sorted(todo.cancel)),
                )
                .values(status="cancelled", done_at=self.clock.now())
            )
        insert_rows(conn, t.outbox, OUTBOX_COLUMNS, self._effect_rows(todo.schedule))

    @staticmethod
    def _effect_rows(effects: Iterable[Effect]) -> list[Row]:
        """Outbox rows (:data:`OUTBOX_COLUMNS`) of newly scheduled effects."""
        return [
            (e.key, e.case_id, e.kind, e.due_at, canonical_json(dict(e.payload)), "pending", 0)
            for e in effects
        ]

    # --- bulk path ----------------------------------------------------------------------

    def bulk_import(
        self,
        histories: Iterable[Sequence[Event]],
        *,
        chunk_cases: int = 2000,
        with_effects: bool = False,
        writer: Literal["inline", "process"] = "inline",
    ) -> tuple[int, int]:
        """Store whole histories of *new* cases, many per transaction. Returns
        ``(cases, events)``.

        For simulations and imports: each history is validated, folded, hashed and
        encrypted exactly as :meth:`append` does (``tests/sql/test_sql_bulk.py`` checks the
        stored rows are the same), but written with one multi-row insert per table per
        chunk of ``chunk_cases`` cases. Each chunk is atomic: a case that already exists
        fails its chunk with :class:`ConcurrencyConflict`, and a history that is not valid
        raises :class:`StorageInputError`; the chunks before the failure stay, the rest
        are not written. Effects are not scheduled unless ``with_effects`` (an import of
        closed history must not dial anyone).

        ``writer="process"`` writes each chunk in a child process while this one prepares
        the next (:mod:`movecar_adapters.sql.bulk`): on two free cores a large import takes about
        the longer of the two kinds of work instead of their sum. It needs an engine made
        by :func:`~movecar_adapters.sql.make_engine` and costs a process start (a fraction of a
        second), so it pays from about a hundred thousand events up.
        """
        if writer not in ("inline", "process"):
            raise StorageInputError("writer", writer, "must be 'inline' or 'process'")
        if type(chunk_cases) is not int or chunk_cases < 1:
            raise StorageInputError("chunk_cases", chunk_cases, "must be an int >= 1")
        out: InlineWriter | ProcessWriter = (
            InlineWriter(self.engine, self._conflict_in)
            if writer == "inline"
            else ProcessWriter(self.engine, self._conflict_in)
        )
        n_cases = n_events = 0
        case_rows: list[Row] = []
        event_columns: list[list[Any]] = [[] for _ in EVENT_COLUMNS]  # the bulk of the rows
        lookup_rows: list[Row] = []
        effect_rows: list[Row] = []

        def flush() -> None:
            if case_rows:
                # str(): a table's name is a str subclass, which need not go to the child
                parts: list[Part] = [
                    (str(table.name), columns, list(zip(*rows, strict=True)))
                    for table, columns, rows in (
                        (t.cases, CASE_COLUMNS, case_rows),
                        (t.owner_lookups, LOOKUP_COLUMNS, lookup_rows),
                        (t.outbox, OUTBOX_COLUMNS, effect_rows),
                    )
                    if rows
                ]
                parts.insert(1, (str(t.events.name), EVENT_COLUMNS, list(event_columns)))
                out.write([r[0] for r in case_rows], parts)
            for rows in (case_rows, lookup_rows, effect_rows, *event_columns):
                rows.clear()

        seen: set[str] = set()
        try:
            for history in histories:
                if not history:
                    raise StorageInputError("history", history, "is empty")
                case_id = history[0].case_id
                if case_id in seen:
                    raise StorageInputError("case_id", case_id, "appears twice in the import")
                seen.add(case_id)
                prepared = self.prepare(case_id, history)
                record = self._fold(case_id, history)
                hashes = self._chain(prepared, 1, GENESIS)
                case_rows.append(self._case_row(record, hashes[0], hashes[-1]))
                for column, values in zip(
                    event_columns, self._event_columns(prepared, 1, hashes), strict=True
                ):
                    column.extend(values)
                lookup_rows.extend(self._lookup_rows(record.plate, prepared, 1))
                if with_effects:
                    # A new case has no pending effects to cancel: only the scheduling.
                    todo = plan(history, 1, self.effects, terminal=record.state.is_terminal)
                    effect_rows.extend(self._effect_rows(todo.schedule))
                n_cases += 1
                n_events += len(hashes)
                if len(case_rows) >= chunk_cases:
                    flush()
            flush()
            out.close()
        except BaseException:
            out.abandon()
            raise
        return n_cases, n_events

    def _conflict_in(self, case_ids: Sequence[str], message: str) -> NoReturn:
        """A bulk chunk of ``case_ids`` broke a unique key: which case existed already?"""
        with self._read() as conn:
            taken = conn.execute(
                sa.select(t.cases.c.case_id, t.cases.c.version).where(
                    t.cases.c.case_id.in_(case_ids)
                )
            ).first()
        if taken is not None:
            raise ConcurrencyConflict(taken.case_id, 0, int(taken.version))
        raise StorageError(f"bulk import: {message}")

    # --- queries ------------------------------------------------------------------------

    def count_opened(self, start: dt.datetime, end: dt.datetime) -> int:
        """Cases opened in [start, end), by the state rows' ``opened_at`` index."""
        with self._read() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(t.cases)
                    .where(t.cases.c.opened_at >= start, t.cases.c.opened_at < end)
                ).scalar_one()
            )

    def billable_calls(self, year: int, month: int) -> int:
        """三 "按 114 移车服务成功接通话务量": calls billed for the month.

        Default policy: one billable call is one inbound move-car call connected to a
        seat, i.e. one opened case, counted in the month it was opened (Asia/Shanghai).
        """
        return self.count_opened(*month_bounds(year, month))

    def find_by_plate(self, plate: str) -> list[str]:
        """Ids of the cases about ``plate`` (canonical form), oldest first."""
        with self._read() as conn:
            return list(
                conn.execute(
                    sa.select(t.cases.c.case_id)
                    .where(t.cases.c.plate == plate)
                    .order_by(t.cases.c.seq)
                ).scalars()
            )

    def state_row(self, case_id: str) -> Mapping[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(sa.select(t.cases).where(t.cases.c.case_id == case_id)).one_or_none()
        return None if row is None else dict(row._mapping)

    # --- outbox -------------------------------------------------------------------------

    def claim(
        self, worker: str, *, limit: int = 1, now: dt.datetime | None = None
    ) -> list[Claimed]:
        """Lease up to ``limit`` due effects to ``worker``.

        PostgreSQL and MariaDB: ``SELECT ... FOR UPDATE SKIP LOCKED`` then an update of
        the selected rows, so concurrent workers skip each other's rows instead of
        waiting. SQLite: the same select and update inside ``BEGIN IMMEDIATE``, which holds
        the database's single write lock, so two claims never overlap.
        """
        _check_text("worker", worker, 100)
        at = now or self.clock.now()
        lease_until = at + self.lease
        token = uuid.uuid4().hex
        o = t.outbox

        def fn(conn: sa.Connection) -> list[Claimed]:
            query = (
                sa.select(o)
                .where(
                    o.c.status == "pending",
                    o.c.due_at <= at,
                    sa.or_(o.c.lease_until.is_(None), o.c.lease_until < at),
                )
                .order_by(o.c.due_at, o.c.id)
                .limit(limit)
            )
            if self.dialect != "sqlite":
                query = query.with_for_update(skip_locked=True)
            rows = conn.execute(query).all()
            if not rows:
                return []
            conn.execute(
                o.update()
                .where(o.c.id.in_([r.id for r in rows]))
                .values(
                    claimed_by=worker,
                    claim_token=token,
                    lease_until=lease_until,
                    attempts=o.c.attempts + 1,
                )
            )
            return [
                Claimed(
                    id=r.id,
                    token=token,
                    effect=_effect(r),
                    attempts=r.attempts + 1,
                    lease_until=lease_until,
                )
                for r in rows
            ]

        return self._write(fn)

    def complete(self, claimed: Claimed) -> bool:
        o = t.outbox

        def fn(conn: sa.Connection) -> bool:
            done = conn.execute(
                o.update()
                .where(
                    o.c.id == claimed.id,
                    o.c.claim_token == claimed.token,
                    o.c.status == "pending",
                )
                .values(status="done", done_at=self.clock.now())
            )
            return bool(done.rowcount == 1)

        return self._write(fn)

    def work(
        self,
        worker: str,
        handler: Callable[[Effect], None],
        *,
        limit: int = 10,
        now: dt.datetime | None = None,
    ) -> int:
        """Claim due effects, run ``handler`` on each, mark it done. Returns how many ran.

        A handler that raises leaves its effect pending; it is claimed again once the
        lease runs out. Handlers get :attr:`Effect.key` to recognise a repeat after a
        worker crashed between running an effect and marking it done.
        """
        ran = 0
        for item in self.claim(worker, limit=limit, now=now):
            handler(item.effect)
            self.complete(item)
            ran += 1
        return ran

    def pending(self, case_id: str | None = None) -> Iterator[Effect]:
        o = t.outbox
        query = sa.select(o).where(o.c.status == "pending").order_by(o.c.due_at, o.c.id)
        if case_id is not None:
            query = query.where(o.c.case_id == case_id)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return iter([_effect(r) for r in rows])

    # --- recordings, look-ups and the access log ------------------------------------------

    def add_recording(
        self,
        case_id: str,
        call_id: str,
        *,
        location: str,
        checksum_sha256: str,
        duration_ms: int,
        recorded_at: dt.datetime,
    ) -> None:
        """二(四) 坐席录音: where a call's audio is, its SHA-256 and its length."""
        check_case_id(case_id)
        for name, value, limit in (("call_id", call_id, 64), ("location", location, 1000)):
            if not isinstance(value, str) or not value:
                raise StorageInputError(name, value, "must be a non-empty string")
            _check_text(name, value, limit)
        if not isinstance(checksum_sha256, str) or not re.fullmatch(
            r"[0-9a-f]{64}", checksum_sha256
        ):
            raise StorageInputError("checksum_sha256", checksum_sha256, "64 lower-case hex")
        if type(duration_ms) is not int or not 0 <= duration_ms < 2**31:
            raise StorageInputError("duration_ms", duration_ms, "must be an int >= 0")
        if not isinstance(recorded_at, dt.datetime) or recorded_at.tzinfo is None:
            raise StorageInputError("recorded_at", recorded_at, "must be an aware datetime")

        def fn(conn: sa.Connection) -> None:
            exists = conn.execute(
                sa.select(t.cases.c.purged_at).where(t.cases.c.case_id == case_id)
            ).one_or_none()
            if exists is None:
                raise StorageInputError("case_id", case_id, "no such case")
            conn.execute(
                t.recordings.insert(),
                {
                    "case_id": case_id,
                    "call_id": call_id,
                    "location": location,
                    "checksum_sha256": checksum_sha256,
                    "duration_ms": duration_ms,
                    "recorded_at": recorded_at,
                },
            )

        self._write(fn)

    def recordings(self, case_id: str) -> list[Recording]:
        r = t.recordings
        with self._read() as conn:
            rows = conn.execute(
                sa.select(r).where(r.c.case_id == case_id).order_by(r.c.recorded_at, r.c.id)
            ).all()
        return [
            Recording(
                x.case_id, x.call_id, x.location, x.checksum_sha256, x.duration_ms, x.recorded_at
            )
            for x in rows
        ]

    def owner_lookups(self, case_id: str) -> list[Mapping[str, Any]]:
        lk = t.owner_lookups
        with self._read() as conn:
            rows = conn.execute(
                sa.select(lk).where(lk.c.case_id == case_id).order_by(lk.c.version)
            ).all()
        return [dict(x._mapping) for x in rows]

    def log_access(
        self, actor: str, action: str, case_id: str | None = None, detail: str | None = None
    ) -> None:
        """七(三): record who did what to which case."""
        for name, value, limit in (("actor", actor, 100), ("action", action, 40)):
            if not isinstance(value, str) or not value:
                raise StorageInputError(name, value, "must be a non-empty string")
            _check_text(name, value, limit)
        _check_text("detail", detail, 500)
        row = {
            "at": self.clock.now(),
            "actor": actor,
            "action": action,
            "case_id": case_id,
            "detail": detail,
        }
        self._write(lambda conn: conn.execute(t.access_log.insert(), row))

    def read_history(self, case_id: str, *, actor: str, purpose: str) -> Sequence[Event]:
        """The case's full history (with phone numbers), logged in the access log."""
        self.log_access(actor, "read_history", case_id, purpose)
        return self.load(case_id)

    def access_log(self, case_id: str | None = None) -> list[Mapping[str, Any]]:
        a = t.access_log
        query = sa.select(a).order_by(a.c.id)
        if case_id is not None:
            query = query.where(a.c.case_id == case_id)
        with self._read() as conn:
            return [dict(x._mapping) for x in conn.execute(query)]

    # --- monthly reports and settlements (二(七), 三, 五(三)) --------------------------------

    def close_month(self, year: int, month: int) -> MonthlyReport:
        """Write the month's 话务量 report with the digest of the events it counts.

        The digest covers ``(case id, 1, hash of CaseOpened)`` for every case opened in
        the month; the report's own hash chains it to the previous report, so a changed,
        removed or reordered report is found by ``movecar audit verify`` (五(三)).
        """
        start, end = month_bounds(year, month)
        label = f"{year:04d}-{month:02d}"

        def fn(conn: sa.Connection) -> MonthlyReport:
            head = conn.execute(
                self._lock(sa.select(t.meta.c.value).where(t.meta.c.name == "report_head"))
            ).scalar()
            previous_month, previous_hash = (None, GENESIS) if head is None else head.split(":")
            if previous_month is not None and label <= previous_month:
                raise StorageInputError("month", label, f"reports exist up to {previous_month}")
            # 三 "乙方每月 5 日前 ... 提供上月 ... 报表": one report a month, none skipped, so a
            # deleted report leaves a gap the audit can name.
            if previous_month is not None and label != next_month(previous_month):
                raise StorageInputError(
                    "month", label, f"the next report due is {next_month(previous_month)}"
                )
            items = conn.execute(
                sa.select(t.cases.c.case_id, t.cases.c.opened_hash).where(
                    t.cases.c.opened_at >= start, t.cases.c.opened_at < end
                )
            ).all()
            digest = report_digest((r.case_id, 1, r.opened_hash) for r in items)
            count = len(items)
            h = report_hash(previous_hash, label, count, count, digest)
            conn.execute(
                t.monthly_reports.insert(),
                {
                    "month": label,
                    "inbound_calls": count,
                    "billable_calls": count,
                    "digest": digest,
                    "previous_hash": previous_hash,
                    "hash": h,
                    "created_at": self.clock.now(),
                },
            )
            value = f"{label}:{h}"
            if head is None:
                conn.execute(t.meta.insert(), {"name": "report_head", "value": value})
            else:
                conn.execute(
                    t.meta.update().where(t.meta.c.name == "report_head").values(value=value)
                )
            return MonthlyReport(label, count, count, digest, previous_hash, h)

        return self._write(fn)

    def reports(self) -> list[MonthlyReport]:
        r = t.monthly_reports
        with self._read() as conn:
            rows = conn.execute(sa.select(r).order_by(r.c.month)).all()
        return [
            MonthlyReport(
                x.month, x.inbound_calls, x.billable_calls, x.digest, x.previous_hash, x.hash
            )
            for x in rows
        ]

    def record_settlement(self, month: str, *, unit_price: Decimal, fee: Decimal) -> None:
        """三: the fee billed for a reported month, tied to that report's digest."""
        for name, value in (("unit_price", unit_price), ("fee", fee)):
            if not isinstance(value, Decimal) or value < 0:
                raise StorageInputError(name, value, "must be a non-negative Decimal")

        def fn(conn: sa.Connection) -> None:
            report = conn.execute(
                sa.select(t.monthly_reports).where(t.monthly_reports.c.month == month)
            ).one_or_none()
            if report is None:
                raise StorageInputError("month", month, "has no report")
            conn.execute(
                t.settlements.insert(),
                {
                    "month": month,
                    "billable_calls": report.billable_calls,
                    "unit_price": unit_price,
                    "fee": fee,
                    "report_digest": report.digest,
                    "created_at": self.clock.now(),
                },
            )

        self._write(fn)

    # --- key rotation (七(三)) ------------------------------------------------------------

    def rotate_keys(self, *, batch: int = 500) -> int:
        """Re-encrypt every stored phone number under the newest key. Returns rows changed.

        The chain hashes cover the plaintext, so they stay valid. Run it after putting a
        new key first in ``MOVECAR_KEYS``; drop the old key only after it returns 0.
        """
        e = t.events
        changed = 0
        after: tuple[str, int] = ("", 0)
        while True:
            with self._read() as conn:
                rows = conn.execute(
                    sa.select(e.c.case_id, e.c.version, e.c.type_name, e.c.payload)
                    .where(
                        e.c.type_name.in_(sorted(PII_FIELDS)),
                        sa.tuple_(e.c.case_id, e.c.version) > sa.tuple_(*after),
                    )
                    .order_by(e.c.case_id, e.c.version)
                    .limit(batch)
                ).all()
            if not rows:
                return changed
            updates = []
            for r in rows:
                payload = json.loads(r.payload)
                dirty = False
                for key in PII_FIELDS[r.type_name]:
                    value = payload.get(key)
                    if isinstance(value, str) and self.keys.needs_rotation(value):
                        payload[key] = self.keys.rotate(value)
                        dirty = True
                if dirty:
                    updates.append((r.case_id, r.version, r.payload, canonical_json(payload)))
            if updates:

                def fn(conn: sa.Connection, todo: list[tuple[str, int, str, str]] = updates) -> int:
                    n = 0
                    for case_id, version, old, text in todo:
                        n += conn.execute(
                            e.update()
                            .where(e.c.case_id == case_id, e.c.version == version)
                            .where(e.c.payload == old)  # untouched since we read it
                            .values(payload=text)
                        ).rowcount
                    return n

                changed += self._write(fn)
            after = (rows[-1].case_id, rows[-1].version)

    # --- legal hold and retention (二(四)) ------------------------------------------------

    def set_legal_hold(self, case_id: str, reason: str | None, *, actor: str) -> None:
        """Put a case under legal hold (``reason``) or release it (``None``)."""
        check_case_id(case_id)
        if reason is not None:
            if not isinstance(reason, str) or not reason.strip():
                raise StorageInputError("reason", reason, "a hold needs a reason")
            _check_text("reason", reason, 500)

        def fn(conn: sa.Connection) -> None:
            done = conn.execute(
                t.cases.update()
                .where(t.cases.c.case_id == case_id)
                .values(legal_hold=reason is not None, legal_hold_reason=reason)
            )
            if done.rowcount != 1:
                raise StorageInputError("case_id", case_id, "no such case")
            conn.execute(
                t.access_log.insert(),
                {
                    "at": self.clock.now(),
                    "actor": actor,
                    "action": "legal_hold" if reason else "legal_hold_released",
                    "case_id": case_id,
                    "detail": reason,
                },
            )

        self._write(fn)

    def retention_due(self, closed_at: dt.datetime, now: dt.datetime) -> bool:
        """二(四) "所有移车服务数据及电话录音资料，必须保存 3 年": due only once
        ``retention_years`` whole years have passed since the case closed."""
        return add_years(closed_at, self.contract.retention_years) <= now

    def purge(
        self, *, now: dt.datetime | None = None, dry_run: bool = False, actor: str = "retention"
    ) -> PurgeResult:
        """Remove the events, look-ups, recordings metadata and effects of every case that
        closed at least ``contract.retention_years`` years ago and is not under legal hold.

        The state row stays as a tombstone (no plate) with the case's last chain hash and
        the hash of its first event, and a purge-log row records the anchor: the chain of
        what remains, the reports' digests and the purge itself stay verifiable.
        """
        at = now or self.clock.now()
        years = self.contract.retention_years
        # A superset (365-day years); the exact calendar check is retention_due.
        rough = at - dt.timedelta(days=365 * years)
        c = t.cases
        with self._read() as conn:
            rows = conn.execute(
                sa.select(c.c.case_id, c.c.closed_at, c.c.legal_hold)
                .where(c.c.closed_at.is_not(None), c.c.closed_at <= rough, c.c.purged_at.is_(None))
                .order_by(c.c.seq)
            ).all()
        due = [r for r in rows if self.retention_due(r.closed_at, at)]
        held = tuple(r.case_id for r in due if r.legal_hold)
        todo = [r.case_id for r in due if not r.legal_hold]
        note = f"closed on or before {add_years(at, -years).isoformat()} ({years} years)"
        if dry_run:
            return PurgeResult(True, note, tuple(todo), held, ())
        purged: list[str] = []
        audio: list[str] = []
        for case_id in todo:
            locations = self._write(
                functools.partial(self._purge_one, case_id=case_id, at=at, actor=actor)
            )
            if locations is not None:
                purged.append(case_id)
                audio.extend(locations)
        return PurgeResult(False, note, tuple(purged), held, tuple(audio))

    def _purge_one(
        self, conn: sa.Connection, case_id: str, at: dt.datetime, actor: str
    ) -> list[str] | None:
        c = t.cases
        row = conn.execute(self._lock(sa.select(c).where(c.c.case_id == case_id))).one_or_none()
        # Re-checked under the lock: a hold placed since the scan wins.
        if (
            row is None
            or row.legal_hold
            or row.purged_at is not None
            or row.closed_at is None
            or not self.retention_due(row.closed_at, at)
        ):
            return None
        locations = list(
            conn.execute(
                sa.select(t.recordings.c.location).where(t.recordings.c.case_id == case_id)
            ).scalars()
        )
        removed = conn.execute(t.events.delete().where(t.events.c.case_id == case_id)).rowcount
        for table in (t.owner_lookups, t.recordings, t.outbox):
            conn.execute(table.delete().where(table.c.case_id == case_id))
        conn.execute(c.update().where(c.c.case_id == case_id).values(plate=None, purged_at=at))
        conn.execute(
            t.purge_log.insert(),
            {
                "case_id": case_id,
                "purged_at": at,
                "closed_at": row.closed_at,
                "anchor_version": row.version,
                "anchor_hash": row.head_hash,
                "events_removed": removed,
            },
        )
        conn.execute(
            t.access_log.insert(),
            {
                "at": at,
                "actor": actor,
                "action": "retention_purge",
                "case_id": case_id,
                "detail": f"{removed} events; anchor v{row.version} {row.head_hash}",
            },
        )
        return locations


def _effect(row: Any) -> Effect:
    return Effect(
        key=row.effect_key,
        kind=row.kind,
        case_id=row.case_id,
        due_at=row.due_at,
        payload=json.loads(row.payload),
    )


def open_store(url: str, keys: KeyRing, *, upgrade_schema: bool = False, **kwargs: Any) -> SqlStore:
    """A store on ``url``; with ``upgrade_schema`` the migrations run first."""
    engine = make_engine(url)
    if upgrade_schema:
        from movecar_adapters.sql.engine import upgrade

        upgrade(engine)
    return SqlStore(engine, keys, **kwargs)


__all__ = [
    "PII_FIELDS",
    "MonthlyReport",
    "PurgeResult",
    "Recording",
    "SqlStore",
    "UnknownEventType",
    "add_years",
    "month_bounds",
    "next_month",
    "open_store",
    "previous_month",
    "report_hash",
]
