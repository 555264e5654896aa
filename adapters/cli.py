"""The ``movecar`` command line: a driving adapter over the core and the other adapters.

Every sub-command builds the engine through :func:`movecar_adapters.connect` (global
``--db URL`` and ``--config FILE`` override the environment and ``movecar.toml``) and
reports failures as one line with the exit codes of :mod:`movecar_adapters.cli_common`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from movecar_adapters.cli_common import CliError, Exit, fail_line, say
from movecar_adapters.config import MEMORY_URL, ConfigError, load_settings
from movecar_adapters.connect import connect
from movecar_core import CallOutcome, EscalationReason, MoveCar, __version__, parse_phone
from movecar_core.calendar import SHANGHAI
from movecar_core.case import (
    CallOutcomeRecorded,
    CallProgressed,
    CaseCancelled,
    CaseOpened,
    CaseUnresolved,
    DisputeRaised,
    EscalatedTo110,
    EscalationRequested,
    Event,
    MoveConfirmed,
    OwnerCallPlaced,
    OwnerLookedUp,
    TransferTo110Failed,
)
from movecar_core.clock import ManualClock
from movecar_core.errors import (
    CalendarYearNotCovered,
    MoveCarError,
    PortError,
)
from movecar_core.machine import mermaid
from movecar_core.memory import InMemoryVehicleRegistry
from movecar_core.plates import parse_plate
from movecar_core.simulation import SimulationFailed

#: Modules that add sub-commands with ``register(subparsers)``; one is skipped only when
#: an optional extra it needs (``movecar[sql]``) is not installed.
_PLUGINS = (
    "movecar_adapters.cli_money",
    "movecar_adapters.cli_storage",
    "movecar_adapters.cli_ledger",
    "movecar_adapters.cli_worker",
    "movecar_adapters.cli_simulate",
    "movecar_adapters.cli_sweep",
    "movecar_adapters.cli_recordings",
    "movecar_adapters.cli_sip",
    "movecar_adapters.cli_requesters",
    "movecar_adapters.cli_calendar",
    "movecar_adapters.cli_registry",
    "movecar_adapters.cli_report",
    "movecar_adapters.cli_incidents",
    "movecar_adapters.cli_serve",
)
_OPTIONAL = frozenset({"sqlalchemy", "alembic", "cryptography", "psycopg", "pymysql"})


def describe(event: Event) -> str:
    """One line of a case's history, with personal data masked (as an agent's log)."""
    match event:
        case CaseOpened():
            return (
                f"呼入 case opened: plate {parse_plate(event.plate).masked()} at {event.location}, "
                f"requester "
                f"{parse_phone(event.requester_phone).masked()} (agent {event.agent_id})"
            )
        case OwnerLookedUp(found=True):
            phone = parse_phone(event.owner_phone or "").masked()
            return (
                f"owner looked up by {event.agent_id} in {event.source} "
                f"for {event.purpose}: found, {phone}"
            )
        case OwnerLookedUp():
            return f"owner looked up by {event.agent_id}: not found"
        case OwnerCallPlaced():
            return (
                f"外呼 attempt {event.attempt} by {event.agent_id} from {event.caller_id}: "
                f"“{event.greeting}”"
            )
        case CallOutcomeRecorded():
            return f"call outcome: {event.outcome.value}"
        case CallProgressed():
            status = f" (SIP {event.sip_status})" if event.sip_status is not None else ""
            return f"the switch reports the call {event.progress.value}{status}"
        case MoveConfirmed():
            return "car moved" + (f" ({event.note})" if event.note else "")
        case DisputeRaised():
            return f"owner disputes: {event.note}"
        case EscalationRequested():
            note = f", {event.note}" if event.note else ""
            return f"转接 110 requested on {event.transfer_number}: {event.reason.value}{note}"
        case TransferTo110Failed():
            return f"transfer to 110 failed: {event.why}"
        case EscalatedTo110():
            note = f", {event.note}" if event.note else ""
            return f"转接 110 on {event.transfer_number}: {event.reason.value}{note}"
        case CaseCancelled():
            return f"cancelled by the requester: {event.note}"
        case CaseUnresolved():
            return f"unresolved: {event.reason.value}"
    raise AssertionError(f"unknown event {event!r}")  # pragma: no cover


DEMO_OWNERS = {
    "苏D12345": "13912345678",
    "苏DF36988": "13605190001",
    "苏D8Q7K2": "0519-86601234",
    "苏AB7780": "15850001122",
}
DEMO_START = dt.datetime(2025, 3, 14, 8, 5, tzinfo=SHANGHAI)


def demo_engine(url: str = MEMORY_URL, **kwargs: Any) -> MoveCar:
    """The demo's engine, through the composition root: the demo's owners and a manual
    clock at 08:05 on 14 March 2025 (the demo moves it as the calls go)."""
    return connect(
        url,
        clock=ManualClock(DEMO_START),
        registry=InMemoryVehicleRegistry(DEMO_OWNERS),
        **kwargs,
    )


def run_demo(out: Callable[[str], object] = print, mc: MoveCar | None = None) -> MoveCar:
    """Five realistic cases, end to end, on ``mc`` (default: :func:`demo_engine`).

    The engine's clock must be a :class:`ManualClock` (the demo advances it).
    """
    mc = mc or demo_engine(environ={})
    clock = mc.clock
    if not isinstance(clock, ManualClock):
        raise ConfigError("the demo needs an engine on a ManualClock")

    def step(minutes: float = 1) -> None:
        clock.advance(minutes=minutes)

    def open_(plate: str, where: str, requester: str) -> str:
        case_id = mc.open_case(
            plate=plate, location=where, requester_phone=requester, agent_id="seat-03"
        )
        step(0.5)
        mc.locate_owner(case_id, agent_id="seat-03")
        step(0.5)
        return case_id

    # 1. Owner answers, agrees, moves the car.
    a = open_("苏D·12345", "武进区湖塘镇花园街 8 号小区门口", "13800001111")
    call = mc.call_owner(a, agent_id="seat-03")
    step()
    mc.record_call_outcome(a, call.call_id, CallOutcome.ANSWERED_AGREED)
    step(9)
    mc.confirm_moved(a, note="求助人回电确认")

    # 2. New-energy car: no answer, busy, then the owner answers on the third attempt.
    b = open_("苏DF36988", "常武中路 18 号地下车库 B2", "13700002222")
    for outcome in (CallOutcome.NO_ANSWER, CallOutcome.BUSY, CallOutcome.ANSWERED_AGREED):
        call = mc.call_owner(b, agent_id="seat-05")
        step(2)
        mc.record_call_outcome(b, call.call_id, outcome)
        step(3)
    mc.confirm_moved(b)

    # 3. The car blocks an emergency lane: straight to 110.
    c = open_("苏D8Q7K2", "武进人民医院急诊通道", "13500003333")
    mc.escalate(c, EscalationReason.EMERGENCY_LANE_BLOCKED, note="占用急诊应急通道")

    # 4. The owner doubts 114's authority and refuses; the dispute goes to 110.
    d = open_("苏AB7780", "延政中路 5 号", "13300004444")
    call = mc.call_owner(d, agent_id="seat-03")
    step()
    mc.record_call_outcome(d, call.call_id, CallOutcome.ANSWERED_DISPUTES)
    step()
    mc.escalate(d, EscalationReason.OWNER_DISPUTES_AUTHORITY)

    # 5. The plate is not in the registry: unresolved.
    e = open_("苏E99999", "花园街菜场门口", "13900005555")

    for case_id in (a, b, c, d, e):  # the store may hold earlier runs' cases too
        view = mc.case(case_id)
        out(f"\ncase {case_id[:8]}  {parse_plate(view.plate).masked()}  -> {view.state.value}")
        for event in mc.history(case_id):
            out(f"  {event.at:%H:%M:%S}  {describe(event)}")
    out(f"\n5 cases; caller ID {mc.contract.caller_id}")
    return mc


def _demo(args: argparse.Namespace) -> int:
    url = getattr(args, "db", None)
    if url is None and not args.sqlite:
        run_demo()
        return Exit.OK
    settings = load_settings(args.config)
    target = url or settings.url
    if target == MEMORY_URL:
        run_demo(mc=demo_engine(config=args.config))
        return Exit.OK
    if settings.keys_spec is not None or url is not None:
        # Lasting keys, or a database named on purpose: keys are required.
        return _demo_on(target, args.config)
    # The embedded default without keys: a one-off key and a database of its own, removed
    # afterwards, so the demo never leaves rows nobody can decrypt (nor a temp folder).
    from movecar_adapters.crypto import KeyRing

    with tempfile.TemporaryDirectory(prefix="movecar-demo-") as folder:
        temporary = f"sqlite:///{folder}/movecar.db"
        say(None, f"note: MOVECAR_KEYS is not set; a one-off key and {temporary} (removed after)")
        return _demo_on(temporary, args.config, keys=KeyRing([("demo", KeyRing.generate())]))


def _demo_on(url: str, config: str | None, **kwargs: Any) -> int:
    from movecar_adapters.config import mask_url
    from movecar_adapters.sql import SqlStore, verify

    with demo_engine(url, config=config, **kwargs) as mc:
        store = mc.store
        assert isinstance(store, SqlStore)
        run_demo(mc=mc)
        audit = verify(store)
    verdict = "all verify" if audit.ok else f"{len(audit.findings)} findings"
    say(
        None,
        f"stored in {mask_url(url)}: {audit.cases} cases, {audit.events} events; audit: {verdict}",
    )
    return Exit.OK if audit.ok else Exit.FINDINGS


def _diagram(args: argparse.Namespace) -> int:
    say(None, mermaid())
    return Exit.OK


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2 (never the usage dump)."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see {self.prog} --help)", Exit.BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="movecar", description="The 114 move-car (114 挪车) service engine.")
    parser.add_argument("--version", action="version", version=f"movecar {__version__}")
    parser.add_argument(
        "--db",
        metavar="URL",
        help="database URL (default: $MOVECAR_DB_URL, movecar.toml, or sqlite:///movecar.db)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="configuration file (default: $MOVECAR_CONFIG, or ./movecar.toml if present)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="run five realistic cases and print their histories")
    demo.add_argument(
        "--sqlite",
        action="store_true",
        help="keep the cases in the embedded database ($MOVECAR_DB_URL or "
        "sqlite:///movecar.db) instead of memory, then audit it",
    )
    demo.add_argument("--db", default=argparse.SUPPRESS, metavar="URL", help="keep them here")
    demo.set_defaults(func=_demo)
    sub.add_parser("diagram", help="print the case state machine as a mermaid diagram")
    sub.choices["diagram"].set_defaults(func=_diagram)
    for name in _PLUGINS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] in _OPTIONAL:
                continue  # that part of the CLI needs an extra that is not installed
            raise
        module.register(sub)
    return parser


def _command(args: argparse.Namespace | None) -> str:
    if args is None:
        return ""
    parts = [getattr(args, "command", None)]
    parts += [v for k, v in vars(args).items() if k.endswith("_command") and k != "command"]
    return " ".join(p for p in parts if isinstance(p, str))


#: Errors about what the database or the key material holds, not about what was typed:
#: keys missing or malformed, a stored value that does not decrypt or decode.
_ENVIRONMENT = frozenset(
    {
        "KeyConfigError",
        "DecryptionFailed",
        "MalformedEvent",
        "MalformedRecord",
        "UnknownEventType",
        "CorruptHistory",
        "SigningKeyError",
        "CiphertextMisplaced",
        "UnboundCiphertext",
        "RecordingCorrupt",
        "RecordingMisplaced",
        "CorruptIncidentLog",
    }
)


def exit_code(exc: BaseException) -> Exit:
    """The exit code an error maps to (the table in :mod:`movecar_adapters.cli_common`)."""
    if isinstance(exc, CliError):
        return exc.code
    name = type(exc).__module__.split(".")[0]
    if isinstance(exc, ConfigError | PortError | OSError | CalendarYearNotCovered):
        return Exit.ENVIRONMENT
    if isinstance(exc, SimulationFailed):  # an invariant broke: a finding about the engine
        return Exit.FINDINGS
    if name == "sqlalchemy" or type(exc).__name__ in _ENVIRONMENT:
        return Exit.ENVIRONMENT
    if isinstance(exc, MoveCarError | ValueError):
        return Exit.BAD_INPUT
    return Exit.INTERNAL


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``movecar``; returns the exit code (never raises, never prints a traceback)."""
    args: argparse.Namespace | None = None
    try:
        args = build_parser().parse_args(argv)
        code: int = args.func(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # `movecar ... | head`: the reader has what it wanted; end quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return Exit.OK
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # every error ends as one line and an exit code
        code = exit_code(exc)
        message = str(exc) or type(exc).__name__
        if code is Exit.INTERNAL:
            message = f"internal error ({type(exc).__name__}): {message}"
        if os.environ.get("MOVECAR_DEBUG"):
            traceback.print_exc()
        print(fail_line(_command(args), message), file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
