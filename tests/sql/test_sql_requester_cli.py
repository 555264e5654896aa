"""`movecar requester block|unblock|list|show` on a real database, and its refusals."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
from pathlib import Path

import pytest
from sqlsupport import KEY_1, Databases

from movecar_adapters.cli import main
from movecar_adapters.connect import connect
from movecar_adapters.sql import SqlStore, verify
from movecar_core.calendar import SHANGHAI
from movecar_core.clock import ManualClock
from movecar_core.requesters import RequesterBlocked, RequestLimitReached

NUMBER = "13812345678"
WANG = ("--actor", "sup-wang", "--role", "supervisor")
DESK_110 = ("--actor", "110-desk-2", "--role", "command_centre")


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def deployment(
    databases: Databases, backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A migrated database, the keys in the environment, limits in movecar.toml."""
    url = databases.new(backend)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MOVECAR_KEYS", f"k1={KEY_1}")
    monkeypatch.setenv("MOVECAR_DB_URL", url)
    for name in ("MOVECAR_CONFIG", "MOVECAR_CALENDAR"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "movecar.toml").write_text("[requesters]\nper_day = 1\n", encoding="utf-8")
    return url


def test_the_block_list_from_the_command_line(deployment: str) -> None:
    code, out, _ = run(
        "requester", "block", "+86 138 1234 5678", "--reason", "一天 9 次恶意挪车", *WANG
    )
    assert code == 0 and out.strip() == "blocked 138****5678: 一天 9 次恶意挪车 (by sup-wang)"
    code, out, _ = run("requester", "list", "--json", *DESK_110)  # Party A reads the list
    [entry] = json.loads(out)
    assert (entry["requester"], entry["actor"]) == ("138****5678", "sup-wang")
    # the engine of the deployment refuses the number, in any spelling
    mc = connect(clock=ManualClock(dt.datetime(2025, 3, 3, 9, 0, tzinfo=SHANGHAI)))
    with pytest.raises(RequesterBlocked):
        mc.open_case(plate="苏D12345", location="x", requester_phone=NUMBER)
    mc.close()
    code, out, _ = run("requester", "show", NUMBER, "--day", "2025-03-03", "--json", *WANG)
    shown = json.loads(out)
    assert shown["blocked"] and shown["per_day"] == 1 and shown["per_month"] == 5
    code, out, _ = run(
        "requester", "unblock", NUMBER, "--reason", "书面道歉", "--actor", "sup-li",
        "--role", "supervisor",
    )  # fmt: skip
    assert code == 0 and "unblocked 138****5678" in out
    assert run("requester", "list", *WANG)[1].strip() == "no number is blocked"
    code, out, _ = run("requester", "list", "--history", "--json", *WANG)
    changes = json.loads(out)
    assert [(c["action"], c["actor"], c["reason"]) for c in changes] == [
        ("requester.block", "sup-wang", "一天 9 次恶意挪车"),
        ("requester.unblock", "sup-li", "书面道歉"),
    ]
    mc = connect(clock=ManualClock(dt.datetime(2025, 3, 3, 10, 0, tzinfo=SHANGHAI)))
    mc.open_case(plate="苏D12345", location="x", requester_phone=NUMBER)
    with pytest.raises(RequestLimitReached):  # per_day = 1 from movecar.toml
        mc.open_case(plate="苏D12345", location="x", requester_phone=NUMBER)
    store = mc.store
    assert isinstance(store, SqlStore)
    assert verify(store).ok  # the access log's entries have their leaves
    mc.close()
    code, out, _ = run("requester", "show", NUMBER, "--day", "2025-03-03", *WANG)
    assert out.strip() == (
        "138****5678 on 2025-03-03: 1 request(s) that day, 1 that month (limits 1 a day, 5 a month)"
    )
    for _, printed, said in [run("requester", "list", "--history", *WANG)]:
        assert NUMBER not in printed + said and NUMBER[3:] not in printed + said


@pytest.mark.parametrize(
    ("argv", "code", "said"),
    [
        (["block", "12345", "--reason", "r", *WANG], 2, "invalid phone"),
        (["block", NUMBER, "--reason", "", *WANG], 2, "reason"),
        (["block", NUMBER, "--reason", "x" * 201, *WANG], 2, "longer than 200"),
        (["block", NUMBER, "--reason", "a\nb", *WANG], 2, "U+000A"),
        (["block", NUMBER, "--reason", "r", "--actor", " ", "--role", "supervisor"], 2, "actor"),
        (["block", NUMBER, "--reason", "r", "--actor", "a", "--role", "janitor"], 2, "choice"),
        (["block", NUMBER, "--reason", "r", "--actor", "seat-3", "--role", "agent"], 2,
         "may not requester.block"),
        (["list", "--actor", "audit-1", "--role", "auditor"], 2, "may not requester.list"),
        (["unblock", NUMBER, "--reason", "r", *WANG], 2, "not blocked"),
        (["show", NUMBER, "--day", "2025-3-3", *WANG], 2, "YYYY-MM-DD"),
        (["block", NUMBER, *WANG], 2, "--reason"),
        (["list", "--actor", "a"], 2, "--role"),
        (["frobnicate"], 2, "invalid choice"),
    ],
)  # fmt: skip
def test_wrong_input_is_one_line_and_exit_2_without_the_number(
    deployment: str, argv: list[str], code: int, said: str
) -> None:
    got, out, err = run("requester", *argv)
    assert got == code and said in err and out == ""
    assert len(err.strip().splitlines()) == 1
    assert NUMBER not in err and NUMBER[3:] not in err


def test_a_number_blocked_twice_and_the_environment_errors(
    deployment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("requester", "block", NUMBER, "--reason", "r", *WANG)[0] == 0
    code, _, err = run("requester", "block", NUMBER, "--reason", "r", *WANG)
    assert code == 2 and "blocked already" in err and NUMBER not in err
    assert run("--db", "memory://", "requester", "list", *WANG)[0] == 2  # nothing kept
    monkeypatch.delenv("MOVECAR_KEYS")
    code, _, err = run("requester", "list", *WANG)
    assert code == 3 and "MOVECAR_KEYS" in err


def test_a_refused_role_is_logged(deployment: str) -> None:
    code, _, err = run(
        "requester", "block", NUMBER, "--reason", "r", "--actor", "seat-3", "--role", "agent"
    )
    assert code == 2 and "may not requester.block" in err
    mc = connect()
    store = mc.store
    assert isinstance(store, SqlStore)
    denied = [e for e in store.access_log() if e["action"] == "denied:requester.block"]
    assert [(e["actor"], e["detail"]) for e in denied] == [("seat-3", "role agent")]
    assert run("requester", "list", *WANG)[1].strip() == "no number is blocked"
    mc.close()
