"""Effects: what a case's new events ask the outside world to do, now or later.

A transition can *schedule* something (a follow-up call after N minutes, a deadline for a
call's outcome) or *send* something (a call to place, a notice to 110). A store that keeps
an outbox derives these effects from the events it appends, with :func:`plan`, and writes
them in the same transaction as the events: either both are stored or neither is, so an
effect is never lost and never invented. Workers then claim due effects one at a time
(:class:`OutboxStore`) and mark each done, so each effect happens once.

Everything here is pure: the rules are a function of the appended events and an
:class:`EffectPolicy`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from movecar_core.case import (
    TERMINAL_STATES,
    CallOutcomeRecorded,
    CaseRecord,
    CaseState,
    CaseUnresolved,
    EscalatedTo110,
    Event,
    OwnerCallPlaced,
)
from movecar_core.errors import InvalidInput
from movecar_core.views import requester_status

#: Effect kinds. Names are stored: never rename one.
PLACE_CALL = "place_call"  # send: dial the owner (二(六) caller ID and greeting)
NOTIFY_110 = "notify_110"  # send: tell the 110 command centre about an escalation (二(五))
CALL_OUTCOME_DUE = "call_outcome_due"  # timer: the outcome of a placed call is overdue
FOLLOW_UP_CALL = "follow_up_call"  # timer: remind the seat to call the owner again
NOTIFY_REQUESTER = "notify_requester"  # send: tell the requester the case's new state
#: scheduled: mail the month's volume report to Party A (三 "每月 5 日前以电子邮件的形式");
#: of no case (its ``case_id`` is :data:`NO_CASE`), scheduled by the engine, not planned
#: from events (:mod:`movecar_core.volume`)
MONTHLY_REPORT = "monthly_report"

TIMERS = frozenset({CALL_OUTCOME_DUE, FOLLOW_UP_CALL})
SENDS = frozenset({PLACE_CALL, NOTIFY_110, NOTIFY_REQUESTER})
#: Effects the engine schedules itself (:class:`EffectScheduler`), not planned from events.
SCHEDULED = frozenset({MONTHLY_REPORT})
KINDS = TIMERS | SENDS | SCHEDULED
#: The ``case_id`` of an effect that belongs to no case (no case has it: case ids are
#: 1-64 characters), so a case's purge or its ``pending(case_id)`` never touches it.
NO_CASE = ""


@attrs.frozen
class EffectPolicy:
    """Which effects the transitions produce, and when timers fire."""

    #: Dial through the outbox instead of inline: goes with ``MoveCar(dispatch=
    #: Dispatch.OUTBOX)``, whose ``call_owner`` then records the call and a worker dials.
    dispatch_calls: bool = False
    #: Send an escalation notice to 110 through the outbox (二(五) "应及时转接至公安 110").
    notify_110: bool = True
    #: A placed call whose outcome has not been recorded after this long is overdue.
    call_outcome_timeout: dt.timedelta = dt.timedelta(minutes=3)
    #: After an unanswered call with attempts left, remind the seat to call again after
    #: this long (annex 2 十三(四): the seat dials, never the engine).
    follow_up_after: dt.timedelta | None = dt.timedelta(minutes=5)
    #: Tell the requester when their case changes state (never anything about the owner).
    notify_requester: bool = True

    def __attrs_post_init__(self) -> None:
        if self.call_outcome_timeout <= dt.timedelta(0):
            raise InvalidInput(
                f"call_outcome_timeout={self.call_outcome_timeout}: must be positive"
            )
        if self.follow_up_after is not None and self.follow_up_after < dt.timedelta(0):
            raise InvalidInput(f"follow_up_after={self.follow_up_after}: must not be negative")


@attrs.frozen
class Effect:
    """One thing to do, at or after ``due_at``.

    ``key`` is unique per effect (case, version of the event that caused it, kind): a
    store inserts an effect at most once and a worker passes the key on, so the receiving
    side can recognise a repeat after a crash.
    """

    key: str
    kind: str
    case_id: str
    due_at: dt.datetime
    payload: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Plan:
    """What appending a batch of events changes in the outbox."""

    schedule: tuple[Effect, ...] = ()
    #: timer kinds of this case still pending that the batch makes moot
    cancel: frozenset[str] = frozenset()


#: A batch that changes nothing in the outbox (most do): one shared value.
_NOTHING = Plan()
_DEFAULT_POLICY = EffectPolicy()
#: States where a timer would find nothing to do: closed, or escalating (which accepts no
#: call outcome and no new call).
_NO_TIMERS = TERMINAL_STATES | {CaseState.ESCALATING}


def effect_key(case_id: str, version: int, kind: str) -> str:
    return f"{case_id}:{version}:{kind}"


#: Who holds a send the engine delivers itself (``Dispatch.INLINE``).
INLINE_WORKER = "inline"


def inline_token(key: str) -> str:
    """The lease token of a send born claimed by the engine that wrote it (see
    :func:`born_claimed`): the engine completes it without a claim of its own."""
    return f"{INLINE_WORKER}:{key}"


def born_claimed(effect: Effect, policy: EffectPolicy) -> bool:
    """Whether the store writes ``effect`` already leased to the writing engine.

    With inline delivery (``not policy.dispatch_calls``) the engine sends what a command
    caused right after the command, so the store writes those sends leased to it, under
    :func:`inline_token`, until ``due_at + lease``: no worker takes them meanwhile, the
    engine marks them done with one write, and if the process dies first the lease runs
    out and a worker (or ``run_due``) delivers them.
    """
    return effect.kind in SENDS and not policy.dispatch_calls


def plan(
    events: Sequence[Event],
    first_version: int,
    policy: EffectPolicy | None = None,
    *,
    before: CaseState | None,
    after: CaseState,
) -> Plan:
    """The effects of appending ``events`` as versions ``first_version, ...`` of their case.

    ``before`` is the case's state before the batch (None for a new case), ``after`` its
    state after it: a closed case cancels every pending timer, and a change of state the
    requester hears about (:func:`~movecar_core.views.requester_status`) sends them a notice.
    """
    rules = policy or _DEFAULT_POLICY
    schedule: list[Effect] = []
    cancel: set[str] = set()
    for offset, event in enumerate(events):
        version = first_version + offset
        case_id = event.case_id
        if type(event) is OwnerCallPlaced:
            cancel.add(FOLLOW_UP_CALL)
            if rules.dispatch_calls:
                schedule.append(
                    Effect(
                        effect_key(case_id, version, PLACE_CALL),
                        PLACE_CALL,
                        case_id,
                        event.at,
                        {"call_id": event.call_id, "attempt": event.attempt},
                    )
                )
            schedule.append(
                Effect(
                    effect_key(case_id, version, CALL_OUTCOME_DUE),
                    CALL_OUTCOME_DUE,
                    case_id,
                    event.at + rules.call_outcome_timeout,
                    {"call_id": event.call_id},
                )
            )
        elif type(event) is CallOutcomeRecorded:
            cancel.add(CALL_OUTCOME_DUE)
            if schedule:
                schedule = [e for e in schedule if e.kind != CALL_OUTCOME_DUE]
            # No reminder after the last attempt: the batch then closes the case unresolved.
            if (
                not event.outcome.answered
                and rules.follow_up_after is not None
                and CaseUnresolved not in map(type, events[offset + 1 :])
            ):
                schedule.append(
                    Effect(
                        effect_key(case_id, version, FOLLOW_UP_CALL),
                        FOLLOW_UP_CALL,
                        case_id,
                        event.at + rules.follow_up_after,
                        {"after_call_id": event.call_id},
                    )
                )
        elif type(event) is EscalatedTo110 and rules.notify_110:
            schedule.append(
                Effect(
                    effect_key(case_id, version, NOTIFY_110),
                    NOTIFY_110,
                    case_id,
                    event.at,
                    {"reason": event.reason.value, "number": event.transfer_number},
                )
            )
    if after in _NO_TIMERS:
        cancel |= TIMERS
        if schedule:
            schedule = [e for e in schedule if e.kind not in TIMERS]
    if rules.notify_requester and after is not before and requester_status(after) is not None:
        last = events[-1]
        schedule.append(
            Effect(
                effect_key(last.case_id, first_version + len(events) - 1, NOTIFY_REQUESTER),
                NOTIFY_REQUESTER,
                last.case_id,
                last.at,
                {"state": after.value},
            )
        )
    if not schedule and not cancel:
        return _NOTHING
    return Plan(tuple(schedule), frozenset(cancel))


def may_be_pending(record: CaseRecord) -> frozenset[str]:
    """The timer kinds :func:`plan` can have left pending for a case folded to ``record``.

    A ``call_outcome_due`` is scheduled with a call and cancelled by its outcome in the
    same append, so only a case with a call in flight may have one; a ``follow_up_call``
    is scheduled by an unanswered outcome and cancelled by the next call. A store skips
    cancelling what cannot be there (an UPDATE that could change nothing).
    """
    if record.call_in_flight is not None:
        return TIMERS
    if record.last_outcome is not None and not record.last_outcome.answered:
        return _FOLLOW_UP_ONLY
    return _NONE


_FOLLOW_UP_ONLY = frozenset({FOLLOW_UP_CALL})
_NONE: frozenset[str] = frozenset()


@attrs.frozen
class Claimed:
    """An effect a worker holds, until ``lease_until``, under ``token``."""

    id: int
    token: str
    effect: Effect
    attempts: int
    lease_until: dt.datetime


@runtime_checkable
class OutboxStore(Protocol):
    """Durable effects: written with the events, claimed by one worker at a time.

    The store plans the effects of every append with its :attr:`effects` policy, in the
    same transaction as the events (either both are stored or neither is).
    """

    #: The policy the store plans effects with; the engine reads it, so both agree.
    #: With inline delivery, sends are written already leased to the engine
    #: (:func:`born_claimed`, :func:`inline_token`).
    effects: EffectPolicy

    def claim(
        self,
        worker: str,
        *,
        limit: int = 1,
        now: dt.datetime | None = None,
        keys: Collection[str] | None = None,
    ) -> list[Claimed]:
        """Up to ``limit`` due, unclaimed (or lease-expired) effects, now leased to ``worker``.

        ``keys`` limits the claim to those effects (the engine delivers what one command
        caused, at a cost that does not grow with the outbox).
        """
        ...

    def complete(self, claimed: Claimed) -> bool:
        """Mark a claimed effect done (found by its key and lease token); False when the
        lease was lost to another worker or the effect is done already."""
        ...

    def pending(self, case_id: str | None = None) -> Iterator[Effect]:
        """Effects not yet done (optionally of one case), due first."""
        ...


@runtime_checkable
class EffectScheduler(Protocol):
    """An outbox that also takes effects no case's events planned: the monthly report
    (:data:`MONTHLY_REPORT`), scheduled by the engine ahead of its due time.

    Both stores of the library implement it. Workers claim and complete these effects as
    any other (:class:`OutboxStore`).
    """

    def schedule(self, effect: Effect) -> bool:
        """Keep ``effect`` pending until it is claimed and completed; True when it was
        added, False when an effect with its key was scheduled before (pending, done or
        cancelled): each key is scheduled at most once, so scheduling again after a
        crash, or from two workers at once, adds nothing."""
        ...
