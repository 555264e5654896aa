"""A Hypothesis stateful machine for an integration seen only from outside.

:class:`~movecar_core.testing.stateful.MoveCarStateMachine` holds the facade itself (its
store, outbox and clock). A host that runs the engine as a service beside it (``movecar
serve`` over HTTP, behind a queue, in another language's process) sees only what a seat
and a supervisor see: the commands of :class:`~movecar_core.commands.CaseCommands`, a
case's view and its (masked) history. :class:`CaseServiceMachine` drives random command
sequences through exactly that and checks what can be checked from there:

* the case's state is the fold of its history, and its version the history's length;
* a terminal state absorbs: once moved/escalated/cancelled/unresolved, always so;
* call attempts never exceed the limit, and at most one call is in flight;
* a refused command is a typed :class:`~movecar_core.errors.MoveCarError` and appends
  nothing; anything else (a transport error, a 500) fails the run;
* a repeated command id returns the first result and appends nothing;
* no owner number, in any spelling, in what the seat is shown (the view, the history).

Subclass it, implement :meth:`CaseServiceMachine.make_service` and expose ``TestCase``::

    class OverHttp(CaseServiceMachine):
        def make_service(self, owners):
            load_owners_into_my_registry(owners)
            return MyClient(token=AGENT), MyClient(token=SUPERVISOR)

    TestOverHttp = OverHttp.TestCase

``examples/host_http_property_suite.py`` runs it against ``movecar serve``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from movecar_core.case import TERMINAL_STATES, CallOutcome, CaseState, EscalationReason, Event
from movecar_core.commands import (
    CallOwner,
    Cancel,
    CaseCommands,
    Command,
    ConfirmMoved,
    Dispute,
    Escalate,
    LocateOwner,
    OpenCase,
    RecordCallOutcome,
    execute,
)
from movecar_core.errors import InvalidInput, MoveCarError
from movecar_core.machine import CasePolicy, fold
from movecar_core.phones import parse_phone
from movecar_core.testing.strategies import canonical_mobile_phones, canonical_plates, plates
from movecar_core.views import CaseView

__all__ = ["CaseReader", "CaseServiceMachine"]

_NOTES = st.text(st.characters(categories=["Lo", "Nd", "Lu"]), min_size=1, max_size=12)


class CaseReader(Protocol):
    """What a supervisor reads of a case: its view and its history (numbers may be
    masked: the fold does not read them)."""

    def case(self, case_id: str) -> CaseView: ...

    def history(self, case_id: str) -> Sequence[Event]: ...


class CaseServiceMachine(RuleBasedStateMachine):
    """Random command sequences through a :class:`CaseCommands` (see the module)."""

    cases = Bundle("cases")
    command_ids = Bundle("command_ids")
    #: The service's limit of outbound calls per case (the engine's default policy).
    max_call_attempts = CasePolicy().max_call_attempts

    def make_service(self, owners: Mapping[str, str]) -> tuple[CaseCommands, CaseReader]:
        """The seat's commands and the supervisor's reads of the service under test,
        whose owner data source knows ``owners`` (canonical plate -> phone). Override."""
        raise NotImplementedError("subclass CaseServiceMachine and implement make_service")

    def __init__(self) -> None:
        super().__init__()
        self.owners: dict[str, str] = {}
        self.service: tuple[CaseCommands, CaseReader] | None = None
        self.opened: list[str] = []
        self.closed: dict[str, CaseState] = {}
        self.commands: dict[str, tuple[Command, object]] = {}

    @initialize(
        owners=st.dictionaries(
            canonical_plates(), canonical_mobile_phones(), min_size=1, max_size=3
        ),
    )
    def start(self, owners: dict[str, str]) -> None:
        self.owners = owners
        self.service = self.make_service(owners)

    @property
    def seat(self) -> CaseCommands:
        assert self.service is not None
        return self.service[0]

    @property
    def reader(self) -> CaseReader:
        assert self.service is not None
        return self.service[1]

    def _attempt(self, case_id: str, command: Command, command_id: str | None = None) -> object:
        """Run ``command``; a refusal must be typed and must append nothing."""
        before = len(self.reader.history(case_id))
        try:
            return execute(self.seat, command, command_id=command_id)
        except MoveCarError:
            assert len(self.reader.history(case_id)) == before, f"{command!r} raised but wrote"
            return None

    # --- rules ------------------------------------------------------------------------

    @precondition(lambda self: len(self.opened) < 3)
    @rule(
        target=cases,
        data=st.data(),
        requester=canonical_mobile_phones(),
        location=st.sampled_from(["武进区湖塘镇花园街 8 号", "常武路 18 号地下车库", "人民路口"]),
    )
    def open_case(self, data: st.DataObject, requester: str, location: str) -> str:
        unknown = data.draw(st.integers(0, 4)) == 0  # mostly plates the registry knows
        plate = data.draw(plates() if unknown else st.sampled_from(sorted(self.owners)))
        case_id = execute(self.seat, OpenCase(plate, location, requester))
        assert isinstance(case_id, str)
        self.opened.append(case_id)
        return case_id

    @rule(case_id=cases)
    def locate_owner(self, case_id: str) -> None:
        self._attempt(case_id, LocateOwner(case_id))

    @rule(target=command_ids, case_id=cases, cid=st.uuids().map(str))
    def call_owner(self, case_id: str, cid: str) -> object:
        command = CallOwner(case_id)
        result = self._attempt(case_id, command, cid)
        if result is None:
            return multiple()
        self.commands[cid] = (command, result)
        return cid

    @rule(cid=command_ids)
    def repeat_a_command(self, cid: str) -> None:
        command, first = self.commands[cid]
        assert isinstance(command, CallOwner)
        before = len(self.reader.history(command.case_id))
        assert execute(self.seat, command, command_id=cid) == first
        assert len(self.reader.history(command.case_id)) == before

    @rule(case_id=cases, outcome=st.sampled_from(CallOutcome), stale=st.booleans())
    def record_outcome(self, case_id: str, outcome: CallOutcome, stale: bool) -> None:
        in_flight = self.reader.case(case_id).call_in_flight
        call_id = f"{case_id}:call:9" if stale or in_flight is None else in_flight
        self._attempt(case_id, RecordCallOutcome(case_id, call_id, outcome))

    @rule(case_id=cases)
    def confirm_moved(self, case_id: str) -> None:
        self._attempt(case_id, ConfirmMoved(case_id))

    @rule(case_id=cases, note=_NOTES)
    def dispute(self, case_id: str, note: str) -> None:
        self._attempt(case_id, Dispute(case_id, note))

    @rule(
        case_id=cases,
        cancel=st.booleans(),
        reason=st.sampled_from(EscalationReason),
        note=st.one_of(st.none(), _NOTES),
    )
    def close(self, case_id: str, cancel: bool, reason: EscalationReason, note: str | None) -> None:
        """Escalate to 110 (``other`` without a note must be refused) or cancel."""
        if cancel:
            self._attempt(case_id, Cancel(case_id, note or "求助人已自行解决"))
        elif self._attempt(case_id, Escalate(case_id, reason, note)) is not None:
            assert reason is not EscalationReason.OTHER or note is not None

    @rule(case_id=cases, bad=st.sampled_from(["", "   "]), plate=st.sampled_from(["", "苏I12345"]))
    def bad_input_is_refused(self, case_id: str, bad: str, plate: str) -> None:
        """Bad input is refused as input, whatever carries it, and writes nothing."""
        before = len(self.reader.history(case_id))
        for command in (Cancel(case_id, bad), OpenCase(plate, "x", "13800001111")):
            try:
                execute(self.seat, command)
            except InvalidInput:
                pass
            else:
                raise AssertionError(f"{command!r} was accepted")
        assert len(self.reader.history(case_id)) == before

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def every_case_keeps_the_rules(self) -> None:
        if self.service is None:
            return
        for case_id in self.opened:
            history = self.reader.history(case_id)
            record = fold(history)
            view = self.reader.case(case_id)
            assert view.state is record.state, (view.state, record.state)
            assert view.version == len(history)
            if case_id in self.closed:
                assert view.state is self.closed[case_id], "a terminal state changed"
            elif view.state in TERMINAL_STATES:
                self.closed[case_id] = view.state
                assert view.closed_at is not None
            assert view.attempts <= self.max_call_attempts
            shown = repr(view) + repr(tuple(history))
            for secret in self._owner_secrets():
                assert secret not in shown, f"the seat is shown {secret}"

    def _owner_secrets(self) -> list[str]:
        secrets = []
        for phone in self.owners.values():
            parsed = parse_phone(phone)
            secrets += [parsed.canonical, parsed.digits]
        return secrets
