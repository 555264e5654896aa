"""What the switch reports about a call, applied once and in order (issue 12: the port).

Calls to owners are placed by seats (二(六), caller ID 0519110); the switch reports back
ringing, answered, busy... as CallEvent values. Late, repeated and reordered reports are
applied once, in order, or refused with a typed error; a dial whose outcome was lost is
reconciled by its key and never redialled; calls in flight are capped (annex 2 十三(四)).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from movecar_core import (
    CallEvent,
    CallEventRefused,
    CallLimitReached,
    CallLimits,
    CallOutcome,
    CallProgress,
    CallProgressed,
    CaseState,
    Dispatch,
    EscalatedTo110,
    InvalidCommand,
    MoveCar,
    TelephonyError,
    TransferTo110Failed,
    call_key,
)
from movecar_core.calls import FINAL_RANK, LiveCalls, outcome_of, parse_call_key, rank
from movecar_core.clock import ManualClock
from movecar_core.memory import (
    InMemoryCaseStore,
    InMemoryCommandCentre,
    InMemoryTelephony,
    InMemoryVehicleRegistry,
)
from movecar_core.outbox import PLACE_CALL, EffectPolicy

PLATE = "苏D12345"
OWNER = "13912345678"
P = CallProgress


def engine(
    clock: ManualClock | None = None,
    *,
    limits: CallLimits | None = None,
    dispatch: Dispatch = Dispatch.INLINE,
) -> MoveCar:
    the_clock = clock or ManualClock()
    return MoveCar(
        store=InMemoryCaseStore(
            clock=the_clock, effects=EffectPolicy(dispatch_calls=dispatch is Dispatch.OUTBOX)
        ),
        registry=InMemoryVehicleRegistry({PLATE: OWNER}),
        telephony=InMemoryTelephony(clock=the_clock),
        clock=the_clock,
        command_centre=InMemoryCommandCentre(),
        call_limits=limits,
        dispatch=dispatch,
    )


def switch(mc: MoveCar) -> InMemoryTelephony:
    assert isinstance(mc.telephony, InMemoryTelephony)
    return mc.telephony


def calling(mc: MoveCar, agent: str = "seat-1") -> tuple[str, str]:
    case_id = mc.open_case(plate=PLATE, location="湖塘镇花园街 8 号", requester_phone="13800001111")
    mc.locate_owner(case_id, agent_id=agent)
    call = mc.call_owner(case_id, agent_id=agent)
    return case_id, call_key(case_id, call.attempt)


def progressed(mc: MoveCar, case_id: str) -> list[CallProgress]:
    return [e.progress for e in mc.history(case_id) if isinstance(e, CallProgressed)]


def test_the_request_names_the_attempt_and_its_key() -> None:
    mc = engine()
    case_id, key = calling(mc)
    [request] = switch(mc).calls
    assert (request.attempt, request.key, request.caller_id) == (1, key, "0519110")
    assert request.plate == PLATE and PLATE in request.greeting
    assert parse_call_key(key) == (case_id, 1)


def test_ringing_answered_ended_are_stored_and_the_seat_records_the_outcome() -> None:
    mc = engine()
    case_id, key = calling(mc)
    for progress in (P.RINGING, P.ANSWERED, P.ENDED):
        switch(mc).report(key, progress)
    runs = mc.pump_call_events()
    assert [r.outcome for r in runs] == ["applied"] * 3
    assert progressed(mc, case_id) == [P.RINGING, P.ANSWERED, P.ENDED]
    assert mc.record(case_id).call_progress is P.ENDED
    mc.record_call_outcome(case_id, mc.record(case_id).call_in_flight or "", "answered_agreed")
    assert mc.record(case_id).call_progress is None


def test_a_repeat_is_applied_once_and_a_late_report_is_refused() -> None:
    mc = engine()
    case_id, key = calling(mc)
    at = mc.clock.now()
    mc.apply_call_event(CallEvent(key, P.ANSWERED, at))
    version = mc.record(case_id).version
    mc.apply_call_event(CallEvent(key, P.ANSWERED, at))  # delivered twice
    assert mc.record(case_id).version == version
    with pytest.raises(CallEventRefused, match="late"):
        mc.apply_call_event(CallEvent(key, P.RINGING, at))  # overtaken
    assert mc.record(case_id).version == version


def test_a_final_report_records_the_outcome_once() -> None:
    mc = engine()
    case_id, key = calling(mc)
    at = mc.clock.now()
    view = mc.apply_call_event(CallEvent(key, P.BUSY, at, sip_status=486, detail="Busy Here"))
    assert view.last_outcome is CallOutcome.BUSY
    version = mc.record(case_id).version
    again = mc.apply_call_event(CallEvent(key, P.BUSY, at, sip_status=486, detail="Busy Here"))
    assert again.version == version  # the gateway resent it
    for late in (P.RINGING, P.ANSWERED, P.DECLINED):
        with pytest.raises(CallEventRefused):
            mc.apply_call_event(CallEvent(key, late, at))
    assert mc.record(case_id).version == version


@pytest.mark.parametrize(
    ("progress", "outcome"),
    [
        (P.BUSY, CallOutcome.BUSY),
        (P.DECLINED, CallOutcome.DECLINED),
        (P.NO_ANSWER, CallOutcome.NO_ANSWER),
        (P.FAILED, CallOutcome.FAILED),
        (P.HUNG_UP_IN_GREETING, CallOutcome.HUNG_UP_IN_GREETING),
        (P.UNKNOWN, CallOutcome.OUTCOME_UNKNOWN),
    ],
)
def test_every_final_report_ends_the_attempt_and_the_seat_may_call_again(
    progress: CallProgress, outcome: CallOutcome
) -> None:
    mc = engine()
    case_id, key = calling(mc)
    view = mc.apply_call_event(CallEvent(key, progress, mc.clock.now()))
    assert view.last_outcome is outcome and view.state is CaseState.OWNER_CALLED
    assert mc.call_owner(case_id, agent_id="seat-1").attempt == 2


def test_reports_for_calls_the_case_is_not_waiting_on_are_refused() -> None:
    mc = engine()
    case_id, key = calling(mc)
    at = mc.clock.now()
    with pytest.raises(CallEventRefused, match="no such call"):
        mc.apply_call_event(CallEvent(call_key(case_id, 2), P.RINGING, at))
    with pytest.raises(CallEventRefused, match="never answered"):
        mc.apply_call_event(CallEvent(key, P.ENDED, at))
    assert progressed(mc, case_id) == []


def test_reports_of_a_call_the_switch_never_placed_are_refused_by_the_switch() -> None:
    mc = engine()
    with pytest.raises(TelephonyError):
        switch(mc).report(call_key("nobody", 1), P.RINGING)


@pytest.mark.parametrize(
    "build",
    [
        lambda at: CallEvent("no-key", P.RINGING, at),
        lambda at: CallEvent(call_key("c", 1) + "0x", P.RINGING, at),
        lambda at: CallEvent(call_key("c", 1), "ring", at),
        lambda at: CallEvent(call_key("c", 1), P.FAILED, at.replace(tzinfo=None)),
        lambda at: CallEvent(call_key("c", 1), P.FAILED, at, sip_status=99),
        lambda at: CallEvent(call_key("c", 1), P.FAILED, at, sip_status=True),
        lambda at: CallEvent(call_key("c", 1), P.FAILED, at, detail="x" * 201),
        lambda at: CallEvent(call_key("c", 1), P.FAILED, at, detail="a\x00b"),
    ],
)
def test_a_malformed_report_is_a_typed_error(build: object) -> None:
    assert callable(build)
    with pytest.raises(InvalidCommand):
        build(ManualClock().now())


@given(st.text(min_size=1, max_size=80), st.integers(1, 10**6))
def test_a_call_key_reads_back_whatever_the_case_id(case_id: str, attempt: int) -> None:
    assert parse_call_key(call_key(case_id, attempt)) == (case_id, attempt)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from([p for p in CallProgress if p is not P.DIALLING]), max_size=8))
def test_any_delivery_order_applies_each_report_once_and_in_rank_order(
    reports: list[CallProgress],
) -> None:
    """For all sequences of reports (repeated, reordered, late), what is stored climbs in
    rank, holds each progress once, and at most one outcome ends the attempt."""
    mc = engine()
    case_id, key = calling(mc)
    for progress in reports:
        with contextlib.suppress(CallEventRefused):
            mc.apply_call_event(CallEvent(key, progress, mc.clock.now()))
    # The model: a report applies when the call is still in flight and it climbs in rank;
    # "ended" only closes an answered call.
    expected: list[CallProgress] = []
    outcome = None
    for progress in reports:
        current = expected[-1] if expected else None
        if outcome is not None or rank(progress) <= (rank(current) if current else 0):
            continue
        if progress is P.ENDED and current is not P.ANSWERED:
            continue
        if rank(progress) >= FINAL_RANK and progress is not P.ENDED:
            outcome = progress
        else:
            expected.append(progress)
    assert progressed(mc, case_id) == expected
    outcomes = [e for e in mc.history(case_id) if type(e).__name__ == "CallOutcomeRecorded"]
    assert [o.outcome for o in outcomes] == ([] if outcome is None else [outcome_of(outcome)])


def test_the_switch_count_caps_calls_per_seat_and_in_total() -> None:
    mc = engine(limits=CallLimits(per_seat=1, total=2))
    _, key = calling(mc, "seat-1")
    second = mc.open_case(plate=PLATE, location="常武中路", requester_phone="13800001111")
    mc.locate_owner(second, agent_id="seat-1")
    version = mc.record(second).version
    with pytest.raises(CallLimitReached, match="seat"):
        mc.call_owner(second, agent_id="seat-1")
    assert mc.record(second).version == version  # nothing recorded, no attempt used
    mc.call_owner(second, agent_id="seat-2")
    third = mc.open_case(plate=PLATE, location="人民路", requester_phone="13800001111")
    mc.locate_owner(third, agent_id="seat-3")
    with pytest.raises(CallLimitReached, match="in total"):
        mc.call_owner(third, agent_id="seat-3")
    switch(mc).report(key, P.BUSY)  # the first call ends: a line is free
    mc.pump_call_events()
    assert mc.call_owner(third, agent_id="seat-3").attempt == 1


def test_a_cap_below_one_is_refused() -> None:
    with pytest.raises(InvalidCommand):
        CallLimits(per_seat=0)
    with pytest.raises(InvalidCommand):
        engine(limits="1")  # type: ignore[arg-type]


def _outbox_call(mc: MoveCar) -> tuple[str, str]:
    case_id, key = calling(mc)
    claimed = mc.outbox.claim("w1", limit=10, now=mc.clock.now()) if mc.outbox else []
    [place] = [c for c in claimed if c.effect.kind == PLACE_CALL]
    assert mc.run_effect(place.effect, attempt=place.attempts) == "dialled"
    return case_id, key


def test_a_repeated_dial_effect_reconciles_and_never_dials_twice() -> None:
    mc = engine(dispatch=Dispatch.OUTBOX)
    case_id, key = _outbox_call(mc)
    [place] = [e for e in mc.outbox.pending(case_id) if e.kind == PLACE_CALL]  # type: ignore[union-attr]
    # The worker died after dialling: its effect runs again.
    assert mc.run_effect(place, attempt=2) == "repeat: the call is live: dialling"
    switch(mc).report(key, P.NO_ANSWER)
    switch(mc).drain_events()  # the report was lost on its way
    said = mc.run_effect(place, attempt=3)
    assert said == "repeat: reconciled: the switch reported the call no_answer"
    assert mc.record(case_id).last_outcome is CallOutcome.NO_ANSWER
    assert mc.reconcile_call(case_id) == "nothing to reconcile: no call in flight"
    assert len(switch(mc).calls) == 1


def test_a_lost_report_is_found_by_its_key() -> None:
    mc = engine(dispatch=Dispatch.OUTBOX)
    case_id, key = _outbox_call(mc)
    switch(mc).report(key, P.NO_ANSWER)
    switch(mc).drain_events()  # lost
    said = mc.reconcile_call(case_id)
    assert said == "reconciled: the switch reported the call no_answer"
    assert mc.record(case_id).last_outcome is CallOutcome.NO_ANSWER
    assert len(switch(mc).calls) == 1


def test_a_call_the_switch_forgot_is_left_for_a_person() -> None:
    mc = engine(dispatch=Dispatch.OUTBOX)
    case_id, _ = _outbox_call(mc)
    switch(mc).clear()  # the switch restarted and knows nothing
    assert mc.reconcile_call(case_id) == "outcome unknown: left for a person, never redialled"
    assert mc.record(case_id).last_outcome is CallOutcome.OUTCOME_UNKNOWN
    assert switch(mc).calls == []


def test_reconciling_with_a_switch_that_cannot_be_asked_raises_and_records_nothing() -> None:
    mc = engine(dispatch=Dispatch.OUTBOX)
    case_id, _ = _outbox_call(mc)
    version = mc.record(case_id).version

    def down(key: str) -> None:
        raise TelephonyError("the switch is down")

    switch(mc).call_status = down  # type: ignore[assignment,method-assign]
    with pytest.raises(TelephonyError):
        mc.reconcile_call(case_id)
    assert mc.record(case_id).version == version


def test_a_pump_keeps_reports_a_failing_store_could_not_take() -> None:
    mc = engine()
    case_id, key = calling(mc)
    switch(mc).report(key, P.RINGING)
    switch(mc).report(key, P.ANSWERED)
    store = mc.store
    append = store.append_folded  # type: ignore[attr-defined]
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            from movecar_core.errors import PortError

            raise PortError("the store is down")
        return append(*args, **kwargs)

    store.append_folded = flaky  # type: ignore[attr-defined]
    first = mc.pump_call_events()
    assert [r.outcome for r in first] == ["failed"]
    second = mc.pump_call_events()
    assert [r.outcome for r in second] == ["applied", "applied"]
    assert progressed(mc, case_id) == [P.RINGING, P.ANSWERED]


def test_the_live_call_is_named_in_the_transfer_to_110() -> None:
    mc = engine()
    case_id, key = calling(mc)
    switch(mc).report(key, P.ANSWERED)
    mc.pump_call_events()
    mc.record_call_outcome(case_id, mc.record(case_id).call_in_flight or "", "answered_disputes")
    view = mc.escalate(case_id, "owner_uncooperative")
    assert view.state is CaseState.ESCALATED_TO_110
    [transfer] = switch(mc).transfers
    assert transfer.call_key == key and transfer.number == "0519-81997327"


def test_a_refused_transfer_keeps_the_case_escalating() -> None:
    mc = engine()
    case_id, _ = calling(mc)
    switch(mc).refuse_transfers = True
    with pytest.raises(TelephonyError, match="refused"):
        mc.escalate(case_id, "emergency_lane_blocked")
    assert mc.record(case_id).state is CaseState.ESCALATING
    assert isinstance(mc.history(case_id)[-1], TransferTo110Failed)
    switch(mc).refuse_transfers = False
    mc.escalate(case_id, "emergency_lane_blocked", command_id="retry-1")
    assert isinstance(mc.history(case_id)[-1], EscalatedTo110)


def test_a_transfer_of_a_call_that_is_over_fails() -> None:
    mc = engine()
    case_id, key = calling(mc)
    switch(mc).report(key, P.ANSWERED)
    switch(mc).report(key, P.ENDED)  # the owner hung up
    mc.pump_call_events()
    with pytest.raises(TelephonyError, match="failed"):
        mc.escalate(case_id, "owner_uncooperative")
    assert mc.record(case_id).state is CaseState.ESCALATING


def test_run_due_pumps_the_switch_first() -> None:
    clock = ManualClock(dt.datetime(2025, 3, 3, 9, tzinfo=dt.timezone(dt.timedelta(hours=8))))
    mc = engine(clock)
    case_id, key = calling(mc)
    switch(mc).report(key, P.DECLINED, sip_status=603)
    runs = mc.run_due()
    assert runs[0].kind == "call_event:declined" and runs[0].ok
    assert mc.record(case_id).last_outcome is CallOutcome.DECLINED


@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 5), st.sampled_from(["seat-1", "seat-2"])),
        max_size=40,
    )
)
def test_live_calls_count_as_a_recount_would(steps: list[tuple[bool, int, str]]) -> None:
    live = LiveCalls()
    model: dict[str, str] = {}
    for starts, n, agent in steps:
        key = call_key("c", n + 1)
        if starts:
            live.start(key, agent)
            model.setdefault(key, agent)
        else:
            live.end(key)
            model.pop(key, None)
    counts = live.counts()
    assert counts.total == len(model) == len(live)
    assert dict(counts.per_seat) == dict(Counter(model.values()))
