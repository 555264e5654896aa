"""What a compliance simulation costs: cases per second on the in-memory store and on
SQLite, and where the time goes (the engine, the store, the simulation itself).

Prints one JSON object. It measures; it does not time-box.

    .venv/bin/python benchmarks/bench_simulate.py                       # defaults below
    .venv/bin/python benchmarks/bench_simulate.py --volume 3200000 --months 12 --sqlite-volume 0

Issue 11 asks for a full year at 3.2 million cases in under 60 s in memory and under
5 minutes on SQLite. Each run here simulates ``--months`` at ``--volume`` calls a year
(memory) and at ``--sqlite-volume`` (SQLite, ``synchronous=FULL``, the default engine);
``full_year_seconds`` projects 3.2 million cases at the measured rate (a case costs the
same whatever the store's size: the per-case cost at two sizes is reported as
``per_case_growth``, the larger run's seconds per case over the smaller's).

The split is measured by timing the outermost engine command (``MoveCar`` methods) and
every store method, so: store = time inside store methods; engine = time inside engine
commands minus the store's; simulation = the rest (arrivals, seats, the event heap,
settlement bookkeeping, invariant checks).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from movecar_adapters.connect import connect
from movecar_adapters.crypto import KeyRing
from movecar_core.app import MoveCar
from movecar_core.simulation import DEFAULT, simulate

FULL_YEAR_CASES = 3_200_000
COMMANDS = (
    "open_case", "locate_owner", "call_owner", "record_call_outcome", "confirm_moved",
    "cancel", "escalate", "settle_month", "run_due", "record", "history", "requester_view",
)  # fmt: skip


class Clock:
    """Seconds spent in the engine's commands (outermost only) and in the store."""

    def __init__(self) -> None:
        self.engine = 0.0
        self.store = 0.0
        self.depth = 0

    def timed(self, fn: Callable[..., Any], kind: str) -> Callable[..., Any]:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            self.depth += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.depth -= 1
                spent = time.perf_counter() - start
                if kind == "store":
                    self.store += spent
                elif self.depth == 0:
                    self.engine += spent

        return run


class TimedStore:
    def __init__(self, inner: Any, clock: Clock) -> None:
        self._inner = inner
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        return self._clock.timed(value, "store") if callable(value) else value


def run(volume: int, months: int, url: str, *, timed: bool) -> dict[str, Any]:
    clock = Clock()
    keys = None if url == "memory://" else KeyRing([("bench", KeyRing.generate())])

    def factory(**ports: Any) -> MoveCar:
        mc = connect(url, keys=keys, upgrade=True, environ={}, **ports)
        if timed:
            mc.store = TimedStore(mc.store, clock)  # type: ignore[assignment]
            for name in COMMANDS:
                setattr(mc, name, clock.timed(getattr(mc, name), "engine"))
        return mc

    scenario = attrs.evolve(DEFAULT, calls_per_year=volume, months=months)
    start = time.perf_counter()
    result = simulate(scenario, 1, factory)
    seconds = time.perf_counter() - start
    out: dict[str, Any] = {
        "calls_per_year": volume,
        "months": months,
        "cases": result.cases,
        "seconds": round(seconds, 2),
        "cases_per_second": round(result.cases / seconds) if seconds else None,
    }
    if timed:
        engine = clock.engine - clock.store
        out["share"] = {
            "engine": round(engine / seconds, 3),
            "store": round(clock.store / seconds, 3),
            "simulation": round((seconds - clock.engine) / seconds, 3),
        }
    return out


def measure(volume: int, months: int, url: str) -> dict[str, Any]:
    """The rate untimed, the split timed, and the per-case cost at a tenth of the size."""
    full = run(volume, months, url, timed=False)
    split = run(volume, months, url, timed=True)
    small = run(max(1, volume // 10), months, url, timed=False)
    rate = full["cases_per_second"]
    full["share"] = split["share"]
    full["full_year_seconds"] = round(FULL_YEAR_CASES / rate) if rate else None
    if small["cases"] and full["cases"]:
        per_small = small["seconds"] / small["cases"]
        per_full = full["seconds"] / full["cases"]
        full["per_case_growth"] = round(per_full / per_small, 2) if per_small else None
    return full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", type=int, default=1_200_000, help="memory: calls a year")
    parser.add_argument("--sqlite-volume", type=int, default=60_000, help="0: skip SQLite")
    parser.add_argument("--months", type=int, default=1)
    parser.add_argument("--dir", default=None, help="where the SQLite file goes (default: tmp)")
    args = parser.parse_args()
    result: dict[str, Any] = {"memory": measure(args.volume, args.months, "memory://")}
    if args.sqlite_volume:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            counter = iter(range(10))

            def url() -> str:
                return f"sqlite:///{tmp}/sim-{next(counter)}.db"

            full = run(args.sqlite_volume, args.months, url(), timed=False)
            split = run(args.sqlite_volume, args.months, url(), timed=True)
            full["share"] = split["share"]
            rate = full["cases_per_second"]
            full["full_year_seconds"] = round(FULL_YEAR_CASES / rate) if rate else None
            result["sqlite"] = full
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
