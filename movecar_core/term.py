"""The contract term (一(三)) and the service years it is made of.

一(三): "本合作协议有效期一年，自 2024年4月1日 起生效，有效期满经甲方考核通过后，自动续约一年，
最多续约 2 次。"

- Service year 0 runs 2024-04-01 to 2025-03-31; each renewal adds one year, and only after
  Party A's assessment of the year that ends was passed; at most 2 renewals, so the last
  possible day is 2027-03-31 (:attr:`Contract.last_possible_day`).
- Each service year's volume is separate: the tiers of 三 apply to "当年话务总量", the year
  being the service year (not the calendar year).
- Service delivered before 2024-04-01 is billed at these rates and its volume carried into
  the first service year (三: "本合同服务周期之前的服务内容，按本合同结算标准计算，话务量数量累计
  本次服务合同内").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import attrs

from movecar_core.contract import WUJIN_114_2024, Contract
from movecar_core.errors import InvalidInput, OutsideContractTerm, RenewalRefused


def _add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


@attrs.frozen
class ServiceYear:
    """One service year: ``index`` 0 is the initial year, 1 and 2 the renewals."""

    index: int
    start: dt.date
    #: The last day of the year (inclusive).
    end: dt.date

    def contains(self, day: dt.date) -> bool:
        return self.start <= day <= self.end


def service_year(contract: Contract, index: int) -> ServiceYear:
    """The ``index``-th service year of ``contract`` (0-based), granted or not."""
    if isinstance(index, bool) or not isinstance(index, int):
        raise InvalidInput(f"index={index!r} must be an integer")
    if not 0 <= index <= contract.max_renewals:
        raise InvalidInput(
            f"index={index}: {contract.name} has service years 0 to {contract.max_renewals}"
        )
    start = _add_years(contract.effective_from, index * contract.term_years)
    end = _add_years(start, contract.term_years) - dt.timedelta(days=1)
    return ServiceYear(index=index, start=start, end=end)


@attrs.frozen
class Assessment:
    """Party A's assessment (考核) at the end of service year ``year_index``."""

    year_index: int
    passed: bool
    decided_on: dt.date


@attrs.frozen
class ContractTerm:
    """The service years granted so far, built up renewal by renewal.

    ``ContractTerm.start(contract)`` holds the initial year; :meth:`renew` adds the next one
    given a passed :class:`Assessment`; a failed assessment ends the contract (:meth:`close`).
    ``carried_in`` is the pre-contract service volume added to year 0.
    """

    contract: Contract
    years: tuple[ServiceYear, ...]
    assessments: tuple[Assessment, ...] = ()
    carried_in: int = 0
    #: True once an assessment failed: no further renewal is possible.
    ended: bool = False

    @classmethod
    def start(cls, contract: Contract = WUJIN_114_2024, *, carried_in: int = 0) -> ContractTerm:
        """The term at signature: the initial service year only."""
        if isinstance(carried_in, bool) or not isinstance(carried_in, int) or carried_in < 0:
            raise InvalidInput(f"carried_in={carried_in!r} must be a non-negative integer")
        return cls(contract=contract, years=(service_year(contract, 0),), carried_in=carried_in)

    @property
    def current(self) -> ServiceYear:
        """The last service year granted so far."""
        return self.years[-1]

    @property
    def end_date(self) -> dt.date:
        """The last day of the contract as granted so far."""
        return self.current.end

    @property
    def renewals(self) -> int:
        return len(self.years) - 1

    def renew(self, assessment: Assessment) -> ContractTerm:
        """The term with one more service year, after Party A's passed assessment.

        "有效期满经甲方考核通过后，自动续约一年，最多续约 2 次": raises
        :class:`~movecar_core.errors.RenewalRefused` when the assessment failed, is about
        another year, the contract already ended, or 2 renewals were already granted.
        """
        self._check_assessment(assessment)
        if not assessment.passed:
            raise RenewalRefused(
                f"assessment of service year {assessment.year_index} was not passed "
                f"(passed=False); the contract ends on {self.end_date}"
            )
        if self.renewals >= self.contract.max_renewals:
            raise RenewalRefused(
                f"renewals={self.renewals}: at most {self.contract.max_renewals} renewals "
                f"('最多续约 {self.contract.max_renewals} 次'); the last possible day is "
                f"{self.contract.last_possible_day}"
            )
        nxt = service_year(self.contract, len(self.years))
        return attrs.evolve(
            self, years=(*self.years, nxt), assessments=(*self.assessments, assessment)
        )

    def close(self, assessment: Assessment) -> ContractTerm:
        """Record a failed assessment: the contract ends with the current year."""
        self._check_assessment(assessment)
        if assessment.passed:
            raise InvalidInput("assessment.passed=True: a passed assessment renews; use renew()")
        return attrs.evolve(self, assessments=(*self.assessments, assessment), ended=True)

    def _check_assessment(self, assessment: Assessment) -> None:
        if not isinstance(assessment, Assessment):
            raise InvalidInput(f"assessment={assessment!r} is not an Assessment")
        if self.ended:
            raise RenewalRefused(f"the contract ended on {self.end_date}; it cannot be renewed")
        if assessment.year_index != self.current.index:
            raise RenewalRefused(
                f"assessment.year_index={assessment.year_index}: only the current service "
                f"year {self.current.index} can be assessed"
            )

    def year_of(self, day: dt.date) -> ServiceYear:
        """The granted service year containing ``day``; raises outside the term."""
        if isinstance(day, dt.datetime) or not isinstance(day, dt.date):
            raise InvalidInput(f"day={day!r} is not a date")
        for year in self.years:
            if year.contains(day):
                return year
        raise OutsideContractTerm(
            f"day={day} is outside the service years granted "
            f"({self.years[0].start} to {self.end_date})"
        )

    def volumes_by_year(self, monthly: Mapping[dt.date, int]) -> dict[int, int]:
        """Billable volume per service year index from per-period volumes.

        ``monthly`` maps the first day of a period (a month, a day) to its volume. Periods
        before the contract start are pre-contract service and are carried into year 0, with
        :attr:`carried_in`; a period after the granted term raises. Every granted year is in
        the result, each year's volume counted separately.
        """
        totals = {year.index: 0 for year in self.years}
        totals[0] += self.carried_in
        first = self.years[0].start
        for day, volume in monthly.items():
            if isinstance(volume, bool) or not isinstance(volume, int) or volume < 0:
                raise InvalidInput(f"volume for {day}={volume!r} must be a non-negative integer")
            if isinstance(day, dt.datetime) or not isinstance(day, dt.date):
                raise InvalidInput(f"period start {day!r} is not a date")
            index = 0 if day < first else self.year_of(day).index
            totals[index] += volume
        return totals


def all_service_years(contract: Contract = WUJIN_114_2024) -> tuple[ServiceYear, ...]:
    """Every service year the contract can have with all renewals (the seed: 3, to 2027-03-31)."""
    return tuple(service_year(contract, i) for i in range(contract.max_renewals + 1))
