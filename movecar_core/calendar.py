"""China's working-day calendar and the Civil Code's rules for counting periods.

The monthly cycle of 三 counts in calendar days ("每月 5 日前", "每月 15 日前", "月底前") and in
working days ("在 5 个工作日内协商处理"). A working day is a Monday to Friday that is not a
statutory holiday, or a weekend day the State Council made a working day (调休上班).

Two rules of the Civil Code (民法典) apply to every period the contract sets:

- art. 201: "按照年、月、日计算期间的，开始的当日不计入，自下一日开始计算。" — the day an
  objection is raised is not counted; :meth:`WorkingDayCalendar.add_working_days` starts
  counting on the next day.
- art. 203: "期间的最后一日是法定休假日的，以法定休假日结束的次日为期间的最后一日。期间的最后
  一日的截止时间为二十四时。" — a deadline on a rest day moves to the next working day
  (:attr:`DeadlineShift.NEXT_WORKING_DAY`, the default; :attr:`DeadlineShift.NONE` switches it
  off) and a deadline day lasts until 24:00 Asia/Shanghai (:func:`end_of_day`).

The table of holidays is the library's own generated module :mod:`movecar_core.cn_holidays`
(no I/O, no third-party import at run time). A date in a year the table does not cover raises
:class:`~movecar_core.errors.CalendarYearNotCovered`; supply that year's State Council notice
with :meth:`WorkingDayCalendar.with_year`. The calendar never guesses.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from zoneinfo import ZoneInfo

import attrs

from movecar_core import cn_holidays
from movecar_core.errors import CalendarYearNotCovered, InvalidInput

#: Every contract date and deadline is a date in Asia/Shanghai.
SHANGHAI = ZoneInfo("Asia/Shanghai")

_SATURDAY = 5


class DeadlineShift(enum.Enum):
    """What happens to a deadline that falls on a rest day or statutory holiday."""

    #: Civil Code art. 203: "以法定休假日结束的次日为期间的最后一日" (the default).
    NEXT_WORKING_DAY = "next_working_day"
    #: Keep the date as written, even on a rest day.
    NONE = "none"


def local_date(moment: dt.datetime) -> dt.date:
    """The Asia/Shanghai calendar date of an aware ``moment``.

    Raises :class:`InvalidInput` for a naive datetime: a contract instant must say its zone.
    """
    _require_aware("moment", moment)
    return moment.astimezone(SHANGHAI).date()


def end_of_day(day: dt.date) -> dt.datetime:
    """The instant a deadline ``day`` ends: 24:00 Asia/Shanghai, i.e. the next day's 00:00.

    Civil Code art. 203: "期间的最后一日的截止时间为二十四时". An act at or after this instant is
    late; an act before it is in time.
    """
    nxt = day + dt.timedelta(days=1)
    return dt.datetime(nxt.year, nxt.month, nxt.day, tzinfo=SHANGHAI)


def _require_aware(field: str, moment: object) -> None:
    if not isinstance(moment, dt.datetime):
        raise InvalidInput(f"{field}={moment!r} is not a datetime")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidInput(f"{field}={moment!r} is naive; give a timezone-aware datetime")


def _require_date(field: str, day: object) -> dt.date:
    if isinstance(day, dt.datetime) or not isinstance(day, dt.date):
        raise InvalidInput(f"{field}={day!r} is not a date (a datetime.date, not a datetime)")
    return day


def _year_ranges(years: Iterable[int]) -> str:
    ordered = sorted(years)
    if not ordered:
        return "no year"
    parts: list[str] = []
    start = prev = ordered[0]
    for year in ordered[1:]:
        if year != prev + 1:
            parts.append(f"{start}-{prev}" if start != prev else str(start))
            start = year
        prev = year
    parts.append(f"{start}-{prev}" if start != prev else str(start))
    return ", ".join(parts)


@attrs.frozen
class WorkingDayCalendar:
    """Statutory holidays and make-up working days for the years it covers.

    Build the default one with :meth:`default` (the generated table, 2004-2026 with
    chinesecalendar 1.11) and add a year with :meth:`with_year`. Instances are immutable.
    """

    #: Days off of holiday periods (including the weekend days inside them).
    holidays: frozenset[dt.date]
    #: Weekend days that are working days (调休上班).
    workdays: frozenset[dt.date]
    #: The years whose State Council notice the calendar holds.
    covered_years: frozenset[int]
    #: The name of each holiday and make-up day (元旦, 春节, 国庆节...).
    names: Mapping[dt.date, str] = attrs.field(eq=False, repr=False)
    #: Where each covered year comes from (the generator's source, or the notice given).
    sources: Mapping[int, str] = attrs.field(eq=False, repr=False)

    @classmethod
    def default(cls) -> WorkingDayCalendar:
        """The library's generated table (:mod:`movecar_core.cn_holidays`)."""
        return CN_CALENDAR

    # --- look-ups --------------------------------------------------------------------

    def covers(self, year: int) -> bool:
        """Whether the calendar holds the State Council notice of ``year``."""
        return year in self.covered_years

    def _check(self, field: str, day: object) -> dt.date:
        checked = _require_date(field, day)
        if checked.year not in self.covered_years:
            raise CalendarYearNotCovered(checked.year, _year_ranges(self.covered_years))
        return checked

    def is_working_day(self, day: dt.date) -> bool:
        """True on a working day: a weekday that is not a holiday, or a make-up working day."""
        day = self._check("day", day)
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() < _SATURDAY

    def is_rest_day(self, day: dt.date) -> bool:
        """True on a weekend day that is not a make-up working day, or on a holiday."""
        return not self.is_working_day(day)

    def holiday_name(self, day: dt.date) -> str | None:
        """The holiday (or the holiday a make-up working day belongs to), if any."""
        day = self._check("day", day)
        return self.names.get(day)

    def next_working_day(self, day: dt.date, *, include_start: bool = True) -> dt.date:
        """The first working day on or after ``day`` (after it if ``include_start`` is False)."""
        current = self._check("day", day)
        if not include_start:
            current += dt.timedelta(days=1)
        while not self.is_working_day(current):
            current += dt.timedelta(days=1)
        return current

    def add_working_days(self, start: dt.date, count: int) -> dt.date:
        """The day on which ``count`` working days after ``start`` have elapsed.

        ``start`` itself is never counted (Civil Code art. 201: "开始的当日不计入，自下一日开始
        计算"). ``count`` = 0 gives ``start``. Example: 5 working days after an objection raised
        on 2025-09-30 end on 2025-10-14 (10-01..10-08 are 国庆节/中秋 holidays, the Saturday
        10-11 is a make-up working day).
        """
        start = self._check("start", start)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidInput(f"count={count!r} must be a non-negative integer")
        current = start
        remaining = count
        while remaining:
            current += dt.timedelta(days=1)
            if self.is_working_day(current):
                remaining -= 1
        return current

    def working_days_between(self, start: dt.date, end: dt.date) -> int:
        """Working days in ``(start, end]``: ``start`` not counted (art. 201), ``end`` counted."""
        start = self._check("start", start)
        end = self._check("end", end)
        if end < start:
            raise InvalidInput(f"end={end} is before start={start}")
        days = 0
        current = start
        while current < end:
            current += dt.timedelta(days=1)
            if self.is_working_day(current):
                days += 1
        return days

    def shift_deadline(
        self, day: dt.date, policy: DeadlineShift = DeadlineShift.NEXT_WORKING_DAY
    ) -> dt.date:
        """The effective last day of a period whose written last day is ``day``.

        With :attr:`DeadlineShift.NEXT_WORKING_DAY` (Civil Code art. 203) a rest day or
        holiday moves to the next working day; with :attr:`DeadlineShift.NONE` ``day`` is kept.
        """
        day = self._check("day", day)
        if policy is DeadlineShift.NONE:
            return day
        if policy is DeadlineShift.NEXT_WORKING_DAY:
            return self.next_working_day(day)
        raise InvalidInput(f"policy={policy!r} is not a DeadlineShift")

    # --- extending -------------------------------------------------------------------

    def with_year(
        self,
        year: int,
        *,
        holidays: Iterable[dt.date] | Mapping[dt.date, str],
        workdays: Iterable[dt.date] | Mapping[dt.date, str] = (),
        notice: str,
        replace: bool = False,
    ) -> WorkingDayCalendar:
        """A calendar that also covers ``year``, from that year's State Council notice.

        ``holidays`` are the days off the notice gives (every day of each 放假 period, weekend
        days included; a mapping may name each day's holiday); ``workdays`` are the weekend
        days it makes working days (调休上班); ``notice`` names the notice, e.g.
        "国办发明电〔2026〕X号 国务院办公厅关于2027年部分节假日安排的通知". A notice may set days
        in the neighbouring years (the 2012 notice made 2011-12-31 a working day), so dates in
        ``year - 1`` to ``year + 1`` are accepted. An already covered year is refused unless
        ``replace`` is True, in which case every entry dated in ``year`` is replaced.
        """
        if isinstance(year, bool) or not isinstance(year, int) or not 1949 <= year <= 9998:
            raise InvalidInput(f"year={year!r} must be an integer year from 1949")
        if not isinstance(notice, str) or not notice.strip():
            raise InvalidInput(f"notice={notice!r}: name the State Council notice for {year}")
        if year in self.covered_years and not replace:
            raise InvalidInput(
                f"year={year} is already covered ({self.sources.get(year)}); pass replace=True"
            )
        new_holidays = self._entries("holidays", year, holidays)
        new_workdays = self._entries("workdays", year, workdays)
        for day in new_workdays:
            if day.weekday() < _SATURDAY:
                raise InvalidInput(
                    f"workdays: {day} is a {day:%A}; a make-up working day is a Saturday or Sunday"
                )
        both = sorted(set(new_holidays) & set(new_workdays))
        if both:
            raise InvalidInput(f"holidays and workdays both contain {both[0]}")

        def keep(day: dt.date) -> bool:
            return not (replace and day.year == year)

        names = {d: n for d, n in self.names.items() if keep(d)}
        names.update(new_holidays)
        names.update(new_workdays)
        sources = dict(self.sources)
        sources[year] = notice
        return WorkingDayCalendar(
            holidays=frozenset(d for d in self.holidays if keep(d)) - set(new_workdays)
            | set(new_holidays),
            workdays=frozenset(d for d in self.workdays if keep(d)) - set(new_holidays)
            | set(new_workdays),
            covered_years=self.covered_years | {year},
            names=MappingProxyType(names),
            sources=MappingProxyType(sources),
        )

    @staticmethod
    def _entries(field: str, year: int, days: object) -> dict[dt.date, str]:
        if isinstance(days, (str, bytes)) or not isinstance(days, Iterable):
            raise InvalidInput(f"{field}={days!r} must be an iterable of dates")
        named: dict[dt.date, str] = {}
        if isinstance(days, Mapping):
            items: Iterable[tuple[object, object]] = days.items()
        else:
            items = ((day, "") for day in days)
        for day, name in items:
            checked = _require_date(field, day)
            if not year - 1 <= checked.year <= year + 1:
                raise InvalidInput(f"{field}: {checked} is not in or next to year {year}")
            named[checked] = str(name)
        return named


def _load_default() -> WorkingDayCalendar:
    holidays = {dt.date.fromisoformat(day): name for day, name in cn_holidays.HOLIDAYS}
    workdays = {dt.date.fromisoformat(day): name for day, name in cn_holidays.WORKDAYS}
    years = range(cn_holidays.FIRST_YEAR, cn_holidays.LAST_YEAR + 1)
    return WorkingDayCalendar(
        holidays=frozenset(holidays),
        workdays=frozenset(workdays),
        covered_years=frozenset(years),
        names=MappingProxyType({**holidays, **workdays}),
        sources=MappingProxyType(dict.fromkeys(years, cn_holidays.SOURCE)),
    )


#: The default calendar: the generated table of :mod:`movecar_core.cn_holidays`.
CN_CALENDAR: WorkingDayCalendar = _load_default()
