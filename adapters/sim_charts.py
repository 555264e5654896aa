"""The simulation's charts: PNGs drawn with matplotlib from the run's JSON data
(:func:`movecar_adapters.simulate.result_json`), like every other output of a run.

Three charts, in ``charts/`` beside the report:

- ``monthly.png``: inbound, connected and abandoned calls per month, and the provisional
  fee per month in both tier modes (三);
- ``cumulative.png``: the billable calls accumulated over each service year against the
  contract's tier boundaries (三: 1.5 and 3 million calls for Wujin);
- ``hourly.png``: for the 168 hours of the week, mean calls per hour, the seats Erlang C
  says they need and the seats simulated (二(五)).

matplotlib is optional (the ``simulate`` extra): this module imports it only in
:func:`render`, which raises :class:`ChartsUnavailable` without it. What the charts show
(:func:`cumulative_series`, :func:`tier_crossings`, :func:`chart_specs`) is computed here
without matplotlib, so the reports can describe the charts and tests can check them.

The PNGs are as reproducible as matplotlib allows: the Agg renderer, matplotlib's default
style (not the user's ``matplotlibrc``), a fixed size and resolution, and no
``Software`` entry in the PNG's metadata. The same data gives the same bytes with the same
matplotlib, FreeType and fonts; other versions may anti-alias or place text differently.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: The folder of the charts, beside the report (and the path the reports link to).
CHARTS_DIR = "charts"
#: What a user installs to get the charts (and the progress bar).
INSTALL_HINT = "pip install 'movecar[simulate]'"
#: Fixed size and resolution: the same pixels whatever the user's matplotlib settings.
WIDTH_IN = 10.0
HEIGHT_IN = 6.0
DPI = 100
#: Every character a CJK label needs beyond Latin: the clause numbers used below.
CLAUSE_GLYPHS = "二三五"
#: U+FDD0, never a character: no font that writes text has a glyph for it.
_NONCHARACTER = 0xFDD0
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_HOURS_IN_WEEK = 168


class ChartsUnavailable(Exception):
    """matplotlib is not installed: the reports are written without charts."""


@attrs.frozen
class ChartSpec:
    """One chart: its file (relative to the report), a title and a text alternative
    that says what the chart shows of this run."""

    file: str
    title: str
    alt: str


@attrs.frozen
class YearLine:
    """The accumulated billable calls of one service year: ``x`` in months from the start
    of the period's first month (a month's point sits at its end), ``calls`` the
    year-to-date volume there (what 三 prices a month at)."""

    service_year: int
    x: tuple[int, ...]
    calls: tuple[int, ...]


@attrs.frozen
class Boundary:
    """A tier boundary: from ``calls`` calls in a service year, ``price`` yuan a call."""

    calls: int
    price: str


@attrs.frozen
class Crossing:
    """The month whose calls took a service year's volume to a tier boundary or past it."""

    boundary: int
    service_year: int
    month: str
    calls: int


def _ytd_before(month: dict[str, Any]) -> int:
    return int(month["ytd_after"]) - int(month["billable_calls"])


def cumulative_series(data: dict[str, Any]) -> list[YearLine]:
    """One line per service year in the period, starting where the year stood before the
    period's first month of it (earlier service, counted in by 三, is not zero)."""
    lines: list[YearLine] = []
    xs: list[int] = []
    calls: list[int] = []
    year: int | None = None
    for index, month in enumerate(data["months"]):
        if month["service_year"] != year:
            if year is not None:
                lines.append(YearLine(year, tuple(xs), tuple(calls)))
            year = month["service_year"]
            xs, calls = [index], [_ytd_before(month)]
        xs.append(index + 1)
        calls.append(int(month["ytd_after"]))
    if year is not None:
        lines.append(YearLine(year, tuple(xs), tuple(calls)))
    return lines


def tier_boundaries(data: dict[str, Any]) -> list[Boundary]:
    """The contract's tier boundaries: every tier's lower bound above zero."""
    return [Boundary(t["lower"], t["price"]) for t in data["tiers"] if t["lower"] > 0]


