"""二(四) "所有移车服务数据及电话录音资料，必须保存 3 年": purge after 3 years, never before."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from movecar_adapters.sql import SqlStore, add_years, verify
from movecar_adapters.sql import schema as t
from movecar_core.calendar import SHANGHAI
from movecar_core.clock import ManualClock
from movecar_core.errors import CasePurged, MoveCarError, PurgeTimeRefused
from movecar_core.retention import PURGE_CLOCK_SKEW
from movecar_core.settlement import ServiceMonth
from movecar_core.testing.contracts import sample_history

OPENED = dt.datetime(2025, 3, 1, 8, 30, tzinfo=SHANGHAI)
CLOSED = OPENED + dt.timedelta(minutes=3)  # sample_history escalates after 3 minutes


def store_case(
    store: SqlStore, case_id: str, at: dt.datetime = OPENED, *, close: bool = True
) -> None:
    history = sample_history(case_id, at=at)
    store.append(case_id, history if close else history[:3], expected_version=0)


def test_purge_takes_exactly_what_is_three_years_closed(
    fresh_store: SqlStore, clock: ManualClock
) -> None:
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
    clock.set(now + dt.timedelta(seconds=2))  # the store's clock: no purge runs ahead of it

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
    assert fresh_store.owner_lookups("old") == []
    # 二(四): the purge removes the audio and keeps its hash: the recording's row stays.
    [kept] = fresh_store.recordings("old")
    assert (kept.call_id, kept.checksum_sha256) == ("c1", "c" * 64)
    assert fresh_store.audio_pending() == ["old"]  # no recording store was given
    for kept in ("young", "held", "open"):
        assert len(fresh_store.load(kept)) in (3, 5), kept
    assert "old" not in set(fresh_store.case_ids())
    tomb = fresh_store.state_row("old")
    assert tomb is not None and tomb["plate"] is None and tomb["version"] == 5
    with pytest.raises(CasePurged):
        fresh_store.append("old", sample_history("old")[1:2], expected_version=5)
    with pytest.raises(CasePurged):
        fresh_store.load("old")
    with pytest.raises(CasePurged):  # no new recording is kept for a tombstone
        fresh_store.add_recording(
            "old", "c2", location="s3://rec/old-c2.wav", checksum_sha256="d" * 64,
            duration_ms=1_000, recorded_at=OPENED,
        )  # fmt: skip
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


def test_leap_day_closing_waits_until_first_of_march(
    fresh_store: SqlStore, clock: ManualClock
) -> None:
    leap = dt.datetime(2028, 2, 29, 10, 0, tzinfo=SHANGHAI)
    clock.set(dt.datetime(2031, 3, 1, 10, 3, tzinfo=SHANGHAI))
    store_case(fresh_store, "leap", leap)
    closed = leap + dt.timedelta(minutes=3)
    assert fresh_store.purge(now=dt.datetime(2031, 2, 28, 23, 59, tzinfo=SHANGHAI)).cases == ()
    assert fresh_store.purge(now=dt.datetime(2031, 3, 1, 10, 3, tzinfo=SHANGHAI)).cases == ("leap",)
    assert add_years(closed, 3).date() == dt.date(2031, 3, 1)


def test_audit_flags_data_deleted_before_its_time(
    fresh_store: SqlStore, clock: ManualClock
) -> None:
    store_case(fresh_store, "victim")
    clock.set(add_years(CLOSED, 3))
    fresh_store.purge(now=add_years(CLOSED, 3))
    with fresh_store.engine.begin() as conn:  # pretend the purge ran a year early
        conn.execute(
            t.cases.update().where(t.cases.c.case_id == "victim")
            .values(purged_at=add_years(CLOSED, 2))
        )  # fmt: skip
    whys = sorted(f.why for f in verify(fresh_store).findings if f.subject == "victim")
    assert whys == [
        "purged before the retention period (二(四): 3 years) ended",
        "tombstone's closed or purge time differs from the purge log's",
    ]
    with fresh_store.engine.begin() as conn:  # the purge log edited to match: still found
        conn.execute(t.purge_log.update().values(purged_at=add_years(CLOSED, 2)))
    findings = verify(fresh_store).findings
    assert any(f.subject == "victim" and "retention" in f.why for f in findings)
    # and the purge record no longer matches its ledger leaf
    assert any(f.kind == "purge" and f.subject == "victim" for f in findings), findings
    with fresh_store.engine.begin() as conn:
        conn.execute(t.purge_log.delete())
        conn.execute(t.cases.update().values(purged_at=add_years(CLOSED, 3)))
    assert any("purge-log" in f.why for f in verify(fresh_store).findings)


# --- the attacks: a forged --now, a forged clock, edited times ---------------------------


def test_a_forged_future_now_is_refused_before_anything_is_read_or_deleted(
    fresh_store: SqlStore, clock: ManualClock
) -> None:
    """The attacker runs the purge "as of" a time 3 years after a young case closed."""
    store_case(fresh_store, "young")
    clock.set(CLOSED + dt.timedelta(days=30))
    for forged in (add_years(CLOSED, 3), clock.now() + PURGE_CLOCK_SKEW + dt.timedelta(seconds=1)):
        for dry_run in (False, True):
            with pytest.raises(PurgeTimeRefused, match="later than the clock") as info:
                fresh_store.purge(now=forged, dry_run=dry_run)
            assert isinstance(info.value, MoveCarError) and isinstance(info.value, ValueError)
    with pytest.raises(PurgeTimeRefused, match="timezone-aware"):
        fresh_store.purge(now=add_years(CLOSED, 3).replace(tzinfo=None))
    with pytest.raises(PurgeTimeRefused, match="timezone-aware"):
        fresh_store.purge(now="2030-01-01T00:00:00+08:00")  # type: ignore[arg-type]
    assert len(fresh_store.load("young")) == 5
    assert "retention_purge" not in [e["action"] for e in fresh_store.access_log()]
    with fresh_store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.purge_log)).scalar() == 0
    assert verify(fresh_store).ok


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ahead=st.timedeltas(
        min_value=PURGE_CLOCK_SKEW + dt.timedelta(microseconds=1),
        max_value=dt.timedelta(days=20 * 366),
    ),
    dry_run=st.booleans(),
)
def test_for_all_now_beyond_the_skew_nothing_is_deleted(
    store_with_an_old_case: tuple[SqlStore, ManualClock], ahead: dt.timedelta, dry_run: bool
) -> None:
    store, clock = store_with_an_old_case
    with pytest.raises(PurgeTimeRefused):
        store.purge(now=clock.now() + ahead, dry_run=dry_run)
    assert len(store.load("old")) == 5  # due by the clock, yet not touched by a refused run


@pytest.fixture
def store_with_an_old_case(
    fresh_store: SqlStore, clock: ManualClock
) -> tuple[SqlStore, ManualClock]:
    store_case(fresh_store, "old")
    clock.set(add_years(CLOSED, 3))
    return fresh_store, clock


def test_a_purge_under_a_forged_clock_is_an_audit_finding(
    fresh_store: SqlStore, clock: ManualClock
) -> None:
    """The attacker builds the store on a clock of their own, set years ahead, and purges:
    the tombstone then says "purged in the future", which the audit's clock refutes."""
    store_case(fresh_store, "young")
    store_case(fresh_store, "bystander", OPENED + dt.timedelta(hours=1))
    clock.set(CLOSED + dt.timedelta(days=30))
    forged = SqlStore(fresh_store.engine, fresh_store.keys, clock=ManualClock(add_years(CLOSED, 3)))
    assert forged.purge().cases == ("young",)
    [finding] = verify(fresh_store).findings
    assert finding.subject == "young" and "later than the audit's clock" in finding.why
    assert verify(forged).ok  # the attacker's own clock agrees with itself, nobody else's


