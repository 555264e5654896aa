"""`movecar report --month`: the report from the database, its files and its mail."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
from pathlib import Path

import openpyxl
import pytest
from mail_support import attachments_of, closed_port, mail_server
from sqlsupport import KEY_1, Databases

from movecar_adapters.cli import main
from movecar_adapters.crypto import KeyRing
from movecar_adapters.sql import SqlStore, make_engine
from movecar_core.calendar import SHANGHAI
from movecar_core.settlement import ServiceMonth
from movecar_core.testing.contracts import sample_history


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def april_db(
    databases: Databases, backend: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> str:
    url = databases.new(backend)
    store = SqlStore(make_engine(url), KeyRing([("k1", KEY_1)]))
    for i, day in enumerate((2, 2, 9, 30)):
        at = dt.datetime(2024, 4, day, 10 + i, tzinfo=SHANGHAI)
        store.append(f"case-{i}", sample_history(f"case-{i}", at=at), expected_version=0)
    store.engine.dispose()
    monkeypatch.chdir(tmp_path)  # no movecar.toml of the developer's
    for name in ("MOVECAR_CONFIG", "MOVECAR_SMTP_URL", "MOVECAR_DB_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MOVECAR_KEYS", f"k1={KEY_1}")
    return url


def test_report_writes_both_files_and_mails_them(
    april_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv_path, xlsx_path = tmp_path / "april.csv", tmp_path / "april.xlsx"
    with mail_server() as server:
        monkeypatch.setenv("MOVECAR_SMTP_URL", server.url())
        code, out, err = run(
            "report", "--actor", "sup-1", "--role", "supervisor",
            "--db", april_db, "--month", "2024-04", "--csv", str(csv_path),
            "--xlsx", str(xlsx_path), "--email", "zhihui@gaj.example.gov.cn", "--json",
        )  # fmt: skip
        assert (code, err) == (0, "")
        [mail] = server.received
    data = json.loads(out)
    assert data["billable"] == data["inbound"] == data["connected"] == 4
    assert data["fee"] == "7.60" and data["unit_price"] == "1.90"
    assert [d["billable"] for d in data["days"] if d["billable"]] == [2, 1, 1]
    assert data["files"] == [str(csv_path), str(xlsx_path)]
    assert data["mailed_to"] == ["zhihui@gaj.example.gov.cn"]
    assert data["mail_key"].startswith("monthly_report:2024-04:on-demand:")
    assert mail.message["X-Movecar-Key"] == data["mail_key"]
    files = attachments_of(mail.message)
    assert files["114移车话务量报表_2024-04.csv"][1] == csv_path.read_bytes()
    assert files["114移车话务量报表_2024-04.xlsx"][1] == xlsx_path.read_bytes()
    book = openpyxl.load_workbook(xlsx_path)
    total = list(book["每日话务量"].iter_rows(values_only=True))[-1]
    assert total == ("合计", 4, 4, 4)
    assert csv_path.stat().st_mode & 0o077 == 0  # 四: confidential, the owner's only

    # Again, as a table: the recorded report is read back, not recorded twice.
    code, out, _ = run(
        "report", "--actor", "sup-1", "--role", "supervisor", "--db", april_db, "--month", "2024-04"
    )
    assert code == 0
    assert "billable" in out and "7.60 yuan" in out and data["digest"] in out
    assert "busiest day   2024-04-02 (2 inbound)" in out
    store = SqlStore(make_engine(april_db), KeyRing([("k1", KEY_1)]))
    assert [r.month for r in store.reports()] == [ServiceMonth(2024, 4)]
    store.engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_report_refusals(april_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*argv: str) -> tuple[int, str]:
        code, out, err = run(
            "report", "--actor", "sup-1", "--role", "supervisor", "--db", april_db, *argv
        )
        assert out == "" and err.count("\n") == 1 and "Traceback" not in err
        return code, err

    assert refused("--month", "2024-13")[0] == 2
    assert refused("--month", "2024-04", "--email", "not-an-address")[0] == 2
    code, err = refused("--month", "2024-04", "--email", "a@example.cn")
    assert code == 3 and "MOVECAR_SMTP_URL" in err  # no mail server configured
    code, err = refused("--month", "2024-04", "--csv", str(tmp_path / "no" / "such.csv"))
    assert code == 3 and "no folder" in err
    assert refused("--month", "2024-04", "--csv", str(tmp_path))[0] == 3
    assert refused("--month", "2099-01")[0] == 2  # outside the contract term
    assert refused("--month", "2024-04", "--csv", "x.csv", "--xlsx", "x.csv")[0] == 2
    monkeypatch.setenv("MOVECAR_SMTP_URL", f"smtp://u:hunter2@127.0.0.1:{closed_port()}")
    code, err = refused("--month", "2024-04", "--email", "a@example.cn")
    assert code == 3 and "connection refused" in err and "hunter2" not in err
    assert not list(tmp_path.glob("*.csv"))
    code, _, err = run(
        "report",
        "--actor",
        "sup-1",
        "--role",
        "supervisor",
        "--db",
        "memory://",
        "--month",
        "2024-04",
    )
    assert code == 2 and "needs a database" in err
