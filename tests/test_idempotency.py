"""Idempotency on the in-memory store (the SQL stores run the same cases)."""

from __future__ import annotations

import pytest
from idempotency_cases import OWNERS, Build, IdempotencyCases

from movecar_core import MoveCar


class TestIdempotencyInMemory(IdempotencyCases):
    @pytest.fixture
    def build(self) -> Build:
        return lambda: MoveCar.in_memory(owners=OWNERS)
