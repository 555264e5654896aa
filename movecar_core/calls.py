"""Outbound calls as the switch reports them: idempotency keys, typed progress, limits.

二(六) "114 在呼叫被挪车主电话时，统一使用“0519110”为主叫号码": every call to an owner is
placed by a seat, through the ``Telephony`` port, and the switch reports back what became of
it as :class:`CallEvent` values. Annex 2 十三(四) "不采取自动语音群呼方式进行外呼" forbids
mass automated calling: :class:`CallLimits` caps the calls in flight per seat and in total.

Pure: no I/O. The engine (:mod:`movecar_core.app`) applies the events; adapters produce them.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping

import attrs

from movecar_core.case import CallOutcome, CallProgress
from movecar_core.errors import InvalidCommand, MoveCarError
from movecar_core.text import text_problem

__all__ = [
    "CALL_KEY_MARK",
    "FINAL_RANK",
    "MAX_DETAIL",
    "STORED_PROGRESS",
    "CallEvent",
    "CallEventRefused",
    "CallLimitReached",
    "CallLimits",
    "CallOutcome",
    "CallProgress",
    "CallsInFlight",
    "LiveCalls",
    "TransferOutcome",
    "TransferRequest",
    "call_key",
    "outcome_of",
    "parse_call_key",
    "rank",
]

#: The separator between a case id and its attempt number in a call key. Case ids may
#: hold colons (hosts choose them), so the key is read from the right.
CALL_KEY_MARK = ":call:"
#: The longest detail a switch may attach to an event (a SIP reason phrase, say).
MAX_DETAIL = 200


def call_key(case_id: str, attempt: int) -> str:
    """The idempotency key of a case's ``attempt``-th outbound call.

    Derived, not random, so that a worker which crashed after dialling and runs the dial
    again asks the switch about the *same* call: the switch places a key at most once.
    """
    if type(attempt) is not int or attempt < 1:
        raise InvalidCommand("attempt", attempt, "must be a positive int")
    if not case_id:
        raise InvalidCommand("case_id", case_id, "must not be empty")
    return f"{case_id}{CALL_KEY_MARK}{attempt}"


def parse_call_key(key: object) -> tuple[str, int]:
    """``(case_id, attempt)`` of a key made by :func:`call_key`; :class:`InvalidCommand`
    for anything else (a gateway's callback may carry any string)."""
    if not isinstance(key, str) or len(key) > 400:
        raise InvalidCommand("key", "<call key>", "not a call key")
    case_id, mark, attempt = key.rpartition(CALL_KEY_MARK)
    if not mark or not case_id or not attempt.isdigit() or not attempt.isascii():
        raise InvalidCommand("key", "<call key>", "not a call key")
    number = int(attempt)
    if number < 1 or str(number) != attempt:
        raise InvalidCommand("key", "<call key>", "not a call key")
    return case_id, number


def rank(progress: CallProgress) -> int:
    """Events of one call apply in rank order; an event at or below the rank already
    applied is a repeat (the same progress) or late (another)."""
    return _RANK[progress]


def outcome_of(progress: CallProgress) -> CallOutcome | None:
    """The call's outcome when ``progress`` ends a call the owner never talked on."""
    return _OUTCOMES.get(progress)


#: The rank of every report that ends a call (ended, busy, ...): the call is no longer live.
FINAL_RANK = 3

_RANK = {
    CallProgress.DIALLING: 0,
    CallProgress.RINGING: 1,
    CallProgress.ANSWERED: 2,
    CallProgress.ENDED: 3,
    CallProgress.BUSY: 3,
    CallProgress.DECLINED: 3,
    CallProgress.NO_ANSWER: 3,
    CallProgress.FAILED: 3,
    CallProgress.HUNG_UP_IN_GREETING: 3,
    CallProgress.UNKNOWN: 3,
}

_OUTCOMES = {
    CallProgress.BUSY: CallOutcome.BUSY,
    CallProgress.DECLINED: CallOutcome.DECLINED,
    CallProgress.NO_ANSWER: CallOutcome.NO_ANSWER,
    CallProgress.FAILED: CallOutcome.FAILED,
    CallProgress.HUNG_UP_IN_GREETING: CallOutcome.HUNG_UP_IN_GREETING,
    CallProgress.UNKNOWN: CallOutcome.OUTCOME_UNKNOWN,
}

#: Progress that the engine stores as a ``CallProgressed`` event (the call goes on).
STORED_PROGRESS = frozenset({CallProgress.RINGING, CallProgress.ANSWERED, CallProgress.ENDED})


def _detail(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if type(value) is not str or len(value) > MAX_DETAIL:
        raise InvalidCommand(attribute.name, "<text>", f"must be a str of at most {MAX_DETAIL}")
    problem = text_problem(value)
    if problem is not None:
        raise InvalidCommand(attribute.name, "<text>", problem)


def _sip_status(_: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and (type(value) is not int or not 100 <= value <= 699):
        raise InvalidCommand(attribute.name, value, "a SIP status is an int from 100 to 699")


def _aware(_: object, attribute: attrs.Attribute[dt.datetime], value: dt.datetime) -> None:
    if not isinstance(value, dt.datetime) or value.utcoffset() is None:
        raise InvalidCommand(attribute.name, "<time>", "must be a timezone-aware datetime")


def _progress(value: object) -> CallProgress:
    try:
        return CallProgress(value)  # type: ignore[arg-type]  # checked right here
    except ValueError:
        raise InvalidCommand("progress", value, "not a CallProgress") from None


@attrs.frozen
class CallEvent:
    """One report of the switch about the call with idempotency key ``key``.

    ``detail`` is the switch's reason text (a SIP reason phrase); it never holds a phone
    number (the engine stores it in the case's history, which requesters may see).
    """

    key: str = attrs.field(validator=lambda _, __, v: parse_call_key(v) and None)
    progress: CallProgress = attrs.field(converter=_progress)
    at: dt.datetime = attrs.field(validator=_aware)
    sip_status: int | None = attrs.field(default=None, validator=_sip_status)
    detail: str = attrs.field(default="", validator=_detail)


class TransferOutcome(enum.StrEnum):
    """What became of a transfer to 110 (二(五)): REFER accepted (202 and a NOTIFY 200),
    refused by the far end, or failed on the way (no live call, the switch is down)."""

    ACCEPTED = "accepted"
    REFUSED = "refused"
    FAILED = "failed"


@attrs.frozen
class TransferRequest:
    """Transfer the live call of a case to the 110 command centre's line (二(五):
    "转接至公安 110 指挥中心处理", 0519-81997327). ``call_key`` names the live call, or
    is None when the case has none (the switch then reports ``FAILED``, unless it can
    bridge some other way)."""

    case_id: str
    number: str
    reason: str
    call_key: str | None


@attrs.frozen
class CallsInFlight:
    """Calls placed and not yet ended, as the switch counts them."""

    total: int
    per_seat: Mapping[str, int] = attrs.field(factory=dict)

    def of(self, agent_id: str) -> int:
        return self.per_seat.get(agent_id, 0)


class LiveCalls:
    """The calls a switch placed and that have not ended, by key, with their seats: the
    one count behind :meth:`Telephony.in_flight` and the caps, kept as calls start and
    end (no scan). Not locked: the switch that owns it holds its own lock."""

    def __init__(self) -> None:
        self._seat: dict[str, str] = {}  # key -> agent
        self._per_seat: dict[str, int] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._seat

    def __len__(self) -> int:
        return len(self._seat)

    def start(self, key: str, agent_id: str) -> None:
        if key not in self._seat:
            self._seat[key] = agent_id
            self._per_seat[agent_id] = self._per_seat.get(agent_id, 0) + 1

    def end(self, key: str) -> None:
        """The call ``key`` is over (a no-op for a call not live)."""
        seat = self._seat.pop(key, None)
        if seat is not None:
            left = self._per_seat[seat] - 1
            if left:
                self._per_seat[seat] = left
            else:
                del self._per_seat[seat]

    def clear(self) -> None:
        self._seat.clear()
        self._per_seat.clear()

    def counts(self) -> CallsInFlight:
        return CallsInFlight(len(self._seat), dict(self._per_seat))


def _at_least_one(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < 1:
        raise InvalidCommand(attribute.name, value, "must be an int of at least 1")


@attrs.frozen
class CallLimits:
    """Annex 2 十三(四) "不采取自动语音群呼方式进行外呼": a seat talks to one owner at a
    time, and the centre never has more calls out than it has people to talk on them.

    The engine refuses a call beyond either cap with :class:`CallLimitReached`, before
    anything is recorded. ``total`` defaults to a large centre's seats on one shift.
    """

    per_seat: int = attrs.field(default=1, validator=_at_least_one)
    total: int = attrs.field(default=100, validator=_at_least_one)

    def refusal(self, agent_id: str, now: CallsInFlight) -> str | None:
        """Why a new call by ``agent_id`` is refused, or None when it may be placed."""
        if now.of(agent_id) >= self.per_seat:
            return f"the seat has {now.of(agent_id)} call(s) in flight (at most {self.per_seat})"
        if now.total >= self.total:
            return f"{now.total} calls are in flight (at most {self.total} in total)"
        return None


class CallLimitReached(MoveCarError):
    """A call was refused because a cap of :class:`CallLimits` is reached; nothing was
    recorded: the seat tries again when a call has ended."""


class CallEventRefused(MoveCarError):
    """A switch event that cannot be applied: late (the call moved past it), for a call
    that is not the case's call in flight, or out of place (``ENDED`` before
    ``ANSWERED``). Nothing was recorded; a gateway acknowledges it and does not resend."""

    def __init__(self, key: str, progress: CallProgress, why: str) -> None:
        self.key = key
        self.progress = progress
        self.why = why
        super().__init__(f"call event {progress.value} for {key}: {why}")
