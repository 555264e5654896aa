"""The record kept in each state row (migration 0005): what a command reads instead of the
history, checked by the audit against the fold of the events, never trusted beyond it."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from sqlsupport import KEY_1, KEY_2

from movecar_adapters.crypto import KeyRing, place
from movecar_adapters.sql import SqlStore, downgrade, head_revision, upgrade, verify
from movecar_adapters.sql import schema as t
from movecar_adapters.sql.events import RECORD_FIELD, RECORD_TYPE
from movecar_core.app import MoveCar
from movecar_core.case import CaseState, OwnerCallPlaced
from movecar_core.clock import ManualClock
from movecar_core.codec import encode_record
from movecar_core.errors import CasePurged, ConcurrencyConflict
from movecar_core.ledger import BackdatedRecord
from movecar_core.machine import fold
from movecar_core.memory import InMemoryTelephony, InMemoryVehicleRegistry
from movecar_core.outbox import EffectPolicy
from movecar_core.testing.contracts import sample_history

PLATE, OWNER = "苏D12345", "13912345678"


def facade(store: SqlStore, clock: ManualClock) -> tuple[MoveCar, InMemoryTelephony]:
    telephony = InMemoryTelephony()
    app = MoveCar(
        store=store,
        registry=InMemoryVehicleRegistry({PLATE: OWNER}),
        telephony=telephony,
        clock=clock,
    )
    return app, telephony


def folded(store: SqlStore, case_id: str) -> Any:
    with store.engine.connect() as conn:
        return conn.execute(
            sa.select(t.cases.c.folded).where(t.cases.c.case_id == case_id)
        ).scalar_one()


def set_folded(store: SqlStore, case_id: str, value: str | None) -> None:
    with store.engine.begin() as conn:
        conn.execute(t.cases.update().where(t.cases.c.case_id == case_id).values(folded=value))


@pytest.fixture
def located(fresh_store: SqlStore, clock: ManualClock) -> tuple[MoveCar, str]:
    app, _ = facade(fresh_store, clock)
    case_id = app.open_case(plate=PLATE, location="湖塘镇", requester_phone="13800001111")
    app.locate_owner(case_id, agent_id="seat-1")
    return app, case_id


def test_every_append_keeps_the_fold_sealed_in_its_place(
    fresh_store: SqlStore, located: tuple[MoveCar, str]
) -> None:
    _, case_id = located
    sealed = folded(fresh_store, case_id)
    assert sealed.startswith("~1:k1:")
    assert OWNER not in sealed and "13800001111" not in sealed and PLATE not in sealed
    where = place(case_id, 2, RECORD_TYPE, RECORD_FIELD)
    assert fresh_store.keys.decrypt(sealed, where) == encode_record(fold(fresh_store.load(case_id)))
    events, record = fresh_store.load_folded(case_id)
    assert record == fold(events) and len(events) == 2


@pytest.mark.parametrize("backend", ["sqlite"])  # traced with sqlite3's trace callback
def test_a_command_reads_one_row_and_no_event(fresh_url: str, keys: KeyRing) -> None:
    """On SQLite (the statements are traced): without a command id, a command never reads
    the events; with one, it reads them to find an earlier run of the command."""
    from movecar_adapters.sql import make_engine

    engine = make_engine(fresh_url)
    seen: list[str] = []
    sa.event.listen(engine, "connect", lambda dbapi, _: dbapi.set_trace_callback(seen.append))
    clock = ManualClock()
    # no requester notices: each is one more transaction after the command (counted below)
    store = SqlStore(engine, keys, clock=clock, effects=EffectPolicy(notify_requester=False))
    app, telephony = facade(store, clock)
    case_id = app.open_case(plate=PLATE, location="湖塘镇", requester_phone="13800001111")
    app.locate_owner(case_id, agent_id="seat-1")
    seen.clear()
    call = app.call_owner(case_id, agent_id="seat-1")
    assert telephony.calls[-1].callee == OWNER
    assert not [s for s in seen if "FROM mc_events" in s]
    assert sum(s.startswith("COMMIT") for s in seen) == 1
    seen.clear()
    app.record_call_outcome(case_id, call.call_id, "answered_agreed", command_id="cmd-1")
    assert [s for s in seen if "FROM mc_events" in s]  # a command id looks for its first run
    app.record_call_outcome(case_id, call.call_id, "answered_agreed", command_id="cmd-1")
    assert store.version(case_id) == 4  # the repeat wrote nothing
    engine.dispose()


def test_a_case_without_its_record_is_folded_then_kept(
    fresh_store: SqlStore, clock: ManualClock, located: tuple[MoveCar, str]
) -> None:
    """As cases written before 0005 and bulk imports: the events are folded, and the next
    append keeps the record."""
    app, case_id = located
    set_folded(fresh_store, case_id, None)
    events, record = fresh_store.load_folded(case_id)
    assert record == fold(events) and record.state is CaseState.OWNER_LOCATED
    assert record.owner_phone == OWNER  # folded from the opened events
    app.call_owner(case_id, agent_id="seat-1")
    assert folded(fresh_store, case_id) is not None
    assert fresh_store.load_folded(case_id)[1] == fold(fresh_store.load(case_id))
    assert verify(fresh_store).ok


def test_a_record_sealed_with_the_keys_but_not_the_fold_is_found(
    fresh_store: SqlStore, located: tuple[MoveCar, str]
) -> None:
    """Whoever holds the keys can seal any record in the right place: the audit compares it
    with the fold of the events (as it does the state row's columns)."""
    _, case_id = located
    record = fresh_store.load_folded(case_id)[1]
    assert record is not None
    lie = attrs.evolve(record, owner_phone="13900000000")
    where = place(case_id, record.version, RECORD_TYPE, RECORD_FIELD)
    set_folded(fresh_store, case_id, fresh_store.keys.encrypt(encode_record(lie), where))
    result = verify(fresh_store)
    assert result.tampered_cases == {case_id}
    assert [f.why for f in result.findings] == ["kept record is not the fold of its events"]


def test_rotation_drops_records_kept_under_an_older_key(
    fresh_store: SqlStore, clock: ManualClock, located: tuple[MoveCar, str]
) -> None:
    app, case_id = located
    both = SqlStore(fresh_store.engine, KeyRing([("k2", KEY_2), ("k1", KEY_1)]), clock=clock)
    assert both.rotation_pending() == 3  # two phones and the kept record
    assert both.rotate_keys() == 2  # the phones, re-encrypted
    assert folded(fresh_store, case_id) is None and both.rotation_pending() == 0
    new_only = SqlStore(fresh_store.engine, KeyRing([("k2", KEY_2)]), clock=clock)
    assert verify(new_only).ok
    app, telephony = facade(new_only, clock)
    app.call_owner(case_id, agent_id="seat-1")
    assert telephony.calls[-1].callee == OWNER
    assert folded(new_only, case_id).startswith("~1:k2:")
    assert verify(new_only).ok


def test_a_purge_drops_the_record(fresh_store: SqlStore, clock: ManualClock) -> None:
    case_id = "kept-then-purged"
    fresh_store.append(case_id, sample_history(case_id), expected_version=0)
    assert folded(fresh_store, case_id) is not None
    clock.advance(dt.timedelta(days=365 * 5))  # closed in 2025, purged after 3 whole years
    assert fresh_store.purge().cases == (case_id,)
    assert folded(fresh_store, case_id) is None
    assert verify(fresh_store).ok
    set_folded(fresh_store, case_id, "~1:k1:AAAA")  # a record written back into a tombstone
    assert [f.why for f in verify(fresh_store).findings] == [
        "purged, yet its state row keeps its record"
    ]


def test_downgrade_drops_the_records_and_upgrade_keeps_them_again(
    fresh_store: SqlStore, clock: ManualClock, located: tuple[MoveCar, str]
) -> None:
    _, case_id = located
    engine = fresh_store.engine
    assert downgrade(engine, "0004_lookup_projection") == "0004_lookup_projection"
    with engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("mc_cases")}
        if engine.dialect.name == "mysql":  # emptied, not dropped (see the migration)
            assert conn.execute(sa.text("SELECT count(folded) FROM mc_cases")).scalar() == 0
        else:
            assert "folded" not in columns
    assert upgrade(engine) == head_revision()
    assert folded(fresh_store, case_id) is None
    store = SqlStore(engine, fresh_store.keys, clock=clock)
    app, telephony = facade(store, clock)
    app.call_owner(case_id, agent_id="seat-1")
    assert telephony.calls[-1].callee == OWNER
    assert folded(store, case_id) is not None
    assert verify(store).ok


