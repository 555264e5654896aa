"""The SQL store: cases, their outbox, evidence and retention, on one database.

:class:`SqlStore` implements :class:`~movecar_core.ports.CaseStore`,
:class:`~movecar_core.outbox.OutboxStore` and :class:`~movecar_core.ports.FoldedCaseStore`
(each case's record kept sealed in its state row; every append, the engine's and
``append``'s, goes through ``append_folded``, the one a subclass overrides) on SQLite,
PostgreSQL and MariaDB. It is one
public API composed of one part per storage concern, each a module a reader can take in
one sitting:

=========================================  ===============================================
:mod:`~movecar_adapters.sql.events`        event streams, state rows, owner look-up log,
                                           the bulk path (one ``append`` = one transaction)
:mod:`~movecar_adapters.sql.effects`       the outbox: effects and timers, claimed by workers
:mod:`~movecar_adapters.sql.evidence`      recordings, access log, monthly reports, settlements
:mod:`~movecar_adapters.sql.retention`     legal holds, the 3-year purge, key rotation
:mod:`~movecar_adapters.sql.ledger`        the evidence ledger: leaves, sequencer, checkpoints
:mod:`~movecar_adapters.sql.base`          configuration, transactions, input checks
:mod:`~movecar_adapters.sql.prepared`      the command path: statements compiled once per
                                           dialect, its transactions and reads
=========================================  ===============================================

Phone numbers are encrypted with the :class:`~movecar_adapters.crypto.KeyRing` before they
reach the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from movecar_adapters.crypto import KeyRing
from movecar_adapters.sql.base import CASE_ID, StoreBase, check_case_id
from movecar_adapters.sql.effects import EffectRecorder
from movecar_adapters.sql.engine import make_engine
from movecar_adapters.sql.events import PII_FIELDS, EventRecorder, Prepared
from movecar_adapters.sql.evidence import EvidenceRecorder, Recording
from movecar_adapters.sql.retention import PurgeResult, RetentionRecorder, add_years
from movecar_core.case import Event
from movecar_core.codec import UnknownEventType


class SqlStore(EventRecorder, EffectRecorder, EvidenceRecorder, RetentionRecorder):
    """Cases, their outbox, reports and retention on one SQL database.

    ``SqlStore("sqlite:///movecar.db", keys=KeyRing.from_env())``; the schema must have
    been migrated first (``movecar db upgrade`` or :func:`movecar_adapters.sql.upgrade`).
    """

    def read_history(self, case_id: str, *, actor: str, purpose: str) -> Sequence[Event]:
        """The case's full history (with phone numbers), logged in the access log."""
        self.log_access(actor, "read_history", case_id, purpose)
        return self.load(case_id)


def open_store(url: str, keys: KeyRing, *, upgrade_schema: bool = False, **kwargs: Any) -> SqlStore:
    """A store on ``url``; with ``upgrade_schema`` the migrations run first."""
    engine = make_engine(url)
    if upgrade_schema:
        from movecar_adapters.sql.engine import upgrade

        upgrade(engine)
    return SqlStore(engine, keys, **kwargs)


__all__ = [
    "CASE_ID",
    "PII_FIELDS",
    "Prepared",
    "PurgeResult",
    "Recording",
    "SqlStore",
    "StoreBase",
    "UnknownEventType",
    "add_years",
    "check_case_id",
    "open_store",
]
