"""The manual clock: time that moves only when told to (tests, demos, simulations).

The core never reads the wall clock; time comes in through the
:class:`~movecar_core.ports.Clock` port. The wall clock itself is an adapter
(:class:`movecar_adapters.clock.SystemClock`). A :class:`ManualClock` is pure, so it lives
here, beside the in-memory adapters that run with it.
"""

from __future__ import annotations

import datetime as dt
import threading

from movecar_core.calendar import SHANGHAI
from movecar_core.errors import InvalidInput

#: 一(三) "自 2024年4月1日 起生效": where a manual clock starts unless told otherwise.
DEFAULT_START = dt.datetime(2024, 4, 1, 8, 0, tzinfo=SHANGHAI)


class InvalidClockTime(InvalidInput):
    """A naive time, or a step backwards, given to a :class:`ManualClock`."""


class ManualClock:
    """A clock that moves only when told to: deterministic tests and simulations.

    Thread-safe; never runs backwards (:meth:`set` to an earlier time is refused, so every
    reader sees time in order, as the event log and the ledger require).
    """

    def __init__(self, start: dt.datetime | None = None) -> None:
        start = DEFAULT_START if start is None else start
        _check_aware("start", start)
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        return self._now

    def set(self, when: dt.datetime) -> dt.datetime:
        """Move to ``when``, which must not be earlier than now."""
        _check_aware("when", when)
        with self._lock:
            if when < self._now:
                raise InvalidClockTime(
                    f"ManualClock.set({when.isoformat()}): earlier than now "
                    f"({self._now.isoformat()}); time does not run backwards"
                )
            self._now = when
            return when

    def advance(self, delta: dt.timedelta | None = None, **kwargs: float) -> dt.datetime:
        """Move forward by ``delta`` or ``timedelta(**kwargs)``; never backwards."""
        step = delta if delta is not None else dt.timedelta(**kwargs)
        if not isinstance(step, dt.timedelta) or step < dt.timedelta(0):
            raise InvalidClockTime(f"ManualClock.advance({step}): time does not run backwards")
        with self._lock:
            self._now += step
            return self._now

    def __repr__(self) -> str:
        return f"ManualClock({self._now.isoformat()})"


def _check_aware(name: str, value: object) -> None:
    if not isinstance(value, dt.datetime) or value.utcoffset() is None:
        raise InvalidClockTime(
            f"ManualClock {name}={value!r:.60}: must be a timezone-aware datetime"
        )
