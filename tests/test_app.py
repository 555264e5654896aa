"""The facade, through the in-memory adapters: what a seat application relies on."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from ports_only import ports_only_engine

from movecar_core import (
    WUJIN_114_2024,
    CallAttemptsExhausted,
    CallInFlight,
    CallOutcome,
    CaseClosed,
    CaseState,
    CommandIdReused,
    EscalatedTo110,
    EscalationReason,
    EscalationRequested,
    IllegalTransition,
    InvalidCommand,
    InvalidPhone,
    InvalidPlate,
    MoveCar,
    NoCallInFlight,
    OwnerNotLocated,
    RegistryUnavailable,
    TelephonyError,
    TransferTo110Failed,
    UnknownCall,
    UnknownCase,
    WrittenNotice,
)
from movecar_core.calls import TransferOutcome, TransferRequest
from movecar_core.case import CaseUnresolved, OwnerLookedUp, UnresolvedReason
from movecar_core.clock import ManualClock
from movecar_core.memory import InMemoryNotifier, InMemoryTelephony, InMemoryVehicleRegistry

OWNER = "13912345678"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def mc(clock: ManualClock) -> MoveCar:
    return MoveCar.in_memory(owners={"苏D12345": OWNER}, clock=clock)


def opened(mc: MoveCar, plate: str = "苏D·12345") -> str:
    return mc.open_case(plate=plate, location="武进区湖塘镇", requester_phone="13800001111")


def called(mc: MoveCar) -> tuple[str, str]:
    case_id = opened(mc)
    mc.locate_owner(case_id, agent_id="seat-7")
    return case_id, mc.call_owner(case_id, agent_id="seat-7").call_id


def telephony(mc: MoveCar) -> InMemoryTelephony:
    assert isinstance(mc.telephony, InMemoryTelephony)
    return mc.telephony


def test_happy_path(mc: MoveCar, clock: ManualClock) -> None:
    case_id = opened(mc)
    assert mc.case(case_id).state is CaseState.RECEIVED
    assert mc.locate_owner(case_id).state is CaseState.OWNER_LOCATED
    clock.advance(seconds=30)
    call = mc.call_owner(case_id, agent_id="seat-7")
    assert call.caller_id == "0519110"
    assert call.greeting == "您好，这是公安 110 挪车服务专线，您是苏D12345 车主吗？"
    assert telephony(mc).calls[0].callee == OWNER
    assert telephony(mc).calls[0].caller_id == WUJIN_114_2024.caller_id
    mc.record_call_outcome(case_id, call.call_id, CallOutcome.ANSWERED_AGREED)
    clock.advance(minutes=5)
    view = mc.confirm_moved(case_id)
    assert view.state is CaseState.MOVED
    assert view.closed_at == clock.now()
    assert [type(e).__name__ for e in mc.history(case_id)] == [
        "CaseOpened",
        "OwnerLookedUp",
        "OwnerCallPlaced",
        "CallOutcomeRecorded",
        "MoveConfirmed",
    ]


def test_each_lookup_is_an_event_naming_who_and_when(mc: MoveCar, clock: ManualClock) -> None:
    case_id = opened(mc)
    mc.locate_owner(case_id, agent_id="seat-3")
    lookup = mc.history(case_id)[1]
    assert isinstance(lookup, OwnerLookedUp)
    assert (lookup.agent_id, lookup.at, lookup.case_id) == ("seat-3", clock.now(), case_id)
    with pytest.raises(Exception, match="owner_found"):
        mc.locate_owner(case_id)  # a second look-up serves no purpose: refused
    assert len(mc.history(case_id)) == 2


def test_unknown_owner_leaves_case_unresolved(mc: MoveCar) -> None:
    case_id = opened(mc, "苏E99999")
    view = mc.locate_owner(case_id)
    assert view.state is CaseState.UNRESOLVED
    assert view.unresolved_reason is UnresolvedReason.OWNER_NOT_FOUND


def test_registry_down_is_a_typed_error_and_writes_nothing(mc: MoveCar) -> None:
    case_id = opened(mc)
    assert isinstance(mc.registry, InMemoryVehicleRegistry)
    mc.registry.available = False
    with pytest.raises(RegistryUnavailable):
        mc.locate_owner(case_id)
    assert len(mc.history(case_id)) == 1


def test_owner_is_called_only_after_being_located(mc: MoveCar) -> None:
    case_id = opened(mc)
    with pytest.raises(OwnerNotLocated):
        mc.call_owner(case_id, agent_id="seat-7")
    assert telephony(mc).calls == []


def test_one_call_in_flight_and_attempt_limit(mc: MoveCar) -> None:
    case_id, call_id = called(mc)
    with pytest.raises(CallInFlight):
        mc.call_owner(case_id, agent_id="seat-8")
    mc.record_call_outcome(case_id, call_id, CallOutcome.NO_ANSWER)
    second = mc.call_owner(case_id, agent_id="seat-7")
    assert second.attempt == 2
    mc.record_call_outcome(case_id, second.call_id, CallOutcome.BUSY)
    third = mc.call_owner(case_id, agent_id="seat-7")
    view = mc.record_call_outcome(case_id, third.call_id, CallOutcome.NO_ANSWER)
    assert view.state is CaseState.UNRESOLVED
    assert view.unresolved_reason is UnresolvedReason.OWNER_UNREACHABLE
    assert isinstance(mc.history(case_id)[-1], CaseUnresolved)
    assert len(telephony(mc).calls) == 3
    with pytest.raises(CaseClosed):
        mc.call_owner(case_id, agent_id="seat-7")


def test_refusal_on_last_attempt_keeps_case_open_for_escalation(mc: MoveCar) -> None:
    case_id, call_id = called(mc)
    for _ in range(2):
        mc.record_call_outcome(case_id, call_id, CallOutcome.NO_ANSWER)
        call_id = mc.call_owner(case_id, agent_id="seat-7").call_id
    view = mc.record_call_outcome(case_id, call_id, CallOutcome.ANSWERED_REFUSED)
    assert view.state is CaseState.OWNER_CALLED
    with pytest.raises(CallAttemptsExhausted):
        mc.call_owner(case_id, agent_id="seat-7")
    view = mc.escalate(case_id, EscalationReason.OWNER_UNCOOPERATIVE)
    assert view.state is CaseState.ESCALATED_TO_110
    transfer = telephony(mc).transfers[0]
    assert (transfer.number, transfer.reason) == ("0519-81997327", "owner_uncooperative")


def test_outcome_must_name_the_call_in_flight(mc: MoveCar) -> None:
    case_id, call_id = called(mc)
    with pytest.raises(UnknownCall):
        mc.record_call_outcome(case_id, "other", CallOutcome.ANSWERED_AGREED)
    mc.record_call_outcome(case_id, call_id, CallOutcome.ANSWERED_AGREED)
    with pytest.raises(NoCallInFlight):
        mc.record_call_outcome(case_id, call_id, CallOutcome.ANSWERED_AGREED)
    with pytest.raises(InvalidCommand, match="outcome"):
        mc.record_call_outcome(case_id, call_id, "hung_up")


def test_repeated_command_id_is_a_no_op_returning_the_first_result(mc: MoveCar) -> None:
    case_id, call_id = called(mc)
    first = mc.record_call_outcome(case_id, call_id, "answered_agreed", command_id="cb-1")
    again = mc.record_call_outcome(case_id, call_id, "answered_agreed", command_id="cb-1")
    assert again == first
    assert len(mc.history(case_id)) == 4
    with pytest.raises(CommandIdReused):
        mc.confirm_moved(case_id, command_id="cb-1")


def test_repeated_open_case_returns_the_same_case(mc: MoveCar) -> None:
    a = mc.open_case(
        plate="苏D12345", location="x", requester_phone="13800001111", command_id="in-1"
    )
    b = mc.open_case(
        plate="苏D12345", location="x", requester_phone="13800001111", command_id="in-1"
    )
    assert a == b
    assert len(list(mc.store.case_ids())) == 1


def test_dispute_then_moved_or_escalated(mc: MoveCar) -> None:
    case_id, call_id = called(mc)
    assert mc.record_call_outcome(case_id, call_id, "answered_disputes").state is (
        CaseState.DISPUTED
    )
    assert mc.confirm_moved(case_id).state is CaseState.MOVED
    other, call2 = called(mc)
    mc.record_call_outcome(other, call2, "answered_agreed")
    assert mc.dispute(other, note="车主称车辆非其所有").state is CaseState.DISPUTED
    assert mc.escalate(other, "dispute_unresolved").state is CaseState.ESCALATED_TO_110


def test_escalation_reason_other_needs_a_note(mc: MoveCar) -> None:
    case_id = opened(mc)
    with pytest.raises(InvalidCommand, match="note"):
        mc.escalate(case_id, EscalationReason.OTHER)
    with pytest.raises(InvalidCommand, match="reason"):
        mc.escalate(case_id, "because")
    assert mc.escalate(case_id, "other", note="群众情绪激动").state is CaseState.ESCALATED_TO_110


def test_failed_transfer_is_recorded_and_can_be_retried(mc: MoveCar) -> None:
    """二(五): the transfer is recorded before it is placed; a refused one is recorded as
    failed, the case stays escalating (no cancel can hide the attempt), and escalating
    again retries."""
    case_id = opened(mc)
    telephony(mc).failing = True
    with pytest.raises(TelephonyError):
        mc.escalate(case_id, "emergency_lane_blocked", command_id="esc-1")
    view = mc.case(case_id)
    assert view.state is CaseState.ESCALATING
    assert view.escalation_reason is EscalationReason.EMERGENCY_LANE_BLOCKED
    requested, failed = mc.history(case_id)[1:]
    assert isinstance(requested, EscalationRequested)
    assert requested.transfer_number == "0519-81997327"
    assert isinstance(failed, TransferTo110Failed) and "transfer to" in failed.why
    assert failed.command_id == "esc-1"
    with pytest.raises(IllegalTransition):
        mc.cancel(case_id, note="求助人撤销")
    with pytest.raises(IllegalTransition):
        mc.locate_owner(case_id)
    assert mc.requester_view(case_id).status == "正在转接公安 110 指挥中心"
    # the repeat of the failed command returns its result; a new command retries
    assert mc.escalate(case_id, "emergency_lane_blocked", command_id="esc-1").version == 3
    telephony(mc).failing = False
    view = mc.escalate(case_id, "emergency_lane_blocked", command_id="esc-2")
    assert (view.state, view.version) == (CaseState.ESCALATED_TO_110, 5)
    assert [type(e).__name__ for e in mc.history(case_id)[1:]] == [
        "EscalationRequested", "TransferTo110Failed", "EscalationRequested", "EscalatedTo110",
    ]  # fmt: skip
    assert len(telephony(mc).transfers) == 1


def test_every_transfer_placed_is_in_the_history_before_it_is_placed(mc: MoveCar) -> None:
    """The switch is asked only once the request is stored: it sees the request in the
    history while it transfers."""
    case_id = opened(mc)
    seen: list[str] = []
    switch = telephony(mc)
    place = switch.transfer_to_110

    def transfer(request: TransferRequest) -> TransferOutcome:
        seen.append(type(mc.history(request.case_id)[-1]).__name__)
        return place(request)

    switch.transfer_to_110 = transfer  # type: ignore[method-assign]
    assert mc.escalate(case_id, "traffic_violation").state is CaseState.ESCALATED_TO_110
    assert seen == ["EscalationRequested"]
    last = mc.history(case_id)[-1]
    assert isinstance(last, EscalatedTo110) and last.reason is EscalationReason.TRAFFIC_VIOLATION


@pytest.mark.parametrize("ports_only", [False, True], ids=["records", "ports-only"])
def test_a_cancel_that_wins_the_race_leaves_no_transfer(
    clock: ManualClock, ports_only: bool
) -> None:
    """The old order (transfer, then append) lost this race: a cancel stored between the
    escalation's read and its append left a transfer to 110 on a cancelled case."""
    owners = {"苏D12345": OWNER}
    mc = ports_only_engine(owners, clock) if ports_only else MoveCar.in_memory(owners, clock)
    case_id = opened(mc)
    store: Any = mc.store
    raced: list[str] = []

    def racing(write: Any) -> Any:
        def another_seat_first(cid: str, events: Any, expected_version: int) -> Any:
            if not raced and isinstance(events[0], EscalationRequested):
                raced.append("cancel")
                mc.cancel(cid, note="求助人撤销")  # another seat, first
            return write(cid, events, expected_version)

        return another_seat_first

    # The engine writes with append_folded to a store that keeps records, else append.
    for name in ("append", "append_folded"):
        if hasattr(store, name):
            setattr(store, name, racing(getattr(store, name)))
    with pytest.raises(CaseClosed):
        mc.escalate(case_id, "owner_uncooperative")
    assert mc.case(case_id).state is CaseState.CANCELLED
    assert telephony(mc).transfers == []


