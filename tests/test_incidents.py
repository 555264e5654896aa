"""Outages and security incidents (二(五), annex 2 十六, 五(二)): the deadlines, the
findings and their delays, the days without the 24-hour service, the log's rules, the
notices and their delivery, on the in-memory adapters."""

from __future__ import annotations

import contextlib
import datetime as dt
from decimal import Decimal

import attrs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from movecar_core.calendar import SHANGHAI
from movecar_core.clock import ManualClock
from movecar_core.contract import WUJIN_114_2024
from movecar_core.errors import MAX_MESSAGE, PortError, redact
from movecar_core.findings import Finding
from movecar_core.incidents import (
    MAX_CAUSE,
    MAX_SUMMARY,
    OUTAGE_CLAUSE,
    SECURITY_CLAUSE,
    CorruptIncidentLog,
    IncidentConflict,
    IncidentLog,
    IncidentRecord,
    IncidentRefused,
    Incidents,
    InMemoryIncidentStore,
    InvalidIncident,
    NoticeKind,
    NoticeSent,
    OutageEnded,
    OutageStarted,
    SecurityKind,
    UnknownIncident,
    decode_record,
    encode_record,
    fold,
    interrupted_days,
    is_late,
    late_notices,
    month_of_incidents,
    notice_allowance,
    notice_finding,
    notice_key,
    render_notice,
    type_name,
)
from movecar_core.memory import InMemoryCommandCentre
from movecar_core.penalties import service_gap_dates, service_gap_days, service_gap_penalty
from movecar_core.settlement import ServiceMonth
from movecar_core.simulation import Finding as SimulationFinding
from movecar_core.testing.incident_contracts import IncidentStoreContract
from movecar_core.testing.strategies import aware_datetimes, forbidden_texts, phones, texts

T0 = dt.datetime(2025, 3, 14, 8, 0, tzinfo=SHANGHAI)
THIRTY = dt.timedelta(minutes=30)
DAY = dt.timedelta(hours=24)

#: Any delay from nothing to three days, to the microsecond, and the boundaries themselves.
delays = st.one_of(
    st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=3)),
    st.sampled_from(
        [
            THIRTY,
            THIRTY + dt.timedelta(microseconds=1),
            THIRTY - dt.timedelta(microseconds=1),
            DAY,
            DAY + dt.timedelta(microseconds=1),
        ]
    ),
)
zones = st.sampled_from([SHANGHAI, dt.UTC, dt.timezone(dt.timedelta(hours=-5, minutes=-30))])
kinds = st.sampled_from(list(NoticeKind))


def service(
    clock: ManualClock | None = None, centre: object = "memory", **kwargs: object
) -> tuple[Incidents, InMemoryCommandCentre, ManualClock]:
    the_clock = clock or ManualClock(T0)
    desk = InMemoryCommandCentre()
    chosen = desk if centre == "memory" else centre
    return (
        Incidents(InMemoryIncidentStore(), clock=the_clock, centre=chosen, **kwargs),  # type: ignore[arg-type]
        desk,
        the_clock,
    )


class TestInMemoryIncidentStore(IncidentStoreContract):
    @pytest.fixture
    def incident_store(self) -> InMemoryIncidentStore:
        return InMemoryIncidentStore()


# --- the deadlines: late iff the delay is more than the allowance -------------------------


def test_the_allowances_are_the_contracts() -> None:
    # 二(五) "故障发生后的 30 分钟内" and "恢复服务 30 分钟内"; annex 2 十六 "在 24 小时内".
    assert notice_allowance(NoticeKind.FAULT) == THIRTY
    assert notice_allowance(NoticeKind.RECOVERY) == THIRTY
    assert notice_allowance(NoticeKind.SECURITY_REPORT) == DAY
    other = attrs.evolve(WUJIN_114_2024, outage_notice_minutes=15, incident_report_hours=12)
    assert notice_allowance(NoticeKind.FAULT, other) == dt.timedelta(minutes=15)
    assert notice_allowance(NoticeKind.SECURITY_REPORT, other) == dt.timedelta(hours=12)


