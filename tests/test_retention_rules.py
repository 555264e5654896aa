"""The pure retention rules of 二(四) "所有移车服务数据及电话录音资料，必须保存 3 年",
for all times."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from movecar_core import (
    PURGE_CLOCK_SKEW,
    ManualClock,
    PurgeTimeRefused,
    add_years,
    purge_time,
    retention_due,
)
from movecar_core.calendar import SHANGHAI

ZONES = st.sampled_from([SHANGHAI, dt.UTC, dt.timezone(dt.timedelta(hours=-5))])
TIMES = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2090, 12, 31), timezones=ZONES
)
BEYOND = st.timedeltas(
    min_value=PURGE_CLOCK_SKEW + dt.timedelta(microseconds=1), max_value=dt.timedelta(days=36_600)
)


@given(wall=TIMES, ahead=BEYOND, zone=ZONES)
def test_for_all_now_beyond_the_skew_the_purge_is_refused(
    wall: dt.datetime, ahead: dt.timedelta, zone: dt.tzinfo
) -> None:
    with pytest.raises(PurgeTimeRefused, match="later than the clock"):
        purge_time((wall + ahead).astimezone(zone), ManualClock(wall))


@given(
    wall=TIMES, back=st.timedeltas(min_value=-PURGE_CLOCK_SKEW, max_value=dt.timedelta(days=9000))
)
def test_within_the_skew_the_purge_runs_as_of_the_earlier_time(
    wall: dt.datetime, back: dt.timedelta
) -> None:
    now = wall - back
    at = purge_time(now, ManualClock(wall))
    assert at == min(now, wall) and at <= wall  # never ahead of the clock


@given(wall=TIMES)
def test_naive_times_are_refused_and_none_is_the_clock(wall: dt.datetime) -> None:
    clock = ManualClock(wall)
    assert purge_time(None, clock) == wall
    for naive in (wall.replace(tzinfo=None), wall.replace(tzinfo=None) - dt.timedelta(days=1)):
        with pytest.raises(PurgeTimeRefused, match="timezone-aware"):
            purge_time(naive, clock)
    with pytest.raises(PurgeTimeRefused):
        purge_time(wall.date(), clock)


@given(closed=TIMES)
def test_due_exactly_three_calendar_years_after_closing_never_sooner(closed: dt.datetime) -> None:
    due = add_years(closed, 3)
    assert retention_due(closed, due, 3)
    assert not retention_due(closed, due - dt.timedelta(microseconds=1), 3)
    assert due - closed >= dt.timedelta(days=3 * 365)  # never shortened (29 Feb -> 1 Mar)
    local = closed.astimezone(SHANGHAI)
    assert (due.year, due.month) == (local.year + 3, local.month) or (
        (local.month, local.day, due.month, due.day) == (2, 29, 3, 1)
    )
