"""The evidence ledger on every backend: leaves, sequencer, checkpoints, and the attacks
a review replayed against the unkeyed chains (issue 10), each now found.

The attacker of the threat model can write every table and run the engine's own code
with its data-encryption keys; they lack the signing key. Party A holds the public key
and the checkpoints.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import threading
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from sqlsupport import KEY_1
from test_sql_audit import CASES, MAR, populate

from movecar_adapters.crypto import KeyRing, place
from movecar_adapters.signing import SigningKey
from movecar_adapters.sql import SqlStore, downgrade, make_engine, upgrade, verify
from movecar_adapters.sql import schema as t
from movecar_adapters.sql.audit import AuditResult
from movecar_adapters.sql.incidents import SqlIncidentStore
from movecar_adapters.worker import run
from movecar_core.app import MoveCar
from movecar_core.calendar import SHANGHAI
from movecar_core.clock import ManualClock
from movecar_core.errors import CasePurged, InvalidInput
from movecar_core.incidents import Incidents
from movecar_core.integrity import GENESIS, canonical_json, chain_hash
from movecar_core.ledger import (
    BackdatedRecord,
    Checkpoint,
    LeafKind,
    event_leaf,
    merkle_root,
    verify_consistency,
    verify_inclusion,
)
from movecar_core.machine import fold
from movecar_core.memory import InMemoryCommandCentre, InMemoryTelephony, InMemoryVehicleRegistry
from movecar_core.settlement import ServiceMonth
from movecar_core.testing.contracts import sample_history

KEY = SigningKey.generate()
LATER = dt.datetime(2025, 4, 3, 9, 0, tzinfo=SHANGHAI)


def evidence(store: SqlStore, clock: ManualClock) -> Checkpoint:
    """Every kind of evidentiary record, then a checkpoint over all of it."""
    clock.set(dt.datetime(2025, 4, 2, 8, 0, tzinfo=SHANGHAI))
    populate(store)
    store.set_legal_hold("feb-1", "诉讼 (court case 17)", actor="legal")
    store.log_access("supervisor-7", "read_history", "mar-0", "complaint follow-up")
    store.add_recording(
        "mar-1",
        "call-1",
        location="s3://rec/mar-1.wav",
        checksum_sha256="c" * 64,
        duration_ms=31_000,
        recorded_at=MAR,
    )
    # 二(五), annex 2 十六: an outage with its two notices, and a security incident.
    incidents = Incidents(SqlIncidentStore(store), clock=clock, centre=InMemoryCommandCentre())
    incidents.start_outage("机房断电", at=clock.now() - dt.timedelta(minutes=20))
    clock.advance(minutes=15)
    incidents.end_outage()
    incidents.report_security_incident("loss", "备份磁带丢失")
    incidents.run_due()
    clock.set(LATER)
    return store.checkpoint(KEY)


def audit(store: SqlStore, *checkpoints: Checkpoint) -> AuditResult:
    return verify(
        store,
        checkpoints=[(f"cp{i}", cp) for i, cp in enumerate(checkpoints)],
        public_key=KEY.public,
    )


@pytest.fixture
def checked(fresh_store: SqlStore, clock: ManualClock) -> tuple[SqlStore, Checkpoint]:
    cp = evidence(fresh_store, clock)
    assert audit(fresh_store, cp).ok, audit(fresh_store, cp).findings
    return fresh_store, cp


def sql(store: SqlStore, statement: Any, params: Any = None) -> None:
    with store.engine.begin() as conn:
        conn.execute(statement, params or {})


def one(store: SqlStore, query: Any) -> Any:
    with store.engine.connect() as conn:
        return conn.execute(query).one()


def named(result: AuditResult) -> set[str]:
    return {f.subject for f in result.findings}


# --- the ledger itself ------------------------------------------------------------------


def test_checkpoint_covers_every_record_and_verifies(checked: tuple[SqlStore, Checkpoint]) -> None:
    store, cp = checked
    with store.engine.connect() as conn:
        leaves = conn.execute(sa.select(t.ledger_leaves).order_by(t.ledger_leaves.c.leaf_index))
        rows = list(leaves)
    assert [r.leaf_index for r in rows] == list(range(cp.size))
    kinds = {r.kind for r in rows}
    # look-ups are in their events' leaves since schema 0004 (the look-up log repeats them)
    assert kinds == {k.value for k in LeafKind} - {"purge", "owner_lookup"}
    assert merkle_root([r.leaf_hash for r in rows]) == cp.root
    assert KEY.public.verifies(cp)
    # the March report carries the tree head of everything before it
    report = store.report(ServiceMonth(2025, 3))
    assert report is not None and report.tree is not None
    assert report.tree.root == merkle_root([r.leaf_hash for r in rows[: report.tree.size]])
    # an inclusion proof for one event, checkable with the checkpoint alone
    # feb-0's first append wrote versions 1 and 2: one leaf, named by its last version
    index, leaf_hash, path = store.prove_inclusion(LeafKind.EVENT, "feb-0/2", cp.size)
    assert verify_inclusion(leaf_hash, index, cp.size, path, cp.root)


def test_a_later_checkpoint_extends_the_earlier_one(
    checked: tuple[SqlStore, Checkpoint], clock: ManualClock
) -> None:
    store, first = checked
    clock.advance(dt.timedelta(hours=1))
    new = sample_history("apr-0", at=clock.now())
    store.append("apr-0", new, expected_version=0)
    second = store.checkpoint(KEY)
    assert second.size == first.size + 1  # one append of its events (its look-up among them)
    assert second.issued_at > first.issued_at
    proof = store.prove_consistency(first, second)
    assert verify_consistency(first.size, first.root, second.size, second.root, proof)
    assert audit(store, first, second).ok


def test_the_worker_sequences_as_it_goes(fresh_store: SqlStore, clock: ManualClock) -> None:
    clock.set(MAR)
    app = MoveCar(
        store=fresh_store,
        registry=InMemoryVehicleRegistry({}),
        telephony=InMemoryTelephony(),
        clock=clock,
    )
    app.open_case(plate="苏D12345", location="武进", requester_phone="13800001111")
    assert fresh_store.pending_leaves() == 1
    run(app, once=True, report=lambda line: None)
    assert fresh_store.pending_leaves() == 0
    assert fresh_store.sequence().size == 1  # nothing pending: the head, no write


def test_sequenced_times_never_go_backwards(fresh_store: SqlStore, clock: ManualClock) -> None:
    clock.set(MAR)
    fresh_store.append("a", sample_history("a", at=MAR), expected_version=0)
    fresh_store.sequence()
    # the sequencer's clock is behind (another host): the times still do not go back
    behind = SqlStore(fresh_store.engine, fresh_store.keys, clock=ManualClock(MAR))
    clock.advance(dt.timedelta(days=1))
    fresh_store.append("b", sample_history("b", at=clock.now()), expected_version=0)
    behind.sequence()
    with fresh_store.engine.connect() as conn:
        times = list(
            conn.execute(
                sa.select(t.ledger_leaves.c.sequenced_at).order_by(t.ledger_leaves.c.leaf_index)
            ).scalars()
        )
    assert times == sorted(times) and None not in times


def test_concurrent_writers_and_sequencer_give_dense_indices(
    fresh_url: str, keys: Any, backend: str
) -> None:
    """Writers in threads while a sequencer runs: every leaf gets one index, none skipped."""
    engine = make_engine(fresh_url)
    store = SqlStore(engine, keys)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(8):
                cid = f"w{n}-{i}"
                store.append(cid, sample_history(cid, at=dt.datetime.now(dt.UTC)), 0)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def sequencer() -> None:
        while not stop.is_set():
            store.sequence()

    seq = threading.Thread(target=sequencer)
    seq.start()
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    stop.set()
    seq.join()
    assert not errors, errors
    head = store.sequence()
    with engine.connect() as conn:
        indices = sorted(conn.execute(sa.select(t.ledger_leaves.c.leaf_index)).scalars())
    assert indices == list(range(head.size)) and head.size > 0
    assert verify(store).ok
    engine.dispose()


def test_the_engine_refuses_a_backdated_record(checked: tuple[SqlStore, Checkpoint]) -> None:
    store, cp = checked
    before = cp.issued_at - dt.timedelta(seconds=1)
    with pytest.raises(BackdatedRecord):
        store.append("fake", sample_history("fake", at=before), expected_version=0)
    with pytest.raises(BackdatedRecord):
        store.bulk_import([sample_history("fake2", at=before)])
    with pytest.raises(BackdatedRecord):
        store.add_recording(
            "mar-1", "call-2", location="x", checksum_sha256="d" * 64, duration_ms=1,
            recorded_at=before,
        )  # fmt: skip
    assert store.load("fake") == () and audit(store, cp).ok


def test_a_lawful_purge_keeps_old_checkpoints_verifiable(
    checked: tuple[SqlStore, Checkpoint], clock: ManualClock
) -> None:
    store, cp = checked
    clock.set(dt.datetime(2028, 5, 1, tzinfo=SHANGHAI))
    done = store.purge()
    assert "feb-0" in done.cases and "feb-1" not in done.cases  # feb-1 is under legal hold
    second = store.checkpoint(KEY)
    result = audit(store, cp, second)
    assert result.ok, result.findings
    with store.engine.connect() as conn:
        purges = conn.execute(
            sa.select(sa.func.count()).where(t.ledger_leaves.c.kind == "purge")
        ).scalar()
    assert purges == len(done.cases)


def test_a_purged_case_takes_no_legal_hold(
    checked: tuple[SqlStore, Checkpoint], clock: ManualClock
) -> None:
    store, _ = checked
    clock.set(dt.datetime(2028, 5, 1, tzinfo=SHANGHAI))
    store.purge()
    with pytest.raises(CasePurged):
        store.set_legal_hold("feb-0", "too late", actor="legal")


def test_existing_records_get_their_leaves_on_upgrade(
    fresh_store: SqlStore, clock: ManualClock, keys: KeyRing
) -> None:
    """A database from before the ledger: migration 0002 gives every record its leaf (no
    key needed), and the first checkpoint seals them."""
    clock.set(LATER)
    for case_id, at in CASES.items():
        fresh_store.append(case_id, sample_history(case_id, at=at), expected_version=0)
    fresh_store.set_legal_hold("feb-1", "诉讼 (court case 17)", actor="legal")
    fresh_store.log_access("supervisor-7", "read_history", "mar-0", "complaint follow-up")
    engine = fresh_store.engine
    assert downgrade(engine, "0001_initial", keys=keys) == "0001_initial"
    upgrade(engine, keys=keys)
    with engine.connect() as conn:
        leaves = conn.execute(sa.select(sa.func.count()).select_from(t.ledger_leaves)).scalar()
        records = sum(
            conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in (t.events, t.owner_lookups, t.access_log, t.legal_holds)
        )
        holds = conn.execute(sa.select(t.legal_holds.c.case_id)).scalars().all()
    assert leaves == records and holds == ["feb-1"]
    cp = fresh_store.checkpoint(KEY)
    assert audit(fresh_store, cp).ok, audit(fresh_store, cp).findings


def test_a_downgrade_never_drops_a_reports_tree_head(
    checked: tuple[SqlStore, Checkpoint], keys: KeyRing
) -> None:
    store, cp = checked
    # incident records are evidence: refused first (0006)
    with pytest.raises(RuntimeError, match="incident records are evidence"):
        downgrade(store.engine, "0001_initial", keys=keys)
    assert audit(store, cp).ok
    with store.engine.begin() as conn:  # as if there had been no incident
        conn.execute(t.incident_records.delete())
        conn.execute(t.ledger_leaves.delete().where(t.ledger_leaves.c.kind == "incident"))
    # (the checkpoint no longer matches the leaves: the refusals below must change nothing)
    before = audit(store, cp).findings
    # look-ups written since 0004 would need backdated leaves below it: refused next
    with pytest.raises(RuntimeError, match="backdated"):
        downgrade(store.engine, "0001_initial", keys=keys)
    assert audit(store, cp).findings == before
    with store.engine.begin() as conn:  # as if they had been written before 0004
        conn.execute(t.owner_lookups.update().values(has_leaf=True))
        conn.execute(t.ledger_leaves.delete().where(t.ledger_leaves.c.kind == "owner_lookup"))
    with pytest.raises(RuntimeError, match="tree head"):
        downgrade(store.engine, "0001_initial", keys=keys)


def test_checkpoints_need_the_public_key(checked: tuple[SqlStore, Checkpoint]) -> None:
    store, cp = checked
    with pytest.raises(InvalidInput):
        verify(store, checkpoints=[("cp", cp)])


# --- the attacks ------------------------------------------------------------------------


def _state(store: SqlStore, case_id: str) -> Any:
    return one(store, sa.select(t.cases).where(t.cases.c.case_id == case_id))


def _rechain(store: SqlStore, case_id: str) -> None:
    """What the review did: recompute every hash of the case (no key needed) and make
    the state row agree, so the per-case chain verifies again."""
    with store.engine.begin() as conn:
        events = conn.execute(
            sa.select(t.events).where(t.events.c.case_id == case_id).order_by(t.events.c.version)
        ).all()
        previous = GENESIS
        for e in events:
            payload = json.loads(e.payload)
            for field in ("requester_phone", "owner_phone"):
                if field in payload:
                    where = place(case_id, e.version, e.type_name, field)
                    payload[field] = store.keys.decrypt(payload[field], where)
            h = chain_hash(previous, case_id, e.version, e.type_name, payload)
            conn.execute(
                t.events.update()
                .where(t.events.c.case_id == case_id, t.events.c.version == e.version)
                .values(hash=h)
            )
            previous = h
        conn.execute(
            t.cases.update()
            .where(t.cases.c.case_id == case_id)
            .values(version=len(events), head_hash=previous)
        )


def test_deleting_a_cases_last_event_and_fixing_its_state_row(
    checked: tuple[SqlStore, Checkpoint],
) -> None:
    store, cp = checked
    row = _state(store, "feb-2")
    sql(
        store,
        t.events.delete().where(t.events.c.case_id == "feb-2", t.events.c.version == row.version),
    )
    _rechain(store, "feb-2")
    record = fold(store.load("feb-2"))
    sql(
        store,
        t.cases.update()
        .where(t.cases.c.case_id == "feb-2")
        .values(state=record.state.value, closed_at=record.closed_at),
    )
    assert "feb-2" in named(audit(store, cp))


def test_rewriting_an_event_and_recomputing_every_hash(
    checked: tuple[SqlStore, Checkpoint],
) -> None:
    """Even with the data keys: the note of a middle event changed, the chain and the
    state row recomputed, and the event's leaf too. The checkpoint still catches it."""
    store, cp = checked
    e = one(
        store, sa.select(t.events).where(t.events.c.case_id == "mar-0", t.events.c.version == 2)
    )
    payload = json.loads(e.payload)
    payload["agent_id"] = "someone-else"
    sql(
        store,
        t.events.update()
        .where(t.events.c.case_id == "mar-0", t.events.c.version == 2)
        .values(payload=canonical_json(payload)),
    )
    _rechain(store, "mar-0")
    result = audit(store, cp)
    assert "mar-0" in named(result)
    # now the leaves too: the tree no longer gives the signed root
    with store.engine.begin() as conn:
        events = conn.execute(
            sa.select(t.events).where(t.events.c.case_id == "mar-0").order_by(t.events.c.version)
        ).all()
        for first in sorted({ev.batch for ev in events}):
            group = [ev for ev in events if ev.batch == first]
            at = dt.datetime.fromisoformat(json.loads(group[0].payload)["at"])
            leaf = event_leaf("mar-0", first, group[-1].version, at, group[-1].hash)
            conn.execute(
                t.ledger_leaves.update()
                .where(t.ledger_leaves.c.kind == "event", t.ledger_leaves.c.subject == leaf.subject)
                .values(leaf_hash=leaf.hash)
            )
    result = audit(store, cp)
    assert any(f.kind == "checkpoint" for f in result.findings), result.findings


