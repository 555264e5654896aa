"""Penalties (违约金) of contract section 五 (违约责任).

- 五(一) "任何一方出现违约，违约方应承担违约金壹拾万元整，同时赔偿守约方实际损失。"
  → :func:`breach_liability`: 100,000 yuan plus the actual loss.
- 五(二) "甲方无正当理由逾期付款时，应按照逾期交款额的万分之五/天标准累计计算向乙方支付违约金
  （不超过总金额的 30%）。" → :func:`late_payment_penalty`.
- 五(二) "乙方未按要求 24 小时提供挪车服务，乙方按万分之五/天向甲方支付违约金（不超过总金额的
  30%）。" → :func:`service_gap_penalty`, :func:`service_gap_days` and
  :func:`service_gap_dates`.
- 五(三) "如发现有弄虚作假的，甲方有权不向乙方支付当月服务费。" → :func:`month_payable`.

"总金额" (the total the 30 % cap applies to) is ambiguous: :class:`CapBase` makes it a policy,
the overdue amount by default (the amount the same sentence is about), the contract total as
the alternative. Every penalty is computed exactly and rounded once, at the end, to the fen
with ROUND_HALF_UP.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal

import attrs

from movecar_core.calendar import SHANGHAI
from movecar_core.contract import WUJIN_114_2024, Contract
from movecar_core.errors import InvalidInput

FEN = Decimal("0.01")


def _money(field: str, value: object) -> Decimal:
    """A non-negative, finite amount of yuan given as Decimal, int or str (never float)."""
    if isinstance(value, (bool, float)):
        raise InvalidInput(f"{field}={value!r}: give money as Decimal, int or str, not float")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, (int, str)):
        try:
            amount = Decimal(value)
        except ArithmeticError as exc:
            raise InvalidInput(f"{field}={value!r} is not a decimal amount") from exc
    else:
        raise InvalidInput(f"{field}={value!r} is not an amount of money")
    if not amount.is_finite():
        raise InvalidInput(f"{field}={value!r} is not a finite amount")
    if amount < 0:
        raise InvalidInput(f"{field}={value!r} must not be negative")
    return amount


def _days(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{field}={value!r} must be an integer number of days")
    if value < 0:
        raise InvalidInput(f"{field}={value!r} must not be negative")
    return value


def _round(amount: Decimal) -> Decimal:
    return amount.quantize(FEN, rounding=ROUND_HALF_UP)


class CapBase(enum.Enum):
    """What "总金额" in "不超过总金额的 30%" means."""

    #: The overdue amount itself (default): the sentence is about "逾期交款额".
    OVERDUE_AMOUNT = "overdue_amount"
    #: The contract's total amount (e.g. the year's fees), given by the caller.
    CONTRACT_TOTAL = "contract_total"


def cap_base_for(
    policy: CapBase, *, overdue: Decimal, contract_total: Decimal | None = None
) -> Decimal:
    """The amount the 30 % cap applies to under ``policy``.

    ``CONTRACT_TOTAL`` needs ``contract_total``; a missing one raises :class:`InvalidInput`
    rather than falling back silently.
    """
    if policy is CapBase.OVERDUE_AMOUNT:
        return _money("overdue", overdue)
    if policy is CapBase.CONTRACT_TOTAL:
        if contract_total is None:
            raise InvalidInput("contract_total=None: CapBase.CONTRACT_TOTAL needs the total")
        return _money("contract_total", contract_total)
    raise InvalidInput(f"policy={policy!r} is not a CapBase")


def _capped_daily(
    amount: Decimal, days: int, rate: Decimal, cap_base: Decimal, cap_ratio: Decimal
) -> Decimal:
    return _round(min(amount * rate * days, cap_base * cap_ratio))


def late_payment_penalty(
    overdue: Decimal,
    days: int,
    cap_base: Decimal | None = None,
    *,
    contract: Contract = WUJIN_114_2024,
) -> Decimal:
    """Party A's penalty for paying ``overdue`` yuan ``days`` days late (五(二)).

    "按照逾期交款额的万分之五/天标准累计计算 ...（不超过总金额的 30%）": ``overdue`` x 0.0005 x
    ``days``, capped at 30 % of ``cap_base`` (the overdue amount when ``None``, see
    :class:`CapBase`), rounded once to the fen. Days are counted from the day after the due
    date (Civil Code art. 201). Example: 100,000.00 yuan 10 days late is 500.00 yuan.
    """
    amount = _money("overdue", overdue)
    count = _days("days", days)
    base = amount if cap_base is None else _money("cap_base", cap_base)
    return _capped_daily(
        amount, count, contract.late_payment_daily_rate, base, contract.late_payment_cap_ratio
    )


def late_payment_penalty_segments(
    segments: Iterable[tuple[Decimal, int]],
    cap_base: Decimal,
    *,
    contract: Contract = WUJIN_114_2024,
) -> Decimal:
    """The penalty for several overdue amounts of one debt, each late some days.

    For a debt paid in parts, each part ``(amount, days_late)`` accrues 0.0005 per day; the
    sum is capped once at 30 % of ``cap_base`` and rounded once.
    """
    base = _money("cap_base", cap_base)
    total = Decimal(0)
    for i, (amount, days) in enumerate(segments):
        total += _money(f"segments[{i}].amount", amount) * _days(f"segments[{i}].days", days)
    return _round(
        min(total * contract.late_payment_daily_rate, base * contract.late_payment_cap_ratio)
    )


def service_gap_penalty(
    base: Decimal,
    days: int,
    cap_base: Decimal | None = None,
    *,
    contract: Contract = WUJIN_114_2024,
) -> Decimal:
    """Party B's penalty for ``days`` days without the 24-hour service (五(二)).

    "乙方未按要求 24 小时提供挪车服务，乙方按万分之五/天向甲方支付违约金（不超过总金额的 30%）":
    ``base`` x 0.0005 x ``days``, capped at 30 % of ``cap_base`` (``base`` when ``None``),
    rounded once to the fen. The clause does not say what the 0.05 % is of; the caller passes
    it as ``base`` (documented default: the fee of the month in which the gap occurred).
    """
    amount = _money("base", base)
    count = _days("days", days)
    cap = amount if cap_base is None else _money("cap_base", cap_base)
    return _capped_daily(
        amount, count, contract.service_gap_daily_rate, cap, contract.service_gap_cap_ratio
    )


def service_gap_dates(outages: Iterable[tuple[dt.datetime, dt.datetime]]) -> frozenset[dt.date]:
    """The Asia/Shanghai calendar days touched by at least one outage: the one definition
    of a day without the 24-hour service (五(二)).

    A day on which the service was down at any moment is a day the 24-hour service was not
    provided ("未按要求 24 小时提供挪车服务"). Each outage is ``[start, end)`` with aware
    datetimes; overlapping outages on the same day give that day once. The outage
    incidents (:func:`movecar_core.incidents.interrupted_days`) mark days with this.
    """
    days: set[dt.date] = set()
    for i, (start, end) in enumerate(outages):
        for name, moment in (("start", start), ("end", end)):
            if not isinstance(moment, dt.datetime) or moment.utcoffset() is None:
                raise InvalidInput(f"outages[{i}].{name}={moment!r} must be an aware datetime")
        if end <= start:
            raise InvalidInput(f"outages[{i}]: end={end.isoformat()} is not after start")
        first = start.astimezone(SHANGHAI).date()
        last = (end.astimezone(SHANGHAI) - dt.timedelta(microseconds=1)).date()
        day = first
        while day <= last:
            days.add(day)
            day += dt.timedelta(days=1)
    return frozenset(days)


def service_gap_days(outages: Iterable[tuple[dt.datetime, dt.datetime]]) -> int:
    """The number of Asia/Shanghai calendar days touched by at least one outage
    (:func:`service_gap_dates`): the ``days`` of :func:`service_gap_penalty`."""
    return len(service_gap_dates(outages))


def breach_liability(actual_loss: Decimal, *, contract: Contract = WUJIN_114_2024) -> Decimal:
    """What the breaching party owes under 五(一): 100,000 yuan plus the actual loss.

    "违约方应承担违约金壹拾万元整，同时赔偿守约方实际损失" — ``actual_loss`` is an input
    (assessed elsewhere), not something the library can know.
    """
    return _round(contract.breach_penalty + _money("actual_loss", actual_loss))


@attrs.frozen
class MonthPayable:
    """A month's fee after 五(三): the whole fee is withheld if its data was falsified."""

    fee: Decimal
    falsified: bool
    withheld: Decimal
    payable: Decimal


def month_payable(fee: Decimal, *, falsified: bool) -> MonthPayable:
    """The fee Party A owes for a month (五(三)).

    "乙方应保证向甲方提供的 114 挪车服务数据的真实性，如发现有弄虚作假的，甲方有权不向乙方支付
    当月服务费。" — a falsified month's whole fee is withheld.
    """
    amount = _money("fee", fee)
    if not isinstance(falsified, bool):
        raise InvalidInput(f"falsified={falsified!r} must be True or False")
    if falsified:
        return MonthPayable(fee=amount, falsified=True, withheld=amount, payable=Decimal("0.00"))
    return MonthPayable(fee=amount, falsified=False, withheld=Decimal("0.00"), payable=amount)
