"""Contract terms as data.

Every number of the seed contract (常州市公安局武进分局 114 移车电信服务项目合同, signed
2024-07-26) lives in :data:`WUJIN_114_2024`. Another district's contract is another
:class:`Contract` value, not a code change. Each field's docstring quotes its clause.
"""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from typing import Any

import attrs

from movecar_core.errors import InvalidContract

PLATE_PLACEHOLDER = "{plate}"


def _decimal(value: Any) -> Decimal:
    """Money and rates come in as str or Decimal, never float (floats are not exact)."""
    if isinstance(value, float):
        raise InvalidContract(f"{value!r} is a float; give money and rates as str or Decimal")
    try:
        return Decimal(value)
    except (ArithmeticError, TypeError, ValueError) as exc:
        raise InvalidContract(f"{value!r} is not a decimal number") from exc


@attrs.frozen
class Tier:
    """One step of 阶梯计价: calls in ``[lower, upper)`` cost ``price`` yuan each.

    ``upper`` is ``None`` for the open top tier ("300 万单以上（含 300 万单）").
    """

    lower: int
    upper: int | None
    price: Decimal = attrs.field(converter=_decimal)

    def __attrs_post_init__(self) -> None:
        if self.lower < 0:
            raise InvalidContract(f"tier lower={self.lower} is negative")
        if self.upper is not None and self.upper <= self.lower:
            raise InvalidContract(f"tier upper={self.upper} is not above lower={self.lower}")
        if self.price <= 0:
            raise InvalidContract(f"tier price={self.price} is not positive")

    def contains(self, volume: int) -> bool:
        return self.lower <= volume and (self.upper is None or volume < self.upper)


def _check_tiers(_: Any, __: Any, tiers: tuple[Tier, ...]) -> None:
    if not tiers:
        raise InvalidContract("tiers: at least one tier is needed")
    if tiers[0].lower != 0:
        raise InvalidContract(f"tiers: the first tier starts at {tiers[0].lower}, not 0")
    for below, above in itertools.pairwise(tiers):
        if below.upper != above.lower:
            raise InvalidContract(
                f"tiers: gap or overlap between [{below.lower}, {below.upper}) "
                f"and [{above.lower}, {above.upper})"
            )
    if tiers[-1].upper is not None:
        raise InvalidContract(f"tiers: the last tier must be open, not end at {tiers[-1].upper}")


@attrs.frozen
class WrittenNotice:
    """A written notice of Party A's command centre (公安局指挥中心的书面通知)."""

    reference: str
    dated: dt.date


@attrs.frozen
class Greeting:
    """The prefix message of every outbound call, versioned by the notice that set it.

    二(六): "114 外呼通知车主挪车时，使用统一前缀通知语，暂定：'您好，这是公安 110 挪车服务
    专线，您是苏XXXXXX 车主吗？' 如需变更，必须以公安局指挥中心的书面通知为准。"
    """

    template: str
    version: str
    notice: WrittenNotice | None = None

    def __attrs_post_init__(self) -> None:
        if self.template.count(PLATE_PLACEHOLDER) != 1:
            raise InvalidContract(
                f"greeting template {self.template!r} must contain {PLATE_PLACEHOLDER} once"
            )

    def render(self, plate: str) -> str:
        return self.template.replace(PLATE_PLACEHOLDER, plate)


