"""The case state machine: defined once, with ``transitions``, as data.

:data:`DEFINITION` is the single source of truth. From it we derive

* :data:`LOOKUP`, a ``(state, trigger) -> (destination, guards)`` dict for the hot path
  (building a ``transitions.Machine`` per case costs about 500 µs; a dict look-up well
  under 1 µs),
* :func:`build_machine`, a real ``transitions.Machine`` over the same data (used to check
  the lookup against the library and to draw the diagram), and
* :func:`mermaid`, the diagram for the docs (``movecar diagram``).

Guards are named in the definition and implemented once in :data:`GUARDS`; each one that
fails raises its own typed error, never a silent no-op.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from movecar_core.case import (
    TERMINAL_STATES,
    CallOutcomeRecorded,
    CallProgressed,
    CaseOpened,
    CaseRecord,
    CaseState,
    CaseUnresolved,
    EscalatedTo110,
    EscalationRequested,
    Event,
    OwnerCallPlaced,
    OwnerLookedUp,
    UnresolvedReason,
)
from movecar_core.errors import (
    CallAttemptsExhausted,
    CallInFlight,
    CaseClosed,
    CommandRejected,
    IllegalTransition,
    InvalidCommand,
    MoveCarError,
    NoCallInFlight,
    OwnerNotLocated,
)


@attrs.frozen
class CasePolicy:
    """Choices the contract leaves to the operator, with their defaults."""

    #: Outbound call attempts per case before it is unresolved. Annex 2 十三(四) forbids
    #: automated mass calling ("不采取自动语音群呼方式进行外呼"): calls are few and human-placed.
    max_call_attempts: int = 3

    def __attrs_post_init__(self) -> None:
        if self.max_call_attempts < 1:
            raise InvalidCommand(
                "max_call_attempts", self.max_call_attempts, "must allow at least one call"
            )


S = CaseState
_OPEN = [s.value for s in S if s not in TERMINAL_STATES]
#: Open states a cancel may leave: not ``escalating``, where a transfer to 110 may be
#: under way (a cancel then would hide a transfer the switch placed).
_CANCELLABLE = [s for s in _OPEN if s != S.ESCALATING]

#: The one definition, in the ``transitions`` format (states, triggers, conditions).
DEFINITION: dict[str, Any] = {
    "states": [s.value for s in S],
    "initial": S.RECEIVED.value,
    "transitions": [
        {"trigger": "owner_found", "source": S.RECEIVED, "dest": S.OWNER_LOCATED},
        {"trigger": "owner_not_found", "source": S.RECEIVED, "dest": S.UNRESOLVED},
        {
            "trigger": "call_placed",
            "source": [S.OWNER_LOCATED, S.OWNER_CALLED],
            "dest": S.OWNER_CALLED,
            "conditions": ["no_call_in_flight", "attempts_remain"],
        },
        {
            "trigger": "call_answered",
            "source": S.OWNER_CALLED,
            "dest": S.OWNER_CALLED,
            "conditions": ["call_in_flight"],
        },
        {
            "trigger": "call_progressed",
            "source": S.OWNER_CALLED,
            "dest": S.OWNER_CALLED,
            "conditions": ["call_in_flight"],
        },
        {
            "trigger": "call_unanswered",
            "source": S.OWNER_CALLED,
            "dest": S.OWNER_CALLED,
            "conditions": ["call_in_flight"],
        },
        {
            "trigger": "call_disputed",
            "source": S.OWNER_CALLED,
            "dest": S.DISPUTED,
            "conditions": ["call_in_flight"],
        },
        {
            "trigger": "owner_unreachable",
            "source": S.OWNER_CALLED,
            "dest": S.UNRESOLVED,
            "conditions": ["no_call_in_flight", "attempts_used_up"],
        },
        {
            "trigger": "move_confirmed",
            "source": [S.OWNER_CALLED, S.DISPUTED],
            "dest": S.MOVED,
            "conditions": ["no_call_in_flight"],
        },
        {
            "trigger": "dispute_raised",
            "source": S.OWNER_CALLED,
            "dest": S.DISPUTED,
            "conditions": ["no_call_in_flight"],
        },
        # 二(五): the transfer is recorded first (from any open state, and again from
        # escalating to retry a failed one), then its outcome.
        {"trigger": "escalation_requested", "source": _OPEN, "dest": S.ESCALATING},
        {"trigger": "transfer_failed", "source": S.ESCALATING, "dest": S.ESCALATING},
        # From escalating when the transfer went through; from the other open states for
        # histories recorded before escalation_requested existed.
        {"trigger": "escalated", "source": _OPEN, "dest": S.ESCALATED_TO_110},
        {"trigger": "cancelled", "source": _CANCELLABLE, "dest": S.CANCELLED},
    ],
}

Guard = Callable[[CaseRecord, CasePolicy], bool]
RejectionFactory = Callable[[CaseRecord, str], CommandRejected]


def _rejection(cls: type[CommandRejected], why: str) -> RejectionFactory:
    return lambda case, trigger: cls(case.case_id, case.state.value, trigger, why)


#: name -> (predicate, the error raised when it is false)
GUARDS: dict[str, tuple[Guard, RejectionFactory]] = {
    "no_call_in_flight": (
        lambda case, _: case.call_in_flight is None,
        _rejection(CallInFlight, "an outbound call is in flight; record its outcome first"),
    ),
    "call_in_flight": (
        lambda case, _: case.call_in_flight is not None,
        _rejection(NoCallInFlight, "no outbound call is waiting for an outcome"),
    ),
    "attempts_remain": (
        lambda case, policy: case.attempts < policy.max_call_attempts,
        _rejection(CallAttemptsExhausted, "every allowed outbound call attempt was used"),
    ),
    "attempts_used_up": (
        lambda case, policy: case.attempts >= policy.max_call_attempts,
        _rejection(IllegalTransition, "outbound call attempts remain"),
    ),
}


def _expand(source: str | list[str]) -> list[CaseState]:
    items = source if isinstance(source, list) else [source]
    return [CaseState(s) for s in items]


def _derive_lookup(
    definition: Mapping[str, Any],
) -> dict[tuple[CaseState, str], tuple[CaseState, tuple[str, ...]]]:
    lookup: dict[tuple[CaseState, str], tuple[CaseState, tuple[str, ...]]] = {}
    for t in definition["transitions"]:
        conditions = tuple(t.get("conditions", ()))
        unknown = [c for c in conditions if c not in GUARDS]
        if unknown:
            raise MoveCarError(f"transition {t['trigger']!r} names unknown guards {unknown}")
        for source in _expand(t["source"]):
            key = (source, t["trigger"])
            if key in lookup:
                # transitions would try both in order; we allow one per (state, trigger)
                raise MoveCarError(f"two transitions for {key}: the definition is ambiguous")
            lookup[key] = (CaseState(t["dest"]), conditions)
    return lookup


#: The hot path's view of :data:`DEFINITION`.
LOOKUP = _derive_lookup(DEFINITION)
TRIGGERS: frozenset[str] = frozenset(t["trigger"] for t in DEFINITION["transitions"])


def check(case: CaseRecord, trigger: str, policy: CasePolicy) -> CaseState:
    """The state ``trigger`` would lead to, or the typed error saying why not."""
    found = LOOKUP.get((case.state, trigger))
    if found is None:
        raise _no_transition(case, trigger)
    dest, conditions = found
    for name in conditions:
        predicate, rejection = GUARDS[name]
        if not predicate(case, policy):
            raise rejection(case, trigger)
    return dest


def _no_transition(case: CaseRecord, trigger: str) -> CommandRejected:
    if case.state in TERMINAL_STATES:
        return CaseClosed(
            case.case_id, case.state.value, trigger, "the case is closed; it accepts no command"
        )
    if trigger == "call_placed":
        return OwnerNotLocated(
            case.case_id, case.state.value, trigger, "the owner must be located first"
        )
    return IllegalTransition(
        case.case_id, case.state.value, trigger, f"no transition for {trigger!r} from here"
    )


# --- fold --------------------------------------------------------------------------------


class CorruptHistory(MoveCarError):
    """Stored events that no valid sequence of commands could have produced."""


def open_record(event: CaseOpened) -> CaseRecord:
    return CaseRecord(
        case_id=event.case_id,
        plate=event.plate,
        location=event.location,
        requester_phone=event.requester_phone,
        opened_at=event.at,
    )


def _call_placed(case: CaseRecord, event: Any) -> None:
    case.attempts = event.attempt
    case.call_in_flight = event.call_id
    case.call_progress = None


def _call_progressed(case: CaseRecord, event: Any) -> None:
    case.call_progress = event.progress


def _outcome_recorded(case: CaseRecord, event: Any) -> None:
    case.call_in_flight = None
    case.call_progress = None
    case.last_outcome = event.outcome


def _owner_looked_up(case: CaseRecord, event: Any) -> None:
    case.owner_phone = event.owner_phone
    if not event.found:
        case.unresolved_reason = UnresolvedReason.OWNER_NOT_FOUND


def _escalated(case: CaseRecord, event: Any) -> None:
    case.escalation_reason = event.reason


def _unresolved(case: CaseRecord, event: Any) -> None:
    case.unresolved_reason = event.reason


#: What an event changes in the record besides the state (events not listed change
#: only the state).
_UPDATES: dict[type[Any], Callable[[CaseRecord, Any], None]] = {
    OwnerCallPlaced: _call_placed,
    CallOutcomeRecorded: _outcome_recorded,
    CallProgressed: _call_progressed,
    OwnerLookedUp: _owner_looked_up,
    EscalatedTo110: _escalated,
    EscalationRequested: _escalated,
    CaseUnresolved: _unresolved,
}


def _advance(case: CaseRecord, events: Iterable[Event]) -> None:
    """Advance ``case`` through stored events, in place (the fold is the hot path)."""
    get = LOOKUP.get
    update_for = _UPDATES.get
    state = case.state
    version = case.version
    last = None
    for event in events:
        found = get((state, event.trigger))  # type: ignore[arg-type]
        if found is None:
            raise _corrupt(case, state, version, event)
        update = update_for(type(event))
        if update is not None:
            update(case, event)
        state = found[0]
        version += 1
        last = event
    case.state = state
    case.version = version
    if last is not None and state in TERMINAL_STATES:
        # Terminal states have no way out, so the last event is the one that closed it.
        case.closed_at = last.at


def _corrupt(case: CaseRecord, state: CaseState, version: int, event: Event) -> CorruptHistory:
    if event.trigger is None:
        return CorruptHistory(f"case {case.case_id}: a second CaseOpened after version {version}")
    return CorruptHistory(
        f"case {case.case_id}: event {type(event).__name__} ({event.trigger}) "
        f"cannot follow state {state.value!r} at version {version}"
    )


def apply(case: CaseRecord, event: Event) -> None:
    """Advance ``case`` by one stored event, in place."""
    _advance(case, (event,))


#: Every field of a record, in ``__init__`` order: a copy without ``attrs.evolve``'s
#: per-call introspection (four times its speed; the command path copies a record each time).
_RECORD_FIELDS = operator.attrgetter(*(a.name for a in attrs.fields(CaseRecord)))


def advanced(case: CaseRecord, events: Iterable[Event]) -> CaseRecord:
    """A new record: ``case`` advanced by ``events``, which follow it in its history.

    ``case`` itself is left as it was (a store keeps it, or it is needed again after a
    refusal); ``advanced(case, ())`` is a copy.
    """
    record = CaseRecord(*_RECORD_FIELDS(case))
    _advance(record, events)
    return record


def fold(events: Iterable[Event]) -> CaseRecord:
    """The case's record: its first event opens it, every later one advances it."""
    it = iter(events)
    first = next(it, None)
    if not isinstance(first, CaseOpened):
        raise CorruptHistory(f"a case history must start with CaseOpened, not {first!r}")
    case = open_record(first)
    _advance(case, it)
    return case


