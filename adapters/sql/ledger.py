"""The evidence ledger on SQL: leaves written with their records, a sequencer, checkpoints.

Every evidentiary record's writer adds its leaf (:mod:`movecar_core.ledger`) in the same
transaction as the record, *without* an index: writers never wait on one global counter.
The sequencer (:meth:`LedgerRecorder.sequence`, run by the worker and by ``movecar ledger
checkpoint``) then gives the pending leaves dense indices in the order they were written
and extends the stored compact tree, as Trillian's sequencer does.

One row, ``mc_ledger_state``, orders writers against the sequencer without serializing
writers among themselves: a writer reads it under a *shared* lock (the newest checkpoint's
time, to refuse a backdated record), the sequencer takes it exclusively. So when the
sequencer runs, every writer that read the old checkpoint time has committed, and its
leaves are seen; a writer that comes after sees the new checkpoint. (SQLite has one
writer at a time anyway.)
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import sqlalchemy as sa

from movecar_adapters.sql import schema as t
from movecar_adapters.sql.base import StoreBase
from movecar_adapters.sql.errors import StorageError
from movecar_adapters.sql.prepared import Runner, Statement
from movecar_adapters.sql.writes import insert_rows
from movecar_core.errors import AUDIT_HINT, InvalidInput
from movecar_core.ledger import (
    BackdatedRecord,
    Checkpoint,
    CompactTree,
    Leaf,
    LeafKind,
    TreeHead,
    access_leaf,
    checkpoint_message,
    consistency_proof,
    inclusion_proof,
)

LEAF_COLUMNS = ("kind", "subject", "record_at", "leaf_hash", "case_id")
STATE_ID = 1
#: Leaves the sequencer reads and indexes per round (each round one transaction).
SEQUENCE_BATCH = 20_000


class Signer(Protocol):
    """What signs a checkpoint: an Ed25519 key (``movecar_adapters.signing``) or an HSM."""

    @property
    def key_id(self) -> str: ...

    def sign(self, message: bytes) -> bytes: ...


def leaf_row(item: Leaf) -> tuple[str, str, dt.datetime, str, str | None]:
    """A leaf as a row of :data:`LEAF_COLUMNS`."""
    return (item.kind.value, item.subject, item.at, item.hash, item.case_id)


def _tree(text: str) -> CompactTree:
    """The stored compact tree; unreadable is the store's problem, for the audit to name."""
    try:
        return CompactTree.from_json(text)
    except InvalidInput as exc:
        raise StorageError(f"{exc}: {AUDIT_HINT}") from None


#: When the newest checkpoint was issued (NULL: none yet).
CHECKPOINT_AT = sa.select(t.ledger_state.c.checkpoint_at).where(t.ledger_state.c.id == STATE_ID)
#: The same, read under the ledger state row's shared lock (PostgreSQL, MariaDB).
_CHECKPOINT_SHARED = Statement(lambda _: CHECKPOINT_AT.with_for_update(read=True))


def _runs(ids: Sequence[int]) -> Iterator[tuple[int, int, int]]:
    """(first id, last id, offset into ``ids``) of each run of consecutive ids."""
    start = 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or ids[i] != ids[i - 1] + 1:
            yield ids[start], ids[i - 1], start
            start = i


