"""Plugging your own adapters into the engine: ports are plain Protocols.

A host backend implements the ports it owns (here a vehicle registry that answers from a
local table and a phone switch that prints) and hands them to ``connect``, which wires the
rest (here the in-memory store; a database URL for a real one). Any object
with the right methods fits; nothing to inherit.

Run: python examples/own_adapters.py
"""

from __future__ import annotations

from movecar_adapters import connect
from movecar_core import (
    EscalationReason,
    OutboundCallRequest,
    OwnerContact,
    RegistryUnavailable,
)


class TableRegistry:
    """A VehicleRegistry over a dict, down when the dict is None."""

    def __init__(self, table: dict[str, str] | None) -> None:
        self.table = table

    def lookup(self, plate: str) -> OwnerContact | None:
        if self.table is None:
            raise RegistryUnavailable("the traffic-police platform is down")
        phone = self.table.get(plate)
        return None if phone is None else OwnerContact(phone=phone, source="local-table")


class PrintingSwitch:
    """A Telephony that prints what a real switch would dial or transfer."""

    def place_call(self, request: OutboundCallRequest) -> None:
        print(f"  dial {request.callee[:3]}**** from {request.caller_id}: {request.greeting}")

    def transfer_to_110(self, case_id: str, number: str, reason: str) -> None:
        print(f"  transfer case {case_id[:8]} to {number} ({reason})")


# The composition root wires the rest (store, clock, 110 desk) around the host's ports.
mc = connect(
    "memory://", registry=TableRegistry({"苏DF36988": "13605190001"}), telephony=PrintingSwitch()
)
case_id = mc.open_case(plate="苏DF36988", location="常武中路地库", requester_phone="13700002222")
mc.locate_owner(case_id, agent_id="seat-05")
mc.call_owner(case_id, agent_id="seat-05")
view = mc.escalate(case_id, EscalationReason.EMERGENCY_LANE_BLOCKED, note="堵住消防通道")
print(f"case {case_id[:8]}: {view.state.value}")
