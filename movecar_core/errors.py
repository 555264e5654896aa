"""The library's typed errors.

Every rejection raises a subclass of :class:`MoveCarError` whose message names the field
and the value that was refused. Errors about bad input are also ``ValueError`` so that
callers who only know the standard library can still catch them; a rejected command
never writes anything.
"""

from __future__ import annotations


class MoveCarError(Exception):
    """Base of every error the library raises on purpose."""


# --- bad input -------------------------------------------------------------------------


class InvalidInput(MoveCarError, ValueError):
    """A value given to the library is malformed."""


class InvalidPlate(InvalidInput):
    """A licence plate that is not a valid mainland-China plate."""

    def __init__(self, text: object, why: str) -> None:
        self.text = text
        self.why = why
        super().__init__(f"invalid plate {text!r}: {why}")


class InvalidPhone(InvalidInput):
    """A phone number that is neither an 11-digit mobile nor a fixed line with area code."""

    def __init__(self, text: object, why: str) -> None:
        self.text = text
        self.why = why
        super().__init__(f"invalid phone {text!r}: {why}")


class InvalidContract(InvalidInput):
    """Contract terms that contradict themselves (overlapping tiers, negative rates...)."""


class InvalidCommand(InvalidInput):
    """A command whose arguments are malformed (empty location, missing note...)."""

    def __init__(self, field: str, value: object, why: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"{field}={value!r}: {why}")


# --- refused by the case's rules ---------------------------------------------------------


class CaseError(MoveCarError):
    """A command refused because of the case it addresses."""


class UnknownCase(CaseError, KeyError):
    def __init__(self, case_id: str) -> None:
        self.case_id = case_id
        super().__init__(f"no case with case_id={case_id!r}")

    def __str__(self) -> str:  # KeyError would quote the message again
        return str(self.args[0])


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


# --- money, calendar, settlement and contract term (三, 五, 一(三)) -------------------------


class CalendarYearNotCovered(MoveCarError, LookupError):
    """A date falls in a year the working-day table has no State Council notice for."""

    def __init__(self, year: int, covered: str) -> None:
        self.year = year
        self.covered = covered
        super().__init__(
            f"year={year} is not in the working-day calendar (covered: {covered}); never "
            f"guessing: supply the State Council notice 国务院办公厅关于{year}年部分节假日安排的"
            f"通知 with WorkingDayCalendar.with_year({year}, holidays=[...], workdays=[...]), "
            f"or upgrade chinesecalendar and re-run scripts/gen_cn_holidays.py"
        )

    def __str__(self) -> str:  # LookupError would not quote, but keep the message as-is
        return str(self.args[0])


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
        return str(self.args[0])
