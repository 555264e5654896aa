"""Phone numbers: one canonical form for the caller's and the owner's numbers.

Numbers reach the library from the switch, from the vehicle registry and from agents'
typing, as "+86 138 1234 5678", "0086-13812345678", "(0519)81997327" or in full-width
digits. Each is parsed once into :class:`Phone` so that the same number always compares
equal and is always masked the same way in logs; anything that is not a mainland mobile
or a fixed line with its area code is refused with
:class:`~movecar_core.errors.InvalidPhone` saying why.

* mobile: 11 digits, ``1[3-9]`` then 9 digits, canonical ``13812345678``;
* fixed line: area code ``010`` or ``02x`` (3 digits) or ``0`` plus 3 digits (``0519``),
  then a local number of 7 or 8 digits not starting with 0 or 1, canonical
  ``0519-81997327``. A fixed line without its area code is refused: the library cannot
  know which city it belongs to.

A country prefix ``+86`` or ``0086`` may precede either (the area code's leading 0 may then
be dropped, as in ``+86 519 8199 7327``); a bare ``86`` only before a mobile, where it
cannot be mistaken for the start of a number. Other country codes, extensions and short
service numbers (110, 114, 0519110) are refused.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from typing import Final

import attrs

from movecar_core.errors import InvalidPhone

__all__ = ["Phone", "PhoneKind", "PhoneNumber", "mask_phone", "parse_phone"]


class PhoneKind(enum.StrEnum):
    MOBILE = "mobile"
    FIXED = "fixed"


# Input is NFKC-normalised first, so full-width digits, parentheses, plus and dashes
# arrive here as their ASCII twins.
_SEPARATORS: Final = re.compile(r"[\s()\-‐‑‒–—―.]+")
_NON_DIGIT: Final = re.compile(r"[^0-9]")
_MOBILE: Final = re.compile(r"1[3-9][0-9]{9}")
_MOBILE_PREFIX: Final = re.compile(r"1[3-9]")
_LOCAL: Final = re.compile(r"[2-9][0-9]{6,7}")
#: Exactly the canonical forms :func:`parse_phone` writes (``tests/test_phones.py`` checks
#: both ways): such a number is its own parse, so it is not normalised and parsed again.
#: Stored numbers are canonical, and every view of a case masks them on each command.
_CANONICAL: Final = re.compile(
    r"(?P<mobile>1[3-9][0-9]{9})|(?:010|02[0-9]|0[3-9][0-9]{2})-[2-9][0-9]{6,7}"
)


@attrs.frozen(slots=True)
class Phone:
    """A valid phone number. Build it with :func:`parse_phone`, never directly."""

    canonical: str
    """``13812345678`` for a mobile, ``0519-81997327`` for a fixed line."""
    kind: PhoneKind
    digits: str
    """Digits only, as dialled inside mainland China: ``051981997327``."""

    def __str__(self) -> str:
        return self.canonical

    def masked(self) -> str:
        """The number for logs: ``138****5678``, ``0519-****7327``.

        A mobile keeps its operator prefix and last four digits; a fixed line keeps its area
        code (which city) and its last four digits. Length and shape are kept.
        """
        return _mask(self.canonical)


#: The name hosts and the test kit use (``st.from_type(PhoneNumber)``): the same class.
PhoneNumber = Phone


def _mask(canonical: str) -> str:
    if "-" not in canonical:  # a mobile: its canonical form is its digits
        return canonical[:3] + "****" + canonical[-4:]
    area, local = canonical.split("-")
    return f"{area}-{'*' * (len(local) - 4)}{local[-4:]}"


def mask_phone(text: str) -> str:
    """``parse_phone(text).masked()``; a number already canonical (a stored one) is masked
    as it stands, without a :class:`Phone` built for it."""
    if type(text) is str and _CANONICAL.fullmatch(text) is not None:
        return _mask(text)
    return parse_phone(text).masked()


def parse_phone(text: str) -> Phone:
    """Parse a phone number as written by a person or a switch; raise :class:`InvalidPhone`.

    Spaces, dashes, dots and parentheses anywhere and full-width characters are accepted;
    the result is always the canonical form.
    """
    if type(text) is str and (known := _CANONICAL.fullmatch(text)) is not None:
        if known.group("mobile") is not None:
            return Phone(text, PhoneKind.MOBILE, text)
        return Phone(text, PhoneKind.FIXED, text.replace("-", ""))
    return _parse(text)


def _parse(text: str) -> Phone:
    """:func:`parse_phone` for any text, canonical or not: the defining parse."""
    if not isinstance(text, str):
        raise InvalidPhone(text, f"expected str, got {type(text).__name__}")
    s = _SEPARATORS.sub("", unicodedata.normalize("NFKC", text))
    if not s:
        raise InvalidPhone(text, "empty")
    international = s.startswith("+")
    body = s[1:] if international else s
    bad = _NON_DIGIT.search(body)
    if bad:
        raise InvalidPhone(text, f"character {bad.group()!r} is not part of a phone number")
    if international or body.startswith("00"):
        national = _strip_country_code(text, body[0 if international else 2 :])
    elif body.startswith("86") and _MOBILE.fullmatch(body[2:]):
        national = body[2:]
    else:
        national = body
    if national.startswith("1"):
        return _mobile(text, national)
    if national.startswith("0"):
        return _fixed(text, national)
    raise InvalidPhone(text, "a fixed-line number needs its area code, e.g. 0519-81997327")


def _strip_country_code(text: str, digits: str) -> str:
    """Drop ``86`` from an international number; restore a dropped area-code trunk 0."""
    if not digits.startswith("86"):
        raise InvalidPhone(text, "only mainland China numbers (+86) are accepted")
    national = digits[2:]
    if not national:
        raise InvalidPhone(text, "no number after the country code")
    if national[0] != "0" and not _MOBILE_PREFIX.match(national):
        national = "0" + national  # +86 10 ... is Beijing: no mobile starts 10
    return national


def _mobile(text: str, digits: str) -> Phone:
    if len(digits) != 11:
        raise InvalidPhone(text, f"a mobile number has 11 digits, got {len(digits)}")
    if not _MOBILE.fullmatch(digits):
        raise InvalidPhone(text, f"a mobile number starts 13-19, got {digits[:2]}")
    return Phone(digits, PhoneKind.MOBILE, digits)


def _fixed(text: str, digits: str) -> Phone:
    if len(digits) < 3:
        raise InvalidPhone(text, f"too short for an area code and a number: {digits!r}")
    second = digits[1]
    if second == "0":
        raise InvalidPhone(text, "only mainland China numbers (0086) are accepted")
    if second == "1" and not digits.startswith("010"):
        raise InvalidPhone(text, f"no area code starts {digits[:3]} (only 010 does)")
    area = digits[:3] if second in "12" else digits[:4]
    local = digits[len(area) :]
    if not _LOCAL.fullmatch(local):
        if len(local) not in (7, 8):
            raise InvalidPhone(
                text, f"a local number after area code {area} has 7 or 8 digits, got {len(local)}"
            )
        raise InvalidPhone(text, f"a local number does not start with 0 or 1, got {local[0]!r}")
    return Phone(f"{area}-{local}", PhoneKind.FIXED, area + local)
