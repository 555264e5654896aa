"""Phones: every way a number is written parses to one canonical number; masks hide it."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from movecar_core import phones as phones_module
from movecar_core.errors import InvalidPhone, MoveCarError
from movecar_core.phones import Phone, PhoneKind, parse_phone
from movecar_core.testing.strategies import (
    canonical_fixed_phones,
    canonical_mobile_phones,
    fixed_phones,
    invalid_phones,
    mobile_phones,
    phone_spellings,
    phones,
)

MOBILE = "13812345678"
WUJIN_110 = "0519-81997327"


@pytest.mark.parametrize(
    ("text", "canonical", "kind"),
    [
        ("13812345678", MOBILE, PhoneKind.MOBILE),
        ("+86 138 1234 5678", MOBILE, PhoneKind.MOBILE),
        ("0086-13812345678", MOBILE, PhoneKind.MOBILE),
        ("86 13812345678", MOBILE, PhoneKind.MOBILE),
        ("8613812345678", MOBILE, PhoneKind.MOBILE),
        ("138-1234-5678", MOBILE, PhoneKind.MOBILE),
        ("１３８１２３４５６７８", MOBILE, PhoneKind.MOBILE),
        ("＋８６　１３８　１２３４　５６７８", MOBILE, PhoneKind.MOBILE),
        ("19912345678", "19912345678", PhoneKind.MOBILE),
        ("0519-81997327", WUJIN_110, PhoneKind.FIXED),
        ("(0519)81997327", WUJIN_110, PhoneKind.FIXED),
        ("（０５１９）８１９９７３２７", WUJIN_110, PhoneKind.FIXED),
        ("0519 8199 7327", WUJIN_110, PhoneKind.FIXED),
        ("051981997327", WUJIN_110, PhoneKind.FIXED),
        ("+86 519 8199 7327", WUJIN_110, PhoneKind.FIXED),
        ("+86 (0)519 81997327", WUJIN_110, PhoneKind.FIXED),
        ("0086-519-81997327", WUJIN_110, PhoneKind.FIXED),
        ("010-62345678", "010-62345678", PhoneKind.FIXED),
        ("+86 10 6234 5678", "010-62345678", PhoneKind.FIXED),
        ("021 6234567", "021-6234567", PhoneKind.FIXED),
        ("0755-88889999", "0755-88889999", PhoneKind.FIXED),
    ],
)
def test_real_world_phones(text: str, canonical: str, kind: PhoneKind) -> None:
    phone = parse_phone(text)
    assert phone.canonical == canonical
    assert str(phone) == canonical
    assert phone.kind is kind
    assert phone.digits == canonical.replace("-", "")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("  -  ", "empty"),
        ("12812345678", "13-19"),
        ("1381234567", "11 digits"),
        ("138123456789", "11 digits"),
        ("81997327", "area code"),
        ("0519110", "7 or 8 digits"),
        ("110", "11 digits"),
        ("0519-01997327", "0 or 1"),
        ("0519-11997327", "0 or 1"),
        ("0519-819973271", "7 or 8 digits"),
        ("0119-81997327", "only 010"),
        ("+1 202 555 0123", "+86"),
        ("+852 2345 6789", "+86"),
        ("001-202-555-0123", "+86"),
        ("+86", "after the country code"),
        ("138 1234 5678 转 12", "'转'"),
        ("138-1234-5678 ext 12", "'e'"),
        ("138+12345678", "'+'"),
    ],
)
def test_real_world_invalid_phones(text: str, why: str) -> None:
    with pytest.raises(InvalidPhone) as caught:
        parse_phone(text)
    assert why in caught.value.why
    assert caught.value.text == text


@pytest.mark.parametrize("value", [None, 13812345678, b"13812345678"])
def test_non_str_is_invalid_phone(value: object) -> None:
    with pytest.raises(InvalidPhone, match="expected str"):
        parse_phone(value)  # type: ignore[arg-type]


def test_invalid_phone_is_a_library_error_and_a_value_error() -> None:
    with pytest.raises(MoveCarError):
        parse_phone("110")
    with pytest.raises(ValueError, match="110"):
        parse_phone("110")


def test_masked_examples() -> None:
    assert parse_phone("+86 138 1234 5678").masked() == "138****5678"
    assert parse_phone("(0519)81997327").masked() == "0519-****7327"
    assert parse_phone("021 6234567").masked() == "021-***4567"


@given(st.one_of(canonical_mobile_phones(), canonical_fixed_phones()))
def test_canonical_round_trips(canonical: str) -> None:
    phone = parse_phone(canonical)
    assert phone.canonical == canonical
    assert parse_phone(phone.canonical) == phone
    assert parse_phone(phone.digits) == phone


@given(phones())
def test_canonical_is_idempotent(text: str) -> None:
    phone = parse_phone(text)
    assert parse_phone(str(phone)).canonical == phone.canonical


@given(mobile_phones())
def test_mobile_spellings_are_mobiles(text: str) -> None:
    assert parse_phone(text).kind is PhoneKind.MOBILE


@given(fixed_phones())
def test_fixed_spellings_are_fixed_lines(text: str) -> None:
    assert parse_phone(text).kind is PhoneKind.FIXED


@given(st.data(), st.one_of(canonical_mobile_phones(), canonical_fixed_phones()))
def test_every_spelling_parses_to_the_same_phone(data: st.DataObject, canonical: str) -> None:
    first = data.draw(phone_spellings(canonical))
    second = data.draw(phone_spellings(canonical))
    assert parse_phone(first) == parse_phone(second) == parse_phone(canonical)


@given(phones())
def test_mask_reveals_only_the_allowed_digits(text: str) -> None:
    phone = parse_phone(text)
    masked = phone.masked()
    shown = re.sub(r"\D", "", masked)
    assert phone.digits not in shown
    if phone.kind is PhoneKind.MOBILE:
        assert masked == phone.digits[:3] + "****" + phone.digits[-4:]
        assert len(shown) == 7
    else:
        area, local = phone.canonical.split("-")
        assert masked.startswith(f"{area}-")
        assert masked.endswith(local[-4:])
        assert len(masked) == len(phone.canonical)
        assert len(shown) == len(area) + 4


@given(st.data(), canonical_mobile_phones())
def test_mobiles_differing_only_in_hidden_digits_mask_alike(
    data: st.DataObject, mobile: str
) -> None:
    other = data.draw(canonical_mobile_phones())
    mixed = mobile[:3] + other[3:7] + mobile[7:]
    assert parse_phone(mixed).masked() == parse_phone(mobile).masked()


@given(invalid_phones())
def test_invalid_phones_are_refused(text: str) -> None:
    with pytest.raises(InvalidPhone) as caught:
        parse_phone(text)
    assert isinstance(caught.value, ValueError)
    assert caught.value.why


@given(st.text(alphabet="0123456789+-() ．８６", max_size=16))
def test_arbitrary_text_is_a_phone_or_invalid_phone(text: str) -> None:
    try:
        phone = parse_phone(text)
    except InvalidPhone:
        return
    assert isinstance(phone, Phone)
    assert parse_phone(phone.canonical) == phone


# The fast path for canonical numbers (stored numbers are parsed again by every view) must
# be exactly the defining parse: the same Phone for a canonical number, and every number the
# defining parse writes recognised as canonical.


@given(st.from_regex(phones_module._CANONICAL, fullmatch=True))
def test_what_the_fast_path_takes_is_its_own_parse(text: str) -> None:
    assert phones_module._parse(text) == parse_phone(text)
    assert parse_phone(text).canonical == text


@given(st.one_of(phones(), st.text(max_size=20)))
def test_every_canonical_number_takes_the_fast_path(text: str) -> None:
    try:
        phone = phones_module._parse(text)
    except InvalidPhone:
        return
    assert phones_module._CANONICAL.fullmatch(phone.canonical)
    assert parse_phone(phone.canonical) == phone == parse_phone(text)


@given(st.one_of(phones(), canonical_mobile_phones(), canonical_fixed_phones()))
def test_mask_phone_is_the_parsed_number_masked(text: str) -> None:
    assert phones_module.mask_phone(text) == parse_phone(text).masked()


@given(invalid_phones())
def test_mask_phone_refuses_what_parse_refuses(text: str) -> None:
    with pytest.raises(InvalidPhone):
        phones_module.mask_phone(text)
