"""Requester limits: how many move-car requests one number may open, and the block list.

The contract sets no such limit, but two of its clauses ask for one. 四: "不得将机动车信息用于
除挪车服务以外任何用途" — every request looks an owner up, so a number that opens request after
request is mining the platform's owner data, not moving cars. 二(四) has the service run
"参照公安 110 接警模式", and 110 blocks numbers that abuse it. The national one-tap move-car
service of the traffic police's 交管12123 app limits each user the same way: requests a
month, and a block list for users found filing malicious requests (恶意提交挪车申请 ... 列入
黑名单).

A :class:`RequesterPolicy` holds the limits: at most ``per_day`` requests opened from one
number in a day and ``per_month`` in a calendar month (Asia/Shanghai), ``None`` for no limit.
Its defaults, 3 a day and 5 a month, are 12123's: published descriptions of the app give 5
requests a month (太平洋汽车网, 2025: "一个月最多只能申请五次"); no daily figure was found, so 3
a day is this library's choice (a number blocked twice in one day, by two cars, still gets
help; a fourth request the same day is refused). Neither is the State Council's nor the
contract's: change them with ``[requesters]`` in ``movecar.toml`` (docs/requesters.md).

What counts: every case opened (``CaseOpened``) counts against the day and the month of its
opening, whatever becomes of it: closing, cancelling or escalating a case gives nothing
back (12123 counts applications, not outcomes). A refused request opens nothing and is not
counted against the number, but it is counted in the month's refusals
(:class:`RefusalCounts`), which the monthly report carries to Party A (二(七)). A repeated
``open_case`` (same ``command_id``) is the same request, counted once.

The store enforces it, in the transaction that opens the case (so two seats opening for one
number at once cannot both slip past the limit): :class:`RequesterStore` is the port, the
in-memory store keeps the counts in dictionaries (:class:`RequesterBook`), the SQL store in
a table keyed by a keyed blind index of the number (never the number itself).
"""

from __future__ import annotations

import datetime as dt
import enum
import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

import attrs

from movecar_core.errors import InvalidInput, MoveCarError, excerpt
from movecar_core.phones import mask_phone, parse_phone
from movecar_core.settlement import ServiceMonth
from movecar_core.text import text_problem

_SHANGHAI = ZoneInfo("Asia/Shanghai")

#: Longest reason for blocking or unblocking a number (the access log keeps it).
MAX_REASON = 200
#: Longest actor id (the access log's column).
MAX_ACTOR = 100
#: A limit above this is no limit anyone means: refused as a typo.
MAX_LIMIT = 10_000

#: Access-log actions of the block list (七(三): who changed it, when, why).
BLOCK_ACTION = "requester.block"
UNBLOCK_ACTION = "requester.unblock"


class RefusalReason(enum.StrEnum):
    """Why a request was refused (the order is the order they are checked in)."""

    #: The number is on the block list.
    BLOCKED = "blocked"
    #: The number opened ``per_month`` requests this month already.
    MONTHLY_LIMIT = "monthly_limit"
    #: The number opened ``per_day`` requests today already.
    DAILY_LIMIT = "daily_limit"


class RequesterRefused(MoveCarError):
    """``open_case`` refused for the requester's number; nothing was opened.

    ``reason`` is a :class:`RefusalReason`, ``masked`` the number as logs show it
    (``138****5678``); the message never holds the full number.
    """

    def __init__(self, reason: RefusalReason, masked: str, detail: str) -> None:
        self.reason = reason
        self.masked = masked
        super().__init__(f"requester {masked}: {detail}")


class RequesterBlocked(RequesterRefused):
    """The number is on the block list (abuse of the service)."""


class RequestLimitReached(RequesterRefused):
    """The number opened as many requests as the policy allows today or this month."""

    def __init__(self, reason: RefusalReason, masked: str, detail: str, limit: int) -> None:
        self.limit = limit
        super().__init__(reason, masked, detail)


