"""The monthly settlement cycle of contract 三, as an event-sourced record.

三: "乙方每月 5 日前以电子邮件的形式提供上月 114 移车话务量报表供甲方审核，甲方及时对提供的报表
进行核对，如有异议，需在每月 15 日前提出商议在 5 个工作日内协商处理，确保月底前付款，如甲方在约定
时间未提异议，则等同于认可。"

For the service month M:

- the report (话务量报表) is due by the 5th of M+1 (:attr:`MonthlyDeadlines.report_due`);
- Party A may object until the 15th of M+1 (:attr:`MonthlyDeadlines.objection_deadline`);
- an objection opens a negotiation that must close within 5 working days, the day of the
  objection not counted (Civil Code art. 201; :func:`negotiation_deadline`);
- payment is due by the last day of M+1 (:attr:`MonthlyDeadlines.payment_due`);
- silence until the objection deadline is acceptance ("未提异议，则等同于认可").

Deadlines are Asia/Shanghai dates; a deadline on a rest day moves to the next working day
(Civil Code art. 203, :class:`~movecar_core.calendar.DeadlineShift`) and lasts until 24:00.

A :class:`SettlementRecord` is the fold of its events (frozen attrs values) through a small
state machine (:data:`TRANSITIONS`): reported → objected → negotiating → accepted → paid, with
accepted → overdue when the payment deadline passes, and withheld (五(三)) when the month's
data was falsified. Time is always an argument; nothing here reads a clock.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any, TypeAlias

import attrs

from movecar_core.calendar import (
    CN_CALENDAR,
    SHANGHAI,
    DeadlineShift,
    WorkingDayCalendar,
    end_of_day,
    local_date,
)
from movecar_core.contract import WUJIN_114_2024, Contract
from movecar_core.errors import (
    IllegalSettlementTransition,
    InvalidInput,
    SettlementDeadlineError,
)
from movecar_core.penalties import late_payment_penalty_segments

_ZERO = Decimal("0.00")
#: A service month as text: four and two ASCII digits (``str.isdigit`` would take "２０２４").
_MONTH_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}")
_FEN = Decimal("0.01")


# --- values -----------------------------------------------------------------------------


def _check_month(instance: ServiceMonth, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{attribute.name}={value!r} must be an integer")
    if attribute.name == "month" and not 1 <= value <= 12:
        raise InvalidInput(f"month={value!r} must be from 1 to 12")
    if attribute.name == "year" and not 1949 <= value <= 9998:
        raise InvalidInput(f"year={value!r} is out of range")


@attrs.frozen(order=True)
class ServiceMonth:
    """A calendar month of service (Asia/Shanghai), e.g. ``ServiceMonth(2024, 4)``."""

    year: int = attrs.field(validator=_check_month)
    month: int = attrs.field(validator=_check_month)

    @classmethod
    def parse(cls, text: str) -> ServiceMonth:
        """``"2024-04"`` → ``ServiceMonth(2024, 4)``; exactly ``YYYY-MM`` in ASCII digits."""
        if not isinstance(text, str) or not _MONTH_TEXT.fullmatch(text.strip()):
            raise InvalidInput(f"month={text!r:.40} is not YYYY-MM")
        year, month = (int(part) for part in text.strip().split("-"))
        return cls(year, month)

    @classmethod
    def of(cls, day: dt.date) -> ServiceMonth:
        """The month ``day`` falls in."""
        return cls(day.year, day.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def previous(self) -> ServiceMonth:
        """The month before."""
        return (
            ServiceMonth(self.year - 1, 12)
            if self.month == 1
            else ServiceMonth(self.year, self.month - 1)
        )

    def bounds(self) -> tuple[dt.datetime, dt.datetime]:
        """The month as the instants ``[start, end)`` in Asia/Shanghai (三: monthly)."""
        following = self.next()
        return (
            dt.datetime(self.year, self.month, 1, tzinfo=SHANGHAI),
            dt.datetime(following.year, following.month, 1, tzinfo=SHANGHAI),
        )

    def next(self) -> ServiceMonth:
        """The following month."""
        return (
            ServiceMonth(self.year + 1, 1)
            if self.month == 12
            else ServiceMonth(self.year, self.month + 1)
        )

    def first_day(self) -> dt.date:
        return dt.date(self.year, self.month, 1)

    def last_day(self) -> dt.date:
        return self.next().first_day() - dt.timedelta(days=1)

    def day(self, number: int) -> dt.date:
        """The ``number``-th day of this month."""
        return dt.date(self.year, self.month, number)


class LateReportWindow(enum.Enum):
    """How long Party A may object to a report that arrived after the 5th.

    The contract fixes the 15th assuming the report came by the 5th; it does not say what a late
    report does to Party A's review time.
    """

    #: Default: Party A keeps the review time the contract gives it (15 - 5 = 10 days from the
    #: day the report arrived), never less than the 15th.
    KEEP_REVIEW_PERIOD = "keep_review_period"
    #: The 15th as written, however late the report came.
    FIXED = "fixed"


@attrs.frozen
class SettlementRules:
    """Everything the cycle needs besides the events: contract, calendar and policies."""

    contract: Contract = WUJIN_114_2024
    calendar: WorkingDayCalendar = CN_CALENDAR
    shift: DeadlineShift = DeadlineShift.NEXT_WORKING_DAY
    late_report: LateReportWindow = LateReportWindow.KEEP_REVIEW_PERIOD


DEFAULT_RULES = SettlementRules()


@attrs.frozen
class MonthlyDeadlines:
    """The dates of the cycle for one service month (each lasts until 24:00 Shanghai)."""

    service_month: ServiceMonth
    #: 三 "乙方每月 5 日前 ... 提供上月 114 移车话务量报表"
    report_due: dt.date
    #: 三 "如有异议，需在每月 15 日前提出"
    objection_deadline: dt.date
    #: 三 "确保月底前付款"
    payment_due: dt.date


def monthly_deadlines(
    service_month: ServiceMonth, rules: SettlementRules = DEFAULT_RULES
) -> MonthlyDeadlines:
    """The report, objection and payment deadlines of ``service_month``.

    For September 2025 (seed contract, art. 203 shifting): report by 2025-10-09 (the 5th is in
    the National Day holiday), objection by 2025-10-15, payment by 2025-10-31.
    """
    if not isinstance(service_month, ServiceMonth):
        raise InvalidInput(f"service_month={service_month!r} is not a ServiceMonth")
    contract, calendar = rules.contract, rules.calendar
    following = service_month.next()
    payment = following.last_day() if contract.payment_due_month_end else following.first_day()
    return MonthlyDeadlines(
        service_month=service_month,
        report_due=calendar.shift_deadline(following.day(contract.report_due_day), rules.shift),
        objection_deadline=calendar.shift_deadline(
            following.day(contract.objection_deadline_day), rules.shift
        ),
        payment_due=calendar.shift_deadline(payment, rules.shift),
    )


def negotiation_deadline(objected_on: dt.date, rules: SettlementRules = DEFAULT_RULES) -> dt.date:
    """The last day of the negotiation an objection raised on ``objected_on`` opens.

    三 "在 5 个工作日内协商处理"; the objection day itself is not counted (Civil Code art. 201).
    Objection on 2025-09-30 → 2025-10-14.
    """
    return rules.calendar.add_working_days(objected_on, rules.contract.negotiation_working_days)


# --- events -----------------------------------------------------------------------------


def _aware(instance: object, attribute: attrs.Attribute[dt.datetime], value: object) -> None:
    if not isinstance(value, dt.datetime) or value.utcoffset() is None:
        raise InvalidInput(f"{attribute.name}={value!r} must be a timezone-aware datetime")


def _count(instance: object, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{attribute.name}={value!r} must be a non-negative integer")


def _fen_amount(instance: object, attribute: attrs.Attribute[Decimal], value: object) -> None:
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise InvalidInput(f"{attribute.name}={value!r} must be a non-negative Decimal")
    if value != value.quantize(_FEN):
        raise InvalidInput(f"{attribute.name}={value} is not a whole number of fen")


@attrs.frozen
class ReportSubmitted:
    """Party B sent the month's 话务量报表 (by e-mail, 三)."""

    service_month: ServiceMonth
    billable_calls: int = attrs.field(validator=_count)
    fee: Decimal = attrs.field(validator=_fen_amount)
    at: dt.datetime = attrs.field(validator=_aware)


