"""The month's fee in one call: from the store's events to the money, recorded."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from movecar_core import (
    WUJIN_114_2024,
    ContractTerm,
    MoveCar,
    OutsideContractTerm,
    ServiceMonth,
    TierMode,
    settle_year,
)
from movecar_core.calendar import SHANGHAI
from movecar_core.clock import ManualClock
from movecar_core.errors import MonthAlreadyReported, MonthNotOver, SettlementError
from movecar_core.memory import InMemoryCaseStore
from movecar_core.testing.contracts import sample_history

YEAR0 = [ServiceMonth(2024, m) for m in range(4, 13)]
YEAR0 += [ServiceMonth(2025, m) for m in range(1, 4)]


def engine(clock: ManualClock, term: ContractTerm | None = None) -> MoveCar:
    return MoveCar(
        store=InMemoryCaseStore(clock=clock),
        registry=None,  # type: ignore[arg-type]  # settling needs no other port
        telephony=None,  # type: ignore[arg-type]
        clock=clock,
        term=term,
    )


def open_cases(mc: MoveCar, month: ServiceMonth, n: int) -> None:
    start, end = month.bounds()
    for i in range(n):
        case_id = f"c-{month}-{i}"
        at = start + (end - start) * (i + 1) / (n + 2)
        mc.store.append(case_id, sample_history(case_id, at=at), expected_version=0)


def after(month: ServiceMonth) -> dt.datetime:
    return month.bounds()[1] + dt.timedelta(hours=9)


@settings(max_examples=40)
@given(
    counts=st.lists(st.integers(0, 4), min_size=12, max_size=12),
    carried_in=st.sampled_from([0, 1_499_990, 2_999_995, 3_500_000]),
    mode=st.sampled_from(list(TierMode)),
)
def test_settling_each_month_adds_up_to_the_year(
    counts: list[int], carried_in: int, mode: TierMode
) -> None:
    clock = ManualClock(dt.datetime(2024, 4, 1, tzinfo=SHANGHAI))
    mc = engine(clock, ContractTerm.start(WUJIN_114_2024, carried_in=carried_in))
    whole = settle_year(counts, carried_in=carried_in, mode=mode)
    fees = []
    for month, count, line in zip(YEAR0, counts, whole.months, strict=True):
        open_cases(mc, month, count)
        clock.set(after(month))
        settled = mc.settle_month(month, mode=mode)
        assert (settled.billable_calls, settled.ytd_before, settled.ytd_after) == (
            count,
            line.ytd_before,
            line.ytd_after,
        )
        assert (settled.unit_price, settled.provisional_fee) == (
            line.unit_price,
            line.provisional_fee,
        )
        assert settled.report.billable_calls == count
        fees.append(settled.provisional_fee)
    # 三: the last month of the service year settles the year.
    assert settled.annual_fee == whole.annual_fee
    assert whole.carried_in_fee + sum(fees, Decimal(0)) + settled.true_up == settled.annual_fee
    assert [r.month for r in mc.store.reports()] == YEAR0  # type: ignore[attr-defined]


def test_a_month_settles_once_and_a_repeat_returns_what_was_recorded() -> None:
    clock = ManualClock(dt.datetime(2024, 5, 2, tzinfo=SHANGHAI))
    mc = engine(clock)
    may = ServiceMonth(2024, 5)
    open_cases(mc, may, 3)
    clock.set(dt.datetime(2024, 6, 3, 10, 0, tzinfo=SHANGHAI))
    first = mc.settle_month(may)
    assert (first.billable_calls, first.unit_price, first.provisional_fee) == (
        3,
        Decimal("1.90"),
        Decimal("5.70"),
    )
    # 三 "乙方每月 5 日前 ... 如有异议，需在每月 15 日前提出 ... 确保月底前付款"
    assert (first.deadlines.report_due, first.deadlines.objection_deadline) == (
        dt.date(2024, 6, 5),
        dt.date(2024, 6, 17),  # the 15th is a Saturday: the next working day
    )
    assert first.deadlines.payment_due == dt.date(2024, 7, 1)  # 30 June is a Sunday
    assert first.recorded_at == clock.now()
    clock.advance(days=1)
    again = mc.settle_month(may)
    assert again == first  # recorded at the first call's time
    # A case that appears in a settled month (a late import) makes the figures disagree.
    mc.store.append("late", sample_history("late", at=may.bounds()[0]), expected_version=0)
    with pytest.raises(MonthAlreadyReported, match="2024-05"):
        mc.settle_month(may)


def test_what_cannot_be_settled_is_a_typed_error() -> None:
    clock = ManualClock(dt.datetime(2024, 5, 31, 23, 59, tzinfo=SHANGHAI))
    mc = engine(clock)
    with pytest.raises(MonthNotOver, match="2024-05"):
        mc.settle_month(ServiceMonth(2024, 5))
    clock.set(dt.datetime(2025, 6, 2, tzinfo=SHANGHAI))
    with pytest.raises(OutsideContractTerm):
        mc.settle_month(ServiceMonth(2025, 5))  # year 2 was not granted: no renewal
    with pytest.raises(OutsideContractTerm):
        mc.settle_month(ServiceMonth(2024, 3))  # before the contract
    mc.settle_month(ServiceMonth(2024, 4))
    with pytest.raises(SettlementError, match="next report due is 2024-05"):
        mc.settle_month(ServiceMonth(2024, 6))
    with pytest.raises(ValueError, match="ServiceMonth"):
        mc.settle_month("2024-05")  # type: ignore[arg-type]


def test_service_month_text_is_strict() -> None:
    assert ServiceMonth.parse(" 2024-05 ") == ServiceMonth(2024, 5)
    for bad in ("2024-5", "２０２４-05", "2024/05", "2024-13", "", "2024-05-01"):
        with pytest.raises(ValueError, match="month"):
            ServiceMonth.parse(bad)
