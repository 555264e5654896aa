"""Cost of a whole case lifecycle through the in-memory facade, and how it scales.

Compares, in one run (issue 11, "the engine must be fast enough"):

* ``facade``: ``open_case``, ``locate_owner``, ``call_owner``,
  ``record_call_outcome(answered_agreed)``, ``confirm_moved`` through
  :class:`~movecar_core.app.MoveCar` on the in-memory adapters (``InMemoryCaseStore``,
  ``InMemoryVehicleRegistry``, ``InMemoryTelephony``, ``ManualClock``), per case;
* ``machine_per_case``: ``bench_engine``'s baseline on the same histories: a
  ``transitions.Machine`` built per case from the one definition and driven through the
  same transitions (``owner_found``, ``call_placed``, ``call_answered``,
  ``move_confirmed``);
* ``store_size``: the facade's cost per case with ``--small`` (1,000) cases already in
  the store, and with ``--large`` (100,000).

Facade and baseline alternate in rounds; each figure is the median over the rounds, each
ratio the median of the rounds' ratios, with its range. ``with_command_ids`` is the same
lifecycle with a ``command_id`` on every command (fingerprints, repeat detection), for
information. Targets: ``facade_vs_machine_ratio`` at most 0.25, ``store_size.ratio``
(large / small) at most 1.3.

Times are CPU time of the process (the machine is shared: waiting for a core is not the
engine's cost). Measured on the project's 2-core machine, four runs of the defaults:
facade 68–72 µs per case against 291–380 µs for a machine per case, ratio **0.23** (medians
0.215, 0.226, 0.233, 0.237; single rounds 0.18–0.36); with command ids 99–109 µs
(0.29–0.34); per case with 100,000 cases stored / with 1,000: **0.95–1.05** (single
rounds 0.64–1.33). Before (the same benchmark on the code
that folded every history and scanned every earlier call per dial): 211 µs, ratio 0.75,
and 7.1x at 20,000 cases stored against 1,000 (the cost grew with the store). See
``docs/embedding.md`` ("What a command costs").

    python benchmarks/bench_lifecycle.py [--cases 2000] [--rounds 7] [--small 1000]
        [--large 100000]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench_engine import drive_machines  # benchmarks/bench_engine.py, beside this one

from movecar_core import MoveCar
from movecar_core.clock import ManualClock
from movecar_core.machine import CasePolicy
from movecar_core.memory import InMemoryCaseStore, InMemoryTelephony, InMemoryVehicleRegistry

LIFECYCLE = (
    "open_case",
    "locate_owner",
    "call_owner",
    "record_call_outcome(answered_agreed)",
    "confirm_moved",
)


class Desk:
    """One engine on the in-memory adapters, as ``bench_engine.histories`` wires it, with
    owners for every plate it will be asked about."""

    def __init__(self, plates: int) -> None:
        self.plates = [f"苏D{i % 100_000:05d}" for i in range(plates)]
        owners = {plate: f"139{i:08d}" for i, plate in enumerate(self.plates[:100_000])}
        self.mc = MoveCar(
            store=InMemoryCaseStore(),
            registry=InMemoryVehicleRegistry(owners),
            telephony=InMemoryTelephony(),
            clock=ManualClock(),
        )
        self.served = 0
        self.commands = 0  # command ids used so far (each one new)

    def lifecycles(self, n: int, *, command_ids: bool = False) -> list[str]:
        """``n`` whole lifecycles, one case after another; their case ids."""
        mc, plates, ids = self.mc, self.plates, []
        for i in range(self.served, self.served + n):
            if command_ids:
                self.commands += 1
                key = f"cmd-{self.commands}-"
                case_id = mc.open_case(
                    plate=plates[i % len(plates)],
                    location="武进区湖塘镇花园街 8 号",
                    requester_phone="13800001111",
                    command_id=key + "open",
                )
                mc.locate_owner(case_id, agent_id="seat-1", command_id=key + "locate")
                call = mc.call_owner(case_id, agent_id="seat-1", command_id=key + "call")
                mc.record_call_outcome(
                    case_id, call.call_id, "answered_agreed", command_id=key + "outcome"
                )
                mc.confirm_moved(case_id, command_id=key + "moved")
            else:
                case_id = mc.open_case(
                    plate=plates[i % len(plates)],
                    location="武进区湖塘镇花园街 8 号",
                    requester_phone="13800001111",
                )
                mc.locate_owner(case_id, agent_id="seat-1")
                call = mc.call_owner(case_id, agent_id="seat-1")
                mc.record_call_outcome(case_id, call.call_id, "answered_agreed")
                mc.confirm_moved(case_id)
            ids.append(case_id)
        self.served += n
        return ids


def timed(run: Callable[..., object], *args: Any, **kwargs: Any) -> float:
    """CPU seconds ``run(*args, **kwargs)`` takes, after a full collection (so no run pays
    for the garbage of another). CPU time, not wall time: the machine is shared, and a
    process waiting for a core is not the engine's cost."""
    gc.collect()
    start = time.process_time()
    run(*args, **kwargs)
    return time.process_time() - start


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def us(seconds: float) -> float:
    return round(seconds * 1e6, 2)


