"""The compliance simulation: a discrete-event model of the 114 service driving the real
engine, on a simulated clock.

Requests arrive by the scenario's profile (a Poisson process whose rate changes each
hour); seats answer them first come, first served, and a requester who waits longer than
their patience hangs up (abandoned: 呼入 but not 接通). Each answered request is a case,
pushed through :class:`~movecar_core.app.MoveCar` (the production facade, machine and
store) step by step at the simulated time of each step: open, locate the owner, call
(again after no answer or busy, up to the policy's attempts), the owner's answer, the car
moved or the case escalated to 110 or cancelled. Outages stop answering and dialling; the
notices to 110 are sent on time or late. Faults (refused dials and transfers, registry
outages) are injected by seed. Each month is reported and settled by the engine on the
3rd of the next month (before the 5th, 三).

Determinism: every random draw comes from streams seeded by text (``random.Random``
seeded with a str hashes it with SHA-512, the same on every machine), times are whole
seconds, and nothing of the wall clock reaches the result. Case ids come from command ids
(``sim-<seed>-<n>``), so the same seed gives the same cases.

Invariants are checked as the run goes (:class:`SimulationFailed` names the broken one):
the engine's record is the fold of its history, no message to a requester holds the
owner's number, no case has more outbound calls than the policy allows, each month's
billable count equals a recount from the store, and after the last fault every case
reaches a terminal state within :data:`LIVENESS_BOUND`.
"""

from __future__ import annotations

import bisect
import datetime as dt
import heapq
import random
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import attrs

from movecar_core.app import MoveCar
from movecar_core.calendar import SHANGHAI, WorkingDayCalendar, year_ranges
from movecar_core.calls import (
    CallEvent,
    CallProgress,
    CallsInFlight,
    LiveCalls,
    TransferOutcome,
    TransferRequest,
    call_key,
)
from movecar_core.case import CallOutcome, EscalationReason
from movecar_core.clock import ManualClock
from movecar_core.contract import Contract
from movecar_core.errors import (
    CalendarYearNotCovered,
    InvalidInput,
    MoveCarError,
    PortError,
    RegistryUnavailable,
    TelephonyError,
)
from movecar_core.findings import Finding
from movecar_core.incidents import NoticeKind, notice_finding
from movecar_core.machine import CasePolicy, fold
from movecar_core.penalties import service_gap_days, service_gap_penalty
from movecar_core.ports import OutboundCallRequest, OwnerContact
from movecar_core.pricing import TierMode, settle_year
from movecar_core.reports import ReportStore
from movecar_core.settlement import ServiceMonth
from movecar_core.simulation.scenario import Scenario
from movecar_core.staffing import seats_needed
from movecar_core.term import Assessment, ContractTerm

#: After the last fault, every case must be closed within this (liveness): a day covers
#: every wait the model has (retries, moves, a transfer retried after a refusal).
LIVENESS_BOUND = dt.timedelta(hours=24)
#: The run_due cadence: timers and retried effects fire at most this late.
TICK_S = 600
#: 二(五)/五(二) service level the seat plan aims at: 80 % answered within 20 s.
ANSWER_WITHIN_S = 20
SERVICE_TARGET = 0.8


class SimulationFailed(MoveCarError):
    """An invariant broke during a run: the message names it, the seed and the options
    (the same command reproduces it exactly)."""


@attrs.define
class MonthFigures:
    """One month of the simulation: the volume report's counts, the service level, what
    became of the cases, and the settlement in both tier modes."""

    month: ServiceMonth
    inbound: int = 0
    connected: int = 0
    abandoned: int = 0
    lost_to_outage: int = 0
    answered_within_20s: int = 0
    outbound_calls: int = 0
    cases: Counter[str] = attrs.Factory(Counter)
    escalations: Counter[str] = attrs.Factory(Counter)
    outage_minutes: int = 0
    days_without_24h: int = 0
    billable_calls: int = 0
    unit_price: Decimal | None = None
    provisional_fee: Decimal | None = None
    provisional_fee_graduated: Decimal | None = None
    ytd_after: int = 0
    true_up: Decimal | None = None
    true_up_graduated: Decimal | None = None
    service_gap_penalty: Decimal = Decimal("0.00")
    report_due: str = ""
    payment_due: str = ""

    @property
    def service_level(self) -> float:
        """Share of connected calls answered within 20 s (1.0 for a month without any)."""
        return self.answered_within_20s / self.connected if self.connected else 1.0


@attrs.frozen
class HourPlan:
    """Seat planning for one hour of the week (Monday 00:00 is hour 0)."""

    hour_of_week: int
    calls_per_hour: float
    seats_needed: int
    seats_simulated: float


@attrs.frozen
class SimulationResult:
    seed: int
    scenario: Scenario
    months: tuple[MonthFigures, ...]
    findings: tuple[Finding, ...]
    seat_plan: tuple[HourPlan, ...]
    cases: int
    invariant_checks: int
    #: What went wrong on purpose or by outage, by kind: the run survived each.
    injected: dict[str, int]
    outages: tuple[tuple[dt.datetime, dt.datetime], ...]