def test_deleting_a_whole_case_in_an_unreported_month(
    checked: tuple[SqlStore, Checkpoint], clock: ManualClock
) -> None:
    store, cp = checked
    clock.advance(dt.timedelta(hours=1))
    store.append("apr-1", sample_history("apr-1", at=clock.now()), expected_version=0)
    second = store.checkpoint(KEY)
    for table in (t.owner_lookups, t.events, t.outbox, t.cases):
        sql(store, table.delete().where(table.c.case_id == "apr-1"))
    result = audit(store, cp, second)
    assert any("apr-1" in f.subject for f in result.findings), result.findings
    # deleting its leaves as well breaks the signed tree
    sql(store, t.ledger_leaves.delete().where(t.ledger_leaves.c.case_id == "apr-1"))
    result = audit(store, cp, second)
    assert any(f.kind in ("checkpoint", "ledger") for f in result.findings), result.findings


@pytest.mark.parametrize(
    ("table", "where", "values"),
    [
        (t.owner_lookups, {"case_id": "mar-0"}, {"found": False}),
        (t.owner_lookups, {"case_id": "mar-0"}, {"agent_id": "nobody"}),
        (t.access_log, {"action": "read_history"}, {"actor": "nobody"}),
        (t.legal_holds, {"case_id": "feb-1"}, {"reason": None}),
        (t.recordings, {"call_id": "call-1"}, {"checksum_sha256": "e" * 64}),
        (t.settlements, {"month": "2025-02"}, {"fee": Decimal("1.00")}),
        (t.cases, {"case_id": "feb-1"}, {"legal_hold": False, "legal_hold_reason": None}),
    ],
)
def test_altering_records_the_old_audit_did_not_read(
    checked: tuple[SqlStore, Checkpoint],
    table: sa.Table,
    where: dict[str, Any],
    values: dict[str, Any],
) -> None:
    store, cp = checked
    sql(store, table.update().where(*[table.c[k] == v for k, v in where.items()]).values(**values))
    assert not audit(store, cp).ok


