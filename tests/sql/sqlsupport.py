"""Support for the SQL store tests: isolated databases on the configured servers.

Importable from test modules and from worker subprocesses (``tests/sql`` is on the path).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

from movecar_adapters.crypto import KeyRing
from movecar_adapters.sql import make_engine, upgrade

BACKENDS = ("sqlite", "postgresql", "mariadb")
ENV = {"postgresql": "MOVECAR_TEST_POSTGRES_URL", "mariadb": "MOVECAR_TEST_MARIADB_URL"}
LABEL = {"postgresql": "PostgreSQL", "mariadb": "MariaDB"}
SKIP_REASON = {b: f"set {ENV[b]} to run against {LABEL[b]}" for b in ENV}

KEY_1 = KeyRing.generate()
KEY_2 = KeyRing.generate()


class Databases:
    """Creates isolated databases on the configured servers and drops them afterwards."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.run = uuid.uuid4().hex[:10]
        self.cleanups: list[Callable[[], None]] = []
        self.checked: dict[str, str] = {}
        self.shared: dict[str, str] = {}

    def server(self, backend: str) -> str:
        """The server URL for ``backend``: skip if unset, fail if unreachable."""
        if backend == "sqlite":
            if os.environ.get("MOVECAR_TEST_SQLITE", "") in ("0", "off", "no"):
                pytest.skip("MOVECAR_TEST_SQLITE=0 turns the SQLite tests off")
            return "sqlite"
        if backend in self.checked:
            return self.checked[backend]
        url = os.environ.get(ENV[backend])
        if not url:
            pytest.skip(SKIP_REASON[backend])
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.DBAPIError as exc:
            pytest.fail(f"{ENV[backend]}={url} is set but unreachable: {exc.orig}", pytrace=False)
        finally:
            engine.dispose()
        self.checked[backend] = url
        return url

    def new(self, backend: str) -> str:
        """The URL of a new, empty, isolated database, migrated to head."""
        server = self.server(backend)
        name = f"mc_{self.run}_{uuid.uuid4().hex[:8]}"
        if backend == "sqlite":
            base = os.environ.get("MOVECAR_TEST_SQLITE")
            folder = Path(base) if base and Path(base).is_dir() else self.tmp
            url = f"sqlite:///{folder / (name + '.db')}"

            def drop_files() -> None:
                for suffix in (".db", ".db-wal", ".db-shm"):
                    (folder / (name + suffix)).unlink(missing_ok=True)

            self.cleanups.append(drop_files)
        elif backend == "postgresql":
            admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
            admin.dispose()  # no idle connection per database until the run ends
            url = (
                sa.make_url(server)
                .update_query_dict({"options": f"-csearch_path={name}"})
                .render_as_string(hide_password=False)
            )

            def drop_schema() -> None:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
                admin.dispose()

            self.cleanups.append(drop_schema)
        else:
            admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(
                    sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
                )
            admin.dispose()  # no idle connection per database until the run ends
            url = sa.make_url(server).set(database=name).render_as_string(hide_password=False)

            def drop_database() -> None:
                with admin.connect() as conn:
                    conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
                admin.dispose()

            self.cleanups.append(drop_database)
        engine = make_engine(url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        return url

    def shared_url(self, backend: str) -> str:
        if backend not in self.shared:
            self.shared[backend] = self.new(backend)
        return self.shared[backend]

    def close(self) -> None:
        for cleanup in reversed(self.cleanups):
            cleanup()


# --- workers run in other processes (multiprocessing "spawn") ---------------------------

EFFECT_LOG = "test_effect_log"


def create_effect_log(url: str) -> None:
    """A table (outside the store's schema) where handlers record each effect they ran."""
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"CREATE TABLE {EFFECT_LOG} (effect_key VARCHAR(200) NOT NULL, "
                "worker VARCHAR(100) NOT NULL)"
            )
        )
    engine.dispose()


