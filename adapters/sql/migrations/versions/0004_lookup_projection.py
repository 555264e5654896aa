"""Owner look-ups covered by their event's ledger leaf; the look-up log a projection.

Revision ID: 0004_lookup_projection
Revises: 0003_bound_ciphertexts
Create Date: 2026-11-29

A look-up in the owner data source (二(二), 四) is an event of its case (``OwnerLookedUp``:
who, when, found or not, from which source), and every append of events has a ledger leaf
whose chain hash covers them. The row of ``mc_owner_lookups`` repeats that event (with the
case's plate) for queries. Before this revision each such row had a leaf of its own as
well: two leaves for one record. From this revision on the row is a projection, checked
by the audit against its event (a changed, deleted or invented row is a finding on its
case), like the state row; it gets no leaf.

``has_leaf`` says which rows were written with a leaf of their own (every row stored
before this revision): the audit still expects exactly those leaves, so flipping the flag
either way is found.

Downgrade gives the rows written since their own leaves back (the older audit expects one
per row), and refuses when one of them is dated before the newest checkpoint: adding it
then would be a backdated leaf. On MariaDB it leaves the column: MariaDB commits DDL at
once, so a drop here would stay even when a lower revision then refuses the downgrade,
under a revision that still says 0004 (the older library never reads the column, and this
upgrade takes it back).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from alembic import op

from movecar_core import ledger as lg

revision = "0004_lookup_projection"
down_revision = "0003_bound_ciphertexts"
branch_labels = None
depends_on = None

_leaves = sa.table(
    "mc_ledger_leaves",
    sa.column("kind", sa.String),
    sa.column("subject", sa.String),
    sa.column("record_at", sa.DateTime),
    sa.column("leaf_hash", sa.String),
    sa.column("case_id", sa.String),
)


def _utc(value: Any) -> dt.datetime:
    """A stored naive-UTC time (or SQLite's text of one), aware."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value.replace(tzinfo=dt.UTC)


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("mc_owner_lookups")}
    if "has_leaf" not in columns:  # else left by a downgrade on MariaDB
        op.add_column(
            "mc_owner_lookups",
            sa.Column("has_leaf", sa.Boolean(), nullable=False, server_default=sa.false()),
        )
    op.execute(sa.text("UPDATE mc_owner_lookups SET has_leaf = :yes").bindparams(yes=True))


def downgrade() -> None:
    conn = op.get_bind()
    newest = conn.execute(
        sa.text("SELECT checkpoint_at FROM mc_ledger_state WHERE id = 1")
    ).scalar()
    rows = conn.execute(
        sa.text(
            "SELECT case_id, version, at, agent_id, plate, found, source FROM mc_owner_lookups "
            "WHERE has_leaf = :no ORDER BY id"
        ).bindparams(no=False)
    ).all()
    if newest is not None and any(_utc(r.at) < _utc(newest) for r in rows):
        raise RuntimeError(
            "owner look-ups written since schema 0004 are dated before the newest checkpoint: "
            "downgrading below 0004 would have to add their leaves backdated"
        )
    items = [
        lg.owner_lookup_leaf(
            r.case_id,
            r.version,
            _utc(r.at),
            agent_id=r.agent_id,
            plate=r.plate,
            found=bool(r.found),
            source=r.source,
        )
        for r in rows
    ]
    if items:
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
                for x in items
            ],
        )
    if conn.dialect.name not in ("mysql", "mariadb"):
        op.drop_column("mc_owner_lookups", "has_leaf")
