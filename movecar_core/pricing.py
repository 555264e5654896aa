"""Tiered piecework pricing (阶梯计价) and the monthly settlement of a service year.

Contract 三 (结算标准与方式):

    根据【当年话务总量】采取计件制结算【阶梯计价】
    150 万单以下（不含 150 万单）                      1.90 元/次
    150 万单-300 万单（含 150 万单，不含 300 万单）     1.85 元/次
    300 万单以上（含 300 万单）                         1.75 元/次
    运营服务费=114 移车服务成功接通话务量 * 阶梯计价单价（1.75~1.90）元/次通话
    甲方按 114 移车服务成功接通话务量，按月向乙方支付运营服务费
    本合同服务周期之前的服务内容，按本合同结算标准计算，话务量数量累计本次服务合同内。

Two readings of the tiers are supported (:class:`TierMode`); ``VOLUME`` is the default because
the contract prices by the year's total ("根据当年话务总量"). Under ``VOLUME`` the annual fee
*drops* when a boundary is crossed (1,499,999 calls cost 2,849,998.10 yuan, 1,500,000 calls
2,775,000.00); :func:`cliffs` reports every such drop for any contract.

What one billable call is ("成功接通话务量") is :class:`BillableCallPolicy`.

Money is :class:`~decimal.Decimal` yuan. A fee is quantized to the fen (0.01, ROUND_HALF_UP)
once, at the end, and only matters when a contract's price has more than two decimals: the
seed's prices times an integer count are already exact to the fen.
"""

from __future__ import annotations

import bisect
import datetime as dt
import enum
from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_UP, Decimal

import attrs

from movecar_core.calendar import SHANGHAI
from movecar_core.contract import WUJIN_114_2024, Contract, Tier
from movecar_core.errors import InvalidInput

FEN = Decimal("0.01")
_ZERO = Decimal("0.00")
#: The months of one service year ("有效期一年", 一(三)).
MONTHS_PER_YEAR = 12
#: The most calls one service year can hold: about three a second, day and night, all year,
#: twenty times the top tier's threshold (三 "300 万单以上"). Larger is a typo (a zero too
#: many), refused rather than priced.
MAX_ANNUAL_VOLUME = 100_000_000


def to_fen(amount: Decimal) -> Decimal:
    """``amount`` quantized to the fen with ROUND_HALF_UP (exact amounts are unchanged)."""
    return amount.quantize(FEN, rounding=ROUND_HALF_UP)


class TierMode(enum.Enum):
    """How the tiers of 阶梯计价 turn a year's volume into a fee."""

    #: Every call of the year at the price of the tier the year's total falls in (default:
    #: "根据当年话务总量 ... 阶梯计价"). The annual fee drops at each boundary (see :func:`cliffs`).
    VOLUME = "volume"
    #: Each call at the price of the tier its running count falls in (like income tax
    #: brackets): the n-th call costs :func:`unit_price` of n; the fee strictly increases.
    GRADUATED = "graduated"


class BillableCallPolicy(enum.Enum):
    """What one billable call ("114 移车服务成功接通话务量") is."""

    #: An inbound move-car call that was connected to a 114 seat (default: the volume Party B
    #: reports under 二(七) "呼入、接通" and that 三 prices as 成功接通话务量).
    INBOUND_CONNECTED_TO_SEAT = "inbound_connected_to_seat"
    #: An outbound call to a vehicle owner that was answered (connected).
    OUTBOUND_CONNECTED = "outbound_connected"


