"""Pricing a year of per-call records month by month: the engine against a plain loop.

Builds one service year (2024-04-01 to 2025-03-31) of per-call records (3.2 million by
default, in time order, 90 % inbound calls connected to a seat, the rest unanswered or
outbound), then, in the same run on the same records:

* ``engine``: :func:`movecar_core.pricing.monthly_billable` (billable-call policy, Asia/Shanghai
  month buckets, aware-datetime checks) followed by :func:`movecar_core.pricing.settle_year`
  (VOLUME provisional fees per month and the year-end true-up), month by month;
* ``plain``: one loop counting connected inbound calls per month with ``record.started_at.month``
  and multiplying each month's count by a hard-coded tier price of the year-to-date volume.

Both must produce the same monthly counts and the same provisional total. Prints one JSON
object with both timings (best of ``--repeat``) and the ratio ``engine / plain``. A benchmark
measures; it does not time-box, and the test suite does not run it.

    .venv/bin/python benchmarks/bench_pricing.py [--calls 3200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import platform
import random
import time
from collections.abc import Callable
from decimal import Decimal

from movecar_core.calendar import SHANGHAI
from movecar_core.pricing import (
    BillableCallPolicy,
    CallDirection,
    CallRecord,
    TierMode,
    monthly_billable,
    settle_year,
)

YEAR_START = dt.date(2024, 4, 1)


def make_records(n: int, seed: int = 114) -> list[CallRecord]:
    """``n`` call records spread over the service year, in time order."""
    rng = random.Random(seed)
    start = dt.datetime(2024, 4, 1, tzinfo=SHANGHAI)
    seconds = 365 * 24 * 3600
    step = seconds / n
    inbound, outbound = CallDirection.INBOUND, CallDirection.OUTBOUND
    records: list[CallRecord] = []
    append = records.append
    for i in range(n):
        at = start + dt.timedelta(seconds=int(i * step))
        roll = rng.random()
        if roll < 0.90:
            append(CallRecord(inbound, True, at))
        elif roll < 0.95:
            append(CallRecord(inbound, False, at))
        else:
            append(CallRecord(outbound, roll < 0.99, at))
    return records


def engine(records: list[CallRecord]) -> tuple[tuple[int, ...], Decimal]:
    counts = monthly_billable(records, YEAR_START, BillableCallPolicy.INBOUND_CONNECTED_TO_SEAT)
    result = settle_year(counts, mode=TierMode.VOLUME)
    assert result.annual_fee is not None
    return counts, result.provisional_total


def plain(records: list[CallRecord]) -> tuple[tuple[int, ...], Decimal]:
    counts = [0] * 12
    inbound = CallDirection.INBOUND
    for record in records:
        if record.connected and record.direction is inbound:
            counts[(record.started_at.month - 4) % 12] += 1
    total = Decimal(0)
    ytd = 0
    for count in counts:
        ytd += count
        if ytd < 1_500_000:
            price = Decimal("1.90")
        elif ytd < 3_000_000:
            price = Decimal("1.85")
        else:
            price = Decimal("1.75")
        total += count * price
    return tuple(counts), total


def best_of(repeat: int, func: Callable[[], object]) -> tuple[float, object]:
    best = float("inf")
    result: object = None
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3_200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    started = time.perf_counter()
    records = make_records(args.calls)
    build_seconds = time.perf_counter() - started

    engine_seconds, engine_result = best_of(args.repeat, lambda: engine(records))
    plain_seconds, plain_result = best_of(args.repeat, lambda: plain(records))
    if engine_result != plain_result:
        raise SystemExit(f"results differ: engine {engine_result} plain {plain_result}")
    counts, provisional_total = plain_result  # type: ignore[misc]

    print(
        json.dumps(
            {
                "benchmark": "pricing a service year of per-call records month by month",
                "records": args.calls,
                "billable_calls": sum(counts),
                "provisional_total": str(provisional_total),
                "repeat": args.repeat,
                "build_records_seconds": round(build_seconds, 3),
                "engine_seconds": round(engine_seconds, 3),
                "plain_loop_seconds": round(plain_seconds, 3),
                "ratio_engine_over_plain": round(engine_seconds / plain_seconds, 2),
                "engine_ns_per_record": round(engine_seconds / args.calls * 1e9, 1),
                "plain_ns_per_record": round(plain_seconds / args.calls * 1e9, 1),
                "python": platform.python_version(),
                "machine": platform.machine(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
