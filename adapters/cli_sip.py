"""``movecar sip test-call URI --plate PLATE``: one real call through the SIP adapter.

Operators check a trunk with it: the call leaves from the caller ID of 合同二(六)
("0519110"), plays the greeting with the plate, and the outcome is printed (``--json``
for scripts). Exit 0 when the call completed with any outcome (answered, busy, declined,
not answered, a SIP error from the far end); 3 when the user agent cannot start or the far
end cannot be reached at all (no response, no route). Phone numbers are masked in every
line printed.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Any

from movecar_adapters.cli_common import CliError, Exit, say
from movecar_adapters.sip import REQUIRED_TOOLS, SipConfig, SipTelephony
from movecar_adapters.sip.greeting import missing_tools
from movecar_core.calls import FINAL_RANK, CallEvent, CallProgress, rank
from movecar_core.contract import WUJIN_114_2024
from movecar_core.errors import InvalidPhone, InvalidPlate, TelephonyError
from movecar_core.phones import Phone, parse_phone
from movecar_core.plates import parse_plate
from movecar_core.ports import OutboundCallRequest

_URI = re.compile(
    r"sips?:(?P<user>[^@;:\s]{1,40})@(?P<host>[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
#: Seconds to wait, beyond the ring timeout and the greeting, for the call's end.
_MARGIN_S = 15.0


def _target(uri: str) -> tuple[Phone, str, str, int]:
    """The number, the trunk (host:port), the host and the port of a SIP URI."""
    match = _URI.fullmatch(uri)
    if match is None:
        raise CliError(f"{uri[:60]!r}: expected sip:NUMBER@HOST[:PORT]")
    try:
        phone = parse_phone(match["user"])
    except InvalidPhone as exc:
        raise CliError(f"the URI's user must be a phone number: {exc}") from None
    port = int(match["port"] or 5060)
    if not 0 < port < 65536:
        raise CliError(f"port {port}: from 1 to 65535")
    host = match["host"]
    trunk = host if match["port"] is None else f"{host}:{port}"
    return phone, trunk, host.strip("[]"), port


def _local_address(host: str, port: int) -> str:
    """The address this machine sends from to reach ``host`` (no packet is sent)."""
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(infos[0][4])
            address: str = probe.getsockname()[0]
            return address
    except (OSError, IndexError) as exc:
        raise CliError(f"cannot reach {host}: {exc}", Exit.ENVIRONMENT) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:20]!r}: not a number of seconds") from None
    if not 0.5 <= value <= 600:
        raise argparse.ArgumentTypeError(f"{text[:20]!r}: from 0.5 to 600 seconds")
    return value


def cmd_test_call(args: argparse.Namespace) -> int:
    phone, trunk, host, port = _target(args.uri)
    try:
        plate = parse_plate(args.plate)
    except InvalidPlate as exc:
        raise CliError(str(exc)) from None
    missing = missing_tools(*REQUIRED_TOOLS)
    if missing:
        raise CliError(
            f"needs {', '.join(missing)} (Debian: apt-get install baresip-core espeak-ng sox)",
            Exit.ENVIRONMENT,
        )
    contract = WUJIN_114_2024
    bind = args.bind or _local_address(host, port)
    shown = f"sip:{phone.masked()}@{trunk}"
    with tempfile.TemporaryDirectory(prefix="movecar-sip-") as work:
        config = SipConfig(
            trunk,
            bind_address=bind,
            caller_id=contract.caller_id,
            ring_timeout_s=args.ring_timeout,
            listen_after_greeting_s=args.listen,
            work_dir=Path(work),
            recordings_dir=args.record,
        )
        recordings: list[tuple[Path, int]] = []
        request = OutboundCallRequest(
            call_id=uuid.uuid4().hex,
            case_id=f"test-call-{uuid.uuid4().hex[:12]}",
            agent_id="test-call",
            caller_id=contract.caller_id,
            callee=phone.canonical,
            greeting=contract.greeting.render(plate.canonical),
            attempt=1,
            plate=plate.canonical,
            greeting_version=contract.greeting.version,
        )
        with SipTelephony(
            config, on_recording=lambda _, path, ms: recordings.append((path, ms))
        ) as switch:
            try:
                switch.place_call(request)
            except TelephonyError as exc:
                raise CliError(f"{shown}: {exc}", Exit.ENVIRONMENT) from None
            greeting = switch.greetings.prepare(
                request.greeting, version=request.greeting_version, plate=request.plate
            )
            limit = args.ring_timeout + greeting.total_s + _MARGIN_S
            final = switch.wait_final(request.key, limit)
            if final is None or rank(final.progress) < FINAL_RANK:  # still up: end it
                switch.hang_up(request.key)
                final = switch.wait_final(request.key, 5.0)
            switch.wait_recordings(10.0)
            events = list(switch.drain_events())
            timing = switch.call_timing(request.key)
        assert final is not None
        report: dict[str, Any] = {
            "uri": shown,
            "caller_id": contract.caller_id,
            "plate": plate.masked(),
            "outcome": final.progress.value,
            "sip_status": final.sip_status,
            "detail": final.detail,
            "events": [e.progress.value for e in events],
            "ringing_ms": _ms(timing.ringing_s if timing else None),
            "setup_ms": _ms(timing.answered_s if timing else None),
            "duration_ms": _ms(
                timing.ended_s - timing.answered_s
                if timing and timing.ended_s is not None and timing.answered_s is not None
                else None
            ),
            "recording": str(recordings[0][0]) if recordings and args.record else None,
            "recording_ms": recordings[0][1] if recordings else None,
        }
    if args.json:
        say(None, json.dumps(report, ensure_ascii=False, sort_keys=True))
    else:
        say(None, _summary(report, final))
    return Exit.ENVIRONMENT if _unreachable(final) else Exit.OK


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def _unreachable(final: CallEvent) -> bool:
    """No answer of any kind from the far end (no response, no route), or the user agent
    died: the trunk could not be checked."""
    if final.progress is CallProgress.UNKNOWN:
        return True
    return final.progress is CallProgress.FAILED and final.sip_status is None


def _summary(report: dict[str, Any], final: CallEvent) -> str:
    status = f" {report['sip_status']}" if report["sip_status"] else ""
    parts = [
        f"test-call {report['uri']} from {report['caller_id']} (plate {report['plate']}): "
        f"{report['outcome']}{status}" + (f" ({final.detail})" if final.detail else "")
    ]
    if report["setup_ms"] is not None:
        parts.append(f"answered after {report['setup_ms']} ms")
    if report["duration_ms"] is not None:
        parts.append(f"lasted {report['duration_ms']} ms")
    if report["recording"]:
        parts.append(f"recording {report['recording']} ({report['recording_ms']} ms)")
    return "; ".join(parts)


def register(subparsers: Any) -> None:
    """Add ``sip`` to the ``movecar`` parser."""
    sip = subparsers.add_parser("sip", help="real telephony over SIP (baresip)")
    sub = sip.add_subparsers(dest="sip_command", required=True, metavar="COMMAND")
    call = sub.add_parser(
        "test-call",
        help="place one call from 0519110 with the greeting, print the outcome",
    )
    call.add_argument("uri", metavar="URI", help="sip:NUMBER@HOST[:PORT] (the trunk)")
    call.add_argument("--plate", required=True, help="the plate the greeting names")
    call.add_argument(
        "--ring-timeout", type=_seconds, default=30.0, metavar="S", help="ring this long (30)"
    )
    call.add_argument(
        "--listen",
        type=_seconds,
        default=5.0,
        metavar="S",
        help="stay on the line after the greeting for the answer (5)",
    )
    call.add_argument("--record", type=Path, metavar="DIR", help="keep the recording here")
    call.add_argument("--bind", metavar="ADDRESS", help="local address (default: the route's)")
    call.add_argument("--json", action="store_true", help="print JSON")
    call.set_defaults(func=cmd_test_call)
