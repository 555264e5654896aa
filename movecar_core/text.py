"""The one rule for free text the library stores: what a location, a note, an agent id,
a command id or any other text field of an event may contain.

Refused, wherever they stand in the text:

* C0 control characters (U+0000-U+001F), **tab and newline included**, and DEL (U+007F):
  every text field is one line. The CLI, the audit and the 110 desk's notice print it
  on one line, and a newline in a note would let whoever types it forge a line there
  (a fake audit finding, a second notice line). A seat application with a multi-line
  text box joins the lines before sending them. PostgreSQL cannot store NUL at all.
* C1 control characters (U+0080-U+009F), and the line and paragraph separators
  U+2028/U+2029 (``str.splitlines`` breaks lines at both, as at NEL U+0085).
* Lone surrogates (U+D800-U+DFFF): they are not text and cannot be encoded as UTF-8,
  so SQLite and the drivers fail on them with their own errors.
* The 66 noncharacters (U+FDD0-U+FDEF and U+xFFFE/U+xFFFF of every plane): Unicode
  reserves them for a program's internal use, never for interchange.

Everything else, including every script, emoji, full-width forms and plain spaces, is
allowed. The facade (:mod:`movecar_core.app`) applies the rule to every text argument
with :func:`check_text`, the event codec applies it to every text field of an event it
encodes (so the SQL store refuses events built by hand and bulk histories the same way)
and the in-memory store applies :func:`event_text_problem` when it appends. Reading
stays lenient: a history stored before this rule existed still loads.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

import attrs

from movecar_core.errors import InvalidCommand

#: Longest text any single event field may hold in the in-memory store: the SQL store's
#: column limit (``MAX_FIELD_CHARS``), which it checks itself; the facade's are lower.
MAX_EVENT_TEXT = 4000

_NONCHARACTERS = "\ufdd0-\ufdef" + "".join(
    f"{chr(plane * 0x10000 + 0xFFFE)}{chr(plane * 0x10000 + 0xFFFF)}" for plane in range(17)
)
#: Any one character the rule refuses.
FORBIDDEN = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff{_NONCHARACTERS}]")


def text_problem(value: str) -> str | None:
    """Why ``value`` may not be stored as text, or None when it may (length aside)."""
    if value.isprintable():
        # Every refused character is unprintable (Cc, Cs, Zl, Zp, and Cn for the
        # noncharacters; tests/test_text.py checks each), and this test costs a tenth of
        # the search: every append checks every text field of every event.
        return None
    found = FORBIDDEN.search(value)
    if found is None:
        return None
    return f"contains U+{ord(found.group()):04X} at {found.start()}: {_kind(found.group())}"


def _kind(char: str) -> str:
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        return "a lone surrogate is not text"
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return "control characters are refused (text fields are one line)"
    if code in (0x2028, 0x2029):
        return "line separators are refused (text fields are one line)"
    return "a noncharacter is not for interchange"


def check_text(field: str, value: object, *, required: bool, limit: int) -> str:
    """``value`` as the library stores it (surrounding spaces stripped), or
    :class:`~movecar_core.errors.InvalidCommand` naming ``field``.

    ``None`` is ``""`` when the field is not ``required``. The character rule applies to
    the whole value as given, so a control character is refused even at its ends.
    """
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise InvalidCommand(field, value, "must be a string")
    problem = text_problem(value)
    if problem is not None:
        raise InvalidCommand(field, value, problem)
    stripped = value.strip()
    if required and not stripped:
        raise InvalidCommand(field, value, "must not be empty")
    if len(stripped) > limit:
        raise InvalidCommand(field, value[:40] + "...", f"longer than {limit} characters")
    return stripped


#: attrs class -> its field names and a getter of all their values at once
_FIELDS: dict[type[Any], tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]] = {}


def _values_of(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    if len(names) > 1:
        return operator.attrgetter(*names)
    return lambda obj: tuple(getattr(obj, name) for name in names)


def event_text_problem(event: object) -> str | None:
    """The first text field of an attrs ``event`` the rule refuses (or that is longer
    than :data:`MAX_EVENT_TEXT`), as ``"Type.field: why"``; None when all are fine."""
    cls = type(event)
    fields = _FIELDS.get(cls)
    if fields is None:
        if not attrs.has(cls):
            return None
        names = tuple(a.name for a in attrs.fields(cls))
        fields = _FIELDS[cls] = names, _values_of(names)
    names, values_of = fields
    for name, value in zip(names, values_of(event), strict=True):
        if not isinstance(value, str) or (len(value) <= MAX_EVENT_TEXT and value.isprintable()):
            continue  # text_problem's shortcut, inline: every append checks every field
        if len(value) > MAX_EVENT_TEXT:
            return f"{cls.__name__}.{name}: longer than {MAX_EVENT_TEXT} characters"
        problem = text_problem(value)
        if problem is not None:
            return f"{cls.__name__}.{name}: {problem}"
    return None


def one_line(text: str, limit: int = 500) -> str:
    """``text`` made storable: each refused character a space, at most ``limit`` long (for
    text the library records from elsewhere, such as a switch's error message)."""
    cleaned = FORBIDDEN.sub(" ", text).strip()
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
