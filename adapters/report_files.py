"""The monthly volume report as files: an XLSX workbook (openpyxl) beside the core's CSV.

三: "乙方每月 5 日前以电子邮件的形式提供上月 114 移车话务量报表": the mail carries both. The
workbook has two sheets, in Chinese with the contract's terms:

* ``报表汇总`` (summary): the month's figures, one per row — 呼入, 接通, 计费呼叫, the tier
  price and the 运营服务费, the deadlines, and the evidence (the report's digest, its chain
  hash, the ledger's tree head);
* ``每日话务量`` (daily): one row per day of the month (日期, 呼入, 接通, 计费呼叫) and a 合计 row.

Values are typed cells (dates, whole numbers, amounts to the fen), never formulas, so a
reader that does not compute formulas sees every figure. Needs ``movecar[reports]``.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from movecar_core.errors import PortError
from movecar_core.mail import Attachment
from movecar_core.volume import (
    DAILY_COLUMNS,
    TOTAL_LABEL,
    XLSX_TYPE,
    VolumeReport,
    csv_attachments,
    report_filename,
)

SUMMARY_SHEET = "报表汇总"
DAILY_SHEET = "每日话务量"
_MONEY = "#,##0.00"
_COUNT = "#,##0"
_DATE = "yyyy-mm-dd"


def _openpyxl() -> Any:
    try:
        import openpyxl
    except ModuleNotFoundError:
        raise PortError("the XLSX report needs openpyxl: pip install 'movecar[reports]'") from None
    return openpyxl


def report_xlsx(report: VolumeReport) -> bytes:
    """The report as an XLSX workbook (see the module), dated ``report.generated_at``."""
    openpyxl = _openpyxl()
    from openpyxl.styles import Alignment, Font

    bold = Font(bold=True)
    book = openpyxl.Workbook()
    summary = book.active
    summary.title = SUMMARY_SHEET
    month = report.month
    summary.append([f"114 移车话务量报表 {month.year}年{month.month:02d}月"])
    summary["A1"].font = Font(bold=True, size=14)
    summary.append([])
    summary.append(["项目", "数值", "字段"])
    for cell in summary[3]:
        cell.font = bold
    for label, key, value in report.summary():
        summary.append([label, _value(value), key])
        cell = summary.cell(row=summary.max_row, column=2)
        if isinstance(value, Decimal):
            cell.number_format = _MONEY
        elif isinstance(value, int):
            cell.number_format = _COUNT
        elif isinstance(value, dt.date):
            cell.number_format = _DATE
        cell.alignment = Alignment(horizontal="left")
    summary.column_dimensions["A"].width = 36
    summary.column_dimensions["B"].width = 70
    summary.column_dimensions["C"].width = 20

    daily = book.create_sheet(DAILY_SHEET)
    daily.append([zh for zh, _ in DAILY_COLUMNS])
    for cell in daily[1]:
        cell.font = bold
    for d in report.days:
        daily.append([d.day, d.inbound, d.connected, d.billable])
        daily.cell(row=daily.max_row, column=1).number_format = _DATE
    daily.append([TOTAL_LABEL, report.inbound, report.connected, report.billable])
    for cell in daily[daily.max_row]:
        cell.font = bold
    for column, width in zip("ABCD", (14, 12, 12, 16), strict=True):
        daily.column_dimensions[column].width = width
    daily.freeze_panes = "A2"

    # The workbook's own dates are the report's, not the wall clock's (openpyxl wants
    # naive UTC), so the same report gives the same properties.
    stamp = report.generated_at.astimezone(dt.UTC).replace(tzinfo=None)
    book.properties.created = book.properties.modified = stamp
    book.properties.creator = report.contract.party_b
    book.properties.title = f"114 移车话务量报表 {month}"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _value(value: object) -> object:
    """A summary value as a cell takes it: None is an empty cell."""
    return "" if value is None else value


def report_attachments(report: VolumeReport) -> list[Attachment]:
    """The report's attachments: the CSV and the XLSX workbook (the ``render`` of the
    mailed report that ``connect()`` configures)."""
    return [
        *csv_attachments(report),
        Attachment(report_filename(report.month, "xlsx"), XLSX_TYPE, report_xlsx(report)),
    ]


def write_file(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` whole or not at all: into a temporary file beside it,
    flushed to disk, then renamed over ``path`` (an interrupted write leaves the old file,
    never half a report). The file is readable by its owner only (四: the report is
    confidential). Raises :class:`OSError` as the file system does."""
    target = Path(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name[:40]}.", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


__all__ = ["DAILY_SHEET", "SUMMARY_SHEET", "report_attachments", "report_xlsx", "write_file"]
