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


def year_ranges(years: Iterable[int]) -> str:
    """``2004-2026, 2028``: covered years as ranges, for messages."""
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
            raise CalendarYearNotCovered(checked.year, year_ranges(self.covered_years))
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

    def with_notice(self, notice: YearNotice) -> WorkingDayCalendar:
        """A calendar that also covers ``notice.year`` (:meth:`with_year` with the notice's
        days). A year the calendar covers already is refused with
        :class:`InvalidCalendarNotice` unless the notice says ``replace``."""
        if not isinstance(notice, YearNotice):
            raise InvalidInput(f"notice={_shown(notice)} is not a YearNotice")
        if notice.year in self.covered_years and not notice.replace:
            raise InvalidCalendarNotice(
                f"year {notice.year} is covered already ({self.sources.get(notice.year)}): "
                "set replace = true in the year file to replace it"
            )
        return self.with_year(
            notice.year,
            holidays=notice.holidays,
            workdays=notice.workdays,
            notice=notice.notice,
            replace=notice.replace,
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


class InvalidCalendarNotice(InvalidInput):
    """A year of the working-day calendar, as an operator wrote it from the State Council's
    notice (:meth:`YearNotice.from_toml`), that cannot be used: not TOML, an unknown key, a
    date outside its year, a day both a holiday and a make-up working day, a period whose
    length is not the notice's "共 N 天", a year already covered without ``replace``."""


#: Longest State Council notice title kept with a year.
MAX_NOTICE = 300
#: Longest holiday name (元旦, 春节, 中秋节、国庆节...).
MAX_HOLIDAY_NAME = 20
#: Longest holiday period a notice has set is 10 days (春节 2020, extended): a longer one
#: is a typo in a date.
MAX_PERIOD_DAYS = 15
#: Largest year file read: a notice is a page.
MAX_NOTICE_BYTES = 64_000

_NOTICE_KEYS = frozenset({"year", "notice", "replace", "holiday"})
_HOLIDAY_KEYS = frozenset({"name", "from", "to", "days", "workdays"})


@attrs.frozen
class YearNotice:
    """One year's 国务院办公厅关于部分节假日安排的通知, as data: its days off and its make-up
    working days (调休上班), each named by its holiday.

    Built with :meth:`from_toml` (the form ``movecar calendar add`` installs, documented in
    ``docs/calendar.md``) and added to a calendar with
    :meth:`WorkingDayCalendar.with_notice`. Every date is in ``year``; ``replace`` says the
    notice replaces a year the calendar already covers (refused otherwise).
    """

    year: int
    notice: str
    holidays: Mapping[dt.date, str]
    workdays: Mapping[dt.date, str]
    replace: bool = False

    @classmethod
    def from_toml(cls, text: str, *, source: str = "calendar file") -> YearNotice:
        """Parse and check a year file (``source`` names it in messages)::

            year = 2026
            notice = "国务院办公厅关于2026年部分节假日安排的通知"

            [[holiday]]
            name = "元旦"
            from = 2026-01-01          # the first day off (a TOML date)
            to = 2026-01-03            # the last day off (default: from)
            days = 3                   # the notice's "共 3 天" (optional, checked)
            workdays = [2026-01-04]    # its make-up working days (调休上班), if any

        Raises :class:`InvalidCalendarNotice` naming the file and the key.
        """
        import tomllib  # the standard library's parser: no I/O, the text is given

        if not isinstance(text, str):
            raise InvalidCalendarNotice(f"{source}: expected text, got {type(text).__name__}")
        if len(text.encode("utf-8", "surrogatepass")) > MAX_NOTICE_BYTES:
            raise InvalidCalendarNotice(f"{source}: larger than {MAX_NOTICE_BYTES:,} bytes")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidCalendarNotice(f"{source}: not valid TOML ({exc})") from None
        except RecursionError:  # arrays or tables nested thousands deep
            raise InvalidCalendarNotice(f"{source}: nested too deep to be a year file") from None
        return cls.from_mapping(data, source=source)

    @classmethod
    def from_mapping(cls, data: Mapping[str, object], *, source: str = "notice") -> YearNotice:
        """:meth:`from_toml` on what ``tomllib`` made of the file."""
        where = source
        if not isinstance(data, Mapping):
            raise InvalidCalendarNotice(f"{where}: expected a table of keys")
        unknown = sorted(str(k) for k in data if k not in _NOTICE_KEYS)
        if unknown:
            known = ", ".join(sorted(_NOTICE_KEYS))
            raise InvalidCalendarNotice(
                f"{where}: unknown key {unknown[0][:40]!r} (known: {known})"
            )
        year = data.get("year")
        if isinstance(year, bool) or not isinstance(year, int) or not 1949 <= year <= 9998:
            raise InvalidCalendarNotice(f"{where}: year={_shown(year)} must be a year, e.g. 2027")
        notice = data.get("notice")
        if not isinstance(notice, str) or not notice.strip():
            raise InvalidCalendarNotice(
                f"{where}: notice must name the State Council notice, e.g. "
                f"'国务院办公厅关于{year}年部分节假日安排的通知'"
            )
        if len(notice) > MAX_NOTICE or not notice.isprintable():
            raise InvalidCalendarNotice(
                f"{where}: notice must be one line of at most {MAX_NOTICE} characters"
            )
        replace = data.get("replace", False)
        if not isinstance(replace, bool):
            raise InvalidCalendarNotice(f"{where}: replace={_shown(replace)} must be true or false")
        periods = data.get("holiday")
        if not isinstance(periods, list) or not periods:
            raise InvalidCalendarNotice(
                f"{where}: no [[holiday]]: a notice gives at least one holiday period"
            )
        holidays: dict[dt.date, str] = {}
        workdays: dict[dt.date, str] = {}
        for index, period in enumerate(periods, start=1):
            _holiday(period, f"{where}: holiday {index}", year, holidays, workdays)
        both = sorted(set(holidays) & set(workdays))
        if both:
            raise InvalidCalendarNotice(
                f"{where}: {both[0]} is both a holiday ({holidays[both[0]]}) and a make-up "
                f"working day ({workdays[both[0]]})"
            )
        return cls(
            year,
            notice.strip(),
            MappingProxyType(dict(sorted(holidays.items()))),
            MappingProxyType(dict(sorted(workdays.items()))),
            replace,
        )


def _shown(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:39] + "…"


def _notice_date(value: object, where: str, year: int) -> dt.date:
    """A date of a notice: a TOML date (or its ISO text), in the notice's year."""
    if isinstance(value, str):
        try:
            parsed = dt.date.fromisoformat(value)
        except ValueError:
            raise InvalidCalendarNotice(f"{where}={_shown(value)}: not a date YYYY-MM-DD") from None
        if parsed.isoformat() != value:
            raise InvalidCalendarNotice(f"{where}={_shown(value)}: write the date YYYY-MM-DD")
        value = parsed
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise InvalidCalendarNotice(f"{where}={_shown(value)}: not a date (write 2027-01-01)")
    if value.year != year:
        raise InvalidCalendarNotice(f"{where}={value}: not in {year}, the notice's year")
    return value


def _holiday(
    period: object,
    where: str,
    year: int,
    holidays: dict[dt.date, str],
    workdays: dict[dt.date, str],
) -> None:
    """Check one ``[[holiday]]`` and add its days to ``holidays`` and ``workdays``."""
    if not isinstance(period, Mapping):
        raise InvalidCalendarNotice(f"{where}: must be a table ([[holiday]])")
    unknown = sorted(str(k) for k in period if k not in _HOLIDAY_KEYS)
    if unknown:
        raise InvalidCalendarNotice(
            f"{where}: unknown key {unknown[0][:40]!r} (known: {', '.join(sorted(_HOLIDAY_KEYS))})"
        )
    name = period.get("name")
    if (
        not isinstance(name, str)
        or not name.strip()
        or len(name) > MAX_HOLIDAY_NAME
        or not name.isprintable()
    ):
        raise InvalidCalendarNotice(
            f"{where}: name must be the holiday's name (元旦, 春节...), one line of at most "
            f"{MAX_HOLIDAY_NAME} characters"
        )
    name = name.strip()
    where = f"{where} ({name})"
    if "from" not in period:
        raise InvalidCalendarNotice(f"{where}: from (its first day off) is missing")
    first = _notice_date(period["from"], f"{where}: from", year)
    last = _notice_date(period.get("to", first), f"{where}: to", year)
    if last < first:
        raise InvalidCalendarNotice(f"{where}: to={last} is before from={first}")
    length = (last - first).days + 1
    if length > MAX_PERIOD_DAYS:
        raise InvalidCalendarNotice(
            f"{where}: {length} days off from {first} to {last}; no notice gives more than "
            f"{MAX_PERIOD_DAYS} (a typo in a date?)"
        )
    days = period.get("days")
    if days is not None and (isinstance(days, bool) or not isinstance(days, int)):
        raise InvalidCalendarNotice(f"{where}: days={_shown(days)} must be a whole number")
    if days is not None and days != length:
        raise InvalidCalendarNotice(
            f"{where}: days={days} (the notice's 共 {days} 天), but {first} to {last} is "
            f"{length} days"
        )
    for offset in range(length):
        day = first + dt.timedelta(days=offset)
        if day in holidays:
            raise InvalidCalendarNotice(
                f"{where}: {day} is a day off of {holidays[day]} already (periods overlap)"
            )
        holidays[day] = name
    made = period.get("workdays", [])
    if not isinstance(made, list):
        raise InvalidCalendarNotice(f"{where}: workdays must be a list of dates")
    for item in made:
        day = _notice_date(item, f"{where}: workdays", year)
        if day.weekday() < _SATURDAY:
            raise InvalidCalendarNotice(
                f"{where}: workdays: {day} is a {day:%A}; a make-up working day (调休上班) is "
                "a Saturday or Sunday"
            )
        if day in workdays:
            raise InvalidCalendarNotice(
                f"{where}: workdays: {day} is a make-up working day of {workdays[day]} already"
            )
        workdays[day] = name


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
