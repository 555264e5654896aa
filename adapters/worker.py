"""Outbox workers: claim due effects from the store and carry them out through the engine.

Run one or several (threads or processes) against the same database: the store's claim
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL and MariaDB, the write lock on SQLite) hands each
effect to one worker at a time, and a worker marks it done only after it ran.
"""

from __future__ import annotations

import datetime as dt
import time

from movecar_core.app import MoveCar
from movecar_core.outbox import OutboxStore


def drain(
    outbox: OutboxStore,
    engine: MoveCar,
    worker: str,
    *,
    batch: int = 10,
    now: dt.datetime | None = None,
) -> list[tuple[str, str]]:
    """Run every effect due by ``now``; returns ``(effect key, what was done)`` for each.

    An effect whose run raises stays pending and is claimed again when its lease ends;
    the error propagates so the caller sees it (and the rest of the batch waits too).
    """
    done: list[tuple[str, str]] = []
    while claimed := outbox.claim(worker, limit=batch, now=now):
        for item in claimed:
            what = engine.run_effect(item.effect)
            # False when the effect's own events already settled its row (an overdue
            # outcome cancels its timer) or the lease was lost: it ran either way.
            outbox.complete(item)
            done.append((item.effect.key, what))
    return done


def run_forever(
    outbox: OutboxStore, engine: MoveCar, worker: str, *, idle_seconds: float = 1.0
) -> None:  # pragma: no cover - the loop around drain(), for deployments
    """Drain the outbox, sleep while it is empty, repeat."""
    while True:
        if not drain(outbox, engine, worker):
            time.sleep(idle_seconds)
