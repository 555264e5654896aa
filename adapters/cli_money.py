"""The money sub-commands of ``movecar``: ``price`` and ``settle``.

* ``movecar price --volume N [--mode graduated] [--json]``: a service year of N billable
  calls under the tiers (阶梯计价).
* ``movecar settle --month YYYY-MM --actor ID --role ROLE [--db URL] [--mode ...]
  [--carried-in N] [--json]``: the month's fee from the database's events, reported and
  recorded (:meth:`~movecar_core.app.MoveCar.settle_month`), by an actor the permission
  table lets settle (``month.settle``: a ``supervisor``); a refusal is logged as
  ``denied:month.settle`` and exits 2, nothing recorded.
* ``movecar settle FILE.csv|- [--carried-in N] [--mode ...] [--open] [--json]``: what-if
  sums for a service year from monthly volumes, with the year-end true-up. No actor: it
  reads a file and prices it, and touches no record (nothing to guard or log).

The CSV is strict: each row is exactly ``month,billable_calls`` (a header row with those
names is optional, a UTF-8 byte-order mark is tolerated), the month ``YYYY-MM``, the count
in ASCII digits only (no ``1,000``, no full-width or other-script digits), the months in
order one after another, each count and their sum at most what a service year can hold.
Amounts in JSON are strings, never floats.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from movecar_adapters.cli_common import CliError, Exit, actor_of, authorize, say
from movecar_core.contract import WUJIN_114_2024
from movecar_core.errors import MoveCarError
from movecar_core.pricing import (
    MAX_ANNUAL_VOLUME,
    MONTHS_PER_YEAR,
    TierMode,
    YearSettlement,
    annual_fee,
    cliffs,
    price_of_call,
    settle_year,
    tier_for,
    unit_price,
)
from movecar_core.reports import MonthSettlement
from movecar_core.roles import Action, Role
from movecar_core.settlement import ServiceMonth

#: A CSV larger than this is not a year of monthly volumes.
MAX_CSV_BYTES = 64 * 1024


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``price`` and ``settle`` sub-commands; each sets ``func`` (args -> exit code)."""
    modes = [mode.value for mode in TierMode]
    price = subparsers.add_parser(
        "price",
        help="price a service year of N billable calls (阶梯计价)",
        description="Unit price and annual fee of a service year of N billable calls.",
    )
    price.add_argument("--volume", required=True, type=calls, metavar="N")
    price.add_argument("--mode", choices=modes, default=TierMode.VOLUME.value)
    price.add_argument("--json", action="store_true", help="print JSON instead of a table")
    price.set_defaults(func=run_price)

    settle = subparsers.add_parser(
        "settle",
        help="settle a month from the database (--month), or a year from a CSV of volumes",
        description=(
            "With --month: the month's fee from the database's events, reported and "
            "recorded, by --actor ID --role ROLE (month.settle: a supervisor; a refusal is "
            "logged). With a CSV (or - for stdin) of 'month,billable_calls' rows: provisional "
            "monthly fees and the year-end true-up, for what-if sums; no actor, since it "
            "prices a file and touches no record."
        ),
    )
    settle.add_argument("csv", nargs="?", metavar="CSV", help="month,billable_calls rows, or -")
    settle.add_argument("--month", type=month_arg, metavar="YYYY-MM", help="settle this month")
    settle.add_argument(
        "--db", default=argparse.SUPPRESS, metavar="URL", help="the database (with --month)"
    )
    settle.add_argument("--carried-in", type=calls, default=0, metavar="N")
    settle.add_argument("--mode", choices=modes, default=TierMode.VOLUME.value)
    settle.add_argument("--open", action="store_true", help="the year is not over yet: no true-up")
    settle.add_argument("--json", action="store_true", help="print JSON instead of a table")
    # Not required: the CSV form prices a file and touches no record, so it names no one.
    settle.add_argument(
        "--actor", metavar="ID", help="with --month: who settles (access log); not for a CSV"
    )
    settle.add_argument(
        "--role",
        choices=[r.value for r in Role],
        help="with --month: the actor's role (month.settle: supervisor)",
    )
    settle.set_defaults(func=run_settle)


