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
from movecar_adapters.sql.base import check_case_id, check_text
from movecar_adapters.sql.errors import StorageError, StorageInputError
from movecar_adapters.sql.ledger import LedgerRecorder
from movecar_adapters.sql.requesters import refusals_in
from movecar_core.errors import AUDIT_HINT, CasePurged
from movecar_core.ledger import TreeHead, recording_leaf, report_leaf, settlement_leaf
from movecar_core.reports import (
    MonthlyReport,
    RecordedSettlement,
    check_settlement,
    next_report,
)
from movecar_core.requesters import RefusalCounts
from movecar_core.settlement import ServiceMonth

CENT = Decimal("0.01")


@attrs.frozen
class Recording:
    case_id: str
    call_id: str
    location: str
    checksum_sha256: str
    duration_ms: int
    recorded_at: dt.datetime


class EvidenceRecorder(LedgerRecorder):
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
            if exists.purged_at is not None:  # 二(四): nothing new is kept for a tombstone
                raise CasePurged(case_id, exists.purged_at)
            self._guard(conn, f"recording {call_id}", [recorded_at])
            self._add_leaves(
                conn,
                [
                    recording_leaf(
                        case_id,
                        call_id,
                        recorded_at,
                        location=location,
                        checksum_sha256=checksum_sha256,
                        duration_ms=duration_ms,
                    )
                ],
            )
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
        at = self.clock.now()

        def fn(conn: sa.Connection) -> None:
            self._guard(conn, f"access-log entry of {actor}", [at])
            self._log(conn, at, actor=actor, action=action, case_id=case_id, detail=detail)

        self._write(fn)

    def access_log(self, case_id: str | None = None) -> list[Mapping[str, Any]]:
        a = t.access_log
        query = sa.select(a).order_by(a.c.id)
        if case_id is not None:
            query = query.where(a.c.case_id == case_id)
        with self._read() as conn:
            return [dict(x._mapping) for x in conn.execute(query)]

    # --- monthly reports and settlements (二(七), 三, 五(三)) --------------------------------

    def write_report(self, month: ServiceMonth, *, at: dt.datetime) -> MonthlyReport:
        """Write the month's 话务量 report with the digest of the cases it counts.

        The digest covers ``(case id, 1, hash of CaseOpened)`` for every case opened in
        the month; the report's own hash chains it to the previous report
        (:func:`movecar_core.reports.next_report`), so a changed, removed or reordered
        report is found by ``movecar audit verify`` (五(三)). The chain's head is kept
        apart from the reports, so deleting the latest report shows too.
        """
        if not isinstance(month, ServiceMonth):
            raise StorageInputError("month", month, "must be a ServiceMonth")
        start, end = month.bounds()
        r = t.monthly_reports

        def fn(conn: sa.Connection) -> MonthlyReport:
            head = conn.execute(
                self._lock(sa.select(t.meta.c.value).where(t.meta.c.name == "report_head"))
            ).scalar()
            previous = None
            if head is not None:
                label = head.partition(":")[0]
                row = conn.execute(sa.select(r).where(r.c.month == label)).one_or_none()
                if row is None:
                    raise StorageError(
                        f"the report chain's head names {label}, which is missing: {AUDIT_HINT}"
                    )
                previous = _report(row)
            items = conn.execute(
                sa.select(t.cases.c.case_id, t.cases.c.opened_hash).where(
                    t.cases.c.opened_at >= start, t.cases.c.opened_at < end
                )
            ).all()
            tree = None
            if self.ledger:
                # The tree head of everything sequenced so far, the month included: the
                # report then commits Party A to the whole ledger, not just its digest.
                self._guard(conn, f"report {month}", [at])
                tree = self._sequence_all(conn)
            refusals = refusals_in(conn, month)  # sealed into the report's hash
            report = next_report(
                previous, month, ((x.case_id, x.opened_hash) for x in items), tree, refusals
            )
            conn.execute(
                r.insert(),
                {
                    "month": str(month),
                    "inbound_calls": report.inbound_calls,
                    "billable_calls": report.billable_calls,
                    "digest": report.digest,
                    "previous_hash": report.previous_hash,
                    "hash": report.hash,
                    "created_at": at,
                    "tree_size": None if tree is None else tree.size,
                    "tree_root": None if tree is None else tree.root,
                    **_refusal_columns(report.refusals),
                },
            )
            self._add_leaves(conn, [report_leaf(str(month), at, report.hash)])
            value = f"{month}:{report.hash}"
            if head is None:
                conn.execute(t.meta.insert(), {"name": "report_head", "value": value})
            else:
                conn.execute(
                    t.meta.update().where(t.meta.c.name == "report_head").values(value=value)
                )
            return report

        return self._write(fn)

    def report(self, month: ServiceMonth) -> MonthlyReport | None:
        r = t.monthly_reports
        with self._read() as conn:
            row = conn.execute(sa.select(r).where(r.c.month == str(month))).one_or_none()
        return None if row is None else _report(row)

    def reports(self) -> list[MonthlyReport]:
        r = t.monthly_reports
        with self._read() as conn:
            rows = conn.execute(sa.select(r).order_by(r.c.month)).all()
        return [_report(x) for x in rows]

    def write_settlement(self, settlement: RecordedSettlement) -> None:
        """三: the fee billed for a reported month, tied to that report's digest."""
        if not isinstance(settlement, RecordedSettlement):
            raise StorageInputError("settlement", settlement, "must be a RecordedSettlement")
        for name, value in (("unit_price", settlement.unit_price), ("fee", settlement.fee)):
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise StorageInputError(name, value, "must be a non-negative Decimal")
            if value != value.quantize(CENT):  # the columns keep cents: nothing rounded away
                raise StorageInputError(name, value, "has more than two decimal places")
        month = str(settlement.month)

        def fn(conn: sa.Connection) -> None:
            row = conn.execute(
                sa.select(t.monthly_reports).where(t.monthly_reports.c.month == month)
            ).one_or_none()
            exists = conn.execute(
                sa.select(t.settlements.c.month).where(t.settlements.c.month == month)
            ).first()
            report = None if row is None else _report(row)
            check_settlement(settlement, report, settled_before=exists is not None)
            self._guard(conn, f"settlement {month}", [settlement.recorded_at])
            self._add_leaves(
                conn,
                [
                    settlement_leaf(
                        month,
                        settlement.recorded_at,
                        billable_calls=settlement.billable_calls,
                        unit_price=settlement.unit_price,
                        fee=settlement.fee,
                        report_digest=settlement.report_digest,
                    )
                ],
            )
            conn.execute(
                t.settlements.insert(),
                {
                    "month": month,
                    "billable_calls": settlement.billable_calls,
                    "unit_price": settlement.unit_price,
                    "fee": settlement.fee,
                    "report_digest": settlement.report_digest,
                    "created_at": settlement.recorded_at,
                },
            )

        self._write(fn)

    def settlement(self, month: ServiceMonth) -> RecordedSettlement | None:
        s = t.settlements
        with self._read() as conn:
            row = conn.execute(sa.select(s).where(s.c.month == str(month))).one_or_none()
        if row is None:
            return None
        return RecordedSettlement(
            ServiceMonth.parse(row.month),
            row.billable_calls,
            Decimal(row.unit_price),
            Decimal(row.fee),
            row.report_digest,
            row.created_at,
        )


def _report(row: Any) -> MonthlyReport:
    tree = None if row.tree_size is None else TreeHead(int(row.tree_size), row.tree_root)
    return MonthlyReport(
        ServiceMonth.parse(row.month),
        row.inbound_calls,
        row.billable_calls,
        row.digest,
        row.previous_hash,
        row.hash,
        tree,
        stored_refusals(row),
    )


def _refusal_columns(refusals: RefusalCounts | None) -> dict[str, int | None]:
    return {
        "refused_blocked": None if refusals is None else refusals.blocked,
        "refused_daily_limit": None if refusals is None else refusals.daily_limit,
        "refused_monthly_limit": None if refusals is None else refusals.monthly_limit,
    }


def stored_refusals(row: Any) -> RefusalCounts | None:
    """The refusals a stored report sealed (None: none refused, or written before 0007)."""
    columns = (row.refused_blocked, row.refused_daily_limit, row.refused_monthly_limit)
    if all(value is None for value in columns):
        return None
    return RefusalCounts(  # any one set: all count (a half-set row fails its hash)
        int(row.refused_blocked or 0),
        int(row.refused_daily_limit or 0),
        int(row.refused_monthly_limit or 0),
    )