EngineFactory = Callable[..., MoveCar]


class SimRegistry:
    """The owner data source of the simulation: plates with the province letter 苏D are
    registered (the owner's number follows from the plate), others are not; it can be
    down (a fault)."""

    source = "sim-registry"

    def __init__(self) -> None:
        self.down = False

    def lookup(self, plate: str) -> OwnerContact | None:
        if self.down:
            raise RegistryUnavailable("the simulated owner registry is down")
        if not plate.startswith("苏D"):
            return None
        return OwnerContact(phone=owner_phone(plate), source=self.source)


def owner_phone(plate: str) -> str:
    """The simulated owner's mobile number, from the plate (no table kept)."""
    digits = int.from_bytes(plate.encode(), "big") % 10**8
    return f"139{digits:08d}"


class SimSwitch:
    """The phone switch of the simulation: refuses every call during an outage, and a
    share of dials and transfers when faults are on (decided by the run's fault stream).

    The simulation decides what each owner does and records it through the engine; it
    tells the switch when a call is over (:meth:`hang_up`), so the switch counts the calls
    in flight as a real one would, and answers the engine's reconciliation by key.
    """

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.out_of_service = False
        self.refuse_next_dial = False
        self.refuse_next_transfer = False
        self.dials = 0
        self.transfers = 0
        self.refused = Counter[str]()
        self._live = LiveCalls()

    def place_call(self, request: OutboundCallRequest) -> None:
        if self.out_of_service or self.refuse_next_dial:
            self.refused["dials refused by the switch"] += 1
            self.refuse_next_dial = False
            raise TelephonyError(f"call {request.call_id}: the switch refused the call")
        key = request.key
        if key not in self._live:
            self._live.start(key, request.agent_id)
            self.dials += 1

    def hang_up(self, key: str) -> None:
        """The call ``key`` is over (the simulation recorded its outcome)."""
        self._live.end(key)

    def call_status(self, key: str) -> CallEvent | None:
        if key not in self._live:
            return None  # over, or never placed: the switch keeps no history
        return CallEvent(key, CallProgress.DIALLING, self.clock.now())

    def drain_events(self) -> list[CallEvent]:
        return []  # the simulation records outcomes through the engine itself

    def in_flight(self) -> CallsInFlight:
        return self._live.counts()

    def transfer_to_110(self, request: TransferRequest) -> TransferOutcome:
        if self.out_of_service or self.refuse_next_transfer:
            self.refused["transfers to 110 refused"] += 1
            self.refuse_next_transfer = False
            return TransferOutcome.REFUSED
        self.transfers += 1
        return TransferOutcome.ACCEPTED


class SimNotifier:
    """Messages to requesters, kept only while their case is open: when it closes, the
    run checks none holds the owner's number (四: the owner's data is not the
    requester's) and drops them (a run may send millions)."""

    def __init__(self) -> None:
        self.sent = 0
        self.pending: dict[str, list[str]] = {}

    def notify(self, case_id: str, requester_phone: str, message: str) -> None:
        self.sent += 1
        self.pending.setdefault(case_id, []).append(message)


class SimCommandCentre:
    """The 110 desk's inbox, counting notices by subject."""

    def __init__(self) -> None:
        self.notices: Counter[str] = Counter()

    def notify(self, key: str, subject: str, message: str) -> None:
        self.notices[subject] += 1


class SimReminders:
    def __init__(self) -> None:
        self.sent = 0

    def follow_up(self, reminder: Any) -> None:
        self.sent += 1


@attrs.define
class _Case:
    n: int
    plate: str
    #: the draw that decides the case's course (emergency, cancel, or the usual)
    roll: float
    case_id: str = ""
    month: int = 0
    call_id: str | None = None
    attempt: int = 0  # the engine's attempt number of the call in flight
    calls: int = 0
    #: commands committed: names the next command (``<step>-<seq>``), so a command
    #: retried after a failed write keeps its id and is applied once
    seq: int = 0
    #: the owner's answer drawn for the call in flight (kept for a retry)
    outcome: CallOutcome | None = None


class StoreFault(PortError):
    """The simulated database failed a write (a fault injected by seed): before writing,
    or after (committed, but reported failed)."""


