"""The monthly volume report (话务量报表): what Party B mails Party A by the 5th.

三: "乙方每月 5 日前以电子邮件的形式提供上月 114 移车话务量报表供甲方审核，甲方及时对提供的
报表进行核对，如有异议，需在每月 15 日前提出". 二(七): "乙方及时向甲方反馈日常话务产生的相关
数据（包括呼入、接通等）".

A :class:`VolumeReport` is one month: inbound (呼入), connected (接通) and billable (计费呼叫)
calls per day, the billable total, the tier price and the fee (运营服务费), the deadlines,
and the evidence the month's recorded report carries (its digest, its chain hash, the
ledger's tree head). It is built from the store by
:meth:`~movecar_core.app.MoveCar.volume_report`, after the month is settled and recorded
(:meth:`~movecar_core.app.MoveCar.settle_month`), so the mailed figures are the recorded
ones. Under the default billable-call policy one inbound call connected to a seat opens one
case (:class:`~movecar_core.pricing.BillableCallPolicy`), so each day's three counts are the
cases opened that day: the store holds no call that did not reach a seat.

The mail is a scheduled effect (:data:`~movecar_core.outbox.MONTHLY_REPORT`): the engine
schedules each month's report in the outbox ahead of time (:func:`schedule_reports`), due
at 09:00 on the first working day of the following month, never after the deadline
(:func:`report_send_time`), and a worker sends it through the
:class:`~movecar_core.mail.ReportMailer` with the effect's key, unique per month.

Everything here is pure: the store is read through :class:`~movecar_core.reports.ReportStore`
and the outbox through :class:`~movecar_core.outbox.EffectScheduler`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Sequence
from decimal import Decimal

import attrs

from movecar_core.calendar import SHANGHAI, end_of_day, local_date
from movecar_core.contract import Contract
from movecar_core.errors import (
    AUDIT_HINT,
    CalendarYearNotCovered,
    InvalidInput,
    MonthAlreadyReported,
)
from movecar_core.mail import Attachment, ReportMailer, check_addresses
from movecar_core.outbox import MONTHLY_REPORT, NO_CASE, Effect, EffectScheduler
from movecar_core.pricing import TierMode
from movecar_core.reports import MonthSettlement, ReportStore
from movecar_core.settlement import ServiceMonth, SettlementRules, monthly_deadlines
from movecar_core.term import ContractTerm

#: When the scheduled report goes out on its day (Asia/Shanghai): office hours, so a
#: failure is seen by someone who can fix it the same day.
DEFAULT_SEND_AT = dt.time(9, 0)
#: The files' names: "114 移车话务量报表", the contract's own name for the report.
FILE_STEM = "114移车话务量报表"
CSV_TYPE = "text/csv"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

#: The daily table's columns: (Chinese heading in the files, English name in JSON and docs).
DAILY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("日期", "date"),
    ("呼入（次）", "inbound"),
    ("接通（次）", "connected"),
    ("计费呼叫（次）", "billable"),
)
TOTAL_LABEL = "合计"
_MODE_NAMES = {
    TierMode.VOLUME: "按当年话务总量对应单价计价（volume）",
    TierMode.GRADUATED: "分段累进计价（graduated）",
}


def report_key(month: ServiceMonth) -> str:
    """The key of ``month``'s scheduled report: one per month, so a repeat is recognised."""
    return f"{MONTHLY_REPORT}:{month}"


@attrs.frozen
class DailyVolume:
    """One day of the month: 呼入, 接通 and 计费呼叫 (calls)."""

    day: dt.date
    inbound: int
    connected: int
    billable: int


