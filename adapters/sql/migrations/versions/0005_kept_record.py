"""Each case's record kept beside its state row, sealed: a command reads one row.

Revision ID: 0005_kept_record
Revises: 0004_lookup_projection
Create Date: 2026-11-29

``mc_cases.folded``: the case's record (:class:`~movecar_core.case.CaseRecord`, the fold
of its events) as :func:`~movecar_core.codec.encode_record` writes it, sealed with AES-GCM
under the data-encryption keys and bound to its place (the case and the version it was
folded at), written by every append in the append's transaction. A command then reads this
one row instead of the case's whole history, and decrypts one value instead of every phone
the history holds. It is a projection, not evidence: ``movecar audit verify`` opens it and
compares it with the fold of the events, and the store never writes it from anything but
that fold.

No data is written here: the existing cases' column stays NULL (the store folds their
events as before, and keeps the record from their next append on); ``bulk_import`` leaves
it NULL too. Downgrade drops the column: nothing is lost, every value is a fold. On
MariaDB it empties the column instead: MariaDB commits DDL at once, so a drop here would
stay even when a lower revision then refuses the downgrade (0004 and 0002 refuse some),
leaving a database whose schema no longer matches its revision. The older library never
reads the column, and this upgrade takes it back as it is.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_kept_record"
down_revision = "0004_lookup_projection"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("mc_cases")}
    if "folded" in columns:  # left empty by a downgrade on MariaDB
        op.execute(sa.text("UPDATE mc_cases SET folded = NULL"))
        return
    op.add_column("mc_cases", sa.Column("folded", sa.Text(), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name in ("mysql", "mariadb"):
        op.execute(sa.text("UPDATE mc_cases SET folded = NULL"))
        return
    op.drop_column("mc_cases", "folded")
