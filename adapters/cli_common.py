"""What every ``movecar`` sub-command shares: exit codes, one-line errors, output.

The exit status is a contract with the operator's scripts:

====  ===========================================================================
0     success
1     the audit found tampering or inconsistencies (``audit verify`` only)
2     bad input or usage: an argument, a CSV row, a month, a volume out of bounds
3     environment: the database cannot be opened or is not migrated, a file cannot be
      read, key material is missing or malformed (or cannot open what it must verify),
      a port is down (``worker --once``)
4     internal error: a bug in movecar (the one line names the exception type)
====  ===========================================================================

Every failure is one line on stderr, ``movecar <command>: <what and where>``, at most
1,000 characters, with passwords in URLs and phone numbers masked; never a traceback
(``MOVECAR_DEBUG=1`` shows one, for a developer).
"""

from __future__ import annotations

import argparse
import enum
import re
import sys
from typing import TYPE_CHECKING, Any, TextIO

from movecar_adapters.config import mask_url
from movecar_core.errors import redact

if TYPE_CHECKING:
    from movecar_core.app import MoveCar
    from movecar_core.desk import Desk
    from movecar_core.roles import Action, Actor


class Exit(enum.IntEnum):
    OK = 0
    FINDINGS = 1
    BAD_INPUT = 2
    ENVIRONMENT = 3
    INTERNAL = 4


class CliError(Exception):
    """A failure a sub-command reports as one line, with its exit code."""

    def __init__(self, message: str, code: Exit = Exit.BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


MAX_LINE = 1000
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")


def scrub(text: str) -> str:
    """One safe line: URLs' passwords and phone numbers masked, no newlines, bounded."""
    line = " ".join(text.split())
    line = redact(_URL.sub(lambda m: mask_url(m.group()), line))
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…"


def say(stream: TextIO | None, text: str) -> None:
    """Print a line of normal output (already free of secrets by construction)."""
    print(text, file=stream or sys.stdout)


def database_of(args: Any, what: str) -> str:
    """The database a command works on: ``--db``, else the settings (environment,
    ``movecar.toml``, the embedded default). ``memory://`` is refused: ``what`` needs a
    database that outlives this process."""
    from movecar_adapters.config import MEMORY_URL, load_settings

    url: str = getattr(args, "db", None) or load_settings(args.config).url
    if url == MEMORY_URL:
        raise CliError(f"{what} needs a database; {MEMORY_URL} lives in one process only")
    return url


def fail_line(command: str, message: str) -> str:
    return scrub(f"movecar {command}: {message}" if command else f"movecar: {message}")


def count_1_to_64(text: str) -> int:
    """An argparse type: threads or processes, 1 to 64."""
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"{text[:20]!r}: a whole number from 1 to 64")
    return int(text)


def actor_options(parser: argparse.ArgumentParser, *, what: str = "who acts") -> None:
    """``--actor ID --role ROLE``, both required: every person-facing command names who
    acts (docs/roles.md); the role is checked against the one permission table."""
    from movecar_core.roles import Role

    parser.add_argument("--actor", required=True, metavar="ID", help=f"{what} (access log)")
    parser.add_argument(
        "--role", required=True, choices=[r.value for r in Role], help="the actor's role"
    )


def actor_of(args: Any) -> Actor:
    """The ``--actor``/``--role`` of ``args``, checked (:class:`InvalidActor`, exit 2) before
    any database is opened."""
    from movecar_core.roles import Actor

    return Actor(args.actor, args.role)


def authorize(engine: MoveCar, actor: Actor, *actions: Action) -> Desk:
    """A desk for ``actor`` on ``engine``, checked for each of ``actions``: a refusal is
    written to the engine's access log as ``denied:<action>`` (七(三): attempts are records
    too) and raises :class:`~movecar_core.roles.PermissionDenied` (exit 2), before the
    command reads or writes anything else."""
    from movecar_core.desk import Desk

    desk = Desk(engine, actor)
    for action in actions:
        desk.check(action)
    return desk
