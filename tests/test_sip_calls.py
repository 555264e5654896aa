"""The SIP adapter placing real calls through baresip to sipp, on 127.0.0.1.

Each scenario checks what the far end saw on the wire (the caller ID 0519110 of 合同二(六)
in the INVITE's From: sipp's own regexp check fails the call otherwise, and the test reads
the message log too), the event the adapter reported, and for answered calls a recording
with sound in it (二(四)). Skipped, with the reason, where baresip, sipp, espeak-ng or sox
are missing; CI installs them (.ci/run).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from sip_support import Sipp, SippResult, require_tools, rms, sox_rms

from movecar_adapters.clock import SystemClock
from movecar_adapters.sip import SipConfig, SipTelephony, into_store
from movecar_core.calls import (
    CallEvent,
    CallLimits,
    CallProgress,
    TransferOutcome,
    TransferRequest,
    call_key,
)
from movecar_core.contract import WUJIN_114_2024
from movecar_core.errors import TelephonyError
from movecar_core.ports import OutboundCallRequest
from movecar_core.recordings import InMemoryAccessLog, InMemoryRecordingStore

pytestmark = pytest.mark.usefixtures("sip_tools")

PLATE = "苏D12345"
OWNER = "13912345678"
FROM = '"0519110" <sip:0519110@127.0.0.1>'


@pytest.fixture(scope="module")
def sip_tools() -> None:
    require_tools()


@pytest.fixture(scope="module")
def greeting_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module: each greeting is synthesised once."""
    return tmp_path_factory.mktemp("greetings")


@attrs.define
class Recorded:
    key: str
    path: Path
    duration_ms: int


@attrs.define
class Line:
    """An adapter, the sipp on the far end, and what the adapter handed over."""

    switch: SipTelephony
    sipp: Sipp
    recordings: list[Recorded]
    drained: list[CallEvent] = attrs.Factory(list)

    def events_until_final(self, key: str, timeout_s: float = 30.0) -> list[CallEvent]:
        """Every event of ``key``, up to its final one (events of other calls drained on
        the way are kept for them)."""
        final = self.switch.wait_final(key, timeout_s)
        assert final is not None
        self.drained += self.switch.drain_events()
        events = [e for e in self.drained if e.key == key]
        assert events and events[-1] == final, f"no final event in {events}"
        return events

    def recording_of(self, key: str) -> Recorded:
        assert self.switch.wait_recordings(10.0)
        [recorded] = [r for r in self.recordings if r.key == key]
        return recorded


def rtp_range() -> tuple[int, int]:
    low = random.randrange(20000, 59000, 2)
    return low, low + 199


def request(
    *, agent_id: str = "seat-1", attempt: int = 1, case_id: str | None = None
) -> OutboundCallRequest:
    greeting = WUJIN_114_2024.greeting
    return OutboundCallRequest(
        call_id=uuid.uuid4().hex,
        case_id=case_id or uuid.uuid4().hex,
        agent_id=agent_id,
        caller_id=WUJIN_114_2024.caller_id,
        callee=OWNER,
        greeting=greeting.render(PLATE),
        attempt=attempt,
        plate=PLATE,
        greeting_version=greeting.version,
    )


@pytest.fixture
def line_factory(tmp_path: Path, greeting_cache: Path) -> Iterator[Any]:
    opened: list[Line] = []

    def open_line(
        scenario: str,
        *,
        calls: int | None = 1,
        limits: CallLimits | None = None,
        sipp_values: dict[str, object] | None = None,
        **config: Any,
    ) -> Line:
        sipp = Sipp(scenario, tmp_path / f"sipp-{len(opened)}", calls=calls, **(sipp_values or {}))
        recordings: list[Recorded] = []
        settings: dict[str, Any] = {
            "trunk": sipp.trunk,
            "rtp_ports": rtp_range(),
            "greeting_cache": greeting_cache,
            "recordings_dir": tmp_path / "recordings",
            "ring_timeout_s": 10.0,
            "listen_after_greeting_s": 2.0,
        }
        settings.update(config)
        switch = SipTelephony(
            SipConfig(**settings),
            limits=limits,
            on_recording=lambda k, p, d: recordings.append(Recorded(k, p, d)),
        )
        line = Line(switch, sipp, recordings)
        opened.append(line)
        return line

    yield open_line
    for line in opened:  # even when the test failed: no process is left behind
        line.switch.close()
        line.sipp.stop()


