"""The port contract suites against the in-memory adapters."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from movecar_adapters.clock import SystemClock
from movecar_core.clock import ManualClock
from movecar_core.memory import InMemoryCaseStore, InMemoryTelephony, InMemoryVehicleRegistry
from movecar_core.ports import CaseStore, Clock
from movecar_core.testing.contracts import (
    CaseStoreContract,
    ClockContract,
    FoldedCaseStoreContract,
    InMemoryFarEnd,
    OpenCasesContract,
    OutboxBacklogContract,
    OutboxStoreContract,
    TelephonyContract,
    VehicleRegistryContract,
)


class TestInMemoryCaseStore(CaseStoreContract):
    @pytest.fixture
    def store(self) -> CaseStore:
        return InMemoryCaseStore()


class TestInMemoryVehicleRegistry(VehicleRegistryContract):
    @pytest.fixture
    def registry(self) -> InMemoryVehicleRegistry:
        return InMemoryVehicleRegistry({"苏D12345": "13912345678"})

    @pytest.fixture
    def make_unavailable(self, registry: InMemoryVehicleRegistry) -> Callable[[], None]:
        def down() -> None:
            registry.available = False

        return down


class TestInMemoryTelephony(TelephonyContract):
    @pytest.fixture
    def telephony(self) -> InMemoryTelephony:
        return InMemoryTelephony()

    @pytest.fixture
    def far_end(self, telephony: InMemoryTelephony) -> InMemoryFarEnd:
        return InMemoryFarEnd(telephony)


class TestSystemClock(ClockContract):
    @pytest.fixture
    def clock(self) -> Clock:
        return SystemClock()


class TestManualClock(ClockContract):
    @pytest.fixture
    def clock(self) -> Clock:
        return ManualClock()


class TestInMemoryOpenCases(OpenCasesContract):
    @pytest.fixture
    def open_cases_store(self) -> InMemoryCaseStore:
        return InMemoryCaseStore()


class TestInMemoryOutboxBacklog(OutboxBacklogContract):
    @pytest.fixture
    def backlog_store(self) -> InMemoryCaseStore:
        return InMemoryCaseStore()


def test_in_memory_switch_dials_a_call_id_once() -> None:
    from movecar_core.ports import OutboundCallRequest

    switch = InMemoryTelephony()
    request = OutboundCallRequest("c1", "case", "seat-1", "0519110", "13912345678", "您好", 1)
    switch.place_call(request)
    switch.place_call(request)
    assert switch.calls == [request]


def test_in_memory_switch_finds_a_repeat_among_many_calls_and_can_forget() -> None:
    from movecar_core.ports import OutboundCallRequest

    switch = InMemoryTelephony()
    requests = [
        OutboundCallRequest(f"c{i}", f"case-{i}", "seat-9", "0519110", "13912345678", "您好", 1)
        for i in range(1000)
    ]
    for request in [*requests, requests[0], requests[500], requests[-1]]:
        switch.place_call(request)
    assert switch.calls == requests
    switch.clear()
    assert (switch.calls, switch.transfers) == ([], [])
    switch.place_call(requests[0])  # forgotten: dialled again
    assert switch.calls == requests[:1]


class TestInMemoryOutbox(OutboxStoreContract):
    @pytest.fixture
    def outbox_store(self) -> InMemoryCaseStore:
        return InMemoryCaseStore()


class TestInMemoryFoldedStore(FoldedCaseStoreContract):
    @pytest.fixture
    def folded_store(self) -> InMemoryCaseStore:
        return InMemoryCaseStore()