@attrs.frozen
class VolumeReport:
    """One month's 话务量报表, as mailed to Party A (三, 二(七)).

    ``settlement`` is the month as recorded (report, digest, fee); ``days`` every day of
    the month, their sums equal to the recorded report's counts.
    """

    contract: Contract
    settlement: MonthSettlement
    days: tuple[DailyVolume, ...]
    generated_at: dt.datetime

    @property
    def month(self) -> ServiceMonth:
        return self.settlement.month

    @property
    def inbound(self) -> int:
        return sum(d.inbound for d in self.days)

    @property
    def connected(self) -> int:
        return sum(d.connected for d in self.days)

    @property
    def billable(self) -> int:
        return sum(d.billable for d in self.days)

    @property
    def fee(self) -> Decimal:
        """The month's service fee (运营服务费), provisional until the year-end true-up."""
        return self.settlement.provisional_fee

    def summary(self) -> list[tuple[str, str, object]]:
        """The report's figures as ``(Chinese label, English key, value)`` rows: values
        are ``int``, ``Decimal`` (yuan), ``datetime.date``, ``str`` or None (nothing to
        show); the order the files show them in."""
        s = self.settlement
        d = s.deadlines
        r = s.report
        year = s.service_year
        rows: list[tuple[str, str, object]] = [
            ("合同", "contract", self.contract.name),
            ("甲方", "party_a", self.contract.party_a),
            ("乙方", "party_b", self.contract.party_b),
            ("统计月份", "month", str(self.month)),
            ("服务年度", "service_year", f"第 {year.index + 1} 年（{year.start} 至 {year.end}）"),
            ("呼入合计（次）", "inbound", self.inbound),
            ("接通合计（次）", "connected", self.connected),
            ("计费呼叫合计（成功接通话务量，次）", "billable", self.billable),
            # Requests refused by the requester limits (movecar_core.requesters): no case,
            # not billed; sealed in the report's hash when there are any.
            ("拒绝受理：号码在黑名单（次）", "refused_blocked", r.refused.blocked),
            ("拒绝受理：超过每日申请次数（次）", "refused_daily_limit", r.refused.daily_limit),
            ("拒绝受理：超过每月申请次数（次）", "refused_monthly_limit", r.refused.monthly_limit),
            ("本年度累计话务量（本月前，次）", "ytd_before", s.ytd_before),
            ("本年度累计话务量（含本月，次）", "ytd_after", s.ytd_after),
            ("计价方式（阶梯计价）", "mode", _MODE_NAMES[s.mode]),
            ("阶梯单价（元/次）", "unit_price", s.unit_price),
            ("运营服务费（元）", "fee", s.provisional_fee),
        ]
        if s.annual_fee is not None and s.true_up is not None:
            rows += [
                ("本年度运营服务费（元）", "annual_fee", s.annual_fee),
                ("年终结算调整（元）", "true_up", s.true_up),
            ]
        rows += [
            ("报表提交截止（每月 5 日前）", "report_due", d.report_due),
            ("异议截止（每月 15 日前）", "objection_deadline", d.objection_deadline),
            ("付款截止（月底前）", "payment_due", d.payment_due),
            ("报表摘要（SHA-256）", "digest", r.digest),
            ("报表哈希", "report_hash", r.hash),
            ("上一报表哈希", "previous_hash", r.previous_hash),
            # None: a store without an evidence ledger (the in-memory one)
            ("证据树大小（叶数）", "tree_size", None if r.tree is None else r.tree.size),
            ("证据树根（SHA-256）", "tree_root", None if r.tree is None else r.tree.root),
            ("记录时间", "recorded_at", s.recorded_at.astimezone(SHANGHAI).isoformat()),
            ("生成时间", "generated_at", self.generated_at.astimezone(SHANGHAI).isoformat()),
        ]
        return rows


def build_report(
    settlement: MonthSettlement, store: ReportStore, *, contract: Contract, at: dt.datetime
) -> VolumeReport:
    """The month's report from the store: each day counted (``count_opened`` over the
    day, Asia/Shanghai), checked against the recorded report.

    Raises :class:`~movecar_core.errors.MonthAlreadyReported` when the days do not add up
    to the counts recorded for the month (the store changed since: run the audit); the
    mail would then tell Party A something other than what was recorded.
    """
    month = settlement.month
    days = []
    day = month.first_day()
    while day <= month.last_day():
        start = dt.datetime.combine(day, dt.time(), tzinfo=SHANGHAI)
        count = store.count_opened(start, end_of_day(day))
        days.append(DailyVolume(day, count, count, count))
        day += dt.timedelta(days=1)
    report = VolumeReport(contract, settlement, tuple(days), at)
    recorded = settlement.report
    if (report.inbound, report.billable) != (recorded.inbound_calls, recorded.billable_calls):
        raise MonthAlreadyReported(
            str(month),
            f"its report recorded {recorded.inbound_calls} inbound and "
            f"{recorded.billable_calls} billable calls; its days now add up to "
            f"{report.inbound} and {report.billable} ({AUDIT_HINT})",
        )
    return report


# --- files --------------------------------------------------------------------------------


def report_filename(month: ServiceMonth, extension: str) -> str:
    """``114移车话务量报表_2024-05.csv`` and the like."""
    return f"{FILE_STEM}_{month}.{extension}"


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    return str(value)


