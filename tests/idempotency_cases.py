"""Idempotency that cannot silently lie: the same cases on every store.

For every command that takes a ``command_id``: a repeat with the same arguments (in any
accepted spelling) returns the first result and writes nothing; a repeat with other
arguments raises CommandIdReused and writes nothing, also once the case is closed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from movecar_core import CallOutcome, CommandIdReused, EscalationReason, MoveCar

Build = Callable[[], MoveCar]
OWNERS = {"苏D12345": "13912345678", "苏D54321": "13912340000"}

#: Same-meaning spellings of each argument, and an argument that means something else.
PLATES = {"苏D12345": ["苏D12345", "苏D·12345", "苏D 12345", "苏d12345"], "苏D54321": ["苏D54321"]}
PHONES = {
    "13800001111": ["13800001111", "138-0000-1111", "+86 138 0000 1111"],
    "13800002222": ["13800002222"],
}
NOTES = {"车主已挪车": ["车主已挪车", "  车主已挪车 "], "求助人撤回": ["求助人撤回"]}
COMMANDS = [
    "open_case", "locate_owner", "call_owner", "record_call_outcome",
    "confirm_moved", "dispute", "cancel", "escalate",
]  # fmt: skip


def _prepare(mc: MoveCar, command: str) -> tuple[str, str | None]:
    """A case where ``command`` is allowed; the call in flight, if any."""
    if command == "open_case":
        return "", None
    case_id = mc.open_case(plate="苏D12345", location="湖塘镇", requester_phone="13800001111")
    if command in ("locate_owner", "cancel", "escalate"):
        return case_id, None
    mc.locate_owner(case_id, agent_id="seat-1")
    if command == "call_owner":
        return case_id, None
    call = mc.call_owner(case_id, agent_id="seat-1")
    if command == "record_call_outcome":
        return case_id, call.call_id
    mc.record_call_outcome(case_id, call.call_id, CallOutcome.ANSWERED_AGREED)
    return case_id, None


def _run(mc: MoveCar, command: str, case_id: str, cid: str, args: dict[str, Any]) -> Any:
    if command == "open_case":
        return mc.open_case(command_id=cid, **args)
    result = getattr(mc, command)(case_id, command_id=cid, **args)
    return result.call_id if command == "call_owner" else result


def _arguments(
    data: st.DataObject, command: str, call_id: str | None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(first arguments, the same in another spelling, arguments that differ)."""
    pick = data.draw
    if command == "open_case":
        plate, phone = pick(st.sampled_from(["苏D12345"])), "13800001111"
        first = {"plate": plate, "location": "湖塘镇", "requester_phone": phone}
        same = {
            "plate": pick(st.sampled_from(PLATES[plate])),
            "location": pick(st.sampled_from(["湖塘镇", " 湖塘镇 "])),
            "requester_phone": pick(st.sampled_from(PHONES[phone])),
        }
        field = pick(st.sampled_from(["plate", "location", "requester_phone", "agent_id"]))
        other = {"plate": "苏D54321", "location": "花园街", "requester_phone": "13800002222",
                 "agent_id": "seat-9"}[field]  # fmt: skip
        return first, same, {**first, field: other}
    if command in ("locate_owner", "call_owner"):
        return {"agent_id": "seat-1"}, {"agent_id": " seat-1 "}, {"agent_id": "seat-2"}
    if command == "record_call_outcome":
        first = {"call_id": call_id, "outcome": CallOutcome.NO_ANSWER}
        spelling = pick(st.sampled_from(["no_answer", CallOutcome.NO_ANSWER]))
        same = {"call_id": call_id, "outcome": spelling}
        field = pick(st.sampled_from(["call_id", "outcome"]))
        other = {"call_id": "another-call", "outcome": CallOutcome.BUSY}[field]
        return first, same, {**first, field: other}
    if command == "escalate":
        first = {"reason": EscalationReason.TRAFFIC_VIOLATION, "note": "占道"}
        same = {"reason": "traffic_violation", "note": " 占道"}
        field = pick(st.sampled_from(["reason", "note"]))
        other = {"reason": EscalationReason.EMERGENCY_HELP, "note": "另一说明"}[field]
        return first, same, {**first, field: other}
    note = "车主已挪车"
    return (
        {"note": note},
        {"note": pick(st.sampled_from(NOTES[note]))},
        {"note": "求助人撤回"},
    )


class IdempotencyCases:
    """Needs fixture ``build``: a fresh engine (any store) knowing :data:`OWNERS`."""

    max_examples = 60

    @pytest.mark.parametrize("command", COMMANDS)
    def test_same_id_same_arguments_is_a_repeat_other_arguments_are_refused(
        self, build: Build, command: str
    ) -> None:
        mc = build()

        @settings(
            max_examples=self.max_examples,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(data=st.data())
        def check(data: st.DataObject) -> None:
            case_id, call_id = _prepare(mc, command)
            first, same, other = _arguments(data, command, call_id)
            cid = f"cmd-{uuid.uuid4().hex}"
            result = _run(mc, command, case_id, cid, first)
            target = result if command == "open_case" else case_id
            history = mc.history(target)
            assert _run(mc, command, case_id, cid, same) == result
            assert mc.history(target) == history  # nothing written by the repeat
            with pytest.raises(CommandIdReused):
                _run(mc, command, case_id, cid, other)
            assert mc.history(target) == history
            # Closed now (or already): a changed repeat is still CommandIdReused, not
            # CaseClosed; an unchanged one still returns the first result.
            if not mc.case(target).state.is_terminal:
                mc.escalate(target, EscalationReason.OTHER, note="结案")
            closed = mc.history(target)
            with pytest.raises(CommandIdReused):
                _run(mc, command, case_id, cid, other)
            repeat = _run(mc, command, case_id, cid, same)
            if command in ("open_case", "call_owner"):
                assert repeat == result
            else:
                assert repeat.version == result.version  # the view as the first run left it
            assert mc.history(target) == closed

        check()
