"""Cost of the case engine per transition, and memory per open case.

Compares, in one run on the same event sequences:

* ``engine``: :func:`movecar_core.machine.fold` (the derived lookup plus the record update),
* ``dict``: a bare ``{(state, event trigger): state}`` look-up per stored event (the floor),
* ``machine_per_case``: a ``transitions.Machine`` built for each case, then triggered.

Prints one JSON object. Targets (issue 2): engine within 5x of ``dict``, at least 20x
cheaper than ``machine_per_case``, under 2 KiB per open case with its events.

    python benchmarks/bench_engine.py [--cases 20000]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import time
import tracemalloc
from collections.abc import Callable, Sequence

from movecar_core import MoveCar
from movecar_core.case import CaseOpened, CaseState, Event
from movecar_core.clock import ManualClock
from movecar_core.machine import DEFINITION, LOOKUP, CasePolicy, build_machine, fold, open_record
from movecar_core.memory import InMemoryCaseStore, InMemoryTelephony, InMemoryVehicleRegistry


def histories(n: int) -> list[list[Event]]:
    """``n`` realistic histories made by the real facade (several shapes of case)."""
    owners = {f"苏D{i:05d}": f"139{i:08d}" for i in range(n)}
    mc = MoveCar(
        store=InMemoryCaseStore(),
        registry=InMemoryVehicleRegistry(owners),
        telephony=InMemoryTelephony(),
        clock=ManualClock(),
    )
    out = []
    for i, plate in enumerate(owners):
        case_id = mc.open_case(plate=plate, location="湖塘镇", requester_phone="13800001111")
        mc.locate_owner(case_id)
        shape = i % 4
        for attempt in range(1 + shape % 3):
            call = mc.call_owner(case_id, agent_id="seat-1")
            last = attempt == shape % 3
            mc.record_call_outcome(
                case_id, call.call_id, "answered_agreed" if last else "no_answer"
            )
        if shape == 3:
            mc.escalate(case_id, "owner_uncooperative")
        else:
            mc.confirm_moved(case_id)
        out.append(list(mc.history(case_id)))
    return out


def drive_machines(cases: Sequence[Sequence[Event]], policy: CasePolicy) -> None:
    """The baseline the engine is measured against: for each case, a ``transitions.Machine``
    built from the one definition (:func:`build_machine`), then triggered by each event
    after the opening."""
    for history in cases:
        opened = history[0]
        assert isinstance(opened, CaseOpened)
        model = build_machine(open_record(opened), policy)
        for event in history[1:]:
            model.trigger(event.trigger)


def best_of(repeats: int, run: Callable[[], None]) -> float:
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_transitions(cases: Sequence[list[Event]], machine_cases: int) -> dict[str, float]:
    n_transitions = sum(len(h) - 1 for h in cases)
    table = {(s.value, t): d.value for (s, t), (d, _) in LOOKUP.items()}

    def engine() -> None:
        for history in cases:
            fold(history)

    def bare_dict() -> None:
        # The floor: walk the same stored events, one (state, event) -> state look-up each.
        for history in cases:
            state = "received"
            events = iter(history)
            next(events)  # CaseOpened creates the case; the rest are transitions
            for event in events:
                state = table[(state, event.trigger)]  # type: ignore[index]

    subset = cases[:machine_cases]
    subset_transitions = sum(len(h) - 1 for h in subset)
    policy = CasePolicy()

    def machine_per_case() -> None:
        drive_machines(subset, policy)

    t_engine = best_of(5, engine) / n_transitions
    t_dict = best_of(5, bare_dict) / n_transitions
    t_machine = best_of(3, machine_per_case) / subset_transitions
    return {
        "transitions": n_transitions,
        "engine_us_per_transition": t_engine * 1e6,
        "dict_us_per_transition": t_dict * 1e6,
        "machine_per_case_us_per_transition": t_machine * 1e6,
        "engine_vs_dict_ratio": t_engine / t_dict,
        "machine_per_case_vs_engine_ratio": t_machine / t_engine,
    }


def bench_memory(n: int) -> dict[str, float]:
    """Bytes retained per open case (opened, owner found, call in flight) in the store."""
    owners = {f"苏D{i:05d}": f"139{i:08d}" for i in range(n)}
    registry = InMemoryVehicleRegistry(owners)
    registry.lookups = []
    store = InMemoryCaseStore()
    mc = MoveCar(store=store, registry=registry, telephony=InMemoryTelephony(), clock=ManualClock())
    telephony = mc.telephony
    assert isinstance(telephony, InMemoryTelephony)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for plate in owners:
        case_id = mc.open_case(
            plate=plate, location="武进区湖塘镇花园街 8 号", requester_phone="13800001111"
        )
        mc.locate_owner(case_id, agent_id="seat-1")
        mc.call_owner(case_id, agent_id="seat-1")
    registry.lookups.clear()  # the test double's own log, not the engine's memory
    telephony.clear()
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    retained = sum(s.size_diff for s in after.compare_to(before, "filename"))
    events = sum(len(store.load(c)) for c in store.case_ids())
    return {
        "open_cases": n,
        "events_per_case": events / n,
        "bytes_per_open_case": retained / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=20000)
    parser.add_argument("--machine-cases", type=int, default=1000)
    args = parser.parse_args()
    cases = histories(args.cases)
    result = {
        "benchmark": "case engine",
        "python": platform.python_version(),
        "states": len(DEFINITION["states"]),
        "terminal_check": all(fold(h).state is not CaseState.RECEIVED for h in cases),
        **bench_transitions(cases, args.machine_cases),
        **bench_memory(args.cases),
        "targets": {
            "engine_vs_dict_ratio": "<= 5",
            "machine_per_case_vs_engine_ratio": ">= 20",
            "bytes_per_open_case": "< 2048",
        },
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
