"""The working-day calendar, art. 201/203 counting, and the generated holiday table."""

from __future__ import annotations

import datetime as dt
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from movecar_core import cn_holidays
from movecar_core.calendar import (
    CN_CALENDAR,
    SHANGHAI,
    DeadlineShift,
    WorkingDayCalendar,
    end_of_day,
    local_date,
)
from movecar_core.errors import CalendarYearNotCovered, InvalidInput, MoveCarError

ROOT = Path(__file__).resolve().parent.parent
D = dt.date
covered_days = st.dates(min_value=D(2004, 1, 1), max_value=D(2026, 11, 30))


def test_the_issue_facts() -> None:
    assert D(2025, 10, 11).weekday() == 5  # a Saturday ...
    assert CN_CALENDAR.is_working_day(D(2025, 10, 11))  # ... and a make-up working day
    assert CN_CALENDAR.add_working_days(D(2025, 9, 30), 5) == D(2025, 10, 14)


@pytest.mark.parametrize(
    ("day", "working", "name"),
    [
        (D(2025, 9, 28), True, "国庆节"),  # Sunday, make-up working day
        (D(2025, 10, 1), False, "国庆节"),
        (D(2025, 10, 8), False, "国庆节"),  # 中秋 merged into the National Day break
        (D(2025, 10, 9), True, None),
        (D(2025, 10, 18), False, None),  # an ordinary Saturday
        (D(2025, 10, 20), True, None),  # an ordinary Monday
        (D(2024, 5, 11), True, "劳动节"),  # Saturday, make-up working day
        (D(2026, 2, 16), False, "春节"),
    ],
)
def test_working_days(day: dt.date, working: bool, name: str | None) -> None:
    assert CN_CALENDAR.is_working_day(day) is working
    assert CN_CALENDAR.is_rest_day(day) is not working
    assert CN_CALENDAR.holiday_name(day) == name


def test_the_day_of_the_objection_is_not_counted() -> None:
    # Civil Code art. 201: counting starts the next day.
    assert CN_CALENDAR.add_working_days(D(2025, 6, 9), 1) == D(2025, 6, 10)
    assert CN_CALENDAR.add_working_days(D(2025, 6, 13), 1) == D(2025, 6, 16)  # Friday -> Monday
    assert CN_CALENDAR.add_working_days(D(2025, 6, 9), 0) == D(2025, 6, 9)
    assert CN_CALENDAR.working_days_between(D(2025, 9, 30), D(2025, 10, 14)) == 5


@pytest.mark.parametrize(
    ("written", "shifted"),
    [
        (D(2025, 10, 5), D(2025, 10, 9)),  # inside National Day
        (D(2025, 11, 15), D(2025, 11, 17)),  # Saturday -> Monday
        (D(2025, 9, 28), D(2025, 9, 28)),  # Sunday, but a make-up working day
        (D(2025, 10, 15), D(2025, 10, 15)),
    ],
)
def test_art_203_shifting_and_switching_it_off(written: dt.date, shifted: dt.date) -> None:
    assert CN_CALENDAR.shift_deadline(written) == shifted
    assert CN_CALENDAR.shift_deadline(written, DeadlineShift.NEXT_WORKING_DAY) == shifted
    assert CN_CALENDAR.shift_deadline(written, DeadlineShift.NONE) == written


def test_an_uncovered_year_raises_naming_the_year_and_the_notice() -> None:
    with pytest.raises(CalendarYearNotCovered) as caught:
        CN_CALENDAR.is_working_day(D(2027, 1, 4))
    error = caught.value
    assert error.year == 2027
    message = str(error)
    assert "2027" in message
    assert "国务院办公厅关于2027年部分节假日安排的通知" in message
    assert "with_year(2027" in message
    assert isinstance(error, MoveCarError)
    assert isinstance(error, LookupError)
    # Counting into an uncovered year fails too, rather than guessing.
    with pytest.raises(CalendarYearNotCovered):
        CN_CALENDAR.add_working_days(D(2026, 12, 30), 5)
    with pytest.raises(CalendarYearNotCovered, match="2003"):
        CN_CALENDAR.shift_deadline(D(2003, 12, 31))