# --- the append that swaps the state row it read (SQLite) ---------------------------------


def test_a_row_changed_since_it_was_read_is_a_conflict_and_nothing_is_written(
    fresh_store: SqlStore, clock: ManualClock, located: tuple[MoveCar, str]
) -> None:
    """Another writer (here another store on the same database) appends between this
    store's read and its append: the append is refused, and the engine decides again."""
    _app, case_id = located
    other = SqlStore(fresh_store.engine, fresh_store.keys, clock=clock)
    _events, record = fresh_store.load_folded(case_id)
    assert record is not None
    facade(other, clock)[0].call_owner(case_id, agent_id="seat-2")
    placed = other.load(case_id)[2]
    with pytest.raises(ConcurrencyConflict):
        fresh_store.append_folded(case_id, [attrs.evolve(placed, agent_id="seat-1")], 2)
    assert len(fresh_store.load(case_id)) == 3
    assert fresh_store.load_folded(case_id)[1] == fold(other.load(case_id))
    assert verify(fresh_store).ok


def test_a_checkpoint_between_the_read_and_the_append_refuses_a_backdated_record(
    fresh_store: SqlStore, clock: ManualClock, located: tuple[MoveCar, str]
) -> None:
    from movecar_adapters.signing import SigningKey

    _, case_id = located
    fresh_store.load_folded(case_id)
    at = clock.now()
    clock.advance(minutes=1)
    fresh_store.checkpoint(SigningKey.generate())
    call = sample_history(case_id, at=at)[2]
    with pytest.raises(BackdatedRecord):
        fresh_store.append_folded(case_id, [call], 2)
    assert len(fresh_store.load(case_id)) == 2 and verify(fresh_store).ok
    # dated after the checkpoint, the same call is taken
    fresh_store.append_folded(case_id, [attrs.evolve(call, at=clock.now())], 2)
    assert len(fresh_store.load(case_id)) == 3 and verify(fresh_store).ok


