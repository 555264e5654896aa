"""Requester limits in SQL: counts by blind index, the block list, the month's refusals.

:mod:`movecar_core.requesters` has the rules; this part of the store keeps them.

No phone number is stored to count: a number's row in ``mc_requester_counts`` is keyed by
its *blind index*, HMAC-SHA256 of the canonical number under a key derived from the
data-encryption keys (:meth:`~movecar_adapters.crypto.KeyRing.blind_indexes`), one row per
(index, day) and (index, month). The append that opens a case (in its own transaction,
before the case row is written) checks the block list and then increments those rows with
the dialect's upsert (``ON CONFLICT DO UPDATE`` on SQLite and PostgreSQL, ``ON DUPLICATE
KEY UPDATE`` on MariaDB) and reads them back. The upsert takes the row's lock, held until
commit, so a second seat opening for the same number waits for the first and then reads
the first's count plus its own: two requests cannot both slip past a limit. (SQLite's
``BEGIN IMMEDIATE`` runs one writer at a time anyway.) A request over a limit undoes its
increments in the same transaction, counts the refusal in ``mc_requester_refusals``, and
commits only that: the refusal is counted exactly when it is raised.

Rows indexed under an older key still count while that key is in the ring (the sums run
over every key's index); ``movecar keys rotate`` re-indexes the block list (its numbers
are sealed for that), and counts under a dropped key stop mattering when their day or
month ends. The retention purge deletes counts of periods before the previous month.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from movecar_adapters.sql import schema as t
from movecar_adapters.sql.ledger import LedgerRecorder
from movecar_adapters.sql.prepared import Runner, Statement
from movecar_core.case import CaseOpened
from movecar_core.errors import ConcurrencyConflict, InvalidInput, excerpt
from movecar_core.phones import mask_phone
from movecar_core.requesters import (
    BLOCK_ACTION,
    UNBLOCK_ACTION,
    BlockChange,
    BlockedRequester,
    RefusalCounts,
    RefusalReason,
    RequesterRefused,
    RequesterUsage,
    canonical_requester,
    check_reason,
    periods,
    refusal,
)
from movecar_core.settlement import ServiceMonth

#: The blind index's purpose: its derived key serves nothing else.
PURPOSE = "requester-phone"


def _block_place(index: str) -> str:
    """Where a blocked number is sealed: its block-list row (by index), so a sealed number
    moved to another row does not open there."""
    return f"requester-block\x00{index}\x00RequesterBlock\x00phone"


def _upsert_increment(
    table: sa.Table, keys: dict[str, Any], column: str
) -> Any:  # a Callable[[sa.Dialect], sa.Executable] for Statement
    """``INSERT ... (keys, column = 1)`` that adds 1 to ``column`` when the row exists."""

    def build(dialect: sa.Dialect) -> sa.Executable:
        values = {**keys, column: 1}
        bump = {column: table.c[column] + 1}
        if dialect.name == "sqlite":
            lite = sqlite.insert(table).values(**values)
            return lite.on_conflict_do_update(index_elements=list(keys), set_=bump)
        if dialect.name == "postgresql":
            pg = postgresql.insert(table).values(**values)
            return pg.on_conflict_do_update(index_elements=list(keys), set_=bump)
        if dialect.name in ("mysql", "mariadb"):
            return mysql.insert(table).values(**values).on_duplicate_key_update(**bump)
        raise NotImplementedError(f"no upsert for {dialect.name}")  # pragma: no cover

    return build


def _counts(dialect: sa.Dialect) -> sa.Select[Any]:
    c = t.requester_counts
    query = sa.select(c.c.period, c.c.opened).where(
        c.c.requester_index == sa.bindparam("index"),
        c.c.period.in_([sa.bindparam("day"), sa.bindparam("month")]),
    )
    return query if dialect.name == "sqlite" else query.with_for_update()


def _blocked(_: sa.Dialect) -> sa.Select[Any]:
    b = t.requester_blocks
    return sa.select(b.c.requester_index).where(b.c.requester_index == sa.bindparam("index"))


def _uncount(_: sa.Dialect) -> sa.Update:
    c = t.requester_counts
    return (
        c.update()
        .where(c.c.requester_index == sa.bindparam("index"), c.c.period == sa.bindparam("period"))
        .values(opened=c.c.opened - 1)
    )


def _taken_now(dialect: sa.Dialect) -> sa.Select[Any]:
    """The case's version read with a lock: on MariaDB a plain read would see the
    transaction's snapshot, older than the write that made the lock wait."""
    c = t.cases
    query = sa.select(c.c.version).where(c.c.case_id == sa.bindparam("case_id"))
    return query if dialect.name == "sqlite" else query.with_for_update()