def test_a_forged_or_moved_checkpoint(checked: tuple[SqlStore, Checkpoint]) -> None:
    store, cp = checked
    other = SigningKey.generate()
    # the real signature, over another root
    forged = Checkpoint.of(cp.size, "0" * 64, cp.issued_at, cp.key_id, cp.signature)
    assert any(f.kind == "checkpoint" for f in audit(store, forged).findings)
    theirs = Checkpoint.of(
        cp.size, cp.root, cp.issued_at, other.key_id,
        base64.b64encode(other.sign(cp.message())).decode(),
    )  # fmt: skip
    assert any("another key" in f.why for f in audit(store, theirs).findings)
    sql(store, t.checkpoints.update().values(root="1" * 64))
    assert not audit(store).ok  # the stored copy, checked with the key alone


def test_a_backdated_fabrication_written_behind_the_engine(
    checked: tuple[SqlStore, Checkpoint],
) -> None:
    """Rows written straight into the tables, leaves and all, dated before the checkpoint."""
    store, cp = checked
    forger = SqlStore(store.engine, store.keys, clock=ManualClock(MAR))
    sql(store, t.ledger_state.update().values(checkpoint_at=None))  # hide the checkpoint
    forger.append("forged", sample_history("forged", at=MAR), expected_version=0)
    sql(
        store,
        t.ledger_state.update().values(checkpoint_at=cp.issued_at, checkpoint_size=cp.size),
    )
    result = audit(store, cp)
    assert any("backdated" in f.why for f in result.findings), result.findings