def spoken_ms(line: Line) -> int:
    """How long the greeting's speech lasts (the owner who hangs up before then hung up
    during the greeting)."""
    greeting = WUJIN_114_2024.greeting
    audio = line.switch.greetings.prepare(
        greeting.render(PLATE), version=greeting.version, plate=PLATE
    )
    return round(audio.spoken_s * 1000)


def assert_caller_id(result: SippResult, invites: int = 1) -> None:
    """合同二(六): every INVITE on the wire came from 0519110, and sipp's own check of it
    passed (its exit status is 0 only when every call passed every check)."""
    froms = result.header("INVITE", "From")
    assert len(froms) == invites, result.messages[-2000:]
    assert all(value.startswith(FROM + ";tag=") for value in froms), froms
    assert result.status == 0, result.errors[-2000:]


def assert_sound(recorded: Recorded) -> None:
    assert recorded.path.is_file() and recorded.duration_ms > 500
    assert rms(recorded.path) > 0.01, "the recording is silent"
    assert sox_rms(recorded.path) > 0.01


def progress(events: list[CallEvent]) -> list[CallProgress]:
    return [e.progress for e in events]


# --- the scenarios of the issue --------------------------------------------------------


def test_answered_then_the_owner_hangs_up(line_factory: Any, greeting_cache: Path) -> None:
    probe = SipTelephony(SipConfig("127.0.0.1:5060", greeting_cache=greeting_cache))
    with probe:
        greeting = WUJIN_114_2024.greeting
        audio = probe.greetings.prepare(
            greeting.render(PLATE), version=greeting.version, plate=PLATE
        )
    hold = round(audio.spoken_s * 1000) + 1500  # past the greeting: a conversation
    line = line_factory("answer_then_bye.xml", sipp_values={"HOLD_MS": hold})
    call = request()
    line.switch.place_call(call)
    events = line.events_until_final(call.key)
    assert progress(events) == [CallProgress.RINGING, CallProgress.ANSWERED, CallProgress.ENDED]
    assert all(OWNER not in e.detail for e in events)
    assert line.switch.in_flight().total == 0
    assert_caller_id(line.sipp.finish())
    recorded = line.recording_of(call.key)
    assert_sound(recorded)
    assert recorded.duration_ms >= hold - 500


def test_the_owner_is_busy(line_factory: Any) -> None:
    line = line_factory("reject.xml", sipp_values={"STATUS": 486, "REASON": "Busy Here"})
    call = request()
    line.switch.place_call(call)
    events = line.events_until_final(call.key)
    assert progress(events) == [CallProgress.RINGING, CallProgress.BUSY]
    assert events[-1].sip_status == 486
    assert_caller_id(line.sipp.finish())
    assert line.switch.wait_recordings() and line.recordings == []  # no audio: nothing to keep


def test_the_owner_declines(line_factory: Any) -> None:
    line = line_factory("reject.xml", sipp_values={"STATUS": 603, "REASON": "Decline"})
    call = request()
    line.switch.place_call(call)
    events = line.events_until_final(call.key)
    assert progress(events) == [CallProgress.RINGING, CallProgress.DECLINED]
    assert events[-1].sip_status == 603
    assert_caller_id(line.sipp.finish())


