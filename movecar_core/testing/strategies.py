"""Hypothesis strategies for property-based suites, ours and the host backends'.

A host that embeds the library tests its integration against the same inputs we test
with: every strategy here yields only what the parsers accept (or, for ``invalid_*``,
only what they must refuse), so a failing example is a real bug, not a bad generator.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from movecar_core.calls import STORED_PROGRESS
from movecar_core.case import (
    CallOutcome,
    CallOutcomeRecorded,
    CallProgressed,
    CaseCancelled,
    CaseOpened,
    CaseRecord,
    CaseUnresolved,
    DisputeRaised,
    EscalatedTo110,
    EscalationReason,
    EscalationRequested,
    Event,
    MoveConfirmed,
    OwnerCallPlaced,
    OwnerLookedUp,
    TransferTo110Failed,
    UnresolvedReason,
)
from movecar_core.errors import CommandRejected
from movecar_core.machine import TRIGGERS, CasePolicy, apply, check, fold
from movecar_core.plates import (
    NEW_ENERGY_LARGE_LETTERS,
    NEW_ENERGY_SMALL_LETTERS,
    PROVINCES,
    SUFFIXES,
    PlateKind,
)
from movecar_core.text import text_problem

__all__ = [
    "aware_datetimes",
    "canonical_fixed_phones",
    "canonical_mobile_phones",
    "canonical_plates",
    "case_histories",
    "fixed_phones",
    "forbidden_texts",
    "invalid_phones",
    "invalid_plates",
    "mobile_phones",
    "phone_spellings",
    "phones",
    "plate_spellings",
    "plates",
    "texts",
]

# =========================================================================================
# Plates and phones
# =========================================================================================

_DIGITS = "0123456789"
_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # I and O never appear in a serial
_SERIAL = _LETTERS + _DIGITS
_AUTHORITY = "ABCDEFGHJKLMNOPQRSTUVWXYZ"  # O is a real authority letter (police), I is not
_SUFFIX_OF = {kind: suffix for suffix, kind in SUFFIXES.items()}
_PLATE_SEPARATORS = ("", "·", " ", "-", "•", "・", "\u3000", "．", "－", " · ")
_NOT_PROVINCES = "无中台港澳学警挂领试超军北东南西A1"


def _chars(alphabet: str, n: int) -> st.SearchStrategy[str]:
    return st.text(st.sampled_from(alphabet), min_size=n, max_size=n)


@st.composite
def _serial(draw: st.DrawFn, n: int) -> str:
    """``n`` serial characters with at most two letters, like most plates on the road."""
    chars = list(draw(_chars(_DIGITS, n)))
    for i in draw(st.lists(st.integers(0, n - 1), max_size=2, unique=True)):
        chars[i] = draw(st.sampled_from(_LETTERS))
    return "".join(chars)


def _full_width(text: str) -> str:
    """Full-width twin of the ASCII in ``text`` (what a Chinese IME may type)."""
    return "".join(
        "\u3000" if c == " " else chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text
    )


@st.composite
def _mainland(draw: st.DrawFn, kind: PlateKind) -> str:
    if kind in (PlateKind.HONG_KONG, PlateKind.MACAU):
        head = "粤Z"
    else:
        head = draw(st.sampled_from(PROVINCES)) + draw(st.sampled_from(_AUTHORITY))
    if kind is PlateKind.REGULAR:
        serial = draw(_serial(5))
    elif kind is PlateKind.NEW_ENERGY_SMALL:
        serial = (
            draw(st.sampled_from(NEW_ENERGY_SMALL_LETTERS))
            + draw(st.sampled_from(_SERIAL))
            + draw(_chars(_DIGITS, 4))
        )
    elif kind is PlateKind.NEW_ENERGY_LARGE:
        serial = draw(_chars(_DIGITS, 5)) + draw(st.sampled_from(NEW_ENERGY_LARGE_LETTERS))
    else:
        serial = draw(_serial(4)) + _SUFFIX_OF[kind]
    return head + serial


def canonical_plates(kinds: Iterable[PlateKind] | None = None) -> st.SearchStrategy[str]:
    """Valid plates in canonical form (``苏D12345``), of every kind or only of ``kinds``.

    Serials carry at most two letters, as plates on the road do; the parser accepts more.
    """
    chosen = list(PlateKind) if kinds is None else list(kinds)
    options = [
        _chars(_DIGITS, 6).map("使".__add__) if kind is PlateKind.EMBASSY else _mainland(kind)
        for kind in chosen
    ]
    return st.one_of(options)


@st.composite
def _respell_plate(draw: st.DrawFn, canonical: str) -> str:
    chars = [c.lower() if c.isascii() and draw(st.booleans()) else c for c in canonical]
    if draw(st.booleans()):
        text = draw(st.sampled_from(_PLATE_SEPARATORS)).join(chars)
    else:
        text = "".join(chars[:2]) + draw(st.sampled_from(_PLATE_SEPARATORS)) + "".join(chars[2:])
    if draw(st.booleans()):
        text = _full_width(text)
    pad = st.sampled_from(("", " ", "\t", "\u3000"))
    return draw(pad) + text + draw(pad)


def plate_spellings(canonical: str) -> st.SearchStrategy[str]:
    """Ways a person may type the plate ``canonical``: separators, lower case, full width."""
    return _respell_plate(canonical)


def plates(kinds: Iterable[PlateKind] | None = None) -> st.SearchStrategy[str]:
    """Valid plates as people type them (see :func:`plate_spellings`), canonical included."""
    return canonical_plates(kinds).flatmap(lambda c: st.one_of(st.just(c), plate_spellings(c)))


@st.composite
def _broken_plate(draw: st.DrawFn) -> str:
    plate = draw(canonical_plates())
    how = draw(st.integers(min_value=0, max_value=7))
    if how == 0:  # a head that is no province
        return draw(st.sampled_from(_NOT_PROVINCES)) + plate[1:]
    if how == 1:  # I or O in the serial (or, for 使, among its digits)
        i = draw(st.integers(min_value=1 if plate[0] == "使" else 2, max_value=len(plate) - 1))
        return plate[:i] + draw(st.sampled_from("IOio")) + plate[i + 1 :]
    if how == 2:  # too short: every plate has 7 or 8 characters
        return plate[: draw(st.integers(min_value=1, max_value=6))]
    if how == 3:  # too long
        return plate + draw(_chars(_SERIAL, 1)) + draw(_chars(_SERIAL + "学警", 1))
    if how == 4:  # a character that is on no plate
        i = draw(st.integers(min_value=1, max_value=len(plate)))
        return plate[:i] + draw(st.sampled_from("!?#*@/+,中")) + plate[i:]
    if how == 5:  # a suffix anywhere but last
        i = draw(st.integers(min_value=1, max_value=len(plate) - 2))
        return plate[:i] + draw(st.sampled_from(sorted(SUFFIXES))) + plate[i + 1 :]
    if how == 6:  # authority letter I, or a digit where the authority letter goes
        if plate[0] == "使":
            return "使" + draw(_chars(_SERIAL, 5))
        return plate[0] + draw(st.sampled_from("I1")) + plate[2:]
    return draw(st.sampled_from(("", " ", "·", "- -", "\u3000")))  # nothing but separators


def invalid_plates() -> st.SearchStrategy[str]:
    """Strings that :func:`~movecar_core.plates.parse_plate` must refuse: near misses of
    real plates (bad province, I/O, wrong length, stray characters, misplaced suffix)."""
    return _broken_plate()


def canonical_mobile_phones() -> st.SearchStrategy[str]:
    """Mainland mobiles in canonical form: ``13812345678``."""
    return st.builds(
        lambda second, rest: "1" + second + rest,
        st.sampled_from("3456789"),
        _chars(_DIGITS, 9),
    )


@st.composite
def _canonical_fixed(draw: st.DrawFn) -> str:
    area = draw(
        st.one_of(
            st.just("010"),
            _chars(_DIGITS, 1).map("02".__add__),
            st.builds(str.__add__, st.sampled_from("3456789").map("0".__add__), _chars(_DIGITS, 2)),
        )
    )
    local = draw(st.sampled_from("23456789")) + draw(_chars(_DIGITS, draw(st.sampled_from((6, 7)))))
    return f"{area}-{local}"


def canonical_fixed_phones() -> st.SearchStrategy[str]:
    """Fixed lines in canonical form: ``0519-81997327``, ``010-62345678``, ``021-6234567``."""
    return _canonical_fixed()


def _group(local: str, sep: str) -> str:
    return local[:-4] + sep + local[-4:]


@st.composite
def _respell_phone(draw: st.DrawFn, canonical: str) -> str:
    sep = draw(st.sampled_from(("", " ", "-", ".")))
    if "-" in canonical:
        area, local = canonical.split("-")
        style = draw(st.integers(min_value=0, max_value=4))
        if style == 0:
            text = f"{area}{draw(st.sampled_from(('', ' ', '-')))}{_group(local, sep)}"
        elif style == 1:
            text = f"({area}){draw(st.sampled_from(('', ' ')))}{_group(local, sep)}"
        elif style == 2:
            text = f"+86 {area[1:]} {_group(local, sep)}"
        elif style == 3:
            text = f"0086-{area[1:]}-{local}"
        else:
            text = f"+86 (0){area[1:]} {local}"
    else:
        body = canonical[:3] + sep + canonical[3:7] + sep + canonical[7:]
        prefix = draw(st.sampled_from(("", "+86", "+86 ", "+86-", "0086", "0086-", "86", "86 ")))
        text = prefix + body
    if draw(st.booleans()):
        text = _full_width(text)
    pad = st.sampled_from(("", " ", "\u3000"))
    return draw(pad) + text + draw(pad)


def phone_spellings(canonical: str) -> st.SearchStrategy[str]:
    """Ways the canonical number may be written: +86/0086/86 prefixes, groups, full width."""
    return _respell_phone(canonical)


def mobile_phones() -> st.SearchStrategy[str]:
    """Valid mobiles as people and switches write them."""
    return canonical_mobile_phones().flatmap(phone_spellings)


def fixed_phones() -> st.SearchStrategy[str]:
    """Valid fixed lines with area code as people and switches write them."""
    return canonical_fixed_phones().flatmap(phone_spellings)


def phones() -> st.SearchStrategy[str]:
    """Valid mobiles and fixed lines, in every accepted spelling."""
    return st.one_of(mobile_phones(), fixed_phones())


@st.composite
def _broken_phone(draw: st.DrawFn) -> str:
    how = draw(st.integers(min_value=0, max_value=7))
    if how == 0:  # mobile with a second digit no operator uses
        return "1" + draw(st.sampled_from("012")) + draw(_chars(_DIGITS, 9))
    if how == 1:  # mobile one digit short or long
        mobile = draw(canonical_mobile_phones())
        return mobile[:-1] if draw(st.booleans()) else mobile + draw(_chars(_DIGITS, 1))
    if how == 2:  # local number starting with 0 or 1
        area = draw(canonical_fixed_phones()).split("-")[0]
        return f"{area}-{draw(st.sampled_from('01'))}{draw(_chars(_DIGITS, 7))}"
    if how == 3:  # local number too short or too long
        area = draw(canonical_fixed_phones()).split("-")[0]
        size = draw(st.sampled_from((1, 3, 5, 6, 9, 10)))
        return f"{area}-{draw(st.sampled_from('23456789'))}{draw(_chars(_DIGITS, size - 1))}"
    if how == 4:  # fixed line without area code
        return draw(canonical_fixed_phones()).split("-")[1]
    if how == 5:  # another country
        country = draw(st.sampled_from(("1", "44", "81", "852", "853", "886")))
        return f"+{country} {draw(_chars(_DIGITS, 8))}"
    if how == 6:  # a character that is no part of a number
        valid = draw(canonical_mobile_phones())
        i = draw(st.integers(min_value=0, max_value=len(valid)))
        return valid[:i] + draw(st.sampled_from("abx#*,转/")) + valid[i:]
    return draw(st.sampled_from(("", " ", "-", "()", "+86", "110", "114", "0519110", "12345")))


def invalid_phones() -> st.SearchStrategy[str]:
    """Strings that :func:`~movecar_core.phones.parse_phone` must refuse."""
    return _broken_phone()


# =========================================================================================
# Cases and event histories
# =========================================================================================

_SHANGHAI = ZoneInfo("Asia/Shanghai")
# =========================================================================================
# Free text (movecar_core.text)
# =========================================================================================


def texts(min_size: int = 0, max_size: int = 60) -> st.SearchStrategy[str]:
    """Text the library stores as given: any script, emoji, spaces, quotes; no control
    character, lone surrogate or noncharacter (the rule of :mod:`movecar_core.text`)."""
    return st.text(min_size=min_size, max_size=max_size).filter(lambda v: text_problem(v) is None)


_FORBIDDEN_CHARS = st.one_of(
    st.sampled_from("\x00\t\n\r\x1b\x7f\x85\u2028\u2029\ufffe\uffff\U0010ffff"),
    st.integers(0x00, 0x1F),
    st.integers(0x7F, 0x9F),
    st.integers(0xD800, 0xDFFF),
    st.integers(0xFDD0, 0xFDEF),
    st.integers(0, 16).map(lambda plane: plane * 0x10000 + 0xFFFE),
).map(lambda c: c if isinstance(c, str) else chr(c))


def forbidden_texts(max_size: int = 60) -> st.SearchStrategy[str]:
    """Text with at least one character the library refuses, anywhere in it."""
    return st.tuples(texts(max_size=max_size // 2), _FORBIDDEN_CHARS, st.text(max_size=8)).map(
        "".join
    )


_LOCATIONS = (
    "武进区湖塘镇花园街 8 号",
    "常武中路 18 号地下车库",
    "延政中路 5 号",
    "人民医院急诊通道",
)


def aware_datetimes(
    start: dt.datetime = dt.datetime(2024, 4, 1, tzinfo=_SHANGHAI),
    end: dt.datetime = dt.datetime(2027, 3, 31, 23, 59, tzinfo=_SHANGHAI),
) -> st.SearchStrategy[dt.datetime]:
    """Times inside the seed contract's longest possible term, in Asia/Shanghai."""
    span = int((end - start).total_seconds())
    return st.integers(0, span).map(lambda s: start + dt.timedelta(seconds=s))


