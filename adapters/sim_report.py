"""The simulation's report a person reads: ``report.md``, ``report.html`` and the charts in
``charts/`` beside them, all from the run's JSON data
(:func:`movecar_adapters.simulate.result_json`), so no output ever differs from ``--json``.

Markdown and HTML are rendered from one list of sections (:func:`sections`), so they hold
the same tables in the same order. The HTML page needs no server and nothing outside its
folder: no JavaScript, no external style or font, the charts as ``charts/*.png`` beside
it, and every text from the data escaped (a scenario's name is the user's text).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import attrs

from movecar_adapters import sim_charts

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@attrs.frozen
class Table:
    """A table: ``align`` has one of ``"l"`` or ``"r"`` per column."""

    header: tuple[str, ...]
    align: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@attrs.frozen
class Image:
    src: str
    alt: str


@attrs.frozen
class Section:
    title: str
    blocks: tuple[str | Table | Image, ...]


@attrs.frozen
class Written:
    """What :func:`write` wrote, and why there are no charts when there are none."""

    markdown: Path
    html: Path
    charts: tuple[Path, ...]
    charts_missing: str | None = None

    @property
    def files(self) -> list[Path]:
        return [self.markdown, self.html, *self.charts]


def title(data: dict[str, Any]) -> str:
    return f"114 move-car compliance simulation: {data['scenario']}"


def summary(data: dict[str, Any]) -> str:
    return (
        f"Seed {data['seed']}; {data['calls_per_year']:,} calls a year; "
        f"{data['period']['months']} month(s) from {data['period']['start']}; "
        f"{data['cases']:,} cases through the engine, {data['invariant_checks']:,} checked "
        "against their event history. Faults and outages the run went through: "
        + (", ".join(f"{k} {v:,}" for k, v in data.get("injected", {}).items() if v) or "none")
        + "."
    )


def sections(data: dict[str, Any], *, charts: bool = False) -> list[Section]:
    """The report's sections after its title and summary; ``charts``: link the charts
    (only when they were drawn)."""
    specs = sim_charts.chart_specs(data) if charts else None
    months = data["months"]
    volume = Table(
        (
            "month",
            "inbound",
            "connected",
            "abandoned",
            "lost to outages",
            "answered ≤ 20 s",
            "billable",
            "unit price",
            "fee (volume tiers)",
            "fee (graduated)",
        ),
        ("l", *"r" * 9),
        tuple(
            (
                m["month"],
                f"{m['inbound']:,}",
                f"{m['connected']:,}",
                f"{m['abandoned']:,}",
                f"{m['lost_to_outage']:,}",
                f"{m['service_level']:.1%}",
                f"{m['billable_calls']:,}",
                f"{m['unit_price']}",
                f"{m['provisional_fee']}",
                f"{m['provisional_fee_graduated']}",
            )
            for m in months
        ),
    )
    month_blocks: tuple[str | Table | Image, ...] = (volume,)
    if specs:
        month_blocks += tuple(Image(s.file, s.alt) for s in specs[:2])

    def counts(values: dict[str, int]) -> str:
        return ", ".join(f"{k} {v:,}" for k, v in values.items()) or "none"

    cases = Table(
        ("month", "cases", "escalations"),
        ("l", "l", "l"),
        tuple((m["month"], counts(m["cases"]), counts(m["escalations"])) for m in months),
    )
    deadlines = Table(
        (
            "month",
            "report due (三)",
            "payment due (三)",
            "outage minutes",
            "days without 24 h",
            "penalty 五(二)",
            "true-up",
        ),
        ("l", "l", "l", "r", "r", "r", "r"),
        tuple(
            (
                m["month"],
                m["report_due"],
                m["payment_due"],
                f"{m['outage_minutes']:,}",
                f"{m['days_without_24h']}",
                f"{m['service_gap_penalty']}",
                f"{m['true_up'] or '—'}",
            )
            for m in months
        ),
    )
    findings: str | Table = (
        Table(
            ("clause", "when", "what", "cost (yuan)"),
            ("l", "l", "l", "r"),
            tuple(
                (f["clause"], f["when"], f["what"], f"{f['cost'] or '—'}") for f in data["findings"]
            ),
        )
        if data["findings"]
        else "No clause was breached."
    )
    plan = data["seat_plan"]
    seats = Table(
        ("day", *(f"{h:02d}" for h in range(24))),
        ("l", *"r" * 24),
        tuple(
            (
                _DAYS[day],
                *(
                    f"{p['seats_needed']}/{p['seats_simulated']:g}"
                    for p in plan[day * 24 : day * 24 + 24]
                ),
            )
            for day in range(7)
        ),
    )
    seat_blocks: tuple[str | Table | Image, ...] = (
        "Mean calls per hour and the seats they need, against the seats simulated, for "
        "each hour of the week.",
        seats,
        "Each cell: seats needed / seats on duty (mean).",
    )
    if specs:
        seat_blocks += (Image(specs[2].file, specs[2].alt),)
    return [
        Section("Months", month_blocks),
        Section("Cases by outcome and escalations to 110", (cases,)),
        Section("Deadlines and penalties", (deadlines,)),
        Section("Contract findings", (findings,)),
        Section("Seat planning (80 % of calls answered within 20 s, Erlang C)", seat_blocks),
    ]


# --- Markdown ---------------------------------------------------------------------------


def _md_table(table: Table) -> list[str]:
    rule = "".join("---:|" if a == "r" else "---|" for a in table.align)
    lines = ["| " + " | ".join(table.header) + " |", "|" + rule]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return lines


def markdown(data: dict[str, Any], *, charts: bool = False) -> str:
    """The whole report as Markdown (``charts``: with the charts, drawn beside it)."""
    lines = [f"# {title(data)}", "", summary(data)]
    for section in sections(data, charts=charts):
        lines += ["", f"## {section.title}", ""]
        for i, block in enumerate(section.blocks):
            if i:
                lines.append("")
            if isinstance(block, Table):
                lines += _md_table(block)
            elif isinstance(block, Image):
                lines.append(f"![{block.alt}]({block.src})")
            else:
                lines.append(block)
    lines.append("")
    return "\n".join(lines)


# --- HTML -------------------------------------------------------------------------------

_CSS = """\
body { font-family: sans-serif; margin: 2em auto; max-width: 80em; padding: 0 1em;
  color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; }
