"""`movecar db upgrade`, `audit verify`, `retention purge`, `keys new|rotate`."""

from __future__ import annotations

import contextlib
import datetime as dt
import io

import pytest
from sqlsupport import KEY_1, KEY_2, Databases

from movecar_adapters.cli import main
from movecar_adapters.crypto import KeyRing
from movecar_adapters.sql import SqlStore, current_revision, head_revision, make_engine
from movecar_adapters.sql import schema as t
from movecar_core.errors import CasePurged
from movecar_core.retention import PURGE_CLOCK_SKEW
from movecar_core.settlement import ServiceMonth
from movecar_core.testing.contracts import sample_history


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_db_upgrade_builds_the_schema(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    code, out, _ = run("--db", url, "db", "upgrade")
    assert code == 0 and f"empty -> {head_revision()}" in out
    assert current_revision(make_engine(url)) == head_revision()
    monkeypatch.setenv("MOVECAR_DB_URL", url)  # the environment is the fallback
    code, out, _ = run("db", "upgrade")
    assert code == 0 and f"{head_revision()} -> {head_revision()}" in out


def test_audit_verify_names_the_tampered_case(
    databases: Databases, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = databases.new(backend)
    store = SqlStore(make_engine(url), KeyRing([("k1", KEY_1)]))
    for case_id in ("clean", "dirty"):
        store.append(case_id, sample_history(case_id), expected_version=0)
    store.write_report(ServiceMonth(2025, 3), at=dt.datetime(2025, 4, 1, tzinfo=dt.UTC))
    [report] = store.reports()
    monkeypatch.delenv("MOVECAR_KEYS", raising=False)
    assert (
        run("audit", "verify", "--actor", "audit-1", "--role", "auditor", "--db", url)[0] == 3
    )  # no keys configured: cannot verify
    monkeypatch.setenv("MOVECAR_KEYS", f"k1={KEY_1}")
    code, out, _ = run(
        "--db",
        url,
        "audit",
        "verify",
        "--actor",
        "audit-1",
        "--role",
        "auditor",
        "--expect-report",
        f"2025-03={report.digest}",
    )
    assert code == 0 and "2 cases, 10 events, 1 reports: all verify" in out
    with store.engine.begin() as conn:
        conn.execute(
            t.events.delete().where(t.events.c.case_id == "dirty", t.events.c.version == 3)
        )
    code, out, _ = run("--db", url, "audit", "verify", "--actor", "audit-1", "--role", "auditor")
    assert code == 1
    assert "TAMPERED case dirty" in out and "clean" not in out
    store.engine.dispose()


def test_retention_purge_and_dry_run(databases: Databases, monkeypatch: pytest.MonkeyPatch) -> None:
    url = databases.new("sqlite")
    store = SqlStore(make_engine(url), KeyRing([("k1", KEY_1)]))
    # Closed 2021-03-01 08:33: due on 2024-03-01 08:33, in the past of the wall clock,
    # which the CLI's purge cannot run ahead of.
    opened = dt.datetime(2021, 3, 1, 8, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    store.append("old", sample_history("old", at=opened), expected_version=0)
    store.append("held", sample_history("held", at=opened), expected_version=0)
    store.set_legal_hold("held", "court", actor="legal")
    monkeypatch.delenv("MOVECAR_KEYS", raising=False)  # purging needs no key
    later = "2024-03-02T00:00:00+08:00"
    code, out, _ = run("--db", url, "retention", "purge", "--dry-run", "--now", later)
    assert code == 0 and "would purge old" in out and "kept held (legal hold)" in out
    assert len(store.load("old")) == 5
    code, out, _ = run("--db", url, "retention", "purge", "--now", "2024-02-28T00:00:00+08:00")
    assert "purged 0 cases" in out
    code, out, _ = run("--db", url, "retention", "purge", "--now", later)
    assert code == 0 and "purged old" in out
    with pytest.raises(CasePurged):
        store.load("old")
    assert run("--db", url, "retention", "purge", "--now", "2024-03-02T00:00")[0] == 2
    monkeypatch.setenv("MOVECAR_KEYS", "garbage")  # purging needs no key, so it is not read
    assert run("--db", url, "retention", "purge", "--dry-run", "--now", later)[0] == 0
    store.engine.dispose()


def test_retention_purge_refuses_a_future_now(
    databases: Databases, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack: `--now` set 3 years after a young case closed. Exit 2, nothing purged."""
    url = databases.new("sqlite")
    store = SqlStore(make_engine(url), KeyRing([("k1", KEY_1)]))
    wall = dt.datetime.now(dt.UTC)
    store.append("young", sample_history("young", at=wall - dt.timedelta(days=1)), 0)
    monkeypatch.delenv("MOVECAR_KEYS", raising=False)
    for ahead in (dt.timedelta(days=3 * 366), PURGE_CLOCK_SKEW + dt.timedelta(minutes=1)):
        forged = (wall + ahead).isoformat(timespec="seconds")
        for extra in ((), ("--dry-run",)):
            code, out, err = run("--db", url, "retention", "purge", "--now", forged, *extra)
            assert (code, out) == (2, "") and "later than the clock" in err, err
            assert err.count("\n") == 1 and "二(四)" in err
    assert len(store.load("young")) == 5
    assert store.access_log() == []
    # Within the skew it runs (as of the wall clock): nothing is due, nothing is purged.
    soon = (wall + dt.timedelta(minutes=1)).isoformat()
    code, out, _ = run("--db", url, "retention", "purge", "--now", soon)
    assert code == 0 and "purged 0 cases" in out
    store.engine.dispose()


def test_keys_new_and_rotate(databases: Databases, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run("keys", "new", "--id", "k9")
    key_id, _, key = out.strip().partition("=")
    assert code == 0 and key_id == "k9" and KeyRing([("k9", key)]).current_id == "k9"
    assert "MOVECAR_KEYS" in err
    url = databases.new("sqlite")
    store = SqlStore(make_engine(url), KeyRing([("k1", KEY_1)]))
    store.append("c", sample_history("c"), expected_version=0)
    monkeypatch.setenv("MOVECAR_KEYS", f"k2={KEY_2},k1={KEY_1}")
    code, out, _ = run("--db", url, "keys", "rotate")
    assert code == 0 and "re-encrypted 2 events under key 'k2'" in out
    assert list(SqlStore(store.engine, KeyRing([("k2", KEY_2)])).load("c")) == sample_history("c")
    store.engine.dispose()


def test_settle_a_month_from_the_database(
    databases: Databases, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from movecar_adapters import connect
    from movecar_core.calendar import SHANGHAI
    from movecar_core.clock import ManualClock

    url = databases.new(backend)
    clock = ManualClock(dt.datetime(2024, 5, 20, 9, 0, tzinfo=SHANGHAI))
    with connect(url, keys=KeyRing([("k1", KEY_1)]), clock=clock, environ={}) as mc:
        for i in range(2):
            mc.open_case(plate="苏D12345", location=f"湖塘 {i}", requester_phone="13800001111")
    monkeypatch.setenv("MOVECAR_KEYS", f"k1={KEY_1}")
    code, out, err = run(
        "settle",
        "--actor",
        "sup-1",
        "--role",
        "supervisor",
        "--month",
        "2024-05",
        "--db",
        url,
        "--json",
    )
    assert code == 0, err
    first = json.loads(out)
    assert (first["billable_calls"], first["unit_price"], first["provisional_fee"]) == (
        2,
        "1.90",
        "3.80",
    )
    assert first["deadlines"]["report_due"] == "2024-06-05"
    code, out, _ = run(
        "settle",
        "--actor",
        "sup-1",
        "--role",
        "supervisor",
        "--month",
        "2024-05",
        "--db",
        url,
        "--json",
    )
    assert code == 0 and json.loads(out) == first  # recorded once; a repeat returns it
    code, out, err = run(
        "settle", "--actor", "sup-1", "--role", "supervisor", "--month", "2024-07", "--db", url
    )
    assert code == 2 and "next report due is 2024-06" in err
