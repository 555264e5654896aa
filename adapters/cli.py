"""The ``movecar`` command line: a driving adapter over the core and the other adapters."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import sys
from collections.abc import Callable, Sequence

from movecar_core import CallOutcome, EscalationReason, MoveCar, __version__, parse_phone
from movecar_core.calendar import SHANGHAI
from movecar_core.case import (
    CallOutcomeRecorded,
    CaseCancelled,
    CaseOpened,
    CaseUnresolved,
    DisputeRaised,
    EscalatedTo110,
    Event,
    MoveConfirmed,
    OwnerCallPlaced,
    OwnerLookedUp,
)
from movecar_core.clock import ManualClock
from movecar_core.machine import mermaid
from movecar_core.memory import InMemoryNotifier, InMemoryTelephony, InMemoryVehicleRegistry
from movecar_core.plates import parse_plate
from movecar_core.ports import CaseStore

#: Modules that add sub-commands with ``register(subparsers)``; one is skipped only when
#: an optional extra it needs (``movecar[sql]``) is not installed.
_PLUGINS = ("movecar_adapters.cli_money", "movecar_adapters.cli_storage")
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
            return f"owner looked up by {event.agent_id} in {event.source}: found, {phone}"
        case OwnerLookedUp():
            return f"owner looked up by {event.agent_id}: not found"
        case OwnerCallPlaced():
            return (
                f"外呼 attempt {event.attempt} by {event.agent_id} from {event.caller_id}: "
                f"“{event.greeting}”"
            )
        case CallOutcomeRecorded():
            return f"call outcome: {event.outcome.value}"
        case MoveConfirmed():
            return "car moved" + (f" ({event.note})" if event.note else "")
        case DisputeRaised():
            return f"owner disputes: {event.note}"
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


def run_demo(out: Callable[[str], object] = print, store: CaseStore | None = None) -> MoveCar:
    """Five realistic cases, end to end, through the in-memory adapters.

    With ``store``, the cases are kept there instead (e.g. the SQL store); the registry,
    the phone switch and the notifier stay in memory, as there is no real switch to ring.
    """
    clock = ManualClock(dt.datetime(2025, 3, 14, 8, 5, tzinfo=SHANGHAI))
    if store is None:
        mc = MoveCar.in_memory(owners=DEMO_OWNERS, clock=clock)
    else:
        mc = MoveCar(
            store=store,
            registry=InMemoryVehicleRegistry(DEMO_OWNERS),
            telephony=InMemoryTelephony(),
            clock=clock,
            notifier=InMemoryNotifier(),
        )

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
        return 0
    # The embedded default: SQLite in a file, no server (or the database named).
    import tempfile

    from movecar_adapters.crypto import KeyConfigError, KeyRing
    from movecar_adapters.sql import SqlStore, database_url, make_engine, upgrade, verify

    try:
        keys = KeyRing.from_env()
    except KeyConfigError:
        if url is not None:
            print(f"--db {url}: set MOVECAR_KEYS first (`movecar keys new`)", file=sys.stderr)
            return 2
        # Without lasting keys, a one-off key and a database of its own, so the demo never
        # leaves rows behind in a shared database that nobody can decrypt later.
        keys = KeyRing([("demo", KeyRing.generate())])
        folder = tempfile.mkdtemp(prefix="movecar-demo-")
        url = f"sqlite:///{folder}/movecar.db"
        print(f"note: MOVECAR_KEYS is not set; using a one-off key and {url}")
    url = database_url(url)
    engine = make_engine(url)
    try:
        upgrade(engine)
        store = SqlStore(engine, keys)
        run_demo(store=store)
        audit = verify(store)
    finally:
        engine.dispose()
    verdict = "all verify" if audit.ok else f"{len(audit.findings)} findings"
    print(f"stored in {url}: {audit.cases} cases, {audit.events} events; audit: {verdict}")
    return 0 if audit.ok else 1


def _diagram(args: argparse.Namespace) -> int:
    print(mermaid())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="movecar", description="The 114 move-car (114 挪车) service engine."
    )
    parser.add_argument("--version", action="version", version=f"movecar {__version__}")
    parser.add_argument(
        "--db",
        metavar="URL",
        help="database URL for the storage commands "
        "(default: $MOVECAR_DB_URL or sqlite:///movecar.db)",
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
