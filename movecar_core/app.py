"""The facade: commands in, events out, through the ports.

A command loads the case's events, folds them, asks the machine whether the command is
allowed (:func:`movecar_core.machine.check`, which raises a typed error if not), builds the
new events and appends them with the version it read. A command that is refused writes
nothing. A command carrying a ``command_id`` that the case already holds is not run
again: the first result is returned (telephony callbacks arrive twice in real life),
except once the case was purged under 二(四): then :class:`CasePurged`, never the purged
case's id as if it still held anything.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import enum
import hashlib
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from movecar_core import memory
from movecar_core.calendar import SHANGHAI, WorkingDayCalendar, local_date
from movecar_core.calls import (
    CallEvent,
    CallEventRefused,
    CallLimitReached,
    CallLimits,
    TransferOutcome,
    TransferRequest,
    call_key,
    outcome_of,
    parse_call_key,
    rank,
)
from movecar_core.case import (
    LOOKUP_PURPOSE,
    CallOutcome,
    CallOutcomeRecorded,
    CallProgress,
    CallProgressed,
    CaseCancelled,
    CaseOpened,
    CaseRecord,
    CaseState,
    CaseUnresolved,
    DisputeRaised,
    EscalatedTo110,
    EscalationReason,
    EscalationRequested,
    Event,
    MoveConfirmed,
    OwnerCallPlaced,
    OwnerLookedUp,
    TransferTo110Failed,
    UnresolvedReason,
)
from movecar_core.clock import ManualClock
from movecar_core.contract import WUJIN_114_2024, Contract
from movecar_core.errors import (
    AUDIT_HINT,
    CasePurged,
    CommandIdReused,
    CommandRejected,
    ConcurrencyConflict,
    InvalidCommand,
    MonthAlreadyReported,
    MonthNotOver,
    MoveCarError,
    PortError,
    TelephonyError,
    UnknownCall,
    UnknownCase,
)
from movecar_core.integrity import canonical_json
from movecar_core.machine import CasePolicy, advanced, check, fold
from movecar_core.outbox import (
    CALL_OUTCOME_DUE,
    FOLLOW_UP_CALL,
    MONTHLY_REPORT,
    NOTIFY_110,
    NOTIFY_REQUESTER,
    PLACE_CALL,
    SENDS,
    Claimed,
    Effect,
    EffectPolicy,
    EffectScheduler,
    OutboxStore,
    Plan,
    inline_token,
    plan,
)
from movecar_core.phones import parse_phone
from movecar_core.plates import parse_plate
from movecar_core.ports import (
    CaseStore,
    Clock,
    CommandCentre,
    FoldedCaseStore,
    FollowUpReminder,
    OutboundCallRequest,
    RequesterNotifier,
    SeatReminders,
    Telephony,
    VehicleRegistry,
)
from movecar_core.pricing import TierMode, settle_year
from movecar_core.recordings import AccessLog, InMemoryAccessLog
from movecar_core.reports import MonthSettlement, ReportStore
from movecar_core.requesters import RequesterPolicy
from movecar_core.settlement import ServiceMonth, SettlementRules, monthly_deadlines
from movecar_core.term import ContractTerm
from movecar_core.text import check_text, one_line, text_problem
from movecar_core.views import CaseView, RequesterView, requester_message
from movecar_core.volume import (
    ReportDelivery,
    VolumeReport,
    build_report,
    report_key,
    schedule_reports,
)


class Dispatch(enum.Enum):
    """Who dials the owner after ``call_owner`` recorded the call."""

    #: ``call_owner`` dials at once, through the Telephony port.
    INLINE = "inline"
    #: A worker dials: the store's outbox holds a ``place_call`` effect (the store's
    #: ``EffectPolicy(dispatch_calls=True)``) and the worker runs :meth:`MoveCar.run_effect`.
    OUTBOX = "outbox"


#: Namespace of case ids derived from an ``open_case`` command id (so a repeat finds it).
CASE_ID_NAMESPACE = uuid.UUID("6f1f8a52-1d4b-4b8e-9a43-114a5f0c0519")
SYSTEM_AGENT = "system"
MAX_NOTE_LENGTH = 2000
MAX_LOCATION_LENGTH = 500

#: A command's decision: (the case's record, now, the command id, its fingerprint) -> the
#: new events, each carrying that id and fingerprint; or a typed error, writing nothing.
Decide = Callable[[CaseRecord, dt.datetime, str | None, str | None], list[Event]]
#: The event class a command's first event has (or the classes, when it changed).
Kind = type[Any] | tuple[type[Any], ...]


@attrs.frozen
class OutboundCall:
    """The outbound call placed for a case: what the agent's phone shows and says."""

    case_id: str
    call_id: str
    attempt: int
    caller_id: str
    greeting: str
    greeting_version: str


@attrs.frozen
class EffectRun:
    """One effect the engine ran: what it did, or the error that left it pending."""

    key: str
    kind: str
    case_id: str
    outcome: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _random_id() -> str:
    """A new random id, as ``uuid.uuid4().hex`` writes one (version 4, RFC 4122 variant),
    without building the UUID: a case and each call take one, on the command path."""
    bits = int.from_bytes(os.urandom(16)) & _UUID4_KEEP | _UUID4_SET
    return f"{bits:032x}"


#: The version (4) and variant (10) bits of a UUID4, over 128 random bits.
_UUID4_KEEP = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_UUID4_SET = (0x4 << 76) | (0x2 << 62)


def _text(field: str, value: object, *, required: bool, limit: int) -> str:
    # The one text rule of the core (movecar_core.text): every backend refuses the same.
    return check_text(field, value, required=required, limit=limit)


