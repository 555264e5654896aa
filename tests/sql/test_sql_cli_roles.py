"""Issue 13 on the command line: ``outage``, ``incident``, ``settle --month``, ``report`` and
``audit verify`` name ``--actor ID --role ROLE``; a role the permission table refuses exits
with PermissionDenied's code (2, docs/errors.md), prints one line and no traceback, writes
nothing but the refusal itself, ``denied:<action>`` in the access log (七(三)).

SQLite is enough here: the check runs before the command touches the store, and the
commands' own tests run on every database."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlsupport import KEY_1, Databases

from movecar_adapters.cli import main
from movecar_adapters.cli_common import Exit
from movecar_adapters.connect import connect
from movecar_adapters.crypto import KeyRing
from movecar_adapters.sql import make_engine
from movecar_adapters.sql import schema as t
from movecar_core.calendar import SHANGHAI
from movecar_core.clock import ManualClock
from movecar_core.roles import PERMISSIONS, Action, Role

#: Tables a refusal may add to: its access-log entry, and that entry's ledger leaf.
LOG_TABLES = {t.access_log.name, "mc_ledger_leaves", "mc_ledger_state"}


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def url(databases: Databases, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A SQLite database with two cases opened in May 2024 (a month long over)."""
    monkeypatch.chdir(tmp_path)  # no movecar.toml of the developer's
    for name in list(os.environ):
        if name.startswith("MOVECAR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MOVECAR_KEYS", f"k1={KEY_1}")
    db = databases.new("sqlite")
    clock = ManualClock(dt.datetime(2024, 5, 20, 9, 0, tzinfo=SHANGHAI))
    with connect(db, keys=KeyRing([("k1", KEY_1)]), clock=clock, environ={}) as mc:
        for i in range(2):
            mc.open_case(plate="苏D12345", location=f"湖塘 {i}", requester_phone="13800001111")
    monkeypatch.setenv("MOVECAR_DB_URL", db)
    return db


def counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {
                table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                for table in t.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def denials(url: str) -> list[tuple[str, str, str | None]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.access_log.c.actor, t.access_log.c.action, t.access_log.c.detail)
                .where(t.access_log.c.action.like("denied:%"))
                .order_by(t.access_log.c.id)
            ).all()
    finally:
        engine.dispose()
    return [(r.actor, r.action, r.detail) for r in rows]


def refused_role(action: Action) -> Role:
    return next(r for r in Role if r not in PERMISSIONS[action])


#: Each command, the action it needs, and its arguments after ``--actor``/``--role``.
COMMANDS: list[tuple[str, Action, list[str]]] = [
    ("outage start", Action.RECORD_INCIDENT, ["--cause", "核心交换机故障"]),
    ("outage end", Action.RECORD_INCIDENT, []),
    ("outage list", Action.READ_INCIDENTS, ["--json"]),
    ("incident report", Action.RECORD_INCIDENT, ["--kind", "leak", "--summary", "导出外泄"]),
    ("incident notice", Action.RECORD_INCIDENT, ["outage-0001", "--kind", "fault"]),
    ("incident list", Action.READ_INCIDENTS, []),
    ("settle", Action.SETTLE_MONTH, ["--month", "2024-05", "--json"]),
    ("report", Action.READ_REPORT, ["--month", "2024-05", "--csv", "r.csv"]),
    ("audit verify", Action.VERIFY_EVIDENCE, ["--json"]),
]


@pytest.mark.parametrize(("command", "action", "more"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_a_refused_role_is_logged_and_changes_nothing(
    url: str, command: str, action: Action, more: list[str]
) -> None:
    role = refused_role(action)
    before = counts(url)
    code, out, err = run(*command.split(), "--actor", "someone-7", "--role", role.value, *more)
    assert code == Exit.BAD_INPUT == 2, err
    assert out == "" and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith(f"movecar {command.split(maxsplit=1)[0]}")
    assert f"may not {action.value}" in err and "someone-7" in err
    after = counts(url)
    changed = {name for name in before if before[name] != after[name]}
    assert changed <= LOG_TABLES and after[t.access_log.name] == before[t.access_log.name] + 1
    assert denials(url) == [("someone-7", f"denied:{action.value}", f"role {role.value}")]
    assert not Path("r.csv").exists()


@pytest.mark.parametrize(("command", "action", "more"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_an_allowed_role_is_not_refused(
    url: str, command: str, action: Action, more: list[str]
) -> None:
    """The other side: every role the table allows gets past the check (the command may
    still fail on its own grounds, e.g. no open outage to end, but never as a refusal)."""
    # The supervisor first: a report of a month not yet settled also needs month.settle
    # (the test below); once settled, the command centre reads it.
    for role in sorted(PERMISSIONS[action], key=lambda r: (r is not Role.SUPERVISOR, r)):
        code, _, err = run(*command.split(), "--actor", "someone-7", "--role", role, *more)
        assert "may not" not in err and "Traceback" not in err, (role, err)
        assert code in (Exit.OK, Exit.BAD_INPUT), (role, err)
    assert denials(url) == []


def test_report_of_a_month_not_yet_settled_needs_a_role_that_may_settle(url: str) -> None:
    # The command centre reads reports (report.read) but does not settle (month.settle):
    # it cannot make the report the month's first, only read one a supervisor made.
    argv = ["report", "--month", "2024-05", "--json"]
    before = counts(url)
    code, out, err = run(*argv, "--actor", "110-desk-2", "--role", "command_centre")
    assert code == 2 and out == "" and "may not month.settle" in err
    assert before[t.monthly_reports.name] == counts(url)[t.monthly_reports.name] == 0
    assert denials(url) == [("110-desk-2", "denied:month.settle", "role command_centre")]
    assert run(*argv, "--actor", "sup-1", "--role", "supervisor")[0] == 0
    code, out, err = run(*argv, "--actor", "110-desk-2", "--role", "command_centre")
    assert code == 0 and '"billable": 2' in out, err
    assert len(denials(url)) == 1


@pytest.mark.parametrize(
    "command",
    ["outage start --cause x", "outage list", "incident list", "settle --month 2024-05",
     "report --month 2024-05", "audit verify"],
)  # fmt: skip
def test_the_actor_and_role_are_required_and_checked_before_the_database(
    url: str, command: str
) -> None:
    before = counts(url)
    code, _, err = run(*command.split())
    assert code == 2 and "--actor" in err and "Traceback" not in err
    code, _, err = run(*command.split(), "--actor", "sup-1", "--role", "janitor")
    assert code == 2 and "janitor" in err
    code, _, err = run(*command.split(), "--actor", " ", "--role", "supervisor")
    assert code == 2 and "actor_id" in err and "Traceback" not in err
    code, _, err = run(*command.split(), "--actor", "a\nb", "--role", "supervisor")
    assert code == 2 and "Traceback" not in err
    assert counts(url) == before  # refused before anything was opened, nothing logged


def test_settle_from_a_csv_names_no_actor(tmp_path: Path) -> None:
    volumes = tmp_path / "volumes.csv"
    volumes.write_text("2024-05,1000\n", encoding="utf-8")
    assert run("settle", str(volumes))[0] == 0
    code, _, err = run("settle", str(volumes), "--actor", "sup-1", "--role", "supervisor")
    assert code == 2 and "a CSV touches no record" in err