class LedgerRecorder(StoreBase):
    """The ledger part of the SQL store (see the module docstring)."""

    # --- writers' side ------------------------------------------------------------------

    def _guard(self, conn: sa.Connection, what: str, dates: Iterable[dt.datetime]) -> None:
        """Refuse a record dated before the newest checkpoint (it would be a fabrication
        of the signed past, or this host's clock is behind), holding the ledger state's
        shared lock until commit so a checkpoint cannot slip in between."""
        if not self.ledger:
            return
        query = CHECKPOINT_AT
        if self.dialect != "sqlite":
            query = query.with_for_update(read=True)
        self._refuse_backdated(conn.execute(query).scalar(), what, dates)

    def _newest_checkpoint(self, run: Runner) -> dt.datetime | None:
        """:meth:`_guard`'s read on the servers, as the command path runs it: the newest
        checkpoint's time, the ledger state row's shared lock held until commit."""
        if not self.ledger:
            return None
        found: dt.datetime | None = run.rows(_CHECKPOINT_SHARED)[0][0]
        return found

    def _refuse_backdated(
        self, newest: dt.datetime | None, what: str, dates: Iterable[dt.datetime]
    ) -> None:
        """:class:`BackdatedRecord` if a record dated ``dates`` would reach back before the
        newest checkpoint, issued at ``newest`` (None: none yet)."""
        if newest is None or not self.ledger:
            return
        earliest = min(dates, default=None)
        if earliest is not None and earliest < newest:
            raise BackdatedRecord(what, earliest, newest)

    def newest_checkpoint_at(self) -> dt.datetime | None:
        """When the newest checkpoint was issued (None: none yet)."""
        with self._read() as conn:
            return conn.execute(CHECKPOINT_AT).scalar()

    def _add_leaves(self, conn: sa.Connection, leaves: Sequence[Leaf]) -> None:
        if self.ledger and leaves:
            insert_rows(conn, t.ledger_leaves, LEAF_COLUMNS, [leaf_row(x) for x in leaves])

    def _log(
        self,
        conn: sa.Connection,
        at: dt.datetime,
        *,
        actor: str,
        action: str,
        case_id: str | None,
        detail: str | None,
    ) -> None:
        """七(三): an access-log row and its leaf (the leaf names the row by its id)."""
        key = conn.execute(
            t.access_log.insert().values(
                at=at, actor=actor, action=action, case_id=case_id, detail=detail
            )
        ).inserted_primary_key
        assert key is not None  # an INSERT always has one
        entry = access_leaf(
            int(key[0]), at, actor=actor, action=action, case_id=case_id, detail=detail
        )
        self._add_leaves(conn, [entry])

    # --- the sequencer ------------------------------------------------------------------

    def sequence(self, *, batch: int = SEQUENCE_BATCH) -> TreeHead:
        """Give every pending leaf its index; returns the tree head of all sequenced leaves.

        Rounds of ``batch`` leaves, one transaction each, until none is pending.
        """
        if type(batch) is not int or batch < 1:
            raise InvalidInput(f"batch={batch!r}: must be an int >= 1")
        lv, st = t.ledger_leaves, t.ledger_state
        with self._read() as conn:
            # Nothing pending (a worker asks every round): no write transaction at all.
            state = conn.execute(
                sa.select(st.c.tree, st.c.sequenced_id).where(st.c.id == STATE_ID)
            ).one_or_none()
            mark = 0 if state is None else int(state.sequenced_id or 0)
            idle = conn.execute(sa.select(lv.c.id).where(lv.c.id > mark).limit(1))
            if idle.first() is None and state is not None:
                return _tree(state.tree).head()
        while True:
            tree, done = self._write(lambda conn: self._sequence(conn, batch))
            if done < batch:
                return tree.head()

    def _lock_state(self, conn: sa.Connection) -> Any:
        s = t.ledger_state
        row = conn.execute(
            self._lock(
                sa.select(
                    s.c.tree,
                    s.c.sequenced_at,
                    s.c.sequenced_id,
                    s.c.checkpoint_size,
                    s.c.checkpoint_at,
                ).where(s.c.id == STATE_ID)
            )
        ).one_or_none()
        if row is None:
            raise StorageError(f"the ledger's state row is missing: {AUDIT_HINT}")
        return row

    def _sequence(self, conn: sa.Connection, batch: int) -> tuple[CompactTree, int]:
        """One round under the state row's exclusive lock: (the tree after it, leaves done)."""
        state = self._lock_state(conn)
        tree = _tree(state.tree)
        lv = t.ledger_leaves
        # Pending: above the mark. Every writer shares the state row's lock from before it
        # takes a leaf id until it commits, and this round holds the row exclusively: no
        # id at or below the mark can still be uncommitted, so none is ever skipped.
        mark = int(state.sequenced_id or 0)
        pending = conn.execute(
            sa.select(lv.c.id, lv.c.leaf_hash).where(lv.c.id > mark).order_by(lv.c.id).limit(batch)
        ).all()
        if not pending:
            return tree, 0
        # Sequenced times never go backwards, whatever the clock does.
        now = self.clock.now()
        if state.sequenced_at is not None and state.sequenced_at > now:
            now = state.sequenced_at
        base = tree.size
        tree.extend(row.leaf_hash for row in pending)
        ids = [int(row.id) for row in pending]
        for first, last, offset in _runs(ids):
            # One statement per run of consecutive ids (usually one run per round): the
            # index is the id shifted, which keeps the order the leaves were written in.
            conn.execute(
                lv.update()
                .where(lv.c.id >= first, lv.c.id <= last)
                .values(leaf_index=lv.c.id + (base + offset - first), sequenced_at=now)
            )
        conn.execute(
            t.ledger_state.update()
            .where(t.ledger_state.c.id == STATE_ID)
            .values(tree=tree.to_json(), sequenced_at=now, sequenced_id=ids[-1])
        )
        return tree, len(pending)

    def _sequence_all(self, conn: sa.Connection) -> TreeHead:
        """Sequence every pending leaf within ``conn``'s transaction; the tree head."""
        while True:
            tree, done = self._sequence(conn, SEQUENCE_BATCH)
            if done < SEQUENCE_BATCH:
                return tree.head()

    def pending_leaves(self) -> int:
        lv, st = t.ledger_leaves, t.ledger_state
        with self._read() as conn:
            mark = conn.execute(sa.select(st.c.sequenced_id).where(st.c.id == STATE_ID)).scalar()
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(lv).where(lv.c.id > int(mark or 0))
                ).scalar_one()
            )

    # --- checkpoints --------------------------------------------------------------------

    def checkpoint(self, signer: Signer) -> Checkpoint:
        """Sequence what is pending and sign the tree head (size, root, issued at now).

        Kept in ``mc_checkpoints`` too; from then on no record dated before it can be
        written. ``issued_at`` never goes backwards (the later of the clock and the last
        sequencing or checkpoint).
        """
        self.sequence()

        def fn(conn: sa.Connection) -> Checkpoint:
            head = self._sequence_all(conn)
            state = self._lock_state(conn)
            issued = self.clock.now()
            for floor in (state.sequenced_at, state.checkpoint_at):
                if floor is not None and floor > issued:
                    issued = floor
            message = checkpoint_message(head.size, head.root, issued, signer.key_id)
            signature = base64.b64encode(signer.sign(message)).decode("ascii")
            signed = Checkpoint.of(head.size, head.root, issued, signer.key_id, signature)
            conn.execute(
                t.checkpoints.insert().values(
                    size=signed.size,
                    root=signed.root,
                    issued_at=signed.issued_at,
                    key_id=signed.key_id,
                    signature=signed.signature,
                )
            )
            conn.execute(
                t.ledger_state.update()
                .where(t.ledger_state.c.id == STATE_ID)
                .values(checkpoint_size=signed.size, checkpoint_at=signed.issued_at)
            )
            return signed

        return self._write(fn)

    def checkpoints(self) -> list[Checkpoint]:
        """The checkpoints kept in the database, oldest first (malformed rows raise
        :class:`~movecar_core.ledger.InvalidCheckpoint`; the audit reports them)."""
        c = t.checkpoints
        with self._read() as conn:
            rows = conn.execute(sa.select(c).order_by(c.c.id)).all()
        return [Checkpoint.of(r.size, r.root, r.issued_at, r.key_id, r.signature) for r in rows]

    # --- proofs -------------------------------------------------------------------------

    def leaf_hashes(self, size: int) -> list[str]:
        """The hashes of leaves 0 to ``size - 1``, in index order."""
        lv = t.ledger_leaves
        with self._read() as conn:
            rows = conn.execute(  # id order is index order (and the primary key)
                sa.select(lv.c.leaf_index, lv.c.leaf_hash)
                .where(lv.c.leaf_index.is_not(None), lv.c.leaf_index < size)
                .order_by(lv.c.id)
            ).all()
        if [r.leaf_index for r in rows] != list(range(size)):
            raise StorageError(f"the ledger does not hold leaves 0 to {size - 1}")
        return [r.leaf_hash for r in rows]

    def prove_consistency(self, old: Checkpoint, new: Checkpoint) -> list[str]:
        """RFC 6962 consistency proof that ``old``'s tree is a prefix of ``new``'s."""
        return consistency_proof(self.leaf_hashes(new.size), old.size)

    def prove_inclusion(
        self, kind: LeafKind, subject: str, size: int
    ) -> tuple[int, str, list[str]]:
        """(index, leaf hash, RFC 6962 audit path) of a record's leaf in the tree of ``size``."""
        lv = t.ledger_leaves
        with self._read() as conn:
            row = conn.execute(
                sa.select(lv.c.leaf_index, lv.c.leaf_hash).where(
                    lv.c.kind == kind.value, lv.c.subject == subject
                )
            ).one_or_none()
        if row is None or row.leaf_index is None or row.leaf_index >= size:
            raise InvalidInput(f"{kind.value} {subject[:80]} is not in the first {size} leaves")
        index = int(row.leaf_index)
        return index, row.leaf_hash, inclusion_proof(self.leaf_hashes(size), index)