@attrs.frozen
class ObjectionRaised:
    """Party A objected to the report ("如有异议，需在每月 15 日前提出")."""

    at: dt.datetime = attrs.field(validator=_aware)
    reason: str = ""


@attrs.frozen
class NegotiationOpened:
    """The parties started negotiating the objection ("商议")."""

    at: dt.datetime = attrs.field(validator=_aware)


@attrs.frozen
class NegotiationConcluded:
    """The negotiation ended with agreed figures ("协商处理")."""

    agreed_calls: int = attrs.field(validator=_count)
    agreed_fee: Decimal = attrs.field(validator=_fen_amount)
    at: dt.datetime = attrs.field(validator=_aware)


@attrs.frozen
class ReportAccepted:
    """Party A explicitly accepted the report."""

    at: dt.datetime = attrs.field(validator=_aware)


@attrs.frozen
class DeemedAccepted:
    """No objection by the deadline: "如甲方在约定时间未提异议，则等同于认可"."""

    at: dt.datetime = attrs.field(validator=_aware)


@attrs.frozen
class PaymentMade:
    """Party A paid ``amount`` yuan (part or all of what is due)."""

    amount: Decimal = attrs.field(validator=_fen_amount)
    at: dt.datetime = attrs.field(validator=_aware)


@attrs.frozen
class PaymentOverdue:
    """The payment deadline passed with money still owed ("确保月底前付款")."""

    at: dt.datetime = attrs.field(validator=_aware)


