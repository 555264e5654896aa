"""Complete in-memory implementations of every port.

Real implementations, not mocks: the simulator, the examples and the tests run the
engine on them, and each passes the same contract suite as the SQL adapters
(:mod:`movecar_core.testing.contracts`). Thread-safe, so concurrency tests can use them.
They do no I/O, so they live in the core, beside the ports they implement (as
``eventsourcing`` keeps its plain-Python recorders beside the abstractions).
"""

from __future__ import annotations

import collections
import datetime as dt
import heapq
import threading
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence

import attrs

from movecar_core.calls import (
    FINAL_RANK,
    CallEvent,
    CallLimits,
    CallProgress,
    CallsInFlight,
    LiveCalls,
    TransferOutcome,
    TransferRequest,
    rank,
)
from movecar_core.case import TERMINAL_STATES, CaseOpened, CaseRecord, CaseState, Event
from movecar_core.clock import ManualClock
from movecar_core.codec import CanonicalEncoder
from movecar_core.contract import WUJIN_114_2024, Contract
from movecar_core.errors import (
    CasePurged,
    ConcurrencyConflict,
    InvalidInput,
    RegistryUnavailable,
    TelephonyError,
)
from movecar_core.integrity import GENESIS, chain_of_json
from movecar_core.machine import CorruptHistory, advanced, fold
from movecar_core.outbox import (
    Claimed,
    Effect,
    EffectPolicy,
    Plan,
    born_claimed,
    inline_token,
    plan,
)
from movecar_core.plates import parse_plate
from movecar_core.ports import (
    Backlog,
    Clock,
    FollowUpReminder,
    OutboundCallRequest,
    OwnerContact,
)
from movecar_core.reports import (
    MonthlyReport,
    RecordedSettlement,
    check_settlement,
    next_report,
)
from movecar_core.requesters import RequesterBook, RequesterBookStore, RequesterPolicy
from movecar_core.retention import purge_time, retention_due
from movecar_core.settlement import ServiceMonth
from movecar_core.text import event_text_problem

__all__ = [
    "InMemoryCaseStore",
    "InMemoryCommandCentre",
    "InMemoryNotifier",
    "InMemorySeatReminders",
    "InMemoryTelephony",
    "InMemoryVehicleRegistry",
]


@attrs.frozen
class _Tombstone:
    """What a purged case leaves behind: no personal data (no plate, location, phone),
    only what keeps its id taken and the monthly reports that counted it verifiable."""

    version: int
    opened_at: dt.datetime
    opened_hash: str
    closed_at: dt.datetime
    purged_at: dt.datetime


@attrs.define
class _OutboxRow:
    id: int
    effect: Effect
    token: str | None = None
    lease_until: dt.datetime | None = None
    attempts: int = 0