def test_a_purge_between_the_read_and_the_append_wins(
    fresh_store: SqlStore, clock: ManualClock
) -> None:
    case_id = "read-then-purged"
    history = sample_history(case_id)
    fresh_store.append(case_id, history[:4], expected_version=0)
    fresh_store.load_folded(case_id)
    with fresh_store.engine.begin() as conn:  # as the purge leaves it (times aside)
        conn.execute(
            t.cases.update()
            .where(t.cases.c.case_id == case_id)
            .values(purged_at=clock.now(), folded=None, plate=None)
        )
    with pytest.raises(CasePurged):
        fresh_store.append_folded(case_id, history[4:], 4)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("backend", ["sqlite"])  # SQLite keeps a connection per thread
def test_a_forked_child_makes_its_own_connection(
    fresh_store: SqlStore, clock: ManualClock, located: tuple[MoveCar, str]
) -> None:
    """The command path's connection of a thread is never used across a fork: the child
    makes its own, and the parent's goes on."""
    app, case_id = located
    pid = os.fork()
    if pid == 0:  # the child: read and write through a connection of its own
        code = 1
        try:
            child_app, _ = facade(fresh_store, clock)
            child_app.call_owner(case_id, agent_id="seat-child")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    placed = fresh_store.load(case_id)[2]  # the child's call, seen by the parent
    assert isinstance(placed, OwnerCallPlaced) and placed.agent_id == "seat-child"
    app.record_call_outcome(case_id, placed.call_id, "answered_agreed")
    assert len(fresh_store.load(case_id)) == 4 and verify(fresh_store).ok
