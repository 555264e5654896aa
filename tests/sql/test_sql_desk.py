"""A desk on the SQL store: refusals and reads of case records go into the store's
access log (七(三)), a ledger leaf each."""

from __future__ import annotations

import pytest

from movecar_adapters.sql.store import SqlStore
from movecar_core import MoveCar
from movecar_core.clock import ManualClock
from movecar_core.desk import Desk
from movecar_core.memory import InMemoryTelephony, InMemoryVehicleRegistry
from movecar_core.roles import Actor, PermissionDenied


def test_refusals_and_reads_are_in_the_stores_access_log(
    fresh_store: SqlStore, clock: ManualClock
) -> None:
    mc = MoveCar(
        store=fresh_store,
        registry=InMemoryVehicleRegistry({"苏D12345": "13912345678"}),
        telephony=InMemoryTelephony(clock=clock),
        clock=clock,
    )
    assert mc.access_log is fresh_store
    seat = Desk(mc, Actor("seat-1", "agent"))
    case_id = seat.open_case(plate="苏D12345", location="湖塘镇", requester_phone="13800001111")
    seat.locate_owner(case_id)
    with pytest.raises(PermissionDenied):
        Desk(mc, Actor("audit-1", "auditor")).history(case_id)
    assert seat.owner_contact(case_id) == "13912345678"
    rows = [(r["actor"], r["action"]) for r in fresh_store.access_log(case_id)]
    assert rows == [("audit-1", "denied:case.history"), ("seat-1", "read_owner_contact")]
    assert all("13912345678" not in str(r) for r in fresh_store.access_log(case_id))