class InMemoryCaseStore(RequesterBookStore):
    """Event streams in a dict, appended under a lock with optimistic concurrency, and
    their outbox (:class:`~movecar_core.outbox.OutboxStore`), planned in the same step.

    As the SQL store does, an append folds the case through the state machine and refuses
    a batch no valid command sequence could produce (writing nothing), then schedules the
    effects of the new events with ``effects`` and cancels the timers they make moot. The
    record it folded is kept beside the stream and handed back by :meth:`load_folded` and
    :meth:`append_folded` (:class:`~movecar_core.ports.FoldedCaseStore`), with the plan
    of each append: the engine never folds a history nor plans a batch twice. Every append
    goes through :meth:`append_folded` (the engine's and :meth:`append`): a subclass that
    changes what an append does overrides that one.
    ``clock`` is only needed by :meth:`claim` without ``now`` and by :meth:`purge`; the
    engine always passes it. ``contract`` gives the retention period of :meth:`purge`.

    Only pending effects are kept (done and cancelled ones are dropped), indexed by case
    and in a heap by due time, so neither an append nor a claim grows with the number of
    cases: a simulation of a contract year runs on it.
    """

    def __init__(
        self,
        *,
        effects: EffectPolicy | None = None,
        clock: Clock | None = None,
        lease: dt.timedelta = dt.timedelta(minutes=2),
        contract: Contract = WUJIN_114_2024,
        requesters: RequesterPolicy | None = None,
    ) -> None:
        self.effects = effects or EffectPolicy()
        self.clock = clock
        self.lease = lease
        self.contract = contract
        # case id -> (its events, their record): one immutable pair, replaced whole by each
        # append, so a reader takes both at once without the lock and hands them out as
        # they are (nothing to copy, nothing half-written to see)
        self._cases: dict[str, tuple[tuple[Event, ...], CaseRecord]] = {}
        self._tombstones: dict[str, _Tombstone] = {}  # purged cases (二(四)), by id
        # Ids of the open cases in creation order (a dict as an ordered set): the status
        # page's overview reads these few, not every case the store holds (OpenCases).
        self._open: dict[str, None] = {}
        self._pending: dict[str, _OutboxRow] = {}  # by effect key
        # case id -> keys of its pending effects (a list: a case has one or two, and a set
        # costs three times the memory of a short list per open case)
        self._by_case: dict[str, list[str]] = {}
        self._due: list[tuple[dt.datetime, int, str]] = []  # heap; stale entries skipped
        self._next_id = 0
        self._reports: list[MonthlyReport] = []
        self._settlements: dict[ServiceMonth, RecordedSettlement] = {}
        self._scheduled: set[str] = set()  # keys ever scheduled (EffectScheduler), done too
        self._lock = threading.Lock()
        # The requester limits and block list (None: neither), checked under _lock with
        # the append that opens a case (movecar_core.requesters).
        self._requester_book = RequesterBook(requesters, self._now)

    def load(self, case_id: str) -> Sequence[Event]:
        return self.load_folded(case_id)[0]

    def load_folded(self, case_id: str) -> tuple[Sequence[Event], CaseRecord | None]:
        found = self._cases.get(case_id)
        if found is not None:
            return found
        # A purge writes the tombstone before it drops the case: no moment without either.
        tomb = self._tombstones.get(case_id)
        if tomb is not None:
            raise CasePurged(case_id, tomb.purged_at)
        return (), None

    def append(self, case_id: str, events: Sequence[Event], expected_version: int) -> int:
        return self.append_folded(case_id, events, expected_version)[0].version

    def append_folded(
        self, case_id: str, events: Sequence[Event], expected_version: int
    ) -> tuple[CaseRecord, Plan]:
        if not isinstance(events, (list, tuple)) or not events:
            raise InvalidInput(f"append to case {case_id!r:.80}: no events to append")
        for event in events:
            if getattr(event, "case_id", None) != case_id:
                raise InvalidInput(f"append to case {case_id!r:.80}: events of another case")
        for event in events:
            # The same text rule as the SQL store's (through the codec): a backend choice
            # never changes what is accepted.
            problem = event_text_problem(event)
            if problem is not None:
                raise InvalidInput(f"append to case {case_id!r:.80}: {problem}")
        with self._lock:
            found = self._cases.get(case_id)
            if found is None and (tomb := self._tombstones.get(case_id)) is not None:
                # nothing is appended to a purged case, not even a new opening
                raise CasePurged(case_id, tomb.purged_at)
            stream, before = ((), None) if found is None else found
            actual = len(stream)
            if actual != expected_version:
                raise ConcurrencyConflict(case_id, expected_version, actual)
            try:
                # The kept record is never changed in place: a refusal leaves it as it was,
                # and load_folded hands it out to be read.
                record = fold(events) if before is None else advanced(before, events)
            except (CorruptHistory, AttributeError, TypeError) as exc:
                raise InvalidInput(
                    f"append to case {case_id!r:.80}: not a valid case history: {exc}"
                ) from None
            todo = plan(
                events,
                actual + 1,
                self.effects,
                before=None if before is None else before.state,
                after=record.state,
            )
            if before is None and type(opened := events[0]) is CaseOpened:
                # the last check: a request it admits is counted, and appended below
                self._requester_book.admit(opened.requester_phone, opened.at)
            self._cases[case_id] = (*stream, *events), record
            if record.state in TERMINAL_STATES:
                self._open.pop(case_id, None)
            else:
                self._open[case_id] = None
            keys = self._by_case.get(case_id)
            if todo.cancel and keys:
                for key in [k for k in keys if self._pending[k].effect.kind in todo.cancel]:
                    self._drop(key)
                keys = self._by_case.get(case_id)  # gone with the last key dropped
            for effect in todo.schedule:
                self._next_id += 1
                if born_claimed(effect, self.effects):
                    row = _OutboxRow(
                        self._next_id,
                        effect,
                        inline_token(effect.key),
                        effect.due_at + self.lease,
                        1,
                    )
                else:
                    row = _OutboxRow(self._next_id, effect)
                self._pending[effect.key] = row
                if keys is None:
                    keys = self._by_case[case_id] = []
                keys.append(effect.key)
                heapq.heappush(self._due, (effect.due_at, self._next_id, effect.key))
            return record, todo

    def case_ids(self) -> Iterator[str]:
        with self._lock:
            ids = list(self._cases)
        return iter(ids)

    # --- the open cases and the backlog (OpenCases, OutboxBacklog) ----------------------

    def open_counts(self) -> dict[CaseState, int]:
        with self._lock:
            states = [self._cases[case_id][1].state for case_id in self._open]
        return dict(collections.Counter(states))

    def open_cases(self, limit: int) -> list[CaseRecord]:
        _check_limit(limit)
        with self._lock:
            records = [self._cases[case_id][1] for case_id in self._open]
        oldest = heapq.nsmallest(limit, enumerate(records), key=lambda x: (x[1].opened_at, x[0]))
        return [record for _, record in oldest]

    def outbox_backlog(self, now: dt.datetime) -> Backlog:
        with self._lock:
            dues = [row.effect.due_at for row in self._pending.values()]
        return Backlog(len(dues), sum(1 for d in dues if d <= now), min(dues, default=None))

    # --- retention (二(四)) -----------------------------------------------------------------

    def purge(self, *, now: dt.datetime | None = None, dry_run: bool = False) -> tuple[str, ...]:
        """Purge every case closed at least ``contract.retention_years`` years before
        ``now`` (二(四) "所有移车服务数据及电话录音资料，必须保存 3 年"); returns their ids.

        The same rules as the SQL store's ``purge``: ``now`` defaults to the store's clock
        and is refused (:class:`~movecar_core.errors.PurgeTimeRefused`, nothing purged)
        when naive or later than the clock beyond
        :data:`~movecar_core.retention.PURGE_CLOCK_SKEW`. A purged case's events, record
        and pending effects go; a tombstone without personal data stays, so :meth:`load`
        raises :class:`~movecar_core.errors.CasePurged` and its id is never reused. There
        are no legal holds nor recordings in memory.
        """
        if self.clock is None:
            raise InvalidInput("purge() needs InMemoryCaseStore(clock=...)")
        at = purge_time(now, self.clock)
        years = self.contract.retention_years
        with self._lock:
            due = [
                case_id
                for case_id, (_, r) in self._cases.items()
                if r.closed_at is not None and retention_due(r.closed_at, at, years)
            ]
            if dry_run:
                return tuple(due)
            for case_id in due:
                stream, record = self._cases[case_id]
                assert record.closed_at is not None  # only closed cases are due
                self._tombstones[case_id] = _Tombstone(
                    len(stream), record.opened_at, _opened_hash(stream[0]), record.closed_at, at
                )
                del self._cases[case_id]  # after its tombstone: readers take no lock
                for key in list(self._by_case.get(case_id, ())):
                    self._drop(key)
        return tuple(due)

    # --- the outbox -----------------------------------------------------------------------

    def claim(
        self,
        worker: str,
        *,
        limit: int = 1,
        now: dt.datetime | None = None,
        keys: Collection[str] | None = None,
    ) -> list[Claimed]:
        at = now if now is not None else self._now()
        token = uuid.uuid4().hex
        chosen: list[_OutboxRow] = []
        with self._lock:
            if keys is not None:
                rows = sorted(
                    (r for k in keys if (r := self._pending.get(k)) is not None),
                    key=lambda r: (r.effect.due_at, r.id),
                )
                chosen = [r for r in rows if self._claimable(r, at)][:limit]
            else:
                leased: list[_OutboxRow] = []
                while self._due and self._due[0][0] <= at and len(chosen) < limit:
                    entry = heapq.heappop(self._due)
                    row = self._pending.get(entry[2])
                    if row is None or row.id != entry[1]:
                        continue  # done or cancelled since: a stale entry
                    (chosen if self._claimable(row, at) else leased).append(row)
                for row in [*chosen, *leased]:  # pending until completed
                    heapq.heappush(self._due, (row.effect.due_at, row.id, row.effect.key))
            claimed = []
            for row in chosen:
                row.token = token
                row.lease_until = at + self.lease
                row.attempts += 1
                claimed.append(Claimed(row.id, token, row.effect, row.attempts, row.lease_until))
            return claimed

    def complete(self, claimed: Claimed) -> bool:
        with self._lock:
            row = self._pending.get(claimed.effect.key)
            if row is None or row.token != claimed.token:
                return False
            self._drop(claimed.effect.key)
            return True

    def pending(self, case_id: str | None = None) -> Iterator[Effect]:
        with self._lock:
            if case_id is None:
                rows = list(self._pending.values())
            else:
                rows = [self._pending[k] for k in self._by_case.get(case_id, ())]
        return iter([r.effect for r in sorted(rows, key=lambda r: (r.effect.due_at, r.id))])

    # --- effects of no case (EffectScheduler: the monthly report) -----------------------

    def schedule(self, effect: Effect) -> bool:
        """Keep ``effect`` pending (:class:`~movecar_core.outbox.EffectScheduler`); its key
        is remembered after it is done, so it is scheduled at most once."""
        if not isinstance(effect, Effect) or not isinstance(effect.key, str) or not effect.key:
            raise InvalidInput(f"schedule: {type(effect).__name__} is not an Effect with a key")
        with self._lock:
            if effect.key in self._scheduled or effect.key in self._pending:
                return False
            self._scheduled.add(effect.key)
            self._next_id += 1
            self._pending[effect.key] = _OutboxRow(self._next_id, effect)
            self._by_case.setdefault(effect.case_id, []).append(effect.key)
            heapq.heappush(self._due, (effect.due_at, self._next_id, effect.key))
            return True

    @staticmethod
    def _claimable(row: _OutboxRow, at: dt.datetime) -> bool:
        return row.effect.due_at <= at and (row.lease_until is None or row.lease_until < at)

    def _drop(self, key: str) -> None:
        row = self._pending.pop(key)
        keys = self._by_case[row.effect.case_id]
        keys.remove(key)
        if not keys:
            del self._by_case[row.effect.case_id]

    def _now(self) -> dt.datetime:
        if self.clock is None:
            raise InvalidInput(
                "InMemoryCaseStore(clock=...) is needed to claim without now= and to date "
                "changes to the requester block list"
            )
        return self.clock.now()

    # --- monthly reports and settlements (三) ---------------------------------------------

    def count_opened(self, start: dt.datetime, end: dt.datetime) -> int:
        # Purged cases were served too: they count, as the SQL store's tombstones do.
        with self._lock:
            return sum(1 for _, r in self._cases.values() if start <= r.opened_at < end) + sum(
                1 for x in self._tombstones.values() if start <= x.opened_at < end
            )

    def write_report(self, month: ServiceMonth, *, at: dt.datetime) -> MonthlyReport:
        start, end = month.bounds()
        with self._lock:
            opened = [
                (case_id, _opened_hash(stream[0]))
                for case_id, (stream, r) in self._cases.items()
                if start <= r.opened_at < end
            ] + [
                (case_id, x.opened_hash)
                for case_id, x in self._tombstones.items()
                if start <= x.opened_at < end
            ]
            report = next_report(
                self._reports[-1] if self._reports else None,
                month,
                opened,
                refusals=self._requester_book.refusals(month),
            )
            self._reports.append(report)
            return report

    def report(self, month: ServiceMonth) -> MonthlyReport | None:
        with self._lock:
            return next((r for r in self._reports if r.month == month), None)

    def reports(self) -> list[MonthlyReport]:
        with self._lock:
            return list(self._reports)

    def write_settlement(self, settlement: RecordedSettlement) -> None:
        with self._lock:
            report = next((r for r in self._reports if r.month == settlement.month), None)
            settled = settlement.month in self._settlements
            check_settlement(settlement, report, settled_before=settled)
            self._settlements[settlement.month] = settlement

    def settlement(self, month: ServiceMonth) -> RecordedSettlement | None:
        with self._lock:
            return self._settlements.get(month)


