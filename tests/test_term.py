"""The contract term of 一(三): service years, renewals, separate volumes, carried-in service."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from movecar_core.contract import WUJIN_114_2024
from movecar_core.errors import InvalidInput, OutsideContractTerm, RenewalRefused
from movecar_core.pricing import annual_fee, settle_year
from movecar_core.term import Assessment, ContractTerm, ServiceYear, all_service_years

D = dt.date


def test_service_years_of_the_seed() -> None:
    assert all_service_years() == (
        ServiceYear(0, D(2024, 4, 1), D(2025, 3, 31)),
        ServiceYear(1, D(2025, 4, 1), D(2026, 3, 31)),
        ServiceYear(2, D(2026, 4, 1), D(2027, 3, 31)),
    )
    assert all_service_years()[-1].end == WUJIN_114_2024.last_possible_day == D(2027, 3, 31)


def test_renewals_need_a_passed_assessment_and_stop_after_two() -> None:
    term = ContractTerm.start()
    assert term.end_date == D(2025, 3, 31)
    with pytest.raises(RenewalRefused, match="not passed"):
        term.renew(Assessment(0, passed=False, decided_on=D(2025, 3, 20)))
    with pytest.raises(RenewalRefused, match="year_index=1"):
        term.renew(Assessment(1, passed=True, decided_on=D(2025, 3, 20)))
    once = term.renew(Assessment(0, passed=True, decided_on=D(2025, 3, 20)))
    twice = once.renew(Assessment(1, passed=True, decided_on=D(2026, 3, 20)))
    assert (once.end_date, twice.end_date) == (D(2026, 3, 31), D(2027, 3, 31))
    assert twice.renewals == 2
    with pytest.raises(RenewalRefused, match="at most 2 renewals"):
        twice.renew(Assessment(2, passed=True, decided_on=D(2027, 3, 20)))


def test_a_failed_assessment_ends_the_contract() -> None:
    ended = ContractTerm.start().close(Assessment(0, passed=False, decided_on=D(2025, 3, 25)))
    assert ended.ended
    assert ended.end_date == D(2025, 3, 31)
    with pytest.raises(RenewalRefused, match="ended"):
        ended.renew(Assessment(0, passed=True, decided_on=D(2025, 3, 26)))
    with pytest.raises(InvalidInput, match="passed=True"):
        ContractTerm.start().close(Assessment(0, passed=True, decided_on=D(2025, 3, 25)))


def test_year_of_a_date() -> None:
    term = ContractTerm.start()
    assert term.year_of(D(2024, 4, 1)).index == 0
    assert term.year_of(D(2025, 3, 31)).index == 0
    with pytest.raises(OutsideContractTerm, match="2025-04-01"):
        term.year_of(D(2025, 4, 1))  # not renewed yet
    with pytest.raises(OutsideContractTerm):
        term.year_of(D(2024, 3, 31))
    renewed = term.renew(Assessment(0, passed=True, decided_on=D(2025, 3, 20)))
    assert renewed.year_of(D(2025, 4, 1)).index == 1


def test_each_service_year_has_its_own_volume_and_pre_contract_service_is_carried_in() -> None:
    term = ContractTerm.start(carried_in=50_000).renew(
        Assessment(0, passed=True, decided_on=D(2025, 3, 20))
    )
    monthly = {
        D(2024, 2, 1): 20_000,  # before the contract: carried into year 0
        D(2024, 3, 1): 30_000,
        D(2024, 4, 1): 1_000_000,
        D(2025, 3, 1): 400_000,
        D(2025, 4, 1): 900_000,
    }
    assert term.volumes_by_year(monthly) == {0: 1_500_000, 1: 900_000}
    # Year 0 reaches the 1.85 tier only thanks to the carried-in volume; year 1 starts over.
    assert annual_fee(1_500_000) == Decimal("2775000.00")
    assert annual_fee(900_000) == Decimal("1710000.00")
    with pytest.raises(OutsideContractTerm):
        term.volumes_by_year({D(2026, 4, 1): 1})
    with pytest.raises(InvalidInput, match="volume"):
        term.volumes_by_year({D(2024, 4, 1): -1})


def test_first_year_settlement_with_carried_in_volume() -> None:
    # 100,000 pre-contract calls billed at these rates and counted toward year 0's tier.
    result = settle_year([125_000] * 12, carried_in=100_000)
    assert result.total_volume == 1_600_000
    assert result.annual_fee == Decimal("2960000.00")  # 1,600,000 x 1.85
    assert result.true_up is not None
    assert result.provisional_total + result.true_up == result.annual_fee


def test_bad_carried_in() -> None:
    with pytest.raises(InvalidInput, match="carried_in"):
        ContractTerm.start(carried_in=-5)
