"""The incident log on SQL (:class:`~movecar_core.incidents.IncidentStore`), its ledger
leaves and its audit.

Each record is a row of ``mc_incident_records`` (schema 0006): ``seq`` 1, 2, ... in the
order of the log, the record's canonical JSON as ``payload``, and the leaf of kind
``incident`` written in the same transaction (:func:`movecar_core.ledger.incident_leaf`),
so the audit finds a record changed, inserted or deleted behind the library's back, and a
checkpoint seals the outages and notices of its period as it seals the cases.

An append reads the log in its transaction, refuses a record the log's rules refuse
(:meth:`~movecar_core.incidents.IncidentLog.apply`), and inserts the next ``seq``: two
writers that read the same log both try the same ``seq``, the primary key lets one in,
and the other gets :class:`~movecar_core.incidents.IncidentConflict` (the service decides
again on the new log). The log is small (a few records a month), so reading it whole per
append costs nothing that matters.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from movecar_adapters.sql import schema as t
from movecar_adapters.sql.base import StoreBase
from movecar_adapters.sql.ledger import LedgerRecorder
from movecar_core.errors import AUDIT_HINT, MoveCarError
from movecar_core.incidents import (
    CorruptIncidentLog,
    IncidentConflict,
    IncidentError,
    IncidentLog,
    IncidentRecord,
    InvalidIncident,
    decode_record,
    encode_record,
    fold,
    type_name,
)
from movecar_core.integrity import canonical_json
from movecar_core.ledger import incident_leaf

#: (kind, subject, why), as the ledger audit's problems.
Problem = tuple[str, str, str]

_COLUMNS = (
    t.incident_records.c.seq,
    t.incident_records.c.incident_id,
    t.incident_records.c.type_name,
    t.incident_records.c.recorded_at,
    t.incident_records.c.payload,
)


def _decode_row(row: Any) -> IncidentRecord:
    """A row's record; :class:`CorruptIncidentLog` when the row does not hold one, or its
    columns say something else than its payload."""
    try:
        payload = json.loads(row.payload)
    except (TypeError, ValueError):
        raise CorruptIncidentLog(f"incident record {row.seq}: payload is not JSON") from None
    record = decode_record(row.type_name, payload)
    if record.incident_id != row.incident_id or record.recorded_at != row.recorded_at:
        raise CorruptIncidentLog(f"incident record {row.seq}: columns differ from its payload")
    return record


def _decode(rows: Sequence[Any]) -> list[IncidentRecord]:
    out = []
    for position, row in enumerate(rows, start=1):
        if row.seq != position:
            raise CorruptIncidentLog(
                f"incident record {position} is missing (the log jumps to {row.seq}): {AUDIT_HINT}"
            )
        out.append(_decode_row(row))
    return out


class SqlIncidentStore:
    """The incident log in the SQL store's database, with the store's ledger and clock
    guard: ``SqlIncidentStore(store)`` for a :class:`~movecar_adapters.sql.store.SqlStore`
    (or any part of one)."""

    def __init__(self, store: LedgerRecorder) -> None:
        if not isinstance(store, LedgerRecorder):
            raise TypeError(f"store={type(store).__name__}: needs the SQL store")
        self.store = store

    def __repr__(self) -> str:
        return f"SqlIncidentStore({self.store.engine.url.render_as_string(hide_password=True)})"

    def _rows(self, conn: sa.Connection) -> Sequence[Any]:
        return conn.execute(sa.select(*_COLUMNS).order_by(t.incident_records.c.seq)).all()

    def records(self) -> list[IncidentRecord]:
        with self.store._read() as conn:
            return _decode(self._rows(conn))

    def append(self, record: IncidentRecord, expected: int) -> int:
        if type(expected) is not int or expected < 0:
            raise InvalidIncident("expected", expected, "a whole number >= 0")
        payload = canonical_json(encode_record(record))
        name = type_name(record)
        seq = expected + 1

        def fn(conn: sa.Connection) -> int:
            rows = self._rows(conn)
            if len(rows) != expected:
                raise IncidentConflict(expected, len(rows))
            log: IncidentLog = fold(_decode(rows), self.store.contract)
            log.apply(record)  # the log's typed refusal: nothing is written
            self.store._guard(conn, f"incident record {seq}", [record.recorded_at])
            conn.execute(
                t.incident_records.insert().values(
                    seq=seq,
                    incident_id=record.incident_id,
                    type_name=name,
                    recorded_at=record.recorded_at,
                    payload=payload,
                )
            )
            self.store._add_leaves(
                conn,
                [
                    incident_leaf(
                        seq,
                        record.recorded_at,
                        incident_id=record.incident_id,
                        type_name=name,
                        payload=payload,
                    )
                ],
            )
            return seq

        try:
            return self.store._write(fn)
        except sa.exc.IntegrityError:
            # Another writer took this seq between our read and our insert.
            raise IncidentConflict(expected, seq) from None


def check_incident_log(store: StoreBase) -> list[Problem]:
    """The audit's replay of the incident log: every ``seq`` present from 1, every row a
    record whose columns match it, and the whole log replaying under its rules (an end
    before its start, a notice for an unknown incident... written behind the library's
    back). One problem per row that fails; the replay stops at the first that does not
    fit, since what follows it depends on it."""
    problems: list[Problem] = []
    with store._read() as conn:
        rows = conn.execute(sa.select(*_COLUMNS).order_by(t.incident_records.c.seq)).all()
    expected = 1
    records: list[tuple[int, IncidentRecord]] = []
    for row in rows:
        while expected < row.seq:
            problems.append(("incident", str(expected), "record deleted (gap in the log)"))
            expected += 1
        expected = int(row.seq) + 1
        try:
            records.append((int(row.seq), _decode_row(row)))
        except (MoveCarError, ValueError, TypeError) as exc:
            problems.append(("incident", str(row.seq), f"unreadable: {exc}"))
    log = IncidentLog(store.contract)
    for seq, record in records:
        try:
            log.apply(record)
        except IncidentError as exc:
            problems.append(("incident", str(seq), f"does not replay: {exc}"))
            break
    return problems


__all__ = ["SqlIncidentStore", "check_incident_log"]