_ENCODE = CanonicalEncoder()


def _check_limit(limit: object) -> None:
    if type(limit) is not int or limit < 0:
        raise InvalidInput(f"open_cases: limit must be an int >= 0, got {limit!r:.40}")


def _opened_hash(opened: Event) -> str:
    """The chain hash of a case's first event, as a store that hashes on append keeps it."""
    name, plain, _ = _ENCODE(opened)
    return chain_of_json(GENESIS, opened.case_id, 1, [name], [plain])[0]


class InMemoryVehicleRegistry:
    """Plate -> owner phone, with a switch to simulate the platform being down."""

    def __init__(self, owners: Mapping[str, str] | None = None, source: str = "memory") -> None:
        self.source = source
        self.available = True
        self.lookups: list[str] = []
        self._owners = {parse_plate(p).canonical: phone for p, phone in (owners or {}).items()}

    def add(self, plate: str, phone: str) -> None:
        self._owners[parse_plate(plate).canonical] = phone

    def lookup(self, plate: str) -> OwnerContact | None:
        if not self.available:
            raise RegistryUnavailable(f"registry {self.source!r} is unavailable")
        self.lookups.append(plate)
        phone = self._owners.get(plate)
        return None if phone is None else OwnerContact(phone=phone, source=self.source)


@attrs.frozen
class Transfer:
    case_id: str
    number: str
    reason: str
    call_key: str | None = None


