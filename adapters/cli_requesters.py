"""Requester sub-commands of the ``movecar`` console script: the block list.

Every command names who acts, ``--actor ID --role ROLE``, checked against the permission
table (docs/roles.md: a ``supervisor`` blocks and unblocks; a ``supervisor`` or the
``command_centre`` reads the list); a refusal is logged as ``denied:<action>``.

* ``movecar requester block PHONE --reason TEXT --actor ID --role ROLE [--json]``  put a
  number found abusing the service on the block list: every ``open_case`` from it is
  refused (:class:`~movecar_core.requesters.RequesterBlocked`)
* ``movecar requester unblock PHONE --reason TEXT --actor ID --role ROLE [--json]``
* ``movecar requester list [--history] --actor ID --role ROLE [--json]``  the block list
  (numbers masked), or with ``--history`` every change to it: who, when, why
* ``movecar requester show PHONE [--day YYYY-MM-DD] --actor ID --role ROLE [--json]``
  what the number used: its requests of the day and of the month, and whether it is blocked

Each change is written with an access-log entry (七(三), with its ledger leaf), in one
transaction. The number is printed masked, never in full (``138****5678``). The database
and keys are found as for every command; the limits themselves are ``[requesters]`` of
``movecar.toml`` (docs/requesters.md). Exit codes (:mod:`movecar_adapters.cli_common`): 2 for
a number that is not one, a number blocked already (or not blocked), a reason that is
empty or longer than 200 characters, a role the table refuses; 3 for the database or the
keys.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from movecar_adapters.cli_common import CliError, Exit, actor_of, actor_options, database_of, say
from movecar_adapters.connect import connect
from movecar_core.app import MoveCar
from movecar_core.calendar import SHANGHAI
from movecar_core.desk import Desk
from movecar_core.requesters import BlockChange, BlockedRequester, RequesterPolicy, RequesterStore


def _store(args: argparse.Namespace) -> tuple[MoveCar, Desk]:
    actor = actor_of(args)  # checked before the database is opened
    url = database_of(args, f"movecar requester {args.requester_command}")
    mc = connect(url, config=args.config, upgrade=False)
    if not isinstance(mc.store, RequesterStore):  # pragma: no cover - both stores are
        mc.close()
        raise CliError("the store keeps no block list", Exit.ENVIRONMENT)
    return mc, Desk(mc, actor)


def _when(at: dt.datetime) -> str:
    return at.astimezone(SHANGHAI).isoformat(timespec="seconds")


def _entry(entry: BlockedRequester) -> dict[str, str]:
    return {
        "requester": entry.masked,
        "reason": entry.reason,
        "actor": entry.actor,
        "blocked_at": _when(entry.at),
    }


def _change(change: BlockChange) -> dict[str, str]:
    return {
        "action": change.action,
        "requester": change.masked,
        "reason": change.reason,
        "actor": change.actor,
        "at": _when(change.at),
    }


def _print(args: argparse.Namespace, data: Any, line: str) -> None:
    say(None, json.dumps(data, ensure_ascii=False, indent=2) if args.json else line)


def cmd_block(args: argparse.Namespace) -> int:
    mc, store = _store(args)
    with mc:
        entry = store.block_requester(args.phone, reason=args.reason)
    _print(args, _entry(entry), f"blocked {entry.masked}: {entry.reason} (by {entry.actor})")
    return Exit.OK


def cmd_unblock(args: argparse.Namespace) -> int:
    mc, store = _store(args)
    with mc:
        entry = store.unblock_requester(args.phone, reason=args.reason)
    _print(
        args,
        {**_entry(entry), "unblocked_by": args.actor.strip(), "unblock_reason": args.reason},
        f"unblocked {entry.masked} (blocked {_when(entry.at)} for: {entry.reason})",
    )
    return Exit.OK


def cmd_list(args: argparse.Namespace) -> int:
    mc, store = _store(args)
    with mc:
        if args.history:
            changes = store.block_history()
            lines = [
                f"{_when(c.at)}  {c.action.split('.')[-1]:<7}  {c.masked}  by {c.actor}: {c.reason}"
                for c in changes
            ]
            _print(args, [_change(c) for c in changes], "\n".join(lines) or "no changes")
            return Exit.OK
        entries = store.blocked_requesters()
    lines = [f"{e.masked}  since {_when(e.at)}  by {e.actor}: {e.reason}" for e in entries]
    _print(args, [_entry(e) for e in entries], "\n".join(lines) or "no number is blocked")
    return Exit.OK


def _day(text: str) -> dt.date:
    try:
        parsed = dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:20]!r}: a day written YYYY-MM-DD") from None
    if parsed.isoformat() != text:
        raise argparse.ArgumentTypeError(f"{text[:20]!r}: a day written YYYY-MM-DD")
    return parsed


def _policy(mc: MoveCar) -> RequesterPolicy | None:
    store = mc.store
    return store.requesters if isinstance(store, RequesterStore) else None


def cmd_show(args: argparse.Namespace) -> int:
    mc, store = _store(args)
    with mc:
        day = args.day or mc.clock.now().astimezone(SHANGHAI).date()
        usage = store.requester_usage(args.phone, day)
        policy = _policy(mc)
    data = {
        "requester": usage.masked,
        "day": usage.day.isoformat(),
        "opened_today": usage.opened_today,
        "opened_this_month": usage.opened_this_month,
        "blocked": usage.blocked,
        "per_day": None if policy is None else policy.per_day,
        "per_month": None if policy is None else policy.per_month,
    }
    limits = (
        "no limits"
        if policy is None or not policy.counts
        else f"limits {policy.per_day or '-'} a day, {policy.per_month or '-'} a month"
    )
    _print(
        args,
        data,
        f"{usage.masked} on {usage.day}: {usage.opened_today} request(s) that day, "
        f"{usage.opened_this_month} that month ({limits})" + ("; BLOCKED" if usage.blocked else ""),
    )
    return Exit.OK


def register(subparsers: Any) -> None:
    req = subparsers.add_parser(
        "requester", help="the requester block list (numbers abusing the service)"
    )
    sub = req.add_subparsers(dest="requester_command", required=True, metavar="COMMAND")
    for name, func, text in (
        ("block", cmd_block, "put a number on the block list"),
        ("unblock", cmd_unblock, "take a number off the block list"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("phone", metavar="PHONE", help="the requester's number (any spelling)")
        cmd.add_argument("--reason", required=True, help="why (kept in the access log)")
        _who(cmd)
        cmd.set_defaults(func=func)
    lst = sub.add_parser("list", help="the block list, numbers masked")
    lst.add_argument("--history", action="store_true", help="every change: who, when, why")
    _who(lst)
    lst.set_defaults(func=cmd_list)
    show = sub.add_parser("show", help="a number's requests of a day and month")
    show.add_argument("phone", metavar="PHONE", help="the requester's number")
    show.add_argument("--day", type=_day, metavar="YYYY-MM-DD", help="default: today")
    _who(show)
    show.set_defaults(func=cmd_show)


def _who(cmd: argparse.ArgumentParser) -> None:
    actor_options(cmd)
    cmd.add_argument("--json", action="store_true", help="print JSON")
