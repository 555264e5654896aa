"""The one definition, its derived lookup, and the fold."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from movecar_core.case import TERMINAL_STATES, CaseOpened, CaseRecord, CaseState
from movecar_core.errors import (
    CallAttemptsExhausted,
    CallInFlight,
    CaseClosed,
    CommandRejected,
    IllegalTransition,
    OwnerNotLocated,
)
from movecar_core.machine import (
    DEFINITION,
    LOOKUP,
    TRIGGERS,
    CasePolicy,
    CorruptHistory,
    build_machine,
    check,
    fold,
    mermaid,
)
from movecar_core.testing.contracts import T0, sample_history


def record(state: CaseState, attempts: int = 0, in_flight: str | None = None) -> CaseRecord:
    return CaseRecord(
        case_id="c",
        plate="苏D12345",
        location="x",
        requester_phone="13800001111",
        opened_at=T0,
        state=state,
        attempts=attempts,
        call_in_flight=in_flight,
    )


@given(
    state=st.sampled_from(CaseState),
    trigger=st.sampled_from(sorted(TRIGGERS)),
    attempts=st.integers(0, 4),
    in_flight=st.booleans(),
    limit=st.integers(1, 4),
)
def test_lookup_agrees_with_a_real_transitions_machine(
    state: CaseState, trigger: str, attempts: int, in_flight: bool, limit: int
) -> None:
    """The hot path's dict and ``transitions`` itself give the same answer everywhere."""
    case = record(state, attempts, "call" if in_flight else None)
    policy = CasePolicy(max_call_attempts=limit)
    model = build_machine(case, policy)
    allowed_by_transitions = model.may_trigger(trigger)
    try:
        dest = check(case, trigger, policy)
    except CommandRejected:
        assert not allowed_by_transitions
    else:
        assert allowed_by_transitions
        model.trigger(trigger)
        assert model.state == dest.value


def test_every_state_is_defined_and_terminal_states_have_no_way_out() -> None:
    assert set(DEFINITION["states"]) == {s.value for s in CaseState}
    assert {s for s, _ in LOOKUP} == set(CaseState) - TERMINAL_STATES
    assert {s.value for s in TERMINAL_STATES} == {
        "moved",
        "escalated_to_110",
        "cancelled",
        "unresolved",
    }


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES))
@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_terminal_states_reject_every_trigger(state: CaseState, trigger: str) -> None:
    with pytest.raises(CaseClosed):
        check(record(state), trigger, CasePolicy())


def test_escalation_from_every_open_state_and_cancel_from_all_but_escalating() -> None:
    for state in set(CaseState) - TERMINAL_STATES:
        assert check(record(state), "escalated", CasePolicy()) is CaseState.ESCALATED_TO_110
        assert check(record(state), "escalation_requested", CasePolicy()) is (CaseState.ESCALATING)
        if state is CaseState.ESCALATING:  # a transfer may be under way: no cancel
            with pytest.raises(IllegalTransition):
                check(record(state), "cancelled", CasePolicy())
        else:
            assert check(record(state), "cancelled", CasePolicy()) is CaseState.CANCELLED


def test_escalating_accepts_only_the_transfer_and_its_outcome() -> None:
    allowed = {trigger for trigger in TRIGGERS if (CaseState.ESCALATING, trigger) in LOOKUP}
    assert allowed == {"escalation_requested", "transfer_failed", "escalated"}


@pytest.mark.parametrize(
    ("case", "trigger", "error"),
    [
        (record(CaseState.RECEIVED), "call_placed", OwnerNotLocated),
        (record(CaseState.OWNER_CALLED, 1, "c1"), "call_placed", CallInFlight),
        (record(CaseState.OWNER_CALLED, 3), "call_placed", CallAttemptsExhausted),
        (record(CaseState.OWNER_LOCATED), "move_confirmed", IllegalTransition),
        (record(CaseState.OWNER_CALLED, 1, "c1"), "move_confirmed", CallInFlight),
    ],
)
def test_guards_raise_their_own_errors(
    case: CaseRecord, trigger: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        check(case, trigger, CasePolicy())
    assert trigger in str(info.value) and case.state.value in str(info.value)


def test_fold_of_a_sample_history() -> None:
    case = fold(sample_history("c9"))
    assert case.state is CaseState.ESCALATED_TO_110
    assert case.version == 5
    assert case.attempts == 1
    assert case.closed_at is not None and case.closed_at > case.opened_at


def test_fold_rejects_impossible_histories() -> None:
    events = sample_history("c9")
    with pytest.raises(CorruptHistory):
        fold(events[1:])  # no CaseOpened
    with pytest.raises(CorruptHistory):
        fold([events[0], events[2]])  # a call before the owner was located
    with pytest.raises(CorruptHistory):
        fold([*events, events[4]])  # escalated twice
    opened = events[0]
    assert isinstance(opened, CaseOpened)
    with pytest.raises(CorruptHistory):
        fold([opened, opened])


def test_mermaid_diagram_comes_from_the_definition() -> None:
    text = mermaid()
    assert text.count("stateDiagram-v2") == 1
    for t in DEFINITION["transitions"]:
        assert t["trigger"] in text
    assert "owner_called --> unresolved" in text


def test_policy_needs_at_least_one_attempt() -> None:
    with pytest.raises(ValueError, match="max_call_attempts"):
        CasePolicy(max_call_attempts=0)


def test_times_are_aware() -> None:
    assert T0.tzinfo is not None and T0.utcoffset() == dt.timedelta(hours=8)
