"""Evidence: recordings (二(四)), the access log (七(三)), monthly reports and settlements (三)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs
import sqlalchemy as sa

from movecar_adapters.sql import schema as t
from movecar_adapters.sql.base import StoreBase, check_case_id, check_text
from movecar_adapters.sql.errors import StorageInputError
from movecar_core.calendar import SHANGHAI
from movecar_core.integrity import (
    GENESIS,
    chain_hash,
    report_digest,
)


def month_bounds(year: int, month: int) -> tuple[dt.datetime, dt.datetime]:
    """The month as [start, end) in Asia/Shanghai (三: monthly settlement)."""
    if not 1 <= month <= 12:
        raise StorageInputError("month", month, "must be 1..12")
    start = dt.datetime(year, month, 1, tzinfo=SHANGHAI)
    end = dt.datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=SHANGHAI)
    return start, end


def next_month(label: str) -> str:
    """ "2025-12" -> "2026-01"."""
    year, month = int(label[:4]), int(label[5:7])
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def previous_month(label: str) -> str:
    year, month = int(label[:4]), int(label[5:7])
    return f"{year - (month == 1):04d}-{(month - 2) % 12 + 1:02d}"


def report_hash(previous: str, month: str, inbound: int, billable: int, digest: str) -> str:
    """A monthly report's hash, chained to the previous report's."""
    return chain_hash(
        previous, "report", 0, month, {"inbound": inbound, "billable": billable, "digest": digest}
    )


@attrs.frozen
class MonthlyReport:
    month: str
    inbound_calls: int
    billable_calls: int
    digest: str
    previous_hash: str
    hash: str


@attrs.frozen
class Recording:
    case_id: str
    call_id: str
    location: str
    checksum_sha256: str
    duration_ms: int
    recorded_at: dt.datetime


class EvidenceRecorder(StoreBase):
    """Recordings, the owner look-up log's reader, the access log, reports, settlements."""

    # --- recordings, look-ups and the access log ------------------------------------------

    def add_recording(
        self,
        case_id: str,
        call_id: str,
        *,
        location: str,
        checksum_sha256: str,
        duration_ms: int,
        recorded_at: dt.datetime,
    ) -> None:
        """二(四) 坐席录音: where a call's audio is, its SHA-256 and its length."""
        check_case_id(case_id)
        for name, value, limit in (("call_id", call_id, 64), ("location", location, 1000)):
            if not isinstance(value, str) or not value:
                raise StorageInputError(name, value, "must be a non-empty string")
            check_text(name, value, limit)
        if not isinstance(checksum_sha256, str) or not re.fullmatch(
            r"[0-9a-f]{64}", checksum_sha256
        ):
            raise StorageInputError("checksum_sha256", checksum_sha256, "64 lower-case hex")
        if type(duration_ms) is not int or not 0 <= duration_ms < 2**31:
            raise StorageInputError("duration_ms", duration_ms, "must be an int >= 0")
        if not isinstance(recorded_at, dt.datetime) or recorded_at.tzinfo is None:
            raise StorageInputError("recorded_at", recorded_at, "must be an aware datetime")

        def fn(conn: sa.Connection) -> None:
            exists = conn.execute(
                sa.select(t.cases.c.purged_at).where(t.cases.c.case_id == case_id)
            ).one_or_none()
            if exists is None:
                raise StorageInputError("case_id", case_id, "no such case")
            conn.execute(
                t.recordings.insert(),
                {
                    "case_id": case_id,
                    "call_id": call_id,
                    "location": location,
                    "checksum_sha256": checksum_sha256,
                    "duration_ms": duration_ms,
                    "recorded_at": recorded_at,
                },
            )

        self._write(fn)

    def recordings(self, case_id: str) -> list[Recording]:
        r = t.recordings
        with self._read() as conn:
            rows = conn.execute(
                sa.select(r).where(r.c.case_id == case_id).order_by(r.c.recorded_at, r.c.id)
            ).all()
        return [
            Recording(
                x.case_id, x.call_id, x.location, x.checksum_sha256, x.duration_ms, x.recorded_at
            )
            for x in rows
        ]

    def owner_lookups(self, case_id: str) -> list[Mapping[str, Any]]:
        lk = t.owner_lookups
        with self._read() as conn:
            rows = conn.execute(
                sa.select(lk).where(lk.c.case_id == case_id).order_by(lk.c.version)
            ).all()
        return [dict(x._mapping) for x in rows]

    def log_access(
        self, actor: str, action: str, case_id: str | None = None, detail: str | None = None
    ) -> None:
        """七(三): record who did what to which case."""
        for name, value, limit in (("actor", actor, 100), ("action", action, 40)):
            if not isinstance(value, str) or not value:
                raise StorageInputError(name, value, "must be a non-empty string")
            check_text(name, value, limit)
        check_text("detail", detail, 500)
        row = {
            "at": self.clock.now(),
            "actor": actor,
            "action": action,
            "case_id": case_id,
            "detail": detail,
        }
        self._write(lambda conn: conn.execute(t.access_log.insert(), row))

    def access_log(self, case_id: str | None = None) -> list[Mapping[str, Any]]:
        a = t.access_log
        query = sa.select(a).order_by(a.c.id)
        if case_id is not None:
            query = query.where(a.c.case_id == case_id)
        with self._read() as conn:
            return [dict(x._mapping) for x in conn.execute(query)]

    # --- monthly reports and settlements (二(七), 三, 五(三)) --------------------------------

    def close_month(self, year: int, month: int) -> MonthlyReport:
        """Write the month's 话务量 report with the digest of the events it counts.

        The digest covers ``(case id, 1, hash of CaseOpened)`` for every case opened in
        the month; the report's own hash chains it to the previous report, so a changed,
        removed or reordered report is found by ``movecar audit verify`` (五(三)).
        """
        start, end = month_bounds(year, month)
        label = f"{year:04d}-{month:02d}"

        def fn(conn: sa.Connection) -> MonthlyReport:
            head = conn.execute(
                self._lock(sa.select(t.meta.c.value).where(t.meta.c.name == "report_head"))
            ).scalar()
            previous_month, previous_hash = (None, GENESIS) if head is None else head.split(":")
            if previous_month is not None and label <= previous_month:
                raise StorageInputError("month", label, f"reports exist up to {previous_month}")
            # 三 "乙方每月 5 日前 ... 提供上月 ... 报表": one report a month, none skipped, so a
            # deleted report leaves a gap the audit can name.
            if previous_month is not None and label != next_month(previous_month):
                raise StorageInputError(
                    "month", label, f"the next report due is {next_month(previous_month)}"
                )
            items = conn.execute(
                sa.select(t.cases.c.case_id, t.cases.c.opened_hash).where(
                    t.cases.c.opened_at >= start, t.cases.c.opened_at < end
                )
            ).all()
            digest = report_digest((r.case_id, 1, r.opened_hash) for r in items)
            count = len(items)
            h = report_hash(previous_hash, label, count, count, digest)
            conn.execute(
                t.monthly_reports.insert(),
                {
                    "month": label,
                    "inbound_calls": count,
                    "billable_calls": count,
                    "digest": digest,
                    "previous_hash": previous_hash,
                    "hash": h,
                    "created_at": self.clock.now(),
                },
            )
            value = f"{label}:{h}"
            if head is None:
                conn.execute(t.meta.insert(), {"name": "report_head", "value": value})
            else:
                conn.execute(
                    t.meta.update().where(t.meta.c.name == "report_head").values(value=value)
                )
            return MonthlyReport(label, count, count, digest, previous_hash, h)

        return self._write(fn)

    def reports(self) -> list[MonthlyReport]:
        r = t.monthly_reports
        with self._read() as conn:
            rows = conn.execute(sa.select(r).order_by(r.c.month)).all()
        return [
            MonthlyReport(
                x.month, x.inbound_calls, x.billable_calls, x.digest, x.previous_hash, x.hash
            )
            for x in rows
        ]

    def record_settlement(self, month: str, *, unit_price: Decimal, fee: Decimal) -> None:
        """三: the fee billed for a reported month, tied to that report's digest."""
        for name, value in (("unit_price", unit_price), ("fee", fee)):
            if not isinstance(value, Decimal) or value < 0:
                raise StorageInputError(name, value, "must be a non-negative Decimal")

        def fn(conn: sa.Connection) -> None:
            report = conn.execute(
                sa.select(t.monthly_reports).where(t.monthly_reports.c.month == month)
            ).one_or_none()
            if report is None:
                raise StorageInputError("month", month, "has no report")
            conn.execute(
                t.settlements.insert(),
                {
                    "month": month,
                    "billable_calls": report.billable_calls,
                    "unit_price": unit_price,
                    "fee": fee,
                    "report_digest": report.digest,
                    "created_at": self.clock.now(),
                },
            )

        self._write(fn)
