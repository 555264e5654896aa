"""The engine as one actor uses it: every command and query checked against the roles.

四 "未经甲方同意，不得将机动车信息用于除挪车服务以外任何用途" and 七(三) (no access without
authorisation, an access log) ask that each person sees and does only what their part in
the service needs. A :class:`Desk` is the engine for one :class:`~movecar_core.roles.Actor`:

* every command and query is an action of :data:`~movecar_core.roles.PERMISSIONS` (the one
  table), checked before anything is read or written; a refusal raises
  :class:`~movecar_core.roles.PermissionDenied` and is written to the access log;
* seats act under their own id (a command's ``agent_id`` is the actor's, never an
  argument);
* what a desk shows is masked: views carry masked numbers, and :meth:`Desk.history`
  returns the events with every phone number masked (free text too). The owner's number
  itself is shown by :meth:`Desk.owner_contact`, to the agent handling that open case
  only, and each showing is logged;
* reading a case's records (its history, the owner's contact) is logged too.

The :class:`~movecar_core.app.MoveCar` facade underneath stays the trusted engine of the
process (the worker, the simulator, a host's own wiring); a host puts a desk in front of
every person.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from movecar_core.case import (
    CallOutcome,
    CaseOpened,
    EscalationReason,
    Event,
    OwnerCallPlaced,
    OwnerLookedUp,
)
from movecar_core.errors import InvalidCommand, redact
from movecar_core.phones import mask_phone
from movecar_core.recordings import AccessLog
from movecar_core.requesters import BlockChange, BlockedRequester, RequesterStore, RequesterUsage
from movecar_core.roles import Action, Actor, InvalidActor, PermissionDenied, allowed
from movecar_core.views import CaseView, RequesterView

if TYPE_CHECKING:
    from movecar_core.app import MoveCar, OutboundCall
    from movecar_core.incidents import (
        IncidentMonth,
        Incidents,
        Outage,
        SecurityIncident,
        SecurityKind,
    )
    from movecar_core.pricing import TierMode
    from movecar_core.reports import MonthlyReport, MonthSettlement
    from movecar_core.settlement import ServiceMonth

#: Access-log action of a refusal: ``denied:<action>``.
DENIED = "denied:"


#: Fields that hold ids, kept whole (a hex id's digits may happen to hold a mobile number).
_IDS = frozenset({"case_id", "command_id", "call_id", "command_fingerprint"})


def masked_event(event: Event) -> Event:
    """``event`` with every phone number in it masked: the phone fields, and any number
    written into free text (a note, a reason)."""
    changes: dict[str, Any] = {}
    for field in attrs.fields(type(event)):
        value = getattr(event, field.name)
        if field.name in ("requester_phone", "owner_phone") and value is not None:
            changes[field.name] = mask_phone(value)
        elif isinstance(value, str) and field.name not in _IDS:
            shown = redact(value)
            if shown != value:
                changes[field.name] = shown
    return attrs.evolve(event, **changes) if changes else event


def handling_agent(history: tuple[Event, ...]) -> str | None:
    """The seat handling the case: the last that looked up its owner or called them (the
    one who opened it, before that)."""
    for event in reversed(history):
        if isinstance(event, OwnerLookedUp | OwnerCallPlaced | CaseOpened):
            return event.agent_id
    return None


class Desk:
    """:class:`~movecar_core.app.MoveCar` for one actor (see the module)."""

    def __init__(
        self,
        engine: MoveCar,
        actor: Actor,
        *,
        access_log: AccessLog | None = None,
        incidents: Incidents | None = None,
    ):
        if not isinstance(actor, Actor):
            raise InvalidActor(f"actor={type(actor).__name__}: must be an Actor(actor_id, role)")
        self.engine = engine
        self.actor = actor
        self.access_log: AccessLog = access_log if access_log is not None else engine.access_log
        #: The deployment's incident log (二(五)), for the incident commands and queries.
        self.incidents = incidents

    def __repr__(self) -> str:
        return f"Desk(actor={self.actor.actor_id!r}, role={self.actor.role.value})"

    def check(self, action: Action, case_id: str | None = None) -> None:
        """Whether this actor may ``action``: a refusal is logged as ``denied:<action>``
        and raises :class:`~movecar_core.roles.PermissionDenied`. For a host's own action
        the desk has no method for (the CLI's ``audit verify``, say): the same check, the
        same log entry."""
        if not isinstance(action, Action):
            raise InvalidCommand("action", action, "must be an Action")
        self._allow(action, case_id)

    def _allow(self, action: Action, case_id: str | None = None) -> None:
        if not allowed(self.actor, action):
            self.access_log.log_access(
                self.actor.actor_id,
                f"{DENIED}{action.value}"[:40],
                case_id if isinstance(case_id, str) and len(case_id) <= 64 else None,
                f"role {self.actor.role.value}",
            )
            raise PermissionDenied(self.actor, action)

    # --- commands: a seat's work on a case ---------------------------------------------

    def open_case(
        self, *, plate: str, location: str, requester_phone: str, command_id: str | None = None
    ) -> str:
        self._allow(Action.OPEN_CASE)
        return self.engine.open_case(
            plate=plate,
            location=location,
            requester_phone=requester_phone,
            agent_id=self.actor.actor_id,
            command_id=command_id,
        )

    def locate_owner(self, case_id: str, *, command_id: str | None = None) -> CaseView:
        """四: the owner is looked up only inside an open case, by the seat handling it
        (the look-up is the case's ``OwnerLookedUp``, naming the seat and the source)."""
        self._allow(Action.LOCATE_OWNER, case_id)
        return self.engine.locate_owner(
            case_id, agent_id=self.actor.actor_id, command_id=command_id
        )

    def call_owner(self, case_id: str, *, command_id: str | None = None) -> OutboundCall:
        self._allow(Action.CALL_OWNER, case_id)
        return self.engine.call_owner(case_id, agent_id=self.actor.actor_id, command_id=command_id)

    def record_call_outcome(
        self,
        case_id: str,
        call_id: str,
        outcome: CallOutcome | str,
        *,
        command_id: str | None = None,
    ) -> CaseView:
        self._allow(Action.RECORD_CALL_OUTCOME, case_id)
        return self.engine.record_call_outcome(case_id, call_id, outcome, command_id=command_id)

    def confirm_moved(
        self, case_id: str, *, note: str | None = None, command_id: str | None = None
    ) -> CaseView:
        self._allow(Action.CONFIRM_MOVED, case_id)
        return self.engine.confirm_moved(case_id, note=note, command_id=command_id)

    def dispute(self, case_id: str, *, note: str, command_id: str | None = None) -> CaseView:
        self._allow(Action.DISPUTE, case_id)
        return self.engine.dispute(case_id, note=note, command_id=command_id)

    def cancel(self, case_id: str, *, note: str, command_id: str | None = None) -> CaseView:
        self._allow(Action.CANCEL, case_id)
        return self.engine.cancel(case_id, note=note, command_id=command_id)

    def escalate(
        self,
        case_id: str,
        reason: EscalationReason | str,
        note: str | None = None,
        *,
        command_id: str | None = None,
    ) -> CaseView:
        self._allow(Action.ESCALATE, case_id)
        return self.engine.escalate(case_id, reason, note, command_id=command_id)

    # --- queries ------------------------------------------------------------------------

    def case(self, case_id: str) -> CaseView:
        """The case as a seat sees it: numbers masked."""
        self._allow(Action.READ_CASE, case_id)
        return self.engine.case(case_id)

    def requester_view(self, case_id: str) -> RequesterView:
        self._allow(Action.READ_CASE, case_id)
        return self.engine.requester_view(case_id)

    def history(self, case_id: str) -> tuple[Event, ...]:
        """The case record (案件记录): every event, every phone number masked; logged."""
        self._allow(Action.READ_HISTORY, case_id)
        events = self.engine.history(case_id)
        self._read(case_id, "read_history", f"{len(events)} events")
        return tuple(masked_event(e) for e in events)

    def owner_contact(self, case_id: str) -> str:
        """The owner's full number, for the seat handling this open case (to dial by hand
        when the switch cannot); logged. Anyone else, or a closed case: refused."""
        self._allow(Action.READ_OWNER_CONTACT, case_id)
        record = self.engine.record(case_id)
        history = self.engine.history(case_id)
        handler = handling_agent(history)
        if record.state.is_terminal or handler != self.actor.actor_id:
            why = "the case is closed" if record.state.is_terminal else "another seat handles it"
            self.access_log.log_access(
                self.actor.actor_id, f"{DENIED}{Action.READ_OWNER_CONTACT.value}", case_id, why
            )
            raise PermissionDenied(self.actor, Action.READ_OWNER_CONTACT, why)
        if record.owner_phone is None:
            raise InvalidCommand("case_id", case_id, "the owner is not located")
        self._read(case_id, "read_owner_contact", "四: 挪车服务")
        return record.owner_phone

    def report(self, month: ServiceMonth) -> MonthlyReport | None:
        """The month's volume report (话务量报表) as recorded, if any."""
        self._allow(Action.READ_REPORT)
        store: Any = self.engine.store
        reader: Callable[[ServiceMonth], MonthlyReport | None] | None = getattr(
            store, "report", None
        )
        if reader is None:
            raise InvalidCommand("engine.store", type(store).__name__, "keeps no reports")
        return reader(month)

    def settle_month(self, month: ServiceMonth, *, mode: TierMode | None = None) -> MonthSettlement:
        """三: report and settle ``month`` (the operator's act, by a supervisor)."""
        self._allow(Action.SETTLE_MONTH)
        if mode is None:
            return self.engine.settle_month(month)
        return self.engine.settle_month(month, mode=mode)

    # --- the requester block list (movecar_core.requesters) --------------------------------

    def _requesters(self) -> RequesterStore:
        store = self.engine.store
        if not isinstance(store, RequesterStore):
            raise InvalidCommand("engine.store", type(store).__name__, "keeps no block list")
        return store

    def block_requester(self, phone: str, *, reason: str) -> BlockedRequester:
        """Block a number found abusing the service, as this actor (logged by the store)."""
        self._allow(Action.BLOCK_REQUESTER)
        return self._requesters().block_requester(phone, reason=reason, actor=self.actor.actor_id)

    def unblock_requester(self, phone: str, *, reason: str) -> BlockedRequester:
        self._allow(Action.BLOCK_REQUESTER)
        return self._requesters().unblock_requester(phone, reason=reason, actor=self.actor.actor_id)

    def blocked_requesters(self) -> list[BlockedRequester]:
        """The block list, numbers masked."""
        self._allow(Action.READ_BLOCK_LIST)
        return self._requesters().blocked_requesters()

    def block_history(self) -> list[BlockChange]:
        self._allow(Action.READ_BLOCK_LIST)
        return self._requesters().block_history()

    def requester_usage(self, phone: str, day: dt.date) -> RequesterUsage:
        """A number's requests of ``day`` and its month, and whether it is blocked."""
        self._allow(Action.READ_BLOCK_LIST)
        return self._requesters().requester_usage(phone, day)

    # --- outages and security incidents (二(五), annex 2 十六) ----------------------------

    def _incidents(self, action: Action) -> Incidents:
        self._allow(action)
        if self.incidents is None:
            raise InvalidCommand("incidents", None, "this desk has no incident log")
        return self.incidents

    def start_outage(self, cause: str, *, at: dt.datetime | None = None) -> Outage:
        return self._incidents(Action.RECORD_INCIDENT).start_outage(
            cause, at=at, actor=self.actor.actor_id
        )

    def end_outage(self, *, at: dt.datetime | None = None) -> Outage:
        return self._incidents(Action.RECORD_INCIDENT).end_outage(at=at, actor=self.actor.actor_id)

    def report_security_incident(
        self, kind: SecurityKind | str, summary: str, *, at: dt.datetime | None = None
    ) -> SecurityIncident:
        return self._incidents(Action.RECORD_INCIDENT).report_security_incident(
            kind, summary, at=at, actor=self.actor.actor_id
        )

    def incident_month(self, month: ServiceMonth) -> IncidentMonth:
        """The month's days without the 24-hour service, outage minutes, late notices."""
        return self._incidents(Action.READ_INCIDENTS).month(month)

    def _read(self, case_id: str, what: str, detail: str) -> None:
        self.access_log.log_access(self.actor.actor_id, what, case_id, detail)
