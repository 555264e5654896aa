"""A move-car case: its states, its events, and the record they fold into.

A case is an append-only list of events. An event records a fact in the past tense and
is the only thing stored; the case's state is the fold of its events through the state
machine (:mod:`movecar_core.machine`). Event classes are stored by name: extend the
vocabulary, never rename what is stored.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import ClassVar

import attrs


class CaseState(enum.StrEnum):
    """一(二): a case runs from the requester's call to the car being moved, or not."""

    RECEIVED = "received"
    OWNER_LOCATED = "owner_located"
    OWNER_CALLED = "owner_called"
    MOVED = "moved"
    DISPUTED = "disputed"
    #: the transfer to 110 is recorded and being placed, or failed and may be retried
    ESCALATING = "escalating"
    ESCALATED_TO_110 = "escalated_to_110"
    CANCELLED = "cancelled"  # the requester withdrew
    UNRESOLVED = "unresolved"  # owner not found, or unreachable after the allowed attempts

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {CaseState.MOVED, CaseState.ESCALATED_TO_110, CaseState.CANCELLED, CaseState.UNRESOLVED}
)


class CallOutcome(enum.StrEnum):
    """What became of one outbound call to the owner."""

    ANSWERED_AGREED = "answered_agreed"
    ANSWERED_REFUSED = "answered_refused"
    ANSWERED_DISPUTES = "answered_disputes"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"
    DECLINED = "declined"  # the owner's phone rejected the call (SIP 603)
    HUNG_UP_IN_GREETING = "hung_up_in_greeting"  # picked up, hung up during the greeting
    #: Nobody can tell what became of the call (a crash between dial and outcome, an
    #: outcome the switch never reported): a person looks at it; the engine never redials.
    OUTCOME_UNKNOWN = "outcome_unknown"

    @property
    def answered(self) -> bool:
        return self in _ANSWERED


class CallProgress(enum.StrEnum):
    """What the switch says about one outbound call (see :mod:`movecar_core.calls`).

    ``DIALLING`` is only ever an answer of ``Telephony.call_status`` (placed, nothing
    heard yet). ``RINGING`` and ``ANSWERED`` are on the way; ``ENDED`` closes an answered
    call (the seat still records what the owner said); the rest end a call that never
    reached the owner and become its :class:`CallOutcome`.
    """

    DIALLING = "dialling"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"
    BUSY = "busy"  # 486 Busy Here
    DECLINED = "declined"  # 603 Decline
    NO_ANSWER = "no_answer"  # not answered within the ring timeout
    FAILED = "failed"  # any other final failure; the event names the SIP status
    HUNG_UP_IN_GREETING = "hung_up_in_greeting"  # answered, hung up before the greeting ended
    UNKNOWN = "unknown"  # nobody can tell: for a person to look at, never redialled blindly


#: The outcomes where the owner picked up: those named ``answered_...`` (a set: every
#: outcome recorded and every batch planned asks).
_ANSWERED = frozenset(o for o in CallOutcome if o.value.startswith("answered_"))


class EscalationReason(enum.StrEnum):
    """二(五): what goes to the 110 command centre.

    "对于乙方服务过程中无法妥善解决的挪车纠纷、群众紧急求助及涉及违法行为的，如：占用应急
    通道、交通违法行为、客户不配合挪车以及客户对 114 挪车服务授权有质疑等问题，应及时转接
    至公安 110 指挥中心处理"
    """

    EMERGENCY_LANE_BLOCKED = "emergency_lane_blocked"  # 占用应急通道
    TRAFFIC_VIOLATION = "traffic_violation"  # 交通违法行为
    OWNER_UNCOOPERATIVE = "owner_uncooperative"  # 客户不配合挪车
    OWNER_DISPUTES_AUTHORITY = "owner_disputes_authority"  # 客户对 114 挪车服务授权有质疑
    DISPUTE_UNRESOLVED = "dispute_unresolved"  # 无法妥善解决的挪车纠纷
    EMERGENCY_HELP = "emergency_help"  # 群众紧急求助
    OTHER = "other"  # needs a note saying what