def tier_crossings(data: dict[str, Any]) -> list[Crossing]:
    """Each month that reached a boundary ("150 万单-300 万单（含 150 万单）": reaching it
    is enough), in month order."""
    found = []
    for month in data["months"]:
        before, after = _ytd_before(month), int(month["ytd_after"])
        for boundary in tier_boundaries(data):
            if before < boundary.calls <= after:
                found.append(Crossing(boundary.calls, month["service_year"], month["month"], after))
    return found


def _calls(n: int) -> str:
    return f"{n:,}"


def _year_name(index: int) -> str:
    """一(三): the initial year, then at most two renewals."""
    return "initial service year" if index == 0 else f"renewal {index}"


def _hour_name(hour_of_week: int) -> str:
    return f"{_DAYS[hour_of_week // 24]} {hour_of_week % 24:02d}:00"


def chart_specs(data: dict[str, Any]) -> tuple[ChartSpec, ChartSpec, ChartSpec]:
    """The three charts, with text alternatives made from the data (never from the
    scenario's name, which is the user's text)."""
    months = data["months"]
    span = (
        f"{months[0]['month']} to {months[-1]['month']}"
        if len(months) > 1
        else str(months[0]["month"])
    )
    monthly = ChartSpec(
        f"{CHARTS_DIR}/monthly.png",
        "Volume and fee per month",
        f"Bar charts per month, {span}: inbound, connected and abandoned calls; the "
        "provisional fee in yuan in the volume-tier and the graduated mode.",
    )
    boundaries = " and ".join(_calls(b.calls) for b in tier_boundaries(data)) or "none"
    crossings = tier_crossings(data)
    reached = (
        "; ".join(f"{_calls(c.boundary)} reached in {c.month}" for c in crossings)
        if crossings
        else "no boundary reached"
    )
    last = months[-1]
    cumulative = ChartSpec(
        f"{CHARTS_DIR}/cumulative.png",
        "Billable calls in the service year against the tiers",
        f"Billable calls accumulated over each service year, month by month, against the "
        f"tier boundaries at {boundaries} calls; {_calls(int(last['ytd_after']))} by the "
        f"end of {last['month']}; {reached}.",
    )
    plan = data["seat_plan"]
    busiest = max(plan, key=lambda p: (p["calls_per_hour"], -p["hour_of_week"]))
    hourly = ChartSpec(
        f"{CHARTS_DIR}/hourly.png",
        "Hourly load against seats",
        f"For the 168 hours of the week from Monday 00:00: mean calls per hour (at most "
        f"{busiest['calls_per_hour']:,.1f}, {_hour_name(busiest['hour_of_week'])}), the "
        f"seats Erlang C says they need for 80 % answered within 20 s (at most "
        f"{max(p['seats_needed'] for p in plan)}) and the seats simulated (at most "
        f"{max(p['seats_simulated'] for p in plan):g}).",
    )
    return monthly, cumulative, hourly


# --- drawing (matplotlib from here on) ----------------------------------------------------


@functools.cache
def cjk_font() -> str | None:
    """The family of an installed font that has the clause numbers' glyphs, or ``None``.

    Checked glyph by glyph, not guessed from the name: a font named "CJK" without them
    would make matplotlib warn about missing glyphs and draw boxes."""
    from matplotlib import font_manager, ft2font

    # Sorted, so that the same fonts give the same choice whatever order the cache holds.
    for entry in sorted(font_manager.fontManager.ttflist, key=lambda e: (e.name, e.fname)):
        try:
            font = ft2font.FT2Font(entry.fname)
        except (OSError, RuntimeError, ValueError):
            continue
        # A font with a glyph for a noncharacter is a catch-all of placeholder boxes
        # (matplotlib ships one, "Last Resort"), not a font that can write the clauses.
        if font.get_char_index(_NONCHARACTER):
            continue
        if all(font.get_char_index(ord(ch)) for ch in CLAUSE_GLYPHS):
            return str(entry.name)
    return None


