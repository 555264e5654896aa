"""Plates: what agents type parses to one canonical plate; masks hide what they must."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from movecar_core import plates as plates_module
from movecar_core.errors import InvalidPlate, MoveCarError
from movecar_core.plates import Plate, PlateKind, parse_plate
from movecar_core.testing.strategies import (
    canonical_plates,
    invalid_plates,
    plate_spellings,
    plates,
)

VISIBLE = 2  # characters kept at each end by masked()


@pytest.mark.parametrize(
    ("text", "canonical", "kind"),
    [
        ("苏D12345", "苏D12345", PlateKind.REGULAR),
        ("京A88888", "京A88888", PlateKind.REGULAR),
        ("粤B12345", "粤B12345", PlateKind.REGULAR),
        ("苏D·12345", "苏D12345", PlateKind.REGULAR),
        ("苏 d 12345", "苏D12345", PlateKind.REGULAR),
        ("苏D-12345", "苏D12345", PlateKind.REGULAR),
        ("苏Ｄ１２３４５", "苏D12345", PlateKind.REGULAR),
        ("苏O12345", "苏O12345", PlateKind.REGULAR),
        ("沪AD12345", "沪AD12345", PlateKind.NEW_ENERGY_SMALL),
        ("苏DF12345", "苏DF12345", PlateKind.NEW_ENERGY_SMALL),
        ("粤BD12345", "粤BD12345", PlateKind.NEW_ENERGY_SMALL),
        ("京AFE1234", "京AFE1234", PlateKind.NEW_ENERGY_SMALL),
        ("沪AA12345", "沪AA12345", PlateKind.NEW_ENERGY_SMALL),
        ("粤B12345D", "粤B12345D", PlateKind.NEW_ENERGY_LARGE),
        ("苏D·12345F", "苏D12345F", PlateKind.NEW_ENERGY_LARGE),
        ("苏A1234学", "苏A1234学", PlateKind.COACH),
        ("苏A·1234警", "苏A1234警", PlateKind.POLICE),
        ("苏E5678挂", "苏E5678挂", PlateKind.TRAILER),
        ("沪A0123领", "沪A0123领", PlateKind.CONSULATE),
        ("粤Z1234港", "粤Z1234港", PlateKind.HONG_KONG),
        ("粤Z·A123澳", "粤ZA123澳", PlateKind.MACAU),
        ("苏A1234试", "苏A1234试", PlateKind.TEST),
        ("苏A1234超", "苏A1234超", PlateKind.OVERSIZE),
        ("使014578", "使014578", PlateKind.EMBASSY),
        ("使 014·578", "使014578", PlateKind.EMBASSY),
    ],
)
def test_real_world_plates(text: str, canonical: str, kind: PlateKind) -> None:
    plate = parse_plate(text)
    assert plate.canonical == canonical
    assert str(plate) == canonical
    assert plate.kind is kind
    assert plate.province == canonical[0]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        (" · ", "empty"),
        ("苏I12345", "'I'"),
        ("苏DO1234", "'O'"),
        ("苏D1I345", "'I'"),
        ("无A12345", "unknown province character '无'"),
        ("AD12345", "unknown province character 'A'"),
        ("苏12345", "authority letter"),
        ("苏D1234", "wrong length"),
        ("苏D123456789", "wrong length"),
        ("苏", "wrong length"),
        ("苏A1234港", "粤Z"),
        ("苏A12345学", "7 characters"),
        ("苏D学1234", "last character"),
        ("苏D苏1234", "first character"),
        ("苏D12#45", "'#'"),
        ("苏DX12345", "small new-energy"),
        ("苏DD1234A", "4 digits"),
        ("苏D1234AD", "large new-energy"),
        ("苏D12345A", "D or F"),
        ("使01457", "使 and 6 digits"),
        ("使A14578", "使 and 6 digits"),
    ],
)
def test_real_world_invalid_plates(text: str, why: str) -> None:
    with pytest.raises(InvalidPlate) as caught:
        parse_plate(text)
    assert why in caught.value.why
    assert caught.value.text == text


@pytest.mark.parametrize("value", [None, 12345, b"\xe8\x8b\x8fD12345", ["苏D12345"]])
def test_non_str_is_invalid_plate(value: object) -> None:
    with pytest.raises(InvalidPlate, match="expected str"):
        parse_plate(value)  # type: ignore[arg-type]


def test_invalid_plate_is_a_library_error_and_a_value_error() -> None:
    with pytest.raises(MoveCarError):
        parse_plate("苏I12345")
    with pytest.raises(ValueError, match="苏I12345"):
        parse_plate("苏I12345")


def test_masked_examples() -> None:
    assert parse_plate("苏D12345").masked() == "苏D***45"
    assert parse_plate("苏DF12345").masked() == "苏D****45"
    assert parse_plate("使014578").masked() == "使0***78"


@given(canonical_plates())
def test_canonical_round_trips(canonical: str) -> None:
    plate = parse_plate(canonical)
    assert plate.canonical == canonical
    assert parse_plate(plate.canonical) == plate
    assert parse_plate(str(plate)) == plate


@given(plates())
def test_canonical_is_idempotent(text: str) -> None:
    plate = parse_plate(text)
    assert parse_plate(plate.canonical).canonical == plate.canonical


@given(st.data(), canonical_plates())
def test_every_spelling_parses_to_the_same_plate(data: st.DataObject, canonical: str) -> None:
    first = data.draw(plate_spellings(canonical))
    second = data.draw(plate_spellings(canonical))
    assert parse_plate(first) == parse_plate(second) == parse_plate(canonical)


@given(canonical_plates())
def test_mask_keeps_length_and_only_the_allowed_positions(canonical: str) -> None:
    masked = parse_plate(canonical).masked()
    assert len(masked) == len(canonical)
    for i, (shown, real) in enumerate(zip(masked, canonical, strict=True)):
        if i < VISIBLE or i >= len(canonical) - VISIBLE:
            assert shown == real
        else:
            assert shown == "*"


@given(st.data(), st.sampled_from(PlateKind))
def test_plates_differing_only_in_hidden_positions_mask_alike(
    data: st.DataObject, kind: PlateKind
) -> None:
    first = data.draw(canonical_plates([kind]))
    other = data.draw(canonical_plates([kind]))
    mixed = first[:VISIBLE] + other[VISIBLE:-VISIBLE] + first[-VISIBLE:]
    assert parse_plate(mixed).masked() == parse_plate(first).masked()


@given(invalid_plates())
def test_invalid_plates_are_refused(text: str) -> None:
    with pytest.raises(InvalidPlate) as caught:
        parse_plate(text)
    assert isinstance(caught.value, ValueError)
    assert caught.value.why


@given(st.text(max_size=12))
def test_arbitrary_text_is_a_plate_or_invalid_plate(text: str) -> None:
    try:
        plate = parse_plate(text)
    except InvalidPlate:
        return
    assert isinstance(plate, Plate)
    assert parse_plate(plate.canonical) == plate


# The fast path for canonical regular plates must be exactly the defining parse.


@given(st.from_regex(plates_module._CANONICAL_REGULAR, fullmatch=True))
def test_what_the_fast_path_takes_is_its_own_parse(text: str) -> None:
    assert plates_module._parse(text) == parse_plate(text)
    assert parse_plate(text) == Plate(text, PlateKind.REGULAR, text[0])


@given(st.one_of(plates(), canonical_plates(), invalid_plates(), st.text(max_size=9)))
def test_every_canonical_regular_plate_takes_the_fast_path(text: str) -> None:
    try:
        plate = plates_module._parse(text)
    except InvalidPlate:
        with pytest.raises(InvalidPlate):
            parse_plate(text)
        return
    assert parse_plate(text) == plate == parse_plate(plate.canonical)
    fast = plates_module._CANONICAL_REGULAR.fullmatch(plate.canonical) is not None
    assert fast == (plate.kind is PlateKind.REGULAR)
