"""Initial schema: cases, events, look-ups, recordings, access log, reports, outbox.

Revision ID: 0001_initial
Revises:
Create Date: 2025-03-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

MYSQL: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
}
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "mc_cases",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(64), nullable=False),
        sa.Column("plate", sa.String(16), nullable=True),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("opened_at", Time, nullable=False),
        sa.Column("closed_at", Time, nullable=True),
        sa.Column("opened_hash", sa.String(64), nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("legal_hold", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("legal_hold_reason", sa.String(500), nullable=True),
        sa.Column("purged_at", Time, nullable=True),
        sa.UniqueConstraint("case_id", name="uq_mc_cases_case_id"),
        **MYSQL,
    )
    op.create_index("ix_mc_cases_opened_at", "mc_cases", ["opened_at"])
    op.create_index("ix_mc_cases_closed_at", "mc_cases", ["closed_at"])
    op.create_index("ix_mc_cases_plate", "mc_cases", ["plate"])

    op.create_table(
        "mc_events",
        sa.Column("case_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("type_name", sa.String(40), nullable=False),
        sa.Column("payload", LongText, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("case_id", "version", name="pk_mc_events"),
        sa.ForeignKeyConstraint(["case_id"], ["mc_cases.case_id"], name="fk_mc_events_case_id"),
        **MYSQL,
    )

    op.create_table(
        "mc_owner_lookups",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("at", Time, nullable=False),
        sa.Column("agent_id", sa.String(100), nullable=False),
        sa.Column("plate", sa.String(16), nullable=True),
        sa.Column("found", sa.Boolean, nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.UniqueConstraint("case_id", "version", name="uq_mc_owner_lookups_event"),
        **MYSQL,
    )

    op.create_table(
        "mc_recordings",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(64), nullable=False),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("location", sa.String(1000), nullable=False),
        sa.Column("checksum_sha256", sa.String(64), nullable=False),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("recorded_at", Time, nullable=False),
        sa.UniqueConstraint("call_id", name="uq_mc_recordings_call_id"),
        sa.ForeignKeyConstraint(["case_id"], ["mc_cases.case_id"], name="fk_mc_recordings_case_id"),
        **MYSQL,
    )
    op.create_index("ix_mc_recordings_case_id", "mc_recordings", ["case_id"])

    op.create_table(
        "mc_access_log",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", Time, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("case_id", sa.String(64), nullable=True),
        sa.Column("detail", sa.String(500), nullable=True),
        **MYSQL,
    )
    op.create_index("ix_mc_access_log_case_id", "mc_access_log", ["case_id"])

    op.create_table(
        "mc_monthly_reports",
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("inbound_calls", sa.Integer, nullable=False),
        sa.Column("billable_calls", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("previous_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("created_at", Time, nullable=False),
        **MYSQL,
    )

    op.create_table(
        "mc_settlements",
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("billable_calls", sa.Integer, nullable=False),
        sa.Column("unit_price", sa.Numeric(8, 2), nullable=False),
        sa.Column("fee", sa.Numeric(14, 2), nullable=False),
        sa.Column("report_digest", sa.String(64), nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.ForeignKeyConstraint(
            ["month"], ["mc_monthly_reports.month"], name="fk_mc_settlements_month"
        ),
        **MYSQL,
    )

    op.create_table(
        "mc_outbox",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("effect_key", sa.String(200), nullable=False),
        sa.Column("case_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("due_at", Time, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("claimed_by", sa.String(100), nullable=True),
        sa.Column("claim_token", sa.String(64), nullable=True),
        sa.Column("lease_until", Time, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("done_at", Time, nullable=True),
        sa.UniqueConstraint("effect_key", name="uq_mc_outbox_effect_key"),
        **MYSQL,
    )
    op.create_index("ix_mc_outbox_due", "mc_outbox", ["status", "due_at"])
    op.create_index("ix_mc_outbox_case_id", "mc_outbox", ["case_id"])

    op.create_table(
        "mc_purge_log",
        sa.Column("case_id", sa.String(64), primary_key=True),
        sa.Column("purged_at", Time, nullable=False),
        sa.Column("closed_at", Time, nullable=False),
        sa.Column("anchor_version", sa.Integer, nullable=False),
        sa.Column("anchor_hash", sa.String(64), nullable=False),
        sa.Column("events_removed", sa.Integer, nullable=False),
        **MYSQL,
    )

    op.create_table(
        "mc_meta",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(200), nullable=False),
        **MYSQL,
    )


def downgrade() -> None:
    for table in (
        "mc_meta",
        "mc_purge_log",
        "mc_outbox",
        "mc_settlements",
        "mc_monthly_reports",
        "mc_access_log",
        "mc_recordings",
        "mc_owner_lookups",
        "mc_events",
        "mc_cases",
    ):
        op.drop_table(table)