@attrs.frozen
class _Labels:
    """Where a CJK font is found, labels name the clause (三, 五(二), 二(五)); else the
    same English without it, so no glyph is ever missing."""

    cjk: bool

    def clause(self, text: str, clause: str) -> str:
        return f"{text} ({clause})" if self.cjk else text


@contextmanager
def _style(font: str | None) -> Iterator[None]:
    import matplotlib
    import matplotlib.style

    # matplotlib's defaults, not the user's matplotlibrc: the same data, the same picture.
    with (
        matplotlib.style.context("default"),
        matplotlib.rc_context(
            {
                # DejaVu Sans (matplotlib's own) for Latin; the CJK font only for what it lacks.
                "font.family": ["DejaVu Sans", font] if font else ["DejaVu Sans"],
                "font.size": 9.0,
                "axes.grid": True,
                "grid.alpha": 0.3,
            }
        ),
    ):
        yield


def _figure(rows: int) -> tuple[Figure, list[Axes]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A Figure of its own on the Agg canvas, not pyplot: no display, no global state.
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)
    return fig, [row[0] for row in axes]


def _thousands(ax: Axes) -> None:
    from matplotlib.ticker import StrMethodFormatter

    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))


def _legend(ax: Axes) -> None:
    # Above the plot, right of its title: never over the bars or lines whatever the data.
    ax.legend(
        loc="lower right",
        bbox_to_anchor=(1.0, 1.0),
        ncols=4,
        fontsize=8,
        frameon=False,
        borderaxespad=0.2,
    )


def _month_ticks(ax: Axes, names: list[str], at: list[float]) -> None:
    step = 1 if len(names) <= 12 else 3
    ax.set_xticks(at[::step], names[::step], rotation=45 if len(names) > 6 else 0)


def _save(fig: Figure, path: Path) -> None:
    # No "Software" entry: it names the matplotlib version, which is no part of the data.
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})


def _monthly(data: dict[str, Any], labels: _Labels, path: Path) -> None:
    months = data["months"]
    names = [m["month"] for m in months]
    x = list(range(len(months)))
    fig, (volume, fee) = _figure(2)
    width = 0.27
    for offset, key, label in (
        (-width, "inbound", "inbound"),
        (0.0, "connected", "connected"),
        (width, "abandoned", "abandoned"),
    ):
        volume.bar([i + offset for i in x], [m[key] for m in months], width, label=label)
    gaps = [i for i, m in enumerate(months) if m["days_without_24h"]]
    if gaps:
        volume.plot(
            gaps,
            [0] * len(gaps),
            linestyle="none",
            marker="^",
            color="tab:red",
            markersize=8,
            clip_on=False,
            label=labels.clause("days without the 24-hour service", "五(二)"),
        )
    volume.set_title("Calls per month", loc="left")
    volume.set_ylabel("calls")
    _thousands(volume)
    _legend(volume)
    half = width / 2
    for offset, key, label in (
        (-half, "provisional_fee", "volume tiers (recorded)"),
        (half, "provisional_fee_graduated", "graduated"),
    ):
        fee.bar(
            [i + offset for i in x],
            [float(m[key] or 0) for m in months],
            width,
            label=label,
        )
    fee.set_title(labels.clause("Provisional fee per month", "三"), loc="left")
    fee.set_ylabel("yuan")
    _thousands(fee)
    _legend(fee)
    _month_ticks(fee, names, [float(i) for i in x])
    # A month or two would fill the width with a few bars: keep room for about four.
    pad = max(0.0, (4 - len(months)) / 2)
    fee.set_xlim(-0.5 - pad, len(months) - 0.5 + pad)
    _save(fig, path)