@given(occurred=aware_datetimes(), zone=zones, delay=delays, kind=kinds)
def test_a_sent_notice_is_late_iff_its_delay_exceeds_the_allowance(
    occurred: dt.datetime, zone: dt.tzinfo, delay: dt.timedelta, kind: NoticeKind
) -> None:
    sent = (occurred + delay).astimezone(zone)
    allowance = notice_allowance(kind)
    late = delay > allowance
    assert is_late(kind, occurred, sent) is late
    found = notice_finding(kind, "outage-0001", occurred, sent, as_of=sent + DAY * 9)
    assert (found is not None) is late
    if found is not None:
        assert found.delay == sent - occurred == delay
        assert found.clause == (
            SECURITY_CLAUSE if kind is NoticeKind.SECURITY_REPORT else OUTAGE_CLAUSE
        )
        assert found.when == occurred.isoformat()
        assert "outage-0001" in found.what and "sent" in found.what


@given(occurred=aware_datetimes(), zone=zones, waited=delays, kind=kinds)
def test_a_missing_notice_is_a_finding_once_overdue_and_its_delay_grows(
    occurred: dt.datetime, zone: dt.tzinfo, waited: dt.timedelta, kind: NoticeKind
) -> None:
    as_of = (occurred + waited).astimezone(zone)
    found = notice_finding(kind, "security-0001", occurred, None, as_of=as_of)
    assert (found is not None) is (waited > notice_allowance(kind))
    if found is not None:
        assert found.delay == waited and "not sent" in found.what


def test_the_one_finding_type_is_the_simulators() -> None:
    assert SimulationFinding is Finding


@settings(max_examples=60)
@given(
    back=st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(hours=2)),
    fault_wait=delays,
    length=st.timedeltas(min_value=dt.timedelta(seconds=1), max_value=dt.timedelta(days=2)),
    recovery_wait=delays,
)
def test_the_service_finds_exactly_the_late_notices_with_their_delays(
    back: dt.timedelta,
    fault_wait: dt.timedelta,
    length: dt.timedelta,
    recovery_wait: dt.timedelta,
) -> None:
    """An outage recorded ``back`` after its fault, its notices sent when the worker runs:
    a notice is a finding iff it went out more than 30 minutes after its event, and the
    finding's delay is exactly the time between them."""
    incidents, desk, clock = service()
    start = clock.now() - back
    incidents.start_outage("机房供电故障", at=start)
    clock.set(start + max(fault_wait, back))
    (run,) = incidents.run_due()
    fault_delay = clock.now() - start
    assert run.ok and run.late is (fault_delay > THIRTY)
    end = start + length
    clock.set(max(end, clock.now()))
    incidents.end_outage(at=end)
    clock.set(max(end + recovery_wait, clock.now()))
    (run,) = incidents.run_due()
    recovery_delay = clock.now() - end
    assert run.ok and run.late is (recovery_delay > THIRTY)
    found = {need.kind.value: f for need, f in late_notices(incidents.log(), clock.now())}
    assert set(found) == {
        kind
        for kind, delay in (("fault", fault_delay), ("recovery", recovery_delay))
        if delay > THIRTY
    }
    if "fault" in found:
        assert found["fault"].delay == fault_delay and found["fault"].when == start.isoformat()
    if "recovery" in found:
        assert found["recovery"].delay == recovery_delay
    assert [n.key for n in desk.notices] == [
        "incident:outage-0001:fault",
        "incident:outage-0001:recovery",
    ]


# --- days without the 24-hour service (五(二)) ---------------------------------------------


@st.composite
def outage_plans(draw: st.DrawFn) -> list[tuple[dt.timedelta, dt.timedelta]]:
    """(pause before, length) of consecutive outages: minutes to days, across midnights."""
    step = st.timedeltas(min_value=dt.timedelta(seconds=1), max_value=dt.timedelta(days=3))
    return draw(st.lists(st.tuples(step, step), min_size=0, max_size=6))


def _run_outages(
    plan: list[tuple[dt.timedelta, dt.timedelta]], open_last: bool
) -> tuple[Incidents, list[tuple[dt.datetime, dt.datetime]], ManualClock]:
    incidents, _, clock = service(ManualClock(dt.datetime(2025, 1, 30, 22, 0, tzinfo=SHANGHAI)))
    spans = []
    for i, (pause, length) in enumerate(plan):
        clock.advance(pause)
        start = clock.now()
        incidents.start_outage(f"故障 {i}", at=start)
        clock.advance(length)
        if open_last and i == len(plan) - 1:
            spans.append((start, clock.now()))  # open: it lasts until now
            break
        incidents.end_outage()
        spans.append((start, clock.now()))
    return incidents, spans, clock