def calls(text: str) -> int:
    """A count of calls: ASCII digits only, at most what a service year holds."""
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a count in ASCII digits")
    value = int(text[-12:]) if text.lstrip("0")[:-12] == "" else MAX_ANNUAL_VOLUME + 1
    if value > MAX_ANNUAL_VOLUME:
        raise argparse.ArgumentTypeError(
            f"{value:,} is more than a service year can hold ({MAX_ANNUAL_VOLUME:,})"
        )
    return value


def month_arg(text: str) -> ServiceMonth:
    try:
        return ServiceMonth.parse(text)
    except MoveCarError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _yuan(amount: Decimal) -> str:
    return f"{amount:,.2f}"


def _calls(count: int) -> str:
    return f"{count:,}"


def _json(payload: Any) -> None:
    say(None, json.dumps(payload, ensure_ascii=False, indent=2))


# --- price ------------------------------------------------------------------------------


def run_price(args: argparse.Namespace) -> int:
    """``movecar price``: the year's unit price, fee and any VOLUME cliff just above it."""
    mode = TierMode(args.mode)
    volume: int = args.volume
    tier = tier_for(volume)
    fee = annual_fee(volume, mode)
    marginal = price_of_call(volume) if volume else None
    cliff = next((c for c in cliffs() if c.first_costlier <= volume < c.boundary), None)
    upper = "∞" if tier.upper is None else _calls(tier.upper)
    if args.json:
        _json(
            {
                "contract": WUJIN_114_2024.name,
                "volume": volume,
                "mode": mode.value,
                "tier": {"lower": tier.lower, "upper": tier.upper, "price": str(tier.price)},
                "unit_price": str(unit_price(volume)) if mode is TierMode.VOLUME else None,
                "marginal_price": None if marginal is None else str(marginal),
                "annual_fee": str(fee),
                "cliff": None
                if mode is not TierMode.VOLUME or cliff is None
                else {
                    "boundary": cliff.boundary,
                    "fee_at_boundary": str(cliff.fee_at),
                    "saving_at_boundary": str(fee - cliff.fee_at),
                },
            }
        )
        return Exit.OK
    rows = [
        ("volume", _calls(volume)),
        ("mode", mode.value),
        ("tier", f"[{_calls(tier.lower)}, {upper})  {tier.price} yuan/call"),
    ]
    if mode is TierMode.VOLUME:
        rows.append(("unit price", f"{unit_price(volume)} yuan/call (every call of the year)"))
    elif marginal is not None:
        rows.append(("last call", f"{marginal} yuan (call no. {_calls(volume)})"))
    rows.append(("annual fee", f"{_yuan(fee)} yuan"))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        say(None, f"{label:<{width}}  {value}")
    if mode is TierMode.VOLUME and cliff is not None:
        say(
            None,
            f"note: VOLUME cliff: {_calls(cliff.boundary)} calls cost {_yuan(cliff.fee_at)} "
            f"yuan, {_yuan(fee - cliff.fee_at)} less than {_calls(volume)} calls",
        )
    return Exit.OK


# --- settle: a month from the database ----------------------------------------------------


def run_settle(args: argparse.Namespace) -> int:
    """``movecar settle``: a month from the database, or a year from a CSV."""
    if args.month is not None:
        if args.csv is not None:
            raise CliError("give either --month (from the database) or a CSV, not both")
        return _settle_month(args)
    if args.csv is None:
        raise CliError("give --month YYYY-MM (from the database) or a CSV of monthly volumes")
    if getattr(args, "db", None) is not None:
        raise CliError("--db goes with --month; a CSV is settled without a database")
    if args.actor is not None or args.role is not None:
        raise CliError("--actor and --role go with --month; a CSV touches no record")
    return _settle_csv(args)


