"""Tables of the SQL store (SQLAlchemy Core), one ``MetaData`` for every backend.

The schema is *built* by the Alembic migrations in :mod:`movecar_adapters.sql.migrations`, never by
``create_all``; these definitions are what the store's queries are written against, and a
test checks that the migrated database and this module agree.

Times are stored as UTC without offset (``DATETIME(6)`` on MariaDB, ``TIMESTAMP`` on
PostgreSQL, ISO text on SQLite) and come back timezone-aware in UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

metadata = sa.MetaData()

#: Case ids are opaque tokens (the facade makes 32-hex-digit uuids).
CASE_ID_LENGTH = 64
HASH_LENGTH = 64


#: SQLAlchemy's default text form of a ``DATETIME`` on SQLite.
SQLITE_DATETIME_FORMAT = (
    "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d"
)


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """An aware datetime, stored as naive UTC, read back as aware UTC."""

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the store needs aware times")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def bind_processor(self, dialect: sa.Dialect) -> Callable[[Any], Any] | None:
        """SQLAlchemy's own processor, except on SQLite: there the same text, made faster.

        SQLite stores SQLAlchemy's ``DATETIME`` as text in :data:`SQLITE_DATETIME_FORMAT`,
        which is how ``isoformat(" ", "microseconds")`` spells a naive datetime. Writing it
        that way takes a third less time than the general processor (a dict and ``%``
        formatting per value), which the bulk path runs three times per case;
        ``tests/sql/test_sql_schema.py`` checks both give the same text for every time.
        """
        standard = super().bind_processor(dialect)
        impl = self.load_dialect_impl(dialect)
        if dialect.name != "sqlite" or getattr(impl, "_storage_format", None) != (
            SQLITE_DATETIME_FORMAT
        ):
            return standard
        assert standard is not None
        utc = dt.UTC

        def to_text(value: Any) -> Any:
            if isinstance(value, dt.datetime) and value.utcoffset() is not None:
                # "+00:00" cut off: the naive UTC time's text, without making the naive time
                return value.astimezone(utc).isoformat(" ", "microseconds")[:-6]
            return standard(value)  # None, and the errors, the standard way

        return to_text

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # pragma: no cover - SQLite hands back datetimes
            value = dt.datetime.fromisoformat(value)
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC)


#: Autoincrementing 64-bit ids (SQLite only autoincrements an INTEGER PRIMARY KEY).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
#: JSON payloads: MariaDB's TEXT stops at 64 KiB.
LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def CaseId(*args: Any, **kw: Any) -> sa.Column[str]:  # noqa: N802 - reads like a column type
    return sa.Column("case_id", sa.String(CASE_ID_LENGTH), *args, **kw)


_MYSQL: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
}

#: The current-state row of each case, written in the same transaction as its events.
cases = sa.Table(
    "mc_cases",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    CaseId(nullable=False, unique=True),
    # 四: plates are kept in clear so a seat can find a case by plate; it is the purpose.
    sa.Column("plate", sa.String(16), nullable=True),
    sa.Column("state", sa.String(24), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("opened_at", UTCDateTime, nullable=False),
    sa.Column("closed_at", UTCDateTime, nullable=True),
    sa.Column("opened_hash", sa.String(HASH_LENGTH), nullable=False),
    sa.Column("head_hash", sa.String(HASH_LENGTH), nullable=False),
    sa.Column("legal_hold", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("legal_hold_reason", sa.String(500), nullable=True),
    sa.Column("purged_at", UTCDateTime, nullable=True),
    #: the case's record (the fold of its events), sealed and bound to (case, version):
    #: what a command reads instead of the history; NULL until the first append that keeps
    #: it (cases written before migration 0005, bulk imports) and after a purge
    sa.Column("folded", sa.Text, nullable=True),
    sa.Index("ix_mc_cases_opened_at", "opened_at"),
    sa.Index("ix_mc_cases_closed_at", "closed_at"),
    sa.Index("ix_mc_cases_plate", "plate"),
    **_MYSQL,
)

#: Append-only event streams; (case_id, version) is gapless per case.
events = sa.Table(
    "mc_events",
    metadata,
    CaseId(sa.ForeignKey("mc_cases.case_id"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("type_name", sa.String(40), nullable=False),
    #: canonical JSON; personal data (phones) inside is encrypted, key id in front
    sa.Column("payload", LongText, nullable=False),
    #: integrity.chain_hash over the *plaintext* payload, chained to the previous event
    sa.Column("hash", sa.String(HASH_LENGTH), nullable=False),
    #: the first version of the append this event was written in: the ledger has one
    #: leaf per append (:func:`movecar_core.ledger.event_leaf`)
    sa.Column("batch", sa.Integer, nullable=True),
    **_MYSQL,
)

#: 二(二)/四: every look-up in the owner data source, by whom, for which case.
owner_lookups = sa.Table(
    "mc_owner_lookups",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    CaseId(nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("agent_id", sa.String(100), nullable=False),
    sa.Column("plate", sa.String(16), nullable=True),
    sa.Column("found", sa.Boolean, nullable=False),
    sa.Column("source", sa.String(100), nullable=False),
    # Rows stored before schema 0004 have a ledger leaf of their own; later ones are
    # covered by their event's leaf (the row is a projection the audit checks).
    sa.Column("has_leaf", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("case_id", "version", name="uq_mc_owner_lookups_event"),
    **_MYSQL,
)

#: 二(四) "坐席录音 ... 录音提取": metadata of each call recording; the audio lives elsewhere.
recordings = sa.Table(
    "mc_recordings",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    CaseId(sa.ForeignKey("mc_cases.case_id"), nullable=False, index=True),
    sa.Column("call_id", sa.String(64), nullable=False, unique=True),
    sa.Column("location", sa.String(1000), nullable=False),
    sa.Column("checksum_sha256", sa.String(64), nullable=False),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    **_MYSQL,
)

#: 七(三): who read or changed what.
access_log = sa.Table(
    "mc_access_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    CaseId(nullable=True, index=True),
    sa.Column("detail", sa.String(500), nullable=True),
    **_MYSQL,
)

#: 二(七)/三: the monthly 话务量 report, with a digest of the events it counts, chained.
monthly_reports = sa.Table(
    "mc_monthly_reports",
    metadata,
    sa.Column("month", sa.String(7), primary_key=True),  # "2025-03"
    sa.Column("inbound_calls", sa.Integer, nullable=False),
    sa.Column("billable_calls", sa.Integer, nullable=False),
    sa.Column("digest", sa.String(HASH_LENGTH), nullable=False),
    sa.Column("previous_hash", sa.String(HASH_LENGTH), nullable=False),
    sa.Column("hash", sa.String(HASH_LENGTH), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    #: the ledger's tree head when the report was written (covers every record of its month)
    sa.Column("tree_size", sa.BigInteger, nullable=True),
    sa.Column("tree_root", sa.String(HASH_LENGTH), nullable=True),
    #: requests refused in the month by reason (schema 0007; NULL: a report written
    #: before, whose hash covers no refusals)
    sa.Column("refused_blocked", sa.Integer, nullable=True),
    sa.Column("refused_daily_limit", sa.Integer, nullable=True),
    sa.Column("refused_monthly_limit", sa.Integer, nullable=True),
    **_MYSQL,
)

#: 三: what was billed for a reported month.
settlements = sa.Table(
    "mc_settlements",
    metadata,
    sa.Column("month", sa.String(7), sa.ForeignKey("mc_monthly_reports.month"), primary_key=True),
    sa.Column("billable_calls", sa.Integer, nullable=False),
    sa.Column("unit_price", sa.Numeric(8, 2), nullable=False),
    sa.Column("fee", sa.Numeric(14, 2), nullable=False),
    sa.Column("report_digest", sa.String(HASH_LENGTH), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    **_MYSQL,
)

#: Durable effects and timers, written with the events that cause them.
outbox = sa.Table(
    "mc_outbox",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("effect_key", sa.String(200), nullable=False, unique=True),
    CaseId(nullable=False, index=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("due_at", UTCDateTime, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(12), nullable=False),  # pending | done | cancelled
    sa.Column("claimed_by", sa.String(100), nullable=True),
    sa.Column("claim_token", sa.String(64), nullable=True),
    sa.Column("lease_until", UTCDateTime, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("done_at", UTCDateTime, nullable=True),
    sa.Index("ix_mc_outbox_due", "status", "due_at"),
    **_MYSQL,
)

#: What the retention purge removed, and the anchor that keeps the record verifiable.
purge_log = sa.Table(
    "mc_purge_log",
    metadata,
    CaseId(primary_key=True),
    sa.Column("purged_at", UTCDateTime, nullable=False),
    sa.Column("closed_at", UTCDateTime, nullable=False),
    sa.Column("anchor_version", sa.Integer, nullable=False),
    sa.Column("anchor_hash", sa.String(HASH_LENGTH), nullable=False),
    sa.Column("events_removed", sa.Integer, nullable=False),
    **_MYSQL,
)

#: Small named values: the head of the report chain.
meta = sa.Table(
    "mc_meta",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
    **_MYSQL,
)

#: Legal holds placed on cases and their release (reason NULL), in order: the hold flag
#: on a state row is a projection of the latest one.
legal_holds = sa.Table(
    "mc_legal_holds",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    CaseId(nullable=False, index=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("reason", sa.String(500), nullable=True),
    **_MYSQL,
)

#: The evidence ledger's leaves (:mod:`movecar_core.ledger`): one per evidentiary record,
#: written in the record's own transaction without an index; the sequencer gives each a
#: dense ``leaf_index`` later, in id order, so writers never wait on one global counter.
#: No secondary index: a writer pays for one heap row; the audit reads the table in id
#: order and compares it with the records through order-free digests.
ledger_leaves = sa.Table(
    "mc_ledger_leaves",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("subject", sa.String(140), nullable=False),
    sa.Column("record_at", UTCDateTime, nullable=False),
    sa.Column("leaf_hash", sa.String(HASH_LENGTH), nullable=False),
    #: the record's case, if any (an audit tells a lawfully purged case's leaves by it)
    sa.Column("case_id", sa.String(CASE_ID_LENGTH), nullable=True),
    sa.Column("leaf_index", sa.BigInteger, nullable=True),
    sa.Column("sequenced_at", UTCDateTime, nullable=True),
    **_MYSQL,
)

#: The sequencer's state, one row (id 1): the compact tree of the sequenced leaves, the
#: time of the last sequencing, and the newest checkpoint (which writers read, sharing
#: the row's lock, to refuse backdated records).
ledger_state = sa.Table(
    "mc_ledger_state",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("tree", sa.Text, nullable=False),
    sa.Column("sequenced_at", UTCDateTime, nullable=True),
    #: the highest leaf id sequenced: leaves above it are pending
    sa.Column("sequenced_id", sa.BigInteger, nullable=True),
    sa.Column("checkpoint_size", sa.BigInteger, nullable=True),
    sa.Column("checkpoint_at", UTCDateTime, nullable=True),
    **_MYSQL,
)

#: Signed tree heads, as issued (Party A holds copies; these are the operator's).
checkpoints = sa.Table(
    "mc_checkpoints",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("root", sa.String(HASH_LENGTH), nullable=False),
    sa.Column("issued_at", UTCDateTime, nullable=False),
    sa.Column("key_id", sa.String(16), nullable=False),
    sa.Column("signature", sa.String(88), nullable=False),
    **_MYSQL,
)

#: Requests opened per requester number and period (a day "2025-03-14" or a month
#: "2025-03"), by the number's keyed blind index (HMAC-SHA256 under a key derived from the
#: data-encryption keys): no number is stored, and a count is one row, locked by the
#: append that opens a case (movecar_adapters.sql.requesters).
requester_counts = sa.Table(
    "mc_requester_counts",
    metadata,
    sa.Column("requester_index", sa.String(HASH_LENGTH), primary_key=True),
    sa.Column("period", sa.String(10), primary_key=True),
    sa.Column("opened", sa.Integer, nullable=False),
    **_MYSQL,
)

#: The block list: numbers found abusing the service, by blind index, with the number
#: sealed (re-indexed by a key rotation) and masked (shown), and who blocked it, when, why.
#: Every change is an access-log entry too (its ledger leaf makes it tamper-evident).
requester_blocks = sa.Table(
    "mc_requester_blocks",
    metadata,
    sa.Column("requester_index", sa.String(HASH_LENGTH), primary_key=True),
    sa.Column("key_id", sa.String(24), nullable=False),
    sa.Column("phone", sa.Text, nullable=False),
    sa.Column("masked", sa.String(20), nullable=False),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("blocked_at", UTCDateTime, nullable=False),
    **_MYSQL,
)

#: Requests refused per month and reason: what the monthly report seals.
requester_refusals = sa.Table(
    "mc_requester_refusals",
    metadata,
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("reason", sa.String(16), primary_key=True),
    sa.Column("refused", sa.Integer, nullable=False),
    **_MYSQL,
)

#: 二(五), annex 2 十六: the incident log (:mod:`movecar_core.incidents`), append-only, one
#: row per record in order (``seq`` 1, 2, ... without gaps; a writer inserts the next
#: ``seq`` it read, so two writers cannot both take one), each with its ledger leaf.
#: ``payload`` is the record's canonical JSON; the other columns repeat it for queries.
incident_records = sa.Table(
    "mc_incident_records",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("incident_id", sa.String(40), nullable=False),
    sa.Column("type_name", sa.String(40), nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Index("ix_mc_incident_records_incident_id", "incident_id"),
    **_MYSQL,
)
