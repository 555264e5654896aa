"""二(四) retention, the pure rules: when a case may be purged, and as of which time.

二(四) "所有移车服务数据及电话录音资料，必须保存 3 年": every record of the service is kept
three years. A purge is the one operation that destroys records, so both of its inputs
are pinned down here, once, for every store:

* **the closing time** plus ``retention_years`` whole calendar years in Asia/Shanghai
  (:func:`add_years`, :func:`retention_due`);
* **the time the purge runs as of** (:func:`purge_time`): never later than the store's
  clock (beyond :data:`PURGE_CLOCK_SKEW`), never naive. A purge "as of 2030" run today
  would delete records years before their time, so it is refused and nothing is deleted.

The clock is an argument (the store's :class:`~movecar_core.ports.Clock`): the rule is
tested with a :class:`~movecar_core.clock.ManualClock`, and the audit applies the same
rule with its own clock to purges already recorded.
"""

from __future__ import annotations

import datetime as dt

from movecar_core.calendar import SHANGHAI
from movecar_core.errors import PurgeTimeRefused
from movecar_core.ports import Clock

#: The contract clause every purge rule implements (quoted in messages and docs).
RETENTION_CLAUSE = "二(四) 所有移车服务数据及电话录音资料，必须保存 3 年"

#: How far a purge's ``now`` may run ahead of the store's clock and still be accepted.
#: Why not zero: ``--now`` is often produced on another host (a scheduler, an operator's
#: laptop) whose NTP-synced clock may run a little ahead, and a nightly job must not fail
#: for that. Why only minutes: beyond them a "now" is not skew but a forged future, the one
#: way to make a 3-year rule delete younger records. Within the allowance the purge still
#: runs as of the store's clock (:func:`purge_time` takes the earlier of the two), so the
#: allowance never shortens retention, it only spares the job a spurious failure.
PURGE_CLOCK_SKEW = dt.timedelta(minutes=5)


def add_years(when: dt.datetime, years: int) -> dt.datetime:
    """``when`` plus whole calendar years in Asia/Shanghai; 29 Feb goes to 1 Mar.

    Rounding 29 Feb up (not down to 28 Feb) means retention is never shortened.
    """
    local = when.astimezone(SHANGHAI)
    try:
        return local.replace(year=local.year + years)
    except ValueError:  # 29 Feb into a common year
        return local.replace(year=local.year + years, month=3, day=1)


def retention_due(closed_at: dt.datetime, now: dt.datetime, years: int) -> bool:
    """二(四) "必须保存 3 年": a case closed at ``closed_at`` may be purged at ``now`` only
    once ``years`` whole calendar years (Asia/Shanghai) have passed."""
    return add_years(closed_at, years) <= now


def purge_time(now: object, clock: Clock) -> dt.datetime:
    """The time a purge runs as of: ``now`` (default: ``clock.now()``), checked against
    ``clock``, the store's clock.

    Raises :class:`~movecar_core.errors.PurgeTimeRefused` (and the caller deletes nothing)
    when ``now`` is not a timezone-aware datetime, or lies more than
    :data:`PURGE_CLOCK_SKEW` after ``clock.now()``. Within the allowance the earlier of
    the two is returned, so no case is ever purged before its 3 years by ``clock``.
    """
    wall = clock.now()
    if not isinstance(wall, dt.datetime) or wall.utcoffset() is None:
        raise PurgeTimeRefused("clock.now()", wall, "the clock must give timezone-aware times")
    if now is None:
        return wall
    if not isinstance(now, dt.datetime) or now.utcoffset() is None:
        raise PurgeTimeRefused(
            "now", now, "must be a timezone-aware datetime (give an offset, e.g. +08:00)"
        )
    if now > wall + PURGE_CLOCK_SKEW:
        raise PurgeTimeRefused(
            "now",
            now.isoformat(),
            f"later than the clock ({wall.isoformat()}) by more than {PURGE_CLOCK_SKEW}; "
            f"purging as of a future time would delete records before their time "
            f"({RETENTION_CLAUSE}): nothing was purged",
        )
    return min(now, wall)
