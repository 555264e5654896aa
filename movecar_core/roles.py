"""Who may do what: the roles of the service and the one permission table.

The contract names the parties, not the software's users, but it fixes what each may
have: 二(四) "提供 ... 录音提取" gives Party A (甲方, the 110 command centre) the right to
have recordings extracted; 七(三) asks Party B to protect the data "防止未经授权的访问".
So every action the library guards is a row of :data:`PERMISSIONS`, and a refusal is a
typed error (:class:`PermissionDenied`) that names the actor, the role and the action,
never what was asked for.

The table is built to be extended, not replaced: a new action is a new :class:`Action`
member and a new row of ``_TABLE``; a test checks that every action has its row. For now
it holds the recording actions of issue 12:

* ``recording.extract`` (录音提取): the command centre (二(四), Party A's right) and a
  supervisor of the call centre. Not an agent (a seat has no business with past calls'
  audio) and not an auditor (who verifies hashes, never listens).
* ``recording.metadata``: every role. Metadata (case, call, SHA-256, size, duration,
  dates) holds no personal data; the auditor needs it to check the evidence.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Mapping
from typing import Any

import attrs

from movecar_core.errors import InvalidInput, MoveCarError, excerpt
from movecar_core.text import text_problem

#: Longest actor id: the access log's column (七(三) who read or changed what).
MAX_ACTOR_ID = 100


class Role(enum.StrEnum):
    """What a person (or process) acting on the service is."""

    #: A 114 seat (乙方's agent): opens cases, calls owners.
    AGENT = "agent"
    #: A supervisor of the call centre (乙方).
    SUPERVISOR = "supervisor"
    #: Party A, the police 110 command centre (甲方).
    COMMAND_CENTRE = "command_centre"
    #: Someone who verifies the evidence (hashes, the ledger), never its content.
    AUDITOR = "auditor"


class Action(enum.StrEnum):
    """An action the permission table guards (``<area>.<verb>``)."""

    #: 二(四) 录音提取: hand out a call's audio.
    EXTRACT_RECORDING = "recording.extract"
    #: A recording's metadata: case, call, SHA-256, size, duration, dates.
    READ_RECORDING_METADATA = "recording.metadata"
    #: 呼入: a requester's report becomes a case.
    OPEN_CASE = "case.open"
    #: 二(二), 四: the owner looked up in the traffic police's data, inside an open case.
    LOCATE_OWNER = "case.locate_owner"
    #: 二(六) 外呼: a call to the owner from 0519110.
    CALL_OWNER = "case.call_owner"
    RECORD_CALL_OUTCOME = "case.record_call_outcome"
    CONFIRM_MOVED = "case.confirm_moved"
    DISPUTE = "case.dispute"
    CANCEL = "case.cancel"
    #: 二(五) 转接 110.
    ESCALATE = "case.escalate"
    #: A case's state, numbers masked.
    READ_CASE = "case.read"
    #: The case record (案件记录): every event, numbers masked.
    READ_HISTORY = "case.history"
    #: The owner's full number: the seat handling the open case only (四, 七).
    READ_OWNER_CONTACT = "case.owner_contact"
    #: 三 the monthly volume report (话务量报表) and statistics.
    READ_REPORT = "report.read"
    #: 三 report and settle a month (the operator's act).
    SETTLE_MONTH = "month.settle"
    #: Put a requester's number on the block list, or take it off (movecar_core.requesters).
    BLOCK_REQUESTER = "requester.block"
    #: The block list, its history and a number's requests of a day (numbers masked).
    READ_BLOCK_LIST = "requester.list"
    #: 二(五), annex 2 十六: an outage's start or end, a security incident, a notice given.
    RECORD_INCIDENT = "incident.record"
    #: The incident log: outages, findings, a month's days without the 24-hour service.
    READ_INCIDENTS = "incident.read"
    #: 五(三), 七(三): recompute the evidence (hash chains, report digests, the ledger and
    #: its checkpoints) and name what was changed: ``movecar audit verify`` (CLI only).
    VERIFY_EVIDENCE = "evidence.verify"


class InvalidActor(InvalidInput):
    """An actor id that is empty, too long or not one line, or a role that is not one."""


class PermissionDenied(MoveCarError):
    """An actor whose role the permission table does not allow the action.

    The message names the actor id, the role and the action; nothing about the record
    that was asked for (七(三): a refusal must not leak what it protects).
    """

    def __init__(self, actor: Actor, action: Action, why: str | None = None) -> None:
        self.actor_id = actor.actor_id
        self.role = actor.role
        self.action = action
        allowed = ", ".join(sorted(PERMISSIONS.get(action, ()))) or "no role"
        because = f": {why}" if why else f": allowed to {allowed}"
        super().__init__(
            f"actor {excerpt(actor.actor_id, 80)} (role {actor.role}) may not {action}{because}"
        )


def _role(value: Any) -> Role:
    if isinstance(value, Role):
        return value
    if isinstance(value, str):
        try:
            return Role(value)
        except ValueError:
            pass
    roles = ", ".join(r.value for r in Role)
    raise InvalidActor(f"role={excerpt(value)}: not a role (one of {roles})")


def _actor_id(_: object, __: object, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidActor(f"actor_id={excerpt(value)}: must be a non-empty string")
    if value != value.strip():
        raise InvalidActor(f"actor_id={excerpt(value)}: surrounding spaces")
    if len(value) > MAX_ACTOR_ID:
        raise InvalidActor(f"actor_id={excerpt(value)}: longer than {MAX_ACTOR_ID} characters")
    problem = text_problem(value)
    if problem is not None:
        raise InvalidActor(f"actor_id={excerpt(value)}: {problem}")


@attrs.frozen
class Actor:
    """Who acts: an id as the access log records it, and a role.

    ``Actor("110-desk-7", "command_centre")``: the role may be given as its text.
    """

    actor_id: str = attrs.field(validator=_actor_id)
    role: Role = attrs.field(converter=_role)


_SEATS = frozenset({Role.AGENT, Role.SUPERVISOR})

#: The permission table: each action and the roles allowed it. Issue 13 adds its rows
#: here (one table for the whole library, so a review reads every grant in one place).
_TABLE: dict[Action, frozenset[Role]] = {
    # 二(四) "录音提取": Party A's right; a supervisor extracts on Party A's behalf.
    Action.EXTRACT_RECORDING: frozenset({Role.COMMAND_CENTRE, Role.SUPERVISOR}),
    # Metadata holds no personal data; the auditor checks hashes against it.
    Action.READ_RECORDING_METADATA: frozenset(Role),
    # A case is the seats' work (乙方); a supervisor may act for a seat. Party A and the
    # auditor never change a case: 110 receives escalations, it does not handle 114's.
    Action.OPEN_CASE: _SEATS,
    # 四: vehicle data only for moving the car, by the seat doing it; not even a supervisor.
    Action.LOCATE_OWNER: frozenset({Role.AGENT}),
    # Annex 2 十三(四): every call is placed by a person at a seat.
    Action.CALL_OWNER: frozenset({Role.AGENT}),
    Action.RECORD_CALL_OUTCOME: _SEATS,
    Action.CONFIRM_MOVED: _SEATS,
    Action.DISPUTE: _SEATS,
    Action.CANCEL: _SEATS,
    Action.ESCALATE: _SEATS,
    # 二(四)/三: Party A has the case records (案件记录) and statistics; the auditor checks
    # the evidence, not its content.
    Action.READ_CASE: frozenset({Role.AGENT, Role.SUPERVISOR, Role.COMMAND_CENTRE}),
    Action.READ_HISTORY: frozenset({Role.SUPERVISOR, Role.COMMAND_CENTRE}),
    # 四, 七: the owner's number to the seat handling the open case, no one else (the desk
    # also checks the seat and the state).
    Action.READ_OWNER_CONTACT: frozenset({Role.AGENT}),
    Action.READ_REPORT: frozenset({Role.SUPERVISOR, Role.COMMAND_CENTRE}),
    Action.SETTLE_MONTH: frozenset({Role.SUPERVISOR}),
    # Refusing a citizen the service is the call centre's decision about abuse it found,
    # taken by a supervisor, never a seat on its own; Party A sees the list (二(四) 参照
    # 公安 110 接警模式: 110 keeps such lists), the auditor checks the log's leaves only.
    Action.BLOCK_REQUESTER: frozenset({Role.SUPERVISOR}),
    Action.READ_BLOCK_LIST: frozenset({Role.SUPERVISOR, Role.COMMAND_CENTRE}),
    # The operator (乙方) records its outages and incidents; Party A reads them (it is
    # notified of each), and the auditor checks them: they are evidence of compliance.
    Action.RECORD_INCIDENT: frozenset({Role.SUPERVISOR}),
    Action.READ_INCIDENTS: frozenset({Role.SUPERVISOR, Role.COMMAND_CENTRE, Role.AUDITOR}),
    # 五(三) "如发现有弄虚作假的，甲方有权不向乙方支付当月服务费": Party A checks the records
    # behind the reports; 七(三) "防止 ... 篡改、丢失": the operator's supervisor checks them
    # too; it is the auditor's whole work. Not a seat: verifying reads every case.
    Action.VERIFY_EVIDENCE: frozenset({Role.AUDITOR, Role.SUPERVISOR, Role.COMMAND_CENTRE}),
}

#: Read-only view of the table.
PERMISSIONS: Mapping[Action, frozenset[Role]] = types.MappingProxyType(_TABLE)


def allowed(actor: Actor, action: Action) -> bool:
    """Whether ``actor``'s role may do ``action`` (an action without a row: nobody)."""
    return actor.role in PERMISSIONS.get(action, frozenset())


def require(actor: object, action: Action) -> Actor:
    """``actor`` if its role may do ``action``; :class:`PermissionDenied` otherwise
    (:class:`InvalidActor` when ``actor`` is not an :class:`Actor`)."""
    if not isinstance(actor, Actor):
        raise InvalidActor(f"actor={excerpt(actor)}: must be an Actor(actor_id, role)")
    if not allowed(actor, action):
        raise PermissionDenied(actor, action)
    return actor
