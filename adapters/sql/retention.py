"""Retention and keys: legal holds, the 3-year purge (二(四)), re-encryption under new keys."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import sqlalchemy as sa

from movecar_adapters.crypto import DecryptionFailed, KeyRing, place
from movecar_adapters.sql import schema as t
from movecar_adapters.sql.base import check_case_id, check_text
from movecar_adapters.sql.engine import READ_ONLY
from movecar_adapters.sql.errors import StorageInputError
from movecar_adapters.sql.events import PII_FIELDS
from movecar_adapters.sql.requesters import RequesterRecorder
from movecar_core.errors import CasePurged
from movecar_core.integrity import GENESIS, canonical_json, chain_hash
from movecar_core.ledger import legal_hold_leaf, purge_leaf
from movecar_core.recordings import RecordingStore
from movecar_core.retention import add_years, purge_time, retention_due

Update = tuple[str, int, str, str]  # case id, version, payload read, payload to write


def _pii_rows(conn: sa.Connection, after: tuple[str, int], batch: int) -> Sequence[Any]:
    """The next ``batch`` events holding phones, after ``(case id, version)``."""
    e = t.events
    return conn.execute(
        sa.select(e.c.case_id, e.c.version, e.c.type_name, e.c.payload, e.c.hash)
        .where(
            e.c.type_name.in_(sorted(PII_FIELDS)),
            sa.tuple_(e.c.case_id, e.c.version) > sa.tuple_(*after),
        )
        .order_by(e.c.case_id, e.c.version)
        .limit(batch)
    ).all()


def reencrypt(conn: sa.Connection, keys: KeyRing, rows: Sequence[Any]) -> tuple[list[Update], int]:
    """The new payloads of ``rows`` (from :func:`_pii_rows`) with every phone under the
    newest key and bound to its place, and how many rows were left as they were.

    A legacy token is rebound only if its event's chain hash matches the plaintext: its
    associated data never named a place, so the hash is the only witness that it is where
    it was written. A value that does not open (moved, altered, or its key missing or
    wrong) is left alone too: the audit tells which, and names the case.
    """
    done: list[tuple[Any, dict[str, Any], dict[str, Any], bool]] = []
    left = 0
    for r in rows:
        try:
            payload = json.loads(r.payload)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            left += 1  # malformed: the audit reports it
            continue
        plain = dict(payload)
        dirty = legacy = False
        try:
            for key in PII_FIELDS[r.type_name]:
                value = payload.get(key)
                if not isinstance(value, str) or not keys.needs_rotation(value):
                    continue
                where = place(r.case_id, r.version, r.type_name, key)
                if keys.is_bound(value):
                    plain[key] = keys.decrypt(value, where)
                else:
                    plain[key] = keys.decrypt_legacy(value)
                    legacy = True
                payload[key] = keys.encrypt(plain[key], where)
                dirty = True
        except DecryptionFailed:
            # Moved, altered, or its key missing or wrong: left for the audit to tell which
            # (one such value must not stop the rotation of all the others).
            left += 1
            continue
        if dirty:
            done.append((r, payload, plain, legacy))
    previous: dict[tuple[str, int], str] = {}
    wanted = sorted({r.case_id for r, _, _, legacy in done if legacy and r.version > 1})
    if wanted:  # one query per batch for the hashes the legacy rows chain from
        e = t.events
        for h in conn.execute(
            sa.select(e.c.case_id, e.c.version, e.c.hash).where(e.c.case_id.in_(wanted))
        ):
            previous[(h.case_id, h.version)] = h.hash
    updates: list[Update] = []
    for r, payload, plain, legacy in done:
        if legacy:
            before = GENESIS if r.version == 1 else previous.get((r.case_id, r.version - 1))
            if before is None or (
                chain_hash(before, r.case_id, r.version, r.type_name, plain) != r.hash
            ):
                left += 1
                continue
        updates.append((r.case_id, r.version, r.payload, canonical_json(payload)))
    return updates, left


def _apply(conn: sa.Connection, todo: list[Update]) -> int:
    e = t.events
    n = 0
    for case_id, version, old, text in todo:
        n += conn.execute(
            e.update()
            .where(e.c.case_id == case_id, e.c.version == version)
            .where(e.c.payload == old)  # untouched since we read it
            .values(payload=text)
        ).rowcount
    return n


def reencrypt_all(conn: sa.Connection, keys: KeyRing, *, batch: int = 1000) -> tuple[int, int]:
    """:func:`reencrypt` over the whole database in ``conn``'s one transaction (the 0003
    migration): ``(rows changed, rows left as they were)``."""
    changed = left = 0
    after: tuple[str, int] = ("", 0)
    while rows := _pii_rows(conn, after, batch):
        updates, skipped = reencrypt(conn, keys, rows)
        changed += _apply(conn, updates)
        left += skipped
        after = (rows[-1].case_id, rows[-1].version)
    return changed, left


def count_values(engine: sa.Engine, predicate: Callable[[str], bool], *, batch: int = 5000) -> int:
    """How many stored phone values ``predicate`` holds for (no key needed to read them:
    :func:`~movecar_adapters.crypto.KeyRing.is_bound` counts the legacy ones)."""
    n = 0
    after: tuple[str, int] = ("", 0)
    while True:
        with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
            rows = _pii_rows(conn, after, batch)
        if not rows:
            return n
        for r in rows:
            try:
                payload = json.loads(r.payload)
            except ValueError:
                continue
            if isinstance(payload, dict):
                for key in PII_FIELDS[r.type_name]:
                    value = payload.get(key)
                    n += isinstance(value, str) and predicate(value)
        after = (rows[-1].case_id, rows[-1].version)


__all__ = ["PurgeResult", "RetentionRecorder", "add_years"]


#: ``mc_meta`` names of the purged cases whose audio is still to be removed: written in
#: the purge's transaction, deleted once the recording store removed the files. A crash
#: between the two leaves the name, and the next purge with a store finishes the job.
AUDIO_PENDING = "audio-purge:"


def _audio_pending(case_id: str) -> str:
    return AUDIO_PENDING + hashlib.sha256(case_id.encode()).hexdigest()[:40]


@attrs.frozen
class PurgeResult:
    """What a retention run removed (or, with ``dry_run``, would remove)."""

    dry_run: bool
    cutoff_note: str
    cases: tuple[str, ...]
    held: tuple[str, ...]
    #: Audio locations of the cases purged: the operator deletes these files unless the
    #: purge was given the recording store (then ``audio_removed`` counts what it removed).
    recordings: tuple[str, ...]
    #: Recordings whose audio the store removed in this run (with earlier leftovers).
    audio_removed: int = 0


class RetentionRecorder(RequesterRecorder):
    """Key rotation (七(三)), legal holds and the 3-year retention purge (二(四))."""

    # --- key rotation (七(三)) ------------------------------------------------------------

    def rotate_keys(self, *, batch: int = 500) -> int:
        """Re-encrypt every stored phone number under the newest key, bound to its place.
        Returns rows changed.

        七(三) "防止 ... 个人信息和数据的泄露、篡改": a legacy token (bound to its key id only,
        written before schema 0003) is rebound to the case, event and field it is found
        in, and only if the event's chain hash still matches its plaintext (a token copied
        in from elsewhere without fixing the chain is not laundered into a bound one). A
        value that does not open in its place (or under a configured key), or fails that
        check, is left as it was and counted by :meth:`rotation_pending`; the audit names
        its case. The chain hashes
        cover the plaintext, so they stay valid. Run it after putting a new key first in
        ``MOVECAR_KEYS``; drop the old key only after :meth:`rotation_pending` is 0. Each
        batch is one transaction, and a row changed since it was read is not overwritten.
        """
        changed = 0
        after: tuple[str, int] = ("", 0)
        while True:
            with self._read() as conn:
                rows = _pii_rows(conn, after, batch)
                if not rows:
                    break

                updates, _ = reencrypt(conn, self.keys, rows)
            if updates:
                changed += self._write(functools.partial(_apply, todo=updates))
            after = (rows[-1].case_id, rows[-1].version)
        # Records kept under an older key are dropped, not re-sealed: each is a fold of
        # the events, which the case's next append makes and seals again under this key.
        self._write(
            lambda conn: conn.execute(self._kept_elsewhere(t.cases.update()).values(folded=None))
        )
        # The block list's numbers are sealed too, and indexed under a key of the ring.
        return changed + self._rekey_requesters()

    def rotation_pending(self, *, batch: int = 5000) -> int:
        """Stored phone values, and kept records, not bound under the newest key (0 after a
        clean rotation)."""
        phones = count_values(self.engine, self.keys.needs_rotation, batch=batch)
        with self._read() as conn:
            query = self._kept_elsewhere(sa.select(sa.func.count()).select_from(t.cases))
            kept = int(conn.execute(query).scalar_one())
        return phones + kept + self._requesters_pending()

    def _kept_elsewhere(self, statement: Any) -> Any:
        """``statement`` limited to the state rows whose kept record is not sealed under
        the newest key."""
        sealed_now = f"~1:{self.keys.current_id}:"
        folded = t.cases.c.folded
        return statement.where(
            folded.is_not(None), sa.func.substr(folded, 1, len(sealed_now)) != sealed_now
        )

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
            purged_at = conn.execute(
                self._lock(sa.select(t.cases.c.purged_at).where(t.cases.c.case_id == case_id))
            ).one_or_none()
            if purged_at is None:
                raise StorageInputError("case_id", case_id, "no such case")
            if purged_at[0] is not None:  # 二(四): nothing is kept for a tombstone to hold
                raise CasePurged(case_id, purged_at[0])
            conn.execute(
                t.cases.update()
                .where(t.cases.c.case_id == case_id)
                .values(legal_hold=reason is not None, legal_hold_reason=reason)
            )
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
        self,
        *,
        now: dt.datetime | None = None,
        dry_run: bool = False,
        actor: str = "retention",
        recordings: RecordingStore | None = None,
    ) -> PurgeResult:
        """Remove the events, look-ups and effects of every case that closed at least
        ``contract.retention_years`` years ago and is not under legal hold.

        The state row stays as a tombstone (no plate) with the case's last chain hash and
        the hash of its first event, and a purge-log row records the anchor: the chain of
        what remains, the reports' digests and the purge itself stay verifiable.

        二(四) "所有移车服务数据及电话录音资料，必须保存 3 年" covers the recordings too: their
        rows (call, location, SHA-256, duration, time: no personal data) are kept with
        their ledger leaves, and their audio goes. Given ``recordings`` (the store that
        holds the audio), the purge removes it once the case's purge is committed (never
        before: a legal hold placed meanwhile wins), and first finishes the audio of
        cases an interrupted run purged (:meth:`audio_pending`). Without it, the locations
        in the result are the files the operator must delete.

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
        removed = 0 if recordings is None else self.purge_audio(recordings)
        # Requester counts of past months count against nothing: they go with each purge.
        self._prune_requester_counts(at)
        purged: list[str] = []
        audio: list[str] = []
        for case_id in todo:
            locations = self._write(
                functools.partial(self._purge_one, case_id=case_id, at=at, actor=actor)
            )
            if locations is not None:
                purged.append(case_id)
                audio.extend(locations)
                if recordings is not None and locations:
                    removed += self._purge_audio_of(recordings, case_id)
        return PurgeResult(False, note, tuple(purged), held, tuple(audio), removed)

    def audio_pending(self) -> list[str]:
        """Purged cases whose audio no recording store has removed yet."""
        m = t.meta
        with self._read() as conn:
            return sorted(
                conn.execute(
                    sa.select(m.c.value).where(m.c.name.startswith(AUDIO_PENDING, autoescape=True))
                ).scalars()
            )

    def purge_audio(self, recordings: RecordingStore) -> int:
        """Remove the audio of every purged case still pending (:meth:`audio_pending`);
        returns how many recordings' audio the store removed."""
        return sum(self._purge_audio_of(recordings, case_id) for case_id in self.audio_pending())

    def _purge_audio_of(self, recordings: RecordingStore, case_id: str) -> int:
        # The store first, then the pending mark: a crash in between only repeats an
        # idempotent removal.
        removed = recordings.purge_case(case_id)
        name = _audio_pending(case_id)
        self._write(lambda conn: conn.execute(t.meta.delete().where(t.meta.c.name == name)))
        return removed

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
        # The recordings' rows stay (二(四): the purge removes the audio and keeps its hash;
        # the rows hold no personal data), so evidence extracted earlier stays verifiable.
        for table in (t.owner_lookups, t.outbox):
            conn.execute(table.delete().where(table.c.case_id == case_id))
        if locations:  # the audio goes after this commits (see purge)
            conn.execute(t.meta.insert(), {"name": _audio_pending(case_id), "value": case_id})
        conn.execute(
            c.update()
            .where(c.c.case_id == case_id)
            .values(plate=None, purged_at=at, folded=None)  # the record holds personal data
        )
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
