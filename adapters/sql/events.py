"""Events and projections: event streams, state rows, the owner look-up log, the bulk path."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, NoReturn, overload

import attrs
import sqlalchemy as sa

from movecar_adapters.crypto import place, place_prefix
from movecar_adapters.sql import schema as t
from movecar_adapters.sql.base import (
    MAX_AGENT,
    MAX_FIELD_CHARS,
    MAX_PAYLOAD_BYTES,
    MAX_PLATE,
    MAX_SOURCE,
    check_case_id,
    check_text,
)
from movecar_adapters.sql.bulk import InlineWriter, Part, ProcessWriter
from movecar_adapters.sql.effects import OUTBOX_COLUMNS, cancel_timers, effect_rows
from movecar_adapters.sql.errors import StorageError, StorageInputError
from movecar_adapters.sql.ledger import CHECKPOINT_AT, LEAF_COLUMNS, leaf_row
from movecar_adapters.sql.prepared import Runner, Statement
from movecar_adapters.sql.requesters import RequesterRecorder
from movecar_adapters.sql.writes import Row
from movecar_core.case import (
    EVENT_TYPES,
    CaseOpened,
    CaseRecord,
    CaseState,
    Event,
    OwnerLookedUp,
)
from movecar_core.codec import (
    CanonicalEncoder,
    MalformedEvent,
    MalformedRecord,
    UnknownEventType,
    decode,
    decode_record,
    encode,
    encode_record,
)
from movecar_core.errors import AUDIT_HINT, CasePurged, ConcurrencyConflict
from movecar_core.integrity import (
    GENESIS,
    chain_of_json,
)
from movecar_core.ledger import BackdatedRecord, event_leaf
from movecar_core.machine import CorruptHistory, advanced, fold
from movecar_core.outbox import TIMERS, Plan, may_be_pending, plan
from movecar_core.requesters import RequesterRefused

#: Personal data encrypted at rest (七(三)), per stored event type.
PII_FIELDS: dict[str, tuple[str, ...]] = {
    "CaseOpened": ("requester_phone",),
    "OwnerLookedUp": ("owner_phone",),
}
#: Events to canonical JSON, plaintext (hashed) and with the phones sealed (stored).
_ENCODE = CanonicalEncoder(name for names in PII_FIELDS.values() for name in names)
#: The event classes holding phones, with their stored type names (the seal's place).
_SEALED_TYPES: dict[type[Any], str] = {EVENT_TYPES[name]: name for name in PII_FIELDS}


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


CASE_COLUMNS = (
    "case_id", "plate", "state", "version", "opened_at", "closed_at", "opened_hash", "head_hash"
)  # fmt: skip
#: A new case's state row as an append writes it: with its record kept (bulk imports, which
#: write :data:`CASE_COLUMNS`, leave it to the case's first append).
NEW_CASE_COLUMNS = (*CASE_COLUMNS, "folded")
EVENT_COLUMNS = ("case_id", "version", "type_name", "payload", "hash", "batch")
LOOKUP_COLUMNS = ("case_id", "version", "at", "agent_id", "plate", "found", "source")

#: The place a kept record is sealed at (:func:`movecar_adapters.crypto.place`): a type
#: name no event has, so no event's phone can be moved into a record nor the other way.
RECORD_TYPE = "CaseRecord"
RECORD_FIELD = "folded"


def _state_for_append(dialect: sa.Dialect) -> sa.Select[Any]:
    """The case's state row, for an append to it. On the servers it is locked ``FOR
    UPDATE`` (the ledger's state is read apart, under its shared lock); on SQLite ``BEGIN
    IMMEDIATE`` already holds the database's write lock, and the newest checkpoint's time
    comes in the same statement."""
    c = t.cases
    columns = [c.c.version, c.c.state, c.c.head_hash, c.c.purged_at, c.c.folded]
    query = sa.select(*columns).where(c.c.case_id == sa.bindparam("case_id"))
    if dialect.name == "sqlite":
        return query.add_columns(CHECKPOINT_AT.scalar_subquery())
    return query.with_for_update()


def _taken(dialect: sa.Dialect) -> sa.Select[Any]:
    """The version of a case about to be opened (None: not taken); on SQLite with the
    newest checkpoint's time, in one statement."""
    c = t.cases
    version = sa.select(c.c.version).where(c.c.case_id == sa.bindparam("case_id"))
    if dialect.name == "sqlite":
        return sa.select(version.scalar_subquery(), CHECKPOINT_AT.scalar_subquery())
    return version


def _update_state(_: sa.Dialect) -> sa.Update:
    c = t.cases
    return (
        c.update()
        .where(c.c.case_id == sa.bindparam("case_id"), c.c.version == sa.bindparam("expected"))
        .values(
            state=sa.bindparam("new_state"),
            version=sa.bindparam("new_version"),
            closed_at=sa.bindparam("new_closed_at"),
            head_hash=sa.bindparam("new_head_hash"),
            folded=sa.bindparam("new_folded"),
        )
    )


def _kept(_: sa.Dialect) -> sa.Select[Any]:
    c = t.cases
    return sa.select(c.c.version, c.c.folded, c.c.purged_at, c.c.head_hash).where(
        c.c.case_id == sa.bindparam("case_id")
    )


def _swap_state(guarded: bool) -> Callable[[sa.Dialect], sa.Update]:
    """The state row's UPDATE as a compare-and-swap (SQLite): it changes the row only if
    it is still the one the record was read from (version, head hash, not purged) and,
    with the ledger, no checkpoint is newer than the earliest new event (the backdating
    guard, read in the same statement; ``BEGIN IMMEDIATE`` holds the write lock)."""

    def build(dialect: sa.Dialect) -> sa.Update:
        c = t.cases
        where = [
            c.c.case_id == sa.bindparam("case_id"),
            c.c.version == sa.bindparam("expected"),
            c.c.head_hash == sa.bindparam("previous_hash"),
            c.c.purged_at.is_(None),
        ]
        if guarded:
            newest = CHECKPOINT_AT.scalar_subquery()
            earliest = sa.bindparam("earliest", type_=t.ledger_state.c.checkpoint_at.type)
            where.append(sa.or_(newest.is_(None), newest <= earliest))
        return _update_state(dialect).where(*where[2:])

    return build


def _history_rows(_: sa.Dialect) -> sa.Select[Any]:
    e = t.events
    return (
        sa.select(e.c.version, e.c.type_name, e.c.payload)
        .where(e.c.case_id == sa.bindparam("case_id"))
        .order_by(e.c.version)
    )


STATE_FOR_APPEND = Statement(_state_for_append)
SWAP_STATE = Statement(_swap_state(guarded=True))
SWAP_STATE_UNGUARDED = Statement(_swap_state(guarded=False))
HISTORY = Statement(_history_rows)
TAKEN = Statement(_taken)
UPDATE_STATE = Statement(_update_state)
KEPT = Statement(_kept)


class History(Sequence[Event]):
    """The events of a case up to a version, read from the store when first looked at
    (:meth:`EventRecorder.load_folded`): a command without a ``command_id`` never does."""

    def __init__(self, store: EventRecorder, case_id: str, version: int) -> None:
        self._store = store
        self._case_id = case_id
        self._version = version
        self._events: tuple[Event, ...] | None = None

    def _all(self) -> tuple[Event, ...]:
        if self._events is None:
            # Events are never changed, only appended (or purged with the whole case), so
            # the ones up to the version read with the record are still the same events.
            events = tuple(self._store.load(self._case_id)[: self._version])
            if len(events) != self._version:
                raise StorageError(
                    f"case {self._case_id}: {len(events)} events stored, its state row says "
                    f"{self._version}: {AUDIT_HINT}"
                )
            self._events = events
        return self._events

    def __len__(self) -> int:
        return self._version

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | Sequence[Event]:
        return self._all()[index]

    def __iter__(self) -> Iterator[Event]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return self._all() == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"History({self._case_id!r}, version={self._version})"


@attrs.define
class _Start:
    """What an append starts from: the record after the new events, the state before
    them (None: they open the case), the head hash they chain from, and the timers the
    case may have pending (:func:`~movecar_core.outbox.may_be_pending`)."""

    record: CaseRecord
    before: CaseState | None
    previous_hash: str
    timers: frozenset[str] = TIMERS


#: Records remembered by their sealed text (:meth:`EventRecorder._know`), at most.
KNOWN_RECORDS = 1024


class EventRecorder(RequesterRecorder):
    """Event streams and their projections (state rows, the owner look-up log).

    One ``append`` is one transaction that

    1. checks the expected version against the case's state row (locked ``FOR UPDATE`` on
       PostgreSQL and MariaDB; SQLite's ``BEGIN IMMEDIATE`` holds the database's write lock),
    2. folds the stored events with the new ones through the state machine (a batch that no
       valid command sequence could produce is refused),
    3. inserts the events, each with its hash chained to the previous one
       (:func:`movecar_core.integrity.chain_hash`, over the plaintext payload),
    4. updates the state row (state, version, closed time, head hash),
    5. records owner look-ups (二(二)/四) and the effects and timers the events cause
       (:func:`movecar_core.outbox.plan`), and keeps the case's record, the fold of its
       events, in the state row, sealed (:meth:`load_folded` reads it back).

    Either all of it is stored or none of it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._known_records: dict[str, tuple[int, str, CaseRecord, str]] = {}

    # --- events in and out --------------------------------------------------------------

    def prepare(self, case_id: str, events: Sequence[Event], first_version: int = 1) -> Prepared:
        """Validate, encode and encrypt ``events`` (no database access), the first of them
        to be stored as version ``first_version``.

        七(三) "防止 ... 个人信息和数据的泄露、篡改": each phone is sealed bound to its place
        (case, version, event type, field), so it opens nowhere else
        (:mod:`movecar_adapters.crypto`).
        """
        check_case_id(case_id)
        if not isinstance(events, Sequence) or not events:
            raise StorageInputError("events", events, "must be a non-empty sequence of events")
        encrypt_at = self.keys.encrypt_at
        partial = functools.partial
        writers = _ENCODE.writers
        type_names: list[str] = []
        plains: list[str] = []
        stored_forms: list[str] = []
        for i, event in enumerate(events):
            try:
                # Only events with phones call the seal; the rest pay for no place text.
                name = _SEALED_TYPES.get(type(event))
                seal = (
                    None
                    if name is None
                    else partial(encrypt_at, f"{case_id}\x00{first_version + i}\x00{name}\x00")
                )
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
                    check_text(f"{type_name}.{key}", value, MAX_FIELD_CHARS)
            # Column limits, checked inline: a call per event shows on the bulk path.
            if type(event) is CaseOpened:
                if len(event.plate) > MAX_PLATE:
                    check_text("CaseOpened.plate", event.plate, MAX_PLATE)
            elif type(event) is OwnerLookedUp and (
                len(event.agent_id) > MAX_AGENT or len(event.source) > MAX_SOURCE
            ):
                check_text("OwnerLookedUp.agent_id", event.agent_id, MAX_AGENT)
                check_text("OwnerLookedUp.source", event.source, MAX_SOURCE)
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
        self,
        case_id: str,
        type_name: str,
        stored: str,
        *,
        decrypt: bool = True,
        version: int | None = None,
    ) -> tuple[Event, dict[str, Any]]:
        """The event stored at ``case_id`` v``version`` (the version names the phones'
        place: a phone sealed for another place raises
        :class:`~movecar_adapters.crypto.CiphertextMisplaced`, and nobody is dialled)."""
        try:
            payload = json.loads(stored)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
            raise MalformedEvent(f"case {case_id}: {type_name} payload is not JSON") from exc
        if not isinstance(payload, dict):
            raise MalformedEvent(f"case {case_id}: {type_name} payload is not an object")
        if decrypt:
            if version is None:
                raise TypeError("_decode_row: decrypting needs the event's version")
            for key in PII_FIELDS.get(type_name, ()):
                value = payload.get(key)
                if isinstance(value, str):
                    where = place_prefix(case_id, version, type_name) + key
                    payload[key] = self.keys.decrypt(value, where)
        return decode(case_id, type_name, payload), payload

    def load(self, case_id: str) -> Sequence[Event]:
        """The case's events; raises :class:`~movecar_core.errors.CasePurged` for a case
        whose events a retention purge removed (its tombstone says so)."""
        check_case_id(case_id)
        with self._read() as conn:
            rows = conn.execute(
                sa.select(t.events.c.version, t.events.c.type_name, t.events.c.payload)
                .where(t.events.c.case_id == case_id)
                .order_by(t.events.c.version)
            ).all()
            # Only a stream without events pays for this look-up (a new case id, or a
            # purged one): an unknown case loads as empty, a purged one is refused.
            purged_at = None if rows else self._purged_at(conn, case_id)
        if purged_at is not None:
            raise CasePurged(case_id, purged_at)
        return tuple(
            self._decode_row(case_id, r.type_name, r.payload, version=r.version)[0] for r in rows
        )

    def load_folded(self, case_id: str) -> tuple[Sequence[Event], CaseRecord | None]:
        """The case's events and record (:class:`~movecar_core.ports.FoldedCaseStore`).

        One row is read: the state row with the record kept in it, opened where it was
        sealed (the case and its version: a record moved from another case or version, or
        altered, raises :class:`~movecar_adapters.crypto.CiphertextMisplaced`). The events
        are read only if the caller looks at them (a command with a ``command_id`` does, to
        find an earlier run of it); a case without a kept record (written before migration
        0005, or bulk-imported) is folded from its events as before.
        """
        check_case_id(case_id)
        found = self.command_path.read(KEPT, case_id=case_id)
        if not found:
            return (), None
        version, folded, purged_at, head = found[0]
        if purged_at is not None:
            raise CasePurged(case_id, purged_at)
        if folded is None:
            events = self.load(case_id)
            return events, self._fold(case_id, events) if events else None
        record = self._open_record(case_id, version, folded, head)
        return History(self, case_id, record.version), record

    def _open_record(self, case_id: str, version: object, folded: str, head: str) -> CaseRecord:
        """The record kept in the state row of ``case_id`` at ``version`` (``head``: the
        row's head hash, remembered with it)."""
        known = self._known_records.get(case_id)
        if known is not None and known[0] == version and known[1] == folded and known[3] == head:
            return known[2]
        if type(version) is not int:  # SQLite keeps any text in an INTEGER column
            raise MalformedRecord(f"case {case_id}: state row version {version!r:.40}")
        where = place(case_id, version, RECORD_TYPE, RECORD_FIELD)
        record = decode_record(case_id, self.keys.decrypt(folded, where))
        if record.version != version:  # sealed for this version: only a key holder lies so
            raise MalformedRecord(f"case {case_id}: kept record is not of version {version}")
        self._know(case_id, version, folded, record, head)
        return record

    def _seal_record(self, record: CaseRecord, head: str) -> str:
        where = place(record.case_id, record.version, RECORD_TYPE, RECORD_FIELD)
        folded = self.keys.encrypt(encode_record(record), where)
        self._know(record.case_id, record.version, folded, record, head)
        return folded

    def _know(self, case_id: str, version: int, folded: str, record: CaseRecord, head: str) -> None:
        """Remember what ``folded`` opens to at ``version`` (the row's head hash then
        ``head``): a command reads its case's row to decide and appends to that same row,
        and the next command reads what this one wrote. Only the very text sealed or opened
        here matches (a fresh nonce per seal), at the same case, version and head, so a row
        changed since is opened anew."""
        known = self._known_records
        if len(known) >= KNOWN_RECORDS:
            known.clear()
        known[case_id] = (version, folded, record, head)

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
        return self.append_folded(case_id, events, expected_version)[0].version

    def append_folded(
        self, case_id: str, events: Sequence[Event], expected_version: int
    ) -> tuple[CaseRecord, Plan]:
        """:meth:`append`, handing back the case's record after ``events`` and the effects
        planned for them (:class:`~movecar_core.ports.FoldedCaseStore`)."""
        if type(expected_version) is not int or expected_version < 0:
            raise StorageInputError("expected_version", expected_version, "must be an int >= 0")
        prepared = self.prepare(case_id, events, expected_version + 1)
        try:
            done = self.command_path.transaction(
                lambda run: self._append(run, case_id, prepared, expected_version)
            )
        except ConcurrencyConflict:
            self._refuse_if_purged(case_id)  # a tombstone's conflict is CasePurged
            raise
        except sa.exc.IntegrityError as exc:
            # Another writer created the case (or the version) between our check and write.
            actual = self.version(case_id)
            if actual != expected_version:
                raise ConcurrencyConflict(case_id, expected_version, actual) from exc
            raise StorageError(f"case {case_id}: {exc.orig}") from exc
        if isinstance(done, RequesterRefused):
            raise done  # committed: the refusal counted, nothing opened
        return done

    def _append(
        self, run: Runner, case_id: str, prepared: Prepared, expected: int
    ) -> tuple[CaseRecord, Plan] | RequesterRefused:
        new = prepared.events
        known = self._known_records.get(case_id) if self.dialect == "sqlite" else None
        swap = known is not None and expected > 0 and known[0] == expected
        if swap:
            # The record this command was decided on, read (or written) at this version:
            # the state row's UPDATE below checks that the row is still that one.
            assert known is not None
            _, _, kept, previous_hash = known
            try:
                start = _Start(advanced(kept, new), kept.state, previous_hash, may_be_pending(kept))
            except CorruptHistory:
                swap = False  # refused below, after the checks a refusal comes after
        if not swap:
            start = self._locked_start(run, case_id, new, expected)
        if expected == 0 and self.requesters is not None and type(new[0]) is CaseOpened:
            # The requester limits, before anything of the case is written: a refusal
            # commits its count alone (movecar_adapters.sql.requesters).
            refused = self._admit_requester(run, case_id, new[0])
            if refused is not None:
                return refused
        record, previous_hash = start.record, start.previous_hash
        hashes = self._chain(prepared, expected + 1, previous_hash)
        head = hashes[-1]
        folded = self._seal_record(record, head)
        if expected == 0:
            run.insert(
                t.cases, NEW_CASE_COLUMNS, [(*self._case_row(record, hashes[0], head), folded)]
            )
        else:
            done = run.write(
                (SWAP_STATE if self.ledger else SWAP_STATE_UNGUARDED) if swap else UPDATE_STATE,
                case_id=case_id,
                expected=expected,
                previous_hash=previous_hash,
                earliest=min(e.at for e in new),
                new_state=record.state.value,
                new_version=record.version,
                new_closed_at=record.closed_at,
                new_head_hash=head,
                new_folded=folded,
            )
            if done != 1:
                if not swap:  # pragma: no cover - the lock makes this impossible
                    raise ConcurrencyConflict(case_id, expected, self.version(case_id))
                # Not the row the record was read from, or backdated: find out which with
                # the row read under the lock, as without a remembered record.
                self._known_records.pop(case_id, None)
                return self._append(run, case_id, prepared, expected)
        run.insert_columns(
            t.events, EVENT_COLUMNS, self._event_columns(prepared, expected + 1, hashes)
        )
        lookups = self._lookup_rows(record.plate, prepared, expected + 1)
        if lookups:
            run.insert(t.owner_lookups, LOOKUP_COLUMNS, lookups)
        if self.ledger:
            run.insert(
                t.ledger_leaves,
                LEAF_COLUMNS,
                self._leaves(prepared, expected + 1, hashes),
            )
        # The effects, in the events' own transaction (movecar_core.outbox.plan).
        todo = plan(new, expected + 1, self.effects, before=start.before, after=record.state)
        if cancel := todo.cancel & start.timers:
            cancel_timers(run, case_id, cancel, self.clock.now())
        if todo.schedule:
            run.insert(
                t.outbox, OUTBOX_COLUMNS, effect_rows(todo.schedule, self.effects, self.lease)
            )
        return record, todo

    def _locked_start(
        self, run: Runner, case_id: str, new: Sequence[Event], expected: int
    ) -> _Start:
        """What an append starts from, read from the state row under the write lock (the
        expected version checked, the backdating guard applied)."""
        sqlite = self.dialect == "sqlite"
        if expected == 0:
            found = run.rows(TAKEN, case_id=case_id)
            taken = found[0][0] if found else None
            newest = found[0][1] if sqlite else self._newest_checkpoint(run)
            if taken is not None:
                raise ConcurrencyConflict(case_id, 0, int(taken))
            start = _Start(self._fold(case_id, new), None, GENESIS)
        else:
            found = run.rows(STATE_FOR_APPEND, case_id=case_id)
            row = found[0] if found else None
            actual = 0 if row is None else int(row[0])
            if row is None or actual != expected or row[3] is not None:
                raise ConcurrencyConflict(case_id, expected, actual)
            _, state, previous_hash, _, folded = row[:5]
            if folded is None:
                # No record kept yet: the stored events, folded with the new ones.
                record = self._fold(case_id, [*self._history(run, case_id), *new])
                start = _Start(record, CaseState(state), previous_hash)
            else:
                # The lock above keeps the state row, and the record in it, current.
                kept = self._open_record(case_id, actual, folded, previous_hash)
                start = _Start(self._advance(case_id, kept, new), kept.state, previous_hash)
                start.timers = may_be_pending(kept)
            newest = row[5] if sqlite else self._newest_checkpoint(run)
        self._refuse_backdated(newest, f"case {case_id}", (e.at for e in new))
        return start

    def _history(self, run: Runner, case_id: str) -> list[Event]:
        """The case's stored events, phones opened: their fold is the record kept from now
        on, which must hold the phones a later command dials or notifies."""
        return [
            self._decode_row(case_id, type_name, payload, version=version)[0]
            for version, type_name, payload in run.rows(HISTORY, case_id=case_id)
        ]

    @staticmethod
    def _purged_at(conn: sa.Connection, case_id: str) -> dt.datetime | None:
        """When a retention purge (二(四)) left only the case's tombstone, else None."""
        found: dt.datetime | None = conn.execute(
            sa.select(t.cases.c.purged_at).where(t.cases.c.case_id == case_id)
        ).scalar()
        return found

    def _refuse_if_purged(self, case_id: str) -> None:
        """Raise :class:`~movecar_core.errors.CasePurged` for a purged case (asked only
        after a refusal, off the hot path)."""
        with self._read() as conn:
            purged_at = self._purged_at(conn, case_id)
        if purged_at is not None:
            raise CasePurged(case_id, purged_at)

    def _fold(self, case_id: str, events: Sequence[Event]) -> CaseRecord:
        try:
            return fold(events)
        except CorruptHistory as exc:
            raise StorageInputError("events", case_id, f"not a valid case history: {exc}") from exc

    def _advance(self, case_id: str, kept: CaseRecord, new: Sequence[Event]) -> CaseRecord:
        try:
            return advanced(kept, new)
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
        extends six lists per case instead of making a tuple per event. ``batch`` is the
        append's first version: one ledger leaf covers the append."""
        n = len(hashes)
        return [
            [prepared.case_id] * n,
            range(first_version, first_version + n),
            prepared.type_names,
            prepared.stored,
            hashes,
            [first_version] * n,
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
    def _leaves(prepared: Prepared, first_version: int, hashes: list[str]) -> list[Row]:
        """The ledger row (:data:`~movecar_adapters.sql.ledger.LEAF_COLUMNS`) of the append:
        one leaf for its events, look-ups included (the look-up log's rows repeat those
        events, and the audit checks them against the events: schema 0004)."""
        last = first_version + len(hashes) - 1
        at = prepared.events[0].at
        return [leaf_row(event_leaf(prepared.case_id, first_version, last, at, hashes[-1]))]

    @staticmethod
    def _lookup_rows(plate: str, prepared: Prepared, first_version: int) -> list[Row]:
        """二(二)/四: look-up log rows (:data:`LOOKUP_COLUMNS`) of the look-ups in ``prepared``."""
        return [
            (e.case_id, version, e.at, e.agent_id, plate, e.found, e.source)
            for version, e in enumerate(prepared.events, first_version)
            if type(e) is OwnerLookedUp
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
        outbox_rows: list[Row] = []
        leaf_rows: list[Row] = []
        newest = self.newest_checkpoint_at() if self.ledger else None

        def flush() -> None:
            if case_rows:
                # str(): a table's name is a str subclass, which need not go to the child
                parts: list[Part] = [
                    (str(table.name), columns, list(zip(*rows, strict=True)))
                    for table, columns, rows in (
                        (t.cases, CASE_COLUMNS, case_rows),
                        (t.owner_lookups, LOOKUP_COLUMNS, lookup_rows),
                        (t.outbox, OUTBOX_COLUMNS, outbox_rows),
                        (t.ledger_leaves, LEAF_COLUMNS, leaf_rows),
                    )
                    if rows
                ]
                parts.insert(1, (str(t.events.name), EVENT_COLUMNS, list(event_columns)))
                out.write([r[0] for r in case_rows], parts)
            for rows in (case_rows, lookup_rows, outbox_rows, leaf_rows, *event_columns):
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
                lookups = self._lookup_rows(record.plate, prepared, 1)
                lookup_rows.extend(lookups)
                if self.ledger:
                    leaf_rows.extend(self._bulk_leaves(prepared, hashes, newest))
                if with_effects:
                    # A new case has no pending effects to cancel: only the scheduling.
                    todo = plan(history, 1, self.effects, before=None, after=record.state)
                    outbox_rows.extend(effect_rows(todo.schedule, self.effects, self.lease))
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

    def _bulk_leaves(
        self, prepared: Prepared, hashes: list[str], newest: dt.datetime | None
    ) -> Iterator[Row]:
        """The ledger rows of a new case's history; refused if it reaches back before the
        newest checkpoint (五(三): history older than a signed checkpoint cannot join it)."""
        if newest is not None:  # none yet (a new database): nothing to compare
            earliest = min(e.at for e in prepared.events)
            if earliest < newest:
                raise BackdatedRecord(f"case {prepared.case_id}", earliest, newest)
        return iter(self._leaves(prepared, 1, hashes))

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

    def open_counts(self) -> dict[CaseState, int]:
        """Open cases per state (:class:`~movecar_core.ports.OpenCases`), from the state
        rows whose ``closed_at`` is NULL (indexed): no event is read."""
        c = t.cases
        query = (
            sa.select(c.c.state, sa.func.count())
            .where(c.c.closed_at.is_(None), c.c.purged_at.is_(None))
            .group_by(c.c.state)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        try:
            return {CaseState(state): int(n) for state, n in rows}
        except ValueError as exc:
            raise StorageError(f"a state row names an unknown state: {AUDIT_HINT}") from exc

    def open_cases(self, limit: int) -> list[CaseRecord]:
        """The ``limit`` oldest open cases' records (:class:`~movecar_core.ports.OpenCases`):
        the records kept sealed in their state rows, opened where they were sealed; only a
        row without one (bulk-imported, never appended to since) is folded from its events."""
        if type(limit) is not int or limit < 0:
            raise StorageInputError("limit", limit, "must be an int >= 0")
        c = t.cases
        query = (
            sa.select(c.c.case_id, c.c.version, c.c.folded, c.c.head_hash)
            .where(c.c.closed_at.is_(None), c.c.purged_at.is_(None))
            .order_by(c.c.opened_at, c.c.seq)
            .limit(limit)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        records = []
        for case_id, version, folded, head in rows:
            if folded is None:
                records.append(self._fold(case_id, self.load(case_id)))
            else:
                records.append(self._open_record(case_id, version, folded, head))
        return records

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