def _brute_force_days(spans: list[tuple[dt.datetime, dt.datetime]]) -> set[dt.date]:
    """Every Shanghai day whose [00:00, 24:00) meets an outage, day by day."""
    out = set()
    for start, end in spans:
        day = start.astimezone(SHANGHAI).date() - dt.timedelta(days=1)
        while dt.datetime(day.year, day.month, day.day, tzinfo=SHANGHAI) < end:
            lo = dt.datetime(day.year, day.month, day.day, tzinfo=SHANGHAI)
            if max(lo, start) < min(lo + DAY, end):
                out.add(day)
            day += dt.timedelta(days=1)
    return out


@settings(max_examples=80)
@given(plan=outage_plans(), open_last=st.booleans())
def test_interrupted_days_are_counted_by_the_penalty_engines_rule(
    plan: list[tuple[dt.timedelta, dt.timedelta]], open_last: bool
) -> None:
    incidents, spans, clock = _run_outages(plan, open_last)
    log = incidents.log()
    days = interrupted_days(log.outages(), as_of=clock.now())
    assert set(days) == set(service_gap_dates(spans)) == _brute_force_days(spans)
    assert len(days) == service_gap_days(spans)
    months = sorted({ServiceMonth.of(d) for d in days})
    per_month = [incidents.month(m) for m in months]
    assert sum(len(m.interrupted_days) for m in per_month) == len(days)
    for m in per_month:
        assert all(ServiceMonth.of(d) == m.month for d in m.interrupted_days)
        start, end = m.month.bounds()
        clipped = sum(max(0.0, (min(b, end) - max(a, start)).total_seconds()) for a, b in spans)
        assert m.outage_minutes == int(clipped // 60)
        fee = Decimal("123456.78")
        assert m.service_gap_penalty(fee, contract=WUJIN_114_2024) == (
            service_gap_penalty(fee, len(m.interrupted_days))
        )


def test_an_outage_across_midnight_marks_both_days_and_ends_at_midnight_mark_one() -> None:
    incidents, _, clock = service(ManualClock(dt.datetime(2025, 3, 31, 23, 50, tzinfo=SHANGHAI)))
    incidents.start_outage("光缆中断")
    clock.set(dt.datetime(2025, 4, 1, 0, 0, tzinfo=SHANGHAI))
    incidents.end_outage()  # [23:50, 00:00): only the 31st
    assert incidents.month(ServiceMonth(2025, 3)).interrupted_days == (dt.date(2025, 3, 31),)
    assert incidents.month(ServiceMonth(2025, 4)).interrupted_days == ()
    clock.advance(minutes=5)
    incidents.start_outage("光缆再次中断")
    clock.advance(hours=24)
    # open: counted until now, the 1st and the 2nd
    assert incidents.month(ServiceMonth(2025, 4)).interrupted_days == (
        dt.date(2025, 4, 1),
        dt.date(2025, 4, 2),
    )


# --- the rules: typed refusals, nothing written ---------------------------------------------


def test_refusals_are_typed_and_write_nothing() -> None:
    incidents, _, clock = service()
    store = incidents.store
    with pytest.raises(IncidentRefused, match="no outage is open"):
        incidents.end_outage()
    incidents.start_outage("数据库主库宕机", at=clock.now() - dt.timedelta(minutes=5))
    before = list(store.records())
    with pytest.raises(IncidentRefused, match="still open"):
        incidents.start_outage("又一个故障")
    with pytest.raises(IncidentRefused, match="not after its start"):
        incidents.end_outage(at=clock.now() - dt.timedelta(minutes=10))
    with pytest.raises(UnknownIncident):
        incidents.end_outage(incident_id="outage-0007")
    with pytest.raises(UnknownIncident):
        incidents.record_notice("security-0001", "security_report")
    with pytest.raises(UnknownIncident):
        incidents.record_notice(12345, "fault")  # type: ignore[arg-type]
    with pytest.raises(IncidentRefused, match="not ended"):
        incidents.record_notice("outage-0001", "recovery")
    with pytest.raises(InvalidIncident):
        incidents.record_notice("outage-0001", "carrier-pigeon")
    assert list(store.records()) == before
    clock.advance(minutes=1)
    incidents.end_outage()
    with pytest.raises(IncidentRefused, match="ended already"):
        incidents.end_outage(incident_id="outage-0001")
    # The next outage may not start inside the previous one.
    with pytest.raises(IncidentRefused, match="before outage outage-0001 ended"):
        incidents.start_outage("回溯", at=clock.now() - dt.timedelta(minutes=2))


@pytest.mark.parametrize(
    "at",
    [
        dt.datetime(2025, 3, 14, 8, 0),  # naive
        T0 + dt.timedelta(seconds=1),  # in the future
        T0 - dt.timedelta(days=366 * 3 + 1),  # older than the records are kept
        "2025-03-14T08:00:00+08:00",  # not a datetime
    ],
)
def test_hostile_times_are_refused(at: object) -> None:
    incidents, _, _ = service()
    for command in (
        lambda: incidents.start_outage("故障", at=at),  # type: ignore[arg-type]
        lambda: incidents.report_security_incident("leak", "泄露", at=at),  # type: ignore[arg-type]
    ):
        with pytest.raises(InvalidIncident, match="at="):
            command()
    assert list(incidents.store.records()) == []


@given(
    text=st.one_of(
        forbidden_texts(),
        phones().map(lambda p: f"请联系值班员 {p}"),
        st.just(""),
        st.just("   "),
        st.just(" 前后空格 "),
        st.integers(),
        st.none(),
    )
)
def test_hostile_text_is_refused_naming_the_field(text: object) -> None:
    incidents, _, _ = service()
    with pytest.raises(InvalidIncident, match="cause=") as cause:
        incidents.start_outage(text)  # type: ignore[arg-type]
    with pytest.raises(InvalidIncident, match="summary=") as summary:
        incidents.report_security_incident("leak", text)  # type: ignore[arg-type]
    for error in (cause.value, summary.value):
        message = str(error)
        assert redact(message) == message and len(message) <= MAX_MESSAGE
    assert list(incidents.store.records()) == []


def test_huge_text_is_refused_with_a_short_message() -> None:
    incidents, _, clock = service()
    for limit, command in (
        (MAX_CAUSE, incidents.start_outage),
        (MAX_SUMMARY, lambda t: incidents.report_security_incident("loss", t)),
        (100, lambda t: incidents.start_outage("故障", actor=t)),
    ):
        command("故" * limit if limit != 100 else "a" * limit)  # the limit itself is fine
        if limit != MAX_SUMMARY:
            clock.advance(minutes=1)
            incidents.end_outage()
        with pytest.raises(InvalidIncident, match="longer than") as refused:
            command("故" * 1_000_000)
        assert len(str(refused.value)) < 300
    with pytest.raises(InvalidIncident, match="kind="):
        incidents.report_security_incident("alien_invasion", "外星人")


def test_a_stored_log_that_does_not_replay_is_corrupt_and_names_the_record() -> None:
    start = OutageStarted("outage-0001", T0, "停电", T0, "op")
    forged: list[IncidentRecord] = [start, OutageEnded("outage-0001", T0, T0, "op")]
    with pytest.raises(CorruptIncidentLog, match="record 2 does not replay"):
        fold(forged)
    bogus = NoticeSent(
        "outage-0001", "fault", notice_key("outage-0001", NoticeKind.FAULT), T0, T0, "m", "c"
    )
    with pytest.raises(CorruptIncidentLog, match="record 1"):
        fold([bogus])


@given(st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=8), st.text())
def test_decoding_junk_is_corrupt_never_a_crash(payload: dict[str, str], name: str) -> None:
    for type_ in (name, "outage_started", "notice_sent"):
        with pytest.raises(CorruptIncidentLog):
            decode_record(type_, payload)


