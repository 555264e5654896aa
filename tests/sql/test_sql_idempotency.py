"""Idempotency on SQLite, PostgreSQL and MariaDB (the same cases as in memory)."""

from __future__ import annotations

import pytest
from idempotency_cases import OWNERS, Build, IdempotencyCases

from movecar_adapters import connect
from movecar_adapters.crypto import KeyRing
from movecar_adapters.sql import SqlStore
from movecar_core.clock import ManualClock
from movecar_core.memory import InMemoryVehicleRegistry
from movecar_core.requesters import BLOCK_LIST_ONLY


class TestIdempotencySql(IdempotencyCases):
    max_examples = 15

    @pytest.fixture
    def build(self, shared_store: SqlStore, keys: KeyRing) -> Build:
        url = shared_store.engine.url.render_as_string(hide_password=False)

        def make() -> object:
            return connect(
                url,
                keys=keys,
                clock=ManualClock(),
                registry=InMemoryVehicleRegistry(OWNERS),
                environ={},
                requesters=BLOCK_LIST_ONLY,  # one requester opens every case here
            )

        return make  # type: ignore[return-value]
