"""A simulated phone switch: seeded outcomes and delays, faults on request.

For host tests and simulations that want calls to ring, be answered, be busy... without a
SIP trunk. Time is the given clock's (a :class:`~movecar_core.clock.ManualClock` in tests):
a call's reports come out of :meth:`SimulatedTelephony.drain_events` once the clock has
passed them. Each call's course is drawn from ``seed`` and its key alone, so it does not
depend on what other calls did or in which order the switch was asked.

Faults (probabilities per report or per transfer): a report lost on its way (the switch
still knows it: the engine's reconciliation finds it by key), delivered twice, or
swapped with the one before it; a transfer refused; the whole switch down.
"""

from __future__ import annotations

import heapq
import random
import threading
from typing import Any

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
from movecar_core.errors import InvalidCommand, TelephonyError
from movecar_core.ports import Clock, OutboundCallRequest

P = CallProgress


def _share(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidCommand(attribute.name, value, "must be a probability from 0 to 1")


def _seconds(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise InvalidCommand(attribute.name, value, "must be seconds, above 0, at most 3600")


@attrs.frozen
class SwitchBehaviour:
    """How owners' phones and the network behave. The six outcome weights need not sum
    to 1 (they are weights); at least one must be positive."""

    answer: float = attrs.field(default=0.70, validator=_share)
    busy: float = attrs.field(default=0.08, validator=_share)
    decline: float = attrs.field(default=0.05, validator=_share)
    no_answer: float = attrs.field(default=0.12, validator=_share)
    fail: float = attrs.field(default=0.03, validator=_share)
    hang_up_in_greeting: float = attrs.field(default=0.02, validator=_share)
    ring_s: float = attrs.field(default=2.0, validator=_seconds)
    mean_answer_s: float = attrs.field(default=8.0, validator=_seconds)
    ring_timeout_s: float = attrs.field(default=30.0, validator=_seconds)
    greeting_s: float = attrs.field(default=7.0, validator=_seconds)
    mean_talk_s: float = attrs.field(default=45.0, validator=_seconds)
    lose_report: float = attrs.field(default=0.0, validator=_share)
    repeat_report: float = attrs.field(default=0.0, validator=_share)
    reorder_reports: float = attrs.field(default=0.0, validator=_share)
    refuse_transfer: float = attrs.field(default=0.0, validator=_share)

    def __attrs_post_init__(self) -> None:
        if not any(self.weights()):
            raise InvalidCommand("answer", self.answer, "every outcome weight is 0")

    def weights(self) -> tuple[float, ...]:
        return (
            self.answer, self.busy, self.decline, self.no_answer, self.fail,
            self.hang_up_in_greeting,
        )  # fmt: skip


_COURSES = ("answer", "busy", "decline", "no_answer", "fail", "hang_up_in_greeting")
#: Report: (seconds after the dial, progress, SIP status, reason phrase)
Step = tuple[float, CallProgress, int | None, str]


def _course(rng: random.Random, b: SwitchBehaviour) -> list[Step]:
    """The reports of one call, drawn from its own random stream."""
    kind = rng.choices(_COURSES, b.weights())[0]
    ring = b.ring_s * (0.5 + rng.random())
    if kind == "fail":
        return [(ring / 2, P.FAILED, 503, "Service Unavailable")]
    if kind == "busy":
        return [(ring / 2, P.BUSY, 486, "Busy Here")]
    steps: list[Step] = [(ring, P.RINGING, 180, "Ringing")]
    if kind == "decline":
        return [*steps, (ring + rng.uniform(1, 5), P.DECLINED, 603, "Decline")]
    if kind == "no_answer":
        return [*steps, (ring + b.ring_timeout_s, P.NO_ANSWER, 487, "Request Terminated")]
    answered = ring + min(rng.expovariate(1 / b.mean_answer_s), b.ring_timeout_s * 0.99)
    steps.append((answered, P.ANSWERED, 200, "OK"))
    if kind == "hang_up_in_greeting":
        return [
            *steps,
            (answered + rng.random() * b.greeting_s, P.HUNG_UP_IN_GREETING, None, "BYE"),
        ]
    talk = b.greeting_s + rng.expovariate(1 / b.mean_talk_s)
    return [*steps, (answered + talk, P.ENDED, None, "BYE")]


class SimulatedTelephony:
    """A :class:`~movecar_core.ports.Telephony` whose owners behave by ``behaviour``,
    drawn from ``seed``; the same seed gives every call key the same course."""

    def __init__(
        self,
        clock: Clock,
        *,
        seed: int = 0,
        behaviour: SwitchBehaviour | None = None,
        limits: CallLimits | None = None,
    ) -> None:
        if type(seed) is not int:
            raise InvalidCommand("seed", seed, "must be an int")
        self.clock = clock
        self.seed = seed
        self.behaviour = behaviour or SwitchBehaviour()
        self.limits = limits
        #: True: every dial and transfer raises TelephonyError (the switch is down).
        self.down = False
        self._t0 = clock.now()
        self._faults = random.Random(f"{seed}:faults")
        self._due: list[tuple[float, int, str, Step]] = []  # (time, order, key, step)
        self._order = 0
        self._status: dict[str, CallEvent] = {}
        self._live = LiveCalls()
        self._out: list[CallEvent] = []
        self._lock = threading.Lock()
        self.placed: list[OutboundCallRequest] = []

    def _now_s(self) -> float:
        return (self.clock.now() - self._t0).total_seconds()

    def place_call(self, request: OutboundCallRequest) -> None:
        if self.down:
            raise TelephonyError(f"call {request.call_id}: the simulated switch is down")
        key = request.key
        with self._lock:
            self._release()
            if key in self._status:
                return
            if self.limits is not None:
                refusal = self.limits.refusal(request.agent_id, self._live.counts())
                if refusal is not None:
                    raise TelephonyError(f"call {request.call_id}: refused: {refusal}")
            now = self._now_s()
            self._status[key] = CallEvent(key, P.DIALLING, self.clock.now())
            self._live.start(key, request.agent_id)
            self.placed.append(request)
            for step in _course(random.Random(f"{self.seed}:{key}"), self.behaviour):
                self._schedule(now + step[0], key, step)

    def _schedule(self, at: float, key: str, step: Step) -> None:
        self._order += 1
        heapq.heappush(self._due, (at, self._order, key, step))

    def _release(self) -> None:
        """Turn every report due by the clock into the call's status and the outgoing
        queue (with the delivery faults)."""
        now = self._now_s()
        while self._due and self._due[0][0] <= now:
            _, _, key, (_, progress, status, why) = heapq.heappop(self._due)
            current = self._status.get(key)
            if current is None or rank(current.progress) >= FINAL_RANK:
                continue  # the call ended another way first (a transfer, a hang-up)
            event = CallEvent(key, progress, self.clock.now(), status, why)
            self._status[key] = event
            if rank(progress) >= FINAL_RANK:
                self._live.end(key)
            self._deliver(event)

    def _deliver(self, event: CallEvent) -> None:
        b = self.behaviour
        if self._faults.random() < b.lose_report:
            return
        if self._out and self._faults.random() < b.reorder_reports:
            self._out.insert(len(self._out) - 1, event)
        else:
            self._out.append(event)
        if self._faults.random() < b.repeat_report:
            self._out.append(event)

    def hang_up(self, key: str) -> None:
        """The owner hangs up the answered call ``key`` now (for tests and models)."""
        with self._lock:
            self._release()
            current = self._status.get(key)
            if current is not None and current.progress is P.ANSWERED:
                self._schedule(self._now_s(), key, (0.0, P.ENDED, None, "BYE"))
                self._release()

    def call_status(self, key: str) -> CallEvent | None:
        with self._lock:
            self._release()
            return self._status.get(key)

    def drain_events(self) -> list[CallEvent]:
        with self._lock:
            self._release()
            out, self._out = self._out, []
        return out

    def in_flight(self) -> CallsInFlight:
        with self._lock:
            self._release()
            return self._live.counts()

    def transfer_to_110(self, request: TransferRequest) -> TransferOutcome:
        if self.down:
            raise TelephonyError(f"case {request.case_id}: the simulated switch is down")
        with self._lock:
            self._release()
            if self._faults.random() < self.behaviour.refuse_transfer:
                return TransferOutcome.REFUSED
            if request.call_key is None:
                return TransferOutcome.ACCEPTED  # the seat's own line to the requester
            current = self._status.get(request.call_key)
            if current is None or current.progress is not P.ANSWERED:
                return TransferOutcome.FAILED
            # Transferred away: the call leaves this switch.
            self._schedule(self._now_s(), request.call_key, (0.0, P.ENDED, None, "REFER"))
            self._release()
            return TransferOutcome.ACCEPTED


class SimulatedFarEnd:
    """The far end of a :class:`SimulatedTelephony` for the port's contract suite: waits
    (on the manual clock) until the call is answered, and hangs up."""

    def __init__(self, switch: SimulatedTelephony, clock: Any) -> None:
        self.switch = switch
        self.clock = clock

    def answer(self, key: str) -> None:
        for _ in range(3600):
            status = self.switch.call_status(key)
            if status is None or (status.progress is not P.DIALLING and rank(status.progress) >= 2):
                return
            self.clock.advance(seconds=1)

    def hang_up(self, key: str) -> None:
        self.switch.hang_up(key)
