"""The library's stateful machine against the in-memory adapters."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import settings
from ports_only import ports_only_engine

from movecar_core import CasePolicy, MoveCar
from movecar_core.clock import ManualClock
from movecar_core.memory import (
    InMemoryCaseStore,
    InMemoryCommandCentre,
    InMemorySeatReminders,
    InMemoryTelephony,
    InMemoryVehicleRegistry,
)
from movecar_core.testing.stateful import MoveCarStateMachine, RecordingNotifier


class InMemoryMachine(MoveCarStateMachine):
    def make_engine(self, owners: Mapping[str, str], notifier: RecordingNotifier) -> MoveCar:
        return MoveCar(
            store=InMemoryCaseStore(),
            registry=InMemoryVehicleRegistry(owners),
            telephony=InMemoryTelephony(),
            clock=ManualClock(),
            notifier=notifier,
            command_centre=InMemoryCommandCentre(),
            reminders=InMemorySeatReminders(),
            policy=CasePolicy(max_call_attempts=2),
        )


InMemoryMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
TestInMemoryMachine = InMemoryMachine.TestCase


class PortsOnlyMachine(MoveCarStateMachine):
    """The same machine on a store the engine sees through the ports only: it folds and
    plans itself, as for the SQL store."""

    def make_engine(self, owners: Mapping[str, str], notifier: RecordingNotifier) -> MoveCar:
        return ports_only_engine(
            owners, ManualClock(), notifier, policy=CasePolicy(max_call_attempts=2)
        )


PortsOnlyMachine.TestCase.settings = settings(
    max_examples=50, stateful_step_count=40, deadline=None
)
TestPortsOnlyMachine = PortsOnlyMachine.TestCase