def test_failed_dial_is_recorded_as_a_failed_attempt(mc: MoveCar) -> None:
    case_id = opened(mc)
    mc.locate_owner(case_id)
    telephony(mc).failing = True
    with pytest.raises(TelephonyError):
        mc.call_owner(case_id, agent_id="seat-7")
    view = mc.case(case_id)
    assert (view.attempts, view.last_outcome, view.call_in_flight) == (1, "failed", None)


def test_bad_input_is_refused_with_typed_errors(mc: MoveCar) -> None:
    with pytest.raises(InvalidPlate):
        mc.open_case(plate="苏I12345", location="x", requester_phone="13800001111")
    with pytest.raises(InvalidPhone):
        mc.open_case(plate="苏D12345", location="x", requester_phone="1380000")
    with pytest.raises(InvalidCommand, match="location"):
        mc.open_case(plate="苏D12345", location="  ", requester_phone="13800001111")
    assert list(mc.store.case_ids()) == []
    with pytest.raises(UnknownCase):
        mc.case("nope")
    with pytest.raises(KeyError):
        mc.locate_owner("nope")


def test_owner_phone_never_reaches_the_requester(mc: MoveCar) -> None:
    case_id, call_id = called(mc)
    mc.record_call_outcome(case_id, call_id, "answered_agreed")
    mc.confirm_moved(case_id)
    assert OWNER not in repr(mc.requester_view(case_id))
    assert isinstance(mc.notifier, InMemoryNotifier)
    assert [n.message for n in mc.notifier.sent] == [
        "【114挪车】您反映的苏D12345挪车求助：已电话通知车主挪车。",
        "【114挪车】您反映的苏D12345挪车求助：车辆已挪走，感谢您的耐心等待。",
    ]
    assert mc.case(case_id).owner_phone_masked == "139****5678"


