"""Working days beyond the library's table: year files, configuration, ``movecar calendar``,
and every deadline of the contract's 2027 months."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from movecar_adapters.calendar_files import installed_name, read_notice
from movecar_adapters.cli import main
from movecar_adapters.config import ConfigError, load_settings
from movecar_adapters.connect import connect
from movecar_core.calendar import (
    CN_CALENDAR,
    SHANGHAI,
    InvalidCalendarNotice,
    WorkingDayCalendar,
    YearNotice,
)
from movecar_core.clock import ManualClock
from movecar_core.errors import CalendarYearNotCovered
from movecar_core.settlement import (
    ServiceMonth,
    SettlementRules,
    monthly_deadlines,
    negotiation_deadline,
)
from movecar_core.term import Assessment, ContractTerm

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_2026 = ROOT / "examples" / "calendar" / "cal-2026.toml"
TEMPLATE_2027 = ROOT / "examples" / "calendar" / "cal-2027.template.toml"
FIXTURE_2027 = ROOT / "tests" / "data" / "cal-2027-fixture.toml"
D = dt.date


def fixture_calendar() -> WorkingDayCalendar:
    return CN_CALENDAR.with_notice(read_notice(FIXTURE_2027))


# --- the year file ---------------------------------------------------------------------


def test_the_2026_example_is_the_notice_and_agrees_with_the_table_day_for_day() -> None:
    notice = read_notice(EXAMPLE_2026)
    assert notice.year == 2026 and notice.replace
    replaced = CN_CALENDAR.with_notice(notice)
    assert replaced.holidays == CN_CALENDAR.holidays
    assert replaced.workdays == CN_CALENDAR.workdays
    assert replaced.sources[2026].startswith("国务院办公厅关于2026年部分节假日安排的通知")
    assert len(notice.holidays) == 3 + 9 + 3 + 5 + 3 + 3 + 7  # each item's 共 N 天


def test_the_2027_template_holds_no_date_and_is_refused() -> None:
    text = TEMPLATE_2027.read_text(encoding="utf-8")
    assert "TEMPLATE" in text
    uncommented = "\n".join(line.split("#")[0] for line in text.splitlines())
    assert "2027-" not in uncommented
    with pytest.raises(InvalidCalendarNotice, match=r"no \[\[holiday\]\]"):
        read_notice(TEMPLATE_2027)


def test_the_fixture_is_marked_as_one() -> None:
    notice = read_notice(FIXTURE_2027)
    assert "TEST FIXTURE" in notice.notice
    assert all(name.startswith("fixture ") for name in notice.holidays.values())


BASE = """year = 2027
notice = "n"
"""


def _holiday(
    name: str, start: str, end: str | None = None, days: int | None = None, work: str = ""
) -> str:
    text = f'[[holiday]]\nname = "{name}"\nfrom = {start}\n'
    if end is not None:
        text += f"to = {end}\n"
    if days is not None:
        text += f"days = {days}\n"
    if work:
        text += f"workdays = [{work}]\n"
    return text


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("not toml [", "not valid TOML"),
        (BASE + "colour = 1\n" + _holiday("a", "2027-01-01"), "unknown key 'colour'"),
        (BASE, "no \\[\\[holiday\\]\\]"),
        ("year = 1800\nnotice = 'n'\n" + _holiday("a", "1800-01-01"), "must be a year"),
        ("year = 2027\n" + _holiday("a", "2027-01-01"), "notice must name"),
        (BASE + "replace = 1\n" + _holiday("a", "2027-01-01"), "true or false"),
        (BASE + _holiday("a", "2026-12-31"), "not in 2027"),
        (BASE + _holiday("a", "2027-01-03", "2027-01-01"), "before from"),
        (BASE + _holiday("a", "2027-01-01", "2027-01-20"), "20 days off"),
        (BASE + _holiday("a", "2027-01-01", "2027-01-03", days=4), "共 4 天"),
        (BASE + _holiday("a", "2027-01-01", "2027-01-03", work="2027-01-02"), "both"),
        (BASE + _holiday("a", "2027-01-01", work="2027-01-04"), "Monday"),
        (BASE + _holiday("a", "2027-01-01", "2027-01-03") + _holiday("b", "2027-01-03"), "overlap"),
        (BASE + _holiday("a", '"2027-1-1"'), "not a date"),
        (BASE + _holiday("a", "2027-01-01T08:00:00"), "not a date"),
        (BASE + '[[holiday]]\nname = "a"\n', "from .* is missing"),
        (BASE + '[[holiday]]\nname = ""\nfrom = 2027-01-01\n', "name must be"),
        (BASE + '[[holiday]]\nname = "a\\nb"\nfrom = 2027-01-01\n', "name must be"),
        ("a = " + "[" * 20_000 + "]" * 20_000, "nested too deep"),
        ("year = 2027\nnotice = '" + "x" * 70_000 + "'", "larger than"),
    ],
)
def test_a_wrong_year_file_is_refused_naming_what(body: str, why: str) -> None:
    with pytest.raises(InvalidCalendarNotice, match=why):
        YearNotice.from_toml(body, source="f.toml")


def test_a_covered_year_is_refused_unless_the_file_replaces_it() -> None:
    body = "year = 2025\nnotice = 'n'\n" + _holiday("元旦", "2025-01-01")
    notice = YearNotice.from_toml(body)
    with pytest.raises(InvalidCalendarNotice, match=r"covered already .*replace = true"):
        CN_CALENDAR.with_notice(notice)
    replaced = CN_CALENDAR.with_notice(YearNotice.from_toml("replace = true\n" + body))
    assert replaced.is_working_day(D(2025, 1, 28))  # the table's 春节 is gone with it


@st.composite
def notices(draw: st.DrawFn) -> tuple[str, set[dt.date], set[dt.date]]:
    """A valid year file for 2027 and the days off and make-up days it gives."""
    starts = sorted(draw(st.sets(st.integers(0, 350), min_size=1, max_size=7)))
    holidays: set[dt.date] = set()
    workdays: set[dt.date] = set()
    body = BASE
    jan1 = D(2027, 1, 1)
    for i, start in enumerate(starts):
        limit = (starts[i + 1] - start) if i + 1 < len(starts) else 365 - start
        length = draw(st.integers(1, min(limit, 9)))
        first, last = jan1 + dt.timedelta(start), jan1 + dt.timedelta(start + length - 1)
        days = {first + dt.timedelta(k) for k in range(length)}
        weekends = [
            jan1 + dt.timedelta(k) for k in range(365) if (jan1 + dt.timedelta(k)).weekday() >= 5
        ]
        free = [d for d in weekends if d not in holidays | days | workdays]
        made = draw(st.lists(st.sampled_from(free), max_size=2, unique=True)) if free else []
        holidays |= days
        workdays |= set(made)
        work = ", ".join(d.isoformat() for d in made)
        body += _holiday(f"h{i}", first.isoformat(), last.isoformat(), length, work)
    # a make-up day drawn for an earlier period may be a later period's day off: such a
    # file must be refused, which the test checks
    return body, holidays, workdays


@given(notices())
def test_for_all_valid_year_files_every_day_of_the_year_follows_the_file(
    drawn: tuple[str, set[dt.date], set[dt.date]],
) -> None:
    body, holidays, workdays = drawn
    if holidays & workdays:
        with pytest.raises(InvalidCalendarNotice, match="both"):
            YearNotice.from_toml(body)
        return
    calendar = CN_CALENDAR.with_notice(YearNotice.from_toml(body))
    day = D(2027, 1, 1)
    while day.year == 2027:
        expected = day in workdays or (day not in holidays and day.weekday() < 5)
        assert calendar.is_working_day(day) is expected, day
        day += dt.timedelta(days=1)
    with pytest.raises(CalendarYearNotCovered):
        calendar.is_working_day(D(2028, 1, 3))  # a year still missing is refused


@given(st.text(max_size=300))
def test_any_text_is_a_notice_or_refused_with_a_typed_error(text: str) -> None:
    with contextlib.suppress(InvalidCalendarNotice):
        YearNotice.from_toml(text)


# --- the deadlines of the contract's last months -----------------------------------------


def test_every_deadline_of_the_2027_months_follows_the_year_file() -> None:
    rules = SettlementRules(calendar=fixture_calendar())
    got = {
        str(m): monthly_deadlines(m, rules)
        for m in (
            ServiceMonth(2026, 12),
            ServiceMonth(2027, 1),
            ServiceMonth(2027, 2),
            ServiceMonth(2027, 3),
        )
    }
    # 2027-01-05 is a Tuesday; the 31st a Sunday the fixture makes a working day (调休)
    assert got["2026-12"].report_due == D(2027, 1, 5)
    assert got["2026-12"].payment_due == D(2027, 1, 31)
    # 02-05 is the fixture's 春节 (to 02-11): the report is due on Friday 02-12
    assert got["2027-01"].report_due == D(2027, 2, 12)
    assert got["2027-01"].objection_deadline == D(2027, 2, 15)
    assert got["2027-01"].payment_due == D(2027, 3, 1)  # 02-28 is a Sunday
    assert got["2027-02"].report_due == D(2027, 3, 5)
    # the contract's last month: 04-05 is in the fixture's 清明节 (04-03..05), payment
    # by 04-30, a Friday
    assert got["2027-03"].report_due == D(2027, 4, 6)
    assert got["2027-03"].payment_due == D(2027, 4, 30)
    # 5 working days from 02-04: the holiday skipped, the 20th (a make-up Saturday) not reached
    assert negotiation_deadline(D(2027, 2, 4), rules) == D(2027, 2, 18)
    assert negotiation_deadline(D(2027, 2, 15), rules) == D(2027, 2, 20)  # Saturday, 调休
    with pytest.raises(CalendarYearNotCovered):
        monthly_deadlines(ServiceMonth(2026, 12))  # without the file, as before


def _renewed() -> ContractTerm:
    term = ContractTerm.start()
    for _ in range(2):
        year = term.current
        term = term.renew(Assessment(year.index, True, year.end))
    return term


def test_the_engine_settles_2027_months_with_the_configured_calendar(tmp_path: Path) -> None:
    config = tmp_path / "movecar.toml"
    config.write_text(f'[calendar]\nyears = ["{FIXTURE_2027}"]\n', encoding="utf-8")
    clock = ManualClock(dt.datetime(2026, 12, 15, 9, 0, tzinfo=SHANGHAI))
    bare = connect("memory://", clock=clock, environ={}, term=_renewed())
    bare.open_case(plate="苏D12345", location="x", requester_phone="13800001111")
    clock.set(dt.datetime(2027, 1, 2, 9, 0, tzinfo=SHANGHAI))
    with pytest.raises(CalendarYearNotCovered):
        bare.settle_month(ServiceMonth(2026, 12))
    assert bare.store.report(ServiceMonth(2026, 12)) is None  # type: ignore[attr-defined]
    clock = ManualClock(dt.datetime(2026, 12, 15, 9, 0, tzinfo=SHANGHAI))
    mc = connect("memory://", clock=clock, config=config, environ={}, term=_renewed())
    dues = {}
    for month in (ServiceMonth(2026, 12), *(ServiceMonth(2027, m) for m in (1, 2, 3))):
        clock.set(dt.datetime.combine(month.day(15), dt.time(9), tzinfo=SHANGHAI))
        mc.open_case(plate="苏D12345", location="x", requester_phone="13800001111")
        clock.set(dt.datetime.combine(month.next().day(2), dt.time(9), tzinfo=SHANGHAI))
        dues[str(month)] = mc.settle_month(month).deadlines.report_due
    assert dues == {
        "2026-12": D(2027, 1, 5),
        "2027-01": D(2027, 2, 12),
        "2027-02": D(2027, 3, 5),
        "2027-03": D(2027, 4, 6),
    }


# --- configuration ---------------------------------------------------------------------


def _config(folder: Path, text: str) -> Path:
    path = folder / "movecar.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_configuration_finds_year_files_and_the_install_folder(tmp_path: Path) -> None:
    (tmp_path / "years").mkdir()
    (tmp_path / "years" / "cal-2027.toml").write_bytes(FIXTURE_2027.read_bytes())
    (tmp_path / "years" / "notes.toml").write_text("not a year file", encoding="utf-8")
    settings = load_settings(_config(tmp_path, '[calendar]\ndir = "years"\n'), environ={})
    assert settings.calendar.covers(2027) and settings.calendar_dir == tmp_path / "years"
    assert settings.calendar_files == (tmp_path / "years" / "cal-2027.toml",)
    # by default: calendar/ beside movecar.toml (absent here: the table alone)
    plain = load_settings(_config(tmp_path, ""), environ={})
    assert not plain.calendar.covers(2027) and plain.calendar_dir == tmp_path / "calendar"
    # the environment's list wins over the file
    env = {"MOVECAR_CALENDAR": f"{FIXTURE_2027}{os.pathsep}{tmp_path / 'years'}"}
    with pytest.raises(ConfigError, match="covered already"):  # the same year twice
        load_settings(_config(tmp_path, ""), environ=env)
    only = load_settings(_config(tmp_path, ""), environ={"MOVECAR_CALENDAR": str(FIXTURE_2027)})
    assert only.calendar.covers(2027) and only.calendar_dir is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('[calendar]\nyears = ["missing.toml"]\n', "not found"),
        ("[calendar]\nyears = [3]\n", "list of file names"),
        ('[calendar]\nyears = "cal.toml"\n', "must be list"),
        ('[calendar]\nyear = ["x"]\n', "unknown setting calendar.year"),
        ('[calendar]\nyears = ["bad.toml"]\n', "not in 2027"),
    ],
)
def test_a_wrong_calendar_setting_stops_with_a_config_error(
    tmp_path: Path, text: str, why: str
) -> None:
    (tmp_path / "bad.toml").write_text(BASE + _holiday("a", "2026-01-01"), encoding="utf-8")
    with pytest.raises(ConfigError, match=why):
        load_settings(_config(tmp_path, text), environ={})


# --- movecar calendar ------------------------------------------------------------------


@pytest.fixture
def operator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A deployment folder with a movecar.toml, as the working directory."""
    monkeypatch.chdir(tmp_path)
    for name in ("MOVECAR_CALENDAR", "MOVECAR_CONFIG", "MOVECAR_DB_URL"):
        monkeypatch.delenv(name, raising=False)
    _config(tmp_path, "")
    return tmp_path


