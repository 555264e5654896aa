"""Reusing the library's stateful test machine against your own wiring.

A host backend subclasses MoveCarStateMachine, says how to build its engine, and runs it:
Hypothesis then drives random command sequences and checks the library's invariants
(state = fold of history, terminal states absorb, attempt limits, no owner number on the
requester side, refused commands write nothing). In a pytest suite, expose
``TestHost = HostMachine.TestCase`` instead of calling run_state_machine_as_test.

Run: python examples/host_property_suite.py
"""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from movecar_adapters import connect
from movecar_core import MoveCar
from movecar_core.clock import ManualClock
from movecar_core.memory import InMemoryVehicleRegistry
from movecar_core.testing.stateful import MoveCarStateMachine, RecordingNotifier


class HostMachine(MoveCarStateMachine):
    def make_engine(self, owners: Mapping[str, str], notifier: RecordingNotifier) -> MoveCar:
        # A real host builds its own wiring here, through the same composition root
        # (its database URL, its switch); the machine moves the ManualClock.
        return connect(
            "memory://",
            clock=ManualClock(),
            registry=InMemoryVehicleRegistry(owners),
            notifier=notifier,
            environ={},
        )


run_state_machine_as_test(HostMachine, settings=settings(max_examples=30, deadline=None))
print("host property suite: 30 random command sequences kept every invariant")
