"""Quick start: one move-car case from the requester's call to the car being moved.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from movecar_core import CallOutcome, MoveCar
from movecar_core.clock import ManualClock

clock = ManualClock(dt.datetime(2025, 5, 6, 7, 40, tzinfo=ZoneInfo("Asia/Shanghai")))
mc = MoveCar.in_memory(owners={"苏D12345": "13912345678"}, clock=clock)

# 呼入: a citizen calls 114; the seat opens a case.
case_id = mc.open_case(
    plate="苏D 12345", location="武进区湖塘镇花园街 8 号", requester_phone="138-0000-1111"
)
# The owner is looked up in the traffic-police platform (one audited look-up).
mc.locate_owner(case_id, agent_id="seat-03")
# 外呼: one human-placed call, from the caller ID and with the greeting of the contract.
call = mc.call_owner(case_id, agent_id="seat-03")
print(f"calling from {call.caller_id}: {call.greeting}")
clock.advance(minutes=1)
mc.record_call_outcome(case_id, call.call_id, CallOutcome.ANSWERED_AGREED)
clock.advance(minutes=8)
view = mc.confirm_moved(case_id)

print(f"case {case_id[:8]} is {view.state.value}; owner {view.owner_phone_masked}")
print("the requester sees:", mc.requester_view(case_id).status)
for event in mc.history(case_id):
    print(f"  {event.at:%H:%M}  {type(event).__name__}")