def test_greeting_change_takes_a_written_notice(clock: ManualClock) -> None:
    notice = WrittenNotice(reference="武公指〔2025〕12号", dated=dt.date(2025, 3, 1))
    contract = WUJIN_114_2024.with_greeting(
        "您好，这里是 110 挪车专线，请问您是{plate}车主吗？", notice
    )
    mc = MoveCar.in_memory(owners={"苏D12345": OWNER}, clock=clock, contract=contract)
    case_id = opened(mc)
    mc.locate_owner(case_id)
    call = mc.call_owner(case_id, agent_id="seat-1")
    assert call.greeting == "您好，这里是 110 挪车专线，请问您是苏D12345车主吗？"
    assert call.greeting_version == "武公指〔2025〕12号"


def test_naive_clock_is_refused() -> None:
    class Naive:
        def now(self) -> dt.datetime:
            return dt.datetime(2025, 1, 1)

    mc = MoveCar.in_memory(clock=Naive())
    with pytest.raises(InvalidCommand, match="timezone"):
        opened(mc)


def test_the_seat_view_shows_each_field_of_the_record_in_its_place() -> None:
    """CaseView.of fills the view by position (every command returns one): each field
    must land where its name says."""
    from movecar_core.case import CaseRecord
    from movecar_core.views import CaseView

    at = dt.datetime(2024, 5, 1, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    record = CaseRecord(
        case_id="c1",
        plate="苏D12345",
        location="湖塘镇",
        requester_phone="13800001111",
        opened_at=at,
        state=CaseState.UNRESOLVED,
        version=7,
        owner_phone="0519-81997327",
        attempts=2,
        call_in_flight="call-9",
        last_outcome=CallOutcome.BUSY,
        escalation_reason=EscalationReason.OTHER,
        unresolved_reason=UnresolvedReason.OWNER_UNREACHABLE,
        closed_at=at + dt.timedelta(hours=1),
    )
    assert CaseView.of(record) == CaseView(
        case_id="c1",
        state=CaseState.UNRESOLVED,
        version=7,
        plate="苏D12345",
        location="湖塘镇",
        opened_at=at,
        closed_at=at + dt.timedelta(hours=1),
        requester_phone_masked="138****1111",
        owner_located=True,
        owner_phone_masked="0519-****7327",
        attempts=2,
        call_in_flight="call-9",
        last_outcome=CallOutcome.BUSY,
        escalation_reason=EscalationReason.OTHER,
        unresolved_reason=UnresolvedReason.OWNER_UNREACHABLE,
    )