def test_a_phone_moved_and_resealed_with_the_real_keys(
    checked: tuple[SqlStore, Checkpoint],
) -> None:
    """The attacker holds the data keys: they open case mar-1's requester phone and seal
    it for case mar-2's place, so it decrypts there; then recompute mar-2's chain."""
    store, cp = checked
    source = one(
        store, sa.select(t.events).where(t.events.c.case_id == "mar-1", t.events.c.version == 1)
    )
    target = one(
        store, sa.select(t.events).where(t.events.c.case_id == "mar-2", t.events.c.version == 1)
    )
    phone = store.keys.decrypt(
        json.loads(source.payload)["requester_phone"],
        place("mar-1", 1, "CaseOpened", "requester_phone"),
    )
    payload = json.loads(target.payload)
    payload["requester_phone"] = store.keys.encrypt(
        phone[:-1] + ("0" if phone[-1] != "0" else "1"),  # another requester's number
        place("mar-2", 1, "CaseOpened", "requester_phone"),
    )
    sql(
        store,
        t.events.update()
        .where(t.events.c.case_id == "mar-2", t.events.c.version == 1)
        .values(payload=canonical_json(payload)),
    )
    assert "mar-2" in named(audit(store, cp))  # the chain covers the plaintext
    _rechain(store, "mar-2")
    sql(store, t.cases.update().where(t.cases.c.case_id == "mar-2").values(
        opened_hash=one(store, sa.select(t.events.c.hash).where(
            t.events.c.case_id == "mar-2", t.events.c.version == 1)).hash))  # fmt: skip
    result = audit(store, cp)
    assert any(f.subject == "mar-2" and "ledger leaf" in f.why for f in result.findings), result