def test_calendar_add_installs_where_configuration_reads(
    operator: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["calendar", "check", str(FIXTURE_2027)]) == 0
    assert "valid: 2027: 18 days off" in capsys.readouterr().out
    assert not (operator / "calendar").exists()  # check installs nothing
    assert main(["calendar", "add", str(FIXTURE_2027), "--json"]) == 0
    added = json.loads(capsys.readouterr().out)
    installed = operator / "calendar" / installed_name(2027)
    assert Path(added["installed"]).resolve() == installed and not added["replaced_file"]
    assert installed.read_bytes() == FIXTURE_2027.read_bytes()
    assert load_settings(None, environ={}).calendar.covers(2027)
    assert main(["calendar", "add", str(FIXTURE_2027)]) == 0  # the same file: nothing to do
    capsys.readouterr()
    assert main(["calendar", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["covered"] == "2004-2027" and "TEST FIXTURE" in shown["added"]["2027"]
    other = operator / "other-2027.toml"
    other.write_text(BASE + _holiday("元旦", "2027-01-01"), encoding="utf-8")
    assert main(["calendar", "add", str(other)]) == 2  # a year installed already
    assert "set replace = true" in capsys.readouterr().err
    other.write_text("replace = true\n" + BASE + _holiday("元旦", "2027-01-01"), encoding="utf-8")
    assert main(["calendar", "add", str(other)]) == 0
    assert "replaced" in capsys.readouterr().out
    assert installed.read_bytes() == other.read_bytes()
    assert not [p for p in installed.parent.iterdir() if p.name.startswith(".cal-")]


def test_calendar_commands_refuse_with_their_exit_codes(
    operator: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["calendar", "check", str(TEMPLATE_2027)]) == 2
    assert main(["calendar", "add", str(operator / "missing.toml")]) == 3
    bad = operator / "bad.toml"
    bad.write_bytes(b"\xff\xfe year = 2027")
    assert main(["calendar", "check", str(bad)]) == 2
    assert main(["calendar", "check", str(EXAMPLE_2026)]) == 0  # replace = true
    covered = operator / "cal-2025.toml"
    covered.write_text("year = 2025\nnotice = 'n'\n" + _holiday("a", "2025-01-01"), "utf-8")
    assert main(["calendar", "add", str(covered)]) == 2
    monkeypatch.setenv("MOVECAR_CALENDAR", str(EXAMPLE_2026))  # files only: no folder
    capsys.readouterr()
    assert main(["calendar", "add", str(FIXTURE_2027)]) == 3
    assert "no calendar folder" in capsys.readouterr().err
    assert not (operator / "calendar").exists()


def test_simulate_runs_past_2026_once_2027_is_installed(
    operator: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["simulate", "--start", "2026-12", "--months", "4", "--store", "memory"]
    args += ["--volume", "2000", "--json", "run.json"]
    assert main(args) == 3
    assert "year=2027 is not in the working-day calendar" in capsys.readouterr().err
    assert main(["calendar", "add", str(FIXTURE_2027)]) == 0
    assert main(args) == 0
    data = json.loads((operator / "run.json").read_text(encoding="utf-8"))
    due = {m["month"]: m["report_due"] for m in data["months"]}
    assert due == {
        "2026-12": "2027-01-05",
        "2027-01": "2027-02-12",
        "2027-02": "2027-03-05",
        "2027-03": "2027-04-06",
    }
    too_far = ["simulate", "--start", "2027-03", "--months", "2", "--store", "memory"]
    assert main(too_far) == 2  # past the contract's possible term, as before