def report_csv(report: VolumeReport) -> bytes:
    """The report as CSV (UTF-8 with a byte-order mark, so spreadsheet programs read the
    Chinese right): the daily table with its 合计 row, a blank line, then the figures as
    ``项目,数值,字段`` rows (the third column the English key, for programs)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([zh for zh, _ in DAILY_COLUMNS])
    for d in report.days:
        writer.writerow([d.day.isoformat(), d.inbound, d.connected, d.billable])
    writer.writerow([TOTAL_LABEL, report.inbound, report.connected, report.billable])
    writer.writerow([])
    writer.writerow(["项目", "数值", "字段"])
    for label, key, value in report.summary():
        writer.writerow([label, _cell(value), key])
    return out.getvalue().encode("utf-8-sig")


def csv_attachments(report: VolumeReport) -> list[Attachment]:
    """The report as one CSV attachment (the default of :class:`ReportDelivery`; the
    adapters add the XLSX workbook)."""
    return [Attachment(report_filename(report.month, "csv"), CSV_TYPE, report_csv(report))]


# --- the mail ------------------------------------------------------------------------------


def mail_text(report: VolumeReport, filenames: Sequence[str]) -> tuple[str, str]:
    """The report mail's subject and body (Chinese, the contract's terms)."""
    month = report.month
    s = report.settlement
    title = f"{month.year}年{month.month:02d}月"
    subject = f"114 移车话务量报表 {title}"
    tree = s.report.tree
    lines = [
        f"{report.contract.party_a}：",
        "",
        f"根据合同第三条“乙方每月 5 日前以电子邮件的形式提供上月 114 移车话务量报表供甲方审核”，"
        f"现报送 {title} 114 移车话务量报表，请审核。",
        "",
        f"呼入：{report.inbound} 次",
        f"接通：{report.connected} 次",
        f"计费呼叫（成功接通话务量）：{report.billable} 次",
        f"拒绝受理（黑名单、超过申请次数）：{s.report.refused.total} 次",
        f"本年度累计话务量：{s.ytd_after} 次",
        f"阶梯单价：{s.unit_price} 元/次",
        f"运营服务费：{s.provisional_fee:.2f} 元",
    ]
    if s.annual_fee is not None and s.true_up is not None:
        lines += [
            f"本年度运营服务费：{s.annual_fee:.2f} 元",
            f"年终结算调整：{s.true_up:.2f} 元",
        ]
    lines += [
        "",
        f"报表摘要（SHA-256）：{s.report.digest}",
        f"报表哈希：{s.report.hash}",
    ]
    if tree is not None:
        lines.append(f"证据树：{tree.size} 叶，根 {tree.root}")
    lines += [
        "",
        f"如有异议，请于 {s.deadlines.objection_deadline} 前提出（合同第三条）；"
        "逾期未提异议，视为认可。",
        f"附件：{'、'.join(filenames)}",
        "",
        report.contract.party_b,
    ]
    return subject, "\n".join(lines) + "\n"


#: Renders a report into its attachments.
Render = Callable[[VolumeReport], Sequence[Attachment]]


def _check_send_at(instance: object, attribute: attrs.Attribute[dt.time], value: object) -> None:
    if not isinstance(value, dt.time) or value.tzinfo is not None:
        raise InvalidInput(f"send_at={value!r}: a time of day without a zone (Asia/Shanghai)")


def _check_mailer(
    instance: object, attribute: attrs.Attribute[ReportMailer], value: object
) -> None:
    if not isinstance(value, ReportMailer):
        raise InvalidInput(f"mailer={type(value).__name__}: not a ReportMailer")


def _check_mode(instance: object, attribute: attrs.Attribute[TierMode], value: object) -> None:
    if not isinstance(value, TierMode):
        raise InvalidInput(f"mode={value!r}: not a TierMode")


def _report_to(value: object) -> tuple[str, ...]:
    return check_addresses(value, "report_to")


@attrs.frozen
class ReportDelivery:
    """How the engine mails the monthly report: through ``mailer`` to ``to`` (Party A's
    addresses), as ``render`` attaches it, priced in ``mode``, at ``send_at`` on its day.

    Given to :class:`~movecar_core.app.MoveCar` as ``reports=``; ``connect()`` builds one
    from ``[smtp] report_to`` with the CSV and XLSX attachments.
    """

    mailer: ReportMailer = attrs.field(validator=_check_mailer)
    to: tuple[str, ...] = attrs.field(converter=_report_to)
    render: Render = csv_attachments
    mode: TierMode = attrs.field(default=TierMode.VOLUME, validator=_check_mode)
    send_at: dt.time = attrs.field(default=DEFAULT_SEND_AT, validator=_check_send_at)

    def deliver(self, key: str, report: VolumeReport, *, now: dt.datetime) -> str:
        """Mail ``report`` under ``key``; says what it did (and whether it was late)."""
        attachments = list(self.render(report))
        subject, body = mail_text(report, [a.filename for a in attachments])
        self.mailer.send(key, self.to, subject, body, attachments)
        due = report.settlement.deadlines.report_due
        late = "" if now < end_of_day(due) else f", late: due by {due}"
        return (
            f"report {report.month} mailed to {len(self.to)} address(es) with "
            f"{len(attachments)} attachment(s){late}"
        )


# --- the schedule ---------------------------------------------------------------------------


def report_send_time(
    month: ServiceMonth, rules: SettlementRules, send_at: dt.time = DEFAULT_SEND_AT
) -> dt.datetime:
    """When ``month``'s report is sent: ``send_at`` (09:00) Asia/Shanghai on the first
    working day of the following month, or on the deadline if that comes first.

    三 "乙方每月 5 日前 ... 提供上月 ... 报表" gives until the 5th (moved to the next working
    day when it is a rest day, Civil Code art. 203: :func:`monthly_deadlines`). Sending on
    the first working day leaves the days up to the deadline for a failed send to be seen
    and retried, and reaches Party A on a day someone reads it ("甲方及时对提供的报表进行核
    对"). It is never before the month is over, and never after the deadline (with
    :attr:`~movecar_core.calendar.DeadlineShift.NONE` the 5th may come before the first
    working day). A year the working-day calendar does not cover falls back to the 1st:
    sending early is never late, and the settlement then says which year is missing.
    """
    first = month.next().first_day()
    try:
        day = min(
            rules.calendar.next_working_day(first), monthly_deadlines(month, rules).report_due
        )
    except CalendarYearNotCovered:
        day = first
    return dt.datetime.combine(day, send_at, tzinfo=SHANGHAI)


def report_effect(
    month: ServiceMonth, rules: SettlementRules, send_at: dt.time = DEFAULT_SEND_AT
) -> Effect:
    """The outbox effect that mails ``month``'s report (of no case, key per month)."""
    return Effect(
        report_key(month),
        MONTHLY_REPORT,
        NO_CASE,
        report_send_time(month, rules, send_at),
        {"month": str(month)},
    )