# --- for all rows, columns and changes --------------------------------------------------

EVIDENCE = (
    t.events, t.owner_lookups, t.access_log, t.legal_holds, t.recordings, t.monthly_reports,
    t.settlements, t.cases, t.ledger_leaves, t.incident_records,
)  # fmt: skip
#: Columns whose change is not tampering with evidence: operational bookkeeping (when a
#: leaf was sequenced) and surrogate keys no record is known by (a state row's creation
#: number, the row ids of look-ups, recordings and pending leaves).
NOT_EVIDENCE = {
    ("mc_ledger_leaves", "sequenced_at"),
    ("mc_ledger_leaves", "id"),
    ("mc_cases", "seq"),
    ("mc_owner_lookups", "id"),
    ("mc_recordings", "id"),
}


def _changed(value: Any, column: sa.Column[Any] | None = None) -> Any:
    if value is None and column is not None:  # give it a value of the column's type
        kind = column.type
        python_type = (kind.impl if isinstance(kind, sa.TypeDecorator) else kind).python_type
        return {dt.datetime: LATER, int: 1, bool: True, Decimal: Decimal(1)}.get(python_type, "x")
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, Decimal):
        return value + Decimal("0.01")
    if isinstance(value, dt.datetime):
        return value + dt.timedelta(microseconds=1)
    if isinstance(value, str):
        return value[:-1] + ("0" if value[-1:] != "0" else "1") if value else "x"
    return "x"  # None: give it a value


