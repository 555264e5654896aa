"""Requester limits on the in-memory store, the policy, the report's hash, configuration."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from movecar_adapters.config import ConfigError, load_settings
from movecar_adapters.connect import connect
from movecar_core import MoveCar
from movecar_core.clock import ManualClock
from movecar_core.errors import InvalidInput
from movecar_core.integrity import GENESIS
from movecar_core.memory import (
    InMemoryCaseStore,
    InMemoryCommandCentre,
    InMemoryNotifier,
    InMemorySeatReminders,
    InMemoryTelephony,
    InMemoryVehicleRegistry,
)
from movecar_core.reports import MonthlyReport, next_report, report_hash
from movecar_core.requesters import (
    BLOCK_LIST_ONLY,
    RefusalCounts,
    RefusalReason,
    RequesterPolicy,
    RequesterRefused,
    RequesterStore,
    RequestLimitReached,
    refusal,
)
from movecar_core.settlement import ServiceMonth
from movecar_core.testing.requester_contracts import (
    RequesterEngine,
    RequesterStoreContract,
)

SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def memory_engine(policy: RequesterPolicy, clock: ManualClock) -> MoveCar:
    return MoveCar(
        store=InMemoryCaseStore(clock=clock, requesters=policy),
        registry=InMemoryVehicleRegistry(),
        telephony=InMemoryTelephony(clock=clock),
        clock=clock,
        notifier=InMemoryNotifier(),
        command_centre=InMemoryCommandCentre(),
        reminders=InMemorySeatReminders(),
    )


class TestInMemoryRequesterLimits(RequesterStoreContract):
    @pytest.fixture
    def requester_engine(self) -> RequesterEngine:
        return memory_engine


def test_the_policy_defaults_are_12123s_and_bad_limits_are_refused() -> None:
    assert (RequesterPolicy().per_day, RequesterPolicy().per_month) == (3, 5)
    assert not BLOCK_LIST_ONLY.counts and RequesterPolicy(per_day=None).counts
    for bad in (0, -1, 10_001, True, 2.5, "3"):
        with pytest.raises(InvalidInput, match="per_day"):
            RequesterPolicy(per_day=bad)  # type: ignore[arg-type]


@given(
    per_day=st.one_of(st.none(), st.integers(1, 5)),
    per_month=st.one_of(st.none(), st.integers(1, 5)),
    blocked=st.booleans(),
    today=st.integers(1, 7),
    extra=st.integers(0, 7),
)
def test_refusal_checks_block_then_month_then_day(
    per_day: int | None, per_month: int | None, blocked: bool, today: int, extra: int
) -> None:
    policy = RequesterPolicy(per_day=per_day, per_month=per_month)
    got = refusal(policy, "138****0000", blocked=blocked, today=today, this_month=today + extra)
    if blocked:
        want: RefusalReason | None = RefusalReason.BLOCKED
    elif per_month is not None and today + extra > per_month:
        want = RefusalReason.MONTHLY_LIMIT
    elif per_day is not None and today > per_day:
        want = RefusalReason.DAILY_LIMIT
    else:
        want = None
    assert (None if got is None else got.reason) == want
    if got is not None:
        assert "138****0000" in str(got) and isinstance(got, RequesterRefused)


def test_the_documented_example_runs() -> None:
    mc = MoveCar.in_memory(requesters=RequesterPolicy(per_day=1, per_month=5))
    mc.open_case(plate="苏D12345", location="湖塘镇花园街", requester_phone="13800001111")
    with pytest.raises(RequestLimitReached) as refused:
        mc.open_case(plate="苏D67890", location="湖塘镇花园街", requester_phone="13800001111")
    assert (refused.value.reason, refused.value.masked) == ("daily_limit", "138****1111")
    assert "13800001111" not in str(refused.value)
    assert isinstance(mc.store, RequesterStore)


def test_a_report_without_refusals_hashes_as_before_and_with_them_seals_them() -> None:
    month = ServiceMonth(2025, 3)
    opened = [("case-a", "ab" * 32)]
    plain = next_report(None, month, opened)
    zero = next_report(None, month, opened, refusals=RefusalCounts())
    assert zero == plain and plain.refusals is None and plain.refused == RefusalCounts()
    # the hash of a report written before refusals were counted, as it was computed then
    assert plain.hash == report_hash(GENESIS, month, 1, 1, plain.digest)
    counted = next_report(None, month, opened, refusals=RefusalCounts(blocked=1))
    assert counted.hash != plain.hash and counted.refusals == RefusalCounts(1, 0, 0)
    assert counted.hash == report_hash(
        GENESIS, month, 1, 1, counted.digest, refusals=RefusalCounts(blocked=1)
    )
    for changed in (RefusalCounts(2, 0, 0), RefusalCounts(1, 1, 0), RefusalCounts(1, 0, 1)):
        assert counted.hash != report_hash(GENESIS, month, 1, 1, counted.digest, refusals=changed)
    # an old report still loads without the field
    assert MonthlyReport(month, 1, 1, plain.digest, GENESIS, plain.hash).refusals is None


def test_memory_keeps_only_the_counts_that_can_still_matter() -> None:
    clock = ManualClock(dt.datetime(2025, 1, 1, 9, 0, tzinfo=SHANGHAI))
    mc = memory_engine(RequesterPolicy(per_day=5, per_month=None), clock)
    store = mc.store
    assert isinstance(store, InMemoryCaseStore)
    for day in range(200):
        mc.open_case(plate="苏D12345", location="x", requester_phone=f"138{day:08d}")
        clock.advance(days=1)
    assert len(store._requester_book._counts) <= 4  # yesterday, today, their months


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_requesters_in_movecar_toml(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path / "a.toml", ""), environ={}).requesters is None
    empty = load_settings(write(tmp_path / "b.toml", "[requesters]\n"), environ={})
    assert empty.requesters == RequesterPolicy()
    off = load_settings(write(tmp_path / "c.toml", "[requesters]\nper_day = 0\n"), environ={})
    assert off.requesters == RequesterPolicy(per_day=None, per_month=5)
    for bad in ("per_day = -2", "per_month = 100000", 'per_day = "3"', "per_week = 2"):
        with pytest.raises(ConfigError, match="requesters"):
            load_settings(write(tmp_path / "d.toml", f"[requesters]\n{bad}\n"), environ={})


def test_connect_enforces_the_block_list_and_the_default_or_configured_limits(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    mc = connect("memory://", clock=clock, environ={}, config=write(tmp_path / "n.toml", ""))
    assert isinstance(mc.store, RequesterStore) and mc.store.requesters == RequesterPolicy()
    mc.store.block_requester("13900002222", reason="恶意", actor="sup-1")
    with pytest.raises(RequesterRefused):
        mc.open_case(plate="苏D12345", location="x", requester_phone="13900002222")
    for _ in range(RequesterPolicy().per_day):  # the default policy: 3 a day
        mc.open_case(plate="苏D12345", location="x", requester_phone="13800001111")
    with pytest.raises(RequestLimitReached):
        mc.open_case(plate="苏D12345", location="x", requester_phone="13800001111")
    off = connect(
        "memory://",
        clock=clock,
        environ={},
        config=write(tmp_path / "o.toml", "[requesters]\nper_day = 0\nper_month = 0\n"),
    )
    assert off.store.requesters == BLOCK_LIST_ONLY  # type: ignore[attr-defined]
    for _ in range(4):  # both limits turned off: the block list only
        off.open_case(plate="苏D12345", location="x", requester_phone="13800001111")
    limited = connect(
        "memory://",
        clock=clock,
        environ={},
        config=write(tmp_path / "l.toml", "[requesters]\nper_day = 1\n"),
    )
    limited.open_case(plate="苏D12345", location="x", requester_phone="13800001111")
    with pytest.raises(RequestLimitReached):
        limited.open_case(plate="苏D12345", location="x", requester_phone="13800001111")
    given = connect("memory://", clock=clock, environ={}, requesters=RequesterPolicy(per_day=2))
    assert given.store.requesters == RequesterPolicy(per_day=2)  # type: ignore[attr-defined]


def test_a_supervisors_desk_blocks_under_its_own_name_and_a_seat_may_not() -> None:
    from movecar_core.desk import Desk
    from movecar_core.roles import Actor, PermissionDenied

    clock = ManualClock()
    mc = memory_engine(RequesterPolicy(), clock)
    supervisor = Desk(mc, Actor("sup-wang", "supervisor"))
    supervisor.block_requester("13800001111", reason="恶意挪车")
    with pytest.raises(RequesterRefused):
        Desk(mc, Actor("seat-3", "agent")).open_case(
            plate="苏D12345", location="x", requester_phone="13800001111"
        )
    with pytest.raises(PermissionDenied):
        Desk(mc, Actor("seat-3", "agent")).unblock_requester("13800001111", reason="x")
    [change] = Desk(mc, Actor("110-desk", "command_centre")).block_history()
    assert (change.actor, change.masked) == ("sup-wang", "138****1111")
    assert supervisor.requester_usage("13800001111", clock.now().date()).blocked


def test_the_volume_report_shows_the_months_refusals() -> None:
    from movecar_core.volume import report_csv

    clock = ManualClock(dt.datetime(2024, 4, 30, 20, 0, tzinfo=SHANGHAI))
    mc = memory_engine(RequesterPolicy(per_day=1, per_month=5), clock)
    mc.open_case(plate="苏D12345", location="x", requester_phone="13800001111")
    for _ in range(2):
        with pytest.raises(RequestLimitReached):
            mc.open_case(plate="苏D12345", location="x", requester_phone="13800001111")
    clock.set(dt.datetime(2024, 5, 2, 9, 0, tzinfo=SHANGHAI))
    report = mc.volume_report(ServiceMonth(2024, 4))
    figures = {key: value for _, key, value in report.summary()}
    assert (figures["refused_blocked"], figures["refused_daily_limit"]) == (0, 2)
    assert figures["refused_monthly_limit"] == 0
    assert "超过每日申请次数".encode() in report_csv(report)
