"""Effects are delivered, not parked: the same cases on every store (memory, SQL)."""

from __future__ import annotations

import datetime as dt

import pytest

from movecar_core import CallOutcome, CaseState, EscalationReason, MoveCar, PortError
from movecar_core.app import Dispatch
from movecar_core.clock import ManualClock
from movecar_core.memory import (
    InMemoryCommandCentre,
    InMemoryNotifier,
    InMemorySeatReminders,
    InMemoryTelephony,
    InMemoryVehicleRegistry,
)
from movecar_core.outbox import CALL_OUTCOME_DUE, FOLLOW_UP_CALL, NOTIFY_110, EffectPolicy
from movecar_core.ports import CaseStore

OWNER = "13912345678"


class FlakyDesk(InMemoryCommandCentre):
    """The 110 desk's mail, down until told otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True

    def notify(self, key: str, subject: str, message: str) -> None:
        if self.down:
            raise PortError("the 110 desk's mail server refused the connection")
        super().notify(key, subject, message)


def engine_on(store: CaseStore, clock: ManualClock, **ports: object) -> MoveCar:
    defaults: dict[str, object] = {
        "registry": InMemoryVehicleRegistry({"苏D12345": OWNER}),
        "telephony": InMemoryTelephony(),
        "notifier": InMemoryNotifier(),
        "command_centre": InMemoryCommandCentre(),
        "reminders": InMemorySeatReminders(),
    }
    defaults.update(ports)
    return MoveCar(store=store, clock=clock, **defaults)  # type: ignore[arg-type]


class DeliveryCases:
    """Needs fixtures ``store`` (a fresh CaseStore with an outbox) and ``clock``."""

    def opened(self, mc: MoveCar) -> str:
        return mc.open_case(plate="苏D12345", location="湖塘镇", requester_phone="13800001111")

    def test_the_110_notice_is_sent_during_escalate(
        self, store: CaseStore, clock: ManualClock
    ) -> None:
        mc = engine_on(store, clock)
        case_id = self.opened(mc)
        mc.escalate(case_id, EscalationReason.EMERGENCY_LANE_BLOCKED, note="堵住急诊通道")
        desk = mc.command_centre
        assert isinstance(desk, InMemoryCommandCentre)
        [notice] = desk.notices
        assert notice.key == f"{case_id}:3:{NOTIFY_110}"  # v2 requested it, v3 transferred
        assert "emergency_lane_blocked" in notice.message and "0519-81997327" in notice.message
        assert list(mc.outbox.pending(case_id)) == []  # type: ignore[union-attr]
        assert mc.run_due() == []  # nothing left to do

    def test_requesters_hear_of_each_change_and_never_of_the_owner(
        self, store: CaseStore, clock: ManualClock
    ) -> None:
        mc = engine_on(store, clock)
        case_id = self.opened(mc)
        mc.locate_owner(case_id, agent_id="seat-1")
        call = mc.call_owner(case_id, agent_id="seat-1")
        mc.record_call_outcome(case_id, call.call_id, CallOutcome.ANSWERED_AGREED)
        mc.confirm_moved(case_id)
        notifier = mc.notifier
        assert isinstance(notifier, InMemoryNotifier)
        assert [n.message for n in notifier.sent] == [
            "【114挪车】您反映的苏D12345挪车求助：已电话通知车主挪车。",
            "【114挪车】您反映的苏D12345挪车求助：车辆已挪走，感谢您的耐心等待。",
        ]
        assert all(n.phone == "13800001111" and OWNER not in n.message for n in notifier.sent)

    def test_timers_fire_in_run_due_and_follow_ups_are_reminders_not_dials(
        self, store: CaseStore, clock: ManualClock
    ) -> None:
        mc = engine_on(store, clock)
        case_id = self.opened(mc)
        mc.locate_owner(case_id, agent_id="seat-1")
        mc.call_owner(case_id, agent_id="seat-1")
        clock.advance(minutes=2)
        assert mc.run_due() == []  # the outcome is not overdue yet
        clock.advance(minutes=1, seconds=1)  # EffectPolicy.call_outcome_timeout: 3 minutes
        [run] = [r for r in mc.run_due() if r.kind == CALL_OUTCOME_DUE]
        # The switch still says "dialling": nobody can tell what became of the call, so a
        # person looks at it; the engine never redials.
        assert (run.ok, run.outcome) == (
            True,
            "outcome overdue: outcome unknown: left for a person, never redialled",
        )
        assert mc.case(case_id).last_outcome is CallOutcome.OUTCOME_UNKNOWN
        clock.advance(minutes=5)  # EffectPolicy.follow_up_after
        [run] = mc.run_due()
        assert (run.kind, run.outcome) == (FOLLOW_UP_CALL, "follow-up reminder sent to the seat")
        reminders = mc.reminders
        assert isinstance(reminders, InMemorySeatReminders)
        [reminder] = reminders.reminders
        assert (reminder.case_id, reminder.attempts_used, reminder.attempts_left) == (
            case_id,
            1,
            2,
        )
        assert reminder.due_at == clock.now()
        telephony = mc.telephony
        assert isinstance(telephony, InMemoryTelephony)
        assert len(telephony.calls) == 1  # the engine never dials a follow-up itself
        assert mc.run_due() == []

    def test_a_crash_before_inline_delivery_is_made_good_by_run_due(
        self, store: CaseStore, clock: ManualClock
    ) -> None:
        """The send is written leased to the engine that wrote it; if that engine dies
        before delivering, the lease runs out and run_due (any engine) delivers it."""
        writer = engine_on(store, clock, command_centre=None)  # "dies": cannot deliver
        case_id = self.opened(writer)
        writer.escalate(case_id, EscalationReason.EMERGENCY_LANE_BLOCKED)
        other = engine_on(store, clock)
        assert [r for r in other.run_due() if r.kind == NOTIFY_110] == []  # still leased
        clock.advance(minutes=3)  # the store's lease: 2 minutes
        [run] = [r for r in other.run_due() if r.kind == NOTIFY_110]
        assert (run.ok, run.outcome) == (True, "notice sent to 110")

    def test_a_port_that_is_down_leaves_the_effect_pending_until_it_is_back(
        self, store: CaseStore, clock: ManualClock
    ) -> None:
        desk = FlakyDesk()
        mc = engine_on(store, clock, command_centre=desk)
        case_id = self.opened(mc)
        view = mc.escalate(case_id, EscalationReason.TRAFFIC_VIOLATION)
        assert view.state is CaseState.ESCALATED_TO_110  # the command itself succeeded
        assert [e.kind for e in mc.outbox.pending(case_id)] == [NOTIFY_110]  # type: ignore[union-attr]
        assert mc.run_due() == []  # leased by the failed inline attempt: back off
        clock.advance(minutes=3)
        [failed] = mc.run_due()
        assert (failed.ok, failed.kind) == (False, NOTIFY_110)
        assert failed.error is not None and "refused the connection" in failed.error
        desk.down = False
        clock.advance(minutes=3)
        [sent] = mc.run_due()
        assert (sent.ok, sent.outcome) == (True, "notice sent to 110")
        assert len(desk.notices) == 1
        assert mc.run_due() == []

    def test_outbox_dispatch_leaves_the_work_to_run_due(
        self, store: CaseStore, clock: ManualClock
    ) -> None:
        store.effects = EffectPolicy(dispatch_calls=True)  # type: ignore[attr-defined]
        mc = engine_on(store, clock, dispatch=Dispatch.OUTBOX)  # as connect(dispatch="outbox")
        case_id = self.opened(mc)
        mc.escalate(case_id, EscalationReason.EMERGENCY_HELP)
        desk = mc.command_centre
        assert isinstance(desk, InMemoryCommandCentre)
        assert desk.notices == []
        assert {r.kind for r in mc.run_due()} == {NOTIFY_110, "notify_requester"}
        assert len(desk.notices) == 1

    def test_dispatch_must_match_the_store_policy(
        self, store: CaseStore, clock: ManualClock
    ) -> None:
        with pytest.raises(ValueError, match="dispatch_calls"):
            engine_on(store, clock, dispatch=Dispatch.OUTBOX)

    def test_the_clock_never_runs_backwards_for_timers(
        self, store: CaseStore, clock: ManualClock
    ) -> None:
        mc = engine_on(store, clock)
        self.opened(mc)
        with pytest.raises(ValueError, match="backwards"):
            clock.set(clock.now() - dt.timedelta(seconds=1))