def outbox_worker(url: str, key: str, worker: str, idle_rounds: int = 20) -> int:
    """Claim and run effects until the outbox stays empty; each run is logged."""
    import time

    from movecar_adapters.sql import SqlStore

    engine = make_engine(url)
    store = SqlStore(engine, KeyRing([("k1", key)]))
    ran = 0
    idle = 0

    def handler(effect: object) -> None:
        with engine.begin() as conn:
            conn.execute(
                sa.text(f"INSERT INTO {EFFECT_LOG} (effect_key, worker) VALUES (:k, :w)"),
                {"k": effect.key, "w": worker},  # type: ignore[attr-defined]
            )

    far_future = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
    while idle < idle_rounds:
        n = store.work(worker, handler, limit=3, now=far_future)
        ran += n
        if n == 0:
            idle += 1
            time.sleep(0.005)
        else:
            idle = 0
    engine.dispose()
    return ran


def command_worker(url: str, key: str, case_ids: list[str], ops: int, seed: int) -> dict[str, int]:
    """Conflicting commands on shared cases; returns how many of each succeeded."""
    import random

    from movecar_adapters.sql import SqlStore
    from movecar_core.app import MoveCar
    from movecar_core.case import CallOutcome, CaseRecord, Event
    from movecar_core.clock import ManualClock
    from movecar_core.errors import CommandRejected, ConcurrencyConflict
    from movecar_core.machine import CasePolicy
    from movecar_core.memory import InMemoryTelephony, InMemoryVehicleRegistry
    from movecar_core.outbox import Plan

    done = {"call_owner": 0, "record_call_outcome": 0, "rejected": 0, "conflict": 0}
    done["conflicts_retried"] = 0

    class CountingStore(SqlStore):
        # Every append goes through append_folded (the engine's and append's).
        def append_folded(
            self, case_id: str, events: Sequence[Event], expected_version: int
        ) -> tuple[CaseRecord, Plan]:
            try:
                return super().append_folded(case_id, events, expected_version)
            except ConcurrencyConflict:
                done["conflicts_retried"] += 1
                raise

    engine = make_engine(url)
    store = CountingStore(engine, KeyRing([("k1", key)]))
    app = MoveCar(
        store=store,
        registry=InMemoryVehicleRegistry(),
        telephony=InMemoryTelephony(),
        clock=ManualClock(),
        policy=CasePolicy(max_call_attempts=10_000),
        max_retries=20,
    )
    rng = random.Random(seed)
    for _ in range(ops):
        case_id = rng.choice(case_ids)
        try:
            record = app.record(case_id)
            if record.call_in_flight is None:
                app.call_owner(case_id, agent_id=f"seat-{seed}")
                done["call_owner"] += 1
            else:
                outcome = rng.choice([CallOutcome.NO_ANSWER, CallOutcome.BUSY])
                app.record_call_outcome(case_id, record.call_in_flight, outcome)
                done["record_call_outcome"] += 1
        except CommandRejected:
            done["rejected"] += 1
        except ConcurrencyConflict:
            done["conflict"] += 1
    engine.dispose()
    return done


def crash_writer(url: str, key: str, seed: int) -> None:
    """Runs whole case lifecycles forever (until killed)."""
    import random

    from movecar_adapters.sql import SqlStore
    from movecar_core.app import MoveCar
    from movecar_core.case import CallOutcome
    from movecar_core.clock import ManualClock
    from movecar_core.memory import InMemoryTelephony, InMemoryVehicleRegistry

    store = SqlStore(make_engine(url), KeyRing([("k1", key)]))
    app = MoveCar(
        store=store,
        registry=InMemoryVehicleRegistry({"苏D12345": "13912345678"}),
        telephony=InMemoryTelephony(),
        clock=ManualClock(),
    )
    rng = random.Random(seed)
    while True:
        case_id = app.open_case(plate="苏D12345", location="武进", requester_phone="13800001111")
        app.locate_owner(case_id)
        for _ in range(3):
            call = app.call_owner(case_id, agent_id="seat-1")
            outcome = rng.choice([CallOutcome.NO_ANSWER, CallOutcome.ANSWERED_AGREED])
            view = app.record_call_outcome(case_id, call.call_id, outcome)
            if outcome is CallOutcome.ANSWERED_AGREED:
                app.confirm_moved(case_id)
                break
            if view.state.is_terminal:
                break
