"""The library's typed errors.

Every rejection raises a subclass of :class:`MoveCarError` whose message names the field
and the value that was refused. Errors about bad input are also ``ValueError`` so that
callers who only know the standard library can still catch them; a rejected command
never writes anything.
"""

from __future__ import annotations

import datetime as dt
import re

#: Longest message an error gives: a 1 MB argument must not make a 1 MB log line.
MAX_MESSAGE = 800
#: Longest excerpt of a refused value quoted in a message.
MAX_EXCERPT = 60

#: What may stand between the digit groups of a written phone number (ASCII, full width).
_SEPARATORS = frozenset(" -.()+\u3000（）－．＋\u00a0")
_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_PHONE = re.compile(
    r"(?:0086|86)(?:1[3-9][0-9]{9}|0?[1-9][0-9]{8,10})|1[3-9][0-9]{9}|0[1-9][0-9]{8,10}"
)


def _letter(c: str) -> bool:
    return c.isascii() and c.isalpha()


#: What a message tells a person to do about records that do not add up (the audit names
#: what was changed; an auditor runs it, so the command names that role).
AUDIT_HINT = "run `movecar audit verify --actor ID --role auditor`"


def redact(text: str) -> str:
    """``text`` with every mainland phone number in it masked.

    A phone is a sequence of digit groups (decimal digits of any script: full width too)
    joined by separators, not touching an ASCII letter, whose digits are an 11-digit
    mobile or a fixed line with its area code, with or without +86/0086. And a mobile
    number is masked wherever its 11 digits stand in a run of digits and separators: glued
    to letters (``tel13800001111``), behind a stray prefix (``0013800001111``), inside a
    longer number (an identity card's, say). Each keeps its first 3 and last 2 digits
    (``139******78``). Dates, times, amounts and ids (lower-case hex words of 16 or
    more characters with a letter, as the library writes them) are left alone.
    """
    chars = list(text)
    groups: list[list[int]] = []  # positions of the digits of each group, in order
    n, i = len(text), 0
    while i <= n:
        if i < n and text[i].isdecimal():
            j = i
            while j < n and text[j].isdecimal():
                j += 1
            touches = (i > 0 and _letter(text[i - 1])) or (j < n and _letter(text[j]))
            if touches:
                _mask_runs(text, chars, groups)
                groups = []
            else:
                groups.append(list(range(i, j)))
            i = j
            continue
        if i == n or text[i] not in _SEPARATORS:
            _mask_runs(text, chars, groups)
            groups = []
        i += 1
    _mask_embedded_mobiles(chars)
    return "".join(chars)


def _mask_embedded_mobiles(chars: list[str]) -> None:
    """Mask each mobile number whose digits still stand in a run of digits and
    separators (what the groups above do not reach: glued to letters or to more digits),
    but in an id (:func:`_in_hex_id`)."""
    n, i = len(chars), 0
    while i < n:
        if not chars[i].isdecimal():
            i += 1
            continue
        where: list[int] = []  # positions of the run's digits
        j = i
        while j < n and (chars[j].isdecimal() or chars[j] in _SEPARATORS):
            if chars[j].isdecimal():
                where.append(j)
            j += 1
        digits = "".join(str(int(chars[k])) for k in where)
        for found in _MOBILE.finditer(digits):
            first = where[found.start()]
            if _in_hex_id(chars, first):
                continue
            for k in where[found.start() + 3 : found.end() - 2]:
                chars[k] = "*"
        i = j


#: An id as the library writes them (case, call, command ids): lower-case hex, 16 or
#: more characters, with a letter (a long number of digits only is no such id). Its
#: digits may hold a mobile number by chance; it stays whole, so an error or an audit
#: finding still names the case.
_HEX_ID = re.compile(r"(?=[0-9]*[a-f])[0-9a-f]{16,}")


def _in_hex_id(chars: list[str], at: int) -> bool:
    """Whether the ASCII word around position ``at`` is a hex id."""
    start = at
    while start > 0 and chars[start - 1].isascii() and chars[start - 1].isalnum():
        start -= 1
    end = at
    while end < len(chars) and chars[end].isascii() and chars[end].isalnum():
        end += 1
    return _HEX_ID.fullmatch("".join(chars[start:end])) is not None


def _mask_runs(text: str, chars: list[str], groups: list[list[int]]) -> None:
    """Mask each phone made of consecutive ``groups`` (the longest from each start)."""
    start = 0
    while start < len(groups):
        best = None
        where: list[int] = []
        for end in range(start, len(groups)):
            where = where + groups[end]
            if len(where) > 16:
                break
            if _PHONE.fullmatch("".join(str(int(text[k])) for k in where)):
                best = (end, where)
        if best is None:
            start += 1
            continue
        end, where = best
        for k in where[3:-2]:
            chars[k] = "*"
        start = end + 1


