"""The simulation's report a person reads: Markdown, from the run's JSON data
(:func:`movecar_adapters.simulate.result_json`), so the report and ``--json`` never differ."""

from __future__ import annotations

from pathlib import Path
from typing import Any

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def markdown(data: dict[str, Any]) -> str:
    """The whole report as Markdown."""
    lines = [
        f"# 114 move-car compliance simulation: {data['scenario']}",
        "",
        f"Seed {data['seed']}; {data['calls_per_year']:,} calls a year; "
        f"{data['period']['months']} month(s) from {data['period']['start']}; "
        f"{data['cases']:,} cases through the engine, {data['invariant_checks']:,} checked "
        "against their event history.",
        "",
        "Faults and outages the run went through: "
        + (", ".join(f"{k} {v:,}" for k, v in data["injected"].items() if v) or "none")
        + ".",
        "",
        "## Months",
        "",
        "| month | inbound | connected | abandoned | lost to outages | answered ≤ 20 s "
        "| billable | unit price | fee (volume tiers) | fee (graduated) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in data["months"]:
        lines.append(
            f"| {m['month']} | {m['inbound']:,} | {m['connected']:,} | {m['abandoned']:,} "
            f"| {m['lost_to_outage']:,} | {m['service_level']:.1%} | {m['billable_calls']:,} "
            f"| {m['unit_price']} | {m['provisional_fee']} | {m['provisional_fee_graduated']} |"
        )
    lines += ["", "## Cases by outcome and escalations to 110", ""]
    lines += ["| month | cases | escalations |", "|---|---|---|"]
    for m in data["months"]:
        cases = ", ".join(f"{k} {v:,}" for k, v in m["cases"].items()) or "none"
        esc = ", ".join(f"{k} {v:,}" for k, v in m["escalations"].items()) or "none"
        lines.append(f"| {m['month']} | {cases} | {esc} |")
    lines += ["", "## Deadlines and penalties", ""]
    lines += [
        "| month | report due (三) | payment due (三) | outage minutes | days without 24 h "
        "| penalty 五(二) | true-up |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for m in data["months"]:
        lines.append(
            f"| {m['month']} | {m['report_due']} | {m['payment_due']} | {m['outage_minutes']:,} "
            f"| {m['days_without_24h']} | {m['service_gap_penalty']} | {m['true_up'] or '—'} |"
        )
    lines += ["", "## Contract findings", ""]
    if data["findings"]:
        lines += ["| clause | when | what | cost (yuan) |", "|---|---|---|---:|"]
        for f in data["findings"]:
            lines.append(f"| {f['clause']} | {f['when']} | {f['what']} | {f['cost'] or '—'} |")
    else:
        lines.append("No clause was breached.")
    lines += [
        "",
        "## Seat planning (80 % of calls answered within 20 s, Erlang C)",
        "",
        "Mean calls per hour and the seats they need, against the seats simulated, for "
        "each hour of the week.",
        "",
        "| day | " + " | ".join(f"{h:02d}" for h in range(24)) + " |",
        "|---|" + "---:|" * 24,
    ]
    plan = data["seat_plan"]
    for day in range(7):
        cells = []
        for hour in range(24):
            p = plan[day * 24 + hour]
            cells.append(f"{p['seats_needed']}/{p['seats_simulated']:g}")
        lines.append(f"| {_DAYS[day]} | " + " | ".join(cells) + " |")
    lines += ["", "Each cell: seats needed / seats on duty (mean).", ""]
    return "\n".join(lines)


def write(data: dict[str, Any], out: Path) -> list[Path]:
    """Write the report into ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.md"
    path.write_text(markdown(data), encoding="utf-8")
    return [path]
