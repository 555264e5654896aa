"""The status page's snapshot on the SQL store (SQLite file, PostgreSQL, MariaDB): the
same figures as the in-memory store's, read from the state rows and the outbox's index
without one event read, and the ledger's newest checkpoint."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from movecar_adapters.connect import connect
from movecar_adapters.crypto import KeyRing
from movecar_adapters.http.status import render_status, status_snapshot
from movecar_adapters.signing import SigningKey
from movecar_core.calendar import SHANGHAI
from movecar_core.case import CaseState
from movecar_core.clock import ManualClock
from movecar_core.memory import InMemoryVehicleRegistry

T0 = dt.datetime(2025, 3, 14, 9, 0, tzinfo=SHANGHAI)


def test_the_snapshot_reads_no_event_and_shows_the_checkpoint(
    fresh_url: str, keys: KeyRing
) -> None:
    clock = ManualClock(T0)
    registry = InMemoryVehicleRegistry({"苏D12345": "13912345678"})
    engine = connect(
        fresh_url, keys=keys, clock=clock, registry=registry, upgrade=False, environ={}
    )
    store: Any = engine.store
    try:
        first = engine.open_case(plate="苏D12345", location="x", requester_phone="13800001111")
        engine.locate_owner(first)
        clock.advance(dt.timedelta(minutes=5))
        second = engine.open_case(plate="苏E54321", location="y", requester_phone="13800002222")
        closed = engine.open_case(plate="苏A11111", location="z", requester_phone="13800003333")
        engine.cancel(closed, note="车已开走")
        clock.advance(dt.timedelta(minutes=5))
        before = status_snapshot(engine)
        assert (before.has_ledger, before.last_checkpoint_at) == (True, None)

        store.checkpoint(SigningKey.generate())
        statements: list[str] = []

        def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        sa.event.listen(store.engine, "before_cursor_execute", seen)
        try:
            s = status_snapshot(engine)
        finally:
            sa.event.remove(store.engine, "before_cursor_execute", seen)
        assert statements and not [q for q in statements if "mc_events" in q]

        counts = dict(s.open_counts or ())
        assert counts[CaseState.OWNER_LOCATED] == 1 and counts[CaseState.RECEIVED] == 1
        assert s.open_total == 2
        assert [(r.case_id, r.plate_masked, r.requester_phone_masked) for r in s.open_cases] == [
            (first, "苏D***45", "138****1111"),
            (second, "苏E***21", "138****2222"),
        ]
        assert s.open_cases[0].age == dt.timedelta(minutes=10)
        assert s.opened_today == 3
        assert s.backlog is not None
        assert s.backlog.pending == len(list(store.pending()))
        assert s.has_ledger and s.last_checkpoint_at == store.newest_checkpoint_at() == T0 + (
            dt.timedelta(minutes=10)
        )
        page = render_status(s)
        assert "2025-03-14 09:10" in page  # the checkpoint, Asia/Shanghai
        for full in ("苏D12345", "13800001111", "13912345678", "苏E54321", "13800002222"):
            assert full not in page
    finally:
        engine.close()
        store.engine.dispose()
