"""The simulation's report a person reads: Markdown, HTML and the charts, all drawn from the
run's JSON data; escaped, reproducible, silent, and still written without matplotlib."""

from __future__ import annotations

import builtins
import copy
import logging
import warnings
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import attrs
import pytest

from movecar_adapters import sim_charts, sim_report
from movecar_adapters.cli import main
from movecar_adapters.simulate import result_json, run
from movecar_core.contract import WUJIN_114_2024
from movecar_core.settlement import ServiceMonth
from movecar_core.simulation import Scenario

SCENARIOS = Path(__file__).resolve().parent.parent / "examples" / "scenarios"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHARTS = ("monthly.png", "cumulative.png", "hourly.png")


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    """Three small months across a service year's end (2025-03 | 2025-04), with outages,
    late notices and faults, so that there are findings."""
    text = (SCENARIOS / "unreliable_switch.toml").read_text(encoding="utf-8")
    scenario = attrs.evolve(
        Scenario.from_toml(text),
        calls_per_year=3_000,
        start=ServiceMonth(2025, 2),
        months=3,
    )
    return result_json(run(scenario, 11, "memory://"), {"store": "memory"})


def month(name: str, year: int, calls: int, ytd_after: int) -> dict[str, Any]:
    return {"month": name, "service_year": year, "billable_calls": calls, "ytd_after": ytd_after}


def tiers() -> list[dict[str, Any]]:
    return [
        {"lower": t.lower, "upper": t.upper, "price": str(t.price)} for t in WUJIN_114_2024.tiers
    ]


# --- the JSON carries what the charts need ------------------------------------------------


def test_the_json_names_the_tiers_and_each_months_service_year(data: dict[str, Any]) -> None:
    assert data["tiers"] == [
        {"lower": 0, "upper": 1_500_000, "price": "1.90"},
        {"lower": 1_500_000, "upper": 3_000_000, "price": "1.85"},
        {"lower": 3_000_000, "upper": None, "price": "1.75"},
    ]
    assert [(m["month"], m["service_year"]) for m in data["months"]] == [
        ("2025-02", 0),
        ("2025-03", 0),
        ("2025-04", 1),
    ]


# --- what the charts show -----------------------------------------------------------------


def test_the_cumulative_line_restarts_with_each_service_year(data: dict[str, Any]) -> None:
    feb, mar, apr = data["months"]
    first, second = sim_charts.cumulative_series(data)
    assert first.service_year == 0 and second.service_year == 1
    # Months before the period count as empty (the store holds nothing earlier).
    assert first.x == (0, 1, 2) and first.calls == (0, feb["ytd_after"], mar["ytd_after"])
    assert mar["ytd_after"] == feb["billable_calls"] + mar["billable_calls"]
    assert second.x == (2, 3) and second.calls == (0, apr["billable_calls"])


def test_tier_boundaries_and_the_months_that_reach_them() -> None:
    data = {
        "tiers": tiers(),
        "months": [
            month("2024-04", 0, 1_000_000, 1_000_000),
            month("2024-05", 0, 500_000, 1_500_000),  # reaching 1.5 M is enough (含 150 万单)
            month("2024-06", 0, 1_400_000, 2_900_000),
            month("2024-07", 0, 700_000, 3_600_000),
            month("2025-04", 1, 3_100_000, 3_100_000),  # both at once, in a new year
        ],
    }
    assert [(b.calls, b.price) for b in sim_charts.tier_boundaries(data)] == [
        (1_500_000, "1.85"),
        (3_000_000, "1.75"),
    ]
    assert [(c.boundary, c.month, c.service_year) for c in sim_charts.tier_crossings(data)] == [
        (1_500_000, "2024-05", 0),
        (3_000_000, "2024-07", 0),
        (1_500_000, "2025-04", 1),
        (3_000_000, "2025-04", 1),
    ]
    alt = sim_charts.chart_specs({**data, **_plan()})[1].alt
    assert "1,500,000 and 3,000,000" in alt and "3,000,000 reached in 2024-07" in alt


def _plan() -> dict[str, Any]:
    plan = [
        {"hour_of_week": h, "calls_per_hour": 1.0, "seats_needed": 1, "seats_simulated": 1.0}
        for h in range(168)
    ]
    plan[34]["calls_per_hour"], plan[34]["seats_needed"] = 40.5, 9
    return {"seat_plan": plan}


def test_the_chart_descriptions_follow_the_data(data: dict[str, Any]) -> None:
    monthly, cumulative, hourly = sim_charts.chart_specs(data)
    assert "2025-02 to 2025-04" in monthly.alt
    assert f"{data['months'][-1]['ytd_after']:,} by the end of 2025-04" in cumulative.alt
    assert "no boundary reached" in cumulative.alt
    busiest = sim_charts.chart_specs({**data, **_plan()})[2].alt
    assert "at most 40.5, Tue 10:00" in busiest and "(at most 9)" in busiest
    # The scenario's name is the user's text: never in a text alternative.
    assert all(data["scenario"] not in spec.alt for spec in (monthly, cumulative, hourly))


# --- the files ----------------------------------------------------------------------------


