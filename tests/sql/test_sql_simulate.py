"""The simulation on every SQL backend: the same books as in memory, and the audit of what
it wrote verifies."""

from __future__ import annotations

import attrs
import pytest

from movecar_adapters.simulate import run
from movecar_adapters.sql import StorageInputError
from movecar_core.simulation import DEFAULT

SMALL = attrs.evolve(DEFAULT, calls_per_year=1_500)


def test_a_simulated_month_on_each_backend_matches_memory(fresh_url: str) -> None:
    on_sql = run(SMALL, 3, fresh_url)
    in_memory = run(SMALL, 3, "memory://")
    assert on_sql.months == in_memory.months  # the store changes nothing the model sees
    assert not [f for f in on_sql.findings if f.clause == "五(三)"]  # the audit verified


def test_a_database_with_cases_is_refused(fresh_url: str) -> None:
    run(attrs.evolve(SMALL, calls_per_year=300), 1, fresh_url)
    with pytest.raises(StorageInputError, match="holds cases already"):
        run(SMALL, 1, fresh_url)
