"""Requester limits: requests counted per number by a blind index, the block list, refusals.

Revision ID: 0007_requester_limits
Revises: 0006_incidents
Create Date: 2026-12-01

``mc_requester_counts``: requests opened per requester number and period (a day or a
month), keyed by the number's blind index (HMAC-SHA256 under a key derived from the
data-encryption keys, never the number): one row per (index, period), which the append
that opens a case increments and reads under its row lock (movecar_adapters.sql.requesters).
``mc_requester_blocks``: the block list (the number sealed and masked, who, when, why).
``mc_requester_refusals``: requests refused per month and reason. Three columns of
``mc_monthly_reports`` keep the refusals a report counted: its hash covers them. Reports
written before keep NULL there and hash as they were sealed.

No data is written. Downgrade refuses once a report counted refusals (the older library
would hash it without them and the audit would find every such report changed); otherwise
it drops the tables and columns. On MariaDB it leaves them: MariaDB commits DDL at once,
so a drop here would stay even when a lower revision then refuses the downgrade; the older
library never reads them, and this upgrade takes them back.

It comes after the incidents' 0006 (both written at once; chained when both landed).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0007_requester_limits"
down_revision = "0006_incidents"
branch_labels = None
depends_on = None

_MYSQL: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
}
#: As movecar_adapters.sql.schema.UTCDateTime stores a time: DATETIME(6) on MariaDB.
Time = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_REPORT_COLUMNS = ("refused_blocked", "refused_daily_limit", "refused_monthly_limit")


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    if "mc_requester_counts" not in tables:  # else left by a downgrade on MariaDB
        op.create_table(
            "mc_requester_counts",
            sa.Column("requester_index", sa.String(64), primary_key=True),
            sa.Column("period", sa.String(10), primary_key=True),
            sa.Column("opened", sa.Integer, nullable=False),
            **_MYSQL,
        )
    if "mc_requester_blocks" not in tables:
        op.create_table(
            "mc_requester_blocks",
            sa.Column("requester_index", sa.String(64), primary_key=True),
            sa.Column("key_id", sa.String(24), nullable=False),
            sa.Column("phone", sa.Text, nullable=False),
            sa.Column("masked", sa.String(20), nullable=False),
            sa.Column("reason", sa.String(200), nullable=False),
            sa.Column("actor", sa.String(100), nullable=False),
            sa.Column("blocked_at", Time, nullable=False),
            **_MYSQL,
        )
    if "mc_requester_refusals" not in tables:
        op.create_table(
            "mc_requester_refusals",
            sa.Column("month", sa.String(7), primary_key=True),
            sa.Column("reason", sa.String(16), primary_key=True),
            sa.Column("refused", sa.Integer, nullable=False),
            **_MYSQL,
        )
    columns = {c["name"] for c in inspector.get_columns("mc_monthly_reports")}
    for name in _REPORT_COLUMNS:
        if name not in columns:
            op.add_column("mc_monthly_reports", sa.Column(name, sa.Integer(), nullable=True))


def downgrade() -> None:
    conn = op.get_bind()
    sealed = conn.execute(
        sa.text("SELECT month FROM mc_monthly_reports WHERE refused_blocked IS NOT NULL")
    ).first()
    if sealed is not None:
        raise RuntimeError(
            f"the monthly report of {sealed.month} counts refused requests in its hash: "
            "below schema 0007 it would no longer verify"
        )
    if conn.dialect.name in ("mysql", "mariadb"):
        return
    for name in _REPORT_COLUMNS:
        op.drop_column("mc_monthly_reports", name)
    for table in ("mc_requester_refusals", "mc_requester_blocks", "mc_requester_counts"):
        op.drop_table(table)