def _settle_month(args: argparse.Namespace) -> int:
    from movecar_adapters.connect import connect
    from movecar_core.term import ContractTerm

    if args.actor is None or args.role is None:
        raise CliError("--month needs --actor ID --role ROLE: who settles the month")
    actor = actor_of(args)  # checked before the database is opened
    term = ContractTerm.start(WUJIN_114_2024, carried_in=args.carried_in)
    # upgrade=False: a mistyped SQLite path must not become a new, empty database that
    # then reports a month of zero calls.
    with connect(args.db, term=term, config=args.config, upgrade=False) as mc:
        desk = authorize(mc, actor, Action.SETTLE_MONTH)
        result = desk.settle_month(args.month, mode=TierMode(args.mode))
    if args.json:
        _json(month_json(result))
        return Exit.OK
    d = result.deadlines
    rows = [
        ("month", str(result.month)),
        ("service year", f"{result.service_year.start} to {result.service_year.end}"),
        ("billable calls", _calls(result.billable_calls)),
        ("year to date", f"{_calls(result.ytd_before)} -> {_calls(result.ytd_after)}"),
        ("unit price", f"{result.unit_price} yuan/call ({result.mode.value})"),
        ("provisional fee", f"{_yuan(result.provisional_fee)} yuan"),
        ("report due", f"{d.report_due} (digest {result.report_digest})"),
        ("objection by", str(d.objection_deadline)),
        ("payment due", str(d.payment_due)),
    ]
    if result.annual_fee is not None and result.true_up is not None:
        rows += [
            ("annual fee", f"{_yuan(result.annual_fee)} yuan"),
            ("true-up", f"{_yuan(result.true_up)} yuan"),
        ]
    rows.append(("recorded at", result.recorded_at.isoformat()))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        say(None, f"{label:<{width}}  {value}")
    return Exit.OK


def month_json(result: MonthSettlement) -> dict[str, Any]:
    d = result.deadlines
    return {
        "month": str(result.month),
        "service_year": {
            "index": result.service_year.index,
            "start": str(result.service_year.start),
            "end": str(result.service_year.end),
        },
        "mode": result.mode.value,
        "billable_calls": result.billable_calls,
        "ytd_before": result.ytd_before,
        "ytd_after": result.ytd_after,
        "unit_price": str(result.unit_price),
        "provisional_fee": str(result.provisional_fee),
        "deadlines": {
            "report_due": str(d.report_due),
            "objection_deadline": str(d.objection_deadline),
            "payment_due": str(d.payment_due),
        },
        "report": {
            "digest": result.report.digest,
            "hash": result.report.hash,
            "inbound_calls": result.report.inbound_calls,
        },
        "annual_fee": None if result.annual_fee is None else str(result.annual_fee),
        "true_up": None if result.true_up is None else str(result.true_up),
        "recorded_at": result.recorded_at.isoformat(),
    }


# --- settle: what-if sums from a CSV -------------------------------------------------------


def _read_text(source: str) -> tuple[str, str]:
    """``(where, text)`` of the CSV: a file, or stdin for ``-``."""
    where = "stdin" if source == "-" else source
    try:
        if source == "-":
            raw = sys.stdin.buffer.read(MAX_CSV_BYTES + 1)
        else:
            with Path(source).open("rb") as handle:
                raw = handle.read(MAX_CSV_BYTES + 1)
    except OSError as exc:
        raise CliError(f"{where}: cannot read it ({exc.strerror})", Exit.ENVIRONMENT) from None
    if len(raw) > MAX_CSV_BYTES:
        raise CliError(f"{where}: larger than {MAX_CSV_BYTES:,} bytes; not a year of months")
    try:
        return where, raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CliError(f"{where}: not UTF-8 text (byte {exc.start})") from None


def _row(where: str, line: int, cells: list[str]) -> tuple[ServiceMonth, int]:
    if len(cells) != 2:
        raise CliError(f"{where}:{line}: expected month,billable_calls; got {len(cells)} fields")
    month_text, count_text = cells
    try:
        month = ServiceMonth.parse(month_text)
    except MoveCarError:
        raise CliError(f"{where}:{line}: month={month_text[:20]!r} is not YYYY-MM") from None
    try:
        return month, calls(count_text)
    except argparse.ArgumentTypeError as exc:
        raise CliError(f"{where}:{line}: billable_calls={exc}") from None


