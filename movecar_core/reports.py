"""The monthly volume report (话务量报表) and the month's settlement, as values and a port.

三: "乙方每月 5 日前以电子邮件的形式提供上月 114 移车话务量报表供甲方审核" and "运营服务费 ...
按月支付 ... 按 114 移车服务成功接通话务量 × 对应阶梯单价". 二(七): the report gives the
inbound (呼入) and connected (接通) volume. 五(三): "如发现有弄虚作假的，甲方有权不向乙方支付当月
服务费" — so each report carries a digest of the cases it counts and chains to the report
before it, and a settlement is tied to its report's digest.

The rules here are pure and shared by every store: which month may be reported next, how
the digest and the chain hash are computed. A store implements :class:`ReportStore` to
count, keep and read them; :meth:`movecar_core.app.MoveCar.settle_month` is the one path
from the store's events to the money.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal
from typing import Protocol, runtime_checkable

import attrs

from movecar_core.errors import MonthAlreadyReported, SettlementError
from movecar_core.integrity import GENESIS, chain_hash, report_digest
from movecar_core.ledger import TreeHead
from movecar_core.pricing import TierMode
from movecar_core.requesters import RefusalCounts
from movecar_core.settlement import MonthlyDeadlines, ServiceMonth
from movecar_core.term import ServiceYear


def report_hash(
    previous: str,
    month: ServiceMonth,
    inbound: int,
    billable: int,
    digest: str,
    *,
    tree: TreeHead | None = None,
    refusals: RefusalCounts | None = None,
) -> str:
    """A monthly report's hash, chained to the previous report's (stored: never change).

    With a ``tree`` (the evidence ledger's head when the report was written, which covers
    every record of the month) the hash covers it too; a report from a store without a
    ledger hashes as reports always did. So do ``refusals`` (the requests refused in the
    month, :mod:`movecar_core.requesters`), when there were any: a month without a refusal,
    and every report written before the stores counted them, hashes as reports always did.
    """
    body: dict[str, object] = {"inbound": inbound, "billable": billable, "digest": digest}
    if tree is not None:
        body.update(tree_size=tree.size, tree_root=tree.root)
    if refusals is not None:
        body["refused"] = refusals.as_dict()
    return chain_hash(previous, "report", 0, str(month), body)


@attrs.frozen
class MonthlyReport:
    """One month's 话务量报表: volume, the digest of what it counts, its place in the chain.

    Under the default billable-call policy (see :mod:`movecar_core.pricing`) one inbound
    move-car call connected to a seat opens one case: inbound, connected and billable
    volumes are the cases opened in the month.
    """

    month: ServiceMonth
    inbound_calls: int
    billable_calls: int
    digest: str
    previous_hash: str
    hash: str
    #: The evidence ledger's tree head when it was written (None: a store without one).
    tree: TreeHead | None = None
    #: Requests refused in the month by the requester limits, sealed in the hash (None:
    #: none was refused, or the report was written before the stores counted refusals).
    refusals: RefusalCounts | None = None

    @property
    def refused(self) -> RefusalCounts:
        """The month's refused requests by reason (zeros when none were refused)."""
        return self.refusals if self.refusals is not None else RefusalCounts()


def next_report(
    previous: MonthlyReport | None,
    month: ServiceMonth,
    opened: Iterable[tuple[str, str]],
    tree: TreeHead | None = None,
    refusals: RefusalCounts | None = None,
) -> MonthlyReport:
    """The report of ``month`` after ``previous`` (None: the first), from the ``(case id,
    hash of its CaseOpened)`` of every case opened in the month, and the requests refused
    in it (``refusals``, sealed into the report's hash when there are any).

    三 "乙方每月 ... 提供上月 ... 报表": one report a month, none skipped, so a deleted
    report leaves a gap an audit can name. Raises :class:`MonthAlreadyReported` for a
    month at or before the last report and :class:`SettlementError` for a gap.
    """
    if previous is not None:
        if month <= previous.month:
            raise MonthAlreadyReported(str(month), f"reports exist up to {previous.month}")
        if month != previous.month.next():
            raise SettlementError(
                f"month={month}: the next report due is {previous.month.next()} "
                "(one report a month, none skipped)"
            )
    items = [(case_id, 1, opened_hash) for case_id, opened_hash in opened]
    digest = report_digest(items)
    count = len(items)
    before = GENESIS if previous is None else previous.hash
    if refusals is not None and not refusals.total:
        refusals = None  # a month without refusals hashes as every report did before
    return MonthlyReport(
        month,
        count,
        count,
        digest,
        before,
        report_hash(before, month, count, count, digest, tree=tree, refusals=refusals),
        tree,
        refusals,
    )


@attrs.frozen
class RecordedSettlement:
    """What a store keeps of a month's settlement: the fee, tied to its report's digest."""

    month: ServiceMonth
    billable_calls: int
    unit_price: Decimal
    fee: Decimal
    report_digest: str
    recorded_at: dt.datetime


def check_settlement(
    settlement: RecordedSettlement, report: MonthlyReport | None, *, settled_before: bool
) -> None:
    """The rule every store applies before keeping a settlement: 三 bills a reported month,
    so the month's report must exist with the same digest and count (五(三)), and a month
    is settled once."""
    month = settlement.month
    if report is None:
        raise SettlementError(f"month={month}: no report to settle")
    if (report.digest, report.billable_calls) != (
        settlement.report_digest,
        settlement.billable_calls,
    ):
        raise SettlementError(f"month={month}: does not match its report")
    if settled_before:
        raise MonthAlreadyReported(str(month), "settled before")


@attrs.frozen
class MonthSettlement:
    """The month's money, from the store's events (:meth:`MoveCar.settle_month`).

    ``provisional_fee`` is the month's calls priced by ``mode`` at the service year's
    cumulative volume (``ytd_after``, carried-in volume included in year 0); when the
    month closes its service year, ``annual_fee`` and ``true_up`` settle the year
    (``provisional fees of the year + true_up == annual_fee``).
    """

    month: ServiceMonth
    service_year: ServiceYear
    mode: TierMode
    billable_calls: int
    ytd_before: int
    ytd_after: int
    unit_price: Decimal
    provisional_fee: Decimal
    deadlines: MonthlyDeadlines
    report: MonthlyReport
    recorded_at: dt.datetime
    annual_fee: Decimal | None = None
    true_up: Decimal | None = None

    @property
    def report_digest(self) -> str:
        return self.report.digest

    def recorded(self) -> RecordedSettlement:
        return RecordedSettlement(
            self.month,
            self.billable_calls,
            self.unit_price,
            self.provisional_fee,
            self.report.digest,
            self.recorded_at,
        )


@runtime_checkable
class ReportStore(Protocol):
    """A case store that also counts, keeps and reads monthly reports and settlements."""

    def count_opened(self, start: dt.datetime, end: dt.datetime) -> int:
        """Cases opened in ``[start, end)``."""
        ...

    def write_report(self, month: ServiceMonth, *, at: dt.datetime) -> MonthlyReport:
        """Count the month, chain its report after the last one (:func:`next_report`) and
        keep it, atomically; written at ``at``."""
        ...

    def report(self, month: ServiceMonth) -> MonthlyReport | None: ...

    def reports(self) -> list[MonthlyReport]:
        """Every report kept, oldest first."""
        ...

    def write_settlement(self, settlement: RecordedSettlement) -> None:
        """Keep the month's settlement; refused unless the month's report exists with the
        same digest and count, and no settlement was kept for it before."""
        ...

    def settlement(self, month: ServiceMonth) -> RecordedSettlement | None: ...
