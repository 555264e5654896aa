"""The shared base of the SQL store's parts: configuration, transactions, input checks.

:class:`~movecar_adapters.sql.store.SqlStore` is composed of one part per storage concern
(events and projections, effects and timers, evidence, retention and keys), each a class
over :class:`StoreBase` in a module of its own.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa

from movecar_adapters.clock import SystemClock
from movecar_adapters.crypto import KeyRing
from movecar_adapters.sql.engine import READ_ONLY, current_revision, head_revision, make_engine
from movecar_adapters.sql.errors import SchemaNotReady, StorageInputError
from movecar_adapters.sql.prepared import CommandPath
from movecar_adapters.sql.writes import write_transaction
from movecar_core.contract import WUJIN_114_2024, Contract
from movecar_core.outbox import EffectPolicy
from movecar_core.ports import Clock
from movecar_core.requesters import RequesterPolicy

T = TypeVar("T")

#: Case ids: opaque tokens, no spaces (MariaDB ignores trailing spaces when comparing).
CASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}\Z")
#: Longest text a single event field may hold (the facade allows 2000 for notes).
MAX_FIELD_CHARS = 4000
#: Longest stored payload, in UTF-8 bytes.
MAX_PAYLOAD_BYTES = 60_000
#: Column limits of the state row and the look-up log.
MAX_PLATE = 16
MAX_AGENT = 100
MAX_SOURCE = 100


def check_case_id(case_id: object) -> str:
    if not isinstance(case_id, str):
        raise StorageInputError("case_id", case_id, "must be a string")
    if not CASE_ID.match(case_id):
        raise StorageInputError(
            "case_id", case_id, "must be 1-64 characters of A-Z a-z 0-9 . _ : - (no spaces)"
        )
    return case_id


def check_text(name: str, value: object, limit: int) -> None:
    if isinstance(value, str) and len(value) > limit:
        raise StorageInputError(name, value, f"longer than {limit} characters")


class StoreBase:
    """What every part of the SQL store shares: the engine, keys, clock, contract and
    effect policy, and how a part runs a read or a write transaction."""

    def __init__(
        self,
        engine: sa.Engine | str,
        keys: KeyRing,
        *,
        clock: Clock | None = None,
        contract: Contract = WUJIN_114_2024,
        effects: EffectPolicy | None = None,
        lease: dt.timedelta = dt.timedelta(minutes=2),
        check_schema: bool = True,
        ledger: bool = True,
        requesters: RequesterPolicy | None = None,
    ) -> None:
        self.engine = make_engine(engine) if isinstance(engine, str) else engine
        self.keys = keys
        self.clock: Clock = clock or SystemClock()
        self.contract = contract
        self.effects = effects or EffectPolicy()
        self.lease = lease
        self.dialect = self.engine.dialect.name
        #: The transactions and reads of the command path (load_folded, append_folded).
        self.command_path = CommandPath(self.engine)
        #: Write a ledger leaf with every evidentiary record (off only to measure its cost:
        #: an audit of such a database finds every record without its leaf).
        self.ledger = ledger
        if requesters is not None and not isinstance(requesters, RequesterPolicy):
            raise StorageInputError("requesters", requesters, "must be a RequesterPolicy")
        #: The requester limits and block list enforced when a case is opened (None:
        #: neither; :mod:`movecar_adapters.sql.requesters`).
        self.requesters = requesters
        if check_schema:
            have, want = current_revision(self.engine), head_revision()
            if have != want:
                raise SchemaNotReady(
                    f"database schema is at {have!r}, this library needs {want!r}: "
                    "run `movecar db upgrade`"
                )

    # --- transactions -------------------------------------------------------------------

    def _write(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run ``fn`` in one write transaction, retrying deadlocks and busy databases."""
        return write_transaction(self.engine, fn)

    def close(self) -> None:
        """Close the connections the command path holds (``MoveCar.close()`` calls it);
        the store can still be used, and makes new ones."""
        self.command_path.close()

    def _read(self) -> sa.Connection:
        return self.engine.connect().execution_options(**{READ_ONLY: True})

    def _lock(self, query: sa.Select[Any]) -> sa.Select[Any]:
        return query if self.dialect == "sqlite" else query.with_for_update()
