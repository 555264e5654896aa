"""Error messages never carry a full phone number, nor more than a short excerpt."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from movecar_core import InvalidCommand, InvalidPhone, InvalidPlate, MoveCar, parse_phone
from movecar_core.errors import MAX_MESSAGE, MoveCarError, redact
from movecar_core.testing.strategies import invalid_phones, phones

#: Text around a number in a message: no ASCII letters or digits (they would make it part
#: of a word or an id), anything else goes.
_AROUND = st.text(
    st.characters(blacklist_categories=["Nd", "Cs"], blacklist_characters="+-.() \u3000"),
    max_size=8,
).filter(lambda s: not any(c.isascii() and c.isalnum() for c in s))


def digits_of(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKC", text) if c.isdigit())


@given(phone=phones(), before=_AROUND, after=_AROUND)
def test_no_spelling_of_a_phone_survives_redaction(phone: str, before: str, after: str) -> None:
    national = parse_phone(phone).digits
    shown = redact(f"{before} {phone} {after}")
    assert national not in digits_of(shown)
    assert str(MoveCarError(f"{before}{phone}{after}")).count("*") >= 4


@given(phone=st.one_of(phones(), invalid_phones()))
def test_a_refused_phone_is_masked_in_its_error(phone: str) -> None:
    try:
        parse_phone(phone + "x")  # always refused
    except InvalidPhone as exc:
        message = str(exc)
    digits = digits_of(phone)
    if len(digits) >= 6:
        assert digits not in digits_of(message)
    assert len(message) <= MAX_MESSAGE


@pytest.mark.parametrize(
    "text",
    ["2024-04-01 08:30:00", "volume 1500000 fee 2,775,000.00", "case 3f2a91391234567812cd"],
)
def test_dates_amounts_and_ids_are_left_alone(text: str) -> None:
    assert redact(text) == text


def test_a_megabyte_of_input_gives_a_short_message() -> None:
    huge = "苏" * 1_000_000
    with pytest.raises(InvalidPlate) as plate:
        MoveCar.in_memory().open_case(plate=huge, location="x", requester_phone="13800001111")
    assert len(str(plate.value)) < 200
    with pytest.raises(InvalidCommand) as command:
        MoveCar.in_memory().open_case(
            plate="苏D12345", location="x", requester_phone="13800001111", command_id=huge
        )
    assert len(str(command.value)) < 200


def test_an_owner_number_from_the_registry_is_masked_in_the_error() -> None:
    mc = MoveCar.in_memory(owners={"苏D12345": "1391234567"})  # one digit short
    case_id = mc.open_case(plate="苏D12345", location="湖塘", requester_phone="13800001111")
    with pytest.raises(InvalidPhone) as info:
        mc.locate_owner(case_id)
    assert "1391234567" not in str(info.value)
    assert mc.case(case_id).state.value == "received"  # nothing written