@attrs.frozen
class DataFalsified:
    """The month's data was found falsified: its fee is withheld (五(三))."""

    at: dt.datetime = attrs.field(validator=_aware)
    note: str = ""


SettlementEvent: TypeAlias = (
    ReportSubmitted
    | ObjectionRaised
    | NegotiationOpened
    | NegotiationConcluded
    | ReportAccepted
    | DeemedAccepted
    | PaymentMade
    | PaymentOverdue
    | DataFalsified
)


# --- the state machine ------------------------------------------------------------------


class SettlementState(enum.Enum):
    REPORTED = "reported"
    OBJECTED = "objected"
    NEGOTIATING = "negotiating"
    ACCEPTED = "accepted"
    PAID = "paid"
    OVERDUE = "overdue"
    #: 五(三) "甲方有权不向乙方支付当月服务费": nothing is owed for the month.
    WITHHELD = "withheld"


_S = SettlementState

#: The machine as data: event type → (states it may happen in, state it leads to). A partial
#: :class:`PaymentMade` keeps the record in its state; the full one leads to ``PAID``.
TRANSITIONS: Mapping[type[Any], tuple[frozenset[SettlementState], SettlementState]] = (
    MappingProxyType(
        {
            ObjectionRaised: (frozenset({_S.REPORTED}), _S.OBJECTED),
            NegotiationOpened: (frozenset({_S.OBJECTED}), _S.NEGOTIATING),
            NegotiationConcluded: (frozenset({_S.OBJECTED, _S.NEGOTIATING}), _S.ACCEPTED),
            ReportAccepted: (frozenset({_S.REPORTED}), _S.ACCEPTED),
            DeemedAccepted: (frozenset({_S.REPORTED}), _S.ACCEPTED),
            PaymentMade: (frozenset({_S.ACCEPTED, _S.OVERDUE}), _S.PAID),
            PaymentOverdue: (frozenset({_S.ACCEPTED}), _S.OVERDUE),
            DataFalsified: (
                frozenset({_S.REPORTED, _S.OBJECTED, _S.NEGOTIATING, _S.ACCEPTED, _S.OVERDUE}),
                _S.WITHHELD,
            ),
        }
    )
)


