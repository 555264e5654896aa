"""A seat's commands on a case as values, and the one port that runs them.

The facade takes each command as a method call; hosts that queue, log, replay or
generate commands (a message bus in front of the engine, a property-based suite, the
HTTP face) want them as values. Each type here names one method of
:class:`CaseCommands`, the port of one actor's commands, which a
:class:`~movecar_core.desk.Desk` and a client of ``movecar serve`` satisfy, and
:func:`execute` runs a value on either. (The facade itself wants the seat of each
command as an argument; put a desk in front of it.) The values are checked where they
are run, by the engine's own parsers (one rule for each field), not here: a command that
holds a misspelt plate is still a command, the engine refuses it.

With the ``test`` extra installed, Hypothesis knows these types (and
:class:`~movecar_core.plates.Plate` and :class:`~movecar_core.phones.PhoneNumber`)
through its entry point, so ``st.from_type(OpenCase)`` works in any host suite; see
:mod:`movecar_core.testing.hypothesis_plugin`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeAlias, runtime_checkable

import attrs

from movecar_core.case import CallOutcome, EscalationReason
from movecar_core.errors import InvalidCommand

if TYPE_CHECKING:
    from movecar_core.app import OutboundCall
    from movecar_core.views import CaseView

__all__ = [
    "COMMAND_TYPES",
    "CallOwner",
    "Cancel",
    "CaseCommands",
    "Command",
    "ConfirmMoved",
    "Dispute",
    "Escalate",
    "LocateOwner",
    "OpenCase",
    "RecordCallOutcome",
    "execute",
]


@runtime_checkable
class CaseCommands(Protocol):
    """What runs one actor's commands on cases: a :class:`~movecar_core.desk.Desk`, or a
    host's client of ``movecar serve`` (the actor is its token's). A repeated
    ``command_id`` returns the first result and writes nothing."""

    def open_case(
        self, *, plate: str, location: str, requester_phone: str, command_id: str | None = None
    ) -> str: ...

    def locate_owner(self, case_id: str, *, command_id: str | None = None) -> CaseView: ...

    def call_owner(self, case_id: str, *, command_id: str | None = None) -> OutboundCall: ...

    def record_call_outcome(
        self,
        case_id: str,
        call_id: str,
        outcome: CallOutcome | str,
        *,
        command_id: str | None = None,
    ) -> CaseView: ...

    def confirm_moved(
        self, case_id: str, *, note: str | None = None, command_id: str | None = None
    ) -> CaseView: ...

    def dispute(self, case_id: str, *, note: str, command_id: str | None = None) -> CaseView: ...

    def cancel(self, case_id: str, *, note: str, command_id: str | None = None) -> CaseView: ...

    def escalate(
        self,
        case_id: str,
        reason: EscalationReason | str,
        note: str | None = None,
        *,
        command_id: str | None = None,
    ) -> CaseView: ...


@attrs.frozen
class OpenCase:
    """A requester reports a car blocking them (呼入): :meth:`CaseCommands.open_case`."""

    plate: str
    location: str
    requester_phone: str


@attrs.frozen
class LocateOwner:
    """Look the owner up in the vehicle registry (四: only inside an open case)."""

    case_id: str


@attrs.frozen
class CallOwner:
    """Call the owner from the police caller ID (外呼)."""

    case_id: str


@attrs.frozen
class RecordCallOutcome:
    """What became of the outbound call ``call_id`` (its call key)."""

    case_id: str
    call_id: str
    outcome: CallOutcome


@attrs.frozen
class ConfirmMoved:
    """The car was moved: the case is done."""

    case_id: str
    note: str | None = None


@attrs.frozen
class Dispute:
    """The owner disputes the request."""

    case_id: str
    note: str


@attrs.frozen
class Cancel:
    """The requester withdrew."""

    case_id: str
    note: str


@attrs.frozen
class Escalate:
    """Transfer the case to the 110 command centre (二(五)); ``other`` needs a note."""

    case_id: str
    reason: EscalationReason
    note: str | None = None


Command: TypeAlias = (
    OpenCase
    | LocateOwner
    | CallOwner
    | RecordCallOutcome
    | ConfirmMoved
    | Dispute
    | Cancel
    | Escalate
)

#: Every command type, in the order a case usually meets them.
COMMAND_TYPES: tuple[type[Command], ...] = (
    OpenCase,
    LocateOwner,
    CallOwner,
    RecordCallOutcome,
    ConfirmMoved,
    Dispute,
    Cancel,
    Escalate,
)


def execute(
    target: CaseCommands, command: Command, *, command_id: str | None = None
) -> str | CaseView | OutboundCall:
    """Run ``command`` on ``target``: what the matching method returns (the new case's
    id for :class:`OpenCase`, else the case as the seat sees it, or the call placed)."""
    match command:
        case OpenCase(plate, location, phone):
            return target.open_case(
                plate=plate, location=location, requester_phone=phone, command_id=command_id
            )
        case LocateOwner(case_id):
            return target.locate_owner(case_id, command_id=command_id)
        case CallOwner(case_id):
            return target.call_owner(case_id, command_id=command_id)
        case RecordCallOutcome(case_id, call_id, outcome):
            return target.record_call_outcome(case_id, call_id, outcome, command_id=command_id)
        case ConfirmMoved(case_id, note):
            return target.confirm_moved(case_id, note=note, command_id=command_id)
        case Dispute(case_id, note):
            return target.dispute(case_id, note=note, command_id=command_id)
        case Cancel(case_id, note):
            return target.cancel(case_id, note=note, command_id=command_id)
        case Escalate(case_id, reason, note):
            return target.escalate(case_id, reason, note, command_id=command_id)
    raise InvalidCommand("command", type(command).__name__, "not a movecar command")
