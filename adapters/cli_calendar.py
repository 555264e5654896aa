"""Calendar sub-commands of the ``movecar`` console script: working-day years from notices.

* ``movecar calendar check FILE [--json]``  validate a year file (the State Council's
  notice as TOML, docs/calendar.md) against the calendar configured now; installs nothing
* ``movecar calendar add FILE [--json]``  validate it and install it, as ``cal-YYYY.toml``,
  into the calendar folder configuration reads: the first folder of ``$MOVECAR_CALENDAR``,
  else ``[calendar] dir`` of ``movecar.toml`` (default ``calendar/`` beside it, or in the
  working directory without one). From then on every command and ``connect()`` finds it
* ``movecar calendar show [--json]``  the years covered and where each comes from

A year the calendar covers already (the library's table, or a file installed before) is
refused unless the file says ``replace = true``. Exit codes
(:mod:`movecar_adapters.cli_common`): 2 for a file whose content is refused (the message
names the key and the date); 3 for a file or folder that cannot be read or written, or a
configuration that names no folder to install into.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from movecar_adapters.calendar_files import CalendarFileError, install, read_notice
from movecar_adapters.cli_common import Exit, say
from movecar_adapters.config import load_settings
from movecar_core.calendar import WorkingDayCalendar, YearNotice


def _summary(notice: YearNotice) -> dict[str, Any]:
    names = list(dict.fromkeys(notice.holidays.values()))
    return {
        "year": notice.year,
        "notice": notice.notice,
        "replace": notice.replace,
        "holidays": names,
        "days_off": len(notice.holidays),
        "make_up_working_days": [d.isoformat() for d in notice.workdays],
    }


def _line(notice: YearNotice) -> str:
    names = "、".join(dict.fromkeys(notice.holidays.values()))
    return (
        f"{notice.year}: {len(notice.holidays)} days off ({names}), "
        f"{len(notice.workdays)} make-up working days; {notice.notice}"
    )


def cmd_check(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    notice = read_notice(Path(args.file))
    settings.calendar.with_notice(notice)  # refused for a covered year without replace
    data = _summary(notice)
    say(
        None,
        json.dumps(data, ensure_ascii=False, indent=2) if args.json else f"valid: {_line(notice)}",
    )
    return Exit.OK


def cmd_add(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    folder = settings.calendar_dir
    if folder is None:
        raise CalendarFileError(
            "no calendar folder to install into: MOVECAR_CALENDAR names files only; add a "
            "folder to it, or set [calendar] dir in movecar.toml"
        )
    notice, target, replaced = install(Path(args.file), folder, settings.calendar)
    data = {**_summary(notice), "installed": str(target), "replaced_file": replaced}
    verb = "replaced" if replaced else "installed"
    say(
        None,
        json.dumps(data, ensure_ascii=False, indent=2)
        if args.json
        else f"{verb} {target}: {_line(notice)}",
    )
    return Exit.OK


def _ranges(years: list[int]) -> str:
    parts: list[str] = []
    for year in years:
        if parts and parts[-1].split("-")[-1] == str(year - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{year}"
        else:
            parts.append(str(year))
    return ", ".join(parts)


def cmd_show(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    calendar, table = settings.calendar, WorkingDayCalendar.default()
    years = sorted(calendar.covered_years)
    added = {y: calendar.sources[y] for y in years if calendar.sources[y] != table.sources.get(y)}
    data = {
        "covered": _ranges(years),
        "table": next(iter(table.sources.values())),
        "added": {str(y): source for y, source in added.items()},
        "files": [str(p) for p in settings.calendar_files],
        "install_folder": None if settings.calendar_dir is None else str(settings.calendar_dir),
    }
    if args.json:
        say(None, json.dumps(data, ensure_ascii=False, indent=2))
        return Exit.OK
    lines = [f"covered: {data['covered']} (the table: {data['table']})"]
    lines += [f"  {y}: {source}" for y, source in added.items()]
    folder = data["install_folder"] or "none (MOVECAR_CALENDAR names files only)"
    lines.append(f"calendar add installs into: {folder}")
    say(None, "\n".join(lines))
    return Exit.OK


def register(subparsers: Any) -> None:
    cal = subparsers.add_parser(
        "calendar", help="working-day years from the State Council's notices (调休)"
    )
    sub = cal.add_subparsers(dest="calendar_command", required=True, metavar="COMMAND")
    for name, func, text in (
        ("check", cmd_check, "validate a year file; install nothing"),
        ("add", cmd_add, "validate a year file and install it where configuration reads it"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("file", metavar="FILE", help="the year file (TOML), e.g. cal-2027.toml")
        cmd.add_argument("--json", action="store_true", help="print JSON")
        cmd.set_defaults(func=func)
    show = sub.add_parser("show", help="the years covered and where each comes from")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=cmd_show)
