"""Retention tombstones on SQLite, PostgreSQL and MariaDB (the same cases as in memory)."""

from __future__ import annotations

import pytest
from tombstone_cases import OWNERS, Build, TombstoneCases

from movecar_adapters import connect
from movecar_adapters.crypto import KeyRing
from movecar_core import MoveCar
from movecar_core.clock import ManualClock
from movecar_core.memory import InMemoryVehicleRegistry


class TestTombstonesSql(TombstoneCases):
    max_examples = 15

    @pytest.fixture
    def build(self, fresh_url: str, keys: KeyRing) -> Build:
        # A database of its own: a purge takes every due case in the database.
        def make() -> MoveCar:
            return connect(
                fresh_url,
                keys=keys,
                clock=ManualClock(),
                registry=InMemoryVehicleRegistry(OWNERS),
                environ={},
            )

        return make
