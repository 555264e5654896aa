"""The audit's case checks on more than one core.

Checking a case (decrypting its phones, decoding and folding its events, recomputing its
chain) is most of what :func:`~movecar_adapters.sql.audit.verify` costs, and one case's
checks need nothing from another's. So the cases are split into ranges of ``seq``
(:func:`~movecar_adapters.sql.audit_cases.case_ranges`) and handed out as they are needed:
to helper processes (``python -I -c BOOT movecar_adapters.sql.audit_child``, started
isolated as :mod:`movecar_adapters.sql.child` describes), each reading its ranges over its
own connection, and to the calling process, which takes a range whenever it has nothing
else to do. Each helper gets at most :data:`DEPTH` ranges ahead, so a slow one holds back
little. The results are summed in range order, so the findings come out in the same order
whatever the number of processes.

The helpers get the database URL (with its password) and the data-encryption keys over
the pipe, never on their command line or in their environment. A helper that fails or
dies is retired and its ranges are checked by the calling process: nothing it was sent
goes unchecked, and an error the range really causes is raised there, as without helpers.

Frames (pickle, see :mod:`movecar_adapters.sql.child`):

* parent to helper: ``(url, engine options, key entries, CaseRules)`` once, then
  ``(index, after, upto)`` per range, then ``None``;
* helper to parent: ``("ok", index, CaseAudit)`` or ``("error", index, message)`` per range.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pickle
import queue
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any

import sqlalchemy as sa

from movecar_adapters.crypto import KeyRing
from movecar_adapters.sql.audit_cases import CaseAudit, CaseRules, audit_range, case_ranges
from movecar_adapters.sql.child import Child, child_url, frame, read_body, read_frame
from movecar_adapters.sql.engine import READ_ONLY, engine_recipe, make_engine
from movecar_adapters.sql.errors import StorageInputError

#: Ranges each helper holds at once: one being checked, one waiting in its pipe.
DEPTH = 2
#: With ``workers=None``, helpers start only for a database of at least this many cases:
#: below it, starting them (about half a second each) costs more than they save.
PARALLEL_FROM_CASES = 10_000
#: ``workers=None`` uses one process per core, up to this many.
MAX_AUTO_WORKERS = 4

Job = tuple[int, int, int]  # (index, after, upto)


def choose_workers(engine: sa.Engine, workers: int | None, cases: Callable[[], int]) -> int:
    """How many processes check cases: ``workers`` if given (1: only this one), else one
    per core (up to :data:`MAX_AUTO_WORKERS`) for a database of at least
    :data:`PARALLEL_FROM_CASES` cases that another process can open."""
    if workers is not None:
        if type(workers) is not int or not 1 <= workers <= 64:
            raise StorageInputError("workers", workers, "must be a whole number from 1 to 64")
        if workers > 1 and not _shareable(engine):
            raise StorageInputError(
                "workers",
                workers,
                "helper processes need an engine made by movecar_adapters.sql.make_engine",
            )
        return workers
    if not _shareable(engine):
        return 1
    cores = min(os.cpu_count() or 1, MAX_AUTO_WORKERS)
    return cores if cores > 1 and cases() >= PARALLEL_FROM_CASES else 1


def _shareable(engine: sa.Engine) -> bool:
    return engine_recipe(engine) is not None


class CaseChecks:
    """The case checks of one audit, started with ``workers - 1`` helpers (see the module
    docstring). :meth:`finish` checks what is left in this process and returns the sum;
    :meth:`close` ends the helpers (call it in ``finally``)."""

    #: The module the helpers run as ``__main__``.
    child_module = "movecar_adapters.sql.audit_child"

    def __init__(
        self,
        engine: sa.Engine,
        read: Callable[[], sa.Connection],
        keys: KeyRing,
        rules: CaseRules,
        *,
        page: int,
        workers: int,
    ) -> None:
        self.read = read
        self.keys = keys
        self.rules = rules
        self.jobs: Iterator[Job] = (
            (index, after, upto) for index, (after, upto) in enumerate(case_ranges(read, page))
        )
        self.retry: collections.deque[Job] = collections.deque()
        self.results: dict[int, CaseAudit] = {}
        self.replies: queue.Queue[tuple[Child, bytes | None]] = queue.Queue()
        self.helpers: dict[Child, list[Job]] = {}  # each helper's ranges in flight
        self.retired: set[Child] = set()
        recipe = engine_recipe(engine)
        if workers > 1 and recipe is not None:
            url, options = recipe
            opening = frame((child_url(url), options, keys.entries(), rules))
            for _ in range(workers - 1):
                self._start(url, opening)

    def _start(self, url: str, opening: bytes) -> None:
        child = Child(self.child_module, url, "an audit helper process")
        self.helpers[child] = []
        try:
            child.send_bytes(opening)
        except Exception:
            self._retire(child)
            return
        threading.Thread(target=self._listen, args=(child,), daemon=True).start()
        self._feed(child)

    def _listen(self, child: Child) -> None:
        # Bytes only: unpickling here would hold the GIL the checking thread needs.
        try:
            while True:
                self.replies.put((child, read_body(child.stdout)))
        except (EOFError, OSError, ValueError):  # ended, or closed by stop()
            self.replies.put((child, None))

    def _next_job(self) -> Job | None:
        if self.retry:
            return self.retry.popleft()
        return next(self.jobs, None)

    def _feed(self, child: Child) -> None:
        while child not in self.retired and len(self.helpers[child]) < DEPTH:
            job = self._next_job()
            if job is None:
                return
            self.helpers[child].append(job)
            try:
                child.send(job)
            except Exception:
                self._retire(child)

    def _retire(self, child: Child) -> None:
        """Stop giving ``child`` work; what it was sent and did not answer is redone here."""
        self.retired.add(child)
        self.retry.extend(self.helpers[child])
        self.helpers[child] = []

    def _handle(self, child: Child, body: bytes | None) -> None:
        if body is None:
            self._retire(child)
            return
        try:
            status, index, result = pickle.loads(body)
        except Exception:  # not a reply of ours: nothing more from it is trusted
            self._retire(child)
            return
        jobs = self.helpers[child]
        job = next((j for j in jobs if j[0] == index), None)
        if job is None:
            self._retire(child)
            return
        jobs.remove(job)
        if status == "ok" and isinstance(result, CaseAudit):
            self.results[index] = result
            self._feed(child)
        else:  # its failure is redone here, where a real error is raised
            self.retry.append(job)
            self._retire(child)

    def _drain(self, *, block: bool) -> None:
        while True:
            try:
                child, body = self.replies.get(block=block)
            except queue.Empty:
                return
            self._handle(child, body)
            block = False

    def _in_flight(self) -> bool:
        return any(self.helpers[c] for c in self.helpers if c not in self.retired)

    def finish(self) -> CaseAudit:
        """Check the ranges no helper has taken, wait for the helpers, sum in range order."""
        while True:
            self._drain(block=False)
            job = self._next_job()
            if job is None:
                if not self._in_flight():
                    break
                self._drain(block=True)
                continue
            index, after, upto = job
            self.results[index] = audit_range(self.read, self.keys, self.rules, after, upto)
        total = CaseAudit()
        for index in sorted(self.results):
            total.add(self.results[index])
        return total

    def close(self) -> None:
        for child in self.helpers:
            if not child.stopped:
                with contextlib.suppress(Exception):  # gone already; stop() reaps it
                    child.send(None)
                child.stop(timeout=60)


def serve(source: IO[bytes], replies: IO[bytes]) -> None:
    """A helper's side: check each range read from ``source``, reply on ``replies``."""
    url, options, entries, rules = read_frame(source)
    engine = make_engine(url, **options)
    keys = KeyRing(entries)

    def read() -> sa.Connection:
        return engine.connect().execution_options(**{READ_ONLY: True})

    try:
        while (job := read_frame(source)) is not None:
            index, after, upto = job
            reply: tuple[str, int, Any]
            try:
                reply = ("ok", index, audit_range(read, keys, rules, after, upto))
            except Exception as exc:  # the parent redoes the range and raises it there
                reply = ("error", index, type(exc).__name__)
            replies.write(frame(reply))
            replies.flush()
    except EOFError:  # the parent went away
        pass
    finally:
        engine.dispose()
