"""One real call to an owner, from 0519110 with the contract's greeting, through SIP.

The composition root builds the SIP switch from the environment (or ``movecar.toml``):
the engine records the call, dials it through baresip, applies what the switch reports
(ringing, answered, ended...) in ``run_due``, and the recording goes into the encrypted
recording store with its SHA-256 in the case's evidence (二(四), 二(六)).

Needs baresip, espeak-ng and sox (``apt-get install baresip-core espeak-ng sox``).

Run: MOVECAR_SIP_TRUNK=sbc.example:5060 python examples/sip_call.py 13912345678
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from movecar_adapters import connect
from movecar_adapters.crypto import KeyRing
from movecar_adapters.recordings_fs import FileRecordingStore
from movecar_adapters.sql.store import SqlStore
from movecar_core import CallProgress, CallProgressed, call_key

if len(sys.argv) != 2 or not os.environ.get("MOVECAR_SIP_TRUNK"):
    sys.exit(__doc__)
owner = sys.argv[1]
plate = "苏D12345"
recordings = Path(os.environ.get("MOVECAR_RECORDINGS") or "recordings")
recordings.mkdir(exist_ok=True)
os.environ["MOVECAR_RECORDINGS"] = str(recordings)
# Synthetic data: a key of the example's own (a deployment sets MOVECAR_KEYS).
keys = KeyRing([("example", KeyRing.generate())])

with connect("sqlite:///sip_call.db", keys=keys) as mc:
    mc.registry.add(plate, owner)  # type: ignore[attr-defined]  # the in-memory registry
    case_id = mc.open_case(plate=plate, location="常武中路地库", requester_phone="13700002222")
    mc.locate_owner(case_id, agent_id="seat-05")
    call = mc.call_owner(case_id, agent_id="seat-05")
    print(f"dialled from {call.caller_id}: {call.greeting}")

    def reports() -> list[CallProgress]:
        mc.run_due()  # applies what the switch reported
        return [e.progress for e in mc.history(case_id) if isinstance(e, CallProgressed)]

    deadline = time.monotonic() + 60
    while mc.record(case_id).call_in_flight is not None and time.monotonic() < deadline:
        if CallProgress.ENDED in reports():
            # The seat talked to the owner, who agreed to move the car.
            mc.record_call_outcome(case_id, call.call_id, "answered_agreed")
            mc.confirm_moved(case_id)
            break
        time.sleep(0.1)
    print("the switch reported:", ", ".join(p.value for p in reports()))
    print(f"case {case_id[:8]}: {mc.case(case_id).state.value}")

    store = mc.store
    assert isinstance(store, SqlStore)
    files = FileRecordingStore(recordings, store.keys, evidence=store, clock=store.clock)
    key = call_key(case_id, call.attempt)
    while not files.exists(case_id, key) and time.monotonic() < deadline:
        time.sleep(0.1)  # the recording is mixed and stored once the call has ended
    if files.exists(case_id, key):
        ref = files.metadata(case_id, key)
        print(f"recording kept: {ref.duration_ms} ms, sha256 {ref.sha256[:16]}…")
    else:
        print("no recording (the call was not answered)")
