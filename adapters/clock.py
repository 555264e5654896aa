"""The wall clock, for production. Tests and simulations use the core's
:class:`~movecar_core.clock.ManualClock` (re-exported here for convenience)."""

from __future__ import annotations

import datetime as dt

from movecar_core.calendar import SHANGHAI
from movecar_core.clock import ManualClock

__all__ = ["SHANGHAI", "ManualClock", "SystemClock"]


class SystemClock:
    """The wall clock, in Asia/Shanghai (三: every contract date is a China Standard Time date)."""

    def __init__(self, tz: dt.tzinfo = SHANGHAI) -> None:
        self.tz = tz

    def now(self) -> dt.datetime:
        return dt.datetime.now(self.tz)

    def __repr__(self) -> str:
        return "SystemClock()"
