"""What the two owner data source adapters share: their errors and the checks of an answer.

二(二): "甲方负责协调江苏省交警平台相关数据的调取" — the owner's phone comes from the Jiangsu
traffic-police platform, over HTTP (:mod:`movecar_adapters.registry_http`) or from a local
mirror that receives its nightly extract (:mod:`movecar_adapters.registry_sql`). Both hand
the engine an :class:`~movecar_core.ports.OwnerContact` whose phone is canonical (the
engine stores and dials it) and whose source is short, one-line text (the look-up's event
keeps it, in a column of 100 characters), or raise a
:class:`~movecar_core.errors.RegistryUnavailable`. No message names the owner's phone, and
a plate appears only masked (``苏D***45``): the plate is not secret, but a log line need not
say whose car was looked up.
"""

from __future__ import annotations

from movecar_core.errors import InvalidInput, InvalidPhone, RegistryUnavailable
from movecar_core.phones import parse_phone
from movecar_core.ports import OwnerContact

__all__ = [
    "MAX_SOURCE",
    "MirrorExtractInvalid",
    "RegistryAnswerInvalid",
    "RegistryCircuitOpen",
    "check_source",
    "contact_from",
    "mirror_place",
]

#: The look-up event's ``source`` column holds 100 characters (``adapters/sql/schema.py``).
MAX_SOURCE = 100


class RegistryAnswerInvalid(RegistryUnavailable):
    """The owner data source answered, but the answer cannot be used: not JSON, the wrong
    content type, larger than the adapter accepts, another shape than expected, another
    plate than asked, a phone that is not a phone, or a mirror row that does not decrypt.

    A :class:`~movecar_core.errors.RegistryUnavailable`: for the seat, the owner cannot be
    looked up now. The message says what was wrong, never the phone.
    """


class RegistryCircuitOpen(RegistryUnavailable):
    """The HTTP adapter's circuit breaker is open: the platform failed too many times in a
    row, so look-ups fail at once, without a request, until its cool-down has passed."""


class MirrorExtractInvalid(InvalidInput):
    """A row of a mirror extract (CSV) that cannot be loaded: the message names the line and
    the field, with the phone masked. Nothing of the extract is written."""


def check_source(value: object, what: str = "source") -> str:
    """``value`` if it is usable as a look-up's source: text of 1 to 100 printable
    characters on one line; else :class:`RegistryAnswerInvalid`."""
    if not isinstance(value, str):
        raise RegistryAnswerInvalid(f"{what}: expected text, got {type(value).__name__}")
    if not value.strip():
        raise RegistryAnswerInvalid(f"{what}: empty")
    if len(value) > MAX_SOURCE:
        raise RegistryAnswerInvalid(f"{what}: longer than {MAX_SOURCE} characters")
    if not value.isprintable():
        raise RegistryAnswerInvalid(f"{what}: holds a control character or a line break")
    return value


def contact_from(phone: object, source: object, *, what: str = "the answer") -> OwnerContact:
    """An :class:`OwnerContact` with the canonical form of ``phone``, or
    :class:`RegistryAnswerInvalid` saying why not (the number itself never quoted)."""
    if not isinstance(phone, str):
        raise RegistryAnswerInvalid(
            f"{what}: the owner's phone is {type(phone).__name__}, not text"
        )
    try:
        canonical = parse_phone(phone).canonical
    except InvalidPhone as exc:
        raise RegistryAnswerInvalid(
            f"{what}: the owner's phone is not a phone number ({exc.why})"
        ) from None
    return OwnerContact(phone=canonical, source=check_source(source, f"{what}: source"))


def mirror_place(plate: str) -> str:
    """Where a mirror row's phone is bound (AES-GCM associated data, as the store binds a
    case's phones): the plate. A phone copied onto another plate's row does not decrypt.

    Three NUL-separated parts, where a case's place has four: never the place of a case.
    """
    return f"vehicle-mirror\x00{plate}\x00owner_phone"
