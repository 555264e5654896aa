"""Tiered pricing (三 阶梯计价), the VOLUME cliff, billable calls and the monthly settlement."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import attrs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from movecar_core.calendar import SHANGHAI
from movecar_core.contract import WUJIN_114_2024, Contract, Tier
from movecar_core.errors import InvalidContract, InvalidInput
from movecar_core.pricing import (
    BillableCallPolicy,
    CallCounts,
    CallDirection,
    CallRecord,
    TierMode,
    annual_fee,
    billable_from_counts,
    cliffs,
    count_billable,
    is_billable,
    monthly_billable,
    price_of_call,
    settle_year,
    tier_for,
    unit_price,
)

FEN = Decimal("0.01")
BOUNDARIES = (1_499_999, 1_500_000, 2_999_999, 3_000_000)

volumes = st.integers(min_value=0, max_value=12_000_000)
modes = st.sampled_from(list(TierMode))


@st.composite
def contracts(draw: st.DrawFn) -> Contract:
    """Contracts with 1-4 contiguous tiers and non-increasing two-decimal prices."""
    n = draw(st.integers(1, 4))
    cuts = sorted(draw(st.sets(st.integers(1, 5_000_000), min_size=n - 1, max_size=n - 1)))
    cents = sorted(draw(st.lists(st.integers(1, 500), min_size=n, max_size=n)), reverse=True)
    lowers = [0, *cuts]
    uppers: list[int | None] = [*cuts, None]
    tiers = tuple(
        Tier(lo, hi, str(Decimal(c) / 100)) for lo, hi, c in zip(lowers, uppers, cents, strict=True)
    )
    return attrs.evolve(WUJIN_114_2024, tiers=tiers)


# --- the seed's tiers, both sides of every boundary --------------------------------------


@pytest.mark.parametrize(
    ("volume", "price", "volume_fee", "graduated_fee"),
    [
        (0, "1.90", "0.00", "0.00"),
        (1, "1.90", "1.90", "1.90"),
        (1_499_999, "1.90", "2849998.10", "2849998.10"),
        (1_500_000, "1.85", "2775000.00", "2849999.95"),
        (1_500_001, "1.85", "2775001.85", "2850001.80"),
        (2_999_999, "1.85", "5549998.15", "5624998.10"),
        (3_000_000, "1.75", "5250000.00", "5624999.85"),
        (3_000_001, "1.75", "5250001.75", "5625001.60"),
    ],
)
def test_seed_tiers_on_both_sides_of_each_boundary(
    volume: int, price: str, volume_fee: str, graduated_fee: str
) -> None:
    assert unit_price(volume) == Decimal(price)
    assert annual_fee(volume) == Decimal(volume_fee)
    assert annual_fee(volume, TierMode.VOLUME) == Decimal(volume_fee)
    assert annual_fee(volume, TierMode.GRADUATED) == Decimal(graduated_fee)


def test_volume_is_the_default_mode_and_the_cliff_is_real() -> None:
    # 1,499,999 calls cost more than 1,500,000 calls under VOLUME.
    assert annual_fee(1_499_999) > annual_fee(1_500_000)
    assert annual_fee(2_999_999) > annual_fee(3_000_000)


def test_seed_cliffs_are_reported_with_their_size_and_dead_zone() -> None:
    first, second = cliffs()
    assert first.boundary == 1_500_000
    assert (first.price_below, first.price_at) == (Decimal("1.90"), Decimal("1.85"))
    assert first.drop == Decimal("74998.10")
    # 1,460,526 x 1.90 = 2,774,999.40 <= 2,775,000 < 1,460,527 x 1.90 = 2,775,001.30
    assert first.first_costlier == 1_460_527
    assert second.boundary == 3_000_000
    assert second.drop == Decimal("299998.15")
    assert second.first_costlier == 2_837_838


@settings(max_examples=60, deadline=None)
@given(contracts())
def test_cliffs_for_any_contract(contract: Contract) -> None:
    reported = {c.boundary: c for c in cliffs(contract)}
    for below, above in zip(contract.tiers, contract.tiers[1:], strict=False):
        b = above.lower
        drops = annual_fee(b - 1, contract=contract) > annual_fee(b, contract=contract)
        assert (b in reported) == drops
        if not drops:
            continue
        cliff = reported[b]
        assert cliff.drop == annual_fee(b - 1, contract=contract) - annual_fee(b, contract=contract)
        assert cliff.drop > 0
        assert annual_fee(cliff.first_costlier, contract=contract) > cliff.fee_at
        if cliff.first_costlier > below.lower:
            assert annual_fee(cliff.first_costlier - 1, contract=contract) <= cliff.fee_at


def test_graduated_has_no_cliff_and_tier_for_is_half_open() -> None:
    assert tier_for(1_499_999).upper == 1_500_000
    assert tier_for(1_500_000).lower == 1_500_000
    assert tier_for(3_000_000).upper is None
    for b in (1_500_000, 3_000_000):
        assert annual_fee(b, TierMode.GRADUATED) > annual_fee(b - 1, TierMode.GRADUATED)


# --- properties ---------------------------------------------------------------------------


@given(volumes, volumes)
@example(1_499_999, 1_500_000)
@example(2_999_999, 3_000_000)
@example(0, 1)
def test_graduated_is_monotone(v: int, w: int) -> None:
    low, high = sorted((v, w))
    if low < high:
        assert annual_fee(low, TierMode.GRADUATED) < annual_fee(high, TierMode.GRADUATED)
    else:
        assert annual_fee(low, TierMode.GRADUATED) == annual_fee(high, TierMode.GRADUATED)


@given(volumes)
@example(0)
@example(1_499_998)
@example(1_499_999)
@example(1_500_000)
@example(2_999_998)
@example(2_999_999)
@example(3_000_000)
def test_graduated_increment_is_the_price_of_the_next_call(v: int) -> None:
    step = annual_fee(v + 1, TierMode.GRADUATED) - annual_fee(v, TierMode.GRADUATED)
    assert step == price_of_call(v + 1) == unit_price(v + 1)


@settings(max_examples=60, deadline=None)
@given(contracts(), st.integers(0, 6_000_000))
def test_graduated_increment_for_any_contract(contract: Contract, v: int) -> None:
    step = annual_fee(v + 1, TierMode.GRADUATED, contract) - annual_fee(
        v, TierMode.GRADUATED, contract
    )
    assert step == price_of_call(v + 1, contract)


@given(volumes, volumes)
@example(1_499_999, 1_500_000)
@example(2_999_999, 3_000_000)
def test_volume_unit_price_never_rises(v: int, w: int) -> None:
    low, high = sorted((v, w))
    assert unit_price(high) <= unit_price(low)


@settings(max_examples=60, deadline=None)
@given(contracts(), st.integers(0, 6_000_000), st.integers(0, 6_000_000))
def test_volume_unit_price_never_rises_for_any_contract(contract: Contract, v: int, w: int) -> None:
    low, high = sorted((v, w))
    assert unit_price(high, contract) <= unit_price(low, contract)


@given(volumes, modes)
@example(1_499_999, TierMode.VOLUME)
@example(1_500_000, TierMode.VOLUME)
@example(2_999_999, TierMode.VOLUME)
@example(3_000_000, TierMode.VOLUME)
def test_every_fee_is_exact_to_the_fen(v: int, mode: TierMode) -> None:
    fee = annual_fee(v, mode)
    assert fee == fee.quantize(FEN)
    assert fee.as_tuple().exponent == -2
    if mode is TierMode.VOLUME:
        assert fee == v * unit_price(v)  # no rounding happened: the seed's prices are exact


def test_a_price_with_more_decimals_is_rounded_half_up_once() -> None:
    contract = attrs.evolve(WUJIN_114_2024, tiers=(Tier(0, None, "1.005"),))
    assert annual_fee(1, contract=contract) == Decimal("1.01")  # half-up, not half-even
    assert annual_fee(3, contract=contract) == Decimal("3.02")  # 3.015, rounded once
    assert annual_fee(3, TierMode.GRADUATED, contract) == Decimal("3.02")


@given(st.lists(st.integers(0, 600_000), max_size=12), st.integers(0, 4_000_000), modes)
@example([1_499_999, 1], 0, TierMode.VOLUME)
@example([1_500_000], 0, TierMode.VOLUME)
@example([2_999_999, 1], 0, TierMode.VOLUME)
@example([1, 1], 1_499_998, TierMode.GRADUATED)
@example([], 3_000_000, TierMode.VOLUME)
def test_provisional_plus_true_up_is_the_annual_fee(
    months: list[int], carried_in: int, mode: TierMode
) -> None:
    result = settle_year(months, carried_in=carried_in, mode=mode)
    total = carried_in + sum(months)
    assert result.total_volume == total
    assert result.annual_fee == annual_fee(total, mode)
    assert result.true_up is not None
    assert result.provisional_total + result.true_up == annual_fee(total, mode)
    assert result.provisional_total == result.carried_in_fee + sum(
        (m.provisional_fee for m in result.months), Decimal(0)
    )
    if mode is TierMode.GRADUATED:
        assert result.true_up == 0  # the provisional fees telescope
    else:
        assert result.true_up <= 0  # the price never rises, so months were never underpaid


@given(st.lists(st.integers(0, 600_000), min_size=1, max_size=12), st.integers(0, 4_000_000))
def test_volume_provisional_fee_uses_the_year_to_date_price(
    months: list[int], carried_in: int
) -> None:
    result = settle_year(months, carried_in=carried_in)
    ytd = carried_in
    for line, calls in zip(result.months, months, strict=True):
        assert (line.ytd_before, line.ytd_after) == (ytd, ytd + calls)
        ytd += calls
        assert line.unit_price == unit_price(ytd)
        assert line.provisional_fee == calls * unit_price(ytd)


@given(st.lists(st.integers(0, 600_000), max_size=12), st.integers(0, 4_000_000), modes)
def test_the_same_input_gives_the_same_bill(
    months: list[int], carried: int, mode: TierMode
) -> None:
    first = settle_year(months, carried_in=carried, mode=mode)
    again = settle_year(list(months), carried_in=carried, mode=mode)
    assert first == again
    assert annual_fee(carried, mode) == annual_fee(carried, mode)


def test_monthly_settlement_of_a_worked_year() -> None:
    # 12 months of 300,000 calls, 100,000 carried in from before 2024-04-01.
    result = settle_year([300_000] * 12, carried_in=100_000)
    assert result.carried_in_fee == Decimal("190000.00")
    assert result.months[0].provisional_fee == Decimal("570000.00")  # 400,000 ytd -> 1.90
    assert result.months[4].unit_price == Decimal("1.85")  # 1,600,000 ytd
    assert result.months[9].unit_price == Decimal("1.75")  # 3,100,000 ytd
    assert result.annual_fee == Decimal("6475000.00")  # 3,700,000 x 1.75
    assert result.true_up == Decimal("-345000.00")


def test_an_open_year_has_no_true_up() -> None:
    result = settle_year([10, 20], closed=False)
    assert result.true_up is None
    assert result.annual_fee is None
    assert result.provisional_total == Decimal("57.00")


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, 1.0, True, "10", None])
def test_bad_volume_is_refused_naming_the_field(bad: object) -> None:
    with pytest.raises(InvalidInput, match="annual_volume"):
        unit_price(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="annual_volume"):
        annual_fee(bad)  # type: ignore[arg-type]


def test_bad_settlement_input_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"monthly_calls\[1\]"):
        settle_year([1, -5])
    with pytest.raises(InvalidInput, match="carried_in"):
        settle_year([1], carried_in=-1)
    with pytest.raises(InvalidInput, match="13 months"):
        settle_year([1] * 13)
    with pytest.raises(InvalidInput, match="mode"):
        annual_fee(1, "graduated")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="number"):
        price_of_call(0)


def test_tiers_are_validated() -> None:
    with pytest.raises(InvalidContract, match="gap or overlap"):
        attrs.evolve(WUJIN_114_2024, tiers=(Tier(0, 10, "2"), Tier(11, None, "1")))
    with pytest.raises(InvalidContract, match="gap or overlap"):
        attrs.evolve(WUJIN_114_2024, tiers=(Tier(0, 10, "2"), Tier(9, None, "1")))
    with pytest.raises(InvalidContract, match="float"):
        Tier(0, None, 1.9)
    with pytest.raises(InvalidContract, match="open"):
        attrs.evolve(WUJIN_114_2024, tiers=(Tier(0, 10, "2"),))


# --- billable calls -----------------------------------------------------------------------


def test_billable_policy_from_counts() -> None:
    counts = CallCounts(
        inbound_offered=120, inbound_connected=100, outbound_placed=90, outbound_connected=70
    )
    assert billable_from_counts(counts) == 100
    assert billable_from_counts(counts, BillableCallPolicy.INBOUND_CONNECTED_TO_SEAT) == 100
    assert billable_from_counts(counts, BillableCallPolicy.OUTBOUND_CONNECTED) == 70
    with pytest.raises(InvalidInput, match="inbound_connected"):
        CallCounts(inbound_offered=1, inbound_connected=2)
    with pytest.raises(InvalidInput, match="outbound_placed"):
        CallCounts(outbound_placed=-1)


def _at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def test_billable_policy_from_records() -> None:
    t = _at(2024, 4, 2, 9)
    records = [
        CallRecord(CallDirection.INBOUND, True, t),
        CallRecord(CallDirection.INBOUND, False, t),
        CallRecord(CallDirection.OUTBOUND, True, t),
        CallRecord(CallDirection.OUTBOUND, True, t),
        CallRecord(CallDirection.OUTBOUND, False, t),
    ]
    assert count_billable(records) == 1
    assert count_billable(records, BillableCallPolicy.OUTBOUND_CONNECTED) == 2
    assert [is_billable(r) for r in records] == [True, False, False, False, False]


def test_monthly_billable_buckets_by_shanghai_month() -> None:
    utc = dt.UTC
    records = [
        CallRecord(CallDirection.INBOUND, True, _at(2024, 4, 1, 0, 0)),
        # 2024-04-30 16:30 UTC is 2024-05-01 00:30 in Shanghai: May, not April.
        CallRecord(CallDirection.INBOUND, True, dt.datetime(2024, 4, 30, 16, 30, tzinfo=utc)),
        CallRecord(CallDirection.INBOUND, True, dt.datetime(2024, 4, 30, 15, 59, tzinfo=utc)),
        CallRecord(CallDirection.INBOUND, True, _at(2025, 3, 31, 23, 59)),
        CallRecord(CallDirection.INBOUND, False, _at(2024, 6, 1)),
    ]
    counts = monthly_billable(records, dt.date(2024, 4, 1))
    assert counts == (2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)
    with pytest.raises(InvalidInput, match="outside"):
        monthly_billable(
            [CallRecord(CallDirection.INBOUND, True, _at(2025, 4, 1))], dt.date(2024, 4, 1)
        )
    with pytest.raises(InvalidInput, match="naive"):
        monthly_billable(
            [CallRecord(CallDirection.INBOUND, True, dt.datetime(2024, 5, 1))], dt.date(2024, 4, 1)
        )
    with pytest.raises(InvalidInput, match="first day"):
        monthly_billable([], dt.date(2024, 4, 2))


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(CallDirection)),
            st.booleans(),
            st.integers(0, 365 * 24 * 60 - 1),
        ),
        max_size=60,
    )
)
def test_monthly_billable_adds_up_to_count_billable(
    raw: list[tuple[CallDirection, bool, int]],
) -> None:
    start = _at(2024, 4, 1)
    records = [CallRecord(d, c, start + dt.timedelta(minutes=m)) for d, c, m in raw]
    for policy in BillableCallPolicy:
        assert sum(monthly_billable(records, dt.date(2024, 4, 1), policy)) == count_billable(
            records, policy
        )
