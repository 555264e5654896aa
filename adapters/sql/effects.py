"""Effects and timers: the outbox the events' transaction writes and workers drain."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any

import sqlalchemy as sa

from movecar_adapters.sql import schema as t
from movecar_adapters.sql.base import StoreBase, check_text
from movecar_adapters.sql.errors import StorageInputError
from movecar_adapters.sql.prepared import Runner, Statement
from movecar_adapters.sql.writes import Row
from movecar_core.integrity import (
    canonical_json,
)
from movecar_core.outbox import (
    INLINE_WORKER,
    TIMERS,
    Claimed,
    Effect,
    EffectPolicy,
    born_claimed,
    inline_token,
)
from movecar_core.ports import Backlog

#: In the table's column order (the compiled INSERT's positional order).
OUTBOX_COLUMNS = (
    "effect_key", "case_id", "kind", "due_at", "payload", "status",
    "claimed_by", "claim_token", "lease_until", "attempts",
)  # fmt: skip


def effect_rows(effects: Iterable[Effect], policy: EffectPolicy, lease: dt.timedelta) -> list[Row]:
    """Outbox rows (:data:`OUTBOX_COLUMNS`) of newly scheduled effects; the sends an engine
    delivers inline are written leased to it (:func:`movecar_core.outbox.born_claimed`)."""
    rows: list[Row] = []
    for e in effects:
        payload = canonical_json(dict(e.payload))
        claim: tuple[str | None, str | None, dt.datetime | None, int]
        if born_claimed(e, policy):
            claim = (INLINE_WORKER, inline_token(e.key), e.due_at + lease, 1)
        else:
            claim = (None, None, None, 0)
        rows.append((e.key, e.case_id, e.kind, e.due_at, payload, "pending", *claim))
    return rows


def _cancel(kinds: int) -> Statement:
    o = t.outbox
    return Statement(
        lambda _: (
            o.update()
            .where(
                o.c.case_id == sa.bindparam("case_id"),
                o.c.status == "pending",
                o.c.kind.in_([sa.bindparam(f"kind{i}", type_=o.c.kind.type) for i in range(kinds)]),
            )
            .values(status="cancelled", done_at=sa.bindparam("done_at", type_=o.c.done_at.type))
        )
    )


def _complete(_: sa.Dialect) -> sa.Update:
    o = t.outbox
    return (
        o.update()
        .where(
            o.c.effect_key == sa.bindparam("key"),
            o.c.claim_token == sa.bindparam("token"),
            o.c.status == "pending",
        )
        .values(status="done", done_at=sa.bindparam("done_at", type_=o.c.done_at.type))
    )


_COMPLETE = Statement(_complete)
#: By the number of kinds cancelled (a plan cancels one timer or both).
_CANCEL = {n: _cancel(n) for n in range(1, len(TIMERS) + 1)}


def cancel_timers(run: Runner, case_id: str, kinds: Collection[str], now: dt.datetime) -> None:
    """In the events' own transaction: cancel the case's pending effects of ``kinds``
    (the timers a batch made moot, :func:`movecar_core.outbox.plan`)."""
    names = {f"kind{i}": kind for i, kind in enumerate(sorted(kinds))}
    run.write(_CANCEL[len(names)], case_id=case_id, done_at=now, **names)


class EffectRecorder(StoreBase):
    """The outbox: durable effects and timers, claimed by one worker at a time."""

    # --- outbox -------------------------------------------------------------------------

    def claim(
        self,
        worker: str,
        *,
        limit: int = 1,
        now: dt.datetime | None = None,
        keys: Collection[str] | None = None,
    ) -> list[Claimed]:
        """Lease up to ``limit`` due effects to ``worker``.

        PostgreSQL and MariaDB: ``SELECT ... FOR UPDATE SKIP LOCKED`` then an update of
        the selected rows, so concurrent workers skip each other's rows instead of
        waiting. SQLite: the same select and update inside ``BEGIN IMMEDIATE``, which holds
        the database's single write lock, so two claims never overlap. With ``keys``, only
        those effects (by the unique index on the key).
        """
        check_text("worker", worker, 100)
        if type(limit) is not int or limit < 1:
            raise StorageInputError("limit", limit, "must be an int >= 1")
        wanted = None if keys is None else sorted(set(keys))
        if wanted is not None and not wanted:
            return []
        at = now or self.clock.now()
        lease_until = at + self.lease
        token = uuid.uuid4().hex
        o = t.outbox

        def fn(conn: sa.Connection) -> list[Claimed]:
            query = (
                sa.select(o)
                .where(
                    o.c.status == "pending",
                    o.c.due_at <= at,
                    sa.or_(o.c.lease_until.is_(None), o.c.lease_until < at),
                )
                .order_by(o.c.due_at, o.c.id)
                .limit(limit)
            )
            if wanted is not None:
                query = query.where(o.c.effect_key.in_(wanted))
            if self.dialect != "sqlite":
                query = query.with_for_update(skip_locked=True)
            rows = conn.execute(query).all()
            if not rows:
                return []
            conn.execute(
                o.update()
                .where(o.c.id.in_([r.id for r in rows]))
                .values(
                    claimed_by=worker,
                    claim_token=token,
                    lease_until=lease_until,
                    attempts=o.c.attempts + 1,
                )
            )
            return [
                Claimed(
                    id=r.id,
                    token=token,
                    effect=_effect(r),
                    attempts=r.attempts + 1,
                    lease_until=lease_until,
                )
                for r in rows
            ]

        return self._write(fn)

    def complete(self, claimed: Claimed) -> bool:
        # On the command path: the engine marks each send of a command done right after it.
        done = self.command_path.transaction(
            lambda run: run.write(
                _COMPLETE, key=claimed.effect.key, token=claimed.token, done_at=self.clock.now()
            )
        )
        return done == 1

    def work(
        self,
        worker: str,
        handler: Callable[[Effect], None],
        *,
        limit: int = 10,
        now: dt.datetime | None = None,
    ) -> int:
        """Claim due effects, run ``handler`` on each, mark it done. Returns how many ran.

        A handler that raises leaves its effect pending; it is claimed again once the
        lease runs out. Handlers get :attr:`Effect.key` to recognise a repeat after a
        worker crashed between running an effect and marking it done.
        """
        ran = 0
        for item in self.claim(worker, limit=limit, now=now):
            handler(item.effect)
            self.complete(item)
            ran += 1
        return ran

    # --- effects of no case (EffectScheduler: the monthly report) -----------------------

    def schedule(self, effect: Effect) -> bool:
        """Keep ``effect`` pending (:class:`~movecar_core.outbox.EffectScheduler`): True
        when added, False when its key is in the outbox already (pending, done or
        cancelled: done rows are kept, so a key is scheduled at most once).

        Two workers scheduling the same key at once meet the unique index on the key: the
        one that loses finds the row and answers False.
        """
        if not isinstance(effect, Effect):
            raise StorageInputError("effect", effect, "must be an Effect")
        check_text("effect.key", effect.key, 200)
        check_text("effect.kind", effect.kind, 40)
        if not isinstance(effect.key, str) or not effect.key:
            raise StorageInputError("effect.key", effect.key, "must be a non-empty string")
        if not isinstance(effect.due_at, dt.datetime) or effect.due_at.tzinfo is None:
            raise StorageInputError("effect.due_at", effect.due_at, "must be an aware datetime")
        [row] = effect_rows([effect], self.effects, self.lease)
        o = t.outbox
        exists = sa.select(o.c.id).where(o.c.effect_key == effect.key)

        def fn(conn: sa.Connection) -> bool:
            if conn.execute(exists).first() is not None:
                return False
            conn.execute(o.insert(), dict(zip(OUTBOX_COLUMNS, row, strict=True)))
            return True

        try:
            return self._write(fn)
        except sa.exc.IntegrityError:
            with self._read() as conn:
                if conn.execute(exists).first() is not None:
                    return False
            raise

    def outbox_backlog(self, now: dt.datetime) -> Backlog:
        """The pending effects (:class:`~movecar_core.ports.OutboxBacklog`): one aggregate
        over the ``(status, due_at)`` index, no payload read."""
        o = t.outbox
        pending = o.c.status == "pending"
        due = sa.func.sum(sa.case((o.c.due_at <= now, 1), else_=0))
        query = sa.select(sa.func.count(), due, sa.func.min(o.c.due_at)).where(pending)
        with self._read() as conn:
            count, due_now, oldest = conn.execute(query).one()
        return Backlog(int(count), int(due_now or 0), oldest)

    def pending(self, case_id: str | None = None) -> Iterator[Effect]:
        o = t.outbox
        query = sa.select(o).where(o.c.status == "pending").order_by(o.c.due_at, o.c.id)
        if case_id is not None:
            query = query.where(o.c.case_id == case_id)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return iter([_effect(r) for r in rows])


def _effect(row: Any) -> Effect:
    return Effect(
        key=row.effect_key,
        kind=row.kind,
        case_id=row.case_id,
        due_at=row.due_at,
        payload=json.loads(row.payload),
    )
