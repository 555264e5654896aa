"""Retention tombstones on the in-memory store (the SQL stores run the same cases)."""

from __future__ import annotations

import pytest
from tombstone_cases import OWNERS, Build, TombstoneCases

from movecar_core import MoveCar


class TestTombstonesInMemory(TombstoneCases):
    @pytest.fixture
    def build(self) -> Build:
        return lambda: MoveCar.in_memory(owners=OWNERS)
