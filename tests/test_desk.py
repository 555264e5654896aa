"""Roles (四, 七): every command and query through a desk, every role × every action.

The permission table is one table in the core (movecar_core.roles.PERMISSIONS); a desk
checks it before anything is read or written, logs each refusal, masks what it shows,
and shows the owner's number only to the seat handling the open case.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any

import pytest

from movecar_core import EscalationReason, InvalidCommand, MoveCar
from movecar_core.clock import ManualClock
from movecar_core.desk import DENIED, Desk, masked_event
from movecar_core.incidents import Incidents, InMemoryIncidentStore
from movecar_core.recordings import InMemoryAccessLog
from movecar_core.roles import PERMISSIONS, Action, Actor, InvalidActor, PermissionDenied, Role
from movecar_core.settlement import ServiceMonth

PLATE, OWNER, REQUESTER = "苏D12345", "13912345678", "13800001111"
SEAT = "seat-7"

#: How each action is done through a desk, on a case ready for it (see ``ready``).
DOING: dict[Action, Callable[[Desk, str], Any]] = {
    Action.OPEN_CASE: lambda d, _: d.open_case(
        plate=PLATE, location="湖塘镇", requester_phone=REQUESTER
    ),
    Action.LOCATE_OWNER: lambda d, c: d.locate_owner(c),
    Action.CALL_OWNER: lambda d, c: d.call_owner(c),
    Action.RECORD_CALL_OUTCOME: lambda d, c: d.record_call_outcome(
        c, d.engine.record(c).call_in_flight or "", "answered_agreed"
    ),
    Action.CONFIRM_MOVED: lambda d, c: d.confirm_moved(c),
    Action.DISPUTE: lambda d, c: d.dispute(c, note="车主称车辆非其所有"),
    Action.CANCEL: lambda d, c: d.cancel(c, note="求助人已自行解决"),
    Action.ESCALATE: lambda d, c: d.escalate(c, EscalationReason.EMERGENCY_LANE_BLOCKED),
    Action.READ_CASE: lambda d, c: d.case(c),
    Action.READ_HISTORY: lambda d, c: d.history(c),
    Action.READ_OWNER_CONTACT: lambda d, c: d.owner_contact(c),
    Action.READ_REPORT: lambda d, _: d.report(ServiceMonth(2024, 4)),
    Action.SETTLE_MONTH: lambda d, _: d.settle_month(ServiceMonth(2024, 4)),
    Action.BLOCK_REQUESTER: lambda d, _: d.block_requester("13700009999", reason="恶意挪车"),
    Action.READ_BLOCK_LIST: lambda d, _: d.blocked_requesters(),
    Action.RECORD_INCIDENT: lambda d, _: d.start_outage("核心交换机故障"),
    Action.READ_INCIDENTS: lambda d, _: d.incident_month(ServiceMonth(2024, 4)),
}

#: The state each action needs: how far the case goes first (by the engine itself).
STAGE = {
    Action.LOCATE_OWNER: "opened",
    Action.CALL_OWNER: "located",
    Action.RECORD_CALL_OUTCOME: "calling",
    Action.CONFIRM_MOVED: "answered",
    Action.DISPUTE: "answered",
    Action.READ_OWNER_CONTACT: "located",
}


def engine() -> MoveCar:
    return MoveCar.in_memory({PLATE: OWNER}, ManualClock())


def ready(mc: MoveCar, action: Action) -> str:
    stage = STAGE.get(action, "opened")
    case_id = mc.open_case(
        plate=PLATE, location="湖塘镇花园街 8 号", requester_phone=REQUESTER, agent_id=SEAT
    )
    if stage in ("located", "calling", "answered"):
        mc.locate_owner(case_id, agent_id=SEAT)
    if stage in ("calling", "answered"):
        call = mc.call_owner(case_id, agent_id=SEAT)
        if stage == "answered":
            mc.record_call_outcome(case_id, call.call_id, "answered_agreed")
    return case_id


#: Actions guarded outside the desk: the recording store checks its own two (with the
#: audio's own access log), and the CLI's ``audit verify`` checks ``evidence.verify``
#: with :meth:`Desk.check` (it reads the database whole, no engine method does).
RECORDING_ACTIONS = frozenset({Action.EXTRACT_RECORDING, Action.READ_RECORDING_METADATA})
CLI_ONLY_ACTIONS = frozenset({Action.VERIFY_EVIDENCE})
NOT_ON_A_DESK = RECORDING_ACTIONS | CLI_ONLY_ACTIONS


def test_every_guarded_action_has_a_row_and_a_desk_method() -> None:
    desk_actions = set(DOING)
    assert not desk_actions & NOT_ON_A_DESK
    assert desk_actions | NOT_ON_A_DESK == set(Action) == set(PERMISSIONS)
    public = {n for n in dir(Desk) if not n.startswith("_")} - {"engine", "actor", "access_log"}
    public -= {"check"}  # the check itself, for the CLI-only actions (no action of its own)
    public -= {"incidents", "end_outage", "report_security_incident"}  # RECORD_INCIDENT too
    # requester_view shares READ_CASE; unblock_requester BLOCK_REQUESTER; block_history
    # and requester_usage READ_BLOCK_LIST
    assert len(public) == len(DOING) + 4


@pytest.mark.parametrize(("action", "role"), list(itertools.product(DOING, Role)), ids=str)
def test_every_role_and_every_action(action: Action, role: Role) -> None:
    clock = ManualClock()
    mc = MoveCar.in_memory({PLATE: OWNER}, clock)
    case_id = ready(mc, action)
    if action is Action.SETTLE_MONTH:
        clock.advance(days=40)  # the month is over
    desk = Desk(mc, Actor(SEAT, role), incidents=Incidents(InMemoryIncidentStore(), clock=clock))
    before = len(mc.history(case_id))
    if role in PERMISSIONS[action]:
        DOING[action](desk, case_id)  # allowed: it runs
        return
    with pytest.raises(PermissionDenied, match=re.escape(action.value)):
        DOING[action](desk, case_id)
    assert len(mc.history(case_id)) == before  # nothing written
    log = mc.access_log
    assert isinstance(log, InMemoryAccessLog)
    [entry] = [e for e in log.entries() if e.action.startswith(DENIED)]
    assert (entry.actor, entry.action) == (SEAT, f"{DENIED}{action.value}")
    assert OWNER not in str(entry) and REQUESTER not in str(entry)


def test_the_owner_number_is_shown_to_the_handling_seat_of_an_open_case_only() -> None:
    mc = engine()
    case_id = ready(mc, Action.READ_OWNER_CONTACT)
    assert Desk(mc, Actor(SEAT, "agent")).owner_contact(case_id) == OWNER
    with pytest.raises(PermissionDenied, match="another seat"):
        Desk(mc, Actor("seat-8", "agent")).owner_contact(case_id)
    Desk(mc, Actor(SEAT, "agent")).cancel(case_id, note="求助人已自行解决")
    with pytest.raises(PermissionDenied, match="closed"):
        Desk(mc, Actor(SEAT, "agent")).owner_contact(case_id)
    log = mc.access_log
    assert isinstance(log, InMemoryAccessLog)
    actions = [(e.actor, e.action) for e in log.entries(case_id)]
    assert actions == [
        (SEAT, "read_owner_contact"),
        ("seat-8", f"{DENIED}case.owner_contact"),
        (SEAT, f"{DENIED}case.owner_contact"),
    ]
    assert all(OWNER not in str(e) for e in log.entries())


def test_commands_are_the_actors_own() -> None:
    mc = engine()
    desk = Desk(mc, Actor(SEAT, "agent"))
    case_id = desk.open_case(plate=PLATE, location="湖塘镇", requester_phone=REQUESTER)
    desk.locate_owner(case_id)
    call = desk.call_owner(case_id)
    placed = mc.history(case_id)
    assert [getattr(e, "agent_id", None) for e in placed] == [SEAT, SEAT, SEAT]
    assert call.caller_id == "0519110"


def test_the_case_record_a_desk_shows_has_every_number_masked() -> None:
    mc = engine()
    case_id = ready(mc, Action.CONFIRM_MOVED)
    mc.dispute(case_id, note="车主说求助人 13800001111 搞错了，回电 0519-81234567")
    shown = Desk(mc, Actor("desk-1", "command_centre")).history(case_id)
    text = repr(shown)
    for number in (OWNER, REQUESTER, "81234567"):
        assert number not in text
    assert "139******78" in text or "139****5678" in text
    assert len(shown) == len(mc.history(case_id))
    log = mc.access_log
    assert isinstance(log, InMemoryAccessLog)
    assert [e.action for e in log.entries(case_id)] == ["read_history"]


def test_masking_leaves_an_event_without_numbers_as_it_is() -> None:
    mc = engine()
    case_id = ready(mc, Action.READ_CASE)
    [opened] = mc.history(case_id)
    assert masked_event(opened).requester_phone != opened.requester_phone  # type: ignore[union-attr]
    mc.cancel(case_id, note="求助人已自行解决")
    cancelled = mc.history(case_id)[-1]
    assert masked_event(cancelled) is cancelled


def test_a_desk_needs_an_actor() -> None:
    with pytest.raises(InvalidActor):
        Desk(engine(), "seat-1")  # type: ignore[arg-type]
    with pytest.raises(InvalidActor):
        Actor("seat-1", "janitor")


def test_the_docs_show_the_table() -> None:
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "roles.md").read_text("utf-8")
    rows = re.findall(r"^\| `([a-z_.]+)` \|(.*)\|$", page, re.M)
    shown = {
        Action(name): frozenset(
            r for r, cell in zip(Role, cells.split("|"), strict=True) if "yes" in cell
        )
        for name, cells in rows
        if "." in name
    }
    assert shown == dict(PERMISSIONS)


def test_the_incident_commands_name_the_supervisor_and_need_a_log() -> None:
    clock = ManualClock()
    mc = MoveCar.in_memory({PLATE: OWNER}, clock)
    log = Incidents(InMemoryIncidentStore(), clock=clock)
    desk = Desk(mc, Actor("sup-1", "supervisor"), incidents=log)
    outage = desk.start_outage("机房断电")
    clock.advance(minutes=20)
    desk.end_outage()
    desk.report_security_incident("leak", "坐席电脑丢失")
    assert [r.actor for r in log.store.records()] == ["sup-1"] * 3
    assert log.outages()[0].incident_id == outage.incident_id
    with pytest.raises(InvalidCommand, match="no incident log"):
        Desk(mc, Actor("sup-1", "supervisor")).start_outage("断电")
