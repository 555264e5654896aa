"""The test kit as a host meets it: Hypothesis knows our types once movecar is installed,
and what it draws for a command is a command the engine parses (a refusal is a rule of
the case, never a malformed field)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from movecar_core.app import MoveCar
from movecar_core.commands import (
    COMMAND_TYPES,
    CallOwner,
    Command,
    LocateOwner,
    OpenCase,
    RecordCallOutcome,
    execute,
)
from movecar_core.desk import Desk
from movecar_core.errors import CaseError, InvalidInput, MoveCarError
from movecar_core.phones import Phone, PhoneNumber, parse_phone
from movecar_core.plates import Plate, parse_plate
from movecar_core.roles import Actor, Role


def test_a_fresh_interpreter_knows_the_types_through_the_entry_point() -> None:
    """Nothing of ours imported first: importing Hypothesis runs the hook."""
    script = textwrap.dedent(
        """
        import sys
        from hypothesis import strategies as st
        assert "movecar_core.testing.hypothesis_plugin" in sys.modules
        from movecar_core.plates import Plate
        from movecar_core.phones import PhoneNumber
        from movecar_core.commands import COMMAND_TYPES
        for kind in (Plate, PhoneNumber, *COMMAND_TYPES):
            value = st.from_type(kind).example()
            assert type(value) is kind, (kind, value)
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_phone_number_is_the_phone_class() -> None:
    assert PhoneNumber is Phone


@settings(max_examples=200)
@given(plate=st.from_type(Plate), phone=st.from_type(PhoneNumber))
def test_drawn_values_are_their_own_parse(plate: Plate, phone: Phone) -> None:
    assert parse_plate(plate.canonical) == plate
    assert parse_phone(phone.canonical) == phone


@settings(max_examples=100, deadline=None)
@given(opening=st.from_type(OpenCase), commands=st.lists(st.from_type(Command), max_size=6))
def test_drawn_commands_pass_every_input_check(opening: OpenCase, commands: list[Command]) -> None:
    """Each drawn command, pointed at a real case, is run or refused by the case's rules
    (a ``CaseError``), never as bad input; pointed at no case, it is ``UnknownCase``."""
    engine = Desk(MoveCar.in_memory({opening.plate: "13912345678"}), Actor("seat-1", Role.AGENT))
    case_id = execute(engine, opening)
    assert isinstance(case_id, str)
    for command in commands:
        try:
            execute(engine, command)  # a case id of its own: no such case
        except InvalidInput as refused:
            raise AssertionError(f"{command!r} refused as input: {refused}") from None
        except CaseError:
            pass
        if isinstance(command, OpenCase):
            continue
        aimed = command.__class__(case_id, *_fields_after_case(command, case_id))
        try:
            execute(engine, aimed)
        except InvalidInput as refused:
            raise AssertionError(f"{aimed!r} refused as input: {refused}") from None
        except CaseError:
            pass


def _fields_after_case(command: Command, case_id: str) -> list[object]:
    values = list(command.__attrs_attrs__)[1:]  # every field but the case id
    fields = [getattr(command, field.name) for field in values]
    if isinstance(command, RecordCallOutcome):  # the call key names its case
        attempt = command.call_id.rpartition(":call:")[2]
        fields[0] = f"{case_id}:call:{attempt}"
    return fields


def test_a_desk_runs_commands_as_its_actor() -> None:
    """:func:`execute` on a desk acts as its actor, and a repeated command id is the
    first result."""
    engine = MoveCar.in_memory({"苏D12345": "13912345678"})
    desk = Desk(engine, Actor("seat-07", Role.AGENT))
    case_id = execute(desk, OpenCase("苏D·12345", "人民路口", "13800001111"))
    assert isinstance(case_id, str)
    execute(desk, LocateOwner(case_id))
    call = execute(desk, CallOwner(case_id))
    assert engine.history(case_id)[-1].agent_id == "seat-07"  # type: ignore[attr-defined]
    repeat = execute(desk, OpenCase("苏D12345", "人民路口", "13800001111"), command_id="c1")
    assert execute(desk, OpenCase("苏D12345", "人民路口", "13800001111"), command_id="c1") == (
        repeat
    )
    assert call is not None and len(COMMAND_TYPES) == 8


def test_something_that_is_not_a_command_is_a_typed_error() -> None:
    desk = Desk(MoveCar.in_memory(), Actor("seat-1", Role.AGENT))
    with pytest.raises(MoveCarError, match="not a movecar command"):
        execute(desk, "open the case")  # type: ignore[arg-type]
