"""docs/zh.md (简体中文, for call-centre and police users): every figure it states is the
contract's as the code holds it, and the report it explains has the columns it names."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import attrs

from movecar_core import WUJIN_114_2024, MoveCar
from movecar_core.calendar import SHANGHAI
from movecar_core.clock import ManualClock
from movecar_core.settlement import ServiceMonth, SettlementRules, monthly_deadlines
from movecar_core.volume import report_csv

PAGE = Path(__file__).resolve().parent.parent / "docs" / "zh.md"
#: Fields whose figure is not in the contract table but in the tier table.
IN_THEIR_OWN_TABLE = {"tiers", "name"}


def _rows(text: str, header: str) -> list[list[str]]:
    """The cells of the Markdown table whose header line starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _number(cell: str) -> Decimal:
    found = re.search(r"([\d,]+(?:\.\d+)?)(%?)", cell)
    assert found, cell
    value = Decimal(found.group(1).replace(",", ""))
    return value / 100 if found.group(2) else value


def _stated(field: str, cell: str) -> object:
    value = getattr(WUJIN_114_2024, field)
    if isinstance(value, dt.date):
        return dt.date.fromisoformat(cell)
    if field == "greeting":
        return cell.replace("苏XXXXXX", "{plate}")
    if isinstance(value, bool):
        return cell == "月底"
    if isinstance(value, str):
        return cell
    return type(value)(_number(cell))


def test_every_figure_of_the_contract_table_is_the_contracts() -> None:
    rows = _rows(PAGE.read_text(encoding="utf-8"), "| 条款 | 合同原文 | 数值 | 程序字段 |")
    seen = set()
    for clause, _quote, cell, field in rows:
        name = field.strip("`")
        expected = getattr(WUJIN_114_2024, name)
        if name == "greeting":
            expected = WUJIN_114_2024.greeting.template
        assert _stated(name, cell) == expected, f"{clause} {name}: page {cell}, code {expected}"
        seen.add(name)
    fields = {f.name for f in attrs.fields(type(WUJIN_114_2024))} - IN_THEIR_OWN_TABLE
    assert fields <= seen, f"not on the page: {sorted(fields - seen)}"


def test_the_tier_table_is_the_contracts() -> None:
    rows = _rows(PAGE.read_text(encoding="utf-8"), "| 当年话务总量 | 单价（元/次） |")
    stated = []
    for volume, price, _quote in rows:
        numbers = [int(n.replace(",", "")) for n in re.findall(r"[\d,]+", volume)]
        upper = numbers[1] + 1 if "至" in volume else None
        stated.append((numbers[0], upper, Decimal(price)))
    assert stated == [(t.lower, t.upper, t.price) for t in WUJIN_114_2024.tiers]


def test_the_report_columns_are_the_files() -> None:
    """The columns and 项目 the page explains are those of a real month's CSV."""
    clock = ManualClock(dt.datetime(2024, 4, 10, 9, tzinfo=SHANGHAI))
    mc = MoveCar.in_memory({"苏D12345": "13912345678"}, clock=clock)
    mc.open_case(plate="苏D12345", location="湖塘镇花园街", requester_phone="13800001111")
    clock.advance(days=30)
    daily, figures = re.split(
        r"\r?\n\r?\n", report_csv(mc.volume_report(ServiceMonth(2024, 4))).decode("utf-8-sig")
    )
    text = PAGE.read_text(encoding="utf-8")
    columns = [row[0] for row in _rows(text, "| 列名 | 含义 |")]
    assert columns == daily.splitlines()[0].split(",")
    assert daily.splitlines()[-1].startswith("合计,")
    items = [row[0] for row in _rows(text, "| 项目 | 含义 |")]
    in_file = [line.split(",")[0] for line in figures.splitlines()[1:]]
    year_end = ["本年度运营服务费（元）", "年终结算调整（元）"]  # the last month of a year only
    assert [i for i in items if i not in year_end] == in_file
    assert set(year_end) <= set(items)


def test_the_report_deadline_the_page_gives() -> None:
    due = monthly_deadlines(ServiceMonth(2024, 4), SettlementRules()).report_due
    assert "2024 年 4 月的报表截止日是 5 月 6 日" in PAGE.read_text(encoding="utf-8")
    assert due == dt.date(2024, 5, 6)
