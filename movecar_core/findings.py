"""Findings: a contract clause breached, with when, what, what it costs and how late.

One type for every part of the library that judges compliance: the compliance simulation
(:mod:`movecar_core.simulation`) and the outage and security incidents
(:mod:`movecar_core.incidents`) report breaches as :class:`Finding` values, so a monthly
report, the simulator's tables and ``movecar outage list`` read them the same way.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import attrs


@attrs.frozen
class Finding:
    """A contract clause breached: when, what happened, and what it costs (yuan; ``None``
    when the contract prices it only as the general breach of 五(一)).

    ``delay`` is how late something required by a deadline was: a notice sent after its
    deadline (the time from the event it reports to the notice), or one still missing
    (the time from the event to the moment of the check). ``None`` when the clause is
    not about a deadline.
    """

    clause: str
    when: str
    what: str
    cost: Decimal | None = None
    delay: dt.timedelta | None = None


__all__ = ["Finding"]
