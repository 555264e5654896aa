"""Plugging your own adapters into the engine: ports are plain Protocols.

A host backend implements the ports it owns (here a vehicle registry that answers from a
local table and a phone switch that prints) and hands them to ``connect``, which wires the
rest (here the in-memory store; a database URL for a real one). Any object
with the right methods fits; nothing to inherit.

Run: python examples/own_adapters.py
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from movecar_adapters import connect
from movecar_core import (
    CallEvent,
    CallProgress,
    CallsInFlight,
    EscalationReason,
    OutboundCallRequest,
    OwnerContact,
    RegistryUnavailable,
    TransferOutcome,
    TransferRequest,
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
    """A Telephony that prints what a real switch would dial or transfer.

    It dials each call key once, says every call is still dialling (nothing answers a
    printer) and reports no progress; a real switch reports ringing, answered, busy...
    through ``drain_events`` (see docs/telephony.md).
    """

    def __init__(self) -> None:
        self.placed: dict[str, str] = {}  # call key -> seat

    def place_call(self, request: OutboundCallRequest) -> None:
        if request.key in self.placed:
            return  # the same call again (a worker's repeat): never a second dial
        self.placed[request.key] = request.agent_id
        print(f"  dial {request.callee[:3]}**** from {request.caller_id}: {request.greeting}")

    def call_status(self, key: str) -> CallEvent | None:
        if key not in self.placed:
            return None
        return CallEvent(key, CallProgress.DIALLING, dt.datetime.now(dt.UTC))

    def drain_events(self) -> list[CallEvent]:
        return []

    def in_flight(self) -> CallsInFlight:
        return CallsInFlight(len(self.placed), dict(Counter(self.placed.values())))

    def transfer_to_110(self, request: TransferRequest) -> TransferOutcome:
        print(f"  transfer case {request.case_id[:8]} to {request.number} ({request.reason})")
        return TransferOutcome.ACCEPTED


# The composition root wires the rest (store, clock, 110 desk) around the host's ports.
mc = connect(
    "memory://", registry=TableRegistry({"苏DF36988": "13605190001"}), telephony=PrintingSwitch()
)
case_id = mc.open_case(plate="苏DF36988", location="常武中路地库", requester_phone="13700002222")
mc.locate_owner(case_id, agent_id="seat-05")
mc.call_owner(case_id, agent_id="seat-05")
view = mc.escalate(case_id, EscalationReason.EMERGENCY_LANE_BLOCKED, note="堵住消防通道")
print(f"case {case_id[:8]}: {view.state.value}")