class CallDirection(enum.Enum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


# --- validation -------------------------------------------------------------------------


def _volume(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{field}={value!r} must be an integer number of calls")
    if value < 0:
        raise InvalidInput(f"{field}={value!r} must not be negative")
    if value > MAX_ANNUAL_VOLUME:
        raise InvalidInput(
            f"{field}={value:,} is more than a service year can hold ({MAX_ANNUAL_VOLUME:,})"
        )
    return value


def _mode(value: object) -> TierMode:
    if not isinstance(value, TierMode):
        raise InvalidInput(f"mode={value!r} is not a TierMode (VOLUME or GRADUATED)")
    return value


# --- prices -----------------------------------------------------------------------------


def tier_for(annual_volume: int, contract: Contract = WUJIN_114_2024) -> Tier:
    """The tier whose ``[lower, upper)`` contains ``annual_volume``.

    Boundaries are half-open as the contract writes them: 1,500,000 is in the 1.85 tier
    ("含 150 万单"), 1,499,999 in the 1.90 tier ("不含 150 万单").
    """
    volume = _volume("annual_volume", annual_volume)
    tiers = contract.tiers
    index = bisect.bisect_right([t.lower for t in tiers], volume) - 1
    return tiers[index]


def unit_price(annual_volume: int, contract: Contract = WUJIN_114_2024) -> Decimal:
    """The price per call, in yuan, for a year whose total volume is ``annual_volume``.

    0 to 1,499,999 calls: 1.90; 1,500,000 to 2,999,999: 1.85; 3,000,000 and more: 1.75.
    """
    return tier_for(annual_volume, contract).price


def annual_fee(
    annual_volume: int, mode: TierMode = TierMode.VOLUME, contract: Contract = WUJIN_114_2024
) -> Decimal:
    """The fee, in yuan to the fen, for a service year of ``annual_volume`` billable calls.

    "运营服务费=114 移车服务成功接通话务量 * 阶梯计价单价". ``VOLUME``: every call at
    :func:`unit_price` of the total. ``GRADUATED``: each call at the price of the tier its
    running count falls in, so ``G(v + 1) - G(v)`` is the price of call ``v + 1``.
    """
    volume = _volume("annual_volume", annual_volume)
    mode = _mode(mode)
    if mode is TierMode.VOLUME:
        return to_fen(volume * unit_price(volume, contract))
    # The n-th call of the year (n = 1, 2, ...) costs the price of the tier containing n: the
    # call that brings the running count to 1,500,000 is the first at 1.85 ("含 150 万单").
    total = Decimal(0)
    for tier in contract.tiers:
        first = max(tier.lower, 1)
        if volume < first:
            break
        last = volume if tier.upper is None else min(volume, tier.upper - 1)
        if last >= first:  # a tier [0, 1) holds no call number
            total += (last - first + 1) * tier.price
    return to_fen(total)


def price_of_call(number: int, contract: Contract = WUJIN_114_2024) -> Decimal:
    """Under ``GRADUATED``, the price of the ``number``-th call of the year (1-based).

    It is the price of the tier the running count ``number`` falls in, so
    ``annual_fee(v + 1, GRADUATED) - annual_fee(v, GRADUATED) == price_of_call(v + 1)``.
    """
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise InvalidInput(f"number={number!r} must be a call number from 1")
    return unit_price(number, contract)


# --- the VOLUME cliff -------------------------------------------------------------------


@attrs.frozen
class Cliff:
    """A tier boundary at which the ``VOLUME`` annual fee drops.

    ``boundary - 1`` calls cost ``fee_below``, ``boundary`` calls cost ``fee_at``, which is
    ``drop`` less. Every volume from ``first_costlier`` to ``boundary - 1`` costs more than
    ``boundary`` calls do (for the seed's 1,500,000 boundary: 1,460,527 to 1,499,999).
    """

    boundary: int
    price_below: Decimal
    price_at: Decimal
    fee_below: Decimal
    fee_at: Decimal
    drop: Decimal
    first_costlier: int


def cliffs(contract: Contract = WUJIN_114_2024) -> tuple[Cliff, ...]:
    """Every tier boundary where the ``VOLUME`` annual fee drops, and by how much.

    A boundary where the next tier's price is not lower (so the fee does not drop) is left
    out. ``GRADUATED`` has no cliff: its fee is strictly increasing.
    """
    found: list[Cliff] = []
    for below, above in zip(contract.tiers, contract.tiers[1:], strict=False):
        boundary = above.lower
        fee_at = annual_fee(boundary, TierMode.VOLUME, contract)
        fee_below = annual_fee(boundary - 1, TierMode.VOLUME, contract)
        if fee_below <= fee_at:
            continue
        # smallest v in [below.lower, boundary) with fee(v) > fee_at; fee is monotone there.
        low, high = below.lower, boundary - 1
        while low < high:
            middle = (low + high) // 2
            if annual_fee(middle, TierMode.VOLUME, contract) > fee_at:
                high = middle
            else:
                low = middle + 1
        found.append(
            Cliff(
                boundary=boundary,
                price_below=below.price,
                price_at=above.price,
                fee_below=fee_below,
                fee_at=fee_at,
                drop=fee_below - fee_at,
                first_costlier=low,
            )
        )
    return tuple(found)


# --- billable calls ---------------------------------------------------------------------


@attrs.frozen
class CallCounts:
    """A period's call counts, as Party B reports them (二(七) "呼入、接通")."""

    inbound_offered: int = attrs.field(default=0)
    inbound_connected: int = attrs.field(default=0)
    outbound_placed: int = attrs.field(default=0)
    outbound_connected: int = attrs.field(default=0)

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(CallCounts):
            _volume(field.name, getattr(self, field.name))
        if self.inbound_connected > self.inbound_offered:
            raise InvalidInput(
                f"inbound_connected={self.inbound_connected} exceeds "
                f"inbound_offered={self.inbound_offered}"
            )
        if self.outbound_connected > self.outbound_placed:
            raise InvalidInput(
                f"outbound_connected={self.outbound_connected} exceeds "
                f"outbound_placed={self.outbound_placed}"
            )


def billable_from_counts(
    counts: CallCounts,
    policy: BillableCallPolicy = BillableCallPolicy.INBOUND_CONNECTED_TO_SEAT,
) -> int:
    """The billable calls in ``counts`` under ``policy``."""
    if policy is BillableCallPolicy.INBOUND_CONNECTED_TO_SEAT:
        return counts.inbound_connected
    if policy is BillableCallPolicy.OUTBOUND_CONNECTED:
        return counts.outbound_connected
    raise InvalidInput(f"policy={policy!r} is not a BillableCallPolicy")


@attrs.frozen
class CallRecord:
    """One call, as the telephony platform logs it.

    ``connected`` means connected to a 114 seat for an inbound call and answered by the owner
    for an outbound call. ``started_at`` is timezone-aware.
    """

    direction: CallDirection
    connected: bool
    started_at: dt.datetime


def is_billable(
    record: CallRecord,
    policy: BillableCallPolicy = BillableCallPolicy.INBOUND_CONNECTED_TO_SEAT,
) -> bool:
    """Whether ``record`` is one billable call under ``policy``."""
    if policy is BillableCallPolicy.INBOUND_CONNECTED_TO_SEAT:
        return record.connected and record.direction is CallDirection.INBOUND
    if policy is BillableCallPolicy.OUTBOUND_CONNECTED:
        return record.connected and record.direction is CallDirection.OUTBOUND
    raise InvalidInput(f"policy={policy!r} is not a BillableCallPolicy")


def count_billable(
    records: Iterable[CallRecord],
    policy: BillableCallPolicy = BillableCallPolicy.INBOUND_CONNECTED_TO_SEAT,
) -> int:
    """How many of ``records`` are billable under ``policy``."""
    if not isinstance(policy, BillableCallPolicy):
        raise InvalidInput(f"policy={policy!r} is not a BillableCallPolicy")
    direction = (
        CallDirection.INBOUND
        if policy is BillableCallPolicy.INBOUND_CONNECTED_TO_SEAT
        else CallDirection.OUTBOUND
    )
    return sum(1 for r in records if r.connected and r.direction is direction)


def monthly_billable(
    records: Iterable[CallRecord],
    year_start: dt.date,
    policy: BillableCallPolicy = BillableCallPolicy.INBOUND_CONNECTED_TO_SEAT,
    months: int = MONTHS_PER_YEAR,
) -> tuple[int, ...]:
    """Billable calls per month of the service year that starts on ``year_start``.

    Months are calendar months in Asia/Shanghai counted from ``year_start`` (which must be the
    first of a month, as 2024-04-01 is). A record outside the ``months`` months raises
    :class:`InvalidInput` naming its time; a naive ``started_at`` is refused too.
    """
    if isinstance(year_start, dt.datetime) or not isinstance(year_start, dt.date):
        raise InvalidInput(f"year_start={year_start!r} is not a date")
    if year_start.day != 1:
        raise InvalidInput(f"year_start={year_start} is not the first day of a month")
    if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= 120:
        raise InvalidInput(f"months={months!r} must be an integer from 1 to 120")
    if not isinstance(policy, BillableCallPolicy):
        raise InvalidInput(f"policy={policy!r} is not a BillableCallPolicy")
    direction = (
        CallDirection.INBOUND
        if policy is BillableCallPolicy.INBOUND_CONNECTED_TO_SEAT
        else CallDirection.OUTBOUND
    )
    bounds: list[dt.datetime] = []
    year, month = year_start.year, year_start.month
    for _ in range(months + 1):
        bounds.append(dt.datetime(year, month, 1, tzinfo=SHANGHAI))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    counts = [0] * months
    first, last = bounds[0], bounds[-1]
    locate = bisect.bisect_right
    for record in records:
        if not (record.connected and record.direction is direction):
            continue
        at = record.started_at
        if at.tzinfo is None:
            raise InvalidInput(f"started_at={at!r} is naive; give a timezone-aware datetime")
        if not first <= at < last:
            raise InvalidInput(
                f"started_at={at.isoformat()} is outside the {months} months from {year_start}"
            )
        counts[locate(bounds, at) - 1] += 1
    return tuple(counts)


# --- the monthly settlement of a service year -------------------------------------------


@attrs.frozen
class MonthFee:
    """One month's provisional fee (按月支付).

    ``VOLUME``: ``calls`` at the price of the year-to-date volume ``ytd_after`` (``unit_price``).
    ``GRADUATED``: ``annual_fee(ytd_after) - annual_fee(ytd_before)``; ``unit_price`` is the
    price of the month's last call.
    """

    index: int
    calls: int
    ytd_before: int
    ytd_after: int
    unit_price: Decimal
    provisional_fee: Decimal


@attrs.frozen
class YearSettlement:
    """The settlement of one service year, month by month, with the year-end true-up.

    ``carried_in`` calls (service before the contract period, 三 last paragraph) are billed at
    the contract's rates as an opening line (``carried_in_fee``) and count toward the year's
    tier. ``provisional_total + true_up == annual_fee`` always; ``true_up`` is negative when
    Party B is owed less than was paid month by month (a credit to Party A). ``true_up`` and
    ``annual_fee`` are ``None`` while the year is not closed.
    """

    mode: TierMode
    carried_in: int
    carried_in_fee: Decimal
    months: tuple[MonthFee, ...]
    total_volume: int
    provisional_total: Decimal
    closed: bool
    annual_fee: Decimal | None
    true_up: Decimal | None


def settle_year(
    monthly_calls: Sequence[int],
    carried_in: int = 0,
    mode: TierMode = TierMode.VOLUME,
    contract: Contract = WUJIN_114_2024,
    *,
    closed: bool = True,
) -> YearSettlement:
    """Settle a service year from its months' billable calls, in order.

    Each month gets a provisional fee: under ``VOLUME`` the month's calls at the price of the
    year-to-date volume (carried-in volume included); under ``GRADUATED``
    ``annual_fee(ytd after) - annual_fee(ytd before)``. With ``closed`` (the year has ended)
    the true-up is ``annual_fee(total) - provisional_total``, so the year's payments add up to
    exactly :func:`annual_fee` of the year's total. At most 12 months ("有效期一年"); a year cut
    short (八(三) force majeure) may have fewer.
    """
    mode = _mode(mode)
    carried = _volume("carried_in", carried_in)
    if isinstance(monthly_calls, (str, bytes)) or not isinstance(monthly_calls, Sequence):
        raise InvalidInput(f"monthly_calls={monthly_calls!r} must be a sequence of counts")
    if len(monthly_calls) > MONTHS_PER_YEAR * contract.term_years:
        raise InvalidInput(
            f"monthly_calls has {len(monthly_calls)} months; a service year has at most "
            f"{MONTHS_PER_YEAR * contract.term_years}"
        )
    counts = [_volume(f"monthly_calls[{i}]", c) for i, c in enumerate(monthly_calls)]

    def provisional(before: int, after: int) -> tuple[Decimal, Decimal]:
        if mode is TierMode.VOLUME:
            price = unit_price(after, contract)
            return price, to_fen((after - before) * price)
        last_price = unit_price(after, contract)
        fee = annual_fee(after, mode, contract) - annual_fee(before, mode, contract)
        return last_price, fee

    _, carried_fee = provisional(0, carried)
    ytd = carried
    lines: list[MonthFee] = []
    for index, calls in enumerate(counts, start=1):
        price, fee = provisional(ytd, ytd + calls)
        lines.append(MonthFee(index, calls, ytd, ytd + calls, price, fee))
        ytd += calls
    provisional_total = carried_fee + sum((m.provisional_fee for m in lines), _ZERO)
    total_fee = annual_fee(ytd, mode, contract) if closed else None
    return YearSettlement(
        mode=mode,
        carried_in=carried,
        carried_in_fee=carried_fee,
        months=tuple(lines),
        total_volume=ytd,
        provisional_total=provisional_total,
        closed=closed,
        annual_fee=total_fee,
        true_up=None if total_fee is None else total_fee - provisional_total,
    )
