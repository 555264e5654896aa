"""Requester limits in SQL (migration 0007) on SQLite, PostgreSQL and MariaDB: the contract
suite, the blind index, key rotation, the report's seal, the audit, the migration."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlsupport import KEY_1, KEY_2

from movecar_adapters.crypto import KeyRing
from movecar_adapters.sql import SqlStore, downgrade, head_revision, make_engine, upgrade, verify
from movecar_adapters.sql import schema as t
from movecar_adapters.sql.requesters import PURPOSE
from movecar_core.app import MoveCar
from movecar_core.clock import ManualClock
from movecar_core.memory import InMemoryNotifier, InMemoryTelephony, InMemoryVehicleRegistry
from movecar_core.requesters import (
    RefusalCounts,
    RequesterBlocked,
    RequesterPolicy,
    RequestLimitReached,
)
from movecar_core.settlement import ServiceMonth
from movecar_core.testing.requester_contracts import (
    SHANGHAI,
    RequesterEngine,
    RequesterStoreContract,
    fresh_numbers,
)

APRIL = ServiceMonth(2024, 4)


def _engine_on(store: SqlStore, clock: ManualClock) -> MoveCar:
    return MoveCar(
        store=store,
        registry=InMemoryVehicleRegistry(),
        telephony=InMemoryTelephony(clock=clock),
        notifier=InMemoryNotifier(),
        clock=clock,
    )


@pytest.fixture
def engine(fresh_url: str) -> Iterator[sa.Engine]:
    made = make_engine(fresh_url)
    yield made
    made.dispose()


class TestSqlRequesterLimits(RequesterStoreContract):
    """The suite on a database of its own per test (examples share it, each with numbers
    of its own)."""

    @pytest.fixture
    def requester_engine(self, engine: sa.Engine, keys: KeyRing) -> RequesterEngine:
        def build(policy: RequesterPolicy, clock: ManualClock) -> MoveCar:
            store = SqlStore(engine, keys, clock=clock, requesters=policy, check_schema=False)
            return _engine_on(store, clock)

        return build


def _limited(
    engine: sa.Engine, keys: KeyRing, clock: ManualClock, policy: RequesterPolicy
) -> tuple[MoveCar, SqlStore]:
    store = SqlStore(engine, keys, clock=clock, requesters=policy)
    return _engine_on(store, clock), store


def _all_text(engine: sa.Engine) -> str:
    """Every value of every table of the store, as text."""
    parts: list[str] = []
    with engine.connect() as conn:
        for table in t.metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                parts.extend(str(v) for v in row)
    return "\n".join(parts)


def test_no_number_is_stored_to_count_or_block_it(engine: sa.Engine, keys: KeyRing) -> None:
    clock = ManualClock(dt.datetime(2025, 3, 3, 9, 0, tzinfo=SHANGHAI))
    mc, store = _limited(engine, keys, clock, RequesterPolicy())
    counted, blocked = "13812340001", "13812340002"
    mc.open_case(plate="苏D12345", location="x", requester_phone=counted)
    store.block_requester(blocked, reason="恶意", actor="sup-1")
    with pytest.raises(RequesterBlocked):
        mc.open_case(plate="苏D12345", location="x", requester_phone=blocked)
    text = _all_text(engine)
    for number in (counted, blocked):
        assert number not in text and number[3:] not in text
        assert hashlib.sha256(number.encode()).hexdigest() not in text  # no plain hash
    with engine.connect() as conn:
        indexes = set(conn.execute(sa.select(t.requester_counts.c.requester_index)).scalars())
        block = conn.execute(sa.select(t.requester_blocks)).one()
    assert indexes == {keys.blind_index(counted, PURPOSE)}
    assert block.requester_index == keys.blind_index(blocked, PURPOSE)
    assert block.masked == "138****0002" and block.phone.startswith("~1:k1:")
    # another key gives other indexes: an index tells nothing without its key
    other = KeyRing([("k2", KEY_2)])
    assert other.blind_index(counted, PURPOSE) not in indexes
    mc.close()


def test_key_rotation_keeps_the_block_list_and_the_counts(engine: sa.Engine, keys: KeyRing) -> None:
    clock = ManualClock(dt.datetime(2025, 3, 3, 9, 0, tzinfo=SHANGHAI))
    policy = RequesterPolicy(per_day=2, per_month=None)
    mc, store = _limited(engine, keys, clock, policy)
    counted, blocked = "13812340011", "13812340012"
    mc.open_case(plate="苏D12345", location="x", requester_phone=counted)
    store.block_requester(blocked, reason="恶意", actor="sup-1")
    mc.close()
    both = KeyRing([("k2", KEY_2), ("k1", KEY_1)])
    mc, store = _limited(engine, both, clock, policy)
    assert store.rotation_pending() >= 1  # the block list's row among them
    # the count under k1 still counts under the ring with k2 first
    mc.open_case(plate="苏D12345", location="x", requester_phone=counted)
    with pytest.raises(RequestLimitReached):
        mc.open_case(plate="苏D12345", location="x", requester_phone=counted)
    store.rotate_keys()
    assert store.rotation_pending() == 0
    mc.close()
    mc, store = _limited(engine, KeyRing([("k2", KEY_2)]), clock, policy)  # k1 dropped
    with pytest.raises(RequesterBlocked):
        mc.open_case(plate="苏D12345", location="x", requester_phone=blocked)
    assert [b.masked for b in store.blocked_requesters()] == ["138****0012"]
    store.unblock_requester(blocked, reason="误判", actor="sup-2")
    mc.open_case(plate="苏D12345", location="x", requester_phone=blocked)
    mc.close()


def _april_with_refusals(engine: sa.Engine, keys: KeyRing) -> tuple[SqlStore, ManualClock]:
    clock = ManualClock(dt.datetime(2024, 4, 30, 20, 0, tzinfo=SHANGHAI))
    mc, store = _limited(engine, keys, clock, RequesterPolicy(per_day=1, per_month=3))
    mc.open_case(plate="苏D12345", location="x", requester_phone="13812340021")
    with pytest.raises(RequestLimitReached):
        mc.open_case(plate="苏D12345", location="x", requester_phone="13812340021")
    clock.set(dt.datetime(2024, 5, 2, 9, 0, tzinfo=SHANGHAI))
    assert mc.settle_month(APRIL).report.refusals == RefusalCounts(daily_limit=1)
    mc.close()
    return store, clock


def test_the_audit_finds_a_changed_refusal_count(engine: sa.Engine, keys: KeyRing) -> None:
    store, _ = _april_with_refusals(engine, keys)
    assert verify(store).ok, verify(store).findings
    with engine.begin() as conn:  # the refusals of a reported month, changed afterwards
        conn.execute(t.requester_refusals.update().values(refused=0))
    assert any("refused requests" in f.why for f in verify(store).findings)
    with engine.begin() as conn:
        conn.execute(t.requester_refusals.update().values(refused=1))
        conn.execute(t.monthly_reports.update().values(refused_daily_limit=0))
    assert any("does not match its hash" in f.why for f in verify(store).findings)
    with engine.begin() as conn:  # dropped from the report altogether
        conn.execute(
            t.monthly_reports.update().values(
                refused_blocked=None, refused_daily_limit=None, refused_monthly_limit=None
            )
        )
    assert not verify(store).ok


def test_a_report_without_refusals_survives_a_downgrade_and_verifies(
    engine: sa.Engine, keys: KeyRing
) -> None:
    clock = ManualClock(dt.datetime(2024, 4, 30, 20, 0, tzinfo=SHANGHAI))
    mc, store = _limited(engine, keys, clock, RequesterPolicy())
    mc.open_case(plate="苏D12345", location="x", requester_phone="13812340031")
    clock.set(dt.datetime(2024, 5, 2, 9, 0, tzinfo=SHANGHAI))
    sealed = mc.settle_month(APRIL).report
    mc.close()
    assert sealed.refusals is None
    assert downgrade(engine, "0006_incidents", keys=keys) == "0006_incidents"
    if engine.dialect.name not in ("mysql", "mariadb"):  # MariaDB keeps them (DDL commits)
        assert "mc_requester_counts" not in sa.inspect(engine).get_table_names()
    upgrade(engine, keys=keys)
    assert verify(store).ok
    assert store.report(APRIL) == sealed


def test_a_downgrade_never_drops_sealed_refusals(engine: sa.Engine, keys: KeyRing) -> None:
    store, _ = _april_with_refusals(engine, keys)
    with pytest.raises(RuntimeError, match="refused requests"):
        downgrade(engine, "0006_incidents", keys=keys)
    from movecar_adapters.sql import current_revision

    assert current_revision(engine) == head_revision()
    assert verify(store).ok


def test_the_purge_drops_counts_no_request_can_count_against(
    engine: sa.Engine, keys: KeyRing
) -> None:
    clock = ManualClock(dt.datetime(2025, 1, 20, 9, 0, tzinfo=SHANGHAI))
    mc, store = _limited(engine, keys, clock, RequesterPolicy())
    mc.open_case(plate="苏D12345", location="x", requester_phone="13812340041")
    clock.set(dt.datetime(2025, 2, 27, 9, 0, tzinfo=SHANGHAI))
    mc.open_case(plate="苏D12345", location="x", requester_phone="13812340041")
    clock.set(dt.datetime(2025, 3, 5, 9, 0, tzinfo=SHANGHAI))
    store.purge()
    with engine.connect() as conn:
        periods = sorted(conn.execute(sa.select(t.requester_counts.c.period)).scalars())
    assert periods == ["2025-02", "2025-02-27"]  # January's are gone, February's kept
    mc.close()


def test_many_seats_racing_on_one_number_get_exactly_the_limit(
    engine: sa.Engine, keys: KeyRing
) -> None:
    """16 seats at once, 1 request a day: one opens, 15 are refused and counted."""
    from movecar_core.testing.requester_contracts import _race

    clock = ManualClock(dt.datetime(2025, 3, 3, 9, 0, tzinfo=SHANGHAI))
    mc, store = _limited(engine, keys, clock, RequesterPolicy(per_day=1, per_month=None))
    (phone,) = fresh_numbers(1)
    before = store.requester_refusals(ServiceMonth(2025, 3)).daily_limit
    outcomes = _race(mc, phone, seats=16)
    assert sorted(outcomes) == ["opened"] + ["refused"] * 15, outcomes
    assert store.requester_refusals(ServiceMonth(2025, 3)).daily_limit - before == 15
    assert store.count_opened(*ServiceMonth(2025, 3).bounds()) == 1
    mc.close()