def test_records_round_trip_through_their_encoding() -> None:
    records: list[IncidentRecord] = [
        OutageStarted("outage-0001", T0, "停电", T0, "op"),
        NoticeSent(
            "outage-0001", "fault", notice_key("outage-0001", NoticeKind.FAULT), T0, T0, "m", "c"
        ),
    ]
    for record in records:
        assert decode_record(type_name(record), encode_record(record)) == record
    with pytest.raises(InvalidIncident, match="key="):
        NoticeSent("outage-0001", "fault", "another key", T0, T0, "m", "c")
    with pytest.raises(InvalidIncident, match="incident_id="):
        OutageStarted("outage-13912345678", T0, "停电", T0, "op")


# --- the notices ----------------------------------------------------------------------------


@settings(max_examples=60)
@given(cause=texts(min_size=1, max_size=80), summary=texts(min_size=1, max_size=200))
def test_notices_are_chinese_name_the_incident_times_and_cause_and_never_a_phone(
    cause: str, summary: str
) -> None:
    cause, summary = cause.strip(), summary.strip()
    assume(cause and summary and redact(cause) == cause and redact(summary) == summary)
    incidents, desk, clock = service()
    incidents.start_outage(cause, at=clock.now() - dt.timedelta(minutes=3))
    clock.advance(minutes=40)
    incidents.end_outage()
    incidents.report_security_incident(SecurityKind.AUDIT_FAILURE, summary)
    assert all(r.ok for r in incidents.run_due())
    by_key = {n.key: n for n in desk.notices}
    fault = by_key["incident:outage-0001:fault"]
    recovery = by_key["incident:outage-0001:recovery"]
    report = by_key["incident:security-0001:security_report"]
    assert desk.notices[0] is fault and len(desk.notices) == 3
    assert "技术故障" in fault.subject and "outage-0001" in fault.subject
    assert "2025-03-14 07:57:00（北京时间）" in fault.message and cause in fault.message
    assert "恢复" in recovery.subject and "2025-03-14 08:40:00（北京时间）" in recovery.message
    assert "中断约 43 分钟" in recovery.message and cause in recovery.message
    assert "security-0001" in report.subject and "审计校验未通过" in report.message
    assert summary in report.message and "24 小时" in report.message
    for n in desk.notices:
        assert redact(n.subject + n.message) == n.subject + n.message
        assert WUJIN_114_2024.transfer_110_number not in n.message


