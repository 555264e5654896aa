"""Retention that cannot be turned against the records: the same cases on every store.

二(四) "所有移车服务数据及电话录音资料，必须保存 3 年". After a purge only a tombstone without
personal data remains: reopening with the ``command_id`` that opened the case, and every
command or query on it, raise CasePurged (never the purged case's id as if it still
held anything); a purge as of a time later than the store's clock beyond the skew is
refused and deletes nothing; a case is purged exactly when 3 calendar years have passed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from movecar_core import (
    PURGE_CLOCK_SKEW,
    CallOutcome,
    CasePurged,
    EscalationReason,
    ManualClock,
    MoveCar,
    PurgeTimeRefused,
    add_years,
)

Build = Callable[[], MoveCar]
OWNERS = {"苏D12345": "13912345678"}
PLATE, PLACE, REQUESTER = "苏D12345", "湖塘镇花园街 8 号", "13800001111"


def purge(mc: MoveCar, **kwargs: Any) -> tuple[str, ...]:
    """Purge through the store's own API (the SQL store returns a PurgeResult)."""
    store: Any = mc.store
    result = store.purge(**kwargs)
    return tuple(getattr(result, "cases", result))


def clock_of(mc: MoveCar) -> ManualClock:
    assert isinstance(mc.clock, ManualClock)
    return mc.clock


def closed_case(mc: MoveCar, command_id: str) -> str:
    """A case opened with ``command_id``, located, called, then cancelled; its id."""
    case_id = mc.open_case(
        plate=PLATE, location=PLACE, requester_phone=REQUESTER, command_id=command_id
    )
    mc.locate_owner(case_id, agent_id="seat-1")
    call = mc.call_owner(case_id, agent_id="seat-1")
    mc.record_call_outcome(case_id, call.call_id, CallOutcome.NO_ANSWER)
    mc.cancel(case_id, note="求助人撤回")
    return case_id


def purged_case(mc: MoveCar, command_id: str) -> str:
    case_id = closed_case(mc, command_id)
    closed_at = mc.record(case_id).closed_at
    assert closed_at is not None
    clock_of(mc).set(add_years(closed_at, 3))
    assert case_id in purge(mc)
    return case_id


def no_personal_data(message: str) -> None:
    for secret in (PLATE, "12345", PLACE, "花园街", REQUESTER, "13912345678"):
        assert secret not in message, secret


#: Every command and query of the engine on an existing case id.
ON_A_CASE: dict[str, Callable[[MoveCar, str], object]] = {
    "locate_owner": lambda mc, c: mc.locate_owner(c, agent_id="seat-1"),
    "call_owner": lambda mc, c: mc.call_owner(c, agent_id="seat-1"),
    "record_call_outcome": lambda mc, c: mc.record_call_outcome(c, "call-1", "answered_agreed"),
    "confirm_moved": lambda mc, c: mc.confirm_moved(c),
    "dispute": lambda mc, c: mc.dispute(c, note="不是我的车"),
    "cancel": lambda mc, c: mc.cancel(c, note="撤回"),
    "escalate": lambda mc, c: mc.escalate(c, EscalationReason.OTHER, note="转警"),
    "history": lambda mc, c: mc.history(c),
    "record": lambda mc, c: mc.record(c),
    "case": lambda mc, c: mc.case(c),
    "requester_view": lambda mc, c: mc.requester_view(c),
}