def test_a_call_not_answered_is_cancelled_at_the_ring_timeout(line_factory: Any) -> None:
    line = line_factory("ring_until_cancel.xml", ring_timeout_s=1.5)
    call = request()
    started = time.monotonic()
    line.switch.place_call(call)
    events = line.events_until_final(call.key)
    waited = time.monotonic() - started
    assert progress(events) == [CallProgress.RINGING, CallProgress.NO_ANSWER]
    assert 1.4 <= waited < 5.0
    result = line.sipp.finish()
    assert_caller_id(result)
    # The adapter hung up: CANCEL on the wire, answered 200 and the INVITE 487.
    assert len(result.requests("CANCEL")) == 1
    assert any(" 487 " in status for status in result.responses())


def test_the_owner_hangs_up_during_the_greeting(line_factory: Any) -> None:
    line = line_factory("answer_then_bye.xml", sipp_values={"HOLD_MS": 1000})
    call = request()
    line.switch.place_call(call)
    events = line.events_until_final(call.key)
    assert progress(events) == [
        CallProgress.RINGING,
        CallProgress.ANSWERED,
        CallProgress.HUNG_UP_IN_GREETING,
    ]
    assert_caller_id(line.sipp.finish())
    assert_sound(line.recording_of(call.key))


def test_the_caller_hangs_up_after_the_greeting(line_factory: Any) -> None:
    line = line_factory("answer_wait_bye.xml", listen_after_greeting_s=1.0)
    call = request()
    line.switch.place_call(call)
    events = line.events_until_final(call.key)
    assert progress(events) == [CallProgress.RINGING, CallProgress.ANSWERED, CallProgress.ENDED]
    assert "greeting played" in events[-1].detail
    timing = line.switch.call_timing(call.key)
    assert timing is not None and timing.answered_s is not None and timing.ended_s is not None
    assert timing.ended_s - timing.answered_s >= spoken_ms(line) / 1000
    result = line.sipp.finish()
    assert_caller_id(result)
    assert len(result.requests("BYE")) == 1  # from the caller: sipp sent none
    recorded = line.recording_of(call.key)
    assert_sound(recorded)
    assert recorded.duration_ms >= spoken_ms(line)


def test_a_transfer_to_110_is_accepted(line_factory: Any) -> None:
    line = line_factory("refer_accept.xml")
    call = request()
    line.switch.place_call(call)
    _wait_for(line, call.key, CallProgress.ANSWERED)
    time.sleep(1.5)  # the greeting plays, the owner answers, then the seat transfers
    outcome = line.switch.transfer_to_110(
        TransferRequest(call.case_id, WUJIN_114_2024.transfer_110_number, "dispute", call.key)
    )
    assert outcome is TransferOutcome.ACCEPTED
    events = line.events_until_final(call.key)
    assert events[-1].progress is CallProgress.ENDED and "110" in events[-1].detail
    result = line.sipp.finish()
    assert_caller_id(result)
    # 合同二(五): the 110 desk's line, 0519-81997327, as the REFER's target.
    [refer_to] = result.header("REFER", "Refer-To")
    assert refer_to.startswith("sip:051981997327@")
    assert_sound(line.recording_of(call.key))


def test_a_transfer_to_110_is_refused(line_factory: Any) -> None:
    line = line_factory(
        "refer_refuse.xml", sipp_values={"REFER_STATUS": 603, "REFER_REASON": "Decline"}
    )
    call = request()
    line.switch.place_call(call)
    _wait_for(line, call.key, CallProgress.ANSWERED)
    time.sleep(1.5)
    outcome = line.switch.transfer_to_110(
        TransferRequest(call.case_id, "0519-81997327", "dispute", call.key)
    )
    assert outcome is TransferOutcome.REFUSED
    events = line.events_until_final(call.key)
    # baresip 1.0.0 ends the call after a refused REFER (it sends BYE).
    assert events[-1].progress is CallProgress.ENDED and "refused" in events[-1].detail
    result = line.sipp.finish()
    assert_caller_id(result)
    assert len(result.requests("BYE")) == 1
    assert_sound(line.recording_of(call.key))