def _limit(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise InvalidInput(
            f"{attribute.name}={excerpt(value)}: a whole number of requests from 1 to "
            f"{MAX_LIMIT}, or None for no limit"
        )


@attrs.frozen
class RequesterPolicy:
    """At most ``per_day`` requests opened from one number a day and ``per_month`` a month
    (Asia/Shanghai calendar days and months); ``None``: no such limit. The block list is
    enforced under every policy. Defaults: 12123's (module docstring)."""

    per_day: int | None = attrs.field(default=3, validator=_limit)
    per_month: int | None = attrs.field(default=5, validator=_limit)

    @property
    def counts(self) -> bool:
        """Whether requests are counted at all (a limit is set)."""
        return self.per_day is not None or self.per_month is not None


#: The block list alone, no limits: what a deployment enforces unless ``[requesters]``
#: sets limits (``connect()``).
BLOCK_LIST_ONLY = RequesterPolicy(per_day=None, per_month=None)


@attrs.frozen
class RefusalCounts:
    """Requests refused in a month, by reason (carried by the monthly report)."""

    blocked: int = 0
    daily_limit: int = 0
    monthly_limit: int = 0

    @property
    def total(self) -> int:
        return self.blocked + self.daily_limit + self.monthly_limit

    def add(self, reason: RefusalReason) -> RefusalCounts:
        return attrs.evolve(self, **{reason.value: getattr(self, reason.value) + 1})

    def as_dict(self) -> dict[str, int]:
        """By :class:`RefusalReason` value (the form the report's hash covers)."""
        return {r.value: getattr(self, r.value) for r in RefusalReason}


@attrs.frozen
class BlockedRequester:
    """A number on the block list: masked, and who blocked it when and why."""

    masked: str
    reason: str
    actor: str
    at: dt.datetime


@attrs.frozen
class BlockChange:
    """One change to the block list (the audit trail): ``action`` is
    :data:`BLOCK_ACTION` or :data:`UNBLOCK_ACTION`."""

    action: str
    masked: str
    reason: str
    actor: str
    at: dt.datetime


@attrs.frozen
class RequesterUsage:
    """What one number has used: requests opened today and this month, and whether it is
    blocked (what a seat may tell a caller)."""

    masked: str
    day: dt.date
    opened_today: int
    opened_this_month: int
    blocked: bool


def periods(at: dt.datetime) -> tuple[str, str]:
    """The day (``2025-03-14``) and month (``2025-03``) an instant counts in (Shanghai)."""
    if not isinstance(at, dt.datetime) or at.utcoffset() is None:
        raise InvalidInput(f"at={excerpt(at)}: must be a timezone-aware datetime")
    day = at.astimezone(_SHANGHAI).date()
    return day.isoformat(), day.isoformat()[:7]


def refusal(
    policy: RequesterPolicy, masked: str, *, blocked: bool, today: int, this_month: int
) -> RequesterRefused | None:
    """The refusal of a request, or None to admit it: ``today`` and ``this_month`` are the
    number's requests *including* this one. Blocked first, then the month (the longer
    wait), then the day. One rule, for every store."""
    if blocked:
        return RequesterBlocked(
            RefusalReason.BLOCKED, masked, "the number is blocked for abusing the service"
        )
    if policy.per_month is not None and this_month > policy.per_month:
        return RequestLimitReached(
            RefusalReason.MONTHLY_LIMIT,
            masked,
            f"{policy.per_month} requests this month already (the limit of a month)",
            policy.per_month,
        )
    if policy.per_day is not None and today > policy.per_day:
        return RequestLimitReached(
            RefusalReason.DAILY_LIMIT,
            masked,
            f"{policy.per_day} requests today already (the limit of a day)",
            policy.per_day,
        )
    return None


def canonical_requester(phone: object) -> str:
    """The canonical form of a requester's number (:class:`~movecar_core.errors.InvalidPhone`
    if it is not one): every spelling of a number is one count and one block."""
    return parse_phone(phone).canonical  # type: ignore[arg-type]


def check_reason(value: object, field: str = "reason") -> str:
    """A block-list reason or actor: one line, not empty, bounded."""
    limit = MAX_REASON if field == "reason" else MAX_ACTOR
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{field}={excerpt(value)}: must be a non-empty string")
    problem = text_problem(value)
    if problem is not None:
        raise InvalidInput(f"{field}={excerpt(value)}: {problem}")
    if len(value.strip()) > limit:
        raise InvalidInput(f"{field}={excerpt(value)}: longer than {limit} characters")
    return value.strip()


@runtime_checkable
class RequesterStore(Protocol):
    """A case store that enforces a :class:`RequesterPolicy` when it opens a case (raising a
    :class:`RequesterRefused`) and keeps the block list and the month's refusals."""

    @property
    def requesters(self) -> RequesterPolicy | None:
        """The policy enforced (None: none, not even the block list)."""
        ...

    def block_requester(self, phone: str, *, reason: str, actor: str) -> BlockedRequester:
        """Put ``phone`` on the block list (refused if it is on it); logged."""
        ...

    def unblock_requester(self, phone: str, *, reason: str, actor: str) -> BlockedRequester:
        """Take ``phone`` off the block list (refused if it is not on it); logged. Returns
        the entry removed."""
        ...

    def blocked_requesters(self) -> list[BlockedRequester]:
        """The block list, oldest block first."""
        ...

    def block_history(self) -> list[BlockChange]:
        """Every change to the block list, oldest first."""
        ...

    def requester_usage(self, phone: str, day: dt.date) -> RequesterUsage:
        """Requests ``phone`` opened on ``day`` and in its month, and whether it is blocked."""
        ...

    def requester_refusals(self, month: ServiceMonth) -> RefusalCounts:
        """Requests refused in ``month``, by reason."""
        ...


class RequesterBook:
    """The in-memory requester limits: counts in dictionaries, O(1) per request.

    Keyed by the canonical number (memory is not "at rest": the in-memory store holds the
    events with their numbers anyway). Only the recent days' and months' counts are kept:
    a new day drops what no request can count against any more. Not locked on its own:
    the in-memory store calls :meth:`admit` under its own lock, in the same step as the
    append it guards.
    """

    def __init__(self, policy: RequesterPolicy | None, clock: Callable[[], dt.datetime]) -> None:
        if policy is not None and not isinstance(policy, RequesterPolicy):
            raise InvalidInput(f"requesters={excerpt(policy)}: must be a RequesterPolicy")
        self.policy = policy
        self._clock = clock
        self._lock = threading.Lock()  # the block list, changed outside appends
        #: period ("2025-03-14" or "2025-03") -> canonical number -> requests opened
        self._counts: dict[str, dict[str, int]] = {}
        self._blocked: dict[str, BlockedRequester] = {}
        self._history: list[BlockChange] = []
        self._refusals: dict[str, RefusalCounts] = {}

    def admit(self, phone: str, at: dt.datetime) -> None:
        """Count a request opened at ``at`` or raise its :class:`RequesterRefused` (counted in
        the month's refusals, nothing else changed). Call it only for a new case whose
        append will succeed: it counts the request."""
        policy = self.policy
        if policy is None:
            return
        canonical = canonical_requester(phone)
        day, month = periods(at)
        today = this_month = 0
        if policy.counts:
            if day not in self._counts:
                self._prune(day)
            today = self._counts.setdefault(day, {}).get(canonical, 0) + 1
            this_month = self._counts.setdefault(month, {}).get(canonical, 0) + 1
        refused = refusal(
            policy,
            mask_phone(canonical),
            blocked=canonical in self._blocked,
            today=today,
            this_month=this_month,
        )
        if refused is not None:
            self._refusals[month] = self._refusals.get(month, RefusalCounts()).add(refused.reason)
            raise refused
        if policy.counts:
            self._counts[day][canonical] = today
            self._counts[month][canonical] = this_month

    def _prune(self, day: str) -> None:
        """Drop the counts no request can be counted against any more: days before the
        previous one and months before the previous one, from ``day`` on (a clock that
        steps back a little still finds its day)."""
        first = dt.date.fromisoformat(day)
        keep_day = (first - dt.timedelta(days=1)).isoformat()
        keep_month = (first.replace(day=1) - dt.timedelta(days=1)).isoformat()[:7]
        for period in list(self._counts):
            if period < (keep_day if len(period) == 10 else keep_month):
                del self._counts[period]

    def block(self, phone: str, *, reason: str, actor: str) -> BlockedRequester:
        canonical = canonical_requester(phone)
        why, who = check_reason(reason), check_reason(actor, "actor")
        with self._lock:
            found = self._blocked.get(canonical)
            if found is not None:
                raise InvalidInput(
                    f"requester {found.masked} is blocked already (since {found.at:%Y-%m-%d}, "
                    f"by {excerpt(found.actor, 40)})"
                )
            entry = BlockedRequester(mask_phone(canonical), why, who, self._clock())
            self._blocked[canonical] = entry
            self._history.append(BlockChange(BLOCK_ACTION, entry.masked, why, who, entry.at))
            return entry

    def unblock(self, phone: str, *, reason: str, actor: str) -> BlockedRequester:
        canonical = canonical_requester(phone)
        why, who = check_reason(reason), check_reason(actor, "actor")
        with self._lock:
            found = self._blocked.pop(canonical, None)
            if found is None:
                raise InvalidInput(f"requester {mask_phone(canonical)} is not blocked")
            self._history.append(BlockChange(UNBLOCK_ACTION, found.masked, why, who, self._clock()))
            return found

    def blocked(self) -> list[BlockedRequester]:
        with self._lock:
            return sorted(self._blocked.values(), key=lambda b: b.at)

    def history(self) -> list[BlockChange]:
        with self._lock:
            return list(self._history)

    def usage(self, phone: str, day: dt.date) -> RequesterUsage:
        canonical = canonical_requester(phone)
        if isinstance(day, dt.datetime) or not isinstance(day, dt.date):
            raise InvalidInput(f"day={excerpt(day)}: must be a date")
        key = day.isoformat()
        return RequesterUsage(
            mask_phone(canonical),
            day,
            self._counts.get(key, {}).get(canonical, 0),
            self._counts.get(key[:7], {}).get(canonical, 0),
            canonical in self._blocked,
        )

    def refusals(self, month: ServiceMonth) -> RefusalCounts:
        if not isinstance(month, ServiceMonth):
            raise InvalidInput(f"month={excerpt(month)}: must be a ServiceMonth")
        return self._refusals.get(str(month), RefusalCounts())


class RequesterBookStore:
    """:class:`RequesterStore`'s methods over a :class:`RequesterBook` (the in-memory
    store's ``_requester_book``), kept apart from the store's own code."""

    _requester_book: RequesterBook

    @property
    def requesters(self) -> RequesterPolicy | None:
        return self._requester_book.policy

    def block_requester(self, phone: str, *, reason: str, actor: str) -> BlockedRequester:
        return self._requester_book.block(phone, reason=reason, actor=actor)

    def unblock_requester(self, phone: str, *, reason: str, actor: str) -> BlockedRequester:
        return self._requester_book.unblock(phone, reason=reason, actor=actor)

    def blocked_requesters(self) -> list[BlockedRequester]:
        return self._requester_book.blocked()

    def block_history(self) -> list[BlockChange]:
        return self._requester_book.history()

    def requester_usage(self, phone: str, day: dt.date) -> RequesterUsage:
        return self._requester_book.usage(phone, day)

    def requester_refusals(self, month: ServiceMonth) -> RefusalCounts:
        return self._requester_book.refusals(month)
