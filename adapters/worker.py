"""Outbox workers: deliver the effects the engine's store holds, as a long-running process.

Run one or several (threads or processes) against the same database: the store's claim
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL and MariaDB, the write lock on SQLite) hands each
effect to one worker at a time, and a worker marks it done only after it ran. Time is the
engine's clock, the same one the commands and the store use.
"""

from __future__ import annotations

from movecar_core.app import EffectRun, MoveCar


def drain(engine: MoveCar, worker: str, *, batch: int = 50) -> list[EffectRun]:
    """Run every effect due by the engine's clock, once (see :meth:`MoveCar.run_due`)."""
    return engine.run_due(worker=worker, batch=batch)
