"""Effects delivered on the in-memory store (the SQL stores run the same cases)."""

from __future__ import annotations

import pytest
from delivery_cases import DeliveryCases
from ports_only import PortsOnlyStore

from movecar_core.clock import ManualClock
from movecar_core.memory import InMemoryCaseStore
from movecar_core.ports import CaseStore


class TestDeliveryInMemory(DeliveryCases):
    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def store(self) -> CaseStore:
        return InMemoryCaseStore()


class TestDeliveryPortsOnly(DeliveryCases):
    """The engine's own plan, for a store that keeps no records (as SQL)."""

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def store(self) -> CaseStore:
        return PortsOnlyStore(InMemoryCaseStore())  # type: ignore[return-value]
