"""Bulk import: load a month of closed cases into SQLite, settle the month, audit the chain.

For simulations and migrations: ``SqlStore.bulk_import`` stores whole histories with the
same checks, hash chain and encryption as single commands, a chunk per transaction.
``writer="process"`` writes in a second process while this one prepares the next chunks
(worth it from about 100,000 events).

Run: python examples/bulk_import.py [--cases 20000] [--writer inline|process]
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from movecar_adapters import connect
from movecar_adapters.crypto import KeyRing
from movecar_adapters.sql import SqlStore, verify
from movecar_core import ManualClock, ServiceMonth
from movecar_core.calendar import SHANGHAI
from movecar_core.case import Event
from movecar_core.testing.contracts import sample_history

MARCH = dt.datetime(2025, 3, 1, tzinfo=SHANGHAI)


def march_cases(n: int) -> Iterator[list[Event]]:
    """``n`` five-event cases (opened, owner found, called, refused, escalated to 110),
    spread evenly over March 2025."""
    step = dt.timedelta(days=31) / n
    for i in range(n):
        yield sample_history(f"sim-2025-03-{i:07d}", at=MARCH + i * step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--writer", choices=["inline", "process"], default="process")
    args = parser.parse_args()
    # The composition root: the database (migrated on first use), a one-off key (a real
    # import reads MOVECAR_KEYS), and a clock at the start of April, after the month.
    with (
        tempfile.TemporaryDirectory() as folder,
        connect(
            f"sqlite:///{Path(folder) / 'simulation.db'}",
            keys=KeyRing([("sim", KeyRing.generate())]),
            clock=ManualClock(dt.datetime(2025, 4, 2, 9, 0, tzinfo=SHANGHAI)),
        ) as mc,
    ):
        store = mc.store
        assert isinstance(store, SqlStore)
        start = time.perf_counter()
        cases, events = store.bulk_import(march_cases(args.cases), writer=args.writer)
        seconds = time.perf_counter() - start
        print(f"imported {cases} cases, {events} events in {seconds:.1f} s ({args.writer})")
        # 三: March 2025 closes the first service year: its fee and the year's true-up.
        month = mc.settle_month(ServiceMonth(2025, 3))
        print(
            f"March 2025: {month.billable_calls} billable calls at {month.unit_price} yuan, "
            f"fee {month.provisional_fee} yuan; report due {month.deadlines.report_due}, "
            f"digest {month.report_digest[:12]}"
        )
        audit = verify(store)
        verdict = "all verify" if audit.ok else f"{len(audit.findings)} findings"
        print(f"audit: {audit.cases} cases, {audit.events} events, {verdict}")


if __name__ == "__main__":
    main()
