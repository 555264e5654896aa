"""Fixtures for the SQL store: real databases, each test run in its own schema/database.

* SQLite always runs, on real files in WAL mode (under ``$MOVECAR_TEST_SQLITE`` when that
  names a directory, else pytest's tmp dir; ``MOVECAR_TEST_SQLITE=0`` turns it off).
* PostgreSQL runs when ``MOVECAR_TEST_POSTGRES_URL`` is set, MariaDB when
  ``MOVECAR_TEST_MARIADB_URL`` is set; unset, their tests are skipped with that reason.
  Set but unreachable fails the run: CI must not go green by skipping.
* Every run creates uniquely named schemas (PostgreSQL) / databases (MariaDB) and drops
  them at the end; the schema is built by the Alembic migrations, never ``create_all``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlsupport import BACKENDS, KEY_1, Databases

from movecar_adapters.crypto import KeyRing
from movecar_adapters.sql import SqlStore, make_engine
from movecar_core.clock import ManualClock


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    dbs = Databases(tmp_path_factory.mktemp("sqlstore"))
    yield dbs
    dbs.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def keys() -> KeyRing:
    return KeyRing([("k1", KEY_1)])


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fresh_url(databases: Databases, backend: str) -> str:
    """A new isolated database for this test only."""
    return databases.new(backend)


@pytest.fixture
def fresh_store(fresh_url: str, keys: KeyRing, clock: ManualClock) -> Iterator[SqlStore]:
    store = SqlStore(make_engine(fresh_url), keys, clock=clock)
    yield store
    store.engine.dispose()


@pytest.fixture(scope="session")
def _shared_engines() -> Iterator[dict[str, sa.Engine]]:
    engines: dict[str, sa.Engine] = {}
    yield engines
    for engine in engines.values():
        engine.dispose()


@pytest.fixture
def shared_store(
    databases: Databases, backend: str, keys: KeyRing, _shared_engines: dict[str, sa.Engine]
) -> SqlStore:
    """A store on this run's shared database of ``backend`` (tests use unique case ids)."""
    url = databases.shared_url(backend)
    if backend not in _shared_engines:
        _shared_engines[backend] = make_engine(url)
    return SqlStore(_shared_engines[backend], keys)