def excerpt(value: object, limit: int = MAX_EXCERPT) -> str:
    """A short, redacted ``repr`` of a refused value, for an error message."""
    try:
        shown = repr(value)
    except Exception:  # a hostile __repr__ must not hide the real error
        shown = f"<{type(value).__name__}>"
    if len(shown) > limit:
        shown = shown[: limit - 1] + "…"
    return redact(shown)


def bounded(message: str) -> str:
    """A message as every library error shows it: phones masked, at most MAX_MESSAGE."""
    text = redact(message)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


class MoveCarError(Exception):
    """Base of every error the library raises on purpose.

    Its message never holds a full phone number (:func:`redact`) and is at most
    :data:`MAX_MESSAGE` characters, whatever the input was.
    """

    def __str__(self) -> str:
        return bounded(super().__str__())


# --- bad input -------------------------------------------------------------------------


class InvalidInput(MoveCarError, ValueError):
    """A value given to the library is malformed."""


class InvalidPlate(InvalidInput):
    """A licence plate that is not a valid mainland-China plate."""

    def __init__(self, text: object, why: str) -> None:
        self.text = text
        self.why = why
        super().__init__(f"invalid plate {excerpt(text)}: {why}")


def _masked_phone(text: object) -> str:
    """A refused phone number with all but its first 3 and last 2 digits masked: even a
    malformed number is somebody's number."""
    if not isinstance(text, str):
        return excerpt(text)
    total = sum(c.isdecimal() for c in text)
    seen, out = 0, []
    for c in text[:MAX_EXCERPT]:
        if c.isdecimal():
            seen += 1
            out.append(c if seen <= 3 or seen > total - 2 else "*")
        else:
            out.append(c)
    return repr("".join(out)) + ("…" if len(text) > MAX_EXCERPT else "")


class InvalidPhone(InvalidInput):
    """A phone number that is neither an 11-digit mobile nor a fixed line with area code."""

    def __init__(self, text: object, why: str) -> None:
        self.text = text
        self.why = why
        super().__init__(f"invalid phone {_masked_phone(text)}: {why}")


class InvalidContract(InvalidInput):
    """Contract terms that contradict themselves (overlapping tiers, negative rates...)."""


class InvalidCommand(InvalidInput):
    """A command whose arguments are malformed (empty location, missing note...)."""

    def __init__(self, field: str, value: object, why: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"{field}={excerpt(value)}: {why}")


# --- refused by the case's rules ---------------------------------------------------------


class CaseError(MoveCarError):
    """A command refused because of the case it addresses."""


class UnknownCase(CaseError, KeyError):
    def __init__(self, case_id: str) -> None:
        self.case_id = case_id
        super().__init__(f"no case with case_id={excerpt(case_id)}")

    def __str__(self) -> str:  # KeyError would quote the message again
        return bounded(str(self.args[0]))


class CommandRejected(CaseError):
    """The case's state machine refuses the command (a guard failed)."""

    def __init__(self, case_id: str, state: str, command: str, why: str) -> None:
        self.case_id = case_id
        self.state = state
        self.command = command
        self.why = why
        super().__init__(f"case {case_id}: {command} refused in state {state!r}: {why}")


class CaseClosed(CommandRejected):
    """Every command on a case in a terminal state is refused."""


class IllegalTransition(CommandRejected):
    """The command has no transition from the case's current state."""


class OwnerNotLocated(CommandRejected):
    """The owner may be called only after the owner was located."""


class CallAttemptsExhausted(CommandRejected):
    """The case already used every outbound call attempt the policy allows."""


class CallInFlight(CommandRejected):
    """Only one outbound call at a time per case (annex 2: no automated mass calling)."""


class NoCallInFlight(CommandRejected):
    """An outcome was reported but no outbound call is waiting for one."""


class UnknownCall(CommandRejected):
    """The outcome names a call that is not the case's call in flight."""


class CommandIdReused(CaseError):
    """A command id was used before on the case for a different command, or for the same
    command with other arguments: a repeat must ask for exactly the same thing."""

    def __init__(self, command_id: str, first: str, now: str, how: str = "") -> None:
        self.command_id = command_id
        shown = f"{command_id!r:.80}"
        if how:
            message = f"command_id={shown} was used for {first} {how}; it cannot be reused"
        else:
            message = f"command_id={shown} was used for {first}; it cannot be reused for {now}"
        super().__init__(message)


