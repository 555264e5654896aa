"""The monthly volume report end to end on every database: the worker mails it through a
real SMTP server (aiosmtpd) and every figure of the attached workbook and CSV is checked
against the store; the 110 desk's notice goes the same way."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from mail_support import attachments_of, mail_server
from sqlsupport import KEY_1

from movecar_adapters.connect import connect
from movecar_adapters.crypto import KeyRing
from movecar_adapters.report_files import DAILY_SHEET, SUMMARY_SHEET
from movecar_adapters.smtp import SmtpMailer
from movecar_adapters.sql import SqlStore
from movecar_adapters.worker import drain
from movecar_core.calendar import SHANGHAI, end_of_day, local_date
from movecar_core.case import EscalationReason
from movecar_core.clock import ManualClock
from movecar_core.outbox import MONTHLY_REPORT, NO_CASE
from movecar_core.requesters import BLOCK_LIST_ONLY
from movecar_core.settlement import ServiceMonth, SettlementRules
from movecar_core.volume import report_effect

APRIL = ServiceMonth(2024, 4)
DESK = "110-desk@gaj.example.gov.cn"
PARTY_A = ("zhihui@gaj.example.gov.cn", "caiwu@gaj.example.gov.cn")
XLSX = "114移车话务量报表_2024-04.xlsx"
CSV = "114移车话务量报表_2024-04.csv"


def shanghai(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=SHANGHAI)  # type: ignore[misc]


#: Openings around the month's edges and on busy days (Shanghai time).
OPENINGS = [
    shanghai(2024, 3, 31, 23, 59, 50),  # March: not counted
    shanghai(2024, 4, 1, 0, 0, 5),
    shanghai(2024, 4, 1, 8, 30),
    shanghai(2024, 4, 7, 12),
    shanghai(2024, 4, 15, 23, 59, 30),
    shanghai(2024, 4, 16, 0, 0, 30),
    shanghai(2024, 4, 16, 9),
    shanghai(2024, 4, 16, 17, 45),
    shanghai(2024, 4, 30, 23, 59, 59),
]


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "movecar.toml"
    path.write_text(
        "[smtp]\n"
        'from = "114-movecar@telecom.example.cn"\n'
        f'to_110 = "{DESK}"\n'
        f"report_to = {list(PARTY_A)!r}\n".replace("'", '"'),
        encoding="utf-8",
    )
    return path


def test_the_worker_mails_the_report_and_every_figure_matches_the_store(
    fresh_url: str, tmp_path: Path
) -> None:
    clock = ManualClock(OPENINGS[0])
    with mail_server() as server:
        mc = connect(
            fresh_url,
            keys=KeyRing([("k1", KEY_1)]),
            clock=clock,
            config=config_file(tmp_path),
            environ={"MOVECAR_SMTP_URL": server.url()},
            requesters=BLOCK_LIST_ONLY,  # one requester opens every case here
        )
        with mc:
            store = mc.store
            assert isinstance(store, SqlStore)
            assert isinstance(mc.command_centre, SmtpMailer)
            case_ids = []
            for at in OPENINGS:
                clock.set(at)
                case_ids.append(
                    mc.open_case(
                        plate="苏D12345", location="武进区湖塘镇", requester_phone="13800001111"
                    )
                )
            # An escalation's notice reaches the 110 desk by mail (二(五)).
            mc.escalate(case_ids[2], EscalationReason.EMERGENCY_LANE_BLOCKED, note="占用消防通道")
            [notice] = server.received
            assert notice.rcpt_tos == (DESK,)
            assert notice.message["X-Movecar-Key"].endswith(":notify_110")

            # In the outbox before it is due: visible, of no case, due 6 May 09:00.
            clock.set(shanghai(2024, 5, 6, 8, 0))
            drain(mc, "w1")
            # (May's report too: the current month's is scheduled ahead, due 3 June.)
            waiting = [e for e in store.pending() if e.kind == MONTHLY_REPORT]
            assert [(e.key, e.case_id, e.due_at) for e in waiting] == [
                ("monthly_report:2024-04", NO_CASE, shanghai(2024, 5, 6, 9)),
                ("monthly_report:2024-05", NO_CASE, shanghai(2024, 6, 3, 9)),
            ]
            assert len(server.received) == 1

            clock.set(shanghai(2024, 5, 6, 9, 0))
            [run] = [r for r in drain(mc, "w1") if r.kind == MONTHLY_REPORT]
            assert run.ok, run.error
            [report_mail] = server.received[1:]

            # The outbox keeps the done row: the key is never scheduled again.
            assert not store.schedule(report_effect(APRIL, SettlementRules()))
            assert [e.key for e in store.pending() if e.kind == MONTHLY_REPORT] == [
                "monthly_report:2024-05"
            ]

            check_mail_against_store(report_mail.message, report_mail.rcpt_tos, store)


def check_mail_against_store(message: object, rcpt_tos: tuple[str, ...], store: SqlStore) -> None:
    from email.message import EmailMessage

    assert isinstance(message, EmailMessage)
    assert rcpt_tos == PARTY_A
    assert message["Subject"] == "114 移车话务量报表 2024年04月"
    assert message["X-Movecar-Key"] == "monthly_report:2024-04"
    files = attachments_of(message)
    assert set(files) == {CSV, XLSX}

    report = store.report(APRIL)
    settlement = store.settlement(APRIL)
    assert report is not None and settlement is not None and report.tree is not None
    expected = Counter(
        local_date(at) for at in OPENINGS if ServiceMonth.of(local_date(at)) == APRIL
    )
    days = [APRIL.day(n) for n in range(1, 31)]
    from_store = {
        day: store.count_opened(
            dt.datetime.combine(day, dt.time(), tzinfo=SHANGHAI), end_of_day(day)
        )
        for day in days
    }
    assert from_store == {day: expected[day] for day in days}
    assert report.billable_calls == report.inbound_calls == sum(expected.values()) == 8

    # The workbook, opened as Party A opens it.
    book = openpyxl.load_workbook(io.BytesIO(files[XLSX][1]))
    assert book.sheetnames == [SUMMARY_SHEET, DAILY_SHEET]
    daily = list(book[DAILY_SHEET].iter_rows(values_only=True))
    assert daily[0] == ("日期", "呼入（次）", "接通（次）", "计费呼叫（次）")
    for row, day in zip(daily[1:31], days, strict=True):
        assert row[0].date() == day  # type: ignore[union-attr]
        assert row[1:] == (from_store[day],) * 3, day
    assert daily[31] == ("合计", 8, 8, 8)
    figures = {
        key: value
        for _, value, key in book[SUMMARY_SHEET].iter_rows(min_row=4, values_only=True)
        if key is not None
    }
    assert figures["inbound"] == figures["connected"] == figures["billable"] == 8
    assert Decimal(str(figures["unit_price"])) == settlement.unit_price == Decimal("1.90")
    assert Decimal(str(figures["fee"])).quantize(Decimal("0.01")) == settlement.fee
    assert settlement.fee == Decimal("15.20")
    assert figures["digest"] == report.digest == settlement.report_digest
    assert figures["report_hash"] == report.hash
    assert figures["previous_hash"] == report.previous_hash
    assert figures["tree_size"] == report.tree.size and figures["tree_root"] == report.tree.root
    assert figures["report_due"].date() == dt.date(2024, 5, 6)  # type: ignore[attr-defined]
    assert figures["objection_deadline"].date() == dt.date(2024, 5, 15)  # type: ignore[attr-defined]
    assert figures["month"] == "2024-04"

    # The CSV says the same.
    rows = list(csv.reader(io.StringIO(files[CSV][1].decode("utf-8-sig"), newline="")))
    blank = rows.index([])
    assert [r[1:] for r in rows[1:31]] == [[str(from_store[d])] * 3 for d in days]
    by_key = {key: value for _, value, key in rows[blank + 2 :]}
    assert by_key["fee"] == "15.20" and by_key["digest"] == report.digest
    assert by_key["tree_root"] == report.tree.root

    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "运营服务费：15.20 元" in text and report.digest in text


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_report_is_not_mailed_twice_across_engines(
    fresh_url: str, tmp_path: Path, backend: str
) -> None:
    """Two workers (two engines, one database): the key is scheduled once, mailed once."""
    clock = ManualClock(shanghai(2024, 4, 10, 9))
    with mail_server() as server:
        engines = [
            connect(
                fresh_url,
                keys=KeyRing([("k1", KEY_1)]),
                clock=clock,
                config=config_file(tmp_path),
                environ={"MOVECAR_SMTP_URL": server.url()},
            )
            for _ in range(2)
        ]
        engines[0].open_case(plate="苏D12345", location="湖塘镇", requester_phone="13800001111")
        clock.set(shanghai(2024, 5, 6, 9, 30))
        runs = [r for mc in engines for r in drain(mc, "w") if r.kind == MONTHLY_REPORT]
        assert [r.ok for r in runs] == [True]
        assert [m.message["X-Movecar-Key"] for m in server.received] == ["monthly_report:2024-04"]
        for mc in engines:
            mc.close()


def test_concurrent_schedules_of_one_key_add_it_once(fresh_store: SqlStore) -> None:
    import threading

    effect = report_effect(APRIL, SettlementRules())
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def schedule() -> None:
        barrier.wait()
        results.append(fresh_store.schedule(effect))

    threads = [threading.Thread(target=schedule) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 5 + [True]
    assert [e.key for e in fresh_store.pending()] == [effect.key]
