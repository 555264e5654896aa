"""Error messages never carry a full phone number, nor more than a short excerpt."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import assume, given
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
    [
        "2024-04-01 08:30:00",
        "volume 1500000 fee 2,775,000.00",
        "case 3f2a9c0b4d1e7a65",
        "case 3f2a91391234567812cd",
        "case 017d986b1576470982236720e202653b v2",
        "case 13e4d0e1bccf40e3a04d1b8951e147f8",
        "call 5f0e1d2c3b4a59687766554433221100:call:2",
    ],
)
def test_dates_amounts_and_ids_are_left_alone(text: str) -> None:
    assert redact(text) == text


@given(
    mobile=st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True),
    before=st.text(max_size=12),
    after=st.text(max_size=12),
)
def test_a_mobile_number_is_masked_whatever_stands_around_it(
    mobile: str, before: str, after: str
) -> None:
    """Glued to letters (``tel13800001111``), behind stray digits (``0013800001111``),
    inside a longer number: a mobile's 11 digits never survive, in any script (but
    inside a hex id, which stays whole: the test after this one)."""
    word = re.search(r"[0-9A-Za-z]*\Z", before)[0] + mobile + re.match(r"[0-9A-Za-z]*", after)[0]  # type: ignore[index]
    assume(re.fullmatch(r"(?=[0-9]*[a-f])[0-9a-f]{16,}", word) is None)
    for spelled in (mobile, mobile.translate(str.maketrans("0123456789", "０１２３４５６７８９"))):
        shown = redact(f"{before}{spelled}{after}")
        assert mobile not in digits_of(shown).replace("*", "")
        assert mobile not in "".join(c for c in unicodedata.normalize("NFKC", shown) if c != "*")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("tel13800001111", "tel138******11"),
        ("0013800001111", "00138******11"),
        ("身份证 320483199001011234", "身份证 320483199******234"),
        ("TEL:13800001111", "TEL:138******11"),
        ("A13800001111", "A138******11"),
    ],
)
def test_embedded_mobiles_are_masked(text: str, shown: str) -> None:
    assert redact(text) == shown


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


def test_a_desk_history_keeps_id_fields_whole() -> None:
    """Ids are data a seat acts on: a call id whose hex holds a mobile number stays as
    it is in a desk's masked history, while a note holding one is masked."""
    import datetime as dt

    from movecar_core.case import CaseCancelled, OwnerCallPlaced
    from movecar_core.desk import masked_event

    at = dt.datetime(2024, 5, 6, 9, tzinfo=dt.UTC)
    call_id = "a13800001111b2c3d4e5f6a7b8c9d0e1"
    placed = OwnerCallPlaced("c1", at, None, call_id, 1, "seat-1", "0519110", "您好", "v1")
    assert masked_event(placed).call_id == call_id  # type: ignore[attr-defined]
    cancelled = masked_event(CaseCancelled("c1", at, None, "车主电话 tel13800001111"))
    assert "13800001111" not in repr(cancelled)
