"""Effects delivered on SQLite, PostgreSQL and MariaDB (the same cases as in memory)."""

from __future__ import annotations

import pytest
from delivery_cases import DeliveryCases

from movecar_adapters.sql import SqlStore


class TestDeliverySql(DeliveryCases):
    @pytest.fixture
    def store(self, fresh_store: SqlStore) -> SqlStore:
        return fresh_store
