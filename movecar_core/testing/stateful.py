"""A Hypothesis stateful machine that drives random command sequences through a facade.

Hosts reuse it against their own wiring: subclass :class:`MoveCarStateMachine`, implement
:meth:`~MoveCarStateMachine.make_engine`, and expose ``TestCase``::

    class HostMachine(MoveCarStateMachine):
        def make_engine(self, owners, notifier):
            return MoveCar(store=MyStore(), registry=MyRegistry(owners), ...,
                           notifier=notifier)

    TestHost = HostMachine.TestCase

Invariants checked after every step, for every case:

* the state is the fold of the history (the view never disagrees with the log), and so
  is the record the engine reads, kept by the store beside the events when it keeps one;
* a terminal state absorbs: once moved/escalated/cancelled/unresolved, always so;
* outbound call attempts never exceed the policy's limit, and at most one is in flight;
* no owner phone number reaches anything the requester side sees (views, notifications);
* a command that raises appends nothing (a typed error, never half a command);
* when time passes (a :class:`~movecar_core.clock.ManualClock`), what fell due runs, each
  effect once and without error, and a closed case keeps no pending timer.
"""

from __future__ import annotations

from collections.abc import Mapping

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

from movecar_core.app import MoveCar
from movecar_core.case import TERMINAL_STATES, CallOutcome, CaseState, EscalationReason
from movecar_core.clock import ManualClock
from movecar_core.errors import MoveCarError
from movecar_core.machine import fold
from movecar_core.outbox import TIMERS
from movecar_core.phones import parse_phone
from movecar_core.ports import FoldedCaseStore
from movecar_core.testing.strategies import canonical_mobile_phones, canonical_plates, plates

_NOTES = st.text(st.characters(categories=["Lo", "Nd", "Lu"]), min_size=1, max_size=12)


