"""Reliability evidence: outbox exactly once, concurrent writers, a SIGKILLed writer."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter

import pytest
import sqlalchemy as sa
from sqlsupport import (
    EFFECT_LOG,
    KEY_1,
    Databases,
    command_worker,
    crash_writer,
    create_effect_log,
    outbox_worker,
)

from movecar_adapters.crypto import KeyRing
from movecar_adapters.sql import SqlStore, make_engine, verify
from movecar_adapters.sql import schema as t
from movecar_core.app import MoveCar
from movecar_core.case import CallOutcome, CallOutcomeRecorded, EscalationReason, OwnerCallPlaced
from movecar_core.clock import ManualClock
from movecar_core.machine import fold
from movecar_core.memory import (
    InMemoryCommandCentre,
    InMemoryTelephony,
    InMemoryVehicleRegistry,
)
from movecar_core.outbox import CALL_OUTCOME_DUE, FOLLOW_UP_CALL, NOTIFY_110, NOTIFY_REQUESTER
from movecar_core.testing.contracts import sample_history

SPAWN = multiprocessing.get_context("spawn")
SERVERS = [pytest.param("postgresql"), pytest.param("mariadb")]


def app_on(store: SqlStore, clock: ManualClock) -> MoveCar:
    return MoveCar(
        store=store,
        registry=InMemoryVehicleRegistry({"苏D12345": "13912345678"}),
        telephony=InMemoryTelephony(),
        clock=clock,
        command_centre=InMemoryCommandCentre(),
        max_retries=10,
    )


def test_effects_and_timers_are_written_with_the_events(
    fresh_store: SqlStore, clock: ManualClock
) -> None:
    app = app_on(fresh_store, clock)
    case_id = app.open_case(plate="苏D12345", location="湖塘", requester_phone="13800001111")
    app.locate_owner(case_id)
    call = app.call_owner(case_id, agent_id="seat-1")
    [due] = fresh_store.pending(case_id)
    assert (due.kind, due.due_at) == (CALL_OUTCOME_DUE, clock.now() + dt.timedelta(minutes=3))
    assert fresh_store.claim("w", now=clock.now()) == []  # not due yet
    app.record_call_outcome(case_id, call.call_id, CallOutcome.NO_ANSWER)
    [follow] = fresh_store.pending(case_id)  # the outcome cancelled the deadline
    assert follow.kind == FOLLOW_UP_CALL
    app.escalate(case_id, EscalationReason.OWNER_UNCOOPERATIVE)
    # Closing cancels every timer; the notice to 110 was written with the escalation and
    # delivered at once (Dispatch.INLINE), so nothing is left pending.
    assert list(fresh_store.pending(case_id)) == []
    desk = app.command_centre
    assert isinstance(desk, InMemoryCommandCentre)
    assert [n.key.rsplit(":", 1)[1] for n in desk.notices] == [NOTIFY_110]
    assert "0519-81997327" in desk.notices[0].message


def test_a_claim_leases_each_effect_to_one_worker(fresh_store: SqlStore) -> None:
    case_id = "case-claim"
    fresh_store.append(case_id, sample_history(case_id), expected_version=0)  # escalated
    kinds = sorted(e.kind for e in fresh_store.pending(case_id))
    assert kinds == [NOTIFY_110, NOTIFY_REQUESTER]  # timers cancelled by the close
    now = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)
    claimed = fresh_store.claim("w1", limit=10, now=now)
    assert len(claimed) == 2
    assert fresh_store.claim("w2", limit=10, now=now) == []  # leased to w1
    assert all(fresh_store.complete(c) for c in claimed)
    assert not fresh_store.complete(claimed[0])
    assert list(fresh_store.pending()) == []


def test_a_failed_append_writes_no_effect(fresh_store: SqlStore) -> None:
    case_id = "case-fx"
    history = sample_history(case_id)
    fresh_store.append(case_id, history[:2], expected_version=0)
    with pytest.raises(Exception):  # noqa: B017, PT011 - the conflict; any error must roll back
        fresh_store.append(case_id, history[2:3], expected_version=1)
    assert list(fresh_store.pending(case_id)) == []


@pytest.mark.parametrize("backend", ["sqlite", *SERVERS], indirect=True)
def test_every_effect_runs_exactly_once_with_four_worker_processes(
    fresh_store: SqlStore, fresh_url: str
) -> None:
    cases = [f"fx-{i}" for i in range(60)]
    fresh_store.bulk_import((sample_history(c) for c in cases), with_effects=True)
    fresh_store.append("fx-open", sample_history("fx-open")[:3], expected_version=0)
    expected = {e.key for e in fresh_store.pending()}
    # 60 notices to 110, 60 to requesters, and for the open case a call-outcome deadline
    # and a requester notice ("已电话通知车主挪车")
    assert len(expected) == 122
    create_effect_log(fresh_url)
    with SPAWN.Pool(4) as pool:
        ran = pool.starmap(outbox_worker, [(fresh_url, KEY_1, f"w{i}") for i in range(4)])
    with fresh_store.engine.connect() as conn:
        log = conn.execute(sa.text(f"SELECT effect_key, worker FROM {EFFECT_LOG}")).all()
    counts = Counter(key for key, _ in log)
    assert set(counts) == expected
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]
    assert sum(ran) == len(expected)
    assert list(fresh_store.pending()) == []


def open_located(app: MoveCar, n: int) -> list[str]:
    ids = []
    for i in range(n):
        case_id = app.open_case(
            plate="苏D12345", location=f"路口 {i}", requester_phone="13800001111"
        )
        app.locate_owner(case_id)
        ids.append(case_id)
    return ids


def check_consistent(store: SqlStore, case_ids: list[str], done: Counter[str]) -> None:
    placed = outcomes = 0
    with store.engine.connect() as conn:
        for case_id in case_ids:
            versions = conn.execute(
                sa.select(t.events.c.version)
                .where(t.events.c.case_id == case_id)
                .order_by(t.events.c.version)
            ).scalars()
            assert list(versions) == list(range(1, len(list(store.load(case_id))) + 1))
    for case_id in case_ids:
        events = store.load(case_id)
        record = fold(events)
        row = store.state_row(case_id)
        assert row is not None
        assert (row["state"], row["version"]) == (record.state.value, record.version)
        placed += sum(type(e) is OwnerCallPlaced for e in events)
        outcomes += sum(type(e) is CallOutcomeRecorded for e in events)
    # No lost update: every command that returned success left exactly its event.
    assert (placed, outcomes) == (done["call_owner"], done["record_call_outcome"])
    result = verify(store)
    assert result.ok, result.findings


@pytest.mark.parametrize("backend", ["sqlite", *SERVERS], indirect=True)
def test_sixteen_threads_conflicting_commands(
    fresh_store: SqlStore, fresh_url: str, clock: ManualClock
) -> None:
    case_ids = open_located(app_on(fresh_store, clock), 6)
    totals: Counter[str] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def run(seed: int) -> None:
        barrier.wait()
        done = command_worker(fresh_url, KEY_1, case_ids, 12, seed)
        with lock:
            totals.update(done)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert totals["call_owner"] > 0 and totals["record_call_outcome"] > 0
    assert totals["conflicts_retried"] > 0  # the writers really did collide
    check_consistent(fresh_store, case_ids, totals)


@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_four_processes_conflicting_commands(
    fresh_store: SqlStore, fresh_url: str, clock: ManualClock
) -> None:
    case_ids = open_located(app_on(fresh_store, clock), 5)
    with SPAWN.Pool(4) as pool:
        results = pool.starmap(
            command_worker, [(fresh_url, KEY_1, case_ids, 25, seed) for seed in range(4)]
        )
    totals: Counter[str] = Counter()
    for done in results:
        totals.update(done)
    assert totals["call_owner"] > 0 and totals["record_call_outcome"] > 0
    assert totals["conflicts_retried"] > 0  # the writers really did collide
    check_consistent(fresh_store, case_ids, totals)


@pytest.mark.slow
def test_sigkilled_sqlite_writer_leaves_no_partial_command(databases: Databases) -> None:
    url = databases.new("sqlite")
    for round_ in range(3):
        proc = SPAWN.Process(target=crash_writer, args=(url, KEY_1, round_))
        proc.start()
        deadline = time.monotonic() + 20
        engine = make_engine(url)
        # Let it write for a while (the first round also pays for interpreter start-up).
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                n = conn.execute(sa.select(sa.func.count()).select_from(t.events)).scalar_one()
            if n >= 60 * (round_ + 1):
                break
            time.sleep(0.05)
        time.sleep(0.05 + 0.07 * round_)
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        assert proc.exitcode == -signal.SIGKILL
        engine.dispose()
        store = SqlStore(make_engine(url), KeyRing([("k1", KEY_1)]))
        result = verify(store)  # chains verify; every state row is the fold of its events
        assert result.ok, result.findings
        for case_id in store.case_ids():
            record = fold(store.load(case_id))
            # A CaseUnresolved is written with the last unanswered outcome, never apart.
            # (A third call that was answered leaves the case open, waiting for the move.)
            unanswered = record.last_outcome is not None and not record.last_outcome.answered
            assert not (record.attempts == 3 and record.call_in_flight is None and unanswered
                        and record.state.value == "owner_called"), case_id  # fmt: skip
        store.engine.dispose()
