"""An in-memory store seen only through the ports it shares with every store.

The engine reads and writes a :class:`~movecar_core.ports.FoldedCaseStore` (the in-memory
store) by its records; any other store (the SQL store) through ``load`` and ``append``,
folding and planning itself. This wrapper hides the record methods, so the tests run that
second path too, without a database.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from movecar_core.app import MoveCar
from movecar_core.clock import ManualClock
from movecar_core.memory import (
    InMemoryCaseStore,
    InMemoryCommandCentre,
    InMemoryNotifier,
    InMemorySeatReminders,
    InMemoryTelephony,
    InMemoryVehicleRegistry,
)
from movecar_core.ports import RequesterNotifier

HIDDEN = frozenset({"load_folded", "append_folded"})


class PortsOnlyStore:
    """Everything of ``inner`` but its records: a CaseStore, OutboxStore and ReportStore."""

    def __init__(self, inner: InMemoryCaseStore) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if name in HIDDEN:
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # A test that sets the store's policy or wraps a method sets it on the store.
        if name == "inner":
            object.__setattr__(self, name, value)
        else:
            setattr(self.inner, name, value)


def ports_only_engine(
    owners: Mapping[str, str],
    clock: ManualClock,
    notifier: RequesterNotifier | None = None,
    **options: Any,
) -> MoveCar:
    """:meth:`MoveCar.in_memory`, with its store seen through the ports only."""
    return MoveCar(
        store=PortsOnlyStore(InMemoryCaseStore(clock=clock)),
        registry=InMemoryVehicleRegistry(owners),
        telephony=InMemoryTelephony(),
        clock=clock,
        notifier=notifier or InMemoryNotifier(),
        command_centre=InMemoryCommandCentre(),
        reminders=InMemorySeatReminders(),
        **options,
    )