class UnresolvedReason(enum.StrEnum):
    OWNER_NOT_FOUND = "owner_not_found"
    OWNER_UNREACHABLE = "owner_unreachable"


# --- events --------------------------------------------------------------------------------
#
# Every event names its case, the time it happened and the id of the command that caused it
# (None when the caller gave none; the id is what makes a repeated command a no-op). The
# last field, ``command_fingerprint``, is a digest of that command's arguments, so the same
# id with other arguments is refused rather than answered with the first result. It is the
# last field and defaults to None, so events stored before it existed still read.


@attrs.frozen(slots=True)
class CaseOpened:
    trigger: ClassVar[str | None] = None
    case_id: str
    at: dt.datetime
    command_id: str | None
    plate: str
    location: str
    requester_phone: str
    agent_id: str
    command_fingerprint: str | None = None


#: 四 "未经甲方同意，不得将机动车信息用于除挪车服务以外任何用途": the purpose every owner
#: look-up records.
LOOKUP_PURPOSE = "move_car"


@attrs.frozen(slots=True)
class OwnerLookedUp:
    """One look-up in the vehicle-owner data source (四: only for this case's purpose)."""

    case_id: str
    at: dt.datetime
    command_id: str | None
    agent_id: str
    found: bool
    owner_phone: str | None
    source: str
    command_fingerprint: str | None = None
    #: Why the owner was looked up: 四 allows one purpose, moving this case's car. Added
    #: after the first release; a look-up stored before it reads as that purpose (the
    #: only one there ever was).
    purpose: str = LOOKUP_PURPOSE

    @property
    def trigger(self) -> str:
        return "owner_found" if self.found else "owner_not_found"


@attrs.frozen(slots=True)
class OwnerCallPlaced:
    """二(六): from the contract's caller ID, opening with the contract's greeting."""

    trigger: ClassVar[str] = "call_placed"
    case_id: str
    at: dt.datetime
    command_id: str | None
    call_id: str
    attempt: int
    agent_id: str
    caller_id: str
    greeting: str
    greeting_version: str
    command_fingerprint: str | None = None


_OUTCOME_TRIGGERS = {
    CallOutcome.ANSWERED_AGREED: "call_answered",
    CallOutcome.ANSWERED_REFUSED: "call_answered",
    CallOutcome.ANSWERED_DISPUTES: "call_disputed",
    CallOutcome.NO_ANSWER: "call_unanswered",
    CallOutcome.BUSY: "call_unanswered",
    CallOutcome.FAILED: "call_unanswered",
    CallOutcome.DECLINED: "call_unanswered",
    CallOutcome.HUNG_UP_IN_GREETING: "call_unanswered",
    CallOutcome.OUTCOME_UNKNOWN: "call_unanswered",
}


@attrs.frozen(slots=True)
class CallOutcomeRecorded:
    case_id: str
    at: dt.datetime
    command_id: str | None
    call_id: str
    outcome: CallOutcome
    command_fingerprint: str | None = None

    @property
    def trigger(self) -> str:
        return _OUTCOME_TRIGGERS[self.outcome]


@attrs.frozen(slots=True)
class CallProgressed:
    """The switch reported the call in flight ringing, answered, or (answered) ended.

    Kept in the history so that what the switch said is auditable beside what the seat
    recorded; a call that never reached the owner ends with :class:`CallOutcomeRecorded`.
    """

    trigger: ClassVar[str] = "call_progressed"
    case_id: str
    at: dt.datetime
    command_id: str | None
    call_id: str
    progress: CallProgress
    sip_status: int | None = None
    detail: str = ""
    command_fingerprint: str | None = None