def _cumulative(data: dict[str, Any], labels: _Labels, path: Path) -> None:
    months = data["months"]
    fig, (ax,) = _figure(1)
    lines = cumulative_series(data)
    for line in lines:
        ax.plot(line.x, line.calls, marker="o", markersize=3, label=_year_name(line.service_year))
        if line.x[0] > 0:
            ax.axvline(line.x[0], color="grey", linestyle=":", linewidth=1)
    boundaries = tier_boundaries(data)
    top = max([b.calls for b in boundaries] + [max(max(line.calls) for line in lines), 1])
    ax.set_ylim(0, top * 1.12)
    for boundary in boundaries:
        ax.axhline(boundary.calls, color="tab:red", linestyle="--", linewidth=1)
        ax.annotate(
            labels.clause(
                f"{_calls(boundary.calls)} calls: {boundary.price} yuan a call from here", "三"
            ),
            xy=(0, boundary.calls),
            xytext=(4, 3),
            textcoords="offset points",
            color="tab:red",
            fontsize=8,
        )
    for crossing in tier_crossings(data):
        index = next(i for i, m in enumerate(months) if m["month"] == crossing.month)
        ax.plot([index + 1], [crossing.calls], marker="D", color="tab:red", markersize=6)
        ax.annotate(
            f"{_calls(crossing.boundary)} reached in {crossing.month}",
            xy=(index + 1, crossing.calls),
            xytext=(-6, 8),
            textcoords="offset points",
            ha="right",
            fontsize=8,
        )
    last = months[-1]
    ax.annotate(
        f"{_calls(int(last['ytd_after']))}",
        xy=(len(months), int(last["ytd_after"])),
        xytext=(-2, 6),
        textcoords="offset points",
        ha="right",
        fontsize=8,
    )
    ax.set_xlim(0, max(len(months), 1))
    ax.set_title(
        labels.clause("Billable calls in the service year against the tiers", "三"), loc="left"
    )
    ax.set_ylabel("billable calls, year to date")
    _thousands(ax)
    _month_ticks(ax, [m["month"] for m in months], [i + 0.5 for i in range(len(months))])
    _legend(ax)
    _save(fig, path)


def _hourly(data: dict[str, Any], labels: _Labels, path: Path) -> None:
    from matplotlib.ticker import MaxNLocator

    plan = sorted(data["seat_plan"], key=lambda p: p["hour_of_week"])
    x = list(range(len(plan) + 1))

    def steps(key: str) -> list[float]:
        values = [float(p[key]) for p in plan]
        return [*values, values[-1]]  # a step for the last hour too

    fig, (load, seats) = _figure(2)
    load.fill_between(x, steps("calls_per_hour"), step="post", alpha=0.4)
    load.step(x, steps("calls_per_hour"), where="post", linewidth=1)
    load.set_title("Mean calls per hour", loc="left")
    load.set_ylabel("calls per hour")
    seats.step(
        x,
        steps("seats_needed"),
        where="post",
        label=labels.clause("seats needed, Erlang C, 80 % answered within 20 s", "二(五)"),
    )
    seats.step(x, steps("seats_simulated"), where="post", label="seats simulated (mean)")
    seats.set_title("Seats", loc="left")
    seats.set_ylabel("seats")
    seats.set_ylim(bottom=0)
    _legend(seats)
    seats.yaxis.set_major_locator(MaxNLocator(integer=True))
    seats.set_xlim(0, _HOURS_IN_WEEK)
    seats.set_xticks([d * 24 + 12 for d in range(7)], list(_DAYS), minor=True)
    seats.set_xticks([d * 24 for d in range(8)], [""] * 8)
    seats.tick_params(axis="x", which="minor", length=0)
    _save(fig, path)


_DRAW = {"monthly.png": _monthly, "cumulative.png": _cumulative, "hourly.png": _hourly}


def render(data: dict[str, Any], out: Path) -> list[Path]:
    """Draw the charts into ``out/charts``; returns the files written. Raises
    :class:`ChartsUnavailable` when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ChartsUnavailable(f"charts need {INSTALL_HINT}") from None
    folder = out / CHARTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    font = cjk_font()
    labels = _Labels(cjk=font is not None)
    written = []
    with _style(font):
        for spec in chart_specs(data):
            path = out / spec.file
            _DRAW[Path(spec.file).name](data, labels, path)
            written.append(path)
    return written
