"""The CaseStore port contract suite, unchanged, on SQLite (file, WAL), PostgreSQL, MariaDB."""

from __future__ import annotations

import pytest

from movecar_adapters.sql import SqlStore
from movecar_core.ports import CaseStore, FoldedCaseStore
from movecar_core.testing.contracts import (
    CaseStoreContract,
    FoldedCaseStoreContract,
    OpenCasesContract,
    OutboxBacklogContract,
    OutboxStoreContract,
)


class TestSqlCaseStore(CaseStoreContract):
    @pytest.fixture
    def store(self, shared_store: SqlStore) -> CaseStore:
        return shared_store


def test_sqlite_runs_in_wal_mode(databases, keys) -> None:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    from movecar_adapters.sql import make_engine

    engine = make_engine(databases.new("sqlite"))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert isinstance(SqlStore(engine, keys), CaseStore)
    engine.dispose()
    _ = sa


class TestSqlOutbox(OutboxStoreContract):
    @pytest.fixture
    def outbox_store(self, shared_store: SqlStore) -> SqlStore:
        return shared_store


class TestSqlFoldedStore(FoldedCaseStoreContract):
    """The record kept in the state row (migration 0005) is the fold, after every append."""

    @pytest.fixture
    def folded_store(self, shared_store: SqlStore) -> SqlStore:
        assert isinstance(shared_store, FoldedCaseStore)
        return shared_store


class TestSqlOpenCases(OpenCasesContract):
    """From the state rows of open cases (closed_at NULL) and their kept records."""

    @pytest.fixture
    def open_cases_store(self, fresh_store: SqlStore) -> SqlStore:
        return fresh_store


class TestSqlOutboxBacklog(OutboxBacklogContract):
    @pytest.fixture
    def backlog_store(self, fresh_store: SqlStore) -> SqlStore:
        return fresh_store
