"""What a compliance simulation runs: volume, profile, seats, behaviour, outages, faults.

A :class:`Scenario` is a value; :func:`Scenario.from_toml` reads one from a TOML file
(``examples/scenarios/*.toml``), refusing anything it does not know with
:class:`InvalidScenario` naming the key. Every field has a default, so an empty file is the
default scenario (:data:`DEFAULT`): one month at a scaled-down volume that runs in seconds.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs

from movecar_core.contract import WUJIN_114_2024, Contract, Tier
from movecar_core.errors import InvalidInput
from movecar_core.settlement import ServiceMonth

T = TypeVar("T")


class InvalidScenario(InvalidInput):
    """A scenario value or file that cannot be run (names the key, never echoes a file)."""


#: The upper end of what the simulator is built for (issue 11: "any volume up to 3.5
#: million calls"), a little above the contract's top tier boundary of 300 万单.
MAX_CALLS_PER_YEAR = 3_500_000

#: Relative inbound load per hour of the day (00-23): night is quiet, the morning and
#: evening rush hours are not (residential areas at 7-9, shopping streets at 18-21).
HOURLY = (
    0.25, 0.15, 0.10, 0.08, 0.08, 0.15, 0.45, 1.30, 1.60, 1.20, 1.00, 0.95,
    0.90, 0.85, 0.90, 0.95, 1.05, 1.25, 1.45, 1.40, 1.20, 0.95, 0.65, 0.40,
)  # fmt: skip
#: Relative load per day of the week, Monday first.
WEEKDAYS = (1.05, 1.0, 1.0, 1.0, 1.05, 0.95, 0.9)
#: Relative load per calendar month, January first (Spring Festival travel in Jan/Feb).
MONTHS = (1.05, 1.1, 0.95, 1.0, 1.0, 0.95, 1.0, 1.0, 0.95, 1.05, 0.95, 1.0)


def _number(key: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidScenario(f"{key}={value!r:.40}: must be a number")
    if not low <= value <= high:
        raise InvalidScenario(f"{key}={value!r:.40}: must be from {low:g} to {high:g}")
    return float(value)


def _count(key: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidScenario(f"{key}={value!r:.40}: must be a whole number")
    if not low <= value <= high:
        raise InvalidScenario(f"{key}={value!r:.40}: must be from {low} to {high}")
    return value


def _weights(key: str, value: object, size: int) -> tuple[float, ...]:
    if not isinstance(value, list | tuple) or len(value) != size:
        raise InvalidScenario(f"{key}: must be a list of {size} numbers")
    out = tuple(_number(f"{key}[{i}]", v, 0, 1000) for i, v in enumerate(value))
    if not any(out):
        raise InvalidScenario(f"{key}: at least one weight must be above 0")
    return out


@attrs.frozen
class Profile:
    """When requests arrive: weights per hour of day, day of week and month, and a factor
    for statutory holidays (from the working-day calendar)."""

    hourly: tuple[float, ...] = HOURLY
    weekdays: tuple[float, ...] = WEEKDAYS
    months: tuple[float, ...] = MONTHS
    holiday: float = 1.15


@attrs.frozen
class Seats:
    """Who answers: seats on duty per hour of day (``None``: planned with Erlang C for
    80 % within 20 s at the profile's busiest load of that hour), the share missing on
    any hour (seats short: sickness, training), and the call times, in seconds."""

    by_hour: tuple[int, ...] | None = None
    short: float = 0.0
    #: Mean time a seat spends on a requester's call (open the case, look up, dial).
    handle_s: float = 150.0
    #: Mean time a requester waits in the queue before hanging up.
    patience_s: float = 60.0


@attrs.frozen
class Behaviour:
    """What requesters and owners do. Outcomes of one call to the owner: ``agree`` (moves
    the car), ``refuse`` (uncooperative: to 110), ``dispute`` (to 110 if unresolved),
    ``no_answer`` and ``busy`` (called again after ``retry_minutes``, up to the policy's
    attempts); they are weights, normalised."""

    lookup_miss: float = 0.03
    emergency: float = 0.01
    cancel: float = 0.01
    agree: float = 0.80
    refuse: float = 0.03
    dispute: float = 0.03
    no_answer: float = 0.10
    busy: float = 0.04
    #: Share of disputes the seat settles (the car is moved); the rest go to 110.
    dispute_settled: float = 0.5
    retry_minutes: float = 3.0
    #: Mean minutes from the owner's agreement to the requester confirming the move.
    move_minutes: float = 12.0


@attrs.frozen
class Outages:
    """二(五) technical outages: how many a month on average, how long, and how often the
    operator's notice to 110 (due within 30 minutes of the fault and of the recovery) is
    late."""

    per_month: float = 0.3
    mean_minutes: float = 40.0
    late_notice: float = 0.15


@attrs.frozen
class Faults:
    """Injected by seed when ``--faults`` is on (``enabled``): a share of dials and
    transfers the switch refuses, owner-registry outages of a few minutes a day, failed
    database writes, and clock jumps across month ends. Faults stop ``quiet_days`` before
    the end so that liveness can be checked."""

    enabled: bool = False
    dial_failure: float = 0.02
    transfer_failure: float = 0.05
    registry_down_per_day: float = 0.5
    registry_down_minutes: float = 10.0
    #: Share of the store's writes that fail: half before writing, half after (committed,
    #: but the engine is told it failed): the command is retried with its command id.
    store_failure: float = 0.01
    #: At each month end but the last, the clock jumps this many minutes forward across
    #: midnight (an NTP step): what was due in between happens at the jump's end.
    clock_jump_minutes: float = 5.0
    quiet_days: int = 2


@attrs.frozen
class Scenario:
    """One simulation's inputs (see the module docstring); ``start`` and ``months`` name
    the period, which must lie inside the contract's possible term."""

    name: str = "default"
    calls_per_year: int = 30_000
    start: ServiceMonth = ServiceMonth(2024, 4)  # noqa: RUF009 - frozen, shared safely
    months: int = 1
    profile: Profile = Profile()
    seats: Seats = Seats()
    behaviour: Behaviour = Behaviour()
    outages: Outages = Outages()
    faults: Faults = Faults()
    #: The contract priced and judged (another district's, or what-if tiers).
    contract: Contract = WUJIN_114_2024
    #: The operator's policy: outbound calls per case before it is unresolved (annex 2:
    #: calls are few and human-placed).
    max_call_attempts: int = 3

    def __attrs_post_init__(self) -> None:
        _count("calls_per_year", self.calls_per_year, 0, MAX_CALLS_PER_YEAR)
        _count("months", self.months, 1, 36)

    @classmethod
    def from_toml(cls, text: str) -> Scenario:
        """Read a scenario (see ``examples/scenarios/``). Unknown keys are refused."""
        try:
            data = tomllib.loads(text)
        except (tomllib.TOMLDecodeError, TypeError) as exc:
            raise InvalidScenario(f"not a TOML scenario: {exc}") from None
        except RecursionError:  # arrays or tables nested thousands deep
            raise InvalidScenario("not a TOML scenario: nested too deep") from None
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Scenario:
        top = dict(data)
        names = ("profile", "seats", "behaviour", "outages", "faults", "contract")
        sections = {k: top.pop(k, {}) for k in names}
        for key, value in sections.items():
            if not isinstance(value, dict):
                raise InvalidScenario(f"[{key}]: must be a table")
        _only("", top, {"name", "calls_per_year", "start", "months"})
        kwargs: dict[str, Any] = {}
        if "name" in top:
            name = top["name"]
            if not isinstance(name, str) or not 0 < len(name) <= 100:
                raise InvalidScenario("name: must be text of 1-100 characters")
            kwargs["name"] = name
        if "calls_per_year" in top:
            kwargs["calls_per_year"] = _count(
                "calls_per_year", top["calls_per_year"], 0, MAX_CALLS_PER_YEAR
            )
        if "start" in top:
            kwargs["start"] = _month("start", top["start"])
        if "months" in top:
            kwargs["months"] = _count("months", top["months"], 1, 36)
        p = sections["profile"]
        _only("profile.", p, {"hourly", "weekdays", "months", "holiday"})
        profile = Profile(
            hourly=_weights("profile.hourly", p["hourly"], 24) if "hourly" in p else HOURLY,
            weekdays=_weights("profile.weekdays", p["weekdays"], 7)
            if "weekdays" in p
            else WEEKDAYS,
            months=_weights("profile.months", p["months"], 12) if "months" in p else MONTHS,
            holiday=_number("profile.holiday", p.get("holiday", 1.15), 0, 100),
        )
        s = sections["seats"]
        _only("seats.", s, {"by_hour", "short", "handle_s", "patience_s"})
        by_hour = None
        if "by_hour" in s:
            raw = s["by_hour"]
            if not isinstance(raw, list) or len(raw) != 24:
                raise InvalidScenario("seats.by_hour: must be a list of 24 whole numbers")
            by_hour = tuple(_count(f"seats.by_hour[{i}]", v, 0, 100_000) for i, v in enumerate(raw))
        seats = Seats(
            by_hour=by_hour,
            short=_number("seats.short", s.get("short", 0.0), 0, 0.95),
            handle_s=_number("seats.handle_s", s.get("handle_s", 150.0), 10, 3600),
            patience_s=_number("seats.patience_s", s.get("patience_s", 60.0), 1, 3600),
        )
        behaviour = _section(Behaviour, "behaviour", sections["behaviour"], _BEHAVIOUR_LIMITS)
        outages = _section(Outages, "outages", sections["outages"], _OUTAGE_LIMITS)
        f = dict(sections["faults"])
        enabled = f.pop("enabled", False)
        if not isinstance(enabled, bool):
            raise InvalidScenario("faults.enabled: must be true or false")
        quiet = _count("faults.quiet_days", f.pop("quiet_days", 2), 0, 30)
        faults = attrs.evolve(
            _section(Faults, "faults", f, _FAULT_LIMITS), enabled=enabled, quiet_days=quiet
        )
        contract, attempts = _contract(sections["contract"])
        scenario = cls(
            contract=contract,
            max_call_attempts=attempts,
            profile=profile,
            seats=seats,
            behaviour=behaviour,
            outages=outages,
            faults=faults,
            **kwargs,
        )
        outcomes = (behaviour.agree, behaviour.refuse, behaviour.dispute, behaviour.no_answer,
                    behaviour.busy)  # fmt: skip
        if not any(outcomes):
            raise InvalidScenario("behaviour: at least one call outcome must have a weight")
        return scenario

    def end(self) -> ServiceMonth:
        """The last month simulated."""
        month = self.start
        for _ in range(self.months - 1):
            month = month.next()
        return month


_BEHAVIOUR_LIMITS = {
    "lookup_miss": (0, 1), "emergency": (0, 1), "cancel": (0, 1), "agree": (0, 1000),
    "refuse": (0, 1000), "dispute": (0, 1000), "no_answer": (0, 1000), "busy": (0, 1000),
    "dispute_settled": (0, 1), "retry_minutes": (0.5, 240), "move_minutes": (0.5, 240),
}  # fmt: skip
_OUTAGE_LIMITS = {"per_month": (0, 100), "mean_minutes": (1, 24 * 60), "late_notice": (0, 1)}
_FAULT_LIMITS = {
    "dial_failure": (0, 0.5), "transfer_failure": (0, 0.5),
    "registry_down_per_day": (0, 24), "registry_down_minutes": (0.5, 120),
    "store_failure": (0, 0.5), "clock_jump_minutes": (0, 60),
}  # fmt: skip


def _only(prefix: str, table: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise InvalidScenario(
            f"{prefix}{unknown[0][:40]}: unknown key (known: {', '.join(sorted(known))})"
        )


def _section(
    cls: type[T], name: str, table: Mapping[str, Any], limits: Mapping[str, tuple[float, float]]
) -> T:
    _only(f"{name}.", table, set(limits))
    values = {key: _number(f"{name}.{key}", value, *limits[key]) for key, value in table.items()}
    return cls(**values)


def _contract(table: Mapping[str, Any]) -> tuple[Contract, int]:
    """``[contract]``: what-if tiers and notice deadlines over the Wujin contract, and the
    operator's call attempts per case."""
    _only(
        "contract.",
        table,
        {"tiers", "max_call_attempts", "outage_notice_minutes", "recovery_notice_minutes"},
    )
    attempts = _count("contract.max_call_attempts", table.get("max_call_attempts", 3), 1, 10)
    changes: dict[str, Any] = {}
    for key in ("outage_notice_minutes", "recovery_notice_minutes"):
        if key in table:
            changes[key] = _count(f"contract.{key}", table[key], 1, 24 * 60)
    if "tiers" in table:
        changes["tiers"] = _tiers(table["tiers"])
    try:
        return attrs.evolve(WUJIN_114_2024, **changes), attempts
    except InvalidInput as exc:
        raise InvalidScenario(f"contract: {exc}") from None


def _tiers(raw: object) -> tuple[Tier, ...]:
    if not isinstance(raw, list) or not raw:
        raise InvalidScenario("contract.tiers: must be a list of {from, to, price} tables")
    tiers = []
    for i, item in enumerate(raw):
        key = f"contract.tiers[{i}]"
        if not isinstance(item, dict):
            raise InvalidScenario(f"{key}: must be a table {{from, to, price}}")
        _only(f"{key}.", item, {"from", "to", "price"})
        price = item.get("price")
        if not isinstance(price, str):
            raise InvalidScenario(f'{key}.price: must be text, e.g. "1.90" (yuan, exact)')
        upper = item.get("to")
        lower = _count(f"{key}.from", item.get("from"), 0, 10**9)
        try:
            tiers.append(
                Tier(lower, None if upper is None else _count(f"{key}.to", upper, 1, 10**9), price)
            )
        except InvalidInput as exc:
            raise InvalidScenario(f"{key}: {exc}") from None
    return tuple(tiers)


def _month(key: str, value: object) -> ServiceMonth:
    if not isinstance(value, str):
        raise InvalidScenario(f"{key}={value!r:.40}: must be a month written YYYY-MM")
    try:
        return ServiceMonth.parse(value)
    except InvalidInput:
        raise InvalidScenario(f"{key}={value!r:.40}: must be a month written YYYY-MM") from None


DEFAULT = Scenario()