def test_a_user_supplies_a_year() -> None:
    calendar = CN_CALENDAR.with_year(
        2027,
        holidays={D(2027, 1, 1): "元旦", D(2027, 1, 2): "元旦", D(2027, 1, 3): "元旦"},
        workdays=[D(2027, 1, 9)],  # a Saturday, invented for the test
        notice="test notice for 2027",
    )
    assert calendar.covers(2027)
    assert not CN_CALENDAR.covers(2027)  # the original is untouched
    assert calendar.is_rest_day(D(2027, 1, 1))
    assert calendar.holiday_name(D(2027, 1, 1)) == "元旦"
    assert calendar.is_working_day(D(2027, 1, 9))
    assert calendar.is_working_day(D(2027, 1, 4))
    assert calendar.add_working_days(D(2026, 12, 31), 1) == D(2027, 1, 4)
    assert calendar.sources[2027] == "test notice for 2027"
    assert calendar.is_working_day(D(2025, 10, 11))  # earlier years are kept


def test_with_year_validates() -> None:
    with pytest.raises(InvalidInput, match="workdays"):
        CN_CALENDAR.with_year(2027, holidays=[], workdays=[D(2027, 1, 4)], notice="n")  # Monday
    with pytest.raises(InvalidInput, match="already covered"):
        CN_CALENDAR.with_year(2025, holidays=[], notice="n")
    with pytest.raises(InvalidInput, match="holidays"):
        CN_CALENDAR.with_year(2027, holidays=[D(2030, 1, 1)], notice="n")
    with pytest.raises(InvalidInput, match="both"):
        CN_CALENDAR.with_year(2027, holidays=[D(2027, 1, 9)], workdays=[D(2027, 1, 9)], notice="n")
    with pytest.raises(InvalidInput, match="notice"):
        CN_CALENDAR.with_year(2027, holidays=[], notice=" ")
    with pytest.raises(InvalidInput, match="day"):
        CN_CALENDAR.is_working_day(dt.datetime(2025, 1, 1))
    replaced = CN_CALENDAR.with_year(2025, holidays=[D(2025, 1, 1)], notice="n", replace=True)
    assert replaced.is_working_day(D(2025, 10, 1))  # 2025 now only has New Year's Day off
    assert not replaced.is_working_day(D(2025, 10, 11))  # and no make-up Saturday
    assert replaced.is_rest_day(D(2024, 10, 1))  # other years untouched


def test_the_generated_table_matches_chinesecalendar() -> None:
    chinese_calendar = pytest.importorskip("chinese_calendar")
    day = D(cn_holidays.FIRST_YEAR, 1, 1)
    while day.year <= cn_holidays.LAST_YEAR:
        assert CN_CALENDAR.is_working_day(day) == chinese_calendar.is_workday(day), day
        day += dt.timedelta(days=1)


def test_the_generated_module_is_up_to_date() -> None:
    pytest.importorskip("chinese_calendar")
    spec = importlib.util.spec_from_file_location("gen", ROOT / "scripts" / "gen_cn_holidays.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = (ROOT / "movecar_core" / "cn_holidays.py").read_text(encoding="utf-8")
    assert module.render() == text


def test_the_core_never_imports_chinesecalendar() -> None:
    code = (
        "import sys; import movecar_core.calendar, movecar_core.pricing, "
        "movecar_core.settlement, movecar_core.penalties, movecar_core.term; "
        "assert 'chinese_calendar' not in sys.modules; assert 'holidays' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@given(covered_days, st.integers(0, 30))
def test_add_working_days_counts_exactly_n_working_days(start: dt.date, n: int) -> None:
    try:
        end = CN_CALENDAR.add_working_days(start, n)
    except CalendarYearNotCovered:
        # From late 2026 the n-th working day can lie in 2027, which the calendar does not
        # cover yet: it says so rather than guess, and only then.
        assert CN_CALENDAR.working_days_between(start, D(2026, 12, 31)) < n
        return
    assert CN_CALENDAR.working_days_between(start, end) == n
    if n:
        assert CN_CALENDAR.is_working_day(end)


@given(covered_days)
def test_shifted_deadline_is_the_first_working_day_on_or_after(day: dt.date) -> None:
    shifted = CN_CALENDAR.shift_deadline(day)
    assert shifted >= day
    assert CN_CALENDAR.is_working_day(shifted)
    current = day
    while current < shifted:
        assert CN_CALENDAR.is_rest_day(current)
        current += dt.timedelta(days=1)


def test_shanghai_dates_and_end_of_day() -> None:
    assert local_date(dt.datetime(2025, 10, 15, 16, 30, tzinfo=dt.UTC)) == D(2025, 10, 16)
    assert end_of_day(D(2025, 10, 15)) == dt.datetime(2025, 10, 16, tzinfo=SHANGHAI)
    with pytest.raises(InvalidInput, match="naive"):
        local_date(dt.datetime(2025, 10, 15))
    assert WorkingDayCalendar.default() is CN_CALENDAR
