"""Every sub-command, fed bad input of each kind: the right exit code, one line on stderr,
never a traceback, never a secret or a full phone number."""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from movecar_adapters import connect
from movecar_adapters.cli import main
from movecar_adapters.crypto import KeyRing
from movecar_adapters.sql import schema as t
from movecar_core.testing.contracts import sample_history

SECRET_PW = "s3cret-Pw"
KEY = KeyRing.generate()
OTHER_KEY = KeyRing.generate()
DEAD_SERVER = f"postgresql+psycopg://movecar:{SECRET_PW}@127.0.0.1:1/movecar"
PHONES = ("13912345678", "13800001111")  # the sample cases' owner and requester


@pytest.fixture(scope="module")
def stocked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database with two cases, one with a malformed row (a bad timestamp)."""
    folder = tmp_path_factory.mktemp("hostile")
    url = f"sqlite:///{folder / 'stocked.db'}"
    with connect(url, keys=KeyRing([("k1", KEY)]), environ={}) as mc:
        for case_id in ("good-1", "good-2"):
            mc.store.append(case_id, sample_history(case_id), expected_version=0)
    return folder / "stocked.db"


def run(
    argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    for name in (
        "MOVECAR_KEYS", "MOVECAR_DB_URL", "MOVECAR_CONFIG", "MOVECAR_DISPATCH", "MOVECAR_SMTP_URL",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def cases(db: Path, tmp: Path) -> list[tuple[str, list[str], dict[str, str], int, str]]:
    """(name, argv, environment, exit code, a word the one line must contain)."""
    url = f"sqlite:///{db}"
    keys = {"MOVECAR_KEYS": f"k1={KEY}"}
    bad_csv = tmp / "bad.csv"
    bad_csv.write_text("2024-04,1,000\n", encoding="utf-8")
    bad_toml = tmp / "bad.toml"
    bad_toml.write_text("[engine]\ndispatch = 'sometimes'\n", encoding="utf-8")
    return [
        ("no command", [], {}, 2, "required"),
        ("unknown command", ["frobnicate"], {}, 2, "invalid choice"),
        ("unknown option", ["price", "--volume", "1", "--bogus"], {}, 2, "unrecognized"),
        ("price: not digits", ["price", "--volume", "1,000"], {}, 2, "ASCII digits"),
        ("price: too many", ["price", "--volume", "999999999999"], {}, 2, "service year"),
        ("price: mode", ["price", "--volume", "1", "--mode", "cheap"], {}, 2, "invalid choice"),
        ("settle: nothing", ["settle"], {}, 2, "--month"),
        ("settle: bad month", ["settle", "--actor", "sup-1", "--role", "supervisor", "--month", "2024-13"], {}, 2, "month"),
        ("settle: bad row", ["settle", str(bad_csv)], {}, 2, "3 fields"),
        ("settle: no file", ["settle", str(tmp / "nope.csv")], {}, 3, "cannot read"),
        ("settle: both", ["settle", str(bad_csv), "--month", "2024-05"], {}, 2, "not both"),
        ("settle: dead db", ["settle", "--actor", "sup-1", "--role", "supervisor", "--month", "2024-05", "--db", DEAD_SERVER], keys, 3, "cannot open"),
        ("settle: no keys", ["settle", "--actor", "sup-1", "--role", "supervisor", "--month", "2024-05", "--db", url], {}, 3, "MOVECAR_KEYS"),
        ("settle: no such file", ["settle", "--actor", "sup-1", "--role", "supervisor", "--month", "2024-05", "--db", f"sqlite:///{tmp}/typo.db"], keys, 3, "no such file"),
        ("settle: month not over", ["settle", "--actor", "sup-1", "--role", "supervisor", "--month", "2099-05", "--db", url], keys, 2, "not over"),
        ("settle: outside term", ["settle", "--actor", "sup-1", "--role", "supervisor", "--month", "2020-05", "--db", url], keys, 2, "outside"),
        ("report: nothing", ["report"], {}, 2, "--month"),
        ("report: bad month", ["report", "--actor", "sup-1", "--role", "supervisor", "--month", "2024-13"], {}, 2, "month"),
        ("report: bad address", ["report", "--actor", "sup-1", "--role", "supervisor", "--month", "2024-04", "--email", "a b@x.cn"], {}, 2, "e-mail"),
        ("report: header injection", ["report", "--actor", "sup-1", "--role", "supervisor", "--month", "2024-04", "--email", "a@x.cn\r\nBcc: b@y.cn"], {}, 2, "e-mail"),
        ("report: dead db", ["report", "--actor", "sup-1", "--role", "supervisor", "--month", "2024-04", "--db", DEAD_SERVER], keys, 3, "cannot open"),
        ("report: no keys", ["report", "--actor", "sup-1", "--role", "supervisor", "--month", "2024-04", "--db", url], {}, 3, "MOVECAR_KEYS"),
        ("report: month not over", ["report", "--actor", "sup-1", "--role", "supervisor", "--month", "2099-05", "--db", url], keys, 2, "not over"),
        ("report: no folder", ["report", "--actor", "sup-1", "--role", "supervisor", "--month", "2024-04", "--db", url, "--csv", str(tmp / "no" / "r.csv")], keys, 3, "no folder"),
        ("report: no mail server", ["report", "--actor", "sup-1", "--role", "supervisor", "--month", "2024-04", "--db", url, "--email", "a@x.cn"], keys, 3, "MOVECAR_SMTP_URL"),
        ("report: bad mail url", ["report", "--actor", "sup-1", "--role", "supervisor", "--month", "2024-04", "--db", url, "--email", "a@x.cn"], {**keys, "MOVECAR_SMTP_URL": f"smtp://u:{SECRET_PW}@mail.example.cn:25"}, 3, "unencrypted"),
        ("report: dead mail server", ["report", "--actor", "sup-1", "--role", "supervisor", "--month", "2024-04", "--db", url, "--email", "a@x.cn"], {**keys, "MOVECAR_SMTP_URL": f"smtp://u:{SECRET_PW}@127.0.0.1:1"}, 3, "connection refused"),
        ("audit: no keys", ["audit", "verify", "--actor", "audit-1", "--role", "auditor", "--db", url], {}, 3, "MOVECAR_KEYS"),
        ("audit: key is not id=KEY", ["audit", "verify", "--actor", "audit-1", "--role", "auditor", "--db", url], {"MOVECAR_KEYS": KEY}, 3, "entry 1"),
        ("audit: key reversed", ["audit", "verify", "--actor", "audit-1", "--role", "auditor", "--db", url], {"MOVECAR_KEYS": f"{KEY}=k1"}, 3, "entry 1"),
        ("audit: wrong key", ["audit", "verify", "--actor", "audit-1", "--role", "auditor", "--db", url], {"MOVECAR_KEYS": f"k1={OTHER_KEY}"}, 3, ""),
        ("audit: other key id", ["audit", "verify", "--actor", "audit-1", "--role", "auditor", "--db", url], {"MOVECAR_KEYS": f"k2={KEY}"}, 3, ""),
        ("audit: bad expect", ["audit", "verify", "--actor", "audit-1", "--role", "auditor", "--db", url, "--expect-report", "x"], keys, 2, "expect-report"),
        ("audit: dead db", ["audit", "verify", "--actor", "audit-1", "--role", "auditor", "--db", DEAD_SERVER], keys, 3, "cannot open"),
        ("audit: no such file", ["audit", "verify", "--actor", "audit-1", "--role", "auditor", "--db", f"sqlite:///{tmp}/typo.db"], keys, 3, "no such file"),
        ("db upgrade: no folder", ["db", "upgrade", "--db", f"sqlite:///{tmp}/no/dir/x.db"], {}, 3, "cannot open"),
        ("db upgrade: unknown db", ["db", "upgrade", "--db", "oracle://u:p@h/x"], {}, 3, "oracle"),
        ("purge: bad time", ["retention", "purge", "--db", url, "--now", "soon"], {}, 2, "ISO 8601"),
        ("purge: naive time", ["retention", "purge", "--db", url, "--now", "2028-01-01T00:00"], {}, 2, "offset"),
        ("purge: future time", ["retention", "purge", "--db", url, "--now", "2099-01-01T00:00+08:00"], {}, 2, "later than the clock"),
        ("keys new: bad id", ["keys", "new", "--id", "no spaces"], {}, 2, "key id"),
        ("keys rotate: no keys", ["keys", "rotate", "--db", url], {}, 3, "MOVECAR_KEYS"),
        ("worker: threads", ["worker", "--concurrency", "0"], {}, 2, "1 to 64"),
        ("worker: memory", ["worker", "--db", "memory://"], {}, 2, "needs a database"),
        ("worker: factory", ["worker", "--factory", "no_such_mod:build"], {}, 3, "cannot import"),
        ("worker: not engine", ["worker", "--factory", "os:getcwd"], {}, 2, "not MoveCar"),
        ("outage: naive at", ["outage", "start", "--actor", "sup-1", "--role", "supervisor", "--db", url, "--cause", "停电", "--at", "2025-03-14T08:00"], keys, 2, "offset"),
        ("outage: phone in cause", ["outage", "start", "--actor", "sup-1", "--role", "supervisor", "--db", url, "--cause", "请回电 13912345678"], keys, 2, "phone number"),
        ("outage: none open", ["outage", "end", "--actor", "sup-1", "--role", "supervisor", "--db", url], keys, 2, "no outage is open"),
        ("outage: bad month", ["outage", "list", "--actor", "audit-1", "--role", "auditor", "--db", url, "--month", "2024-13"], keys, 2, "YYYY-MM"),
        ("outage: memory", ["outage", "list", "--actor", "audit-1", "--role", "auditor", "--db", "memory://"], keys, 2, "needs a database"),
        ("outage: no keys", ["outage", "list", "--actor", "audit-1", "--role", "auditor", "--db", url], {}, 3, "MOVECAR_KEYS"),
        ("outage: dead db", ["outage", "list", "--actor", "audit-1", "--role", "auditor", "--db", DEAD_SERVER], keys, 3, "cannot open"),
        ("incident: kind", ["incident", "report", "--actor", "sup-1", "--role", "supervisor", "--db", url, "--kind", "ufo", "--summary", "x"], keys, 2, "invalid choice"),
        ("incident: huge", ["incident", "report", "--actor", "sup-1", "--role", "supervisor", "--db", url, "--kind", "leak", "--summary", "泄" * 100_000], keys, 2, "longer than"),
        ("incident: unknown", ["incident", "notice", "--actor", "sup-1", "--role", "supervisor", "outage-0001", "--db", url, "--kind", "fault"], keys, 2, "no incident"),
        ("demo: dead db", ["demo", "--db", DEAD_SERVER], keys, 3, "cannot open"),
        ("config: missing", ["--config", str(tmp / "none.toml"), "demo", "--sqlite"], {}, 3, "not found"),
        ("config: bad", ["--config", str(bad_toml), "demo", "--sqlite"], {}, 3, "inline"),
    ]  # fmt: skip


def test_every_sub_command_fails_cleanly(
    stocked: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    failures = []
    for name, argv, env, want, word in cases(stocked, tmp_path):
        code, out, err = run(argv, env, monkeypatch)
        secrets = [SECRET_PW, KEY, OTHER_KEY, *PHONES]
        problems = []
        if code != want:
            problems.append(f"exit {code}, want {want}")
        if err.count("\n") != 1 or len(err) > 1000:
            problems.append(f"stderr is not one line: {err!r:.200}")
        if "Traceback" in err or "Traceback" in out:
            problems.append("a traceback")
        if word and word not in err:
            problems.append(f"{word!r} not in {err!r:.200}")
        if any(s in out + err for s in secrets):
            problems.append("a secret or a full phone number")
        if problems:
            failures.append(f"{name}: {'; '.join(problems)}")
    assert failures == []


def test_a_wrong_key_cannot_verify_and_tampering_is_found(
    stocked: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{stocked}"
    code, out, _ = run(
        ["audit", "verify", "--actor", "audit-1", "--role", "auditor", "--db", url],
        {"MOVECAR_KEYS": f"k1={OTHER_KEY}"},
        monkeypatch,
    )
    assert code == 3 and "CANNOT VERIFY" in out and "TAMPERED" not in out
    code, out, _ = run(
        ["audit", "verify", "--actor", "audit-1", "--role", "auditor", "--db", url, "--json"],
        {"MOVECAR_KEYS": f"k1={KEY}"},
        monkeypatch,
    )
    assert code == 0 and '"ok": true' in out
    # One malformed row (a time that is no time) is a finding naming it; the rest is checked.
    copy = tmp_path / "copy.db"
    with sqlite3.connect(stocked) as source, sqlite3.connect(copy) as target:
        source.backup(target)  # the WAL's pages too
    engine = sa.create_engine(f"sqlite:///{copy}")
    with engine.begin() as conn:
        conn.execute(t.cases.update().where(t.cases.c.case_id == "good-1").values(state="x"))
        conn.exec_driver_sql(
            "UPDATE mc_cases SET opened_at = 'not a time' WHERE case_id = 'good-2'"
        )
    engine.dispose()
    code, out, err = run(
        [
            "audit",
            "verify",
            "--actor",
            "audit-1",
            "--role",
            "auditor",
            "--db",
            f"sqlite:///{copy}",
            "--json",
        ],
        {"MOVECAR_KEYS": f"k1={KEY}"},
        monkeypatch,
    )
    assert code == 1, err
    assert "good-1" in out and "good-2" in out and "unreadable" in out


def test_a_closed_stdout_ends_quietly(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "movecar"
    proc = subprocess.Popen(
        [str(exe), "demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `| head` that has read enough: every write now fails with EPIPE
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0
    assert err == b""


@pytest.mark.parametrize("kind", ["config", "scenario", "grid"])
def test_toml_nested_thousands_deep_is_a_typed_error(kind: str, tmp_path: Path) -> None:
    """tomllib recurses per level: a hostile file nested deep must not end in a traceback."""
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    argv = {
        "config": ["--config", str(deep), "db", "upgrade"],
        "scenario": ["simulate", str(deep), "--store", "memory"],
        "grid": ["sweep", str(deep)],
    }[kind]
    done = subprocess.run(
        [sys.executable, "-m", "movecar_adapters.cli", *argv],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode in (2, 3), done.stderr
    assert "Traceback" not in done.stderr and "too deep" in done.stderr