# --- the real transitions.Machine, from the same data ------------------------------------


class _GuardModel:
    """A ``transitions`` model whose conditions are the guards of :data:`GUARDS`."""

    def __init__(self, case: CaseRecord, policy: CasePolicy) -> None:
        self.case = case
        self.policy = policy

    def __getattr__(self, name: str) -> Any:
        if name in GUARDS:
            predicate = GUARDS[name][0]
            return lambda *_, **__: predicate(self.case, self.policy)
        raise AttributeError(name)


def build_machine(case: CaseRecord, policy: CasePolicy | None = None) -> Any:
    """A ``transitions.Machine`` for one case, built from :data:`DEFINITION`.

    Too slow for the hot path (hundreds of µs per case); used to cross-check
    :data:`LOOKUP` and as the benchmark's baseline.
    """
    from transitions import Machine

    model = _GuardModel(case, policy or CasePolicy())
    Machine(
        model=model,
        states=DEFINITION["states"],
        transitions=_plain(DEFINITION["transitions"]),
        initial=case.state.value,
        auto_transitions=False,
        ignore_invalid_triggers=False,
    )
    return model


def _plain(transitions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The definition with enum members as plain strings, as ``transitions`` expects."""

    def plain(value: Any) -> Any:
        if isinstance(value, list):
            return [str(v) for v in value]
        return str(value)

    return [
        {k: (plain(v) if k in ("source", "dest") else v) for k, v in t.items()} for t in transitions
    ]


def mermaid() -> str:
    """The case machine as a mermaid ``stateDiagram-v2``, drawn by ``transitions``."""
    from transitions.extensions import GraphMachine

    class _Diagram:
        pass

    model = _Diagram()
    GraphMachine(
        model=model,
        states=DEFINITION["states"],
        transitions=_plain(DEFINITION["transitions"]),
        initial=DEFINITION["initial"],
        auto_transitions=False,
        graph_engine="mermaid",
        show_conditions=True,
        title="movecar case",
    )
    text: str = model.get_graph().draw(None)  # type: ignore[attr-defined]
    return text