def _report_deadline(month: ServiceMonth, rules: SettlementRules) -> dt.datetime:
    """When ``month``'s report is late (the 5th as written for a year the calendar lacks)."""
    try:
        due = monthly_deadlines(month, rules).report_due
    except CalendarYearNotCovered:
        due = month.next().day(rules.contract.report_due_day)
    return end_of_day(due)


def months_to_report(
    now: dt.datetime,
    last_reported: ServiceMonth | None,
    term: ContractTerm,
    rules: SettlementRules | None = None,
) -> list[ServiceMonth]:
    """The months whose report should be in the outbox at ``now``: every month after the
    last one reported (``last_reported``) up to the current one (whose report is due next
    month: scheduled ahead, it is visible in the outbox all month), inside the granted term.

    The last month reported is included while its deadline is ahead: it may have been
    settled by hand (``movecar settle``) before its day, and is still mailed on schedule
    (once: its key is in the outbox if the worker mailed it already).

    With no report yet, the month before the current one is the first (the contract's
    first month if later): a deployment that starts mid-contract reports from the month
    it was running in, and earlier months are reported by hand (``movecar report``), one
    after another, before it starts (reports are chained: none skipped).
    """
    current = ServiceMonth.of(local_date(now))
    first_of_term = ServiceMonth.of(term.years[0].start)
    last_of_term = ServiceMonth.of(term.end_date)
    if last_reported is None:
        start = max(first_of_term, current.previous())
    elif now < _report_deadline(last_reported, rules or SettlementRules(term.contract)):
        start = last_reported
    else:
        start = last_reported.next()
    months = []
    month = max(start, first_of_term)
    while month <= min(current, last_of_term):
        months.append(month)
        month = month.next()
    return months


def schedule_reports(
    outbox: EffectScheduler,
    store: ReportStore,
    *,
    now: dt.datetime,
    term: ContractTerm,
    rules: SettlementRules,
    send_at: dt.time = DEFAULT_SEND_AT,
) -> list[Effect]:
    """Put the report of every month :func:`months_to_report` names in the outbox, each
    at most once (by its key); returns the effects added now."""
    kept = store.reports()
    last = kept[-1].month if kept else None
    added = []
    for month in months_to_report(now, last, term, rules):
        effect = report_effect(month, rules, send_at)
        if outbox.schedule(effect):
            added.append(effect)
    return added


def report_json(report: VolumeReport) -> dict[str, object]:
    """The report as JSON-ready data: counts as numbers, money as strings (never floats)."""

    def plain(value: object) -> object:
        if isinstance(value, Decimal):
            return f"{value:.2f}"
        if isinstance(value, dt.date):
            return value.isoformat()
        return value

    return {
        "days": [
            {
                "date": d.day.isoformat(),
                "inbound": d.inbound,
                "connected": d.connected,
                "billable": d.billable,
            }
            for d in report.days
        ],
        **{key: plain(value) for _, key, value in report.summary()},
        "mode": report.settlement.mode.value,
    }


__all__ = [
    "DAILY_COLUMNS",
    "DailyVolume",
    "ReportDelivery",
    "VolumeReport",
    "build_report",
    "csv_attachments",
    "mail_text",
    "months_to_report",
    "report_csv",
    "report_effect",
    "report_json",
    "report_key",
    "report_send_time",
    "schedule_reports",
]