def test_an_edited_closing_time_is_an_audit_finding(
    fresh_store: SqlStore, clock: ManualClock
) -> None:
    """The attacker moves a young case's closing time 3 years back in its state row, then
    runs a lawful-looking purge: the tombstone closes before it opens. Moving the opening
    time back too takes the case out of the month its report counted."""
    store_case(fresh_store, "young")
    store_case(fresh_store, "young-2", OPENED + dt.timedelta(hours=1))
    fresh_store.write_report(ServiceMonth(2025, 3), at=dt.datetime(2025, 4, 1, tzinfo=SHANGHAI))
    clock.set(CLOSED + dt.timedelta(days=60))
    back = add_years(CLOSED, -3)
    with fresh_store.engine.begin() as conn:
        conn.execute(
            t.cases.update().where(t.cases.c.case_id.in_(["young", "young-2"]))
            .values(closed_at=back)
        )  # fmt: skip
        conn.execute(t.cases.update().where(t.cases.c.case_id == "young-2").values(opened_at=back))
    assert fresh_store.purge().cases == ("young", "young-2")
    findings = verify(fresh_store).findings
    assert {f.subject: f.why for f in findings if f.kind == "case"} == {
        "young": "tombstone says it closed before it opened"
    }
    assert any(f.kind == "report" and f.subject == "2025-03" for f in findings)


def test_an_edited_tombstone_is_an_audit_finding(fresh_store: SqlStore, clock: ManualClock) -> None:
    """After a lawful purge the attacker edits the tombstone's times: any edit that makes
    the purge look early, or contradicts the purge log, is found."""
    store_case(fresh_store, "old")
    clock.set(add_years(CLOSED, 3) + dt.timedelta(days=1))
    assert fresh_store.purge().cases == ("old",)
    assert verify(fresh_store).ok
    later = CLOSED + dt.timedelta(days=2)
    for table, values, why in (
        (t.cases, {"closed_at": later}, "retention period"),
        (t.purge_log, {"closed_at": later}, "purge log"),
        (t.cases, {"purged_at": clock.now() + dt.timedelta(days=1)}, "audit's clock"),
    ):
        with fresh_store.engine.begin() as conn:
            before = conn.execute(sa.select(table).where(table.c.case_id == "old")).one()
            conn.execute(table.update().where(table.c.case_id == "old").values(**values))
        whys = [f.why for f in verify(fresh_store).findings if f.subject == "old"]
        assert any(why in w for w in whys), (values, whys)
        with fresh_store.engine.begin() as conn:
            restore = {k: getattr(before, k) for k in values}
            conn.execute(table.update().where(table.c.case_id == "old").values(**restore))
        assert verify(fresh_store).ok
