"""Clocks: the wall clock for production, a manual one for tests and simulations."""

from __future__ import annotations

import datetime as dt
import threading
from zoneinfo import ZoneInfo

#: 三: every contract date and deadline is a date in China Standard Time.
SHANGHAI = ZoneInfo("Asia/Shanghai")


class SystemClock:
    """The wall clock, in Asia/Shanghai."""

    def __init__(self, tz: dt.tzinfo = SHANGHAI) -> None:
        self.tz = tz

    def now(self) -> dt.datetime:
        return dt.datetime.now(self.tz)


class ManualClock:
    """A clock that moves only when told to: deterministic tests and simulations."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        start = start or dt.datetime(2024, 4, 1, 8, 0, tzinfo=SHANGHAI)
        if start.tzinfo is None:
            raise ValueError(f"ManualClock start={start!r} must be timezone-aware")
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        return self._now

    def set(self, when: dt.datetime) -> None:
        if when.tzinfo is None:
            raise ValueError(f"ManualClock.set({when!r}): must be timezone-aware")
        self._now = when

    def advance(self, delta: dt.timedelta | None = None, **kwargs: float) -> dt.datetime:
        """Move forward by ``delta`` or ``timedelta(**kwargs)``; never backwards."""
        step = delta if delta is not None else dt.timedelta(**kwargs)
        if step < dt.timedelta(0):
            raise ValueError(f"ManualClock.advance({step}): time does not run backwards")
        with self._lock:
            self._now += step
            return self._now
