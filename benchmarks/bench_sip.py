"""Real SIP calls through the SIP adapter (baresip user agents) against sipp, on loopback.

Places ``--calls`` calls through :class:`movecar_adapters.sip.SipTelephony` with
``--agents`` baresip user agents in parallel, against one sipp UAS that answers at once
(180, 200) and waits for the caller's BYE; each call is hung up ``--hold-ms`` after it
was answered. Then, in the same run and against the same UAS, sipp's own UAC
(``tests/sipp/bench_uac.xml``) places the same number of calls with the same concurrency
and hold: the baseline.

Reports calls per second, call-setup latency (INVITE sent until 200 OK; for the adapter:
the ``dial`` command sent to baresip until its CALL_ESTABLISHED event reached Python)
p50/p95/p99, and lost calls (no answer, or no final event), and the ratios. Goal (issue
12): none lost, setup p95 under 100 ms on loopback. Every call of the adapter also plays
the greeting and is recorded (two legs mixed by sox): that work is in its figures.

    python benchmarks/bench_sip.py [--calls 100] [--agents 10] [--hold-ms 200]

Measured (2 cores, loopback, Debian 12: baresip 1.0.0, sipp 3.6.1), 100 calls, 10 at once:
the adapter 36-37 calls/s, setup p50 6.6-6.9 ms, p95 9.9-10.2 ms, p99 13-21 ms, none lost;
sipp's UAC 47 calls/s, p50 4 ms, p95 4 ms, p99 4-8 ms (sipp counts whole milliseconds).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from movecar_adapters.sip import SipConfig, SipTelephony
from movecar_adapters.sip.baresip import free_port
from movecar_core.calls import CallLimits, CallProgress
from movecar_core.contract import WUJIN_114_2024
from movecar_core.ports import OutboundCallRequest

SCENARIOS = Path(__file__).resolve().parent.parent / "tests" / "sipp"
TOOLS = ("baresip", "sipp", "espeak-ng", "sox")
ANSWERED = frozenset({CallProgress.ENDED, CallProgress.HUNG_UP_IN_GREETING})


def render(name: str, folder: Path, **values: object) -> Path:
    text = (SCENARIOS / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", str(value))
    target = folder / name
    target.write_text(text, encoding="utf-8")
    return target


def percentiles(values: list[float]) -> dict[str, float | None]:
    """Nearest-rank p50/p95/p99 in milliseconds."""
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
        return round(ordered[rank - 1], 2)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99)}


def start_uas(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port("127.0.0.1", socket.SOCK_DGRAM, both=True)
    media = free_port("127.0.0.1", socket.SOCK_DGRAM)
    scenario = render("answer_wait_bye.xml", folder, RING_MS=0)
    uas = subprocess.Popen(
        [
            "sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port),
            "-mi", "127.0.0.1", "-mp", str(media), "-nostdin", "-timeout", "600",
            "-trace_err", "-error_file", str(folder / "uas_errors.log"),
        ],
        cwd=folder, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.3)
    if uas.poll() is not None:
        raise SystemExit("bench_sip: the sipp UAS did not start")
    return uas, f"127.0.0.1:{port}"


def request(seat: str) -> OutboundCallRequest:
    greeting = WUJIN_114_2024.greeting
    return OutboundCallRequest(
        call_id=uuid.uuid4().hex,
        case_id=uuid.uuid4().hex,
        agent_id=seat,
        caller_id=WUJIN_114_2024.caller_id,
        callee="13912345678",
        greeting=greeting.render("苏D12345"),
        attempt=1,
        plate="苏D12345",
        greeting_version=greeting.version,
    )


def bench_adapter(trunk: str, folder: Path, calls: int, agents: int, hold_s: float) -> Any:
    low = random.randrange(20000, 50000, 2)
    config = SipConfig(
        trunk,
        rtp_ports=(low, low + 4 * agents + 200),
        work_dir=folder / "work",
        greeting_cache=folder / "greetings",
        ring_timeout_s=10.0,
        max_agents=agents,
    )
    recordings = 0

    def on_recording(key: str, path: Path, ms: int) -> None:
        nonlocal recordings
        recordings += 1
        path.unlink()

    switch = SipTelephony(
        config, limits=CallLimits(per_seat=1, total=agents), on_recording=on_recording
    )
    with switch:
        # The greeting is synthesised once, before the clock starts (cached by plate).
        switch.greetings.prepare(request("warm").greeting, version=WUJIN_114_2024.greeting.version,
                                 plate="苏D12345")  # fmt: skip
        seats = [f"seat-{i}" for i in range(agents)]
        free = list(seats)
        live: dict[str, str] = {}  # key -> seat
        answered_at: dict[str, float] = {}
        finals: dict[str, CallProgress] = {}
        placed = 0
        started = time.monotonic()
        deadline = started + 60 + calls * 2.0
        while (placed < calls or live) and time.monotonic() < deadline:
            while free and placed < calls:
                seat = free.pop()
                call = request(seat)
                switch.place_call(call)
                live[call.key] = seat
                placed += 1
            for event in switch.drain_events():
                if event.progress is CallProgress.ANSWERED:
                    answered_at[event.key] = time.monotonic()
                elif event.progress.value not in ("ringing", "dialling"):
                    finals[event.key] = event.progress
                    free.append(live.pop(event.key))
            now = time.monotonic()
            for key, at in list(answered_at.items()):
                if now - at >= hold_s and key in live:
                    switch.hang_up(key)
                    del answered_at[key]
            time.sleep(0.002)
        wall = time.monotonic() - started
        setups = []
        for key in finals:
            timing = switch.call_timing(key)
            if timing is not None and timing.answered_s is not None:
                setups.append(timing.answered_s * 1000)
        switch.wait_recordings(30)
    answered = sum(1 for p in finals.values() if p in ANSWERED)
    outcomes: dict[str, int] = {}
    for progress in finals.values():
        outcomes[progress.value] = outcomes.get(progress.value, 0) + 1
    return {
        "calls": placed,
        "wall_s": round(wall, 3),
        "calls_per_s": round(answered / wall, 2) if wall else None,
        "setup_ms": percentiles(setups),
        "lost": placed - answered,
        "outcomes": outcomes,
        "recordings": recordings,
    }


def bench_sipp_uac(trunk: str, folder: Path, calls: int, agents: int, hold_s: float) -> Any:
    scenario = render("bench_uac.xml", folder, HOLD_MS=round(hold_s * 1000))
    port = free_port("127.0.0.1", socket.SOCK_DGRAM, both=True)
    rtt = folder / "uac_rtt.csv"
    started = time.monotonic()
    done = subprocess.run(
        [
            "sipp", trunk, "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port),
            "-m", str(calls), "-l", str(agents), "-r", "1000", "-nostdin",
            "-timeout", "300", "-trace_rtt", "-rtt_freq", "1",
            "-trace_err", "-error_file", str(folder / "uac_errors.log"),
            "-trace_stat", "-stf", str(folder / "uac_stat.csv"),
        ],
        cwd=folder, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, timeout=600, check=False,
    )  # fmt: skip
    wall = time.monotonic() - started
    files = sorted(folder.glob("bench_uac_*_rtt.csv"))
    setups: list[float] = []
    if files:
        files[0].replace(rtt)
        with rtt.open(encoding="utf-8") as table:
            for row in csv.DictReader(table, delimiter=";"):
                value = row.get("response_time_ms") or row.get("response_time")
                if value:
                    setups.append(float(value))
    successful = _stat(folder / "uac_stat.csv", "SuccessfulCall(C)")
    return {
        "calls": calls,
        "wall_s": round(wall, 3),
        "calls_per_s": round(successful / wall, 2) if wall and successful is not None else None,
        "setup_ms": percentiles(setups),
        "lost": None if successful is None else calls - successful,
        "exit_status": done.returncode,
    }


def _stat(path: Path, column: str) -> int | None:
    try:
        rows = list(csv.DictReader(path.open(encoding="utf-8"), delimiter=";"))
    except OSError:
        return None
    if not rows or column not in rows[-1]:
        return None
    return int(rows[-1][column])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--agents", type=int, default=10, help="baresip processes in parallel")
    parser.add_argument("--hold-ms", type=int, default=200, help="answered call length")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "benchmark": "SIP calls: the adapter (baresip) vs sipp's UAC, against one sipp UAS",
        "python": platform.python_version(),
        "calls": args.calls,
        "agents": args.agents,
        "hold_ms": args.hold_ms,
    }
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        result["skipped"] = f"needs {', '.join(missing)}"
        print(json.dumps(result, indent=2))
        return
    with tempfile.TemporaryDirectory(prefix="bench-sip-") as tmp:
        folder = Path(tmp)
        uas, trunk = start_uas(folder)
        try:
            hold = args.hold_ms / 1000
            ours = bench_adapter(trunk, folder, args.calls, args.agents, hold)
            base = bench_sipp_uac(trunk, folder, args.calls, args.agents, hold)
        finally:
            uas.terminate()
            try:
                uas.wait(5)
            except subprocess.TimeoutExpired:
                uas.kill()
                uas.wait(5)

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a and b else None

    result["movecar_sip"] = ours
    result["sipp_uac"] = base
    result["ratio"] = {
        "calls_per_s": ratio(ours["calls_per_s"], base["calls_per_s"]),
        "setup_p50": ratio(ours["setup_ms"]["p50"], base["setup_ms"]["p50"]),
        "setup_p95": ratio(ours["setup_ms"]["p95"], base["setup_ms"]["p95"]),
    }
    result["targets"] = {"lost": "0", "setup_p95_ms": "< 100"}
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if ours["lost"]:
        print(f"bench_sip: {ours['lost']} calls lost", file=sys.stderr)


if __name__ == "__main__":
    main()