def read_monthly_csv(source: str) -> tuple[list[ServiceMonth], list[int]]:
    """Months and billable calls from ``month,billable_calls`` rows (``-``: stdin).

    Raises :class:`CliError`: 2 for a malformed row (naming its line), 3 for a file that
    cannot be read.
    """
    where, text = _read_text(source)
    try:
        rows = list(enumerate(csv.reader(io.StringIO(text, newline="")), start=1))
    except csv.Error as exc:
        raise CliError(f"{where}: not CSV ({exc})") from None
    months: list[ServiceMonth] = []
    counts: list[int] = []
    first_line: dict[ServiceMonth, int] = {}
    for line, row in rows:
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue  # a blank line
        if line == 1 and [c.lower() for c in cells] == ["month", "billable_calls"]:
            continue  # the optional header
        month, count = _row(where, line, cells)
        if month in first_line:
            raise CliError(f"{where}:{line}: month {month} is also on line {first_line[month]}")
        if months and month != months[-1].next():
            raise CliError(
                f"{where}:{line}: month {month} after {months[-1]}: months must follow each other"
            )
        first_line[month] = line
        months.append(month)
        counts.append(count)
    if not months:
        raise CliError(f"{where}: no 'month,billable_calls' rows")
    if len(months) > MONTHS_PER_YEAR:
        raise CliError(f"{where}: {len(months)} months; a service year has {MONTHS_PER_YEAR}")
    if sum(counts) > MAX_ANNUAL_VOLUME:
        raise CliError(
            f"{where}: {sum(counts):,} calls in all, more than a service year can hold "
            f"({MAX_ANNUAL_VOLUME:,})"
        )
    return months, counts


def settlement_json(months: list[ServiceMonth], result: YearSettlement) -> dict[str, Any]:
    """The JSON form of a settlement (amounts as strings)."""

    def money(amount: Decimal | None) -> str | None:
        return None if amount is None else str(amount)

    return {
        "mode": result.mode.value,
        "carried_in": result.carried_in,
        "carried_in_fee": money(result.carried_in_fee),
        "months": [
            {
                "month": str(month),
                "calls": line.calls,
                "ytd_before": line.ytd_before,
                "ytd_after": line.ytd_after,
                "unit_price": money(line.unit_price),
                "provisional_fee": money(line.provisional_fee),
            }
            for month, line in zip(months, result.months, strict=True)
        ],
        "total_volume": result.total_volume,
        "provisional_total": money(result.provisional_total),
        "closed": result.closed,
        "annual_fee": money(result.annual_fee),
        "true_up": money(result.true_up),
    }


def _settle_csv(args: argparse.Namespace) -> int:
    mode = TierMode(args.mode)
    months, counts = read_monthly_csv(args.csv)
    result = settle_year(counts, carried_in=args.carried_in, mode=mode, closed=not args.open)
    if args.json:
        _json(settlement_json(months, result))
        return Exit.OK
    header = ("month", "calls", "year to date", "price", "provisional fee")
    rows: list[tuple[str, ...]] = []
    if result.carried_in:
        rows.append(
            (
                "carried in",
                _calls(result.carried_in),
                _calls(result.carried_in),
                str(unit_price(result.carried_in)),
                _yuan(result.carried_in_fee),
            )
        )
    for month, line in zip(months, result.months, strict=True):
        rows.append(
            (
                str(month),
                _calls(line.calls),
                _calls(line.ytd_after),
                str(line.unit_price),
                _yuan(line.provisional_fee),
            )
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line_of(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    say(None, f"mode: {mode.value}")
    say(None, line_of(header))
    for row in rows:
        say(None, line_of(row))
    say(None, f"total volume       {_calls(result.total_volume)}")
    say(None, f"provisional total  {_yuan(result.provisional_total)}")
    if result.annual_fee is not None and result.true_up is not None:
        say(None, f"annual fee         {_yuan(result.annual_fee)}")
        say(None, f"true-up            {_yuan(result.true_up)}")
    else:
        say(None, "true-up            (year still open)")
    return Exit.OK
