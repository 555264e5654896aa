"""二(四) "所有移车服务数据及电话录音资料，必须保存 3 年": purge after 3 years, never before."""

from __future__ import annotations

import datetime as dt

import pytest

from movecar_adapters.sql import SqlStore, add_years, verify
from movecar_adapters.sql import schema as t
from movecar_core.calendar import SHANGHAI
from movecar_core.errors import ConcurrencyConflict
from movecar_core.settlement import ServiceMonth
from movecar_core.testing.contracts import sample_history

OPENED = dt.datetime(2025, 3, 1, 8, 30, tzinfo=SHANGHAI)
CLOSED = OPENED + dt.timedelta(minutes=3)  # sample_history escalates after 3 minutes


def store_case(
    store: SqlStore, case_id: str, at: dt.datetime = OPENED, *, close: bool = True
) -> None:
    history = sample_history(case_id, at=at)
    store.append(case_id, history if close else history[:3], expected_version=0)


def test_purge_takes_exactly_what_is_three_years_closed(fresh_store: SqlStore) -> None:
    store_case(fresh_store, "old")
    store_case(fresh_store, "young", OPENED + dt.timedelta(seconds=1))
    store_case(fresh_store, "held")
    store_case(fresh_store, "open", OPENED - dt.timedelta(days=2000), close=False)
    fresh_store.set_legal_hold("held", "诉讼中 (court case 2028-17)", actor="legal")
    fresh_store.add_recording(
        "old", "c1", location="s3://rec/old-c1.wav", checksum_sha256="c" * 64,
        duration_ms=30_000, recorded_at=OPENED,
    )  # fmt: skip
    fresh_store.write_report(ServiceMonth(2025, 3), at=add_years(CLOSED, 1))
    now = add_years(CLOSED, 3)
    assert now == dt.datetime(2028, 3, 1, 8, 33, tzinfo=SHANGHAI)

    early = fresh_store.purge(now=now - dt.timedelta(microseconds=1))
    assert early.cases == () and early.held == ()
    dry = fresh_store.purge(now=now, dry_run=True)
    assert (dry.cases, dry.held) == (("old",), ("held",))
    assert len(fresh_store.load("old")) == 5  # a dry run deletes nothing

    done = fresh_store.purge(now=now)
    assert (done.cases, done.held, done.recordings) == (
        ("old",),
        ("held",),
        ("s3://rec/old-c1.wav",),
    )
    assert list(fresh_store.load("old")) == []
    assert fresh_store.recordings("old") == [] and fresh_store.owner_lookups("old") == []
    for kept in ("young", "held", "open"):
        assert len(fresh_store.load(kept)) in (3, 5), kept
    assert "old" not in set(fresh_store.case_ids())
    tomb = fresh_store.state_row("old")
    assert tomb is not None and tomb["plate"] is None and tomb["version"] == 5
    with pytest.raises(ConcurrencyConflict):
        fresh_store.append("old", sample_history("old")[1:2], expected_version=5)
    # The chain of what remains, the purge anchors and the March report all still verify.
    result = verify(fresh_store)
    assert result.ok, result.findings
    assert fresh_store.purge(now=now).cases == ()  # idempotent
    # Releasing the hold makes the case purgeable like any other.
    fresh_store.set_legal_hold("held", None, actor="legal")
    assert fresh_store.purge(now=now + dt.timedelta(seconds=2)).cases == ("young", "held")
    assert verify(fresh_store).ok
    actions = [e["action"] for e in fresh_store.access_log()]
    assert actions.count("retention_purge") == 3


def test_leap_day_closing_waits_until_first_of_march(fresh_store: SqlStore) -> None:
    leap = dt.datetime(2028, 2, 29, 10, 0, tzinfo=SHANGHAI)
    store_case(fresh_store, "leap", leap)
    closed = leap + dt.timedelta(minutes=3)
    assert fresh_store.purge(now=dt.datetime(2031, 2, 28, 23, 59, tzinfo=SHANGHAI)).cases == ()
    assert fresh_store.purge(now=dt.datetime(2031, 3, 1, 10, 3, tzinfo=SHANGHAI)).cases == ("leap",)
    assert add_years(closed, 3).date() == dt.date(2031, 3, 1)


def test_audit_flags_data_deleted_before_its_time(fresh_store: SqlStore) -> None:
    store_case(fresh_store, "victim")
    fresh_store.purge(now=add_years(CLOSED, 3))
    with fresh_store.engine.begin() as conn:  # pretend the purge ran a year early
        conn.execute(
            t.cases.update().where(t.cases.c.case_id == "victim")
            .values(purged_at=add_years(CLOSED, 2))
        )  # fmt: skip
    [finding] = verify(fresh_store).findings
    assert finding.subject == "victim" and "retention" in finding.why
    with fresh_store.engine.begin() as conn:
        conn.execute(t.purge_log.delete())
        conn.execute(t.cases.update().values(purged_at=add_years(CLOSED, 3)))
    assert "purge-log" in verify(fresh_store).findings[0].why
