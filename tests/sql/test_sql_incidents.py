"""The incident log on SQLite, PostgreSQL and MariaDB: the port's contract suite, the
ledger leaves and the audit (a record changed, deleted or forged behind the library's
back), the clock guard of checkpoints, and migration 0006 up and down."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import sqlalchemy as sa

from movecar_adapters.crypto import KeyRing
from movecar_adapters.signing import SigningKey
from movecar_adapters.sql import (
    SqlStore,
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    upgrade,
    verify,
)
from movecar_adapters.sql import schema as t
from movecar_adapters.sql.incidents import SqlIncidentStore
from movecar_core.calendar import SHANGHAI
from movecar_core.clock import ManualClock
from movecar_core.incidents import (
    CorruptIncidentLog,
    Incidents,
    IncidentStore,
    NoticeKind,
    OutageEnded,
    OutageStarted,
    encode_record,
)
from movecar_core.integrity import canonical_json
from movecar_core.ledger import BackdatedRecord, LeafKind, incident_leaf
from movecar_core.memory import InMemoryCommandCentre
from movecar_core.testing.incident_contracts import IncidentStoreContract

T0 = dt.datetime(2025, 3, 14, 8, 0, tzinfo=SHANGHAI)
KEY = SigningKey.generate()


class TestSqlIncidentStore(IncidentStoreContract):
    @pytest.fixture
    def incident_store(self, fresh_store: SqlStore) -> IncidentStore:
        return SqlIncidentStore(fresh_store)


@pytest.fixture
def story(fresh_store: SqlStore, clock: ManualClock) -> tuple[Incidents, SqlStore]:
    """An outage whose fault notice went out late, its recovery on time, a leak reported."""
    clock.set(T0)
    desk = InMemoryCommandCentre()
    incidents = Incidents(SqlIncidentStore(fresh_store), clock=clock, centre=desk)
    incidents.start_outage("核心交换机故障", at=T0 - dt.timedelta(minutes=40))
    incidents.run_due()
    clock.advance(minutes=50)
    incidents.end_outage(at=clock.now() - dt.timedelta(minutes=5))
    incidents.report_security_incident("leak", "坐席导出文件外泄")
    incidents.run_due()
    return incidents, fresh_store


def rows(store: SqlStore) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(sa.select(t.incident_records).order_by(t.incident_records.c.seq)))


def sql(store: SqlStore, statement: Any) -> None:
    with store.engine.begin() as conn:
        conn.execute(statement)


def test_the_story_is_stored_each_record_with_its_leaf_and_verifies(
    story: tuple[Incidents, SqlStore],
) -> None:
    incidents, store = story
    log = incidents.log()
    (outage,) = log.outages()
    assert [n.kind for n in outage.notices] == [NoticeKind.FAULT, NoticeKind.RECOVERY]
    assert [f.delay for f in incidents.findings()] == [dt.timedelta(minutes=40)]
    stored = rows(store)
    assert [r.seq for r in stored] == list(range(1, 7))
    assert [r.type_name for r in stored] == [
        "outage_started",
        "notice_sent",
        "outage_ended",
        "security_incident_reported",
        "notice_sent",
        "notice_sent",
    ]
    with store.engine.connect() as conn:
        leaves = conn.execute(
            sa.select(t.ledger_leaves.c.subject, t.ledger_leaves.c.leaf_hash).where(
                t.ledger_leaves.c.kind == LeafKind.INCIDENT.value
            )
        ).all()
    assert {s: h for s, h in leaves} == {
        str(r.seq): incident_leaf(
            r.seq,
            r.recorded_at,
            incident_id=r.incident_id,
            type_name=r.type_name,
            payload=r.payload,
        ).hash
        for r in stored
    }
    assert verify(store).ok


@pytest.mark.parametrize("change", ["cause", "time", "delete_last", "delete_middle", "type"])
def test_a_record_changed_or_deleted_behind_the_library_is_found(
    story: tuple[Incidents, SqlStore], change: str
) -> None:
    _, store = story
    ir = t.incident_records
    if change == "cause":
        first = rows(store)[0]
        payload = json.loads(first.payload)
        payload["cause"] = "计划内维护"  # a fault rewritten as planned maintenance
        sql(store, ir.update().where(ir.c.seq == 1).values(payload=canonical_json(payload)))
        expected = ("1", "differs from its ledger leaf")
    elif change == "time":
        later = T0 + dt.timedelta(seconds=1)  # the fault notice was recorded at T0
        sql(store, ir.update().where(ir.c.seq == 2).values(recorded_at=later))
        expected = ("2", "differs from its ledger leaf")
    elif change == "delete_last":
        sql(store, ir.delete().where(ir.c.seq == 6))  # a late notice's record, say
        expected = ("6", "record deleted (its leaf remains)")
    elif change == "delete_middle":
        sql(store, ir.delete().where(ir.c.seq == 3))
        expected = ("3", "record deleted (gap in the log)")
    else:
        sql(store, ir.update().where(ir.c.seq == 4).values(type_name="outage_started"))
        expected = ("4", "differs from its ledger leaf")
    result = verify(store)
    assert ("incident", *expected) in {(f.kind, f.subject, f.why) for f in result.findings}, (
        result.findings
    )


def test_a_forged_record_with_its_own_leaf_is_found_by_the_replay(
    story: tuple[Incidents, SqlStore], clock: ManualClock
) -> None:
    """The attacker writes a record and a correct leaf for it (no checkpoint yet): the
    leaves agree, but the log no longer replays (an outage ended before it started), and
    nothing more is written on top of it."""
    incidents, store = story
    forged = OutageStarted("outage-0002", clock.now(), "伪造", clock.now(), "x")
    ended = OutageEnded("outage-0002", T0 - dt.timedelta(hours=1), clock.now(), "x")
    with store.engine.begin() as conn:
        for seq, record, name in ((7, forged, "outage_started"), (8, ended, "outage_ended")):
            payload = canonical_json(encode_record(record))
            conn.execute(
                t.incident_records.insert().values(
                    seq=seq,
                    incident_id=record.incident_id,
                    type_name=name,
                    recorded_at=record.recorded_at,
                    payload=payload,
                )
            )
            leaf = incident_leaf(
                seq, record.recorded_at, incident_id=record.incident_id, type_name=name,
                payload=payload,
            )  # fmt: skip
            conn.execute(
                t.ledger_leaves.insert().values(
                    kind=leaf.kind.value,
                    subject=leaf.subject,
                    record_at=leaf.at,
                    leaf_hash=leaf.hash,
                )
            )
    findings = {(f.kind, f.subject) for f in verify(store).findings}
    assert ("incident", "8") in findings
    with pytest.raises(CorruptIncidentLog, match="record 8 does not replay"):
        incidents.start_outage("再次故障")
    assert len(rows(store)) == 8


def test_unreadable_rows_are_corrupt_not_a_crash(story: tuple[Incidents, SqlStore]) -> None:
    incidents, store = story
    ir = t.incident_records
    sql(store, ir.update().where(ir.c.seq == 2).values(payload="{not json"))
    with pytest.raises(CorruptIncidentLog, match="record 2"):
        incidents.log()
    assert ("incident", "2") in {(f.kind, f.subject) for f in verify(store).findings}
    sql(store, ir.update().where(ir.c.seq == 2).values(payload="{}", incident_id="outage-0002"))
    with pytest.raises(CorruptIncidentLog):
        incidents.findings()


def test_no_record_is_written_into_the_signed_past(
    story: tuple[Incidents, SqlStore], clock: ManualClock
) -> None:
    incidents, store = story
    clock.advance(minutes=5)
    store.checkpoint(KEY)
    behind = Incidents(
        SqlIncidentStore(store), clock=ManualClock(clock.now() - dt.timedelta(minutes=1))
    )
    with pytest.raises(BackdatedRecord):
        behind.start_outage("时钟落后的主机")
    assert len(rows(store)) == 6
    clock.advance(minutes=1)
    incidents.start_outage("时钟正确的主机")  # the record's own date decides, not the fault's
    assert verify(store).ok


def test_two_services_on_two_connections_never_break_the_log(fresh_url: str, keys: KeyRing) -> None:
    """Two processes' worth of services (separate engines) start and end outages and send
    notices in turn and at once: every append sees the other's, and the log replays."""
    import threading

    clock = ManualClock(T0)
    engines = [make_engine(fresh_url) for _ in range(2)]
    try:
        services = [
            Incidents(
                SqlIncidentStore(SqlStore(e, keys, clock=clock)),
                clock=clock,
                centre=InMemoryCommandCentre(),
                max_retries=50,
            )
            for e in engines
        ]
        errors: list[BaseException] = []

        def work(s: Incidents) -> None:
            try:
                for _ in range(5):
                    s.report_security_incident("tampering", "并发写入")
                    s.run_due()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(s,)) for s in services]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        log = services[0].log()
        assert [i.incident_id for i in log.security_incidents()] == [
            f"security-{n:04d}" for n in range(1, 11)
        ]
        assert all(len(i.notices) == 1 for i in log.security_incidents())
    finally:
        for e in engines:
            e.dispose()


def test_downgrade_keeps_evidence_and_an_empty_log_goes_and_comes_back(
    fresh_url: str, keys: KeyRing, clock: ManualClock
) -> None:
    engine = make_engine(fresh_url)
    try:
        assert downgrade(engine, "0005_kept_record") == "0005_kept_record"
        names = sa.inspect(engine).get_table_names()
        # MariaDB commits DDL at once: the empty table stays (see the migration)
        assert ("mc_incident_records" in names) is (engine.dialect.name == "mysql")
        assert upgrade(engine) == head_revision()
        store = SqlStore(engine, keys, clock=clock)
        incidents = Incidents(SqlIncidentStore(store), clock=clock)
        incidents.start_outage("升级后的第一次故障")
        with pytest.raises(RuntimeError, match="1 incident records are evidence"):
            downgrade(engine, "0005_kept_record")
        assert sa.inspect(engine).get_table_names().count("mc_incident_records") == 1
        assert current_revision(engine) == head_revision()
        assert incidents.outages()[0].cause == "升级后的第一次故障"
        assert verify(store).ok
    finally:
        engine.dispose()
