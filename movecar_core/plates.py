"""Licence plates: one canonical form for whatever a caller or an agent typed.

A 114 agent hears a plate over the phone or copies it from a form, so one plate arrives as
"苏D·12345", "苏 d 12345", "苏D-12345" or in full-width characters. The owner look-up,
the greeting, the audit log and the statistics all key on the plate, so it is parsed once,
at the edge, into :class:`Plate`, and anything GA 36-2018 does not allow is refused with
:class:`~movecar_core.errors.InvalidPlate` saying what is wrong.

Shapes accepted (after dropping separators and upper-casing Latin letters):

* regular: province, authority letter, 5 of ``A–Z 0–9`` (``苏D12345``);
* suffix plates: province, authority letter, 4 of ``A–Z 0–9``, one of 学 警 挂 领 港 澳 试 超
  (``苏A1234学``); 港 and 澳 (cross-border) are issued only by 粤Z;
* small new-energy: province, authority letter, one of ``D A B C E`` (battery electric) or
  ``F G H J K`` (other new energy), one of ``A–Z 0–9``, 4 digits (``苏DF12345``); GA 36-2018
  names D and F, the other eight letters were added later when D and F ran short;
* large new-energy: province, authority letter, 5 digits, ``D`` or ``F`` (``苏D12345D``);
* embassy: 使 and 6 digits (``使014578``).

The letters I and O never appear in a serial (they read as 1 and 0). The authority letter
may be O (public-security vehicles, e.g. 苏O) but never I. Military plates and the two-
character 应急 suffix are not GA 36 civil plates of this service and are refused.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from typing import Final

import attrs

from movecar_core.errors import InvalidPlate

__all__ = [
    "EMBASSY_PREFIX",
    "NEW_ENERGY_LARGE_LETTERS",
    "NEW_ENERGY_SMALL_LETTERS",
    "PROVINCES",
    "SUFFIXES",
    "Plate",
    "PlateKind",
    "parse_plate",
]

PROVINCES: Final = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
"""The 31 provincial-level abbreviations that open a mainland plate."""

EMBASSY_PREFIX: Final = "使"

NEW_ENERGY_SMALL_LETTERS: Final = "DABCEFGHJK"
"""First serial letter of a small new-energy plate: DABCE battery electric, FGHJK other."""

NEW_ENERGY_LARGE_LETTERS: Final = "DF"
"""Last serial letter of a large new-energy plate: D battery electric, F other."""


class PlateKind(enum.StrEnum):
    """What the shape of a plate says about the vehicle."""

    REGULAR = "regular"
    NEW_ENERGY_SMALL = "new_energy_small"
    NEW_ENERGY_LARGE = "new_energy_large"
    COACH = "coach"  # 学, driving-school car
    POLICE = "police"  # 警
    TRAILER = "trailer"  # 挂
    CONSULATE = "consulate"  # 领
    HONG_KONG = "hong_kong"  # 港, 粤Z cross-border
    MACAU = "macau"  # 澳, 粤Z cross-border
    TEST = "test"  # 试, temporary plate of a vehicle under test
    OVERSIZE = "oversize"  # 超, temporary plate of an oversize special vehicle
    EMBASSY = "embassy"  # 使 + 6 digits


SUFFIXES: Final[dict[str, PlateKind]] = {
    "学": PlateKind.COACH,
    "警": PlateKind.POLICE,
    "挂": PlateKind.TRAILER,
    "领": PlateKind.CONSULATE,
    "港": PlateKind.HONG_KONG,
    "澳": PlateKind.MACAU,
    "试": PlateKind.TEST,
    "超": PlateKind.OVERSIZE,
}
"""The last character of a suffix plate and the kind it marks."""

_CROSS_BORDER_AUTHORITY: Final = "粤Z"

# Separators people put inside a plate: spaces, middle dots, dashes, dots, underscores.
# Input is NFKC-normalised first, so full-width forms arrive here as their ASCII twins.
_SEPARATORS: Final = re.compile(r"[\s·•・‧∙⋅\-‐‑‒–—―_.。]+")
_ASCII_ALNUM: Final = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_EMBASSY: Final = re.compile(r"使[0-9]{6}")
#: Exactly the regular plates in canonical form (``tests/test_plates.py`` checks both
#: ways): the most common plate, as a seat application that keeps canonical plates sends
#: it, is its own parse.
_CANONICAL_REGULAR: Final = re.compile(f"[{PROVINCES}][A-HJ-Z][0-9A-HJ-NP-Z]{{5}}")


@attrs.frozen(slots=True)
class Plate:
    """A valid plate. Build it with :func:`parse_plate`, never directly."""

    canonical: str
    """No separators, Latin letters upper-case: ``苏D12345``."""
    kind: PlateKind
    province: str
    """The first character: a province abbreviation, or 使 for embassy plates."""

    def __str__(self) -> str:
        return self.canonical

    def masked(self) -> str:
        """The plate for logs: province, authority letter and last two kept, rest ``*``.

        Enough for a person to tell cases apart, not enough to identify the vehicle; the
        length is kept so a masked new-energy plate still looks like one.
        """
        c = self.canonical
        return c[:2] + "*" * (len(c) - 4) + c[-2:]


def _normalise(text: str) -> str:
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", text))


def parse_plate(text: str) -> Plate:
    """Parse a plate as typed by a person; raise :class:`InvalidPlate` saying why not.

    Separators anywhere, lower-case and full-width letters and digits are accepted, because
    agents type what they hear; the result is always the canonical form.
    """
    if type(text) is str and _CANONICAL_REGULAR.fullmatch(text) is not None:
        return Plate(text, PlateKind.REGULAR, text[0])
    return _parse(text)


def _parse(text: str) -> Plate:
    """:func:`parse_plate` for any text, canonical or not: the defining parse."""
    if not isinstance(text, str):
        raise InvalidPlate(text, f"expected str, got {type(text).__name__}")
    s = _normalise(text)
    if not s:
        raise InvalidPlate(text, "empty")
    head = s[0]
    if head != EMBASSY_PREFIX and head not in PROVINCES:
        raise InvalidPlate(text, f"unknown province character {head!r}")
    for i, ch in enumerate(s[1:], start=1):
        if ch in _ASCII_ALNUM or (ch in SUFFIXES and i == len(s) - 1):
            continue
        if ch in SUFFIXES:
            raise InvalidPlate(text, f"{ch!r} may only be the last character of a plate")
        if ch in PROVINCES or ch == EMBASSY_PREFIX:
            raise InvalidPlate(text, f"{ch!r} may only be the first character of a plate")
        raise InvalidPlate(text, f"character {ch!r} is not used on plates")
    s = s.upper()  # only ASCII letters change: the rest is CJK
    if head == EMBASSY_PREFIX:
        if not _EMBASSY.fullmatch(s):
            raise InvalidPlate(text, f"an embassy plate is 使 and 6 digits, got {s!r}")
        return Plate(s, PlateKind.EMBASSY, head)
    return _parse_mainland(text, s)


def _parse_mainland(text: str, s: str) -> Plate:
    """Check ``s`` (province, then ASCII upper-case, maybe a suffix last) against GA 36."""
    if len(s) < 2:
        raise InvalidPlate(text, "wrong length: 1 character, a plate has 7 or 8")
    authority = s[1]
    if not ("A" <= authority <= "Z"):
        raise InvalidPlate(
            text, f"the authority letter after {s[0]} must be a letter A-Z, got {authority!r}"
        )
    if authority == "I":
        raise InvalidPlate(text, "authority letter 'I' is not used")
    for ch in s[2:]:
        if ch in "IO":
            raise InvalidPlate(text, f"letter {ch!r} is not allowed in the serial (reads as 1/0)")
    if len(s) not in (7, 8):
        raise InvalidPlate(text, f"wrong length: {len(s)} characters, a plate has 7 or 8")
    serial = s[2:]
    last = serial[-1]
    if last in SUFFIXES:
        if len(s) != 7:
            raise InvalidPlate(text, f"a plate ending in {last} has 7 characters, got {len(s)}")
        kind = SUFFIXES[last]
        if kind in (PlateKind.HONG_KONG, PlateKind.MACAU) and s[:2] != _CROSS_BORDER_AUTHORITY:
            raise InvalidPlate(text, f"{last} plates are issued only as 粤Z, not {s[:2]}")
        return Plate(s, kind, s[0])
    if len(s) == 7:
        return Plate(s, PlateKind.REGULAR, s[0])
    return Plate(s, _new_energy_kind(text, serial), s[0])


def _new_energy_kind(text: str, serial: str) -> PlateKind:
    """Tell a 6-character new-energy serial's kind, or say which rule it breaks."""
    if serial[0].isdigit():
        if not serial[:5].isdigit():
            raise InvalidPlate(
                text, f"a large new-energy serial is 5 digits then D or F, got {serial!r}"
            )
        if serial[5] not in NEW_ENERGY_LARGE_LETTERS:
            raise InvalidPlate(text, f"a large new-energy plate ends in D or F, got {serial[5]!r}")
        return PlateKind.NEW_ENERGY_LARGE
    if serial[0] not in NEW_ENERGY_SMALL_LETTERS:
        raise InvalidPlate(
            text,
            f"a small new-energy serial starts with one of {NEW_ENERGY_SMALL_LETTERS}, "
            f"got {serial[0]!r}",
        )
    if not serial[2:].isdigit():
        raise InvalidPlate(text, f"a small new-energy serial ends in 4 digits, got {serial[2:]!r}")
    return PlateKind.NEW_ENERGY_SMALL
