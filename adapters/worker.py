"""Outbox workers: deliver the effects the engine's store holds, as a long-running process.

Run one or several (threads or processes) against the same database: the store's claim
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL and MariaDB, the write lock on SQLite) hands each
effect to one worker at a time, and a worker marks it done only after it ran. Time is the
engine's clock, the same one the commands and the store use. ``movecar worker`` is this
module behind the command line; a host with its own wiring calls :func:`run` itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import attrs

from movecar_core.app import EffectRun, MoveCar
from movecar_core.incidents import Incidents, NoticeRun

log = logging.getLogger("movecar.worker")


@runtime_checkable
class Sequencer(Protocol):
    """A store with an evidence ledger (the SQL store): pending leaves to sequence."""

    def sequence(self) -> Any: ...


def drain(engine: MoveCar, worker: str, *, batch: int = 50) -> list[EffectRun]:
    """Run every effect due by the engine's clock, once (see :meth:`MoveCar.run_due`)."""
    return engine.run_due(worker=worker, batch=batch)


def describe(run: EffectRun) -> str:
    """One log line for an effect: no personal data (a case id prefix, the kind, the
    outcome; port errors are library errors, whose messages are redacted)."""
    state = "ok" if run.ok else "FAILED"
    detail = run.outcome if run.ok else f"{run.outcome}: {run.error}"
    # An effect of no case (the monthly report) is named by its key, which says the month.
    subject = f"case {run.case_id[:8]}" if run.case_id else run.key
    return f"{run.kind} {subject} {state}: {detail}"


def describe_notice(run: NoticeRun) -> str:
    """One log line for an incident notice (二(五), annex 2 十六): the incident, the
    notice, the outcome; whether it went out after its deadline."""
    state = "ok" if run.ok else "FAILED"
    detail = run.outcome if run.ok else f"{run.outcome}: {run.error}"
    late = " (after its deadline)" if run.late else ""
    return f"{run.kind.value} notice {run.incident_id} {state}: {detail}{late}"


@attrs.define
class WorkerStats:
    """What a worker did: effects run and effects whose port failed (still pending)."""

    ran: int = 0
    failed: int = 0


def run(
    engine: MoveCar,
    *,
    name: str = "worker",
    concurrency: int = 1,
    poll_seconds: float = 1.0,
    once: bool = False,
    stop: threading.Event | None = None,
    report: Callable[[str], None] | None = None,
    incidents: Incidents | None = None,
) -> WorkerStats:
    """Deliver due effects until ``stop`` is set (or, with ``once``, until none is due).

    ``concurrency`` threads share the engine, each claiming as ``<name>-<i>``; between
    empty rounds each waits ``poll_seconds`` (or until ``stop``). An effect whose port
    fails stays pending under its lease and is retried after it; each effect gives one
    line to ``report`` (default: the ``movecar.worker`` logger at INFO).

    ``incidents``: the first thread also sends the outage and security-incident notices
    that are due (:meth:`~movecar_core.incidents.Incidents.run_due`) every round; one
    thread, so one process sends each notice once (the key covers the rest).
    """
    if type(concurrency) is not int or not 1 <= concurrency <= 64:
        raise ValueError(f"concurrency={concurrency!r}: must be 1 to 64")
    if not 0 < poll_seconds <= 3600:
        raise ValueError(f"poll_seconds={poll_seconds!r}: must be more than 0, at most 3600")
    halt = stop or threading.Event()
    say = report or log.info
    stats = WorkerStats()
    lock = threading.Lock()

    # The first thread also sequences the evidence ledger's pending leaves, so that a
    # checkpoint finds little left to do (see docs/ledger.md).
    sequencer = engine.store if isinstance(engine.store, Sequencer) else None

    def loop(index: int) -> None:
        worker = f"{name}-{index}"
        while not halt.is_set():
            try:
                if index == 0 and sequencer is not None:
                    sequencer.sequence()
                notices = incidents.run_due() if index == 0 and incidents is not None else []
                runs = engine.run_due(worker=worker, batch=10)
            except Exception as exc:  # the database is down, say: wait and try again
                say(f"{worker} round failed ({type(exc).__name__}): {exc}")
                with lock:
                    stats.failed += 1
                if once:
                    return
                halt.wait(poll_seconds)
                continue
            for notice in notices:
                say(f"{worker} {describe_notice(notice)}")
            for item in runs:
                say(f"{worker} {describe(item)}")
            done: list[EffectRun | NoticeRun] = [*notices, *runs]
            with lock:
                stats.ran += sum(r.ok for r in done)
                stats.failed += sum(not r.ok for r in done)
            if once and not done:
                return
            if not done or all(not r.ok for r in done):
                halt.wait(poll_seconds)

    threads = [
        threading.Thread(target=loop, args=(i,), name=f"{name}-{i}", daemon=True)
        for i in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return stats
