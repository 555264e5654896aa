"""Penalties of 五 (违约责任): late payment, service gaps, breach, falsified months."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from movecar_core.calendar import SHANGHAI
from movecar_core.errors import InvalidInput
from movecar_core.penalties import (
    CapBase,
    breach_liability,
    cap_base_for,
    late_payment_penalty,
    late_payment_penalty_segments,
    month_payable,
    service_gap_days,
    service_gap_penalty,
)

FEN = Decimal("0.01")
amounts = st.decimals(min_value=0, max_value=10_000_000, places=2, allow_nan=False)
days = st.integers(min_value=0, max_value=5_000)


@pytest.mark.parametrize(
    ("overdue", "n_days", "expected"),
    [
        ("100000.00", 0, "0.00"),
        ("100000.00", 1, "50.00"),
        ("100000.00", 10, "500.00"),
        ("100000.00", 599, "29950.00"),
        ("100000.00", 600, "30000.00"),  # 600 x 0.05 % = 30 %: the cap is reached
        ("100000.00", 601, "30000.00"),  # and never exceeded
        ("10.00", 1, "0.01"),  # 0.005 rounds half up, not to even
        ("33.33", 3, "0.05"),  # 0.049995 rounded once (0.02 x 3 = 0.06 if rounded per day)
        ("0.01", 1, "0.00"),
    ],
)
def test_late_payment_penalty_table(overdue: str, n_days: int, expected: str) -> None:
    assert late_payment_penalty(Decimal(overdue), n_days) == Decimal(expected)


def test_cap_base_is_a_policy() -> None:
    overdue = Decimal("100000")
    # Default: 30 % of the overdue amount.
    assert late_payment_penalty(overdue, 1000) == Decimal("30000.00")
    # Alternative: 30 % of the contract total.
    total = cap_base_for(CapBase.CONTRACT_TOTAL, overdue=overdue, contract_total=Decimal("6e6"))
    assert late_payment_penalty(overdue, 1000, cap_base=total) == Decimal("50000.00")
    assert cap_base_for(CapBase.OVERDUE_AMOUNT, overdue=overdue) == overdue
    with pytest.raises(InvalidInput, match="contract_total"):
        cap_base_for(CapBase.CONTRACT_TOTAL, overdue=overdue)


@given(amounts, days, st.one_of(st.none(), amounts))
@example(Decimal("100000.00"), 600, None)
@example(Decimal("0.01"), 1, None)
def test_late_payment_penalty_is_bounded_and_exact(
    overdue: Decimal, n: int, cap_base: Decimal | None
) -> None:
    penalty = late_payment_penalty(overdue, n, cap_base)
    base = overdue if cap_base is None else cap_base
    assert penalty >= 0
    assert penalty <= (base * Decimal("0.30")).quantize(FEN, ROUND_HALF_UP)
    assert penalty <= (overdue * Decimal("0.0005") * n).quantize(FEN, ROUND_HALF_UP)
    assert penalty == penalty.quantize(FEN)
    assert penalty == late_payment_penalty(overdue, n, cap_base)  # deterministic


@given(amounts, days, days)
def test_late_payment_penalty_is_non_decreasing_in_days(overdue: Decimal, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert late_payment_penalty(overdue, low) <= late_payment_penalty(overdue, high)


@given(amounts, days, days)
def test_service_gap_penalty_is_bounded_and_non_decreasing(base: Decimal, a: int, b: int) -> None:
    low, high = sorted((a, b))
    p_low, p_high = service_gap_penalty(base, low), service_gap_penalty(base, high)
    assert Decimal(0) <= p_low <= p_high <= (base * Decimal("0.30")).quantize(FEN, ROUND_HALF_UP)
    assert p_high == p_high.quantize(FEN)


def test_service_gap_penalty_table() -> None:
    assert service_gap_penalty(Decimal("500000.00"), 3) == Decimal("750.00")
    assert service_gap_penalty(Decimal("500000.00"), 3, cap_base=Decimal("1000")) == Decimal(
        "300.00"
    )


def test_segments_accrue_per_part_and_cap_once() -> None:
    # 60,000 paid 10 days late, 40,000 paid 20 days late: (600,000 + 800,000) x 0.0005.
    segments = [(Decimal("60000"), 10), (Decimal("40000"), 20)]
    assert late_payment_penalty_segments(segments, Decimal("100000")) == Decimal("700.00")
    assert late_payment_penalty_segments(segments, Decimal("1000")) == Decimal("300.00")


def _sh(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def test_service_gap_days_count_shanghai_days_touched() -> None:
    outages = [
        (_sh(2025, 3, 1, 23, 50), _sh(2025, 3, 2, 0, 20)),  # 1 and 2 March
        (_sh(2025, 3, 2, 10), _sh(2025, 3, 2, 11)),  # 2 March again
        (_sh(2025, 3, 5, 9), _sh(2025, 3, 6, 0, 0)),  # ends at midnight: 5 March only
        # 16:30 UTC on 9 March is 00:30 on 10 March in Shanghai
        (
            dt.datetime(2025, 3, 9, 16, 30, tzinfo=dt.UTC),
            dt.datetime(2025, 3, 9, 17, tzinfo=dt.UTC),
        ),
    ]
    assert service_gap_days(outages) == 4
    assert service_gap_days([]) == 0
    with pytest.raises(InvalidInput, match="end"):
        service_gap_days([(_sh(2025, 3, 2), _sh(2025, 3, 1))])
    with pytest.raises(InvalidInput, match="aware"):
        service_gap_days([(dt.datetime(2025, 3, 1), _sh(2025, 3, 2))])


def test_breach_is_100000_plus_actual_loss() -> None:
    assert breach_liability(Decimal(0)) == Decimal("100000.00")
    assert breach_liability(Decimal("2500.50")) == Decimal("102500.50")
    with pytest.raises(InvalidInput, match="actual_loss"):
        breach_liability(Decimal("-1"))


def test_a_falsified_month_has_its_fee_withheld() -> None:
    honest = month_payable(Decimal("570000.00"), falsified=False)
    assert (honest.payable, honest.withheld) == (Decimal("570000.00"), Decimal("0.00"))
    false = month_payable(Decimal("570000.00"), falsified=True)
    assert (false.payable, false.withheld) == (Decimal("0.00"), Decimal("570000.00"))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"overdue": 1.5, "days": 1}, "overdue"),
        ({"overdue": Decimal("-1"), "days": 1}, "overdue"),
        ({"overdue": Decimal("NaN"), "days": 1}, "overdue"),
        ({"overdue": Decimal("1"), "days": -1}, "days"),
        ({"overdue": Decimal("1"), "days": True}, "days"),
        ({"overdue": Decimal("1"), "days": 1, "cap_base": 2.0}, "cap_base"),
    ],
)
def test_bad_input_is_refused_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput, match=field):
        late_payment_penalty(**kwargs)  # type: ignore[arg-type]


def test_money_as_int_or_str_is_accepted() -> None:
    assert late_payment_penalty(100000, 1) == Decimal("50.00")  # type: ignore[arg-type]
    assert late_payment_penalty("100000", 1) == Decimal("50.00")  # type: ignore[arg-type]
