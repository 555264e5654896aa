"""The evidence ledger: leaves, sequencer state, checkpoints, legal holds as records.

Revision ID: 0002_ledger
Revises: 0001_initial
Create Date: 2026-11-29

Existing evidence gets its leaves here (pending: the first ``movecar ledger checkpoint``
sequences and signs them), computed from what the rows hold; each existing event counts as
an append of its own. No key is needed: an event's
leaf covers its stored chain hash, which already covers the plaintext. A state row under
legal hold gets a hold record (the flag was all there was).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from movecar_core import ledger as lg

revision = "0002_ledger"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

MYSQL: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
}
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
PAGE = 5000

#: The two tables this migration writes rows to, typed so that times are bound the way
#: the store binds them (SQLite's DATETIME text has a fixed form).
_holds = sa.table(
    "mc_legal_holds",
    sa.column("case_id", sa.String),
    sa.column("at", sa.DateTime),
    sa.column("actor", sa.String),
    sa.column("reason", sa.String),
)
_leaves = sa.table(
    "mc_ledger_leaves",
    sa.column("kind", sa.String),
    sa.column("subject", sa.String),
    sa.column("record_at", sa.DateTime),
    sa.column("leaf_hash", sa.String),
    sa.column("case_id", sa.String),
)


def upgrade() -> None:
    # Existing events: each its own append (what was written together is not known).
    op.add_column("mc_events", sa.Column("batch", sa.Integer, nullable=True))
    op.execute("UPDATE mc_events SET batch = version")
    op.add_column("mc_monthly_reports", sa.Column("tree_size", sa.BigInteger, nullable=True))
    op.add_column("mc_monthly_reports", sa.Column("tree_root", sa.String(64), nullable=True))
    op.create_table(
        "mc_legal_holds",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(64), nullable=False),
        sa.Column("at", Time, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        **MYSQL,
    )
    op.create_index("ix_mc_legal_holds_case_id", "mc_legal_holds", ["case_id"])
    op.create_table(
        "mc_ledger_leaves",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(140), nullable=False),
        sa.Column("record_at", Time, nullable=False),
        sa.Column("leaf_hash", sa.String(64), nullable=False),
        sa.Column("case_id", sa.String(64), nullable=True),
        sa.Column("leaf_index", sa.BigInteger, nullable=True),
        sa.Column("sequenced_at", Time, nullable=True),
        **MYSQL,
    )
    op.create_table(
        "mc_ledger_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("tree", sa.Text, nullable=False),
        sa.Column("sequenced_at", Time, nullable=True),
        sa.Column("sequenced_id", sa.BigInteger, nullable=True),
        sa.Column("checkpoint_size", sa.BigInteger, nullable=True),
        sa.Column("checkpoint_at", Time, nullable=True),
        **MYSQL,
    )
    op.create_table(
        "mc_checkpoints",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("root", sa.String(64), nullable=False),
        sa.Column("issued_at", Time, nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("signature", sa.String(88), nullable=False),
        **MYSQL,
    )
    conn = op.get_bind()
    conn.execute(
        sa.text("INSERT INTO mc_ledger_state (id, tree) VALUES (1, :tree)"),
        {"tree": lg.CompactTree().to_json()},
    )
    _backfill(conn)


def _utc(value: Any) -> dt.datetime:
    """A stored naive-UTC time (or SQLite's text of one), aware."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value.replace(tzinfo=dt.UTC)


def _rows(conn: sa.Connection, sql: str) -> Iterator[Any]:
    yield from conn.execute(sa.text(sql)).yield_per(PAGE)


def _backfill(conn: sa.Connection) -> None:
    """Leaves for the evidence already stored (see the module docstring)."""
    now = dt.datetime.now(dt.UTC)
    holds = list(
        _rows(
            conn,
            "SELECT case_id, legal_hold_reason FROM mc_cases WHERE legal_hold = "
            + ("true" if conn.dialect.name == "postgresql" else "1")
            + " ORDER BY seq",
        )
    )
    for h in holds:
        conn.execute(
            _holds.insert(),
            {
                "case_id": h.case_id,
                "at": now.replace(tzinfo=None),
                "actor": "migration 0002",
                "reason": h.legal_hold_reason or "-",
            },
        )
    leaves: list[lg.Leaf] = []

    def flush() -> None:
        if leaves:
            conn.execute(
                _leaves.insert(),
                [
                    {
                        "kind": x.kind.value,
                        "subject": x.subject,
                        "record_at": x.at.astimezone(dt.UTC).replace(tzinfo=None),
                        "leaf_hash": x.hash,
                        "case_id": x.case_id,
                    }
                    for x in leaves
                ],
            )
            leaves.clear()

    def add(item: lg.Leaf) -> None:
        leaves.append(item)
        if len(leaves) >= PAGE:
            flush()

    for e in _rows(conn, "SELECT case_id, version, payload, hash FROM mc_events"):
        at = dt.datetime.fromisoformat(json.loads(e.payload)["at"])
        add(lg.event_leaf(e.case_id, e.version, e.version, at, e.hash))
    for x in _rows(
        conn, "SELECT case_id, version, at, agent_id, plate, found, source FROM mc_owner_lookups"
    ):
        add(
            lg.owner_lookup_leaf(
                x.case_id,
                x.version,
                _utc(x.at),
                agent_id=x.agent_id,
                plate=x.plate,
                found=bool(x.found),
                source=x.source,
            )
        )
    for x in _rows(conn, "SELECT id, at, actor, action, case_id, detail FROM mc_access_log"):
        add(
            lg.access_leaf(
                x.id, _utc(x.at), actor=x.actor, action=x.action, case_id=x.case_id, detail=x.detail
            )
        )
    for x in _rows(conn, "SELECT id, at, case_id, actor, reason FROM mc_legal_holds"):
        add(lg.legal_hold_leaf(x.id, _utc(x.at), case_id=x.case_id, actor=x.actor, reason=x.reason))
    for x in _rows(
        conn,
        "SELECT case_id, call_id, recorded_at, location, checksum_sha256, duration_ms "
        "FROM mc_recordings",
    ):
        add(
            lg.recording_leaf(
                x.case_id,
                x.call_id,
                _utc(x.recorded_at),
                location=x.location,
                checksum_sha256=x.checksum_sha256,
                duration_ms=x.duration_ms,
            )
        )
    for x in _rows(conn, "SELECT month, created_at, hash FROM mc_monthly_reports"):
        add(lg.report_leaf(x.month, _utc(x.created_at), x.hash))
    for x in _rows(
        conn,
        "SELECT month, created_at, billable_calls, unit_price, fee, report_digest "
        "FROM mc_settlements",
    ):
        add(
            lg.settlement_leaf(
                x.month,
                _utc(x.created_at),
                billable_calls=x.billable_calls,
                unit_price=_decimal(x.unit_price),
                fee=_decimal(x.fee),
                report_digest=x.report_digest,
            )
        )
    for x in _rows(
        conn,
        "SELECT case_id, purged_at, closed_at, anchor_version, anchor_hash, events_removed "
        "FROM mc_purge_log",
    ):
        add(
            lg.purge_leaf(
                x.case_id,
                _utc(x.purged_at),
                closed_at=_utc(x.closed_at),
                anchor_version=x.anchor_version,
                anchor_hash=x.anchor_hash,
                events_removed=x.events_removed,
            )
        )
    flush()


def _decimal(value: Any) -> Decimal:
    """A NUMERIC(_, 2) as the store reads it back (SQLite hands back a float or text)."""
    return Decimal(str(value)).quantize(Decimal("0.01"))


def downgrade() -> None:
    # A report written with the ledger has a hash over its tree head: dropping the head
    # would leave a report that no longer verifies. Evidence is not thrown away silently.
    headed = (
        op.get_bind()
        .execute(sa.text("SELECT count(*) FROM mc_monthly_reports WHERE tree_size IS NOT NULL"))
        .scalar()
    )
    if headed:
        raise RuntimeError(
            f"{headed} monthly reports carry the ledger's tree head in their hash: "
            "downgrading below 0002 would make them unverifiable"
        )
    for table in ("mc_checkpoints", "mc_ledger_state", "mc_ledger_leaves", "mc_legal_holds"):
        op.drop_table(table)
    op.drop_column("mc_monthly_reports", "tree_root")
    op.drop_column("mc_monthly_reports", "tree_size")
    op.drop_column("mc_events", "batch")
