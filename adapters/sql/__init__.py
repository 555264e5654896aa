"""The SQL storage adapter (SQLAlchemy 2.x): SQLite (default), PostgreSQL, MariaDB.

Quick start::

    from adapters.crypto import KeyRing
    from adapters.sql import SqlStore, make_engine, upgrade

    engine = make_engine("sqlite:///movecar.db")
    upgrade(engine)                       # or: movecar db upgrade
    store = SqlStore(engine, KeyRing.from_env())
    engine = MoveCar(store=store, ...)

See ``docs/storage.md``.
"""

from adapters.sql.audit import AuditResult, Finding, verify
from adapters.sql.engine import (
    DEFAULT_URL,
    ENV_URL,
    current_revision,
    database_url,
    head_revision,
    make_engine,
    upgrade,
)
from adapters.sql.errors import LegalHoldActive, SchemaNotReady, StorageError, StorageInputError
from adapters.sql.store import (
    MonthlyReport,
    PurgeResult,
    Recording,
    SqlStore,
    add_years,
    month_bounds,
    open_store,
)

__all__ = [
    "DEFAULT_URL",
    "ENV_URL",
    "AuditResult",
    "Finding",
    "LegalHoldActive",
    "MonthlyReport",
    "PurgeResult",
    "Recording",
    "SchemaNotReady",
    "SqlStore",
    "StorageError",
    "StorageInputError",
    "add_years",
    "current_revision",
    "database_url",
    "head_revision",
    "make_engine",
    "month_bounds",
    "open_store",
    "upgrade",
    "verify",
]