class FaultyStore:
    """The engine's store, failing a share of its writes while ``active()``."""

    def __init__(
        self, inner: Any, rng: random.Random, share: float, active: Callable[[], bool]
    ) -> None:
        self.inner = inner
        self.rng = rng
        self.share = share
        self.active = active
        self.failed = 0

    def append(self, case_id: str, events: Any, expected_version: int) -> int:
        version: int = self._write(self.inner.append, case_id, events, expected_version)
        return version

    def append_folded(self, case_id: str, events: Any, expected_version: int) -> Any:
        # The engine's write when the store keeps the folded record (FoldedCaseStore).
        return self._write(self.inner.append_folded, case_id, events, expected_version)

    def _write(self, write: Callable[..., Any], case_id: str, *args: Any) -> Any:
        if self.share and self.active() and self.rng.random() < self.share:
            self.failed += 1
            if self.rng.random() < 0.5:
                raise StoreFault(f"case {case_id}: the write failed (nothing written)")
            write(case_id, *args)
            raise StoreFault(f"case {case_id}: the write was committed, then reported failed")
        return write(case_id, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


_MINUTE = 60
_OUTCOMES = (
    CallOutcome.ANSWERED_AGREED,
    CallOutcome.ANSWERED_REFUSED,
    CallOutcome.ANSWERED_DISPUTES,
    CallOutcome.NO_ANSWER,
    CallOutcome.BUSY,
)
_PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


class Simulation:
    """One run (see the module docstring): ``Simulation(scenario, seed, factory).run()``.

    ``factory(clock=..., registry=..., telephony=..., notifier=..., command_centre=...,
    reminders=..., term=..., contract=..., policy=..., calendar=...)`` builds the engine
    on the store under test (the composition root's ``connect`` with its URL does).
    ``calendar`` (default: the library's table) must cover every year of the period and
    the month after it; the engine's deadlines use the same one.
    """

    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        factory: EngineFactory,
        *,
        contract: Contract | None = None,
        calendar: WorkingDayCalendar | None = None,
        policy: CasePolicy | None = None,
        progress: Callable[[int, int], None] | None = None,
        check_every: int = 1,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise InvalidInput(f"seed={seed!r:.40}: must be a whole number from 0 to 2**63-1")
        self.scenario = scenario
        self.faults = scenario.faults
        self.seed = seed
        self.contract = contract or scenario.contract
        self.calendar = calendar or WorkingDayCalendar.default()
        self.policy = policy or CasePolicy(max_call_attempts=scenario.max_call_attempts)
        self.progress = progress
        self.check_every = max(1, check_every)
        self.t0 = dt.datetime.combine(scenario.start.first_day(), dt.time(), tzinfo=SHANGHAI)
        end = scenario.end().next()
        self.t_end = _seconds(
            self.t0, dt.datetime.combine(end.first_day(), dt.time(), tzinfo=SHANGHAI)
        )
        self._check_period()
        self.clock = ManualClock(self.t0)
        self.registry = SimRegistry()
        self.switch = SimSwitch(self.clock)
        self.notifier = SimNotifier()
        self.centre = SimCommandCentre()
        self.reminders = SimReminders()
        self.mc = factory(
            clock=self.clock,
            registry=self.registry,
            telephony=self.switch,
            notifier=self.notifier,
            command_centre=self.centre,
            reminders=self.reminders,
            term=self._term(),
            contract=self.contract,
            policy=self.policy,
            calendar=self.calendar,
        )
        self.rng = {
            name: random.Random(f"movecar-sim:{seed}:{name}")
            for name in ("arrivals", "seats", "cases", "outages", "faults", "store")
        }
        if self.faults.enabled and self.faults.store_failure:
            # Every command of the engine writes through its store: the same engine on
            # the store wrapped, so the failures reach it exactly as a database's would.
            mc = self.mc
            self.mc = MoveCar(
                store=FaultyStore(
                    mc.store, self.rng["store"], self.faults.store_failure,
                    lambda: self._faulty(self.now),
                ),
                registry=mc.registry, telephony=mc.telephony, clock=mc.clock,
                notifier=mc.notifier, command_centre=mc.command_centre,
                reminders=mc.reminders, contract=mc.contract, policy=mc.policy,
                max_retries=mc.max_retries, dispatch=mc.dispatch, term=mc.term,
                call_limits=mc.call_limits, calendar=mc.calendar,
            )  # fmt: skip
        self.now = 0
        self.months = [MonthFigures(m) for m in _months(scenario)]
        self.month_starts = [
            _seconds(self.t0, dt.datetime.combine(m.month.first_day(), dt.time(), tzinfo=SHANGHAI))
            for m in self.months
        ]
        self.heap: list[tuple[int, int, str, Any]] = []
        self._seq = 0
        self.findings: list[Finding] = []
        self.open: dict[int, _Case] = {}
        self.n_cases = 0
        self.checks = 0
        self.outages = self._outages()
        self.registry_down = self._registry_outages()
        self.jumps = self._clock_jumps()
        # seats: free times (a min-heap) and how many must leave when they next free up
        self.free: list[int] = []
        self.leaving = 0
        self.on_duty = 0
        self.hour_calls = [0] * 168
        self.hour_seen = [0] * 168
        self.hour_seats = [0.0] * 168
        self.planned = self._planned_seats()

    # --- set-up -----------------------------------------------------------------------

    def _check_period(self) -> None:
        """The period and the month after it (deadlines) must be in the contract's term
        and in the calendar: refused before anything runs."""
        s = self.scenario
        last = s.end().next()
        first_day, last_day = self.contract.effective_from, self.contract.last_possible_day
        if s.start.first_day() < first_day or s.end().last_day() > last_day:
            raise InvalidInput(
                f"period {s.start}..{s.end()}: outside the contract's possible term "
                f"({first_day} to {last_day})"
            )
        for year in range(s.start.year, last.year + 1):
            if not self.calendar.covers(year):
                raise CalendarYearNotCovered(year, year_ranges(self.calendar.covered_years))

    def _term(self) -> ContractTerm:
        """The term with every renewal the period needs (the scenario assumes Party A's
        assessments pass, 一(三))."""
        term = ContractTerm.start(self.contract)
        while term.end_date < self.scenario.end().last_day():
            year = term.current
            term = term.renew(Assessment(year.index, True, year.end))
        return term

    def _at(self, t: int) -> dt.datetime:
        return self.t0 + dt.timedelta(seconds=t)

    def _push(self, t: int, kind: str, data: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (t, self._seq, kind, data))

    def _day_weight(self, day: dt.date) -> float:
        p = self.scenario.profile
        w = p.weekdays[day.weekday()] * p.months[day.month - 1]
        if self.calendar.covers(day.year) and day in self.calendar.holidays:
            w *= p.holiday
        return w

    def _year_weight(self) -> float:
        """Sum of the hourly weights over the year from the start: the volume's share of
        an hour is its weight over this."""
        day = self.scenario.start.first_day()
        end = day.replace(year=day.year + 1)
        total = 0.0
        per_day = sum(self.scenario.profile.hourly)
        while day < end:
            total += self._day_weight(day) * per_day
            day += dt.timedelta(days=1)
        return total

    def _planned_seats(self) -> list[int]:
        s = self.scenario
        if s.seats.by_hour is not None:
            return list(s.seats.by_hour)
        p = s.profile
        peak_day = max(p.weekdays) * max(p.months) * max(1.0, p.holiday)
        scale = s.calls_per_year / self._year_weight()
        return [
            max(
                1,
                seats_needed(
                    scale * w * peak_day, s.seats.handle_s, ANSWER_WITHIN_S, SERVICE_TARGET
                ),
            )
            for w in p.hourly
        ]

    def _outages(self) -> list[tuple[int, int]]:
        o = self.scenario.outages
        rng = self.rng["outages"]
        out: list[tuple[int, int]] = []
        if o.per_month <= 0:
            return out
        rate = o.per_month / (30 * 86400)
        if rate <= 0:  # a rate so small it underflows: none
            return out
        t = 0
        while True:
            gap = rng.expovariate(rate)
            if gap >= self.t_end - t:  # a float beyond any int the period could hold
                return out
            t += max(1, int(gap))
            length = max(60, int(rng.expovariate(1 / (o.mean_minutes * _MINUTE))))
            if out and t < out[-1][1]:
                continue
            out.append((t, min(t + length, self.t_end)))
            t += length

    def _clock_jumps(self) -> list[tuple[int, int]]:
        """With faults, the clock steps forward across each month end but the last (and
        not in the quiet days): ``(from, to)`` in seconds."""
        minutes = self.faults.clock_jump_minutes
        if not self.faults.enabled or not minutes:
            return []
        out = []
        for figures in self.months[:-1]:
            end = _seconds(
                self.t0,
                dt.datetime.combine(figures.month.next().first_day(), dt.time(), tzinfo=SHANGHAI),
            )
            half = int(minutes * _MINUTE / 2)
            if self._faulty(end + half):
                out.append((end - half, end + half))
        return out

    def _registry_outages(self) -> list[tuple[int, int]]:
        f = self.scenario.faults
        if not f.enabled or f.registry_down_per_day <= 0:
            return []
        rng = self.rng["faults"]
        quiet = self.t_end - f.quiet_days * 86400
        rate = f.registry_down_per_day / 86400
        if rate <= 0:
            return []
        out: list[tuple[int, int]] = []
        t = 0
        while True:
            gap = rng.expovariate(rate)
            if gap >= quiet - t:
                return out
            t += max(1, int(gap))
            out.append(
                (t, t + max(30, int(rng.expovariate(1 / (f.registry_down_minutes * _MINUTE)))))
            )
            t = out[-1][1]

    # --- the run ----------------------------------------------------------------------

    def run(self) -> SimulationResult:
        self._push(0, "hour", 0)
        self._push(TICK_S, "tick")
        for start, end in self.outages:
            self._push(start, "outage_start", (start, end))
            self._push(end, "outage_end", (start, end))
        for start, end in self.registry_down:
            self._push(start, "registry", True)
            self._push(end, "registry", False)
        for index, figures in enumerate(self.months):
            settle_at = _seconds(
                self.t0,
                dt.datetime.combine(figures.month.next().day(3), dt.time(9), tzinfo=SHANGHAI),
            )
            self._push(settle_at, "settle", index)
        total_hours = self.t_end // 3600
        done_hours = 0
        handlers: dict[str, Callable[[int, Any], None]] = {
            "hour": self._hour,
            "arrival": self._arrival,
            "step": self._step,
            "tick": self._tick,
            "settle": self._settle,
            "outage_start": self._outage_start,
            "outage_end": self._outage_end,
            "notice": self._notice,
            "registry": self._registry,
        }
        while self.heap:
            t, _, kind, data = heapq.heappop(self.heap)
            if t > self.t_end + LIVENESS_BOUND.total_seconds() + 10 * 86400:
                break  # pragma: no cover - guarded by the liveness check below
            for start, end in self.jumps:  # what falls in a jump happens at its end
                if start <= t < end:
                    t = end
            if t != self.now:
                self.now = t
                self.clock.set(self._at(t))
            handlers[kind](t, data)
            if kind == "hour" and self.progress is not None:
                done_hours += 1
                self.progress(done_hours, total_hours)
        self._liveness()
        return SimulationResult(
            seed=self.seed,
            scenario=self.scenario,
            months=tuple(self.months),
            findings=tuple(sorted(self.findings, key=lambda f: (f.when, f.clause, f.what))),
            seat_plan=self._seat_plan(),
            cases=self.n_cases,
            invariant_checks=self.checks,
            injected=self._injected(),
            outages=tuple((self._at(a), self._at(b)) for a, b in self.outages),
        )

    def _fail(self, what: str) -> SimulationFailed:
        return SimulationFailed(
            f"invariant broken: {what} (seed {self.seed}, scenario {self.scenario.name!r}; "
            "the same seed and options reproduce it)"
        )

    def _month_index(self, t: int) -> int:
        """The simulated month ``t`` falls in (-1 or past the last: outside the period),
        by the months' first seconds (every arrival asks: no datetime built)."""
        return bisect.bisect_right(self.month_starts, t) - 1

    def _month_of(self, t: int) -> MonthFigures | None:
        index = self._month_index(t)
        return self.months[index] if 0 <= index < len(self.months) else None

    def _in(self, intervals: list[tuple[int, int]], t: int) -> bool:
        return any(a <= t < b for a, b in intervals)

    # --- arrivals and seats -----------------------------------------------------------

    def _hour(self, t: int, k: int) -> None:
        if t >= self.t_end:
            return
        when = self._at(t)
        how = (when.weekday() * 24) + when.hour
        rate = (
            self.scenario.calls_per_year
            * self.scenario.profile.hourly[when.hour]
            * self._day_weight(when.date())
            / self._year_weight_cached
        )
        self._staff(t, when.hour)
        self.hour_seen[how] += 1
        self.hour_seats[how] += self.on_duty
        rng = self.rng["arrivals"]
        if rate > 0:
            s = 0.0
            while True:
                s += rng.expovariate(rate / 3600)
                if s >= 3600:
                    break
                self._push(t + int(s), "arrival", how)
        self._push(t + 3600, "hour", k + 1)

    @property
    def _year_weight_cached(self) -> float:
        cached: float | None = getattr(self, "_yw", None)
        if cached is None:
            cached = self._yw = self._year_weight()
        return cached

    def _staff(self, t: int, hour: int) -> None:
        """Set the seats on duty for the hour (some short, by the seats stream)."""
        planned = self.planned[hour]
        short = self.scenario.seats.short
        rng = self.rng["seats"]
        want = planned - sum(1 for _ in range(planned) if short and rng.random() < short)
        if want > self.on_duty:
            more = want - self.on_duty
            stay = min(self.leaving, more)  # seats told to leave stay on instead
            self.leaving -= stay
            for _ in range(more - stay):
                heapq.heappush(self.free, t)
        elif want < self.on_duty:
            self.leaving += self.on_duty - want
        self.on_duty = want

    def _arrival(self, t: int, how: int) -> None:
        figures = self._month_of(t)
        if figures is None:
            return
        figures.inbound += 1
        self.hour_calls[how] += 1
        if self._in(self.outages, t):
            figures.lost_to_outage += 1
            return
        rng = self.rng["cases"]
        patience = rng.expovariate(1 / self.scenario.seats.patience_s)
        handle = max(20, int(rng.expovariate(1 / self.scenario.seats.handle_s)))
        while self.leaving and self.free:
            heapq.heappop(self.free)  # a seat going off duty once its call ends
            self.leaving -= 1
        if not self.free:
            figures.abandoned += 1
            return
        start = max(t, self.free[0])
        if start - t > patience:
            figures.abandoned += 1
            return
        heapq.heapreplace(self.free, start + handle)
        figures.connected += 1
        if start - t <= ANSWER_WITHIN_S:
            figures.answered_within_20s += 1
        self.n_cases += 1
        registered = rng.random() >= self.scenario.behaviour.lookup_miss
        letters = "".join(rng.choice(_PLATE_LETTERS) for _ in range(2))
        plate = f"苏{'D' if registered else 'E'}{letters}{self.n_cases % 1000:03d}"
        case = _Case(self.n_cases, plate, rng.random(), month=self._month_index(t))
        self._push(start, "step", (case, "open"))

    # --- the case, step by step through the engine ------------------------------------

    def _step(self, t: int, data: tuple[_Case, str]) -> None:
        case, what = data
        step: Callable[[int, _Case], None] = getattr(self, f"_case_{what}")
        try:
            step(t, case)
        except StoreFault:
            # The seat tries again with the same command id: applied once either way.
            self._then(t, case, what, 30)

    def _cid(self, case: _Case, what: str) -> str | None:
        """The command's id when a write can fail and the command be retried (faults on):
        then it must apply once. Without them no command is retried, and an id costs a
        fingerprint and a look back through the case (about a third of a command)."""
        return f"{what}-{case.seq}" if isinstance(self.mc.store, FaultyStore) else None

    def _then(self, t: int, case: _Case, what: str, after_s: float) -> None:
        self._push(t + max(1, int(after_s)), "step", (case, what))

    def _case_open(self, t: int, case: _Case) -> None:
        b = self.scenario.behaviour
        case.case_id = self.mc.open_case(
            plate=case.plate,
            location="武进区湖塘镇",
            requester_phone=f"138{case.n % 10**8:08d}",
            agent_id="seat",
            command_id=f"sim-{self.seed}-{case.n}",
        )
        case.seq += 1
        self.open[case.n] = case
        roll = case.roll
        if roll < b.emergency:
            self._then(t, case, "escalate_emergency", 45)
        elif roll < b.emergency + b.cancel:
            self._then(t, case, "cancel", 5 * _MINUTE)
        else:
            self._then(t, case, "locate", 30)

    def _case_locate(self, t: int, case: _Case) -> None:
        try:
            view = self.mc.locate_owner(
                case.case_id, agent_id="seat", command_id=self._cid(case, "locate")
            )
        except RegistryUnavailable:
            self._then(t, case, "locate", 2 * _MINUTE)
            return
        case.seq += 1
        if view.state.is_terminal:
            self._closed(t, case)
        else:
            self._then(t, case, "call", 30)

    def _case_call(self, t: int, case: _Case) -> None:
        if self._faulty(t):
            self.switch.refuse_next_dial = self.rng["faults"].random() < self.faults.dial_failure
        try:
            call = self.mc.call_owner(
                case.case_id, agent_id="seat", command_id=self._cid(case, "call")
            )
        except TelephonyError:  # committed as a failed attempt
            case.seq += 1
            self._count_call(case)
            self._after_failed_call(t, case)
            return
        finally:
            self.switch.refuse_next_dial = False
        case.seq += 1
        self._count_call(case)
        if self.mc.record(case.case_id).call_in_flight != call.call_id:
            # A repeat of a call whose first run was written, then failed on its way
            # (a failed write after the dial was refused): its outcome is recorded already.
            self._after_failed_call(t, case)
            return
        case.call_id = call.call_id
        case.attempt = call.attempt
        self._then(t, case, "answer", 15 + self.rng["cases"].random() * 30)

    def _count_call(self, case: _Case) -> None:
        case.calls += 1
        self.months[case.month].outbound_calls += 1

    def _faulty(self, t: int) -> bool:
        """Faults are on and not yet quiet (they stop before the end: liveness)."""
        return self.faults.enabled and t < self.t_end - self.faults.quiet_days * 86400

    def _after_failed_call(self, t: int, case: _Case) -> None:
        state = self.mc.record(case.case_id).state
        if state.is_terminal:
            self._closed(t, case)
        else:
            self._then(t, case, "call", self.scenario.behaviour.retry_minutes * _MINUTE)

    def _case_answer(self, t: int, case: _Case) -> None:
        b = self.scenario.behaviour
        rng = self.rng["cases"]
        if case.outcome is None:
            weights = (b.agree, b.refuse, b.dispute, b.no_answer, b.busy)
            case.outcome = rng.choices(_OUTCOMES, weights)[0]
        outcome = case.outcome
        assert case.call_id is not None
        self.switch.hang_up(call_key(case.case_id, case.attempt))  # the owner's answer is in
        view = self.mc.record_call_outcome(
            case.case_id, case.call_id, outcome, command_id=self._cid(case, "answer")
        )
        case.seq += 1
        case.call_id = case.outcome = None
        if view.state.is_terminal:
            self._closed(t, case)
        elif outcome is CallOutcome.ANSWERED_AGREED:
            self._then(t, case, "moved", rng.expovariate(1 / (b.move_minutes * _MINUTE)))
        elif outcome is CallOutcome.ANSWERED_REFUSED:
            self._then(t, case, "escalate_refused", _MINUTE)
        elif outcome is CallOutcome.ANSWERED_DISPUTES:
            if rng.random() < b.dispute_settled:
                self._then(t, case, "moved", rng.expovariate(1 / (b.move_minutes * _MINUTE)))
            else:
                self._then(t, case, "escalate_dispute", 2 * _MINUTE)
        else:
            self._then(t, case, "call", b.retry_minutes * _MINUTE)

    def _case_moved(self, t: int, case: _Case) -> None:
        self.mc.confirm_moved(case.case_id, command_id=self._cid(case, "moved"))
        case.seq += 1
        self._closed(t, case)

    def _case_cancel(self, t: int, case: _Case) -> None:
        self.mc.cancel(case.case_id, note="求助人已自行解决", command_id=self._cid(case, "cancel"))
        case.seq += 1
        self._closed(t, case)

    def _escalate(self, t: int, case: _Case, reason: EscalationReason, retry: str) -> None:
        if self._faulty(t):
            chance = self.faults.transfer_failure
            self.switch.refuse_next_transfer = self.rng["faults"].random() < chance
        try:
            self.mc.escalate(case.case_id, reason, command_id=self._cid(case, "escalate"))
        except TelephonyError:  # committed as a failed transfer: retried with a new id
            case.seq += 1
            self._then(t, case, retry, 2 * _MINUTE)
            return
        finally:
            self.switch.refuse_next_transfer = False
        case.seq += 1
        if not self.mc.record(case.case_id).state.is_terminal:
            # The transfer was requested by the first run of this command, which failed
            # before its outcome was written; a repeat returns that run: escalate again,
            # with a new id, as the engine's docs say to retry a transfer.
            self._then(t, case, retry, _MINUTE)
            return
        self.months[case.month].escalations[reason.value] += 1
        self._closed(t, case)

    def _case_escalate_emergency(self, t: int, case: _Case) -> None:
        self._escalate(t, case, EscalationReason.EMERGENCY_LANE_BLOCKED, "escalate_emergency")

    def _case_escalate_refused(self, t: int, case: _Case) -> None:
        self._escalate(t, case, EscalationReason.OWNER_UNCOOPERATIVE, "escalate_refused")

    def _case_escalate_dispute(self, t: int, case: _Case) -> None:
        self._escalate(t, case, EscalationReason.DISPUTE_UNRESOLVED, "escalate_dispute")

    def _closed(self, t: int, case: _Case) -> None:
        """The case reached a terminal state: count it, and check it (every
        ``check_every``-th case: the record is the fold of its history; no more outbound
        calls than the policy allows)."""
        self.open.pop(case.n, None)
        record = self.mc.record(case.case_id)
        if not record.state.is_terminal:
            raise self._fail(f"case {case.case_id} closed by the model but {record.state.value}")
        self.months[case.month].cases[record.state.value] += 1
        if record.attempts > self.policy.max_call_attempts:
            raise self._fail(f"case {case.case_id}: {record.attempts} outbound calls")
        if case.n % self.check_every == 0:
            self.checks += 1
            if fold(self.mc.history(case.case_id)) != record:
                raise self._fail(f"case {case.case_id}: the record is not the fold of its events")
            shown = repr(self.mc.requester_view(case.case_id))
            if record.owner_phone and record.owner_phone in shown:
                raise self._fail(f"case {case.case_id}: the requester's view shows the owner")
        messages = self.notifier.pending.pop(case.case_id, ())
        if record.owner_phone and any(record.owner_phone in m for m in messages):
            raise self._fail(
                f"case {case.case_id}: a message to the requester holds the owner's number"
            )

    # --- time, outages, months --------------------------------------------------------

    def _tick(self, t: int, _: Any) -> None:
        self.mc.run_due()
        if t < self.t_end or self.open:
            self._push(t + TICK_S, "tick")

    def _outage_start(self, t: int, span: tuple[int, int]) -> None:
        self.switch.out_of_service = True
        self._notice_delay(t, span, "fault")

    def _outage_end(self, t: int, span: tuple[int, int]) -> None:
        self.switch.out_of_service = self._in(self.outages, t)
        figures = self._month_of(span[0])
        if figures is not None:
            figures.outage_minutes += (span[1] - span[0]) // _MINUTE
        self._notice_delay(t, span, "recovery")

    def _notice_delay(self, t: int, span: tuple[int, int], which: str) -> None:
        """二(五) "发生技术故障 ... 30 分钟内告知 110 ... 恢复后 30 分钟内告知": the operator
        sends the notice after a delay, late with the scenario's probability."""
        rng = self.rng["outages"]
        due = (
            self.contract.outage_notice_minutes
            if which == "fault"
            else self.contract.recovery_notice_minutes
        )
        late = rng.random() < self.scenario.outages.late_notice
        minutes = due + 1 + int(rng.random() * 90) if late else 2 + int(rng.random() * (due - 2))
        self._push(t + minutes * _MINUTE, "notice", (span, which, minutes, due))

    def _notice(self, t: int, data: tuple[tuple[int, int], str, int, int]) -> None:
        span, which, _minutes, _due = data
        subject = "故障告知" if which == "fault" else "恢复告知"
        self.centre.notify(f"outage:{span[0]}:{which}", subject, f"114 挪车服务{subject}")
        # The incidents' one rule for the deadline and the finding (its delay included).
        occurred = self._at(span[0] if which == "fault" else span[1])
        kind = NoticeKind.FAULT if which == "fault" else NoticeKind.RECOVERY
        at = self._at(t)
        found = notice_finding(
            kind, "simulated outage", occurred, at, as_of=at, contract=self.contract
        )
        if found is not None:
            self.findings.append(found)

    def _registry(self, t: int, down: bool) -> None:
        self.registry.down = down

    def _settle(self, t: int, index: int) -> None:
        """三: the month reported and settled by the engine (tier mode VOLUME recorded),
        the graduated mode beside it, the recount checked, the service-gap penalty."""
        figures = self.months[index]
        month = figures.month
        settled = self.mc.settle_month(month, mode=TierMode.VOLUME)
        store = self.mc.store
        recount = store.count_opened(*month.bounds()) if isinstance(store, ReportStore) else None
        if not settled.billable_calls == recount == figures.connected:
            raise self._fail(
                f"{month}: the report counts {settled.billable_calls} calls, a recount of "
                f"the store {recount}, the run connected {figures.connected}"
            )
        figures.billable_calls = settled.billable_calls
        figures.unit_price = settled.unit_price
        figures.provisional_fee = settled.provisional_fee
        figures.ytd_after = settled.ytd_after
        figures.true_up = settled.true_up
        figures.report_due = settled.deadlines.report_due.isoformat()
        figures.payment_due = settled.deadlines.payment_due.isoformat()
        # The other tier mode beside it, the way settle_month prices a month: the month's
        # calls on top of the year so far; at the year's end, the whole year's true-up.
        figures.provisional_fee_graduated = (
            settle_year(
                [settled.billable_calls],
                carried_in=settled.ytd_before,
                mode=TierMode.GRADUATED,
                contract=self.contract,
                closed=False,
            )
            .months[0]
            .provisional_fee
        )
        year = settled.service_year
        if month.last_day() == year.end:
            simulated = {m.month: m.billable_calls for m in self.months[: index + 1]}
            counts = []
            cursor = ServiceMonth.of(year.start)
            while cursor <= month:
                counts.append(simulated.get(cursor, 0))
                cursor = cursor.next()
            carried = self.mc.term.carried_in if year.index == 0 else 0
            figures.true_up_graduated = settle_year(
                counts, carried_in=carried, mode=TierMode.GRADUATED, contract=self.contract
            ).true_up
        spans = [
            (self._at(a), self._at(b)) for a, b in self.outages if self._month_of(a) is figures
        ]
        if spans:
            figures.days_without_24h = service_gap_days(spans)
            figures.service_gap_penalty = service_gap_penalty(
                settled.provisional_fee, figures.days_without_24h, contract=self.contract
            )
            self.findings.append(
                Finding(
                    "五(二)",
                    str(month),
                    f"{figures.days_without_24h} day(s) without the 24-hour service "
                    f"({figures.outage_minutes} min of outages)",
                    figures.service_gap_penalty,
                )
            )

    def _injected(self) -> dict[str, int]:
        store = self.mc.store
        counts = Counter(self.switch.refused)
        counts["failed database writes"] = store.failed if isinstance(store, FaultyStore) else 0
        counts["owner-registry outages"] = len(self.registry_down)
        counts["clock jumps across a month end"] = len(self.jumps)
        counts["service outages"] = len(self.outages)
        return dict(sorted(counts.items()))

    def _liveness(self) -> None:
        for case in self.open.values():
            record = self.mc.record(case.case_id)
            raise self._fail(
                f"case {case.case_id} still {record.state.value} after the run "
                f"(liveness: every case closes within {LIVENESS_BOUND} of the last fault)"
            )

    def _seat_plan(self) -> tuple[HourPlan, ...]:
        handle = self.scenario.seats.handle_s
        out = []
        for how in range(168):
            seen = self.hour_seen[how]
            rate = self.hour_calls[how] / seen if seen else 0.0
            out.append(
                HourPlan(
                    how,
                    round(rate, 3),
                    seats_needed(rate, handle, ANSWER_WITHIN_S, SERVICE_TARGET),
                    round(self.hour_seats[how] / seen, 3) if seen else 0.0,
                )
            )
        return tuple(out)


def _seconds(t0: dt.datetime, when: dt.datetime) -> int:
    return int((when - t0).total_seconds())


def _months(scenario: Scenario) -> Iterator[ServiceMonth]:
    month = scenario.start
    for _ in range(scenario.months):
        yield month
        month = month.next()


def simulate(
    scenario: Scenario, seed: int, factory: EngineFactory, **options: Any
) -> SimulationResult:
    """Run ``scenario`` with ``seed`` on the engine ``factory`` builds (see
    :class:`Simulation`)."""
    return Simulation(scenario, seed, factory, **options).run()


__all__ = [
    "LIVENESS_BOUND",
    "Finding",
    "HourPlan",
    "MonthFigures",
    "SimulationFailed",
    "SimulationResult",
    "simulate",
]