def tamper(store: SqlStore, statement: Any) -> None:
    """``statement``, unless a unique key makes it impossible (then another example)."""
    try:
        sql(store, statement)
    except sa.exc.IntegrityError:
        reject()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Checkpoint]:
    """A populated SQLite database with a checkpoint, copied for each example."""
    path = tmp_path_factory.mktemp("ledger") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    clock = ManualClock()
    store = SqlStore(engine, KeyRing([("k1", KEY_1)]), clock=clock)
    cp = evidence(store, clock)
    engine.dispose()
    return path, cp


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_change_to_any_evidence_row_is_found(
    template: Any, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    path, cp = template
    copy = tmp_path_factory.mktemp("tamper") / "db.db"
    shutil.copy(path, copy)
    engine = make_engine(f"sqlite:///{copy}")

    @sa.event.listens_for(engine, "connect")
    def no_foreign_keys(dbapi: Any, _: Any) -> None:
        # after the store's own listener: the attacker is not held back by constraints
        dbapi.execute("PRAGMA foreign_keys=OFF")

    store = SqlStore(engine, KeyRing([("k1", KEY_1)]), clock=ManualClock(LATER))

    try:
        table = data.draw(st.sampled_from(EVIDENCE), label="table")
        with engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(sa.select(table))]
        action = data.draw(st.sampled_from(["delete", "insert", "change"]), label="action")
        row = data.draw(st.sampled_from(rows), label="row")
        pk = [c.name for c in table.primary_key.columns]
        where = [table.c[k] == row[k] for k in pk]
        if action == "delete":
            tamper(store, table.delete().where(*where))
        elif action == "insert":
            new = dict(row)
            for k in pk:  # a new key: far from the others (ids) or beside them (months)
                new[k] = row[k] + 10_000 if isinstance(row[k], int) else _changed(row[k])
            unique = {
                "mc_events": {"version": row.get("version", 0) + 100},
                "mc_cases": {"case_id": "inserted-case"},
                "mc_recordings": {"call_id": "inserted-call"},
                "mc_owner_lookups": {"version": row.get("version", 0) + 100},
                "mc_ledger_leaves": {"subject": f"{row.get('subject')}-x", "leaf_index": None},
            }
            new.update(unique.get(table.name, {}))
            tamper(store, table.insert().values(**new))
        else:
            columns = [c.name for c in table.columns if (table.name, c.name) not in NOT_EVIDENCE]
            column = data.draw(st.sampled_from(columns), label="column")
            tamper(
                store,
                table.update()
                .where(*where)
                .values({column: _changed(row[column], table.c[column])}),
            )
        result = audit(store, cp)
        assert result.findings, "tampering not found"
    finally:
        engine.dispose()
