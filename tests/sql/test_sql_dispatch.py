"""The facade and the outbox together: calls dialled and notices sent by workers."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest

from movecar_adapters.sql import SqlStore
from movecar_adapters.worker import drain
from movecar_core import CallOutcome, CaseState, MoveCar
from movecar_core.app import Dispatch, EffectRun
from movecar_core.clock import ManualClock
from movecar_core.memory import InMemoryCommandCentre, InMemoryTelephony, InMemoryVehicleRegistry
from movecar_core.outbox import EffectPolicy


@pytest.fixture
def engine(fresh_store: SqlStore, clock: ManualClock) -> MoveCar:
    fresh_store.effects = EffectPolicy(dispatch_calls=True)
    return MoveCar(
        store=fresh_store,
        registry=InMemoryVehicleRegistry({"苏D12345": "13912345678"}),
        telephony=InMemoryTelephony(),
        clock=clock,
        command_centre=InMemoryCommandCentre(),
        dispatch=Dispatch.OUTBOX,
    )


def outcomes(runs: list[EffectRun], *kinds: str) -> list[str]:
    """What the runs of these kinds did (requester notices are checked in test_app)."""
    assert all(run.ok for run in runs), runs
    return [run.outcome for run in runs if run.kind in kinds]


def switch(mc: MoveCar) -> InMemoryTelephony:
    assert isinstance(mc.telephony, InMemoryTelephony)
    return mc.telephony


def test_a_worker_dials_each_recorded_call_once(
    engine: MoveCar, fresh_store: SqlStore, clock: ManualClock
) -> None:
    case_id = engine.open_case(plate="苏D12345", location="湖塘镇", requester_phone="13800001111")
    engine.locate_owner(case_id)
    call = engine.call_owner(case_id, agent_id="seat-1")
    assert switch(engine).calls == []  # recorded, not yet dialled
    assert outcomes(drain(engine, "w1"), "place_call") == ["dialled"]
    assert [c.call_id for c in switch(engine).calls] == [call.call_id]
    assert switch(engine).calls[0].caller_id == "0519110"
    assert drain(engine, "w2") == []  # done once, never again
    # A worker that crashed before marking it done runs it again: the same call, not a
    # second dial (the switch knows the call id).
    effect = next(e for e in fresh_store.pending() if e.kind == "call_outcome_due")
    assert engine.run_effect(attrs.evolve(effect, kind="place_call")) == "dialled"
    assert len(switch(engine).calls) == 1
    # Claimed again (its attempt count says so): it asks the switch instead of dialling.
    repeat = attrs.evolve(effect, kind="place_call")
    assert engine.run_effect(repeat, attempt=2) == "repeat: the call is live: dialling"
    assert len(switch(engine).calls) == 1


def test_an_overdue_outcome_is_left_for_a_person(
    engine: MoveCar, fresh_store: SqlStore, clock: ManualClock
) -> None:
    case_id = engine.open_case(plate="苏D12345", location="湖塘镇", requester_phone="13800001111")
    engine.locate_owner(case_id)
    engine.call_owner(case_id, agent_id="seat-1")
    drain(engine, "w1")
    clock.advance(minutes=3, seconds=1)  # EffectPolicy.call_outcome_timeout is 3 minutes
    assert outcomes(drain(engine, "w1"), "call_outcome_due") == [
        "outcome overdue: outcome unknown: left for a person, never redialled"
    ]
    view = engine.case(case_id)
    assert (view.last_outcome, view.call_in_flight) == (CallOutcome.OUTCOME_UNKNOWN, None)
    clock.advance(minutes=5)  # the follow-up reminder for the seat
    assert outcomes(drain(engine, "w1"), "follow_up_call") == ["skipped: no seat reminder port"]


def test_an_escalation_notice_reaches_110_once(
    engine: MoveCar, fresh_store: SqlStore, clock: ManualClock
) -> None:
    case_id = engine.open_case(plate="苏D12345", location="湖塘镇", requester_phone="13800001111")
    assert engine.escalate(case_id, "emergency_lane_blocked").state is CaseState.ESCALATED_TO_110
    drain(engine, "w1")
    desk = engine.command_centre
    assert isinstance(desk, InMemoryCommandCentre)
    assert len(desk.notices) == 1
    assert "emergency_lane_blocked" in desk.notices[0].message
    assert "0519-81997327" in desk.notices[0].message
    assert switch(engine).transfers[0].number == "0519-81997327"


def test_timers_of_a_closed_case_are_cancelled(
    engine: MoveCar, fresh_store: SqlStore, clock: ManualClock
) -> None:
    case_id = engine.open_case(plate="苏D12345", location="湖塘镇", requester_phone="13800001111")
    engine.locate_owner(case_id)
    call = engine.call_owner(case_id, agent_id="seat-1")
    drain(engine, "w1")
    engine.record_call_outcome(case_id, call.call_id, "answered_agreed")
    engine.confirm_moved(case_id)
    clock.advance(dt.timedelta(hours=1))
    ran = drain(engine, "w1")
    assert outcomes(ran, "call_outcome_due", "follow_up_call") == []  # cancelled, not run
    assert [r.kind for r in ran] == ["notify_requester"]  # "车辆已挪走": a send, not a timer
    assert list(fresh_store.pending(case_id)) == []
