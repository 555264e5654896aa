"""``movecar outage start|end|list``, ``movecar incident report|notice|list`` and the worker
sending their notices, on every database; hostile arguments and their exit codes."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mail_support import closed_port, mail_server
from sqlsupport import KEY_1

from movecar_adapters.cli import main
from movecar_adapters.sql import make_engine
from movecar_adapters.sql import schema as t

HERE = Path(__file__).resolve().parent
MOVECAR = str(Path(sys.executable).parent / "movecar")


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def url(fresh_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.chdir(tmp_path)  # no movecar.toml of the developer's
    for name in list(os.environ):
        if name.startswith("MOVECAR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MOVECAR_KEYS", f"k1={KEY_1}")
    monkeypatch.setenv("MOVECAR_DB_URL", fresh_url)
    return fresh_url


def worker_once(url: str, desk: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MOVECAR_")}
    environment |= {
        "MOVECAR_DB_URL": url,
        "MOVECAR_KEYS": f"k1={KEY_1}",
        "PYTHONPATH": str(HERE),
        "INCIDENT_DESK": str(desk),
        **env,
    }
    return subprocess.run(
        [MOVECAR, "worker", "--once", "--factory", "incident_factory:build"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def listing(*more: str) -> dict[str, Any]:
    code, out, err = run(
        "outage", "list", "--actor", "audit-1", "--role", "auditor", "--json", *more
    )
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def test_an_outage_from_start_to_the_notices_the_worker_sends(url: str, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=8)))
    fault = (now - dt.timedelta(minutes=10)).isoformat()
    code, out, err = run(
        "outage",
        "start",
        "--actor",
        "sup-1",
        "--role",
        "supervisor",
        "--cause",
        "核心交换机故障",
        "--at",
        fault,
    )
    assert code == 0, err
    assert "outage-0001" in out and "fault notice: due by" in out
    # connect()'s in-memory desk reaches nobody: nothing is recorded as given
    assert "fault notice of outage-0001 still due" in err and "no 110 desk" in err

    code, _, err = run(
        "outage", "start", "--actor", "sup-1", "--role", "supervisor", "--cause", "又一个故障"
    )
    assert code == 2 and "still open" in err and err.count("\n") == 1
    code, _, err = run(
        "outage",
        "end",
        "--actor",
        "sup-1",
        "--role",
        "supervisor",
        "--at",
        (now - dt.timedelta(hours=1)).isoformat(),
    )
    assert code == 2 and "not after its start" in err
    code, _, err = run(
        "outage", "end", "--actor", "sup-1", "--role", "supervisor", "--at", "2025-03-14T08:00:00"
    )
    assert code == 2 and "give an offset" in err
    code, _, err = run(
        "outage", "end", "--actor", "sup-1", "--role", "supervisor", "--at", "yesterday"
    )
    assert code == 2 and "not an ISO 8601 time" in err
    code, out, err = run("outage", "end", "--actor", "sup-1", "--role", "supervisor", "--json")
    assert code == 0, err
    ended = json.loads(out)
    assert ended["incident_id"] == "outage-0001" and ended["ended_at"] is not None
    assert [n["kind"] for n in ended["notices"]] == ["fault", "recovery"]
    assert all(n["sent_at"] is None for n in ended["notices"])

    desk = tmp_path / "desk.jsonl"
    down = worker_once(url, desk, DESK_DOWN="1")
    assert down.returncode == 3, down.stderr  # a port down: the notice stays pending
    assert "fault notice outage-0001 FAILED: failed: PortError" in down.stderr
    assert not desk.exists()

    done = worker_once(url, desk)
    assert done.returncode == 0, done.stderr
    assert "fault notice outage-0001 ok: sent" in done.stderr
    assert "recovery notice outage-0001 ok: sent" in done.stderr
    notices = [json.loads(line) for line in desk.read_text(encoding="utf-8").splitlines()]
    assert [n["key"] for n in notices] == [
        "incident:outage-0001:fault",
        "incident:outage-0001:recovery",
    ]
    assert "核心交换机故障" in notices[0]["message"] and "北京时间" in notices[0]["message"]
    again = worker_once(url, desk)  # nothing left to send
    assert again.returncode == 0 and "notice" not in again.stderr.split("started", 1)[1]

    data = listing()
    (outage,) = data["outages"]
    assert all(n["sent_at"] and n["channel"] == "command_centre" for n in outage["notices"])
    assert data["findings"] == []  # sent within 30 minutes of each event
    assert outage["interrupted_days"] and data["months"]
    code, out, _ = run("outage", "list", "--actor", "audit-1", "--role", "auditor")
    assert code == 0 and "fault notice: sent" in out and "day(s) without the 24-hour service" in out


def test_a_late_notice_is_a_finding_with_its_delay(url: str) -> None:
    now = dt.datetime.now(dt.UTC)
    two_hours_ago = (now - dt.timedelta(hours=2)).isoformat()
    assert (
        run(
            "outage",
            "start",
            "--actor",
            "sup-1",
            "--role",
            "supervisor",
            "--cause",
            "停电",
            "--at",
            two_hours_ago,
        )[0]
        == 0
    )
    assert (
        run(
            "outage",
            "end",
            "--actor",
            "sup-1",
            "--role",
            "supervisor",
            "--at",
            (now - dt.timedelta(hours=1)).isoformat(),
        )[0]
        == 0
    )
    data = listing()
    delays = {f["notice"]: f["delay_seconds"] for f in data["findings"]}
    assert set(delays) == {"fault", "recovery"}  # neither sent: both overdue
    assert 7200 <= delays["fault"] < 7200 + 120 and 3600 <= delays["recovery"] < 3600 + 120
    # The operator phoned the desk 20 minutes after the fault: recorded, not sent again.
    at = (now - dt.timedelta(hours=2) + dt.timedelta(minutes=20)).isoformat()
    code, _, err = run(
        "incident",
        "notice",
        "--actor",
        "sup-1",
        "--role",
        "supervisor",
        "outage-0001",
        "--kind",
        "fault",
        "--at",
        at,
    )
    assert code == 0, err
    data = listing()
    assert [f["notice"] for f in data["findings"]] == ["recovery"]
    code, _, err = run(
        "incident",
        "notice",
        "--actor",
        "sup-1",
        "--role",
        "supervisor",
        "outage-0009",
        "--kind",
        "fault",
    )
    assert code == 2 and "no incident with incident_id='outage-0009'" in err
    month = data["months"][0]["month"]
    assert listing("--month", month)["outages"]
    assert listing("--month", "1999-01")["outages"] == []
    assert (
        run("outage", "list", "--actor", "audit-1", "--role", "auditor", "--month", "March")[0] == 2
    )


def test_security_incidents_and_hostile_arguments(url: str) -> None:
    code, out, err = run(
        "incident",
        "report",
        "--actor",
        "sup-1",
        "--role",
        "supervisor",
        "--kind",
        "leak",
        "--summary",
        "坐席导出文件外泄",
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["incident_id"] == "security-0001" and report["kind"] == "leak"
    (notice,) = report["notices"]
    due = dt.datetime.fromisoformat(notice["due_by"]) - dt.datetime.fromisoformat(report["at"])
    assert due == dt.timedelta(hours=24)
    code, out, _ = run("incident", "list", "--actor", "audit-1", "--role", "auditor")
    assert code == 0 and "security-0001  leak" in out and "NOT REPORTED (due by" in out

    code, _, err = run(
        "incident",
        "report",
        "--actor",
        "sup-1",
        "--role",
        "supervisor",
        "--kind",
        "alien",
        "--summary",
        "x",
    )
    assert code == 2 and "invalid choice" in err
    code, _, err = run(
        "incident",
        "report",
        "--actor",
        "sup-1",
        "--role",
        "supervisor",
        "--kind",
        "loss",
        "--summary",
        "请回电 13912345678",
    )
    assert code == 2 and "13912345678" not in err and "phone number" in err
    code, _, err = run(
        "incident",
        "report",
        "--actor",
        "sup-1",
        "--role",
        "supervisor",
        "--kind",
        "loss",
        "--summary",
        "泄" * 200_000,
    )
    assert code == 2 and "longer than 2000" in err and len(err) < 1100 and err.count("\n") == 1
    code, _, err = run(
        "incident",
        "report",
        "--actor",
        "sup-1",
        "--role",
        "supervisor",
        "--kind",
        "loss",
        "--summary",
        "一行\n两行",
    )
    assert code == 2 and "control characters" in err
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    code, _, err = run(
        "incident",
        "report",
        "--actor",
        "sup-1",
        "--role",
        "supervisor",
        "--kind",
        "loss",
        "--summary",
        "x",
        "--at",
        future,
    )
    assert code == 2 and "later than now" in err
    code, _, err = run("outage", "start", "--actor", "sup-1", "--role", "supervisor", "--cause", "")
    assert code == 2 and "must not be empty" in err
    code, _, err = run("outage", "end", "--actor", "sup-1", "--role", "supervisor")
    assert code == 2 and "no outage is open" in err
    code, _, err = run(
        "--db", "memory://", "outage", "list", "--actor", "audit-1", "--role", "auditor"
    )
    assert code == 2 and "needs a database" in err
    code, out, _ = run("incident", "list", "--actor", "audit-1", "--role", "auditor", "--json")
    assert [i["incident_id"] for i in json.loads(out)["incidents"]] == ["security-0001"]


def test_a_tampered_log_is_refused_with_exit_3_and_found_by_the_audit(url: str) -> None:
    assert (
        run("outage", "start", "--actor", "sup-1", "--role", "supervisor", "--cause", "停电")[0]
        == 0
    )
    assert (
        run(
            "incident",
            "report",
            "--actor",
            "sup-1",
            "--role",
            "supervisor",
            "--kind",
            "tampering",
            "--summary",
            "篡改",
        )[0]
        == 0
    )
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(t.incident_records.delete().where(t.incident_records.c.seq == 1))
    finally:
        engine.dispose()
    code, _, err = run("outage", "list", "--actor", "audit-1", "--role", "auditor")
    assert code == 3 and "record 1 is missing" in err and "audit verify" in err
    code, out, _ = run("audit", "verify", "--actor", "audit-1", "--role", "auditor")
    assert code == 1 and "incident" in out


def test_the_notices_go_through_a_real_mail_server_at_once(url: str, tmp_path: Path) -> None:
    """With ``[smtp] to_110`` configured, ``outage start`` mails the fault notice to the
    desk through a real SMTP server on 127.0.0.1 (aiosmtpd): Chinese text naming the
    incident and its times, the notice's key in the mail, no phone number; with the
    server gone the record is still written and the notice waits."""
    config = tmp_path / "movecar.toml"
    with mail_server() as server:
        config.write_text(
            f'[smtp]\nurl = "{server.url()}"\nfrom = "114@example.cn"\n'
            'to_110 = ["110-desk@example.gov.cn"]\n',
            encoding="utf-8",
        )
        code, out, err = run(
            "--config",
            str(config),
            "outage",
            "start",
            "--actor",
            "sup-1",
            "--role",
            "supervisor",
            "--cause",
            "机房断电",
        )
        assert (code, err) == (0, "")
        assert "fault notice: sent" in out
        [mail] = server.received
    assert mail.rcpt_tos == ("110-desk@example.gov.cn",)
    assert mail.message["X-Movecar-Key"] == "incident:outage-0001:fault"
    assert "outage-0001" in str(mail.message["Subject"])
    body = mail.message.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert "机房断电" in text and "北京时间" in text and "0519" not in text

    config.write_text(
        f'[smtp]\nurl = "smtp://127.0.0.1:{closed_port()}"\nfrom = "114@example.cn"\n'
        'to_110 = ["110-desk@example.gov.cn"]\n',
        encoding="utf-8",
    )
    code, out, err = run(
        "--config",
        str(config),
        "outage",
        "end",
        "--actor",
        "sup-1",
        "--role",
        "supervisor",
        "--json",
    )
    assert code == 0 and "recovery notice of outage-0001 still due" in err
    assert [n["sent_at"] is None for n in json.loads(out)["notices"]] == [False, True]


def test_the_notices_go_to_the_configured_log(url: str, tmp_path: Path) -> None:
    log = tmp_path / "110-notices.log"
    config = tmp_path / "movecar.toml"
    config.write_text(f'[notices]\nlog = "{log}"\n', encoding="utf-8")
    code, _, err = run(
        "--config",
        str(config),
        "incident",
        "report",
        "--actor",
        "sup-1",
        "--role",
        "supervisor",
        "--kind",
        "loss",
        "--summary",
        "备份丢失",
    )
    assert (code, err) == (0, "")
    (line,) = log.read_text(encoding="utf-8").splitlines()
    assert "key=incident:security-0001:security_report" in line and "备份丢失" in line
    code, out, _ = run(
        "--config", str(config), "incident", "list", "--actor", "audit-1", "--role", "auditor"
    )
    assert code == 0 and "reported" in out and "NOT REPORTED" not in out
