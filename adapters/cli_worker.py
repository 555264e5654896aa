"""``movecar worker``: the long-running process that delivers effects from the outbox.

With ``Dispatch.OUTBOX`` (``engine.dispatch = "outbox"`` in ``movecar.toml``) the engine
records what to do and this process does it: dials, notices to 110, requester messages,
timers, follow-up reminders. With the default inline dispatch it still fires the timers and
retries what failed inline. One line per effect on stderr; SIGTERM or SIGINT ends it
gracefully (the effect in hand is finished, nothing is cut off half-way).

The ports are the deployment's: ``--factory package.module:build`` names a function of
the host's that returns its :class:`~movecar_core.app.MoveCar` (its telephony, registry,
110 desk...). Without it the engine is ``connect()``'s, whose ports default to the
in-memory adapters: effects are then delivered to nothing outside this process, which
the worker says when it starts.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from types import FrameType
from typing import Any

from movecar_adapters.cli_common import CliError, Exit, count_1_to_64, database_of, scrub
from movecar_adapters.config import mask_url
from movecar_adapters.connect import connect
from movecar_adapters.worker import run
from movecar_core.app import MoveCar
from movecar_core.incidents import Incidents
from movecar_core.memory import InMemoryCommandCentre, InMemoryTelephony


def _factory(spec: str) -> MoveCar:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise CliError(f"--factory {spec[:60]!r}: expected package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(
            f"--factory {spec[:60]!r}: cannot import it ({exc})", Exit.ENVIRONMENT
        ) from None
    build = getattr(module, attribute, None)
    if not callable(build):
        raise CliError(f"--factory {spec[:60]!r}: {attribute} is not a function")
    engine = build()
    if not isinstance(engine, MoveCar):
        raise CliError(f"--factory {spec[:60]!r}: returned {type(engine).__name__}, not MoveCar")
    return engine


def _incidents(engine: MoveCar) -> Incidents | None:
    """二(五), annex 2 十六: the incident log's notices, when the engine keeps a database
    (the log must outlive the process) and the SQL adapter is installed."""
    try:
        from movecar_adapters.cli_incidents import incidents_of
        from movecar_adapters.sql.store import SqlStore
    except ModuleNotFoundError:  # pragma: no cover - without the [sql] extra
        return None
    return incidents_of(engine) if isinstance(engine.store, SqlStore) else None


def _line(text: str) -> None:
    print(scrub(text), file=sys.stderr, flush=True)


def cmd_worker(args: argparse.Namespace) -> int:
    if args.factory:
        engine = _factory(args.factory)
    else:
        url = database_of(args, "the worker")
        engine = connect(url, config=args.config, upgrade=False)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        _line(f"worker {args.name}: {signal.Signals(signum).name}, stopping after this effect")
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    for which in (signal.SIGTERM, signal.SIGINT):
        previous[which] = signal.signal(which, on_signal)
    try:
        stand_ins = [
            name
            for name, port, memory in (
                ("telephony", engine.telephony, InMemoryTelephony),
                ("110 desk", engine.command_centre, InMemoryCommandCentre),
            )
            if isinstance(port, memory)
        ]
        where = getattr(getattr(engine.store, "engine", None), "url", None)
        shown = mask_url(str(where)) if where is not None else type(engine.store).__name__
        _line(
            f"worker {args.name}: started on {shown}, {args.concurrency} thread(s), "
            f"dispatch {engine.dispatch.value}"
            + (f"; in-memory {' and '.join(stand_ins)} (use --factory)" if stand_ins else "")
        )
        incidents = _incidents(engine)
        with engine:
            stats = run(
                engine,
                name=args.name,
                concurrency=args.concurrency,
                poll_seconds=args.poll,
                once=args.once,
                stop=stop,
                report=_line,
                incidents=incidents,
            )
        _line(f"worker {args.name}: stopped; {stats.ran} effects ran, {stats.failed} failed")
    finally:
        for which, handler in previous.items():
            signal.signal(which, handler)
    # --once is for scripts and cron: a port that is down is an environment problem.
    return Exit.ENVIRONMENT if args.once and stats.failed else Exit.OK


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:20]!r}: not a number of seconds") from None
    if not 0.01 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text[:20]!r}: from 0.01 to 3600 seconds")
    return value


def register(subparsers: Any) -> None:
    worker = subparsers.add_parser(
        "worker", help="deliver effects from the outbox (calls, notices, timers) until stopped"
    )
    worker.add_argument(
        "--db", default=argparse.SUPPRESS, metavar="URL", help="database URL (as for the others)"
    )
    worker.add_argument("--once", action="store_true", help="deliver what is due, then exit")
    worker.add_argument(
        "--concurrency", type=count_1_to_64, default=1, metavar="N", help="threads (1-64)"
    )
    worker.add_argument(
        "--poll", type=_seconds, default=1.0, metavar="SECONDS", help="wait when idle (1.0)"
    )
    worker.add_argument("--name", default="worker", help="worker name in claims and logs")
    worker.add_argument(
        "--factory", metavar="MODULE:FUNCTION", help="the host's function that builds its engine"
    )
    worker.set_defaults(func=cmd_worker)