th { background: #f3f3f3; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; }
td.l, th.l { text-align: left; }
img { max-width: 100%; height: auto; display: block; margin: 1em 0; }
.seats td { padding: 0.2em 0.3em; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html_table(table: Table, css_class: str | None) -> list[str]:
    attr = f' class="{css_class}"' if css_class else ""
    head = "".join(
        f'<th class="{a}">{_e(h)}</th>' for h, a in zip(table.header, table.align, strict=True)
    )
    lines = [f"<table{attr}>", f"<thead><tr>{head}</tr></thead>", "<tbody>"]
    for row in table.rows:
        cells = "".join(
            f'<td class="{a}">{_e(c)}</td>' for c, a in zip(row, table.align, strict=True)
        )
        lines.append(f"<tr>{cells}</tr>")
    lines += ["</tbody>", "</table>"]
    return lines


def html_page(data: dict[str, Any], *, charts: bool = False) -> str:
    """The whole report as one HTML page (``charts``: with the charts, drawn beside it)."""
    heading = _e(title(data))
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        # Nothing may load but the charts beside the page and its own style: even a text
        # that escaped escaping could not run a script or reach the network. file: beside
        # 'self' so the charts load whether the page is served or opened from disk.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src 'self' file:; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{heading}</title>",
        f"<style>\n{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{heading}</h1>",
        f"<p>{_e(summary(data))}</p>",
    ]
    for section in sections(data, charts=charts):
        lines.append(f"<h2>{_e(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                seats = section.title.startswith("Seat planning")
                lines += _html_table(block, "seats" if seats else None)
            elif isinstance(block, Image):
                lines.append(
                    f'<img src="{_e(block.src)}" alt="{_e(block.alt)}" '
                    f'width="{int(sim_charts.WIDTH_IN * sim_charts.DPI)}" '
                    f'height="{int(sim_charts.HEIGHT_IN * sim_charts.DPI)}">'
                )
            else:
                lines.append(f"<p>{_e(block)}</p>")
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines)


def write(data: dict[str, Any], out: Path, *, charts: bool = True) -> Written:
    """Write the report into ``out``: the charts (when matplotlib is installed and
    ``charts``), then ``report.md`` and ``report.html`` linking the charts drawn."""
    out.mkdir(parents=True, exist_ok=True)
    drawn: list[Path] = []
    missing = None
    if charts:
        try:
            drawn = sim_charts.render(data, out)
        except sim_charts.ChartsUnavailable as exc:
            missing = str(exc)
    if not drawn:
        # Charts of an earlier run in the same folder would pass for this run's.
        for spec in sim_charts.chart_specs(data):
            (out / spec.file).unlink(missing_ok=True)
    md = out / "report.md"
    md.write_text(markdown(data, charts=bool(drawn)), encoding="utf-8", newline="\n")
    page = out / "report.html"
    page.write_text(html_page(data, charts=bool(drawn)), encoding="utf-8", newline="\n")
    return Written(md, page, tuple(drawn), missing)
