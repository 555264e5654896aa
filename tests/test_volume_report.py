"""The monthly volume report (三, 二(七)) on the in-memory store: the figures, the files'
content, when it is due, and its delivery as a scheduled effect of the outbox."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from movecar_core import (
    WUJIN_114_2024,
    Attachment,
    InMemoryReportMailer,
    MoveCar,
    ReportDelivery,
    ServiceMonth,
)
from movecar_core.calendar import CN_CALENDAR, SHANGHAI, DeadlineShift, end_of_day, local_date
from movecar_core.clock import ManualClock
from movecar_core.errors import (
    InvalidCommand,
    InvalidInput,
    MonthAlreadyReported,
    MonthNotOver,
    PortError,
)
from movecar_core.memory import (
    InMemoryCaseStore,
    InMemoryCommandCentre,
    InMemoryNotifier,
    InMemoryTelephony,
    InMemoryVehicleRegistry,
)
from movecar_core.outbox import MONTHLY_REPORT, NO_CASE, Effect
from movecar_core.settlement import SettlementRules, monthly_deadlines
from movecar_core.term import ContractTerm
from movecar_core.testing.contracts import sample_history
from movecar_core.volume import (
    DAILY_COLUMNS,
    build_report,
    months_to_report,
    report_csv,
    report_effect,
    report_json,
    report_key,
    report_send_time,
)

APRIL, MAY = ServiceMonth(2024, 4), ServiceMonth(2024, 5)
RULES = SettlementRules()
PARTY_A = "zhihui@gaj.example.gov.cn"


def engine(clock: ManualClock, mailer: object | None = None) -> MoveCar:
    store = InMemoryCaseStore(clock=clock)
    reports = None if mailer is None else ReportDelivery(mailer, PARTY_A)  # type: ignore[arg-type]
    return MoveCar(
        store=store,
        registry=InMemoryVehicleRegistry(),
        telephony=InMemoryTelephony(clock=clock),
        clock=clock,
        notifier=InMemoryNotifier(),
        command_centre=InMemoryCommandCentre(),
        reports=reports,
    )


def open_at(mc: MoveCar, moments: Sequence[dt.datetime], prefix: str = "c") -> None:
    for i, at in enumerate(moments):
        case_id = f"{prefix}{i}"
        mc.store.append(case_id, sample_history(case_id, at=at), expected_version=0)


def shanghai(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=SHANGHAI)  # type: ignore[misc]


def parse_csv(data: bytes) -> tuple[list[list[str]], dict[str, str]]:
    """The daily rows (with the header and the 合计 row) and the figures by English key."""
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM spreadsheet programs need
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    blank = rows.index([])
    daily, figures = rows[:blank], rows[blank + 1 :]
    assert figures[0] == ["项目", "数值", "字段"]
    return daily, {key: value for _, value, key in figures[1:]}


# --- the figures ----------------------------------------------------------------------------


@settings(max_examples=60)
@given(
    st.lists(
        st.datetimes(
            min_value=dt.datetime(2024, 4, 30, 12), max_value=dt.datetime(2024, 6, 1, 12)
        ).map(lambda d: d.replace(tzinfo=dt.UTC)),
        max_size=25,
    )
)
def test_each_day_counts_the_cases_opened_that_day_in_shanghai(
    moments: list[dt.datetime],
) -> None:
    """For every set of openings around the month's edges (UTC times: 16:00 UTC on 31 May
    is June in Shanghai), each day's counts are the cases opened on that Shanghai date, and
    the days add up to the recorded report."""
    clock = ManualClock(shanghai(2024, 6, 3, 10))
    mc = engine(clock)
    open_at(mc, moments)
    report = mc.volume_report(MAY)
    expected = Counter(local_date(m) for m in moments if ServiceMonth.of(local_date(m)) == MAY)
    assert [d.day for d in report.days] == [dt.date(2024, 5, n) for n in range(1, 32)]
    for d in report.days:
        assert d.inbound == d.connected == d.billable == expected[d.day]
    recorded = report.settlement.report
    assert report.billable == recorded.billable_calls == sum(expected.values())
    assert report.inbound == recorded.inbound_calls
    assert (
        report.fee
        == report.settlement.provisional_fee
        == report.billable * report.settlement.unit_price
    )


def test_the_csv_holds_every_figure_of_the_report() -> None:
    clock = ManualClock(shanghai(2024, 5, 20, 10))
    mc = engine(clock)
    open_at(mc, [shanghai(2024, 4, 21, 9), shanghai(2024, 4, 21, 23, 59), shanghai(2024, 4, 30, 8)])
    report = mc.volume_report(APRIL)
    daily, figures = parse_csv(report_csv(report))
    assert (
        daily[0]
        == [zh for zh, _ in DAILY_COLUMNS]
        == ["日期", "呼入（次）", "接通（次）", "计费呼叫（次）"]
    )
    assert daily[-1] == ["合计", "3", "3", "3"]
    by_day = {row[0]: row[1:] for row in daily[1:-1]}
    assert len(by_day) == 30
    assert by_day["2024-04-21"] == ["2", "2", "2"] and by_day["2024-04-30"] == ["1", "1", "1"]
    assert by_day["2024-04-01"] == ["0", "0", "0"]
    s = report.settlement
    assert figures["billable"] == "3" and figures["inbound"] == "3" and figures["connected"] == "3"
    assert figures["unit_price"] == "1.90" and figures["fee"] == "5.70"
    assert figures["digest"] == s.report.digest and figures["report_hash"] == s.report.hash
    assert figures["report_due"] == "2024-05-06"  # 1-5 May is the Labour Day holiday
    assert figures["objection_deadline"] == "2024-05-15"
    assert figures["tree_size"] == "" and figures["tree_root"] == ""  # no ledger in memory
    assert figures["month"] == "2024-04" and figures["party_a"] == WUJIN_114_2024.party_a
    data = report_json(report)
    assert data["fee"] == "5.70" and data["mode"] == "volume" and data["tree_root"] is None
    assert data["days"][20] == {"date": "2024-04-21", "inbound": 2, "connected": 2, "billable": 2}


def test_a_month_not_over_has_no_report() -> None:
    mc = engine(ManualClock(shanghai(2024, 4, 30, 23, 59)))
    with pytest.raises(MonthNotOver):
        mc.volume_report(APRIL)


def test_days_that_no_longer_add_up_to_the_recorded_report_are_refused() -> None:
    clock = ManualClock(shanghai(2024, 5, 20, 10))
    mc = engine(clock)
    open_at(mc, [shanghai(2024, 4, 10, 9)])
    settled = mc.settle_month(APRIL)
    open_at(mc, [shanghai(2024, 4, 11, 9)], prefix="late")  # written into the past
    assert isinstance(mc.store, InMemoryCaseStore)
    with pytest.raises(MonthAlreadyReported, match="add up to 2"):
        build_report(settled, mc.store, contract=mc.contract, at=clock.now())


# --- when it is due ----------------------------------------------------------------------------


MONTHS = [ServiceMonth(2024, 4)]
while MONTHS[-1] < ServiceMonth(2027, 3):
    MONTHS.append(MONTHS[-1].next())


@pytest.mark.parametrize("month", MONTHS, ids=str)
def test_the_report_is_due_on_the_first_working_day_never_after_the_deadline(
    month: ServiceMonth,
) -> None:
    due = report_send_time(month, RULES)
    first = month.next().first_day()
    assert due.tzinfo is SHANGHAI and due.time() == dt.time(9, 0)
    assert due >= month.bounds()[1]
    if not CN_CALENDAR.covers(first.year):  # 2027: no State Council notice yet
        assert due.date() == first
        return
    deadline = monthly_deadlines(month, RULES).report_due
    assert due < end_of_day(deadline)
    assert CN_CALENDAR.is_working_day(due.date())
    day = first
    while day < due.date():  # no working day before it in the month
        assert not CN_CALENDAR.is_working_day(day)
        day += dt.timedelta(days=1)


def test_known_report_days() -> None:
    assert report_send_time(APRIL, RULES) == shanghai(2024, 5, 6, 9)  # Labour Day 1-5 May
    assert report_send_time(ServiceMonth(2025, 9), RULES) == shanghai(2025, 10, 9, 9)  # 国庆
    assert report_send_time(ServiceMonth(2024, 6), RULES) == shanghai(2024, 7, 1, 9)
    unshifted = SettlementRules(shift=DeadlineShift.NONE)
    # The 5th as written comes before the first working day after the National Day week.
    assert report_send_time(ServiceMonth(2025, 9), unshifted) == shanghai(2025, 10, 5, 9)
    assert report_send_time(ServiceMonth(2026, 12), RULES) == shanghai(2027, 1, 1, 9)


TERM = ContractTerm.start()
months = st.sampled_from([ServiceMonth(2023, 11), *MONTHS, ServiceMonth(2027, 7)])


@given(now=months, day=st.integers(1, 28), last=st.none() | months)
def test_the_months_scheduled_follow_the_last_report_inside_the_term(
    now: ServiceMonth, day: int, last: ServiceMonth | None
) -> None:
    at = dt.datetime.combine(now.day(day), dt.time(12), tzinfo=SHANGHAI)
    scheduled = months_to_report(at, last, TERM, RULES)
    first, end = ServiceMonth(2024, 4), ServiceMonth(2025, 3)  # the first service year
    for a, b in itertools.pairwise(scheduled):
        assert b == a.next()  # one after another, none skipped
    # The last month reported comes again only while its report is not late yet (it may
    # have been settled by hand before its day); the outbox keeps its key once.
    still_due = False
    if last is not None:
        if CN_CALENDAR.covers(last.next().year):
            deadline = monthly_deadlines(last, RULES).report_due
        else:  # no State Council notice for that year: the 5th as written
            deadline = last.next().day(5)
        still_due = at < end_of_day(deadline)
    for m in scheduled:
        assert first <= m <= end and m <= now
        assert last is None or m > last or (m == last and still_due)
    if scheduled:
        if last is None:
            expected_start = max(first, now.previous())
        else:
            expected_start = last if still_due else last.next()
        assert scheduled[0] == max(expected_start, first)
        assert scheduled[-1] == min(now, end)
    elif first <= now <= end:
        assert last is not None and last >= now


# --- delivered by the worker -------------------------------------------------------------------


def test_the_report_waits_in_the_outbox_then_is_mailed_once() -> None:
    clock = ManualClock(shanghai(2024, 4, 20, 10))
    mailer = InMemoryReportMailer()
    mc = engine(clock, mailer)
    open_at(mc, [shanghai(2024, 4, 21, 9), shanghai(2024, 4, 25, 18)])
    mc.run_due()
    [waiting] = [e for e in mc.store.pending() if e.kind == MONTHLY_REPORT]  # type: ignore[attr-defined]
    assert waiting == Effect(
        "monthly_report:2024-04", MONTHLY_REPORT, NO_CASE, shanghai(2024, 5, 6, 9),
        {"month": "2024-04"},
    )  # fmt: skip
    clock.set(shanghai(2024, 5, 6, 8, 59))
    assert [r for r in mc.run_due() if r.kind == MONTHLY_REPORT] == []
    assert mailer.sent == []
    clock.set(shanghai(2024, 5, 6, 9, 0))
    [run] = [r for r in mc.run_due() if r.kind == MONTHLY_REPORT]
    assert run.ok and run.key == report_key(APRIL) and run.case_id == NO_CASE
    assert run.outcome == "report 2024-04 mailed to 1 address(es) with 1 attachment(s)"
    [mail] = mailer.sent
    assert mail.key == "monthly_report:2024-04" and mail.to == (PARTY_A,)
    assert mail.subject == "114 移车话务量报表 2024年04月"
    assert "计费呼叫（成功接通话务量）：2 次" in mail.body and "运营服务费：3.80 元" in mail.body
    [attached] = mail.attachments
    assert attached.filename == "114移车话务量报表_2024-04.csv"
    _, figures = parse_csv(attached.data)
    assert figures["billable"] == "2" and figures["fee"] == "3.80"
    # Recorded: the report and the settlement are the store's.
    assert mc.store.report(APRIL) is not None and mc.store.settlement(APRIL) is not None  # type: ignore[attr-defined]
    # The next month's report is in the outbox now; nothing is sent twice.
    assert [e.key for e in mc.store.pending() if e.kind == MONTHLY_REPORT] == [  # type: ignore[attr-defined]
        "monthly_report:2024-05"
    ]
    clock.advance(hours=1)
    assert [r for r in mc.run_due() if r.kind == MONTHLY_REPORT] == []
    assert len(mailer.sent) == 1


def test_a_repeat_after_a_crash_carries_the_same_key() -> None:
    clock = ManualClock(shanghai(2024, 5, 6, 9))
    mailer = InMemoryReportMailer()
    mc = engine(clock, mailer)
    open_at(mc, [shanghai(2024, 4, 21, 9)])
    mc._schedule_reports(clock.now())
    store = mc.store
    assert isinstance(store, InMemoryCaseStore)
    [claimed] = store.claim("w1", keys=[report_key(APRIL)])
    mc.run_effect(claimed.effect, attempt=claimed.attempts)  # mailed; then the worker dies
    clock.advance(minutes=5)  # its lease runs out: another worker takes it
    [again] = [r for r in mc.run_due(worker="w2") if r.kind == MONTHLY_REPORT]
    assert again.ok
    assert len(mailer.sent) == 1 and mailer.repeats == 1  # the receiver dropped the repeat
    assert [r.month for r in store.reports()] == [APRIL]  # recorded once


class FlakyMailer(InMemoryReportMailer):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def send(
        self,
        key: str,
        to: Sequence[str],
        subject: str,
        body: str,
        attachments: Sequence[Attachment] = (),
    ) -> None:
        if self.failures:
            self.failures -= 1
            raise PortError("smtp://mail.example.cn:25: connection refused")
        super().send(key, to, subject, body, attachments)


def test_a_failed_mail_stays_in_the_outbox_and_a_late_one_says_so() -> None:
    clock = ManualClock(shanghai(2024, 5, 6, 9))
    mailer = FlakyMailer(failures=1)
    mc = engine(clock, mailer)
    [failed] = [r for r in mc.run_due() if r.kind == MONTHLY_REPORT]
    assert not failed.ok and "connection refused" in (failed.error or "")
    assert report_key(APRIL) in [e.key for e in mc.store.pending()]  # type: ignore[attr-defined]
    clock.set(shanghai(2024, 5, 7, 9))  # the server was down past the deadline (6 May)
    [late] = [r for r in mc.run_due() if r.kind == MONTHLY_REPORT]
    assert late.ok and late.outcome.endswith("late: due by 2024-05-06")
    assert [m.key for m in mailer.sent] == ["monthly_report:2024-04"]


def test_an_engine_without_reports_schedules_none() -> None:
    clock = ManualClock(shanghai(2024, 5, 6, 9))
    mc = engine(clock)
    open_at(mc, [shanghai(2024, 4, 21, 9)])
    mc.run_due()
    assert not [e for e in mc.store.pending() if e.kind == MONTHLY_REPORT]  # type: ignore[attr-defined]
    with pytest.raises(PortError, match="reports=ReportDelivery"):
        mc.run_effect(report_effect(APRIL, RULES))


def test_a_key_is_scheduled_once_even_after_it_is_done() -> None:
    clock = ManualClock(shanghai(2024, 5, 6, 9))
    store = InMemoryCaseStore(clock=clock)
    effect = report_effect(APRIL, RULES)
    assert store.schedule(effect) and not store.schedule(effect)
    [claimed] = store.claim("w", keys=[effect.key])
    assert store.complete(claimed)
    assert not store.schedule(effect)
    assert list(store.pending()) == []


def test_hostile_configuration_is_refused() -> None:
    clock = ManualClock()
    with pytest.raises(InvalidInput):
        ReportDelivery(InMemoryReportMailer(), "not an address")
    with pytest.raises(InvalidInput):
        ReportDelivery(InMemoryReportMailer(), [PARTY_A, PARTY_A])
    with pytest.raises(InvalidInput):
        ReportDelivery(object(), PARTY_A)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        ReportDelivery(InMemoryReportMailer(), PARTY_A, send_at=dt.time(9, tzinfo=dt.UTC))
    with pytest.raises(InvalidCommand):
        MoveCar(
            store=InMemoryCaseStore(clock=clock), registry=InMemoryVehicleRegistry(),
            telephony=InMemoryTelephony(), clock=clock, reports=object(),  # type: ignore[arg-type]
        )  # fmt: skip
    mc = engine(ManualClock(shanghai(2024, 5, 6, 9)), InMemoryReportMailer())
    wrong = Effect("monthly_report:2024-05", MONTHLY_REPORT, NO_CASE, shanghai(2024, 5, 6, 9),
                   {"month": "2024-04"})  # fmt: skip
    with pytest.raises(InvalidCommand, match="not the key"):
        mc.run_effect(wrong)
    bad = Effect("monthly_report:x", MONTHLY_REPORT, NO_CASE, shanghai(2024, 5, 6, 9), {})
    with pytest.raises(InvalidInput):
        mc.run_effect(bad)


def test_a_month_settled_by_hand_before_its_day_is_still_mailed_on_schedule() -> None:
    clock = ManualClock(shanghai(2024, 5, 2, 10))
    mailer = InMemoryReportMailer()
    mc = engine(clock, mailer)
    open_at(mc, [shanghai(2024, 4, 21, 9)])
    mc.settle_month(APRIL)  # `movecar settle --month 2024-04` on 2 May
    mc.run_due()  # the worker starts afterwards
    keys = [e.key for e in mc.store.pending() if e.kind == MONTHLY_REPORT]  # type: ignore[attr-defined]
    assert keys == ["monthly_report:2024-04", "monthly_report:2024-05"]
    clock.set(shanghai(2024, 5, 6, 9))
    mc.run_due()
    assert [m.key for m in mailer.sent] == ["monthly_report:2024-04"]


def test_a_report_recorded_long_ago_is_not_mailed_again() -> None:
    clock = ManualClock(shanghai(2024, 5, 20, 10))
    mailer = InMemoryReportMailer()
    mc = engine(clock, mailer)
    mc.settle_month(APRIL)  # reported before mail was configured
    clock.set(shanghai(2024, 6, 10, 10))
    [run] = [r for r in mc.run_due() if r.kind == MONTHLY_REPORT]
    assert [m.key for m in mailer.sent] == ["monthly_report:2024-05"]
    assert run.outcome.endswith("late: due by 2024-06-05")  # late, but sent
    keys = [e.key for e in mc.store.pending() if e.kind == MONTHLY_REPORT]  # type: ignore[attr-defined]
    assert keys == ["monthly_report:2024-06"]