def test_render_notice_refuses_a_notice_the_incident_does_not_have() -> None:
    log = IncidentLog()
    log.apply(OutageStarted("outage-0001", T0, "停电", T0, "op"))
    with pytest.raises(InvalidIncident):
        render_notice(log.get("outage-0001"), NoticeKind.SECURITY_REPORT)


# --- delivery: nothing lost, nothing sent twice -------------------------------------------


class FlakyDesk:
    """A 110 desk whose line fails while ``down``; counts every call to it."""

    def __init__(self) -> None:
        self.down = False
        self.calls: list[str] = []
        self.inbox = InMemoryCommandCentre()

    def notify(self, key: str, subject: str, message: str) -> None:
        self.calls.append(key)
        if self.down:
            raise PortError("smtp: connection refused")
        self.inbox.notify(key, subject, message)


def test_a_failed_send_stays_pending_and_is_retried_after_the_pause() -> None:
    desk = FlakyDesk()
    incidents, _, clock = service(centre=desk, retry_after=dt.timedelta(seconds=30))
    incidents.start_outage("核心网故障")
    desk.down = True
    (run,) = incidents.run_due()
    assert not run.ok and run.outcome == "failed" and "connection refused" in (run.error or "")
    assert incidents.run_due() == []  # waiting for the retry
    clock.advance(seconds=31)
    assert [r.outcome for r in incidents.run_due()] == ["failed"]
    desk.down = False
    clock.advance(seconds=31)
    (run,) = incidents.run_due()
    assert run.ok and run.outcome == "sent" and not run.late
    assert [n.key for n in desk.inbox.notices] == ["incident:outage-0001:fault"]
    assert incidents.run_due() == []
    assert incidents.log().outages()[0].notices[0].sent_at == clock.now()


def test_without_a_desk_every_notice_stays_pending_and_says_why() -> None:
    incidents, _, clock = service(centre=None)
    incidents.start_outage("故障")
    (run,) = incidents.run_due()
    assert run.outcome == "failed" and "no 110 desk" in (run.error or "")
    clock.advance(hours=1)
    assert [f.delay for f in incidents.findings()] == [dt.timedelta(hours=1)]


def test_the_recovery_notice_waits_for_the_fault_notice() -> None:
    desk = FlakyDesk()
    incidents, _, clock = service(centre=desk, retry_after=dt.timedelta(0))
    incidents.start_outage("故障")
    clock.advance(minutes=2)
    incidents.end_outage()
    desk.down = True
    assert [r.kind for r in incidents.run_due()] == [NoticeKind.FAULT]
    desk.down = False
    assert [r.kind for r in incidents.run_due()] == [NoticeKind.FAULT, NoticeKind.RECOVERY]


