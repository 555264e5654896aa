"""The incident log: outages, security incidents and the notices given, as records.

Revision ID: 0006_incidents
Revises: 0005_kept_record
Create Date: 2026-11-30

``mc_incident_records`` holds the records of :mod:`movecar_core.incidents` (二(五): an
outage's start and end and the notices to 110 within 30 minutes of each; annex 2 十六: a
security incident and its report within 24 hours), one row per record, in order. They are
evidence of compliance: each row is written with its ledger leaf (kind ``incident``) and
``movecar audit verify`` checks every row against its leaf and replays the log.

Downgrade refuses when the table holds a record: the records and their leaves are
evidence, and the older library's audit would find leaves of a kind it does not know.
An empty table is dropped, except on MariaDB, which commits DDL at once: a drop there
would stay even when a lower revision then refuses the downgrade (0004 and 0002 refuse
some), leaving a database whose schema no longer matches its revision; the older library
never reads the empty table, and this upgrade takes it back as it is.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006_incidents"
down_revision = "0005_kept_record"
branch_labels = None
depends_on = None

MYSQL: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
}
Time = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
TABLE = "mc_incident_records"


def upgrade() -> None:
    if TABLE in sa.inspect(op.get_bind()).get_table_names():  # left empty on MariaDB
        return
    op.create_table(
        TABLE,
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("incident_id", sa.String(40), nullable=False),
        sa.Column("type_name", sa.String(40), nullable=False),
        sa.Column("recorded_at", Time, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        **MYSQL,
    )
    op.create_index("ix_mc_incident_records_incident_id", TABLE, ["incident_id"])


def downgrade() -> None:
    conn = op.get_bind()
    held = conn.execute(sa.text(f"SELECT count(*) FROM {TABLE}")).scalar()
    if held:
        raise RuntimeError(
            f"{held} incident records are evidence (二(五), annex 2 十六) with ledger leaves: "
            "downgrading below 0006 would drop them"
        )
    if conn.dialect.name in ("mysql", "mariadb"):
        return
    op.drop_index("ix_mc_incident_records_incident_id", TABLE)
    op.drop_table(TABLE)
