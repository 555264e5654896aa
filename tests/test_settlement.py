"""The monthly settlement cycle of 三: deadlines, silence = acceptance, the record's machine."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from movecar_core.calendar import CN_CALENDAR, SHANGHAI, DeadlineShift
from movecar_core.errors import (
    CalendarYearNotCovered,
    IllegalSettlementTransition,
    InvalidInput,
    MoveCarError,
    SettlementDeadlineError,
)
from movecar_core.settlement import (
    DEFAULT_RULES,
    TRANSITIONS,
    DataFalsified,
    DeemedAccepted,
    LateReportWindow,
    NegotiationConcluded,
    NegotiationOpened,
    ObjectionRaised,
    PaymentMade,
    PaymentOverdue,
    ReportAccepted,
    ReportSubmitted,
    ServiceMonth,
    SettlementEvent,
    SettlementRules,
    SettlementState,
    fold_settlement,
    monthly_deadlines,
    negotiation_deadline,
    open_settlement,
    shanghai,
)

D = dt.date
FEE = Decimal("570000.00")
SEP_2025 = ServiceMonth(2025, 9)


@pytest.mark.parametrize(
    ("month", "report_due", "objection", "payment"),
    [
        # First month of the contract. 2024-05-05 is the last day of Labour Day.
        ((2024, 4), D(2024, 5, 6), D(2024, 5, 15), D(2024, 5, 31)),
        # 2024-10-05 falls in the National Day holiday.
        ((2024, 9), D(2024, 10, 8), D(2024, 10, 15), D(2024, 10, 31)),
        # 2025-02-15 is a Saturday.
        ((2025, 1), D(2025, 2, 5), D(2025, 2, 17), D(2025, 2, 28)),
        # 2025-05-05 is Labour Day; 2025-05-31 starts the Dragon Boat break (to 06-02).
        ((2025, 4), D(2025, 5, 6), D(2025, 5, 15), D(2025, 6, 3)),
        # 2025-08-31 is a Sunday: payment moves into September.
        ((2025, 7), D(2025, 8, 5), D(2025, 8, 15), D(2025, 9, 1)),
        ((2025, 9), D(2025, 10, 9), D(2025, 10, 15), D(2025, 10, 31)),
        # 2026-01-31 is a Saturday.
        ((2025, 12), D(2026, 1, 5), D(2026, 1, 15), D(2026, 2, 2)),
    ],
)
def test_deadline_table(
    month: tuple[int, int], report_due: dt.date, objection: dt.date, payment: dt.date
) -> None:
    deadlines = monthly_deadlines(ServiceMonth(*month))
    assert (deadlines.report_due, deadlines.objection_deadline, deadlines.payment_due) == (
        report_due,
        objection,
        payment,
    )


@pytest.mark.parametrize(
    ("month", "report_due", "objection", "payment"),
    [
        ((2024, 9), D(2024, 10, 5), D(2024, 10, 15), D(2024, 10, 31)),
        ((2025, 4), D(2025, 5, 5), D(2025, 5, 15), D(2025, 5, 31)),
        ((2025, 7), D(2025, 8, 5), D(2025, 8, 15), D(2025, 8, 31)),
    ],
)
def test_deadline_table_without_art_203_shifting(
    month: tuple[int, int], report_due: dt.date, objection: dt.date, payment: dt.date
) -> None:
    rules = SettlementRules(shift=DeadlineShift.NONE)
    deadlines = monthly_deadlines(ServiceMonth(*month), rules)
    assert (deadlines.report_due, deadlines.objection_deadline, deadlines.payment_due) == (
        report_due,
        objection,
        payment,
    )


@pytest.mark.parametrize(
    ("objected_on", "closes_on"),
    [
        (D(2025, 9, 30), D(2025, 10, 14)),  # over National Day and a make-up Saturday
        (D(2025, 10, 15), D(2025, 10, 22)),  # Wednesday -> next Wednesday
        (D(2025, 2, 14), D(2025, 2, 21)),  # Friday -> next Friday
        (D(2024, 9, 29), D(2024, 10, 11)),  # 09-29 a make-up Sunday, not counted; 10-01..07 off
    ],
)
def test_negotiation_deadline_table(objected_on: dt.date, closes_on: dt.date) -> None:
    assert negotiation_deadline(objected_on) == closes_on


def test_december_2026_needs_the_2027_notice() -> None:
    with pytest.raises(CalendarYearNotCovered, match="2027"):
        monthly_deadlines(ServiceMonth(2026, 12))
    calendar = CN_CALENDAR.with_year(
        2027,
        holidays=[D(2027, 1, 1), D(2027, 1, 2), D(2027, 1, 3)],
        notice="2027 notice (test data)",
    )
    deadlines = monthly_deadlines(ServiceMonth(2026, 12), SettlementRules(calendar=calendar))
    assert deadlines.report_due == D(2027, 1, 5)


def _report(at: dt.datetime, fee: Decimal = FEE, month: ServiceMonth = SEP_2025) -> ReportSubmitted:
    return ReportSubmitted(service_month=month, billable_calls=300_000, fee=fee, at=at)


def test_silence_is_acceptance() -> None:
    record = open_settlement(_report(shanghai(2025, 10, 9, 10)))
    assert record.state is SettlementState.REPORTED
    assert not record.report_late
    # On the last minute of the objection day nothing has happened yet.
    assert record.due_events(shanghai(2025, 10, 15, 23, 59)) == ()
    events = record.due_events(shanghai(2025, 10, 16, 0, 0))
    assert events == (DeemedAccepted(at=shanghai(2025, 10, 16)),)
    accepted = record.advance(shanghai(2025, 10, 20))
    assert accepted.state is SettlementState.ACCEPTED
    assert accepted.accepted_on == D(2025, 10, 16)
    assert accepted.payment_due == D(2025, 10, 31)
    paid = accepted.apply(PaymentMade(amount=FEE, at=shanghai(2025, 10, 30, 15)))
    assert paid.state is SettlementState.PAID
    assert paid.late_payment_penalty(D(2025, 12, 1)) == Decimal("0.00")


def test_objection_by_the_deadline_in_shanghai_time() -> None:
    record = open_settlement(_report(shanghai(2025, 10, 9)))
    objected = record.apply(ObjectionRaised(at=shanghai(2025, 10, 15, 23, 59), reason="count"))
    assert objected.state is SettlementState.OBJECTED
    assert objected.negotiation_deadline == D(2025, 10, 22)
    # 16:30 UTC on the 15th is 00:30 on the 16th in Shanghai: too late.
    late = ObjectionRaised(at=dt.datetime(2025, 10, 15, 16, 30, tzinfo=dt.UTC))
    with pytest.raises(SettlementDeadlineError, match="objection deadline 2025-10-15"):
        record.apply(late)
    assert record.state is SettlementState.REPORTED  # the refused event changed nothing


def test_objection_negotiation_overdue_and_late_payment() -> None:
    events: list[SettlementEvent] = [
        _report(shanghai(2025, 10, 9)),
        ObjectionRaised(at=shanghai(2025, 10, 10, 9), reason="duplicate calls"),
        NegotiationOpened(at=shanghai(2025, 10, 11, 9)),
        NegotiationConcluded(
            agreed_calls=290_000, agreed_fee=Decimal("551000.00"), at=shanghai(2025, 10, 16)
        ),
    ]
    record = fold_settlement(events)
    assert record.state is SettlementState.ACCEPTED
    # Objection on Friday 10-10; the make-up Saturday 10-11 is the first working day counted.
    assert record.negotiation_deadline == D(2025, 10, 16)
    assert not record.negotiation_late
    assert record.amount_due == Decimal("551000.00")
    assert record.reported_fee == FEE
    overdue = record.advance(shanghai(2025, 11, 5))
    assert overdue.state is SettlementState.OVERDUE
    assert overdue.events[-1] == PaymentOverdue(at=shanghai(2025, 11, 1))
    assert overdue.days_overdue(D(2025, 11, 10)) == 10
    # 551,000 x 0.0005 x 10 days
    assert overdue.late_payment_penalty(D(2025, 11, 10)) == Decimal("2755.00")
    part = overdue.apply(PaymentMade(amount=Decimal("500000.00"), at=shanghai(2025, 11, 4)))
    assert part.state is SettlementState.OVERDUE
    assert part.outstanding == Decimal("51000.00")
    paid = part.apply(PaymentMade(amount=Decimal("51000.00"), at=shanghai(2025, 11, 10)))
    assert paid.state is SettlementState.PAID
    # 500,000 x 4 days + 51,000 x 10 days, at 0.05 %/day
    assert paid.late_payment_penalty(D(2026, 1, 1)) == Decimal("1255.00")
    assert fold_settlement(paid.events) == paid  # the record is the fold of its events


def test_late_negotiation_is_flagged() -> None:
    record = fold_settlement(
        [
            _report(shanghai(2025, 10, 9)),
            ObjectionRaised(at=shanghai(2025, 10, 10)),
            NegotiationConcluded(
                agreed_calls=1, agreed_fee=Decimal("1.90"), at=shanghai(2025, 10, 20)
            ),
        ]
    )
    assert record.negotiation_late
    assert record.negotiation_overrun(D(2025, 10, 1)) is True


def test_late_report_keeps_party_as_review_time_by_default() -> None:
    late = _report(shanghai(2025, 10, 20))
    record = open_settlement(late)
    assert record.report_late
    assert record.objection_deadline == D(2025, 10, 30)  # 10 days after it arrived
    fixed = open_settlement(late, SettlementRules(late_report=LateReportWindow.FIXED))
    assert fixed.objection_deadline == D(2025, 10, 15)
    # Under FIXED the report is deemed accepted as soon as it is late for objections.
    assert fixed.due_events(shanghai(2025, 10, 20, 12))[0] == DeemedAccepted(
        at=shanghai(2025, 10, 20)
    )


def test_acceptance_after_month_end_moves_payment_to_that_months_end() -> None:
    record = open_settlement(_report(shanghai(2025, 11, 3)))  # very late report
    accepted = record.apply(ReportAccepted(at=shanghai(2025, 11, 4)))
    assert accepted.deadlines.payment_due == D(2025, 10, 31)
    assert accepted.payment_due == D(2025, 12, 1)  # 2025-11-30 is a Sunday


def test_falsified_month_is_withheld() -> None:
    record = open_settlement(_report(shanghai(2025, 10, 9))).apply(
        ReportAccepted(at=shanghai(2025, 10, 10))
    )
    withheld = record.apply(DataFalsified(at=shanghai(2025, 10, 12), note="inflated counts"))
    assert withheld.state is SettlementState.WITHHELD
    assert withheld.amount_due == Decimal("0.00")
    assert withheld.late_payment_penalty(D(2026, 1, 1)) == Decimal("0.00")
    with pytest.raises(IllegalSettlementTransition, match="withheld"):
        withheld.apply(PaymentMade(amount=FEE, at=shanghai(2025, 10, 13)))


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (PaymentMade(amount=FEE, at=shanghai(2025, 10, 10)), IllegalSettlementTransition),
        (NegotiationOpened(at=shanghai(2025, 10, 10)), IllegalSettlementTransition),
        (PaymentOverdue(at=shanghai(2025, 12, 1)), IllegalSettlementTransition),
        (DeemedAccepted(at=shanghai(2025, 10, 15, 12)), SettlementDeadlineError),
        (ObjectionRaised(at=shanghai(2025, 10, 8)), SettlementDeadlineError),  # before the report
    ],
)
def test_refused_events_in_reported(event: object, error: type[Exception]) -> None:
    record = open_settlement(_report(shanghai(2025, 10, 9)))
    with pytest.raises(error):
        record.apply(event)  # type: ignore[arg-type]


def test_other_refusals() -> None:
    with pytest.raises(SettlementDeadlineError, match="before 2025-09 has ended"):
        open_settlement(_report(shanghai(2025, 9, 30, 23, 59)))
    with pytest.raises(IllegalSettlementTransition, match="ReportSubmitted"):
        fold_settlement([_report(shanghai(2025, 10, 9)), _report(shanghai(2025, 10, 10))])
    with pytest.raises(InvalidInput):
        fold_settlement([])
    accepted = open_settlement(_report(shanghai(2025, 10, 9))).apply(
        ReportAccepted(at=shanghai(2025, 10, 10))
    )
    with pytest.raises(InvalidInput, match="exceeds the outstanding"):
        accepted.apply(PaymentMade(amount=FEE + Decimal("0.01"), at=shanghai(2025, 10, 11)))
    with pytest.raises(SettlementDeadlineError, match="not overdue"):
        accepted.apply(PaymentOverdue(at=shanghai(2025, 10, 31, 23)))
    with pytest.raises(InvalidInput, match="at="):
        ReportAccepted(at=dt.datetime(2025, 10, 10))  # naive
    with pytest.raises(InvalidInput, match="fee"):
        ReportSubmitted(SEP_2025, 1, Decimal("1.905"), shanghai(2025, 10, 9))
    with pytest.raises(InvalidInput, match="month"):
        ServiceMonth(2025, 13)
    assert ServiceMonth.parse("2024-04") == ServiceMonth(2024, 4)
    assert str(ServiceMonth(2024, 4)) == "2024-04"


def test_the_machine_is_data() -> None:
    assert TRANSITIONS[ObjectionRaised] == (
        frozenset({SettlementState.REPORTED}),
        SettlementState.OBJECTED,
    )
    reachable = {dest for _, dest in TRANSITIONS.values()} | {SettlementState.REPORTED}
    assert reachable == set(SettlementState)


# --- property: any sequence of events either applies or is refused with a typed error ------

_minutes = st.integers(0, 60 * 24 * 70)  # within 70 days after 2025-10-01
_START = dt.datetime(2025, 10, 1, tzinfo=SHANGHAI)


def _event(kind: str, minute: int) -> SettlementEvent:
    at = _START + dt.timedelta(minutes=minute)
    events: dict[str, SettlementEvent] = {
        "object": ObjectionRaised(at=at),
        "open": NegotiationOpened(at=at),
        "conclude": NegotiationConcluded(agreed_calls=10, agreed_fee=Decimal("19.00"), at=at),
        "accept": ReportAccepted(at=at),
        "deemed": DeemedAccepted(at=at),
        "pay": PaymentMade(amount=Decimal("19.00"), at=at),
        "overdue": PaymentOverdue(at=at),
        "falsified": DataFalsified(at=at),
    }
    return events[kind]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                ["object", "open", "conclude", "accept", "deemed", "pay", "overdue", "falsified"]
            ),
            _minutes,
        ),
        max_size=8,
    ),
    st.sampled_from([DeadlineShift.NEXT_WORKING_DAY, DeadlineShift.NONE]),
)
def test_any_event_sequence_keeps_the_record_consistent(
    steps: list[tuple[str, int]], shift: DeadlineShift
) -> None:
    rules = attrs.evolve(DEFAULT_RULES, shift=shift)
    record = open_settlement(_report(shanghai(2025, 10, 9), fee=Decimal("19.00")), rules)
    for kind, minute in sorted(steps, key=lambda s: s[1]):
        event = _event(kind, minute)
        try:
            after = record.apply(event)
        except MoveCarError:
            continue
        assert after.events == (*record.events, event)
        record = after
        assert Decimal(0) <= record.outstanding <= record.amount_due
        if record.state is SettlementState.PAID:
            assert record.outstanding == 0
        assert record.late_payment_penalty(D(2026, 3, 1)) >= 0
    assert fold_settlement(record.events, rules) == record