class FailingOnceStore(InMemoryIncidentStore):
    """A store whose next append fails like a database that went away."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next = False

    def append(self, record: IncidentRecord, expected: int) -> int:
        if self.fail_next:
            self.fail_next = False
            raise PortError("database is down")
        return super().append(record, expected)


def test_a_sent_notice_whose_record_failed_is_recorded_later_with_its_send_time() -> None:
    desk = FlakyDesk()
    clock = ManualClock(T0)
    store = FailingOnceStore()
    incidents = Incidents(store, clock=clock, centre=desk)
    incidents.start_outage("故障")
    clock.advance(minutes=10)
    store.fail_next = True
    (run,) = incidents.run_due()
    assert run.outcome == "sent, not recorded" and "database is down" in (run.error or "")
    clock.advance(minutes=50)
    (run,) = incidents.run_due()
    assert run.outcome == "sent" and not run.late  # sent at 10 min, not at 60
    assert desk.calls == ["incident:outage-0001:fault"]  # never sent twice
    (notice,) = incidents.log().outages()[0].notices
    assert notice.sent_at == T0 + dt.timedelta(minutes=10)
    assert incidents.findings() == []


def test_a_crash_between_send_and_record_repeats_the_send_under_the_same_key() -> None:
    """A worker dies after the desk took the notice: the next worker (a new service on
    the same store) sends it again, the desk drops the repeat by its key, and the log
    records it once."""
    desk = FlakyDesk()
    clock = ManualClock(T0)
    store = FailingOnceStore()
    first = Incidents(store, clock=clock, centre=desk)
    first.start_outage("故障")
    store.fail_next = True
    first.run_due()  # sent, then "crashed" before recording
    second = Incidents(store, clock=clock, centre=desk)
    clock.advance(minutes=1)
    (run,) = second.run_due()
    assert run.outcome == "sent"
    assert desk.calls == ["incident:outage-0001:fault"] * 2
    assert len(desk.inbox.notices) == 1
    assert len(second.log().outages()[0].notices) == 1


def test_a_notice_given_by_phone_is_recorded_and_not_sent_again() -> None:
    incidents, desk, clock = service()
    incidents.start_outage("故障")
    clock.advance(minutes=12)
    incidents.record_notice("outage-0001", NoticeKind.FAULT, channel="phone", actor="值班长")
    assert incidents.run_due() == [] and desk.notices == []
    with pytest.raises(IncidentRefused, match="recorded already"):
        incidents.record_notice("outage-0001", "fault")


class ConflictingStore(InMemoryIncidentStore):
    """Another writer appends first ``times`` times."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.times = times

    def append(self, record: IncidentRecord, expected: int) -> int:
        if self.times:
            self.times -= 1
            raise IncidentConflict(expected, expected + 1)
        return super().append(record, expected)


def test_a_conflict_is_decided_again_and_gives_up_after_the_retries() -> None:
    clock = ManualClock(T0)
    Incidents(ConflictingStore(2), clock=clock, max_retries=3).start_outage("故障")
    with pytest.raises(IncidentConflict):
        Incidents(ConflictingStore(3), clock=clock, max_retries=3).start_outage("故障")


def test_a_month_of_incidents_holds_its_findings_only() -> None:
    incidents, _, clock = service(ManualClock(dt.datetime(2025, 3, 31, 23, 40, tzinfo=SHANGHAI)))
    incidents.start_outage("故障")
    clock.set(dt.datetime(2025, 4, 1, 1, 0, tzinfo=SHANGHAI))
    incidents.end_outage(at=dt.datetime(2025, 4, 1, 0, 30, tzinfo=SHANGHAI))
    # At exactly 30 minutes the recovery notice is not late yet ("30 分钟内").
    assert incidents.month(ServiceMonth(2025, 4)).findings == ()
    clock.advance(seconds=1)
    march = month_of_incidents(incidents.log(), ServiceMonth(2025, 3), clock.now())
    april = incidents.month(ServiceMonth(2025, 4))
    assert [f.when for f in march.findings] == ["2025-03-31T23:40:00+08:00"]
    assert [f.when for f in april.findings] == ["2025-04-01T00:30:00+08:00"]
    assert march.outage_minutes == 20 and april.outage_minutes == 30


# --- the lifecycle, as a state machine ------------------------------------------------------