class RecordingNotifier:
    """A notifier that keeps every message, so the machine can check what requesters see."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def notify(self, case_id: str, requester_phone: str, message: str) -> None:
        self.sent.append((case_id, requester_phone, message))


class MoveCarStateMachine(RuleBasedStateMachine):
    """Random command sequences through :class:`~movecar_core.app.MoveCar`."""

    cases = Bundle("cases")
    command_ids = Bundle("command_ids")

    def make_engine(self, owners: Mapping[str, str], notifier: RecordingNotifier) -> MoveCar:
        """The engine under test, knowing ``owners`` (plate -> phone). Override this."""
        raise NotImplementedError("subclass MoveCarStateMachine and implement make_engine")

    def __init__(self) -> None:
        super().__init__()
        self.engine: MoveCar | None = None
        self.notifier = RecordingNotifier()
        self.owners: dict[str, str] = {}
        self.closed: dict[str, CaseState] = {}
        self.opened: list[str] = []  # this run's cases (the store may hold others)
        self.commands: dict[str, tuple[str, object]] = {}  # command id -> (case, result)

    @initialize(
        owners=st.dictionaries(
            canonical_plates(), canonical_mobile_phones(), min_size=1, max_size=4
        ),
    )
    def start(self, owners: dict[str, str]) -> None:
        self.owners = owners
        self.engine = self.make_engine(owners, self.notifier)

    @property
    def mc(self) -> MoveCar:
        assert self.engine is not None
        return self.engine

    def _attempt(self, case_id: str, command: str, *args: object, **kwargs: object) -> object:
        """Run a facade command; on a library error, check nothing was appended."""
        before = len(self.mc.history(case_id))
        try:
            result: object = getattr(self.mc, command)(case_id, *args, **kwargs)
        except MoveCarError:
            assert len(self.mc.history(case_id)) == before, f"{command} raised but wrote"
            return None
        return result

    # --- rules ------------------------------------------------------------------------

    @precondition(lambda self: len(self.opened) < 4)  # few cases, so each goes deep
    @rule(
        target=cases,
        data=st.data(),
        requester=canonical_mobile_phones(),
        location=st.sampled_from(["武进区湖塘镇花园街 8 号", "常武路 18 号地下车库", "人民路口"]),
    )
    def open_case(self, data: st.DataObject, requester: str, location: str) -> str:
        # Mostly plates the registry knows, so cases get past the look-up.
        known = sorted(self.owners)
        unknown = data.draw(st.integers(0, 4)) == 0
        plate = data.draw(plates() if unknown or not known else st.sampled_from(known))
        case_id = self.mc.open_case(plate=plate, location=location, requester_phone=requester)
        self.opened.append(case_id)
        return case_id

    @rule(case_id=cases)
    def locate_owner(self, case_id: str) -> None:
        self._attempt(case_id, "locate_owner", agent_id="seat-1")

    @rule(target=command_ids, case_id=cases, cid=st.uuids().map(str))
    def call_owner(self, case_id: str, cid: str) -> object:
        result = self._attempt(case_id, "call_owner", agent_id="seat-1", command_id=cid)
        if result is None:
            return multiple()
        self.commands[cid] = (case_id, result)
        return cid

    @rule(cid=command_ids)
    def repeat_call_owner(self, cid: str) -> None:
        case_id, first = self.commands[cid]
        before = len(self.mc.history(case_id))
        assert self.mc.call_owner(case_id, agent_id="seat-1", command_id=cid) == first
        assert len(self.mc.history(case_id)) == before

    @rule(
        case_id=cases,
        outcome=st.sampled_from(CallOutcome),
        stale=st.integers(0, 5).map(lambda n: n == 0),
    )
    def record_outcome(self, case_id: str, outcome: CallOutcome, stale: bool) -> None:
        record = fold(self.mc.history(case_id))
        call_id = "not-a-call" if stale or record.call_in_flight is None else record.call_in_flight
        self._attempt(case_id, "record_call_outcome", call_id, outcome)

    @rule(case_id=cases)
    def confirm_moved(self, case_id: str) -> None:
        self._attempt(case_id, "confirm_moved")

    @rule(case_id=cases, note=_NOTES)
    def dispute(self, case_id: str, note: str) -> None:
        self._attempt(case_id, "dispute", note=note)

    @rule(
        case_id=cases,
        cancel=st.booleans(),
        reason=st.sampled_from(EscalationReason),
        note=st.one_of(st.none(), _NOTES),
    )
    def close(self, case_id: str, cancel: bool, reason: EscalationReason, note: str | None) -> None:
        """Escalate to 110 (any reason; ``other`` without a note must fail) or cancel."""
        if cancel:
            self._attempt(case_id, "cancel", note=note)
        else:
            self._attempt(case_id, "escalate", reason, note)

    @rule(case_id=cases, bad=st.sampled_from(["", "   ", "苏I12345"]))
    def bad_input_writes_nothing(self, case_id: str, bad: str) -> None:
        self._attempt(case_id, "cancel", note=bad)
        before = sum(1 for _ in self.mc.store.case_ids())
        try:
            self.mc.open_case(plate=bad, location="x", requester_phone="13800001111")
        except MoveCarError:
            pass
        else:
            raise AssertionError(f"open_case accepted plate {bad!r}")
        assert sum(1 for _ in self.mc.store.case_ids()) == before

    @rule(minutes=st.integers(0, 12))
    def time_passes(self, minutes: int) -> None:
        """The clock moves (a :class:`ManualClock`), and whatever fell due runs: overdue
        outcomes are recorded as failed, follow-ups remind the seat, notices go out."""
        clock = self.mc.clock
        if isinstance(clock, ManualClock):
            clock.advance(minutes=minutes)
        if self.mc.outbox is None:
            return
        runs = self.mc.run_due()
        assert all(run.ok for run in runs), [run for run in runs if not run.ok]
        assert len({run.key for run in runs}) == len(runs), "an effect ran twice"

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def closed_cases_keep_no_timers(self) -> None:
        if self.engine is None or self.mc.outbox is None:
            return
        for case_id in self.opened:
            if fold(self.mc.history(case_id)).state in TERMINAL_STATES:
                timers = [e for e in self.mc.outbox.pending(case_id) if e.kind in TIMERS]
                assert timers == [], f"a closed case keeps timers {timers}"

    @invariant()
    def every_case_keeps_the_rules(self) -> None:
        if self.engine is None:
            return
        for case_id in self.opened:
            history = self.mc.history(case_id)
            record = fold(history)
            # The engine reads the record a store keeps beside the events (and folds the
            # events itself otherwise): either way, the fold of the history.
            assert self.mc.record(case_id) == record, "the record is not the fold"
            if isinstance(self.mc.store, FoldedCaseStore):
                events, kept = self.mc.store.load_folded(case_id)
                assert tuple(events) == tuple(history) and kept == record
            view = self.mc.case(case_id)
            assert view.state is record.state
            assert view.version == len(history)
            if case_id in self.closed:
                assert record.state is self.closed[case_id], "a terminal state changed"
            elif record.state in TERMINAL_STATES:
                self.closed[case_id] = record.state
                assert record.closed_at is not None
            assert record.attempts <= self.mc.policy.max_call_attempts
            shown = repr(self.mc.requester_view(case_id))
            for secret in self._owner_secrets(exclude=record.requester_phone):
                assert secret not in shown, f"requester view shows {secret}"

    @invariant()
    def notifications_never_carry_owner_numbers(self) -> None:
        for _, requester, message in self.notifier.sent:
            for secret in self._owner_secrets(exclude=requester):
                assert secret not in message, f"notification shows {secret}"

    def _owner_secrets(self, exclude: str) -> list[str]:
        """Every spelling of every owner number (unless the requester is that owner)."""
        secrets = []
        for phone in self.owners.values():
            parsed = parse_phone(phone)
            if parsed.canonical != exclude:
                secrets += [parsed.canonical, parsed.digits, parsed.digits[-8:]]
        return secrets
