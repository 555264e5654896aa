"""``movecar sip test-call``: one real call from the command line, against sipp.

Exit 0 for any outcome of a call that reached the far end, 3 when the user agent cannot
start or nothing answers; one line on stderr for errors, never a traceback, never the
whole phone number.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sip_support import Sipp, require_tools, rms

OWNER = "13912345678"


@pytest.fixture(autouse=True)
def sip_tools() -> None:
    require_tools()


def movecar(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("movecar", path=str(Path(sys.executable).parent))
    assert exe is not None
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=120, check=False, env=env
    )


def assert_masked(done: subprocess.CompletedProcess[str]) -> None:
    assert OWNER not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_a_busy_owner_is_an_outcome(tmp_path: Path) -> None:
    sipp = Sipp("reject.xml", tmp_path / "sipp", STATUS=486, REASON="Busy Here")
    done = movecar("sip", "test-call", sipp.uri(OWNER), "--plate", "苏D12345", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["outcome"] == "busy" and report["sip_status"] == 486
    assert report["caller_id"] == "0519110" and report["uri"].startswith("sip:139****5678@")
    assert report["events"] == ["ringing", "busy"]
    assert_masked(done)
    assert sipp.finish().status == 0  # sipp's check of the caller ID passed


def test_an_answered_call_is_recorded(tmp_path: Path) -> None:
    sipp = Sipp("answer_then_bye.xml", tmp_path / "sipp", HOLD_MS=1500)
    record = tmp_path / "recordings"
    done = movecar(
        "sip", "test-call", sipp.uri(OWNER), "--plate", "苏D12345", "--record", str(record)
    )
    assert done.returncode == 0, done.stderr
    assert "hung_up_in_greeting" in done.stdout and "139****5678" in done.stdout
    [recording] = record.glob("*/call.wav")
    assert str(recording) in done.stdout
    assert rms(recording) > 0.01
    assert_masked(done)
    assert sipp.finish().status == 0


def test_nothing_answering_is_exit_3(tmp_path: Path) -> None:
    sipp = Sipp("answer_wait_bye.xml", tmp_path / "sipp", calls=None)
    sipp.stop()  # its port is free again: nothing answers there
    done = movecar(
        "sip", "test-call", sipp.uri(OWNER), "--plate", "苏D12345", "--ring-timeout", "1", "--json"
    )
    assert done.returncode == 3, done.stderr
    report = json.loads(done.stdout)
    assert report["outcome"] == "failed" and report["sip_status"] is None
    assert_masked(done)


def test_a_user_agent_that_cannot_start_is_exit_3() -> None:
    # 192.0.2.1 (TEST-NET-1) is on no interface here: baresip cannot bind it.
    done = movecar(
        "sip", "test-call", f"sip:{OWNER}@127.0.0.1:5", "--plate", "苏D12345", "--bind", "192.0.2.1"
    )
    assert done.returncode == 3
    assert done.stderr.startswith("movecar sip test-call: ") and done.stderr.count("\n") == 1
    assert "cannot be placed" in done.stderr
    assert_masked(done)


def test_missing_programs_are_exit_3(tmp_path: Path) -> None:
    done = movecar(
        "sip",
        "test-call",
        f"sip:{OWNER}@127.0.0.1:5",
        "--plate",
        "苏D12345",
        env={"PATH": str(tmp_path)},
    )
    assert done.returncode == 3
    assert "needs baresip, espeak-ng, sox" in done.stderr
    assert_masked(done)


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["sip:owner@127.0.0.1"], "must be a phone number"),
        (["http://127.0.0.1"], "expected sip:NUMBER@HOST"),
        ([f"sip:{OWNER}@127.0.0.1:70000"], "port 70000"),
        ([f"sip:{OWNER}@127.0.0.1", "--ring-timeout", "0"], "from 0.5 to 600"),
    ],
)
def test_bad_input_is_exit_2(args: list[str], why: str) -> None:
    done = movecar("sip", "test-call", *args, "--plate", "苏D12345")
    assert done.returncode == 2 and why in done.stderr, done.stderr
    assert_masked(done)


def test_a_bad_plate_is_exit_2() -> None:
    done = movecar("sip", "test-call", f"sip:{OWNER}@127.0.0.1", "--plate", "not a plate")
    assert done.returncode == 2 and "plate" in done.stderr
