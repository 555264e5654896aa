"""The money sub-commands of ``movecar``: ``price`` and ``settle``.

``movecar price --volume N [--mode graduated] [--json]`` prices a service year of N billable
calls; ``movecar settle CSV [--carried-in N] [--mode ...] [--open] [--json]`` settles a service
year month by month from a CSV of monthly volumes (a ``calls`` column, and optionally a
``month`` column for labels), with the year-end true-up. Both print a readable table by
default and JSON with ``--json`` (amounts as strings, never floats).

The ``movecar`` entry point (``movecar_adapters.cli``) calls :func:`register`.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from movecar_core.contract import WUJIN_114_2024
from movecar_core.errors import MoveCarError
from movecar_core.pricing import (
    TierMode,
    YearSettlement,
    annual_fee,
    cliffs,
    price_of_call,
    settle_year,
    tier_for,
    unit_price,
)

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``price`` and ``settle`` sub-commands; each sets ``func`` (args -> exit code)."""
    modes = [mode.value for mode in TierMode]
    price = subparsers.add_parser(
        "price",
        help="price a service year of N billable calls (阶梯计价)",
        description="Unit price and annual fee of a service year of N billable calls.",
    )
    price.add_argument("--volume", required=True, type=_non_negative_int, metavar="N")
    price.add_argument("--mode", choices=modes, default=TierMode.VOLUME.value)
    price.add_argument("--json", action="store_true", help="print JSON instead of a table")
    price.set_defaults(func=run_price)

    settle = subparsers.add_parser(
        "settle",
        help="settle a service year month by month from a CSV of monthly volumes",
        description=(
            "Provisional monthly fees and the year-end true-up. The CSV has a header with a "
            "'calls' column (billable calls of each month, in order) and optionally a 'month' "
            "column used as the label."
        ),
    )
    settle.add_argument("csv", type=Path, metavar="CSV")
    settle.add_argument("--carried-in", type=_non_negative_int, default=0, metavar="N")
    settle.add_argument("--mode", choices=modes, default=TierMode.VOLUME.value)
    settle.add_argument("--open", action="store_true", help="the year is not over yet: no true-up")
    settle.add_argument("--json", action="store_true", help="print JSON instead of a table")
    settle.set_defaults(func=run_settle)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _yuan(amount: Decimal) -> str:
    return f"{amount:,.2f}"


def _calls(count: int) -> str:
    return f"{count:,}"


def _fail(command: str, message: str) -> int:
    print(f"movecar {command}: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


# --- price ------------------------------------------------------------------------------


def run_price(args: argparse.Namespace) -> int:
    """``movecar price``: the year's unit price, fee and any VOLUME cliff just above it."""
    mode = TierMode(args.mode)
    volume: int = args.volume
    try:
        tier = tier_for(volume)
        fee = annual_fee(volume, mode)
        marginal = price_of_call(volume) if volume else None
        cliff = next((c for c in cliffs() if c.first_costlier <= volume < c.boundary), None)
    except MoveCarError as exc:
        return _fail("price", str(exc))
    upper = "∞" if tier.upper is None else _calls(tier.upper)
    if args.json:
        payload: dict[str, Any] = {
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
        print(json.dumps(payload, ensure_ascii=False, indent=2))
        return EXIT_OK
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
        print(f"{label:<{width}}  {value}")
    if mode is TierMode.VOLUME and cliff is not None:
        print(
            f"note: VOLUME cliff: {_calls(cliff.boundary)} calls cost {_yuan(cliff.fee_at)} "
            f"yuan, {_yuan(fee - cliff.fee_at)} less than {_calls(volume)} calls"
        )
    return EXIT_OK


# --- settle -----------------------------------------------------------------------------


def read_monthly_csv(path: Path) -> tuple[list[str], list[int]]:
    """Labels and billable-call counts from a CSV with a ``calls`` (and ``month``) column.

    Raises :class:`ValueError` naming the line and value of any malformed row.
    """
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = [name.strip().lower() for name in reader.fieldnames or []]
        if "calls" not in fields:
            raise ValueError(f"{path}: the header needs a 'calls' column, found {fields}")
        reader.fieldnames = fields
        labels: list[str] = []
        counts: list[int] = []
        for row in reader:
            raw = (row.get("calls") or "").strip()
            if not raw and not any((v or "").strip() for v in row.values()):
                continue  # blank line
            line = reader.line_num
            try:
                count = int(raw.replace("_", "").replace(",", ""))
            except ValueError:
                raise ValueError(f"{path}:{line}: calls={raw!r} is not a whole number") from None
            if count < 0:
                raise ValueError(f"{path}:{line}: calls={raw!r} is negative")
            counts.append(count)
            labels.append((row.get("month") or "").strip() or f"month {len(counts)}")
    return labels, counts


def settlement_json(labels: list[str], result: YearSettlement) -> dict[str, Any]:
    """The JSON form of a settlement (amounts as strings)."""

    def money(amount: Decimal | None) -> str | None:
        return None if amount is None else str(amount)

    return {
        "mode": result.mode.value,
        "carried_in": result.carried_in,
        "carried_in_fee": money(result.carried_in_fee),
        "months": [
            {
                "month": label,
                "calls": line.calls,
                "ytd_before": line.ytd_before,
                "ytd_after": line.ytd_after,
                "unit_price": money(line.unit_price),
                "provisional_fee": money(line.provisional_fee),
            }
            for label, line in zip(labels, result.months, strict=True)
        ],
        "total_volume": result.total_volume,
        "provisional_total": money(result.provisional_total),
        "closed": result.closed,
        "annual_fee": money(result.annual_fee),
        "true_up": money(result.true_up),
    }


def run_settle(args: argparse.Namespace) -> int:
    """``movecar settle``: monthly provisional fees and the year-end true-up."""
    mode = TierMode(args.mode)
    try:
        labels, counts = read_monthly_csv(args.csv)
        result = settle_year(counts, carried_in=args.carried_in, mode=mode, closed=not args.open)
    except (OSError, ValueError, csv.Error) as exc:  # InvalidInput is a ValueError
        return _fail("settle", str(exc))
    if args.json:
        print(json.dumps(settlement_json(labels, result), ensure_ascii=False, indent=2))
        return EXIT_OK
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
    for label, line in zip(labels, result.months, strict=True):
        rows.append(
            (
                label,
                _calls(line.calls),
                _calls(line.ytd_after),
                str(line.unit_price),
                _yuan(line.provisional_fee),
            )
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print(f"mode: {mode.value}")
    print(
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    )
    for row in rows:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    print(f"total volume       {_calls(result.total_volume)}")
    print(f"provisional total  {_yuan(result.provisional_total)}")
    if result.annual_fee is not None and result.true_up is not None:
        print(f"annual fee         {_yuan(result.annual_fee)}")
        print(f"true-up            {_yuan(result.true_up)}")
    else:
        print("true-up            (year still open)")
    return EXIT_OK