class InMemoryTelephony:
    """A switch in memory: records every call placed and every transfer, reports what a
    test tells it to (:meth:`report`), and can be told to fail or refuse.

    A call is live from its dial until a final report (ended, busy, ...). A repeated key
    is found in a dict, not by scanning :attr:`calls`, and the calls in flight are counted
    as they change: a dial costs the same after a contract year of calls as after the
    first. ``limits`` caps the calls in flight as a real switch would (the engine checks
    its own caps first).
    """

    def __init__(self, *, clock: Clock | None = None, limits: CallLimits | None = None) -> None:
        self.calls: list[OutboundCallRequest] = []
        self.transfers: list[Transfer] = []
        #: True: every dial and transfer raises TelephonyError (the switch is down).
        self.failing = False
        #: True: the far end refuses every transfer (a REFER answered 403, say).
        self.refuse_transfers = False
        self.clock: Clock = clock or ManualClock()
        self.limits = limits
        self._status: dict[str, CallEvent] = {}  # key -> the latest report
        self._live = LiveCalls()
        self._events: list[CallEvent] = []
        self._lock = threading.Lock()

    def place_call(self, request: OutboundCallRequest) -> None:
        if self.failing:
            raise TelephonyError(f"call {request.call_id}: the switch refused the call")
        key = request.key
        with self._lock:
            if key in self._status:
                return
            if self.limits is not None:
                refusal = self.limits.refusal(request.agent_id, self._live.counts())
                if refusal is not None:
                    raise TelephonyError(f"call {request.call_id}: refused: {refusal}")
            self._status[key] = CallEvent(key, CallProgress.DIALLING, self.clock.now())
            self._live.start(key, request.agent_id)
            self.calls.append(request)

    def report(
        self,
        key: str,
        progress: CallProgress | str,
        *,
        sip_status: int | None = None,
        detail: str = "",
    ) -> CallEvent:
        """What the far end did with the call ``key``, now: queued for the engine's
        :meth:`drain_events`. Raises :class:`TelephonyError` for a call never placed."""
        event = CallEvent(key, CallProgress(progress), self.clock.now(), sip_status, detail)
        with self._lock:
            if key not in self._status:
                raise TelephonyError("report for a call this switch never placed")
            self._status[key] = event
            if rank(event.progress) >= FINAL_RANK:
                self._live.end(key)
            self._events.append(event)
        return event

    def call_status(self, key: str) -> CallEvent | None:
        with self._lock:
            return self._status.get(key)

    def drain_events(self) -> list[CallEvent]:
        with self._lock:
            drained, self._events = self._events, []
        return drained

    def in_flight(self) -> CallsInFlight:
        with self._lock:
            return self._live.counts()

    def clear(self) -> None:
        """Forget every call and transfer recorded so far, the dialled keys too (a key
        given again afterwards is dialled again): a test or a benchmark that has read them
        keeps the switch's memory from growing."""
        with self._lock:
            self.calls.clear()
            self.transfers.clear()
            self._status.clear()
            self._live.clear()
            self._events.clear()

    def transfer_to_110(self, request: TransferRequest) -> TransferOutcome:
        if self.failing:
            raise TelephonyError(f"case {request.case_id}: transfer to {request.number} failed")
        with self._lock:
            self.transfers.append(
                Transfer(request.case_id, request.number, request.reason, request.call_key)
            )
            if self.refuse_transfers:
                return TransferOutcome.REFUSED
            # None names the seat's own line (the requester's inbound call); a key must
            # name a live call of this switch.
            if request.call_key is not None and request.call_key not in self._live:
                return TransferOutcome.FAILED
            return TransferOutcome.ACCEPTED


@attrs.frozen
class Notification:
    case_id: str
    phone: str
    message: str


class InMemoryNotifier:
    """Keeps every message sent to a requester."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def notify(self, case_id: str, requester_phone: str, message: str) -> None:
        self.sent.append(Notification(case_id, requester_phone, message))


@attrs.frozen
class Notice:
    key: str
    subject: str
    message: str


class InMemoryCommandCentre:
    """The 110 desk's inbox: keeps each notice once, by key (a repeat is dropped)."""

    def __init__(self) -> None:
        self.notices: list[Notice] = []
        self._keys: set[str] = set()
        self._lock = threading.Lock()

    def notify(self, key: str, subject: str, message: str) -> None:
        with self._lock:
            if key not in self._keys:
                self._keys.add(key)
                self.notices.append(Notice(key, subject, message))


class InMemorySeatReminders:
    """The seat application's reminder list: each follow-up once, by key."""

    def __init__(self) -> None:
        self.reminders: list[FollowUpReminder] = []
        self._keys: set[str] = set()
        self._lock = threading.Lock()

    def follow_up(self, reminder: FollowUpReminder) -> None:
        with self._lock:
            if reminder.key not in self._keys:
                self._keys.add(reminder.key)
                self.reminders.append(reminder)