@attrs.frozen
class SettlementRecord:
    """The settlement of one service month: the fold of its events.

    Build one with :func:`open_settlement` or :func:`fold_settlement`; :meth:`apply` returns a
    new record (or raises :class:`~movecar_core.errors.IllegalSettlementTransition` /
    :class:`~movecar_core.errors.SettlementDeadlineError`); :meth:`due_events` lists what the
    passing of time has made true (deemed acceptance, overdue payment) at a given instant.
    """

    rules: SettlementRules
    service_month: ServiceMonth
    state: SettlementState
    events: tuple[SettlementEvent, ...]
    deadlines: MonthlyDeadlines
    reported_calls: int
    reported_fee: Decimal
    reported_on: dt.date
    #: The effective objection deadline (see :class:`LateReportWindow`).
    objection_deadline: dt.date
    agreed_calls: int
    agreed_fee: Decimal
    objected_on: dt.date | None = None
    negotiation_deadline: dt.date | None = None
    negotiation_closed_on: dt.date | None = None
    accepted_on: dt.date | None = None
    #: The effective payment deadline, known once the report is accepted.
    payment_due: dt.date | None = None
    payments: tuple[tuple[Decimal, dt.date], ...] = ()

    # --- derived ------------------------------------------------------------------------

    @property
    def amount_due(self) -> Decimal:
        """What Party A owes for the month (zero once withheld under 五(三))."""
        return _ZERO if self.state is _S.WITHHELD else self.agreed_fee

    @property
    def paid_total(self) -> Decimal:
        return sum((amount for amount, _ in self.payments), _ZERO)

    @property
    def outstanding(self) -> Decimal:
        return max(self.amount_due - self.paid_total, _ZERO)

    @property
    def report_late(self) -> bool:
        """The report arrived after its due date (5th, shifted)."""
        return self.reported_on > self.deadlines.report_due

    @property
    def negotiation_late(self) -> bool:
        """The negotiation closed (or is still open) after its 5-working-day deadline."""
        if self.negotiation_deadline is None or self.negotiation_closed_on is None:
            return False
        return self.negotiation_closed_on > self.negotiation_deadline

    def negotiation_overrun(self, as_of: dt.date) -> bool:
        """Whether the negotiation deadline has passed by ``as_of`` without a conclusion."""
        if self.negotiation_deadline is None:
            return False
        closed = self.negotiation_closed_on or as_of
        return closed > self.negotiation_deadline

    def days_overdue(self, as_of: dt.date) -> int:
        """Days the outstanding amount has been overdue on ``as_of`` (day after due = 1)."""
        if self.payment_due is None or self.outstanding == 0:
            return 0
        return max((as_of - self.payment_due).days, 0)

    def late_payment_penalty(self, as_of: dt.date, cap_base: Decimal | None = None) -> Decimal:
        """Party A's late-payment penalty for this month as of ``as_of`` (五(二)).

        Each late payment accrues for the days it was late, the unpaid rest until ``as_of``.
        ``cap_base`` ``None`` caps at 30 % of the amount that fell overdue
        (:attr:`~movecar_core.penalties.CapBase.OVERDUE_AMOUNT`). A withheld month owes none.
        """
        if self.payment_due is None or self.state is _S.WITHHELD:
            return _ZERO
        due = self.payment_due
        segments = [(amount, (paid_on - due).days) for amount, paid_on in self.payments]
        segments = [(amount, days) for amount, days in segments if days > 0]
        if self.outstanding:
            segments.append((self.outstanding, max((as_of - due).days, 0)))
        overdue_amount = sum((amount for amount, days in segments if days > 0), _ZERO)
        base = overdue_amount if cap_base is None else cap_base
        return late_payment_penalty_segments(segments, base, contract=self.rules.contract)

    # --- transitions --------------------------------------------------------------------

    def _refuse(self, event: SettlementEvent, why: str) -> SettlementDeadlineError:
        return SettlementDeadlineError(str(self.service_month), type(event).__name__, why)

    def apply(self, event: SettlementEvent) -> SettlementRecord:
        """The record after ``event``; refused events raise and change nothing."""
        kind = type(event)
        if kind not in TRANSITIONS:
            raise IllegalSettlementTransition(
                str(self.service_month), self.state.value, kind.__name__
            )
        sources, destination = TRANSITIONS[kind]
        if self.state not in sources:
            raise IllegalSettlementTransition(
                str(self.service_month), self.state.value, kind.__name__
            )
        last_at = self.events[-1].at
        if event.at < last_at:
            raise self._refuse(
                event,
                f"at={event.at.isoformat()} is before the previous event ({last_at.isoformat()})",
            )
        day = local_date(event.at)
        events = (*self.events, event)
        rules = self.rules
        if isinstance(event, ObjectionRaised):
            if day > self.objection_deadline:
                raise self._refuse(
                    event,
                    f"objection on {day} is after the objection deadline "
                    f"{self.objection_deadline} ('需在每月 15 日前提出')",
                )
            return attrs.evolve(
                self,
                state=destination,
                events=events,
                objected_on=day,
                negotiation_deadline=negotiation_deadline(day, rules),
            )
        if isinstance(event, NegotiationOpened):
            return attrs.evolve(self, state=destination, events=events)
        if isinstance(event, NegotiationConcluded):
            return self._accept(
                destination,
                events,
                day,
                agreed_calls=event.agreed_calls,
                agreed_fee=event.agreed_fee,
                negotiation_closed_on=day,
            )
        if isinstance(event, ReportAccepted):
            return self._accept(destination, events, day)
        if isinstance(event, DeemedAccepted):
            if event.at < end_of_day(self.objection_deadline):
                raise self._refuse(
                    event,
                    f"the objection deadline {self.objection_deadline} has not passed at "
                    f"{event.at.isoformat()}",
                )
            return self._accept(destination, events, day)
        if isinstance(event, PaymentMade):
            if event.amount <= 0:
                raise InvalidInput(f"amount={event.amount} must be positive")
            if event.amount > self.outstanding:
                raise InvalidInput(
                    f"amount={event.amount} exceeds the outstanding {self.outstanding} "
                    f"for {self.service_month}"
                )
            paid = attrs.evolve(self, events=events, payments=(*self.payments, (event.amount, day)))
            return attrs.evolve(paid, state=destination if paid.outstanding == 0 else self.state)
        if isinstance(event, PaymentOverdue):
            assert self.payment_due is not None  # accepted records always have one
            if event.at < end_of_day(self.payment_due):
                raise self._refuse(
                    event,
                    f"payment is due by {self.payment_due}, not overdue at {event.at.isoformat()}",
                )
            return attrs.evolve(self, state=destination, events=events)
        if isinstance(event, DataFalsified):
            return attrs.evolve(self, state=destination, events=events)
        raise IllegalSettlementTransition(str(self.service_month), self.state.value, kind.__name__)

    def _accept(
        self,
        destination: SettlementState,
        events: tuple[SettlementEvent, ...],
        day: dt.date,
        **changes: Any,
    ) -> SettlementRecord:
        due = self.deadlines.payment_due
        if day > due:
            # Accepted after the month-end deadline (a late report or a long negotiation):
            # payment is due by the end of the month of acceptance (policy, see docs).
            due = self.rules.calendar.shift_deadline(
                ServiceMonth.of(day).last_day(), self.rules.shift
            )
        return attrs.evolve(
            self, state=destination, events=events, accepted_on=day, payment_due=due, **changes
        )

    def due_events(self, now: dt.datetime) -> tuple[SettlementEvent, ...]:
        """The events the passing of time has made true by ``now``, in order.

        Silence past the objection deadline is acceptance (:class:`DeemedAccepted`, dated the
        instant the deadline ended); an accepted month still unpaid after its payment deadline
        is overdue (:class:`PaymentOverdue`).
        """
        if not isinstance(now, dt.datetime) or now.utcoffset() is None:
            raise InvalidInput(f"now={now!r} must be a timezone-aware datetime")
        found: list[SettlementEvent] = []
        record = self
        while True:
            event: SettlementEvent | None = None
            if record.state is _S.REPORTED:
                ended = end_of_day(record.objection_deadline)
                if now >= ended:
                    event = DeemedAccepted(at=max(ended, record.events[-1].at))
            elif record.state is _S.ACCEPTED and record.payment_due is not None:
                ended = end_of_day(record.payment_due)
                if now >= ended and record.outstanding > 0:
                    event = PaymentOverdue(at=max(ended, record.events[-1].at))
            if event is None:
                return tuple(found)
            found.append(event)
            record = record.apply(event)

    def advance(self, now: dt.datetime) -> SettlementRecord:
        """The record with :meth:`due_events` applied."""
        record = self
        for event in self.due_events(now):
            record = record.apply(event)
        return record