@attrs.frozen(repr=False)
class Contract:
    """The terms of one 114 move-car service contract."""

    def __repr__(self) -> str:
        # Short on purpose: it is the default of many signatures (help(MoveCar) shows it).
        return f"Contract({self.name!r}, effective_from={self.effective_from.isoformat()})"

    name: str
    party_a: str
    party_b: str
    signed_on: dt.date
    #: 一(三) "本合作协议有效期一年，自 2024年4月1日 起生效"
    effective_from: dt.date
    #: 一(三) "有效期一年" — the length of one service year, in years.
    term_years: int
    #: 一(三) "有效期满经甲方考核通过后，自动续约一年，最多续约 2 次"
    max_renewals: int
    #: 二(六) "统一使用“0519110”为主叫号码 ... 该号码仅限于 114 挪车服务"
    caller_id: str
    #: 二(六) the unified greeting ("统一前缀通知语")
    greeting: Greeting
    #: 二(五) "公安 110 接警台，受理专席电话：0519-81997327"
    transfer_110_number: str
    #: 二(四) "所有移车服务数据及电话录音资料，必须保存 3 年"
    retention_years: int
    #: 二(五) "应该在故障发生后的 30 分钟内通知公安 110 接警台"
    outage_notice_minutes: int
    #: 二(五) "并在排除故障恢复服务 30 分钟内通知公安 110 接警台"
    recovery_notice_minutes: int
    #: 三 tiered prices (阶梯计价) by the year's total volume ("根据当年话务总量")
    tiers: tuple[Tier, ...] = attrs.field(validator=_check_tiers)
    #: 三 "乙方每月 5 日前以电子邮件的形式提供上月 114 移车话务量报表"
    report_due_day: int
    #: 三 "如有异议，需在每月 15 日前提出"
    objection_deadline_day: int
    #: 三 "商议在 5 个工作日内协商处理"
    negotiation_working_days: int
    #: 三 "确保月底前付款" — payment is due by the last day of the month of the report.
    payment_due_month_end: bool
    #: 五(一) "违约方应承担违约金壹拾万元整，同时赔偿守约方实际损失"
    breach_penalty: Decimal = attrs.field(converter=_decimal)
    #: 五(二) "按照逾期交款额的万分之五/天标准累计计算 ... （不超过总金额的 30%）"
    late_payment_daily_rate: Decimal = attrs.field(converter=_decimal)
    late_payment_cap_ratio: Decimal = attrs.field(converter=_decimal)
    #: 五(二) "乙方未按要求 24 小时提供挪车服务，乙方按万分之五/天 ... （不超过总金额的 30%）"
    service_gap_daily_rate: Decimal = attrs.field(converter=_decimal)
    service_gap_cap_ratio: Decimal = attrs.field(converter=_decimal)
    #: 五(二) "24 小时提供挪车服务": the service runs this many hours a day.
    service_hours_per_day: int
    #: annex 2 十六 "在 24 小时内向有关部门报告并书面通知贵公司"
    incident_report_hours: int

    def __attrs_post_init__(self) -> None:
        for name in ("late_payment_daily_rate", "service_gap_daily_rate"):
            rate: Decimal = getattr(self, name)
            if not Decimal(0) <= rate < 1:
                raise InvalidContract(f"{name}={rate} must be in [0, 1)")
        for name in ("late_payment_cap_ratio", "service_gap_cap_ratio"):
            ratio: Decimal = getattr(self, name)
            if not Decimal(0) <= ratio <= 1:
                raise InvalidContract(f"{name}={ratio} must be in [0, 1]")
        if not 1 <= self.report_due_day < self.objection_deadline_day <= 28:
            raise InvalidContract(
                f"report_due_day={self.report_due_day} and objection_deadline_day="
                f"{self.objection_deadline_day} must satisfy 1 <= due < objection <= 28"
            )
        for name in ("term_years", "retention_years", "negotiation_working_days"):
            if getattr(self, name) < 1:
                raise InvalidContract(f"{name}={getattr(self, name)} must be at least 1")
        if self.max_renewals < 0:
            raise InvalidContract(f"max_renewals={self.max_renewals} is negative")

    @property
    def last_possible_day(self) -> dt.date:
        """The last day the contract can run with every renewal granted (2027-03-31)."""
        years = self.term_years * (1 + self.max_renewals)
        end = self.effective_from.replace(year=self.effective_from.year + years)
        return end - dt.timedelta(days=1)

    def with_greeting(self, template: str, notice: WrittenNotice) -> Contract:
        """A new greeting takes effect only with Party A's written notice (二(六))."""
        return attrs.evolve(
            self, greeting=Greeting(template=template, version=notice.reference, notice=notice)
        )


#: The seed contract: Wujin District PSB (甲方) and China Telecom Changzhou (乙方).
WUJIN_114_2024 = Contract(
    name="常州市公安局武进分局 114 移车电信服务项目合同",
    party_a="常州市公安局武进分局",
    party_b="中国电信股份有限公司常州分公司",
    signed_on=dt.date(2024, 7, 26),
    effective_from=dt.date(2024, 4, 1),
    term_years=1,
    max_renewals=2,
    caller_id="0519110",
    greeting=Greeting(
        # Verbatim from 二(六), with the plate in place of "苏XXXXXX".
        template="您好，这是公安 110 挪车服务专线，您是{plate} 车主吗？",
        version="2024-07-26 合同二(六) 暂定",
    ),
    transfer_110_number="0519-81997327",
    retention_years=3,
    outage_notice_minutes=30,
    recovery_notice_minutes=30,
    tiers=(
        Tier(0, 1_500_000, "1.90"),  # 150 万单以下（不含 150 万单）
        Tier(1_500_000, 3_000_000, "1.85"),  # 150 万单-300 万单（含 150 万单，不含 300 万单）
        Tier(3_000_000, None, "1.75"),  # 300 万单以上（含 300 万单）
    ),
    report_due_day=5,
    objection_deadline_day=15,
    negotiation_working_days=5,
    payment_due_month_end=True,
    breach_penalty="100000",  # 壹拾万元整
    late_payment_daily_rate="0.0005",  # 万分之五/天
    late_payment_cap_ratio="0.30",  # 不超过总金额的 30%
    service_gap_daily_rate="0.0005",
    service_gap_cap_ratio="0.30",
    service_hours_per_day=24,
    incident_report_hours=24,
)
