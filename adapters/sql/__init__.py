"""The SQL storage adapter (SQLAlchemy 2.x): SQLite (default), PostgreSQL, MariaDB.

Quick start::

    from movecar_adapters.crypto import KeyRing
    from movecar_adapters.sql import SqlStore, make_engine, upgrade

    engine = make_engine("sqlite:///movecar.db")
    upgrade(engine)                       # or: movecar db upgrade
    store = SqlStore(engine, KeyRing.from_env())
    engine = MoveCar(store=store, ...)

See ``docs/storage.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from movecar_adapters.config import DEFAULT_URL, ENV_URL
from movecar_adapters.sql.engine import (
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    open_engine,
    upgrade,
)
from movecar_adapters.sql.errors import (
    DatabaseUnavailable,
    LegalHoldActive,
    SchemaNotReady,
    StorageError,
    StorageInputError,
)

if TYPE_CHECKING:
    from movecar_adapters.sql.audit import AuditResult, Finding, verify
    from movecar_adapters.sql.store import (
        PurgeResult,
        Recording,
        SqlStore,
        add_years,
        open_store,
    )

#: Imported on first use, so that the bulk writer process (``movecar_adapters.sql.bulk_child``),
#: which needs none of them, starts without the store, the audit and the core behind them.
_LAZY = {
    **dict.fromkeys(("AuditResult", "Finding", "verify"), "movecar_adapters.sql.audit"),
    **dict.fromkeys(
        (
            "PurgeResult",
            "Recording",
            "SqlStore",
            "add_years",
            "open_store",
        ),
        "movecar_adapters.sql.store",
    ),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'movecar_adapters.sql' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_URL",
    "ENV_URL",
    "AuditResult",
    "DatabaseUnavailable",
    "Finding",
    "LegalHoldActive",
    "PurgeResult",
    "Recording",
    "SchemaNotReady",
    "SqlStore",
    "StorageError",
    "StorageInputError",
    "add_years",
    "current_revision",
    "downgrade",
    "head_revision",
    "make_engine",
    "open_engine",
    "open_store",
    "upgrade",
    "verify",
]