def _command_id(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise InvalidCommand("command_id", value, "must be a non-empty string of <= 200 chars")
    problem = text_problem(value)  # stored in every event of the command
    if problem is not None:
        raise InvalidCommand("command_id", value, problem)
    return value


class MoveCar:
    """The 114 move-car engine: every command a seat application needs.

    Commands (each writes events or nothing; a repeated ``command_id`` returns the first
    result): :meth:`open_case`, :meth:`locate_owner`, :meth:`call_owner`,
    :meth:`record_call_outcome`, :meth:`confirm_moved`, :meth:`dispute`, :meth:`cancel`,
    :meth:`escalate`. Queries: :meth:`case`, :meth:`requester_view`, :meth:`history`,
    :meth:`record`. Time and money: :meth:`run_due` (timers, retries) and
    :meth:`settle_month` (三, the month's fee from the store's events).

    Build it with ``movecar_adapters.connect()`` (the composition root: one configuration,
    one clock, one contract), :meth:`in_memory` for tests and demos, or by hand with every
    port of your deployment.
    """

    def __init__(
        self,
        *,
        store: CaseStore,
        registry: VehicleRegistry,
        telephony: Telephony,
        clock: Clock,
        notifier: RequesterNotifier | None = None,
        command_centre: CommandCentre | None = None,
        reminders: SeatReminders | None = None,
        contract: Contract = WUJIN_114_2024,
        policy: CasePolicy | None = None,
        max_retries: int = 3,
        dispatch: Dispatch = Dispatch.INLINE,
        term: ContractTerm | None = None,
        call_limits: CallLimits | None = None,
        calendar: WorkingDayCalendar | None = None,
        reports: ReportDelivery | None = None,
    ) -> None:
        if not isinstance(dispatch, Dispatch):
            raise InvalidCommand("dispatch", dispatch, "not a Dispatch")
        if not isinstance(contract, Contract):
            raise InvalidCommand("contract", contract, "not a Contract")
        if term is not None and (not isinstance(term, ContractTerm) or term.contract != contract):
            raise InvalidCommand(
                "term", type(term).__name__, "must be a ContractTerm of the engine's contract"
            )
        self.store = store
        self.registry = registry
        self.telephony = telephony
        self.clock = clock
        self.notifier = notifier
        self.command_centre = command_centre
        self.reminders = reminders
        self.dispatch = dispatch
        self.contract = contract
        self.policy = policy or CasePolicy()
        self.max_retries = max_retries
        #: 七(三) who read or changed what: the store's own log when it keeps one (the SQL
        #: store does, as ledger leaves), else one in memory. Desks write to it.
        self.access_log: AccessLog = (
            store if isinstance(store, AccessLog) else InMemoryAccessLog(clock)
        )
        #: Call events drained from the switch and not yet applied (a store failure
        #: keeps them for the next pump).
        self._call_events: collections.deque[CallEvent] = collections.deque()
        if call_limits is not None and not isinstance(call_limits, CallLimits):
            raise InvalidCommand("call_limits", type(call_limits).__name__, "not a CallLimits")
        #: Annex 2 十三(四): caps on the calls in flight, per seat and in total, checked
        #: against the switch's count before a call is recorded. None: the engine asks
        #: nothing, and only the switch's own cap (if it has one) refuses a dial.
        self.call_limits = call_limits
        if calendar is not None and not isinstance(calendar, WorkingDayCalendar):
            raise InvalidCommand("calendar", type(calendar).__name__, "not a WorkingDayCalendar")
        #: The working days of every deadline (三): the library's table and the years an
        #: operator added from the State Council's notices (``[calendar]`` in movecar.toml).
        self.calendar = calendar if calendar is not None else WorkingDayCalendar.default()
        #: The service years granted so far (一(三)); renewals are Party A's decision.
        self.term: ContractTerm = term if term is not None else ContractTerm.start(contract)
        if reports is not None and not isinstance(reports, ReportDelivery):
            raise InvalidCommand("reports", type(reports).__name__, "not a ReportDelivery")
        #: 三: the monthly volume report by mail, scheduled by :meth:`run_due` (None: the
        #: engine schedules none; :meth:`volume_report` still builds one on demand).
        self.reports = reports
        #: The month whose reports this engine put in the outbox last (once a month).
        self._reports_scheduled: ServiceMonth | None = None
        #: The store, when it keeps each case's record beside its events (the in-memory
        #: store does): a command then reads the record instead of folding the history.
        self._folded: FoldedCaseStore | None = store if isinstance(store, FoldedCaseStore) else None
        #: The store's outbox, when it keeps one (both stores of the library do).
        self.outbox: OutboxStore | None = store if isinstance(store, OutboxStore) else None
        #: The effect rules: the outbox's own, so the engine and the store never disagree.
        self.effects: EffectPolicy = (
            self.outbox.effects if self.outbox is not None else EffectPolicy()
        )
        if self.effects.dispatch_calls != (dispatch is Dispatch.OUTBOX):
            raise InvalidCommand(
                "dispatch",
                dispatch.value,
                f"the store plans effects with dispatch_calls={self.effects.dispatch_calls}: "
                "Dispatch.OUTBOX goes with EffectPolicy(dispatch_calls=True) "
                "(the composition root, connect(), wires both from one setting)",
            )

    def __repr__(self) -> str:
        return (
            f"MoveCar(store={type(self.store).__name__}, contract={self.contract.name!r}, "
            f"dispatch={self.dispatch.value}, clock={self.clock!r})"
        )

    def close(self) -> None:
        """Release what the ports hold (database connections...); the engine is done."""
        mailer = None if self.reports is None else self.reports.mailer
        for port in (self.store, self.registry, self.telephony, self.notifier,
                     self.command_centre, self.reminders, mailer):  # fmt: skip
            close = getattr(port, "close", None)
            if callable(close):
                close()

    def __enter__(self) -> MoveCar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def in_memory(
        cls,
        owners: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        *,
        contract: Contract = WUJIN_114_2024,
        policy: CasePolicy | None = None,
        requesters: RequesterPolicy | None = None,
    ) -> MoveCar:
        """An engine on fresh, complete in-memory adapters (:mod:`movecar_core.memory`).

        For tests, demos and simulations. ``owners`` maps plates (any accepted spelling) to
        the owners' phone numbers. ``clock`` defaults to a
        :class:`~movecar_core.clock.ManualClock` at the contract's first day, 08:00: the
        core never reads the wall clock, so time moves when you advance it. For wall-clock
        time use ``movecar_adapters.connect("memory://")``. ``requesters``: the requester
        limits and block list the store enforces (:mod:`movecar_core.requesters`; default
        none).
        """
        the_clock = clock or ManualClock()
        return cls(
            store=memory.InMemoryCaseStore(
                clock=the_clock, contract=contract, requesters=requesters
            ),
            registry=memory.InMemoryVehicleRegistry(owners),
            telephony=memory.InMemoryTelephony(clock=the_clock),
            clock=the_clock,
            notifier=memory.InMemoryNotifier(),
            command_centre=memory.InMemoryCommandCentre(),
            reminders=memory.InMemorySeatReminders(),
            contract=contract,
            policy=policy,
        )

    # --- queries ------------------------------------------------------------------------

    def history(self, case_id: str) -> tuple[Event, ...]:
        """Every event of the case, oldest first (the audit record; contains PII).

        Raises :class:`UnknownCase`, or :class:`CasePurged` for a case purged under the
        3-year retention of 二(四) (as every query and command on it does).
        """
        events = tuple(self.store.load(case_id))
        if not events:
            raise UnknownCase(case_id)
        return events

    def record(self, case_id: str) -> CaseRecord:
        """The case folded from its history (yours to keep: a copy of the store's)."""
        return advanced(self._record(case_id), ())

    def case(self, case_id: str) -> CaseView:
        """The seat's view of the case (phone numbers masked)."""
        return CaseView.of(self._record(case_id))

    def requester_view(self, case_id: str) -> RequesterView:
        """What the requester may see: never anything about the owner."""
        return RequesterView.of(self._record(case_id))

    def _read(self, case_id: str) -> tuple[Sequence[Event], CaseRecord | None]:
        """The case's events and record (None: no such case): the record the store keeps
        (read-only), or the events folded when the store keeps none."""
        if self._folded is not None:
            return self._folded.load_folded(case_id)
        events = self.store.load(case_id)
        return events, fold(events) if events else None

    def _record(self, case_id: str) -> CaseRecord:
        """The case's record, read-only (the store's own when it keeps one)."""
        record = self._read(case_id)[1]
        if record is None:
            raise UnknownCase(case_id)
        return record

    # --- commands -----------------------------------------------------------------------

    def open_case(
        self,
        *,
        plate: str,
        location: str,
        requester_phone: str,
        agent_id: str = SYSTEM_AGENT,
        command_id: str | None = None,
    ) -> str:
        """A requester reports a car blocking them (呼入). Returns the new case's id."""
        canonical_plate = parse_plate(plate).canonical
        place = _text("location", location, required=True, limit=MAX_LOCATION_LENGTH)
        phone = parse_phone(requester_phone).canonical
        agent = _text("agent_id", agent_id, required=True, limit=100)
        cid = _command_id(command_id)
        case_id = uuid.uuid5(CASE_ID_NAMESPACE, cid).hex if cid else _random_id()
        # The requester's phone is not in the fingerprint (a hash of a phone number is
        # easily reversed); a repeat is compared with the stored event's phone instead.
        fingerprint = (
            None
            if cid is None
            else fingerprint_of(
                "open_case", cid, plate=canonical_plate, location=place, agent_id=agent
            )
        )
        # Only a case id derived from a command id can be taken already (a random one would
        # meet the append's version check): that repeat is looked for, nothing else.
        existing = () if cid is None else self._load_for_open(case_id, cid)
        if existing:
            self._repeat_of_open(existing, cid, fingerprint, phone)
            return case_id
        opened = CaseOpened(
            case_id=case_id,
            at=self._now(),
            command_id=cid,
            plate=canonical_plate,
            location=place,
            requester_phone=phone,
            agent_id=agent,
            command_fingerprint=fingerprint,
        )
        try:
            record, todo = self._append(case_id, [opened], None)
        except ConcurrencyConflict:
            # The same open_case command ran concurrently and won: same result.
            if cid is None:
                raise
            self._repeat_of_open(self._load_for_open(case_id, cid), cid, fingerprint, phone)
            return case_id
        self._deliver([opened], None, record, todo)
        return case_id

    def locate_owner(
        self, case_id: str, *, agent_id: str = SYSTEM_AGENT, command_id: str | None = None
    ) -> CaseView:
        """Look the owner up in the vehicle registry; each look-up is an event (四)."""
        agent = _text("agent_id", agent_id, required=True, limit=100)

        def decide(
            case: CaseRecord, at: dt.datetime, cid: str | None, fp: str | None
        ) -> list[Event]:
            check(case, "owner_found", self.policy)  # only for an open, unlocated case
            contact = self.registry.lookup(case.plate)
            phone = None if contact is None else parse_phone(contact.phone).canonical
            return [
                OwnerLookedUp(
                    case_id=case_id,
                    at=at,
                    command_id=cid,
                    command_fingerprint=fp,
                    agent_id=agent,
                    found=contact is not None,
                    owner_phone=phone,
                    source="" if contact is None else contact.source,
                    purpose=LOOKUP_PURPOSE,
                )
            ]

        return self._run(case_id, command_id, "locate_owner", OwnerLookedUp, decide, agent_id=agent)

    def call_owner(
        self, case_id: str, *, agent_id: str, command_id: str | None = None
    ) -> OutboundCall:
        """Place one outbound call (外呼) to the owner, from the contract's caller ID.

        二(六): "114 在呼叫被挪车主电话时，统一使用“0519110”为主叫号码" and the unified
        greeting with the plate. The call is recorded before it is dialled, so the
        one-call-in-flight rule holds even with two seats racing; if the switch refuses
        the call, the attempt is recorded as ``failed`` and :class:`TelephonyError` raised.
        """
        agent = _text("agent_id", agent_id, required=True, limit=100)
        # Annex 2 十三(四) "不采取自动语音群呼方式进行外呼": the switch's count of calls in
        # flight decides, before anything is recorded. Two seats racing past the check
        # meet the switch's own cap, which refuses the dial (a failed attempt).
        if self.call_limits is not None:
            refusal = self.call_limits.refusal(agent, self.telephony.in_flight())
            if refusal is not None:
                raise CallLimitReached(f"case {case_id}: call refused: {refusal}")
        callee: list[str] = []

        def decide(
            case: CaseRecord, at: dt.datetime, cid: str | None, fp: str | None
        ) -> list[Event]:
            check(case, "call_placed", self.policy)
            assert case.owner_phone is not None  # the machine calls only a located owner
            callee[:] = [case.owner_phone]
            return [
                OwnerCallPlaced(
                    case_id=case_id,
                    at=at,
                    command_id=cid,
                    command_fingerprint=fp,
                    call_id=_random_id(),
                    attempt=case.attempts + 1,
                    agent_id=agent,
                    caller_id=self.contract.caller_id,
                    greeting=self.contract.greeting.render(case.plate),
                    greeting_version=self.contract.greeting.version,
                )
            ]

        events, ran, record = self._execute(
            case_id, command_id, "call_owner", OwnerCallPlaced, decide, agent_id=agent
        )
        call = _call_of(events)
        if ran and self.dispatch is Dispatch.INLINE:
            self._dial(call, agent, callee[0], record.plate)
        return call

    def _dial(self, call: OutboundCall, agent_id: str, callee: str, plate: str) -> None:
        """Dial a call whose ``OwnerCallPlaced`` is committed: the "dialling" fact comes
        first, so a crash after the dial leaves a call the engine reconciles by its key
        (:meth:`reconcile_call`) instead of dialling it twice."""
        request = OutboundCallRequest(
            call_id=call.call_id,
            case_id=call.case_id,
            agent_id=agent_id,
            caller_id=call.caller_id,
            callee=callee,
            greeting=call.greeting,
            attempt=call.attempt,
            plate=plate,
            greeting_version=call.greeting_version,
        )
        try:
            self.telephony.place_call(request)
        except TelephonyError:
            self.record_call_outcome(
                call.case_id, call.call_id, CallOutcome.FAILED, command_id=f"{call.call_id}:dial"
            )
            raise

    # --- the month's money (三) ------------------------------------------------------------

    def settle_month(
        self, month: ServiceMonth, *, mode: TierMode = TierMode.VOLUME
    ) -> MonthSettlement:
        """Report and settle ``month`` from the store's events, and record both.

        三 "运营服务费 ... 按月支付": the month's billable calls (cases opened in it, the
        default billable-call policy) priced at the service year's cumulative volume
        (阶梯计价 in ``mode``; the contract's earlier service, ``term.carried_in``, counts in
        year 0); the report due by the 5th with its digest (五(三)), the objection and
        payment deadlines, and, for the last month of a service year, the year-end true-up.

        The month must be over by the engine's clock (:class:`MonthNotOver`) and inside the
        granted term (:class:`OutsideContractTerm`); reports go one month after another.
        Repeating a settled month returns what was recorded if the figures still agree,
        and raises :class:`MonthAlreadyReported` if they do not.
        """
        if not isinstance(month, ServiceMonth):
            raise InvalidCommand(
                "month", month, "must be a ServiceMonth, e.g. ServiceMonth(2024, 5)"
            )
        if not isinstance(mode, TierMode):
            raise InvalidCommand("mode", mode, "must be a TierMode")
        store = self._require_reports()
        now = self._now()
        start, end = month.bounds()
        if now < end:
            raise MonthNotOver(
                f"month={month}: not over until {end.isoformat()} (now {now.isoformat()})"
            )
        year = self.term.year_of(month.first_day())
        # The deadlines first: a year the calendar lacks (CalendarYearNotCovered) refuses
        # the month before its report is written.
        deadlines = monthly_deadlines(
            month, SettlementRules(contract=self.contract, calendar=self.calendar)
        )
        carried = self.term.carried_in if year.index == 0 else 0
        year_start = dt.datetime.combine(year.start, dt.time(), tzinfo=SHANGHAI)
        report = store.report(month)
        if report is None:
            report = store.write_report(month, at=now)
        else:
            counted = store.count_opened(start, end)
            if counted != report.billable_calls:
                raise MonthAlreadyReported(
                    str(month),
                    f"its report counted {report.billable_calls} calls; the store now holds "
                    f"{counted} for the month ({AUDIT_HINT})",
                )
        ytd_before = carried + store.count_opened(year_start, start)
        line = settle_year(
            [report.billable_calls],
            carried_in=ytd_before,
            mode=mode,
            contract=self.contract,
            closed=False,
        ).months[0]
        annual = true_up = None
        if month.last_day() == year.end:
            counts = []
            cursor = ServiceMonth.of(year.start)
            while cursor <= month:
                counts.append(store.count_opened(*cursor.bounds()))
                cursor = cursor.next()
            whole = settle_year(counts, carried_in=carried, mode=mode, contract=self.contract)
            annual, true_up = whole.annual_fee, whole.true_up
        settlement = MonthSettlement(
            month=month,
            service_year=year,
            mode=mode,
            billable_calls=report.billable_calls,
            ytd_before=ytd_before,
            ytd_after=line.ytd_after,
            unit_price=line.unit_price,
            provisional_fee=line.provisional_fee,
            deadlines=deadlines,
            report=report,
            recorded_at=now,
            annual_fee=annual,
            true_up=true_up,
        )
        kept = store.settlement(month)
        if kept is None:
            store.write_settlement(settlement.recorded())
            return settlement
        mine = settlement.recorded()
        if attrs.evolve(mine, recorded_at=kept.recorded_at) != kept:
            raise MonthAlreadyReported(
                str(month),
                f"settled at {kept.fee} yuan for {kept.billable_calls} calls; the figures "
                f"now give {mine.fee} yuan for {mine.billable_calls} calls "
                f"(mode {mode.value})",
            )
        # The store may hand the time back in UTC: the same instant, in the engine's zone.
        return attrs.evolve(settlement, recorded_at=kept.recorded_at.astimezone(now.tzinfo))

    def volume_report(
        self, month: ServiceMonth, *, mode: TierMode = TierMode.VOLUME
    ) -> VolumeReport:
        """The month's 话务量报表 (三, 二(七)): :meth:`settle_month` (reported and recorded,
        or what was recorded), then each day's inbound, connected and billable calls from
        the store, checked against the recorded report
        (:func:`~movecar_core.volume.build_report`)."""
        settled = self.settle_month(month, mode=mode)
        store = self._require_reports()
        return build_report(settled, store, contract=self.contract, at=self._now())

    def _schedule_reports(self, now: dt.datetime) -> None:
        """With ``reports``: the monthly reports due from now on are in the outbox (once a
        month per engine; the store keeps each key once, whoever schedules it)."""
        if self.reports is None:
            return
        month = ServiceMonth.of(local_date(now))
        if self._reports_scheduled == month:
            return
        if not isinstance(self.store, EffectScheduler):
            raise PortError(
                f"MoveCar(reports=...) needs a store that schedules effects (EffectScheduler); "
                f"{type(self.store).__name__} does not"
            )
        rules = SettlementRules(contract=self.contract)
        schedule_reports(
            self.store, self._require_reports(), now=now, term=self.term, rules=rules,
            send_at=self.reports.send_at,
        )  # fmt: skip
        self._reports_scheduled = month

    def _send_monthly_report(self, effect: Effect) -> str:
        """A ``monthly_report`` effect: the month's report, mailed under the effect's key."""
        if self.reports is None:
            raise PortError("a monthly_report effect needs MoveCar(reports=ReportDelivery(...))")
        month = ServiceMonth.parse(str(effect.payload.get("month")))
        if effect.key != report_key(month):
            raise InvalidCommand("effect.key", effect.key, f"is not the key of {month}'s report")
        report = self.volume_report(month, mode=self.reports.mode)
        return self.reports.deliver(effect.key, report, now=self._now())

    def _require_reports(self) -> ReportStore:
        if not isinstance(self.store, ReportStore):
            raise PortError(
                f"settle_month needs a store that keeps reports (ReportStore); "
                f"{type(self.store).__name__} keeps none"
            )
        return self.store

    # --- effects: delivered inline, by run_due, or by outbox workers ----------------------

    def run_due(self, *, worker: str = "engine", batch: int = 50) -> list[EffectRun]:
        """Run every effect of the store's outbox that is due by the engine's clock.

        Timers (an overdue call outcome, a follow-up reminder) fire here; so does any
        effect whose delivery failed before (its lease runs out, then it is due again).
        Returns what ran, in order; an effect whose port failed is in the list with its
        ``error`` and stays pending, so a later call (or ``movecar worker``) retries it.
        Simulations and tests call it after advancing the clock; a deployment with
        ``Dispatch.OUTBOX`` runs ``movecar worker``, which calls it in a loop.
        """
        outbox = self._require_outbox("run_due")
        now = self._now()
        self._schedule_reports(now)
        ran: list[EffectRun] = self.pump_call_events()
        while claimed := outbox.claim(worker, limit=batch, now=now):
            ran.extend(self._run_claimed(outbox, claimed))
        return ran

    def _run_claimed(self, outbox: OutboxStore, claimed: Sequence[Claimed]) -> list[EffectRun]:
        ran = []
        for item in claimed:
            effect = item.effect
            try:
                what = self.run_effect(effect, attempt=item.attempts)
            except MoveCarError as exc:
                # Left pending under its lease: claimed again once the lease runs out.
                ran.append(EffectRun(effect.key, effect.kind, effect.case_id, "failed", str(exc)))
                continue
            # False when the effect's own events already settled its row (an overdue
            # outcome cancels its timer) or the lease was lost: it ran either way.
            outbox.complete(item)
            ran.append(EffectRun(effect.key, effect.kind, effect.case_id, what))
        return ran

    def _require_outbox(self, what: str) -> OutboxStore:
        if self.outbox is None:
            raise PortError(
                f"{what} needs a store with an outbox (OutboxStore); "
                f"{type(self.store).__name__} keeps none"
            )
        return self.outbox

    def _append(
        self, case_id: str, new: Sequence[Event], case: CaseRecord | None
    ) -> tuple[CaseRecord, Plan | None]:
        """Append ``new`` after ``case`` (None: they open the case); the record after them,
        and their effects' plan when the store made it (a :class:`FoldedCaseStore`)."""
        if self._folded is not None:
            return self._folded.append_folded(case_id, new, 0 if case is None else case.version)
        if case is None:
            self.store.append(case_id, new, expected_version=0)
            return fold(new), None
        self.store.append(case_id, new, expected_version=case.version)
        # ``case`` advanced by the new events only (a new record: ``case`` is needed again
        # after a conflict).
        return advanced(case, new), None

    def _deliver(
        self,
        new: Sequence[Event],
        before: CaseRecord | None,
        after: CaseRecord,
        todo: Plan | None,
    ) -> None:
        """With ``Dispatch.INLINE``: deliver now what this command asked to send.

        ``todo`` is the plan the store made for ``new`` (None: the engine plans them with
        the same rules and policy).

        The store wrote the sends with the events, already leased to this engine
        (:func:`~movecar_core.outbox.born_claimed`): here they are run and marked done,
        one write each, whatever the size of the outbox. One that fails stays leased and is
        delivered by :meth:`run_due` or a worker once its lease runs out: the command
        itself has succeeded. A store without an outbox gets its sends run directly, once,
        without a retry.
        """
        if self.dispatch is not Dispatch.INLINE:
            return
        if todo is None:
            first_version = 1 if before is None else before.version + 1
            state = None if before is None else before.state
            todo = plan(new, first_version, self.effects, before=state, after=after.state)
        if not todo.schedule:
            return
        now = self._now()
        sends = [e for e in todo.schedule if e.kind in SENDS and e.due_at <= now]
        if not sends:
            return
        # The sends are read with the record this command left: what they read of it (the
        # plate, the location, the requester) no command changes.
        outbox = self.outbox
        for effect in sends:
            try:
                self._carry_out(effect, after)
            except MoveCarError:
                continue  # pending under its lease (see above); without an outbox, dropped
            if outbox is not None:
                outbox.complete(Claimed(0, inline_token(effect.key), effect, 1, effect.due_at))

    def run_effect(self, effect: Effect, *, attempt: int = 1) -> str:
        """Carry out one effect from the store's outbox; says what it did.

        Safe to repeat: an effect run twice (a worker died before marking it done) finds
        its work done, or passes ``effect.key`` on so the receiver can drop the repeat.

        * ``place_call``: dial the recorded call, if it is still the call in flight; a
          refused dial is recorded as a ``failed`` attempt. A repeat (``attempt`` > 1: a
          worker may have died after dialling) never dials: it reconciles the call with
          the switch by its key (:meth:`reconcile_call`).
        * ``call_outcome_due``: the switch never reported the call's outcome: reconciled
          by its key; what the switch cannot tell is recorded as ``outcome_unknown`` for a
          person, and the seat may call again.
        * ``notify_110``: the escalation's written notice to the 110 desk (二(五)); needs
          a ``command_centre`` (raises :class:`PortError` without one: it stays pending).
        * ``notify_requester``: the requester hears of the case's new state (nothing about
          the owner); skipped when the engine has no ``notifier``.
        * ``follow_up_call``: a reminder through the ``reminders`` port; calls stay
          human-placed (annex 2 十三(四)), so the engine dials nothing by itself.
        * ``monthly_report``: the month's volume report (三), settled if it was not, mailed
          through ``reports`` under the effect's key (of no case).
        """
        if effect.kind == MONTHLY_REPORT:
            return self._send_monthly_report(effect)
        return self._carry_out(effect, self._record(effect.case_id), attempt)

    def _carry_out(self, effect: Effect, record: CaseRecord, attempt: int = 1) -> str:
        """:meth:`run_effect`, with the case's record at hand."""
        case_id = effect.case_id
        if effect.kind == PLACE_CALL:
            call_id = str(effect.payload["call_id"])
            if record.call_in_flight != call_id or record.owner_phone is None:
                return "skipped: the call is no longer in flight"
            if attempt > 1:
                return f"repeat: {self.reconcile_call(case_id, command_id=effect.key)}"
            placed = next(
                e
                for e in self.history(case_id)
                if isinstance(e, OwnerCallPlaced) and e.call_id == call_id
            )
            try:
                self._dial(_call_of([placed]), placed.agent_id, record.owner_phone, record.plate)
            except TelephonyError:
                return "dial refused: recorded as a failed attempt"
            return "dialled"
        if effect.kind == CALL_OUTCOME_DUE:
            call_id = str(effect.payload["call_id"])
            if record.call_in_flight != call_id:
                return "skipped: the outcome was recorded"
            done = self.reconcile_call(case_id, command_id=effect.key, overdue=True)
            return f"outcome overdue: {done}"
        if effect.kind == NOTIFY_110:
            if self.command_centre is None:
                raise PortError("a notify_110 effect needs MoveCar(command_centre=...)")
            reason = effect.payload.get("reason")
            self.command_centre.notify(
                effect.key,
                f"114 挪车转警 {record.plate}",
                f"案件 {case_id}：{record.plate}，{record.location}，转警原因 {reason}，"
                f"转接 {effect.payload.get('number')}",
            )
            return "notice sent to 110"
        if effect.kind == NOTIFY_REQUESTER:
            if self.notifier is None:
                return "skipped: no requester channel"
            try:
                state = CaseState(str(effect.payload.get("state")))
            except ValueError:
                raise InvalidCommand(
                    "effect.payload.state", effect.payload, "no case state"
                ) from None
            message = requester_message(record.plate, state)
            if message is None:
                return "skipped: no requester channel"
            self.notifier.notify(case_id, record.requester_phone, message)
            return "requester notified"
        if effect.kind == FOLLOW_UP_CALL:
            if record.state.is_terminal or record.call_in_flight is not None:
                return "skipped: the case moved on"
            if self.reminders is None:
                return "skipped: no seat reminder port"
            self.reminders.follow_up(
                FollowUpReminder(
                    key=effect.key,
                    case_id=case_id,
                    plate=record.plate,
                    due_at=effect.due_at,
                    attempts_used=record.attempts,
                    attempts_left=self.policy.max_call_attempts - record.attempts,
                )
            )
            return "follow-up reminder sent to the seat"
        raise InvalidCommand("effect.kind", effect.kind, "not an effect this engine runs")

    def record_call_outcome(
        self,
        case_id: str,
        call_id: str,
        outcome: CallOutcome | str,
        *,
        command_id: str | None = None,
    ) -> CaseView:
        """What became of an outbound call. After the last allowed attempt went
        unanswered, the case becomes ``unresolved`` (owner unreachable)."""
        try:
            result = CallOutcome(outcome)
        except ValueError:
            raise InvalidCommand("outcome", outcome, "not a CallOutcome") from None

        def decide(
            case: CaseRecord, at: dt.datetime, cid: str | None, fp: str | None
        ) -> list[Event]:
            event = CallOutcomeRecorded(
                case_id=case_id,
                at=at,
                command_id=cid,
                call_id=call_id,
                outcome=result,
                command_fingerprint=fp,
            )
            check(case, event.trigger, self.policy)
            if case.call_in_flight != call_id:
                raise UnknownCall(
                    case_id,
                    case.state.value,
                    event.trigger,
                    f"call_id={call_id!r} is not the call in flight ({case.call_in_flight!r})",
                )
            events: list[Event] = [event]
            if not result.answered and case.attempts >= self.policy.max_call_attempts:
                events.append(
                    CaseUnresolved(
                        case_id=case_id,
                        at=at,
                        command_id=cid,
                        reason=UnresolvedReason.OWNER_UNREACHABLE,
                        command_fingerprint=fp,
                    )
                )
            return events

        return self._run(
            case_id,
            command_id,
            "record_call_outcome",
            CallOutcomeRecorded,
            decide,
            call_id=call_id,
            outcome=result.value,
        )

    # --- what the switch reports (二(六)) ------------------------------------------------

    def apply_call_event(self, event: CallEvent) -> CaseView:
        """Apply one report of the switch about an outbound call: once, and in order.

        ``RINGING``, ``ANSWERED`` and ``ENDED`` are stored as :class:`CallProgressed`; a
        report that ends a call the owner never talked on (busy, declined, no answer,
        failed, hung up during the greeting, unknown) records the call's outcome, as
        :meth:`record_call_outcome` would. A repeat of a report already applied returns
        the case as it is (switches and gateways deliver twice); a report the call has
        moved past, or for a call that is not the case's, raises
        :class:`~movecar_core.calls.CallEventRefused` and records nothing.
        """
        if not isinstance(event, CallEvent):
            raise InvalidCommand("event", type(event).__name__, "not a CallEvent")
        case_id, attempt = parse_call_key(event.key)
        progress = event.progress
        record = self._record(case_id)
        if progress is CallProgress.DIALLING:
            return CaseView.of(record)
        if attempt > record.attempts:
            raise CallEventRefused(event.key, progress, "the case placed no such call")
        command_id = f"{event.key}:{progress.value}"
        outcome = outcome_of(progress)
        if record.call_in_flight is None or attempt != record.attempts:
            # The call's outcome is recorded: this is a repeat of the report that recorded
            # it (its command id finds the first result), or late.
            placed = next(
                e for e in self.history(case_id)
                if isinstance(e, OwnerCallPlaced) and e.attempt == attempt
            )  # fmt: skip
            if outcome is not None:
                try:
                    return self.record_call_outcome(
                        case_id, placed.call_id, outcome, command_id=command_id
                    )
                except (CommandRejected, CommandIdReused):
                    pass
            raise CallEventRefused(event.key, progress, "late: the call's outcome is recorded")
        applied = record.call_progress
        if applied is not None and rank(progress) <= rank(applied):
            if progress is applied:
                return CaseView.of(record)
            raise CallEventRefused(event.key, progress, f"late: the call is {applied.value}")
        if progress is CallProgress.ENDED and applied is not CallProgress.ANSWERED:
            raise CallEventRefused(event.key, progress, "a call never answered cannot end")
        call_id = record.call_in_flight
        if outcome is not None:
            return self.record_call_outcome(case_id, call_id, outcome, command_id=command_id)

        def decide(
            case: CaseRecord, at: dt.datetime, cid: str | None, fp: str | None
        ) -> list[Event]:
            if case.call_in_flight != call_id:
                raise CallEventRefused(event.key, progress, "late: the call's outcome is recorded")
            if case.call_progress is not None and rank(progress) <= rank(case.call_progress):
                raise CallEventRefused(event.key, progress, "late: the call moved on")
            made = CallProgressed(
                case_id=case_id,
                at=at,
                command_id=cid,
                call_id=call_id,
                progress=progress,
                sip_status=event.sip_status,
                detail=event.detail,
                command_fingerprint=fp,
            )
            check(case, made.trigger, self.policy)
            return [made]

        return self._run(
            case_id,
            command_id,
            "call_progressed",
            CallProgressed,
            decide,
            call_id=call_id,
            progress=progress.value,
            sip_status=event.sip_status,
            detail=event.detail,
        )

    def pump_call_events(self) -> list[EffectRun]:
        """Apply every call event the switch reported since the last pump, in order
        (:meth:`run_due` pumps first). A refused report (late, for another call) is in
        the list with its error and dropped; one that failed for another reason (the
        store is down) stays, with those after it, for the next pump: none is lost."""
        self._call_events.extend(self.telephony.drain_events())
        ran: list[EffectRun] = []
        while self._call_events:
            event = self._call_events[0]
            what = f"call_event:{getattr(event, 'progress', '?')}"
            key = str(getattr(event, "key", "?"))
            case_id = key.rpartition(":call:")[0]  # "" for a key that is none
            try:
                self.apply_call_event(event)
            except (CallEventRefused, CommandRejected, InvalidCommand, UnknownCase) as exc:
                self._call_events.popleft()
                ran.append(EffectRun(key, what, case_id, "refused", str(exc)))
                continue
            except MoveCarError as exc:
                ran.append(EffectRun(key, what, case_id, "failed", str(exc)))
                break
            self._call_events.popleft()
            ran.append(EffectRun(key, what, case_id, "applied"))
        return ran

    def reconcile_call(
        self, case_id: str, *, command_id: str | None = None, overdue: bool = False
    ) -> str:
        """Settle the case's call in flight with what the switch knows of it, by its key.

        For a dial whose outcome was lost (a worker died after dialling, the switch never
        reported): the switch's answer is applied; a call it never placed, or (``overdue``)
        one that is still not over, is recorded as ``outcome_unknown`` for a person to look
        at. Never dials: at most one dial per attempt. Raises
        :class:`~movecar_core.errors.TelephonyError` when the switch cannot be asked (the
        effect that reconciles stays pending and asks again).
        """
        record = self._record(case_id)
        if record.call_in_flight is None:
            return "nothing to reconcile: no call in flight"
        attempt = record.attempts
        key = call_key(case_id, attempt)
        status = self.telephony.call_status(key)
        if not isinstance(status, CallEvent) or status.key != key:
            status = None  # a switch's answer about another call tells nothing of this one
        if status is not None and status.progress is not CallProgress.DIALLING:
            # Refused: applied already, or the history went past it.
            with contextlib.suppress(CallEventRefused):
                self.apply_call_event(status)
        record = self._record(case_id)
        if record.call_in_flight is None or record.attempts != attempt:
            said = status.progress.value if status is not None else "over"
            return f"reconciled: the switch reported the call {said}"
        if status is not None and not overdue:
            return f"the call is live: {status.progress.value}"
        self.record_call_outcome(
            case_id, record.call_in_flight, CallOutcome.OUTCOME_UNKNOWN, command_id=command_id
        )
        return "outcome unknown: left for a person, never redialled"

    def confirm_moved(
        self, case_id: str, *, note: str | None = None, command_id: str | None = None
    ) -> CaseView:
        """The car was moved: the case is done."""
        text = _text("note", note, required=False, limit=MAX_NOTE_LENGTH)
        return self._simple(case_id, command_id, "confirm_moved", MoveConfirmed, note=text)

    def dispute(self, case_id: str, *, note: str, command_id: str | None = None) -> CaseView:
        """The owner disputes the request; the case is then moved or escalated."""
        text = _text("note", note, required=True, limit=MAX_NOTE_LENGTH)
        return self._simple(case_id, command_id, "dispute", DisputeRaised, note=text)

    def cancel(self, case_id: str, *, note: str, command_id: str | None = None) -> CaseView:
        """The requester withdrew."""
        text = _text("note", note, required=True, limit=MAX_NOTE_LENGTH)
        return self._simple(case_id, command_id, "cancel", CaseCancelled, note=text)

    def escalate(
        self,
        case_id: str,
        reason: EscalationReason | str,
        note: str | None = None,
        *,
        command_id: str | None = None,
    ) -> CaseView:
        """Transfer the case to the 110 command centre (二(五)), on 0519-81997327.

        二(五) "对于乙方服务过程中无法妥善解决的挪车纠纷、群众紧急求助及涉及违法行为的 ...
        应及时转接至公安 110 指挥中心处理". Allowed from every open state;
        ``EscalationReason.OTHER`` needs a note.

        The transfer is recorded before it is placed, so the history shows every transfer
        the switch was ever asked for: first :class:`EscalationRequested` is appended (the
        case is then ``escalating``, which no cancel can leave: a cancel that came first
        makes this command :class:`CaseClosed` before anything is transferred), then the
        switch transfers the call, then the outcome is appended: :class:`EscalatedTo110`
        (the case is closed; the 110 desk gets its written notice) or, when the switch
        refuses, :class:`TransferTo110Failed` and :class:`TelephonyError` is raised; the
        case stays ``escalating`` and escalating again (a new ``command_id``) retries.
        """
        try:
            why = EscalationReason(reason)
        except ValueError:
            raise InvalidCommand("reason", reason, "not an EscalationReason") from None
        text = _text("note", note, required=why is EscalationReason.OTHER, limit=MAX_NOTE_LENGTH)
        number = self.contract.transfer_110_number

        def decide(
            case: CaseRecord, at: dt.datetime, cid: str | None, fp: str | None
        ) -> list[Event]:
            check(case, "escalation_requested", self.policy)
            return [
                EscalationRequested(
                    case_id=case_id,
                    at=at,
                    command_id=cid,
                    reason=why,
                    note=text or None,
                    transfer_number=number,
                    command_fingerprint=fp,
                )
            ]

        events, ran, record = self._execute(
            case_id,
            command_id,
            "escalate",
            # EscalatedTo110 alone: the first event of an escalate stored before
            # EscalationRequested existed, which a repeat of its command id must find.
            (EscalationRequested, EscalatedTo110),
            decide,
            reason=why.value,
            note=text,
        )
        if not ran:
            return CaseView.of(record)
        requested = events[-1]
        cid, fingerprint = requested.command_id, requested.command_fingerprint
        # The live call is the case's last call: one in flight, or one whose owner just
        # disputed on the line (its outcome is recorded; the switch knows if it is live).
        owner_on_line = record.call_in_flight is not None or (
            record.last_outcome is not None and record.last_outcome.answered
        )
        live = call_key(case_id, record.attempts) if owner_on_line else None
        request = TransferRequest(case_id, number, why.value, live)
        try:
            transferred = TransferOutcome(self.telephony.transfer_to_110(request))
            if transferred is not TransferOutcome.ACCEPTED:
                raise TelephonyError(f"case {case_id}: the transfer to 110 was {transferred}")
        except (TelephonyError, ValueError) as exc:
            failed = one_line(str(exc))
            self._transfer_outcome(
                case_id,
                lambda at: TransferTo110Failed(case_id, at, cid, failed, fingerprint),
            )
            if isinstance(exc, TelephonyError):
                raise
            raise TelephonyError(
                f"case {case_id}: the switch answered no TransferOutcome"
            ) from None
        return self._transfer_outcome(
            case_id,
            lambda at: EscalatedTo110(case_id, at, cid, why, text or None, number, fingerprint),
        )

    def _transfer_outcome(
        self, case_id: str, outcome: Callable[[dt.datetime], EscalatedTo110 | TransferTo110Failed]
    ) -> CaseView:
        """Append the outcome of a transfer to 110 whose request is recorded.

        Only escalation commands write to an ``escalating`` case, so a version conflict
        here is another seat's retry or outcome: decided again on the new history. When
        the case is no longer ``escalating`` (the other seat's transfer closed it) there is
        nothing to add: this transfer is already in the history as its request.
        """
        for attempt in range(self.max_retries + 1):
            case = self._record(case_id)
            if case.state is not CaseState.ESCALATING:
                return CaseView.of(case)
            event = outcome(self._now())
            check(case, event.trigger, self.policy)
            try:
                record, todo = self._append(case_id, [event], case)
            except ConcurrencyConflict:
                if attempt == self.max_retries:
                    raise
                continue
            self._deliver([event], case, record, todo)
            return CaseView.of(record)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- machinery ----------------------------------------------------------------------

    def _now(self) -> dt.datetime:
        now = self.clock.now()
        if now.tzinfo is None:
            raise InvalidCommand("clock.now()", now, "the clock must give timezone-aware times")
        return now

    def _simple(
        self, case_id: str, command_id: str | None, name: str, kind: type[Any], **fields: Any
    ) -> CaseView:
        def decide(
            case: CaseRecord, at: dt.datetime, cid: str | None, fp: str | None
        ) -> list[Event]:
            event = kind(case_id=case_id, at=at, command_id=cid, command_fingerprint=fp, **fields)
            check(case, event.trigger, self.policy)
            return [event]

        return self._run(case_id, command_id, name, kind, decide, **fields)

    def _first_result(
        self,
        events: Sequence[Event],
        command_id: str | None,
        name: str,
        kind: Kind,
        fingerprint: str | None,
    ) -> Sequence[Event] | None:
        """The history up to the end of an earlier run of ``command_id``, if any.

        Raises :class:`CommandIdReused` when the id was used for another command, or for
        this one with other arguments (its stored fingerprint differs): a repeat returns
        the first result only when it asks for the same thing.
        """
        if command_id is None:
            return None
        kinds = kind if isinstance(kind, tuple) else (kind,)
        last = None
        for i, event in enumerate(events):
            if event.command_id == command_id:
                if last is None:
                    if type(event) not in kinds:
                        raise CommandIdReused(command_id, type(event).__name__, name)
                    stored = event.command_fingerprint
                    if stored is not None and stored != fingerprint:
                        raise CommandIdReused(command_id, name, name, "with other arguments")
                last = i
        return None if last is None else events[: last + 1]

    def _load_for_open(self, case_id: str, command_id: str | None) -> Sequence[Event]:
        """The events of the case ``command_id`` opens (empty: none yet).

        A case purged under 二(四) keeps a tombstone, so its ``command_id`` is refused with
        :class:`CasePurged` naming that command id: answering with the purged case's id
        would tell the caller a case exists that no longer holds anything.
        """
        try:
            return self.store.load(case_id)
        except CasePurged as exc:
            raise CasePurged(case_id, exc.purged_at, command_id=command_id) from None

    def _repeat_of_open(
        self, events: Sequence[Event], command_id: str | None, fingerprint: str | None, phone: str
    ) -> None:
        first = self._first_result(events, command_id, "open_case", CaseOpened, fingerprint)
        if first is None:  # pragma: no cover - a case id derived from this command id
            raise CommandIdReused(str(command_id), "another case", "open_case")
        opened = first[0]
        if isinstance(opened, CaseOpened) and opened.requester_phone != phone:
            raise CommandIdReused(str(command_id), "open_case", "open_case", "with other arguments")

    def _run(
        self,
        case_id: str,
        command_id: str | None,
        name: str,
        kind: Kind,
        decide: Decide,
        **arguments: Any,
    ) -> CaseView:
        return CaseView.of(self._execute(case_id, command_id, name, kind, decide, **arguments)[2])

    def _execute(
        self,
        case_id: str,
        command_id: str | None,
        name: str,
        kind: Kind,
        decide: Decide,
        **arguments: Any,
    ) -> tuple[Sequence[Event], bool, CaseRecord]:
        """Run a command: its events (when it ran now; on a repeat, the history up to the
        end of its first run), whether it ran now (False: a repeat), and the case's record
        after it.

        ``arguments`` are the command's arguments in canonical form: their fingerprint is
        stored with the events and compared when the ``command_id`` comes again (before
        any state check, so a changed repeat on a closed case is :class:`CommandIdReused`).
        A version conflict (another writer appended first) re-reads the case and decides
        again, at most ``max_retries`` times; the guards then see the other writer's work.
        """
        cid = None if command_id is None else _command_id(command_id)
        fingerprint = None if cid is None else fingerprint_of(name, cid, **arguments)
        for attempt in range(self.max_retries + 1):
            events, case = self._read(case_id)
            if case is None:
                raise UnknownCase(case_id)
            if cid is not None:
                earlier = self._first_result(events, cid, name, kind, fingerprint)
                if earlier is not None:
                    if len(earlier) == len(events):
                        return earlier, False, case
                    return earlier, False, fold(earlier)
            new = decide(case, self._now(), cid, fingerprint)
            try:
                record, todo = self._append(case_id, new, case)
            except ConcurrencyConflict:
                if attempt == self.max_retries:
                    raise
                continue
            if todo is None or todo.schedule:
                self._deliver(new, case, record, todo)
            return new, True, record
        raise AssertionError("unreachable")  # pragma: no cover


def fingerprint_of(command: str, command_id: str | None, **arguments: Any) -> str | None:
    """The digest of a command's canonical arguments (None without a command id).

    Stored with the command's events; the same id with the same arguments (in canonical
    form: ``苏D·12345`` and ``苏D12345`` are one plate) is a repeat, with others a misuse.
    """
    if command_id is None:
        return None
    body = canonical_json([command, arguments])
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:32]


def _call_of(events: Sequence[Event]) -> OutboundCall:
    placed = events[-1]
    assert isinstance(placed, OwnerCallPlaced)
    return OutboundCall(
        case_id=placed.case_id,
        call_id=placed.call_id,
        attempt=placed.attempt,
        caller_id=placed.caller_id,
        greeting=placed.greeting,
        greeting_version=placed.greeting_version,
    )