def _wait_for(line: Line, key: str, wanted: CallProgress, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = line.switch.call_status(key)
        if status is not None and status.progress is wanted:
            return
        time.sleep(0.01)
    raise AssertionError(f"no {wanted} for {key}: {line.switch.call_status(key)}")


# --- the port's promises ---------------------------------------------------------------


def test_a_repeated_key_is_dialled_once(line_factory: Any) -> None:
    line = line_factory("answer_then_bye.xml", sipp_values={"HOLD_MS": 300})
    call = request()
    line.switch.place_call(call)
    line.switch.place_call(call)
    line.switch.place_call(attrs.evolve(call, call_id=uuid.uuid4().hex))  # the same key
    status = line.switch.call_status(call.key)
    assert status is not None and status.key == call.key
    line.events_until_final(call.key)
    line.switch.place_call(call)  # after the end, too: the same call, not a new dial
    time.sleep(0.3)
    assert_caller_id(line.sipp.finish(), invites=1)
    assert line.switch.drain_events() == []


def test_a_call_never_placed_is_unknown(line_factory: Any) -> None:
    line = line_factory("answer_wait_bye.xml", calls=None)
    assert line.switch.call_status(call_key("never-placed", 1)) is None


def test_calls_in_flight_are_counted_and_capped(line_factory: Any) -> None:
    line = line_factory(
        "ring_until_cancel.xml",
        calls=2,
        limits=CallLimits(per_seat=1, total=2),
        ring_timeout_s=60.0,
    )
    first = request(agent_id="seat-1")
    line.switch.place_call(first)
    now = line.switch.in_flight()
    assert (now.total, now.of("seat-1")) == (1, 1)
    with pytest.raises(TelephonyError, match="seat has 1 call"):
        line.switch.place_call(request(agent_id="seat-1"))
    second = request(agent_id="seat-2")
    line.switch.place_call(second)
    with pytest.raises(TelephonyError, match="2 calls are in flight"):
        line.switch.place_call(request(agent_id="seat-3"))
    now = line.switch.in_flight()
    assert (now.total, now.of("seat-1"), now.of("seat-2"), now.of("seat-3")) == (2, 1, 1, 0)
    _wait_for(line, first.key, CallProgress.RINGING)
    _wait_for(line, second.key, CallProgress.RINGING)
    assert line.switch.hang_up(first.key) and line.switch.hang_up(second.key)
    for key in (first.key, second.key):
        assert line.events_until_final(key)[-1].progress is CallProgress.NO_ANSWER
    assert line.switch.in_flight().total == 0
    assert_caller_id(line.sipp.finish(), invites=2)  # the refused ones never left


def test_an_unreachable_far_end_fails_at_the_ring_timeout(line_factory: Any) -> None:
    line = line_factory("answer_wait_bye.xml", calls=None, ring_timeout_s=1.0)
    line.sipp.stop()  # nothing answers on the trunk's port any more
    call = request()
    line.switch.place_call(call)
    events = line.events_until_final(call.key)
    assert progress(events) == [CallProgress.FAILED]
    assert events[-1].sip_status is None and "never rang" in events[-1].detail


def test_another_caller_id_fails_the_far_ends_check(line_factory: Any) -> None:
    """The check of the caller ID on the wire can fail: an adapter set up with another
    number is caught by sipp's regexp (and refuses a request carrying 0519110)."""
    line = line_factory(
        "reject.xml", caller_id="0519111", sipp_values={"STATUS": 486, "REASON": "Busy Here"}
    )
    with pytest.raises(TelephonyError, match="caller ID"):
        line.switch.place_call(request())
    call = attrs.evolve(request(), caller_id="0519111")
    line.switch.place_call(call)
    line.events_until_final(call.key)
    result = line.sipp.finish()
    assert result.status != 0 and "0519111" in result.header("INVITE", "From")[0]


def test_a_user_agent_that_dies_leaves_the_outcome_unknown(line_factory: Any) -> None:
    line = line_factory("answer_wait_bye.xml", listen_after_greeting_s=30.0)
    call = request()
    line.switch.place_call(call)
    _wait_for(line, call.key, CallProgress.ANSWERED)
    [pid] = line.switch.agent_pids()
    os.kill(pid, signal.SIGKILL)
    events = line.events_until_final(call.key)
    assert events[-1].progress is CallProgress.UNKNOWN
    assert line.switch.in_flight().total == 0
    assert line.switch.agent_pids() == []


def test_the_greeting_waits_for_the_answer_through_early_media(line_factory: Any) -> None:
    """A carrier's ringback (183 with SDP) starts the call's audio before the answer: the
    greeting must still start when the owner answers, and be heard whole."""
    probe = line_factory("answer_wait_bye.xml", calls=None)
    spoken = spoken_ms(probe)
    line = line_factory(
        "early_media.xml",
        listen_after_greeting_s=1.0,
        sipp_values={"RING_MS": 3000, "HOLD_MS": spoken + 1500},
    )
    call = request()
    line.switch.place_call(call)
    events = line.events_until_final(call.key)
    assert progress(events) == [CallProgress.RINGING, CallProgress.ANSWERED, CallProgress.ENDED]
    assert "greeting" not in events[-1].detail  # the owner hung up, not the end of the file
    timing = line.switch.call_timing(call.key)
    assert timing is not None and timing.answered_s is not None and timing.ended_s is not None
    assert timing.answered_s >= 2.9
    assert timing.ended_s - timing.answered_s >= spoken / 1000
    assert_caller_id(line.sipp.finish())
    assert_sound(line.recording_of(call.key))


def test_no_user_agent_outlives_a_host_that_forgot_to_close(
    line_factory: Any, tmp_path: Path
) -> None:
    line = line_factory("answer_wait_bye.xml", calls=None)
    script = tmp_path / "forgetful_host.py"
    script.write_text(
        "import sys, time, uuid\n"
        "from movecar_adapters.sip import SipConfig, SipTelephony\n"
        "from movecar_core.ports import OutboundCallRequest\n"
        f"switch = SipTelephony(SipConfig({line.sipp.trunk!r}, rtp_ports=(41000, 41199)))\n"
        "switch.place_call(OutboundCallRequest(uuid.uuid4().hex, 'case-1', 'seat-1', '0519110',\n"
        "    '13912345678', '您好，苏D12345', attempt=1, plate='苏D12345'))\n"
        "deadline = time.monotonic() + 10\n"
        "while switch.call_status('case-1:call:1').progress.value != 'answered':\n"
        "    assert time.monotonic() < deadline\n"
        "    time.sleep(0.01)\n"
        "print(*switch.agent_pids())\n"
        "print(switch.work_dir)\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    pids_line, work_dir = done.stdout.splitlines()
    pids = [int(p) for p in pids_line.split()]
    assert len(pids) == 1
    assert not Path(work_dir).exists()  # its temporary folder went with it
    left = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    for pid in left:  # a failing run must not leave them running either
        os.kill(pid, signal.SIGKILL)
    assert left == [], "a baresip outlived its host"


def test_a_recording_goes_into_the_recording_store(line_factory: Any, tmp_path: Path) -> None:
    clock = SystemClock()
    store = InMemoryRecordingStore(InMemoryAccessLog(clock), clock)
    line = line_factory("answer_then_bye.xml", sipp_values={"HOLD_MS": 1500})
    line.switch.on_recording = into_store(store, clock)
    call = request()
    line.switch.place_call(call)
    line.events_until_final(call.key)
    assert line.switch.wait_recordings(10.0)
    ref = store.metadata(call.case_id, call.key)
    assert ref.duration_ms > 1000 and ref.size > 16_000
    assert store.exists(call.case_id, call.key)
    assert not list((tmp_path / "recordings").glob("*/call.wav"))  # the store has it now
