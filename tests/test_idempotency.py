"""Idempotency on the in-memory store (the SQL stores run the same cases)."""

from __future__ import annotations

import pytest
from idempotency_cases import OWNERS, Build, IdempotencyCases
from ports_only import ports_only_engine

from movecar_core import MoveCar
from movecar_core.clock import ManualClock


class TestIdempotencyInMemory(IdempotencyCases):
    @pytest.fixture
    def build(self) -> Build:
        return lambda: MoveCar.in_memory(owners=OWNERS)


class TestIdempotencyPortsOnly(IdempotencyCases):
    """The engine's own fold and plan, for a store that keeps no records (as SQL)."""

    @pytest.fixture
    def build(self) -> Build:
        return lambda: ports_only_engine(OWNERS, ManualClock())
