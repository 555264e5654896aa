"""A whole case lifecycle on SQLite: the facade on ``SqlStore`` against the ``eventsourcing``
library's SQLite application doing the same five commands (issue 11, "Performance").

Both sides run each command in its own transaction on a SQLite file in WAL mode with
``synchronous=FULL`` (every commit is on disk before the command returns):

* ``movecar``: ``open_case``, ``locate_owner``, ``call_owner``,
  ``record_call_outcome(answered_agreed)``, ``confirm_moved`` through
  :class:`~movecar_core.app.MoveCar` on :class:`~movecar_adapters.sql.SqlStore` (an engine
  from :func:`~movecar_adapters.sql.make_engine`, the wall clock, an in-memory registry
  and phone switch): hash chain, phones sealed with AES-GCM, a ledger leaf per append,
  state row, look-up log and outbox timers, each command one transaction;
* ``eventsourcing``: an ``eventsourcing.application.Application`` whose aggregate records
  the same five events with the same fields (``PERSISTENCE_MODULE=eventsourcing.sqlite``,
  ``SQLITE_DBNAME`` a file). The library turns WAL on itself and leaves ``synchronous`` at
  SQLite's default; this benchmark sets ``PRAGMA synchronous=FULL`` on each of its
  connections and reports what both sides run with.

The requester's notices are off on our side (``EffectPolicy(notify_requester=False)``):
the other side sends none, and with them each notice is one more transaction after the
command (``with_requester_notices`` gives that lifecycle, as ``connect()`` wires it, for
information). The sides alternate in rounds (which goes first alternates too), each on
its own database for the whole run; each figure is the median over the rounds, the ratio
the median of the rounds' ratios. Times are wall-clock (the fsyncs are the point). SQL
statements and commits per lifecycle are counted with ``sqlite3``'s trace callback on
every connection of both sides (``BEGIN``, ``COMMIT`` and ``ROLLBACK`` included).

    python benchmarks/bench_sqlite_lifecycle.py [--cases 300] [--rounds 7] [--dir DIR]

Target: ``ratio_median`` (our lifecycles per second over theirs) at least 1.0. Measured on
the project's 2-core machine, seven runs: ratio 1.00 (run medians 0.97-1.04; single rounds
0.88-1.30), 418 against 411 lifecycles a second, 33 statements against 27, 5 commits each
(before the store kept each case's record and compiled its statements: 0.25, 84 against
305, 57 statements). See docs/storage.md, "What a command costs on SQLite".
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eventsourcing import sqlite as es_sqlite
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from movecar_adapters.clock import SystemClock
from movecar_adapters.crypto import KeyRing
from movecar_adapters.sql import SqlStore, make_engine, upgrade
from movecar_core.app import MoveCar
from movecar_core.contract import WUJIN_114_2024
from movecar_core.memory import InMemoryNotifier, InMemoryTelephony, InMemoryVehicleRegistry
from movecar_core.outbox import EffectPolicy

PLATE = "苏D12345"
LOCATION = "武进区湖塘镇花园街 8 号"
REQUESTER = "13800001111"
OWNER = "13912345678"


class Trace:
    """Every SQL statement one side's connections run (``sqlite3`` trace callback)."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def attach(self, connection: sqlite3.Connection) -> None:
        connection.set_trace_callback(self.statements.append)

    def counts(self) -> tuple[int, int]:
        """(statements, commits) seen so far."""
        commits = sum(1 for s in self.statements if s.lstrip().upper().startswith("COMMIT"))
        return len(self.statements), commits


# --- our side ---------------------------------------------------------------------------