class CasePurged(CaseError):
    """The case was purged under the 3-year retention rule (二(四)): only a tombstone
    without personal data remains. Every command and query on it is refused, and so is an
    ``open_case`` repeating the ``command_id`` that opened it (a new case needs a new
    ``command_id``): the purged case's id is never handed out again as if it still existed.

    The message names the case id, the purge date and the command id when there is one;
    never the plate, a location or a phone number, which the purge deleted.
    """

    def __init__(
        self,
        case_id: str,
        purged_at: dt.datetime | None = None,
        *,
        command_id: str | None = None,
    ) -> None:
        self.case_id = case_id
        self.purged_at = purged_at
        self.command_id = command_id
        when = "" if purged_at is None else f" on {purged_at.date().isoformat()}"
        what = (
            f"case {case_id} was purged{when} under the 3-year retention of 二(四) "
            "(所有移车服务数据及电话录音资料，必须保存 3 年): only its tombstone remains"
        )
        if command_id is not None:
            what = (
                f"open_case command_id={command_id!r:.80} opened {what}; it cannot open or "
                "return that case again (use a new command_id for a new case)"
            )
        super().__init__(what)


class ConcurrencyConflict(CaseError):
    """Appending with a stale expected version: someone else wrote the case first."""

    def __init__(self, case_id: str, expected: int, actual: int) -> None:
        self.case_id = case_id
        self.expected = expected
        self.actual = actual
        super().__init__(f"case {case_id}: expected version {expected}, store has version {actual}")


# --- the outside world ------------------------------------------------------------------


class PortError(MoveCarError):
    """An adapter behind a port could not do its job."""


class RegistryUnavailable(PortError):
    """The vehicle-owner data source (the traffic-police platform) cannot be reached."""


class TelephonyError(PortError):
    """The telephony gateway refused or failed to place or transfer a call."""


# --- retention (二(四)) ---------------------------------------------------------------------


class PurgeTimeRefused(InvalidInput):
    """A retention purge asked to run as of a naive time, or as of a time later than the
    store's clock by more than :data:`movecar_core.retention.PURGE_CLOCK_SKEW` (a forged
    future would purge records before their 3 years, 二(四)). Nothing is purged."""

    def __init__(self, field: str, value: object, why: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"{field}={excerpt(value, 80)}: {why}")


# --- money, calendar, settlement and contract term (三, 五, 一(三)) -------------------------


class CalendarYearNotCovered(MoveCarError, LookupError):
    """A date falls in a year the working-day table has no State Council notice for."""

    def __init__(self, year: int, covered: str) -> None:
        self.year = year
        self.covered = covered
        super().__init__(
            f"year={year} is not in the working-day calendar (covered: {covered}); never "
            f"guessing: write the State Council notice 国务院办公厅关于{year}年部分节假日安排的"
            f"通知 as a year file and install it with `movecar calendar add cal-{year}.toml` "
            f"(docs/calendar.md), or give it to WorkingDayCalendar.with_year({year}, ...)"
        )

    def __str__(self) -> str:  # LookupError would not quote, but keep the message as-is
        return bounded(str(self.args[0]))


class SettlementError(MoveCarError):
    """A settlement event refused by the monthly cycle of 三 (结算标准与方式)."""


class IllegalSettlementTransition(SettlementError):
    """The settlement record's state has no transition for the event."""

    def __init__(self, service_month: str, state: str, event: str) -> None:
        self.service_month = service_month
        self.state = state
        self.event = event
        super().__init__(
            f"settlement {service_month}: event {event} is not allowed in state {state!r}"
        )


class SettlementDeadlineError(SettlementError):
    """An event on the wrong side of a contract deadline (an objection after the 15th...)."""

    def __init__(self, service_month: str, event: str, why: str) -> None:
        self.service_month = service_month
        self.event = event
        self.why = why
        super().__init__(f"settlement {service_month}: {event} refused: {why}")


class MonthNotOver(SettlementError):
    """A month cannot be reported or settled before it has ended (Asia/Shanghai)."""


class MonthAlreadyReported(SettlementError):
    """The month's report (or settlement) was kept before, with other figures."""

    def __init__(self, month: str, why: str) -> None:
        self.month = month
        super().__init__(f"month={month}: already reported: {why}")


class TermError(MoveCarError):
    """A renewal or a date the contract term (一(三)) does not allow."""


class RenewalRefused(TermError):
    """A renewal without Party A's passed assessment, or beyond the renewals allowed."""


class OutsideContractTerm(TermError, LookupError):
    """A date outside every service year granted so far."""

    def __str__(self) -> str:
        return bounded(str(self.args[0]))