@attrs.frozen(slots=True)
class MoveConfirmed:
    trigger: ClassVar[str] = "move_confirmed"
    case_id: str
    at: dt.datetime
    command_id: str | None
    note: str
    command_fingerprint: str | None = None


@attrs.frozen(slots=True)
class DisputeRaised:
    trigger: ClassVar[str] = "dispute_raised"
    case_id: str
    at: dt.datetime
    command_id: str | None
    note: str
    command_fingerprint: str | None = None


@attrs.frozen(slots=True)
class EscalationRequested:
    """二(五): the seat transfers the case to 110. Recorded *before* the switch is asked to
    transfer, so the history shows every transfer ever placed; the transfer's outcome
    follows as :class:`EscalatedTo110` or :class:`TransferTo110Failed`."""

    trigger: ClassVar[str] = "escalation_requested"
    case_id: str
    at: dt.datetime
    command_id: str | None
    reason: EscalationReason
    note: str | None
    transfer_number: str
    command_fingerprint: str | None = None


@attrs.frozen(slots=True)
class TransferTo110Failed:
    """The switch refused or failed the transfer of :class:`EscalationRequested`; the
    case stays ``escalating`` and the seat may escalate again."""

    trigger: ClassVar[str] = "transfer_failed"
    case_id: str
    at: dt.datetime
    command_id: str | None
    why: str
    command_fingerprint: str | None = None


@attrs.frozen(slots=True)
class EscalatedTo110:
    """The case is with 110: the transfer went through (after :class:`EscalationRequested`;
    histories stored before that event existed hold this event alone)."""

    trigger: ClassVar[str] = "escalated"
    case_id: str
    at: dt.datetime
    command_id: str | None
    reason: EscalationReason
    note: str | None
    transfer_number: str
    command_fingerprint: str | None = None


@attrs.frozen(slots=True)
class CaseCancelled:
    trigger: ClassVar[str] = "cancelled"
    case_id: str
    at: dt.datetime
    command_id: str | None
    note: str
    command_fingerprint: str | None = None


@attrs.frozen(slots=True)
class CaseUnresolved:
    """The owner could not be reached within the allowed attempts."""

    trigger: ClassVar[str] = "owner_unreachable"
    case_id: str
    at: dt.datetime
    command_id: str | None
    reason: UnresolvedReason
    command_fingerprint: str | None = None


Event = (
    CaseOpened
    | OwnerLookedUp
    | OwnerCallPlaced
    | CallOutcomeRecorded
    | MoveConfirmed
    | DisputeRaised
    | EscalatedTo110
    | CaseCancelled
    | CaseUnresolved
    | EscalationRequested
    | TransferTo110Failed
    | CallProgressed
)

#: Stored name -> class. Names are part of the storage format: never rename one.
EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        CaseOpened,
        OwnerLookedUp,
        OwnerCallPlaced,
        CallOutcomeRecorded,
        MoveConfirmed,
        DisputeRaised,
        EscalatedTo110,
        CaseCancelled,
        CaseUnresolved,
        EscalationRequested,
        TransferTo110Failed,
        CallProgressed,
    )
}


@attrs.define(slots=True)
class CaseRecord:
    """Everything the rules need to know about a case: the fold of its events.

    Mutable only while :func:`movecar_core.machine.fold` builds it; treat it as read-only.
    """

    case_id: str
    plate: str
    location: str
    requester_phone: str
    opened_at: dt.datetime
    state: CaseState = CaseState.RECEIVED
    version: int = 1
    owner_phone: str | None = None
    attempts: int = 0
    call_in_flight: str | None = None
    last_outcome: CallOutcome | None = None
    escalation_reason: EscalationReason | None = None
    unresolved_reason: UnresolvedReason | None = None
    closed_at: dt.datetime | None = None
    #: What the switch last reported of the call in flight (None: nothing yet, or no call).
    #: Added after the first release: keep it last, so kept records written before it load.
    call_progress: CallProgress | None = None