COUNT = Statement(
    _upsert_increment(
        t.requester_counts,
        {"requester_index": sa.bindparam("index"), "period": sa.bindparam("period")},
        "opened",
    )
)
REFUSED = Statement(
    _upsert_increment(
        t.requester_refusals,
        {"month": sa.bindparam("month"), "reason": sa.bindparam("reason")},
        "refused",
    )
)
COUNTS = Statement(_counts)
BLOCKED = Statement(_blocked)
UNCOUNT = Statement(_uncount)
TAKEN_NOW = Statement(_taken_now)


def refusals_in(conn: sa.Connection, month: ServiceMonth) -> RefusalCounts:
    """The requests refused in ``month`` (what its monthly report seals)."""
    r = t.requester_refusals
    rows = conn.execute(sa.select(r.c.reason, r.c.refused).where(r.c.month == str(month)))
    known = {x.value for x in RefusalReason}
    # a reason this version does not know is not counted (nor can it be reported)
    return RefusalCounts(**{reason: int(n) for reason, n in rows if reason in known})


class RequesterRecorder(LedgerRecorder):
    """The requester limits of the SQL store (see the module docstring)."""

    # --- the command path: in the transaction of the append that opens a case -----------

    def _admit_requester(
        self, run: Runner, case_id: str, opened: CaseOpened
    ) -> RequesterRefused | None:
        """Count ``opened``'s request, or return its refusal with the refusal counted and
        nothing else changed (the caller commits that, then raises it). Raises
        :class:`ConcurrencyConflict` when a repeat of the same command opened the case
        meanwhile (the engine answers a repeat with its first result, not a refusal)."""
        policy = self.requesters
        assert policy is not None  # the caller asks only with a policy
        canonical = canonical_requester(opened.requester_phone)
        indexes = [index for _, index in self.keys.blind_indexes(canonical, PURPOSE)]
        day, month = periods(opened.at)
        blocked = any(run.rows(BLOCKED, index=index) for index in indexes)
        counted = [
            period
            for period, limit in ((day, policy.per_day), (month, policy.per_month))
            if limit is not None and not blocked
        ]
        for period in counted:
            run.write(COUNT, index=indexes[0], period=period)
        today = this_month = 0
        if counted:
            for index in indexes:  # rows of older keys still count while they are held
                for period, number in run.rows(COUNTS, index=index, day=day, month=month):
                    if period == day:
                        today += int(number)
                    else:
                        this_month += int(number)
        refused = refusal(
            policy, mask_phone(canonical), blocked=blocked, today=today, this_month=this_month
        )
        if refused is None:
            return None
        taken = run.rows(TAKEN_NOW, case_id=case_id)
        if taken:
            raise ConcurrencyConflict(case_id, 0, int(taken[0][0]))
        for period in counted:
            run.write(UNCOUNT, index=indexes[0], period=period)
        run.write(REFUSED, month=month, reason=refused.reason.value)
        return refused

    # --- the block list (七(三): every change in the access log, with its leaf) --------

    def block_requester(self, phone: str, *, reason: str, actor: str) -> BlockedRequester:
        """Put ``phone`` on the block list: :class:`InvalidInput` if it is on it."""
        canonical = canonical_requester(phone)
        why, who = check_reason(reason), check_reason(actor, "actor")
        masked = mask_phone(canonical)
        indexes = self.keys.blind_indexes(canonical, PURPOSE)
        key_id, index = indexes[0]
        at = self.clock.now()
        b = t.requester_blocks

        def fn(conn: sa.Connection) -> BlockedRequester:
            found = conn.execute(
                sa.select(b.c.blocked_at, b.c.actor).where(
                    b.c.requester_index.in_([i for _, i in indexes])
                )
            ).first()
            if found is not None:
                raise InvalidInput(
                    f"requester {masked} is blocked already (since "
                    f"{found.blocked_at:%Y-%m-%d}, by {excerpt(found.actor, 40)})"
                )
            self._guard(conn, f"block of requester {masked}", [at])
            conn.execute(
                b.insert(),
                {
                    "requester_index": index,
                    "key_id": key_id,
                    "phone": self.keys.encrypt(canonical, _block_place(index)),
                    "masked": masked,
                    "reason": why,
                    "actor": who,
                    "blocked_at": at,
                },
            )
            self._log(
                conn, at, actor=who, action=BLOCK_ACTION, case_id=None, detail=_detail(masked, why)
            )
            return BlockedRequester(masked, why, who, at)

        try:
            return self._write(fn)
        except sa.exc.IntegrityError:  # blocked by another operator at the same moment
            raise InvalidInput(f"requester {masked} is blocked already") from None

    def unblock_requester(self, phone: str, *, reason: str, actor: str) -> BlockedRequester:
        """Take ``phone`` off the block list: :class:`InvalidInput` if it is not on it."""
        canonical = canonical_requester(phone)
        why, who = check_reason(reason), check_reason(actor, "actor")
        masked = mask_phone(canonical)
        indexes = [i for _, i in self.keys.blind_indexes(canonical, PURPOSE)]
        at = self.clock.now()
        b = t.requester_blocks

        def fn(conn: sa.Connection) -> BlockedRequester:
            found = conn.execute(
                self._lock(sa.select(b).where(b.c.requester_index.in_(indexes)))
            ).first()
            if found is None:
                raise InvalidInput(f"requester {masked} is not blocked")
            self._guard(conn, f"unblock of requester {masked}", [at])
            conn.execute(b.delete().where(b.c.requester_index == found.requester_index))
            self._log(
                conn,
                at,
                actor=who,
                action=UNBLOCK_ACTION,
                case_id=None,
                detail=_detail(masked, why),
            )
            return BlockedRequester(found.masked, found.reason, found.actor, found.blocked_at)

        return self._write(fn)

    def blocked_requesters(self) -> list[BlockedRequester]:
        """The block list, oldest block first (numbers masked)."""
        b = t.requester_blocks
        with self._read() as conn:
            rows = conn.execute(
                sa.select(b.c.masked, b.c.reason, b.c.actor, b.c.blocked_at).order_by(
                    b.c.blocked_at, b.c.requester_index
                )
            ).all()
        return [BlockedRequester(r.masked, r.reason, r.actor, r.blocked_at) for r in rows]

    def block_history(self) -> list[BlockChange]:
        """Every change to the block list, oldest first, from the access log."""
        a = t.access_log
        with self._read() as conn:
            rows = conn.execute(
                sa.select(a.c.action, a.c.detail, a.c.actor, a.c.at)
                .where(a.c.action.in_([BLOCK_ACTION, UNBLOCK_ACTION]))
                .order_by(a.c.id)
            ).all()
        changes = []
        for r in rows:
            masked, _, why = (r.detail or "").partition(": ")
            changes.append(BlockChange(r.action, masked, why, r.actor, r.at))
        return changes

    def requester_usage(self, phone: str, day: dt.date) -> RequesterUsage:
        """Requests ``phone`` opened on ``day`` and in its month (counted only under a
        policy with limits), and whether it is blocked."""
        canonical = canonical_requester(phone)
        if isinstance(day, dt.datetime) or not isinstance(day, dt.date):
            raise InvalidInput(f"day={excerpt(day)}: must be a date")
        indexes = [i for _, i in self.keys.blind_indexes(canonical, PURPOSE)]
        c, b = t.requester_counts, t.requester_blocks
        key = day.isoformat()
        with self._read() as conn:
            rows = conn.execute(
                sa.select(c.c.period, sa.func.sum(c.c.opened))
                .where(c.c.requester_index.in_(indexes), c.c.period.in_([key, key[:7]]))
                .group_by(c.c.period)
            ).all()
            blocked = conn.execute(
                sa.select(b.c.requester_index).where(b.c.requester_index.in_(indexes))
            ).first()
        opened = {period: int(n) for period, n in rows}
        return RequesterUsage(
            mask_phone(canonical),
            day,
            opened.get(key, 0),
            opened.get(key[:7], 0),
            blocked is not None,
        )

    def requester_refusals(self, month: ServiceMonth) -> RefusalCounts:
        """Requests refused in ``month``, by reason."""
        if not isinstance(month, ServiceMonth):
            raise InvalidInput(f"month={excerpt(month)}: must be a ServiceMonth")
        with self._read() as conn:
            return refusals_in(conn, month)

    # --- upkeep: key rotation and the retention purge ------------------------------------

    def _rekey_requesters(self) -> int:
        """Re-index every blocked number not indexed under the newest key (its number,
        sealed in its row, opened and sealed again for the new row); the rows changed."""
        b = t.requester_blocks
        current = self.keys.current_id
        with self._read() as conn:
            rows = conn.execute(sa.select(b).where(b.c.key_id != current)).all()
        changed = 0
        for row in rows:
            canonical = self.keys.decrypt(row.phone, _block_place(row.requester_index))
            changed += self._write(functools.partial(self._rekey_one, row=row, canonical=canonical))
        return changed

    def _rekey_one(self, conn: sa.Connection, *, row: Any, canonical: str) -> int:
        """One blocked number's row, moved to its index under the newest key (0: it was
        unblocked or re-indexed since it was read)."""
        b = t.requester_blocks
        gone = conn.execute(
            b.delete().where(b.c.requester_index == row.requester_index, b.c.key_id == row.key_id)
        ).rowcount
        if gone != 1:
            return 0
        index = self.keys.blind_index(canonical, PURPOSE)
        conn.execute(
            b.insert(),
            {
                "requester_index": index,
                "key_id": self.keys.current_id,
                "phone": self.keys.encrypt(canonical, _block_place(index)),
                "masked": row.masked,
                "reason": row.reason,
                "actor": row.actor,
                "blocked_at": row.blocked_at,
            },
        )
        return 1

    def _requesters_pending(self) -> int:
        """Blocked numbers not indexed under the newest key."""
        b = t.requester_blocks
        with self._read() as conn:
            query = sa.select(sa.func.count()).where(b.c.key_id != self.keys.current_id)
            return int(conn.execute(query.select_from(b)).scalar_one())

    def _prune_requester_counts(self, now: dt.datetime) -> int:
        """Delete the counts no request can count against any more (periods before the
        previous month); the rows deleted."""
        first = periods(now)[0]
        day = dt.date.fromisoformat(first).replace(day=1)
        previous = (day - dt.timedelta(days=1)).isoformat()[:7]
        c = t.requester_counts
        return int(
            self._write(lambda conn: conn.execute(c.delete().where(c.c.period < previous)).rowcount)
        )


def _detail(masked: str, reason: str) -> str:
    """The access log's detail of a block-list change: ``138****5678: reason``."""
    return f"{masked}: {reason}"