def test_the_report_the_html_page_and_three_valid_pngs(
    data: dict[str, Any], tmp_path: Path
) -> None:
    import matplotlib.image

    written = sim_report.write(data, tmp_path)
    assert written.charts_missing is None
    assert written.files == [
        tmp_path / "report.md",
        tmp_path / "report.html",
        *(tmp_path / "charts" / name for name in CHARTS),
    ]
    height, width = (
        int(sim_charts.HEIGHT_IN * sim_charts.DPI),
        int(sim_charts.WIDTH_IN * sim_charts.DPI),
    )
    for name in CHARTS:
        raw = (tmp_path / "charts" / name).read_bytes()
        assert raw.startswith(PNG_MAGIC) and len(raw) > 1_000
        assert b"Software" not in raw  # no matplotlib version in the metadata
        pixels = matplotlib.image.imread(tmp_path / "charts" / name)
        assert pixels.shape[:2] == (height, width)
        assert pixels.std() > 0  # something was drawn
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    for name in CHARTS:
        assert f"](charts/{name})" in md
        assert f'<img src="charts/{name}" alt="' in page
    for heading in (
        "Months",
        "Cases by outcome and escalations to 110",
        "Deadlines and penalties",
        "Contract findings",
        "Seat planning (80 % of calls answered within 20 s, Erlang C)",
    ):
        assert f"\n## {heading}\n" in md and f"<h2>{heading}</h2>" in page


def test_markdown_and_html_hold_the_same_tables(data: dict[str, Any]) -> None:
    md = sim_report.markdown(data)
    page = sim_report.html_page(data)
    md_rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert page.count("<tr>") == len(md_rows)  # header rows included in both
    for m in data["months"]:
        assert f'<td class="l">{m["month"]}</td>' in page
        assert f'<td class="r">{m["inbound"]:,}</td>' in page
    for f in data["findings"]:
        assert f'<td class="l">{f["clause"]}</td>' in page
    assert data["findings"]  # faults on: the findings table is exercised


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


HOSTILE = "<script>alert(\"x\")</script><img src=x onerror=alert(1)> & 'quoted'"


def test_the_html_page_escapes_every_text_from_the_data(data: dict[str, Any]) -> None:
    hostile = copy.deepcopy(data)
    hostile["scenario"] = HOSTILE
    hostile["findings"].append(
        {"clause": "<b>五</b>", "when": "<i>", "what": HOSTILE, "cost": "<u>1</u>"}
    )
    hostile["months"][0]["cases"] = {"<script>": 1}
    page = sim_report.html_page(hostile, charts=True)
    assert "<script" not in page.lower()
    assert "<img src=x" not in page and "<b>" not in page and "<u>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    parser = _Tags()
    parser.feed(page)
    allowed = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "table"}
    allowed |= {"thead", "tbody", "tr", "th", "td", "img"}
    assert {tag for tag, _ in parser.tags} <= allowed
    for tag, attributes in parser.tags:
        assert not any(name.startswith("on") for name in attributes), tag
        if tag == "img":
            assert (attributes["src"] or "").startswith("charts/") and attributes["alt"]
    # No external resource, no script: nothing for the page to fetch but its charts.
    assert "://" not in page and "<link" not in page and "javascript:" not in page.lower()
    assert "default-src 'none'" in page


def test_the_reports_are_the_same_bytes_from_the_same_data(
    data: dict[str, Any], tmp_path: Path
) -> None:
    first = sim_report.write(data, tmp_path / "a")
    second = sim_report.write(copy.deepcopy(data), tmp_path / "b")
    for a, b in zip(first.files, second.files, strict=True):
        # PNGs too, with the same matplotlib and fonts (docs: not across versions).
        assert a.read_bytes() == b.read_bytes(), a.name


# --- fonts and warnings -------------------------------------------------------------------


def test_drawing_emits_no_warning(
    data: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim_charts.cjk_font.cache_clear()
    with caplog.at_level(logging.WARNING), warnings.catch_warnings():
        warnings.simplefilter("error")
        sim_charts.render(data, tmp_path)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_labels_name_the_clauses_only_with_a_cjk_font(
    data: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sim_charts._Labels(cjk=True).clause("Fee", "三") == "Fee (三)"
    assert sim_charts._Labels(cjk=False).clause("Fee", "三") == "Fee"
    # Without a CJK font, nothing asks for a glyph DejaVu Sans lacks: clause numbers in
    # English labels would warn "Glyph ... missing from font(s)".
    monkeypatch.setattr(sim_charts, "cjk_font", lambda: None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim_charts.render(data, tmp_path)


def test_the_cjk_font_is_one_that_has_the_glyphs() -> None:
    from matplotlib import ft2font
    from matplotlib.font_manager import findfont

    sim_charts.cjk_font.cache_clear()
    family = sim_charts.cjk_font()
    # matplotlib ships "Last Resort", which maps every code point to a placeholder box.
    assert family is None or "Last Resort" not in family
    if family is not None:
        font = ft2font.FT2Font(findfont(family, fallback_to_default=False))
        assert all(font.get_char_index(ord(ch)) for ch in sim_charts.CLAUSE_GLYPHS)


# --- without the simulate extra -----------------------------------------------------------


@pytest.fixture
def no_simulate_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = builtins.__import__

    def fake(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".", maxsplit=1)[0] in ("matplotlib", "rich"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)


@pytest.mark.usefixtures("no_simulate_extra")
def test_without_matplotlib_the_reports_are_written_and_the_line_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    stale = out / "charts" / "monthly.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(PNG_MAGIC)  # an earlier run's chart must not pass for this one's
    args = ["simulate", "--volume", "3000", "--store", "memory", "--out", str(out)]
    assert main([*args, "--json", str(out / "r.json")]) == 0
    said = capsys.readouterr().out
    assert len(said.splitlines()) == 1
    assert said.rstrip().endswith("charts need pip install 'movecar[simulate]'")
    assert (out / "report.md").exists() and (out / "report.html").exists()
    assert (out / "r.json").exists() and not stale.exists()
    assert "charts/" not in (out / "report.md").read_text(encoding="utf-8")
    assert "<img" not in (out / "report.html").read_text(encoding="utf-8")
