"""The simulated switch: the port's contract, determinism, and its faults through the engine."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from movecar_core import (
    CallProgressed,
    InvalidCommand,
    MoveCar,
    OutboundCallRequest,
    TelephonyError,
)
from movecar_core.clock import ManualClock
from movecar_core.memory import InMemoryCaseStore, InMemoryVehicleRegistry
from movecar_core.simulation.switch import SimulatedFarEnd, SimulatedTelephony, SwitchBehaviour
from movecar_core.testing.contracts import TelephonyContract

ALWAYS_ANSWERS = SwitchBehaviour(
    answer=1, busy=0, decline=0, no_answer=0, fail=0, hang_up_in_greeting=0, mean_talk_s=3000
)


class TestSimulatedTelephony(TelephonyContract):
    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def telephony(self, clock: ManualClock) -> SimulatedTelephony:
        return SimulatedTelephony(clock, seed=7, behaviour=ALWAYS_ANSWERS)

    @pytest.fixture
    def far_end(self, telephony: SimulatedTelephony, clock: ManualClock) -> SimulatedFarEnd:
        return SimulatedFarEnd(telephony, clock)


def _request(case_id: str, attempt: int = 1, agent: str = "seat-1") -> OutboundCallRequest:
    return OutboundCallRequest(
        f"id-{case_id}-{attempt}", case_id, agent, "0519110", "13912345678", "您好", attempt
    )


def _course(seed: int, keys: list[str]) -> list[tuple[str, str, float]]:
    clock = ManualClock()
    switch = SimulatedTelephony(clock, seed=seed)
    for key in keys:
        switch.place_call(_request(key))
    seen: list[tuple[str, str, float]] = []
    t0 = clock.now()
    for _ in range(200):
        clock.advance(seconds=30)
        seen += [
            (e.key, e.progress.value, (e.at - t0).total_seconds()) for e in switch.drain_events()
        ]
    return sorted(seen)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32), st.permutations([f"case-{i}" for i in range(6)]))
def test_a_calls_course_depends_on_the_seed_and_its_key_only(seed: int, keys: list[str]) -> None:
    assert _course(seed, keys) == _course(seed, sorted(keys))


def test_bad_behaviour_is_a_typed_error() -> None:
    for bad in ({"answer": 1.5}, {"ring_s": 0}, {"lose_report": -0.1}, {"busy": True}):
        with pytest.raises(InvalidCommand):
            SwitchBehaviour(**bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidCommand):
        SwitchBehaviour(answer=0, busy=0, decline=0, no_answer=0, fail=0, hang_up_in_greeting=0)


def test_a_switch_that_is_down_refuses_dials() -> None:
    switch = SimulatedTelephony(ManualClock())
    switch.down = True
    with pytest.raises(TelephonyError):
        switch.place_call(_request("c"))


def _run(behaviour: SwitchBehaviour, cases: int = 150) -> tuple[MoveCar, list[str], Counter[str]]:
    """Cases through the engine on the simulated switch: each called until an answer or
    the attempts run out, the clock advanced and the engine's run_due pumping reports."""
    clock = ManualClock()
    switch = SimulatedTelephony(clock, seed=3, behaviour=behaviour)
    plate = "苏D12345"
    mc = MoveCar(
        store=InMemoryCaseStore(clock=clock),
        registry=InMemoryVehicleRegistry({plate: "13912345678"}),
        telephony=switch,
        clock=clock,
    )
    ids = []
    runs: Counter[str] = Counter()
    for i in range(cases):
        case_id = mc.open_case(plate=plate, location=f"地库 {i}", requester_phone="13800001111")
        mc.locate_owner(case_id, agent_id="seat-1")
        ids.append(case_id)
    for _ in range(40):
        for case_id in ids:
            record = mc.record(case_id)
            waiting = record.call_in_flight is None and not record.state.is_terminal
            unanswered = record.last_outcome is None or not record.last_outcome.answered
            if waiting and unanswered and record.attempts < mc.policy.max_call_attempts:
                mc.call_owner(case_id, agent_id=f"seat-{case_id[:6]}")
        clock.advance(seconds=20)
        runs.update(r.outcome for r in mc.run_due())
    clock.advance(minutes=10)  # outcomes still missing are overdue
    runs.update(r.outcome for r in mc.run_due())
    return mc, ids, runs


def test_a_clean_switch_gives_every_call_an_outcome_through_its_reports() -> None:
    mc, ids, runs = _run(SwitchBehaviour(mean_talk_s=5))
    outcomes: Counter[str] = Counter()
    for case_id in ids:
        history = mc.history(case_id)
        outcomes.update(
            e.outcome.value for e in history if type(e).__name__ == "CallOutcomeRecorded"
        )
        assert mc.record(case_id).call_in_flight is None  # overdue ones were reconciled
    assert runs["refused"] == 0
    assert outcomes["busy"] and outcomes["no_answer"] and outcomes["declined"]


def test_lost_repeated_and_reordered_reports_still_apply_once() -> None:
    faulty = SwitchBehaviour(lose_report=0.2, repeat_report=0.2, reorder_reports=0.2)
    mc, ids, runs = _run(faulty)
    assert runs["refused"] > 0  # repeats of a final report, and overtaken ones
    for case_id in ids:
        stored = [e.progress for e in mc.history(case_id) if isinstance(e, CallProgressed)]
        per_call: Counter[tuple[str, str]] = Counter(
            (e.call_id, e.progress.value)
            for e in mc.history(case_id)
            if isinstance(e, CallProgressed)
        )
        assert all(n == 1 for n in per_call.values()), stored
        # Lost final reports were found by key when the outcome was overdue: nothing is
        # left waiting, and the switch was never asked to dial an attempt twice.
        assert mc.record(case_id).call_in_flight is None
    switch = mc.telephony
    assert isinstance(switch, SimulatedTelephony)
    assert len({r.key for r in switch.placed}) == len(switch.placed)
