"""Retention and keys: legal holds, the 3-year purge (二(四)), re-encryption under new keys."""

from __future__ import annotations

import datetime as dt
import functools
import json

import attrs
import sqlalchemy as sa

from movecar_adapters.sql import schema as t
from movecar_adapters.sql.base import check_case_id, check_text
from movecar_adapters.sql.errors import StorageInputError
from movecar_adapters.sql.events import PII_FIELDS
from movecar_adapters.sql.ledger import LedgerRecorder
from movecar_core.integrity import (
    canonical_json,
)
from movecar_core.ledger import legal_hold_leaf, purge_leaf
from movecar_core.retention import add_years, purge_time, retention_due

__all__ = ["PurgeResult", "RetentionRecorder", "add_years"]


@attrs.frozen
class PurgeResult:
    """What a retention run removed (or, with ``dry_run``, would remove)."""

    dry_run: bool
    cutoff_note: str
    cases: tuple[str, ...]
    held: tuple[str, ...]
    recordings: tuple[str, ...]  # audio locations whose files the operator must delete


class RetentionRecorder(LedgerRecorder):
    """Key rotation (七(三)), legal holds and the 3-year retention purge (二(四))."""

    # --- key rotation (七(三)) ------------------------------------------------------------

    def rotate_keys(self, *, batch: int = 500) -> int:
        """Re-encrypt every stored phone number under the newest key. Returns rows changed.

        The chain hashes cover the plaintext, so they stay valid. Run it after putting a
        new key first in ``MOVECAR_KEYS``; drop the old key only after it returns 0.
        """
        e = t.events
        changed = 0
        after: tuple[str, int] = ("", 0)
        while True:
            with self._read() as conn:
                rows = conn.execute(
                    sa.select(e.c.case_id, e.c.version, e.c.type_name, e.c.payload)
                    .where(
                        e.c.type_name.in_(sorted(PII_FIELDS)),
                        sa.tuple_(e.c.case_id, e.c.version) > sa.tuple_(*after),
                    )
                    .order_by(e.c.case_id, e.c.version)
                    .limit(batch)
                ).all()
            if not rows:
                return changed
            updates = []
            for r in rows:
                payload = json.loads(r.payload)
                dirty = False
                for key in PII_FIELDS[r.type_name]:
                    value = payload.get(key)
                    if isinstance(value, str) and self.keys.needs_rotation(value):
                        payload[key] = self.keys.rotate(value)
                        dirty = True
                if dirty:
                    updates.append((r.case_id, r.version, r.payload, canonical_json(payload)))
            if updates:

                def fn(conn: sa.Connection, todo: list[tuple[str, int, str, str]] = updates) -> int:
                    n = 0
                    for case_id, version, old, text in todo:
                        n += conn.execute(
                            e.update()
                            .where(e.c.case_id == case_id, e.c.version == version)
                            .where(e.c.payload == old)  # untouched since we read it
                            .values(payload=text)
                        ).rowcount
                    return n

                changed += self._write(fn)
            after = (rows[-1].case_id, rows[-1].version)

    # --- legal hold and retention (二(四)) ------------------------------------------------

    def set_legal_hold(self, case_id: str, reason: str | None, *, actor: str) -> None:
        """Put a case under legal hold (``reason``) or release it (``None``)."""
        check_case_id(case_id)
        if reason is not None:
            if not isinstance(reason, str) or not reason.strip():
                raise StorageInputError("reason", reason, "a hold needs a reason")
            check_text("reason", reason, 500)

        def fn(conn: sa.Connection) -> None:
            at = self.clock.now()
            done = conn.execute(
                t.cases.update()
                .where(t.cases.c.case_id == case_id)
                .values(legal_hold=reason is not None, legal_hold_reason=reason)
            )
            if done.rowcount != 1:
                raise StorageInputError("case_id", case_id, "no such case")
            self._guard(conn, f"legal hold on case {case_id}", [at])
            # The hold is a record of its own (the state row's flag is its projection).
            key = conn.execute(
                t.legal_holds.insert().values(case_id=case_id, at=at, actor=actor, reason=reason)
            ).inserted_primary_key
            assert key is not None  # an INSERT always has one
            hold = legal_hold_leaf(int(key[0]), at, case_id=case_id, actor=actor, reason=reason)
            self._add_leaves(conn, [hold])
            action = "legal_hold" if reason else "legal_hold_released"
            self._log(conn, at, actor=actor, action=action, case_id=case_id, detail=reason)

        self._write(fn)

    def retention_due(self, closed_at: dt.datetime, now: dt.datetime) -> bool:
        """二(四) "所有移车服务数据及电话录音资料，必须保存 3 年": due only once
        ``retention_years`` whole years have passed since the case closed."""
        return retention_due(closed_at, now, self.contract.retention_years)

    def purge(
        self, *, now: dt.datetime | None = None, dry_run: bool = False, actor: str = "retention"
    ) -> PurgeResult:
        """Remove the events, look-ups, recordings metadata and effects of every case that
        closed at least ``contract.retention_years`` years ago and is not under legal hold.

        The state row stays as a tombstone (no plate) with the case's last chain hash and
        the hash of its first event, and a purge-log row records the anchor: the chain of
        what remains, the reports' digests and the purge itself stay verifiable.

        ``now`` defaults to the store's clock; a naive ``now``, or one later than the
        store's clock by more than :data:`~movecar_core.retention.PURGE_CLOCK_SKEW`, raises
        :class:`~movecar_core.errors.PurgeTimeRefused` before anything is read or deleted
        (二(四) "必须保存 3 年": a forged future must not shorten the 3 years).
        """
        at = purge_time(now, self.clock)
        years = self.contract.retention_years
        # A superset (365-day years); the exact calendar check is retention_due.
        rough = at - dt.timedelta(days=365 * years)
        c = t.cases
        with self._read() as conn:
            rows = conn.execute(
                sa.select(c.c.case_id, c.c.closed_at, c.c.legal_hold)
                .where(c.c.closed_at.is_not(None), c.c.closed_at <= rough, c.c.purged_at.is_(None))
                .order_by(c.c.seq)
            ).all()
        due = [r for r in rows if self.retention_due(r.closed_at, at)]
        held = tuple(r.case_id for r in due if r.legal_hold)
        todo = [r.case_id for r in due if not r.legal_hold]
        note = f"closed on or before {add_years(at, -years).isoformat()} ({years} years)"
        if dry_run:
            return PurgeResult(True, note, tuple(todo), held, ())
        purged: list[str] = []
        audio: list[str] = []
        for case_id in todo:
            locations = self._write(
                functools.partial(self._purge_one, case_id=case_id, at=at, actor=actor)
            )
            if locations is not None:
                purged.append(case_id)
                audio.extend(locations)
        return PurgeResult(False, note, tuple(purged), held, tuple(audio))

    def _purge_one(
        self, conn: sa.Connection, case_id: str, at: dt.datetime, actor: str
    ) -> list[str] | None:
        c = t.cases
        row = conn.execute(self._lock(sa.select(c).where(c.c.case_id == case_id))).one_or_none()
        # Re-checked under the lock: a hold placed since the scan wins.
        if (
            row is None
            or row.legal_hold
            or row.purged_at is not None
            or row.closed_at is None
            or not self.retention_due(row.closed_at, at)
        ):
            return None
        locations = list(
            conn.execute(
                sa.select(t.recordings.c.location).where(t.recordings.c.case_id == case_id)
            ).scalars()
        )
        self._guard(conn, f"purge of case {case_id}", [at])
        removed = conn.execute(t.events.delete().where(t.events.c.case_id == case_id)).rowcount
        for table in (t.owner_lookups, t.recordings, t.outbox):
            conn.execute(table.delete().where(table.c.case_id == case_id))
        conn.execute(c.update().where(c.c.case_id == case_id).values(plate=None, purged_at=at))
        conn.execute(
            t.purge_log.insert(),
            {
                "case_id": case_id,
                "purged_at": at,
                "closed_at": row.closed_at,
                "anchor_version": row.version,
                "anchor_hash": row.head_hash,
                "events_removed": removed,
            },
        )
        # The content goes; its leaves stay (old checkpoints still verify), and the purge
        # itself is a leaf.
        purge = purge_leaf(
            case_id,
            at,
            closed_at=row.closed_at,
            anchor_version=row.version,
            anchor_hash=row.head_hash,
            events_removed=removed,
        )
        self._add_leaves(conn, [purge])
        self._log(
            conn,
            at,
            actor=actor,
            action="retention_purge",
            case_id=case_id,
            detail=f"{removed} events; anchor v{row.version} {row.head_hash}",
        )
        return locations