class IncidentLifecycle(RuleBasedStateMachine):
    """Any sequence of commands, clock steps and worker rounds with a desk that fails at
    times: the log always replays, at most one outage is open, every notice recorded as
    sent through the port reached the desk once, every required notice is either sent or
    pending, and the findings are exactly the notices whose delay passed the allowance."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(T0)
        self.desk = FlakyDesk()
        self.store = InMemoryIncidentStore()
        self.incidents = Incidents(
            self.store, clock=self.clock, centre=self.desk, retry_after=dt.timedelta(0)
        )
        self.open: str | None = None
        self.outages = 0
        self.security = 0

    @rule(minutes=st.integers(0, 90))
    def wait(self, minutes: int) -> None:
        self.clock.advance(minutes=minutes)

    @rule(back=st.integers(0, 40), cause=st.sampled_from(["停电", "光缆中断", "数据库宕机"]))
    def start(self, back: int, cause: str) -> None:
        at = self.clock.now() - dt.timedelta(minutes=back)
        previous_end = max(
            (o.ended_at for o in self.incidents.outages() if o.ended_at), default=None
        )
        if self.open is not None or (previous_end is not None and at < previous_end):
            with pytest.raises(IncidentRefused):
                self.incidents.start_outage(cause, at=at)
            return
        outage = self.incidents.start_outage(cause, at=at)
        self.outages += 1
        assert outage.incident_id == f"outage-{self.outages:04d}"
        self.open = outage.incident_id

    @rule(back=st.integers(0, 40))
    def end(self, back: int) -> None:
        at = self.clock.now() - dt.timedelta(minutes=back)
        if self.open is None:
            with pytest.raises(IncidentRefused):
                self.incidents.end_outage(at=at)
            return
        started = self.incidents.log().get(self.open).started_at  # type: ignore[union-attr]
        if at <= started:
            with pytest.raises(IncidentRefused):
                self.incidents.end_outage(at=at)
            return
        self.incidents.end_outage(at=at)
        self.open = None

    @rule(kind=st.sampled_from(list(SecurityKind)))
    def report(self, kind: SecurityKind) -> None:
        self.incidents.report_security_incident(kind, f"{kind.label}（演练）")
        self.security += 1

    @rule(n=st.integers(1, 5), kind=kinds)
    def phone_notice(self, n: int, kind: NoticeKind) -> None:
        incident_id = (
            f"security-{n:04d}" if kind is NoticeKind.SECURITY_REPORT else f"outage-{n:04d}"
        )
        if incident_id not in self.incidents.log():
            with pytest.raises(UnknownIncident):
                self.incidents.record_notice(incident_id, kind)
            return
        # Refused when sent already, or for a recovery notice before the recovery.
        with contextlib.suppress(IncidentRefused):
            self.incidents.record_notice(incident_id, kind)

    @rule(down=st.booleans())
    def worker_round(self, down: bool) -> None:
        self.desk.down = down
        runs = self.incidents.run_due()
        assert all(r.ok is (not down) for r in runs)

    @invariant()
    def the_log_replays_and_the_notices_add_up(self) -> None:
        log = fold(self.store.records())
        assert sum(o.is_open for o in log.outages()) == (self.open is not None)
        assert len(log.outages()) == self.outages
        assert len(log.security_incidents()) == self.security
        delivered = {n.key for n in self.desk.inbox.notices}
        assert len(delivered) == len(self.desk.inbox.notices)
        pending = {n.key for n in log.pending()}
        for need in log.required_notices():
            if need.sent is None:
                assert need.key in pending or need.kind is NoticeKind.RECOVERY
            elif need.sent.channel == "command_centre":
                assert need.key in delivered
            assert need.key not in pending or need.sent is None
        now = self.clock.now()
        expected = {
            need.key
            for need in log.required_notices()
            if ((need.sent.sent_at if need.sent else now) - need.occurred_at)
            > notice_allowance(need.kind)
        }
        found = list(late_notices(log, now))
        assert {need.key for need, _ in found} == expected
        assert [f for _, f in found] == self.incidents.findings(now)
        for need, finding in found:
            assert finding.delay == (need.sent.sent_at if need.sent else now) - need.occurred_at


IncidentLifecycle.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
TestIncidentLifecycle = IncidentLifecycle.TestCase


def test_the_example_of_the_docs_runs_and_prints_what_it_says(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parent.parent / "docs" / "incidents.md"
    (block,) = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
    exec(compile(block, "docs/incidents.md", "exec"), {})
    printed = capsys.readouterr().out.strip()
    assert printed == block.strip().splitlines()[-1].removeprefix("# ")