def open_settlement(
    report: ReportSubmitted, rules: SettlementRules = DEFAULT_RULES
) -> SettlementRecord:
    """A new record from the month's report.

    The report covers "上月", so it can only be sent once the service month is over.
    """
    if not isinstance(report, ReportSubmitted):
        raise IllegalSettlementTransition("?", "(none)", type(report).__name__)
    month = report.service_month
    reported_on = local_date(report.at)
    if reported_on <= month.last_day():
        raise SettlementDeadlineError(
            str(month),
            "ReportSubmitted",
            f"the report at {report.at.isoformat()} is sent before {month} has ended",
        )
    deadlines = monthly_deadlines(month, rules)
    objection = deadlines.objection_deadline
    if (
        rules.late_report is LateReportWindow.KEEP_REVIEW_PERIOD
        and reported_on > deadlines.report_due
    ):
        review_days = rules.contract.objection_deadline_day - rules.contract.report_due_day
        extended = rules.calendar.shift_deadline(
            reported_on + dt.timedelta(days=review_days), rules.shift
        )
        objection = max(objection, extended)
    return SettlementRecord(
        rules=rules,
        service_month=month,
        state=_S.REPORTED,
        events=(report,),
        deadlines=deadlines,
        reported_calls=report.billable_calls,
        reported_fee=report.fee,
        reported_on=reported_on,
        objection_deadline=objection,
        agreed_calls=report.billable_calls,
        agreed_fee=report.fee,
    )


def fold_settlement(
    events: Iterable[SettlementEvent], rules: SettlementRules = DEFAULT_RULES
) -> SettlementRecord:
    """Replay ``events`` (the first must be a :class:`ReportSubmitted`) into a record."""
    iterator = iter(events)
    first = next(iterator, None)
    if first is None:
        raise InvalidInput("events=(): a settlement starts with a ReportSubmitted event")
    if not isinstance(first, ReportSubmitted):
        raise IllegalSettlementTransition("?", "(none)", type(first).__name__)
    record = open_settlement(first, rules)
    for event in iterator:
        if isinstance(event, ReportSubmitted):
            raise IllegalSettlementTransition(
                str(record.service_month), record.state.value, "ReportSubmitted"
            )
        record = record.apply(event)
    return record


def shanghai(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    """An aware datetime in Asia/Shanghai (a convenience for callers and tests)."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)