def _event_for(
    draw: st.DrawFn, trigger: str, case: CaseRecord, at: dt.datetime, owner: str
) -> Event:
    cid = case.case_id
    if trigger in ("owner_found", "owner_not_found"):
        found = trigger == "owner_found"
        return OwnerLookedUp(cid, at, None, "seat-1", found, owner if found else None, "jsjj")
    if trigger == "call_placed":
        return OwnerCallPlaced(
            cid, at, None, f"call-{case.attempts + 1}", case.attempts + 1, "seat-1",
            "0519110", f"您好，这是公安 110 挪车服务专线，您是{case.plate} 车主吗？", "v1",
        )  # fmt: skip
    if trigger in ("call_answered", "call_unanswered", "call_disputed"):
        outcomes = [
            o for o in CallOutcome if CallOutcomeRecorded(cid, at, None, "", o).trigger == trigger
        ]
        assert case.call_in_flight is not None
        return CallOutcomeRecorded(
            cid, at, None, case.call_in_flight, draw(st.sampled_from(outcomes))
        )
    if trigger == "call_progressed":
        assert case.call_in_flight is not None
        progress = draw(st.sampled_from(sorted(STORED_PROGRESS)))
        status = draw(st.none() | st.integers(100, 199))
        return CallProgressed(cid, at, None, case.call_in_flight, progress, status, "")
    if trigger == "owner_unreachable":
        return CaseUnresolved(cid, at, None, UnresolvedReason.OWNER_UNREACHABLE)
    if trigger == "move_confirmed":
        return MoveConfirmed(cid, at, None, draw(st.sampled_from(["", "求助人确认"])))
    if trigger == "dispute_raised":
        return DisputeRaised(cid, at, None, "车主称车辆非其所有")
    if trigger in ("escalated", "escalation_requested"):
        reason = draw(st.sampled_from(EscalationReason))
        note = "群众情绪激动" if reason is EscalationReason.OTHER else None
        kind = EscalatedTo110 if trigger == "escalated" else EscalationRequested
        return kind(cid, at, None, reason, note, "0519-81997327")
    if trigger == "transfer_failed":
        return TransferTo110Failed(cid, at, None, "case: transfer to 0519-81997327 failed")
    assert trigger == "cancelled", trigger
    return CaseCancelled(cid, at, None, "求助人已自行解决")


@st.composite
def case_histories(
    draw: st.DrawFn, max_events: int = 12, policy: CasePolicy | None = None
) -> list[Event]:
    """Valid event histories of one case: a random walk through the state machine.

    Every step is a transition the machine allows from the current state with its guards
    satisfied, so ``fold`` accepts every history drawn (terminal or still open).
    """
    rules = policy or CasePolicy()
    at = draw(aware_datetimes())
    opened = CaseOpened(
        draw(st.uuids()).hex, at, None, draw(canonical_plates()), draw(st.sampled_from(_LOCATIONS)),
        draw(canonical_mobile_phones()), "seat-1",
    )  # fmt: skip
    owner = draw(canonical_mobile_phones())
    events: list[Event] = [opened]
    case = fold(events)
    while len(events) < max_events and not case.state.is_terminal and draw(st.integers(0, 7)):
        allowed = []
        for trigger in sorted(TRIGGERS):
            try:
                check(case, trigger, rules)
            except CommandRejected:
                continue
            allowed.append(trigger)
        at += dt.timedelta(seconds=draw(st.integers(1, 900)))
        event = _event_for(draw, draw(st.sampled_from(allowed)), case, at, owner)
        events.append(event)
        apply(case, event)
    return events