def bench_against_machine(cases: int, rounds: int) -> dict[str, object]:
    """The facade per case against a ``transitions.Machine`` per case, alternating."""
    policy = CasePolicy()
    facade, machine, with_ids, ratios = [], [], [], []
    for round_ in range(rounds):
        # The baseline drives the transitions of real histories of the same lifecycle.
        model = Desk(cases)
        histories = [model.mc.history(case_id) for case_id in model.lifecycles(cases)]
        assert all(len(h) == len(LIFECYCLE) for h in histories)
        desk = Desk(cases)
        # Which side runs first alternates, so neither always finds the other's leftovers.
        if round_ % 2:
            m = timed(drive_machines, histories, policy) / cases
            f = timed(desk.lifecycles, cases) / cases
        else:
            f = timed(desk.lifecycles, cases) / cases
            m = timed(drive_machines, histories, policy) / cases
        w = timed(Desk(cases).lifecycles, cases, command_ids=True) / cases
        facade.append(f)
        machine.append(m)
        with_ids.append(w)
        ratios.append(f / m)
    return {
        "cases_per_round": cases,
        "rounds": rounds,
        "facade_us_per_case": us(median(facade)),
        "machine_per_case_us_per_case": us(median(machine)),
        "facade_vs_machine_ratio": round(median(ratios), 3),
        "facade_vs_machine_ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "with_command_ids": {
            "facade_us_per_case": us(median(with_ids)),
            "vs_machine_ratio": round(median(with_ids) / median(machine), 3),
        },
    }


def bench_store_size(cases: int, rounds: int, small: int, large: int) -> dict[str, object]:
    """The facade per case with ``small`` cases already stored, and with ``large``."""
    big = Desk(large + rounds * cases)
    big.lifecycles(large)
    at_small, at_large, ratios = [], [], []
    for _ in range(rounds):
        little = Desk(small + cases)
        little.lifecycles(small)
        s = timed(little.lifecycles, cases) / cases
        g = timed(big.lifecycles, cases) / cases
        at_small.append(s)
        at_large.append(g)
        ratios.append(g / s)
    return {
        "small": small,
        "large": large,
        "us_per_case_small": us(median(at_small)),
        "us_per_case_large": us(median(at_large)),
        "ratio": round(median(ratios), 3),
        "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=2000, help="lifecycles per measurement")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--small", type=int, default=1000, help="cases stored before (small)")
    parser.add_argument("--large", type=int, default=100_000, help="cases stored before (large)")
    args = parser.parse_args()
    result = {
        "benchmark": "case lifecycle",
        "python": platform.python_version(),
        "lifecycle": list(LIFECYCLE),
        **bench_against_machine(args.cases, args.rounds),
        "store_size": bench_store_size(args.cases, args.rounds, args.small, args.large),
        "targets": {"facade_vs_machine_ratio": "<= 0.25", "store_size.ratio": "<= 1.3"},
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