class TombstoneCases:
    """Needs fixture ``build``: a fresh engine (any store that purges) on a ManualClock,
    knowing :data:`OWNERS`, whose store has no other case."""

    max_examples = 40

    def test_reopening_a_purged_case_is_refused_never_answered_with_its_id(
        self, build: Build
    ) -> None:
        mc = build()
        cid = f"open-{uuid.uuid4().hex}"
        case_id = purged_case(mc, cid)
        for args in (
            {"plate": PLATE, "location": PLACE, "requester_phone": REQUESTER},  # a true repeat
            {"plate": "苏D54321", "location": "别处", "requester_phone": "13800002222"},
        ):
            with pytest.raises(CasePurged) as info:
                mc.open_case(command_id=cid, **args)
            message = str(info.value)
            assert case_id in message and cid in message and "二(四)" in message, message
            assert info.value.case_id == case_id and info.value.command_id == cid
            no_personal_data(message)
        # A new command id opens a new case, as always.
        fresh = mc.open_case(
            plate=PLATE, location=PLACE, requester_phone=REQUESTER, command_id=f"{cid}-2"
        )
        assert fresh != case_id and mc.case(fresh).state.value == "received"

    @pytest.mark.parametrize("what", sorted(ON_A_CASE))
    def test_every_command_and_query_on_a_purged_case_is_refused(
        self, build: Build, what: str
    ) -> None:
        mc = build()
        case_id = purged_case(mc, f"open-{uuid.uuid4().hex}")
        with pytest.raises(CasePurged) as info:
            ON_A_CASE[what](mc, case_id)
        assert case_id in str(info.value) and "二(四)" in str(info.value)
        assert info.value.command_id is None
        no_personal_data(str(info.value))

    def test_the_store_keeps_the_tombstone(self, build: Build) -> None:
        mc = build()
        case_id = closed_case(mc, f"open-{uuid.uuid4().hex}")
        history = list(mc.history(case_id))
        opened_at = mc.record(case_id).opened_at
        month = (opened_at - dt.timedelta(days=1), opened_at + dt.timedelta(days=1))
        counted: Any = mc.store
        before = counted.count_opened(*month)
        clock_of(mc).set(add_years(history[-1].at, 3))
        assert purge(mc) == (case_id,)
        with pytest.raises(CasePurged):
            mc.store.load(case_id)
        with pytest.raises(CasePurged):  # nothing is appended, not even a new opening
            mc.store.append(case_id, history[:1], expected_version=0)
        with pytest.raises(CasePurged):
            mc.store.append(case_id, history[1:2], expected_version=len(history))
        assert case_id not in set(mc.store.case_ids())
        # The purged case was served: it still counts in the month's volume.
        assert counted.count_opened(*month) == before
        assert purge(mc) == ()  # purging again finds nothing

    def test_purged_exactly_when_three_calendar_years_have_passed(self, build: Build) -> None:
        mc = build()
        case_id = closed_case(mc, f"open-{uuid.uuid4().hex}")
        still_open = mc.open_case(plate=PLATE, location=PLACE, requester_phone=REQUESTER)
        closed_at = mc.record(case_id).closed_at
        assert closed_at is not None
        due = add_years(closed_at, 3)
        clock_of(mc).set(due - dt.timedelta(microseconds=1))
        assert purge(mc) == () and purge(mc, dry_run=True) == ()
        clock_of(mc).set(due)
        assert purge(mc, dry_run=True) == (case_id,)
        assert len(mc.history(case_id)) == 5  # a dry run deletes nothing
        assert purge(mc) == (case_id,)
        clock_of(mc).advance(days=3650)
        assert purge(mc) == ()  # an open case is never purged
        assert mc.case(still_open).state.value == "received"

    def test_a_purge_as_of_a_forged_future_is_refused_and_deletes_nothing(
        self, build: Build
    ) -> None:
        mc = build()
        case_id = closed_case(mc, f"open-{uuid.uuid4().hex}")
        history = mc.history(case_id)
        closed_at = mc.record(case_id).closed_at
        assert closed_at is not None
        clock = clock_of(mc)
        clock.set(add_years(closed_at, 3) - dt.timedelta(days=1))  # a day short of 3 years

        @settings(
            max_examples=self.max_examples,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(
            ahead=st.timedeltas(
                min_value=PURGE_CLOCK_SKEW + dt.timedelta(microseconds=1),
                max_value=dt.timedelta(days=3660),
            ),
            dry_run=st.booleans(),
            zone=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=8))]),
        )
        def check(ahead: dt.timedelta, dry_run: bool, zone: dt.tzinfo) -> None:
            forged = (clock.now() + ahead).astimezone(zone)
            with pytest.raises(PurgeTimeRefused, match="later than the clock"):
                purge(mc, now=forged, dry_run=dry_run)
            assert mc.history(case_id) == history

        check()
        naive = (clock.now() + dt.timedelta(days=2)).replace(tzinfo=None)
        with pytest.raises(PurgeTimeRefused, match="timezone-aware"):
            purge(mc, now=naive)
        with pytest.raises(PurgeTimeRefused, match="timezone-aware"):
            purge(mc, now=clock.now().replace(tzinfo=None) - dt.timedelta(days=1))
        # Within the skew the purge runs, but as of the clock: a minute short of 3 years
        # by the clock is short, whatever ``now`` says.
        clock.set(add_years(closed_at, 3) - dt.timedelta(minutes=1))
        assert purge(mc, now=clock.now() + PURGE_CLOCK_SKEW) == ()
        assert mc.history(case_id) == history
        clock.advance(minutes=1)
        assert purge(mc, now=clock.now() + PURGE_CLOCK_SKEW) == (case_id,)