class Ours:
    """The facade on a SqlStore on its own SQLite file."""

    def __init__(self, path: Path, *, notices: bool) -> None:
        self.trace = Trace()
        self.engine = make_engine(f"sqlite:///{path}")
        upgrade(self.engine)
        self.engine.dispose()  # so every connection the store uses is traced
        sa.event.listen(self.engine, "connect", lambda dbapi, _record: self.trace.attach(dbapi))
        keys = KeyRing([("k1", KeyRing.generate())])
        clock = SystemClock()
        store = SqlStore(
            self.engine, keys, clock=clock, effects=EffectPolicy(notify_requester=notices)
        )
        self.mc = MoveCar(
            store=store,
            registry=InMemoryVehicleRegistry({PLATE: OWNER}),
            telephony=InMemoryTelephony(),
            clock=clock,
            notifier=InMemoryNotifier() if notices else None,
        )

    def lifecycle(self) -> None:
        mc = self.mc
        case_id = mc.open_case(plate=PLATE, location=LOCATION, requester_phone=REQUESTER)
        mc.locate_owner(case_id, agent_id="seat-1")
        call = mc.call_owner(case_id, agent_id="seat-1")
        mc.record_call_outcome(case_id, call.call_id, "answered_agreed")
        mc.confirm_moved(case_id)

    def pragmas(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return {
                "journal_mode": conn.exec_driver_sql("PRAGMA journal_mode").scalar(),
                "synchronous": conn.exec_driver_sql("PRAGMA synchronous").scalar(),
            }

    def close(self) -> None:
        self.mc.close()
        self.engine.dispose()


# --- their side -------------------------------------------------------------------------


class MoveCase(Aggregate):
    """The same case as an ``eventsourcing`` aggregate: the same five events, the same
    fields, and a guard per command as light as the library's own examples."""

    @event("CaseOpened")
    def __init__(self, plate: str, location: str, requester_phone: str, agent_id: str) -> None:
        self.plate = plate
        self.location = location
        self.requester_phone = requester_phone
        self.state = "received"
        self.owner_phone: str | None = None
        self.call_in_flight: str | None = None
        self.attempts = 0

    @event("OwnerLookedUp")
    def owner_looked_up(
        self, agent_id: str, found: bool, owner_phone: str | None, source: str
    ) -> None:
        self.owner_phone = owner_phone
        self.state = "owner_located"

    @event("OwnerCallPlaced")
    def call_placed(
        self,
        *,
        call_id: str,
        attempt: int,
        agent_id: str,
        caller_id: str,
        greeting: str,
        greeting_version: str,
    ) -> None:
        self.call_in_flight = call_id
        self.attempts = attempt
        self.state = "owner_called"

    @event("CallOutcomeRecorded")
    def outcome_recorded(self, call_id: str, outcome: str) -> None:
        self.call_in_flight = None

    @event("MoveConfirmed")
    def move_confirmed(self, note: str | None) -> None:
        self.state = "moved"


class Desk(Application[uuid.UUID]):
    """The five commands; each reads the aggregate and saves its new event (a transaction)."""

    def open_case(self, plate: str, location: str, requester_phone: str) -> uuid.UUID:
        case = MoveCase(plate, location, requester_phone, "system")
        self.save(case)
        return case.id

    def locate_owner(self, case_id: uuid.UUID, agent_id: str) -> None:
        case: MoveCase = self.repository.get(case_id)
        if case.state != "received":
            raise ValueError(case.state)
        case.owner_looked_up(agent_id, True, OWNER, "registry")
        self.save(case)

    def call_owner(self, case_id: uuid.UUID, agent_id: str) -> str:
        case: MoveCase = self.repository.get(case_id)
        if case.state != "owner_located" or case.owner_phone is None:
            raise ValueError(case.state)
        call_id = uuid.uuid4().hex
        greeting = WUJIN_114_2024.greeting
        case.call_placed(
            call_id=call_id,
            attempt=case.attempts + 1,
            agent_id=agent_id,
            caller_id=WUJIN_114_2024.caller_id,
            greeting=greeting.render(case.plate),
            greeting_version=greeting.version,
        )
        self.save(case)
        return call_id

    def record_call_outcome(self, case_id: uuid.UUID, call_id: str, outcome: str) -> None:
        case: MoveCase = self.repository.get(case_id)
        if case.call_in_flight != call_id:
            raise ValueError(call_id)
        case.outcome_recorded(call_id, outcome)
        self.save(case)

    def confirm_moved(self, case_id: uuid.UUID) -> None:
        case: MoveCase = self.repository.get(case_id)
        if case.state != "owner_called":
            raise ValueError(case.state)
        case.move_confirmed(None)
        self.save(case)


#: The trace of the eventsourcing connections being made (one side at a time is built).
_THEIR_TRACE: list[Trace] = []
_create_connection = es_sqlite.SQLiteConnectionPool._create_connection


def _their_connection(pool: es_sqlite.SQLiteConnectionPool) -> es_sqlite.SQLiteConnection:
    """The library's connection, with the same ``synchronous`` as ours, traced."""
    connection = _create_connection(pool)
    raw = connection._sqlite_conn
    raw.execute("PRAGMA synchronous=FULL")
    if _THEIR_TRACE:
        _THEIR_TRACE[-1].attach(raw)
    return connection


es_sqlite.SQLiteConnectionPool._create_connection = _their_connection  # type: ignore[method-assign]


class Theirs:
    def __init__(self, path: Path) -> None:
        self.trace = Trace()
        _THEIR_TRACE.append(self.trace)
        self.app = Desk(
            env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
        )
        self.path = path

    def lifecycle(self) -> None:
        app = self.app
        case_id = app.open_case(PLATE, LOCATION, REQUESTER)
        app.locate_owner(case_id, "seat-1")
        call_id = app.call_owner(case_id, "seat-1")
        app.record_call_outcome(case_id, call_id, "answered_agreed")
        app.confirm_moved(case_id)

    def pragmas(self) -> dict[str, Any]:
        datastore = self.app.factory.datastore  # type: ignore[attr-defined]
        with datastore.transaction(commit=False) as cursor:
            cursor.execute("PRAGMA journal_mode")
            journal = cursor.fetchone()[0]
            cursor.execute("PRAGMA synchronous")
            synchronous = cursor.fetchone()[0]
        return {"journal_mode": journal, "synchronous": synchronous}

    def close(self) -> None:
        self.app.close()


# --- the run ----------------------------------------------------------------------------


def per_lifecycle(side: Ours | Theirs, n: int) -> dict[str, float]:
    """SQL statements and commits per lifecycle, over ``n`` lifecycles."""
    before = side.trace.counts()
    for _ in range(n):
        side.lifecycle()
    after = side.trace.counts()
    return {
        "statements": round((after[0] - before[0]) / n, 2),
        "commits": round((after[1] - before[1]) / n, 2),
    }


def timed(run: Callable[[], None], n: int) -> float:
    """Lifecycles per second over ``n`` of them, wall clock."""
    start = time.perf_counter()
    for _ in range(n):
        run()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=300, help="lifecycles per side per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=None, help="where the databases go")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-sqlite-lifecycle-", dir=args.dir))

    ours = Ours(folder / "movecar.db", notices=False)
    theirs = Theirs(folder / "eventsourcing.db")
    noticed = Ours(folder / "movecar-notices.db", notices=True)
    warm = max(1, min(20, args.cases // 10))
    counts = {
        "movecar": per_lifecycle(ours, warm),
        "eventsourcing": per_lifecycle(theirs, warm),
        "with_requester_notices": per_lifecycle(noticed, warm),
    }
    rates: dict[str, list[float]] = {"movecar": [], "eventsourcing": [], "notices": []}
    for round_ in range(args.rounds):
        sides = [("movecar", ours), ("eventsourcing", theirs)]
        for name, side in sides if round_ % 2 == 0 else sides[::-1]:
            rates[name].append(timed(side.lifecycle, args.cases))
        rates["notices"].append(timed(noticed.lifecycle, args.cases))
    ratios = [a / b for a, b in zip(rates["movecar"], rates["eventsourcing"], strict=True)]
    noticed_ratios = [a / b for a, b in zip(rates["notices"], rates["eventsourcing"], strict=True)]
    result = {
        "benchmark": "bench_sqlite_lifecycle",
        "lifecycle": [
            "open_case",
            "locate_owner",
            "call_owner",
            "record_call_outcome(answered_agreed)",
            "confirm_moved",
        ],
        "cases_per_round": args.cases,
        "rounds": args.rounds,
        "movecar": {
            "lifecycles_per_s": round(statistics.median(rates["movecar"]), 1),
            "ms_per_lifecycle": round(1000 / statistics.median(rates["movecar"]), 3),
            **counts["movecar"],
            "pragmas": ours.pragmas(),
        },
        "eventsourcing": {
            "lifecycles_per_s": round(statistics.median(rates["eventsourcing"]), 1),
            "ms_per_lifecycle": round(1000 / statistics.median(rates["eventsourcing"]), 3),
            **counts["eventsourcing"],
            "pragmas": theirs.pragmas(),
        },
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "target": "ratio_median >= 1.0 (our lifecycles per second over theirs)",
        "with_requester_notices": {
            "lifecycles_per_s": round(statistics.median(rates["notices"]), 1),
            **counts["with_requester_notices"],
            "ratio_median": round(statistics.median(noticed_ratios), 3),
        },
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }
    for side in (ours, theirs, noticed):
        side.close()
    for path in sorted(folder.iterdir()):
        path.unlink()
    folder.rmdir()
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
