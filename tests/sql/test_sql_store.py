"""The SQL store's own behaviour on every backend: schema, state rows, encryption, boundary."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlsupport import KEY_1, KEY_2, Databases

from movecar_adapters.crypto import DecryptionFailed, KeyRing
from movecar_adapters.sql import (
    SchemaNotReady,
    SqlStore,
    StorageInputError,
    head_revision,
    make_engine,
    verify,
)
from movecar_adapters.sql import schema as t
from movecar_core.app import MoveCar
from movecar_core.case import CallOutcome, CaseOpened, EscalationReason, OwnerCallPlaced
from movecar_core.clock import ManualClock
from movecar_core.codec import MalformedEvent, UnknownEventType
from movecar_core.errors import ConcurrencyConflict
from movecar_core.machine import fold
from movecar_core.memory import InMemoryTelephony, InMemoryVehicleRegistry
from movecar_core.testing.contracts import sample_history

OWNER = "13912345678"
REQUESTER = "13800001111"


def engine_on(store: SqlStore, clock: ManualClock) -> MoveCar:
    return MoveCar(
        store=store,
        registry=InMemoryVehicleRegistry({"苏D12345": OWNER, "苏D54321": OWNER}),
        telephony=InMemoryTelephony(),
        clock=clock,
    )


def raw_events(store: SqlStore, case_id: str) -> list[sa.Row[tuple[str, int, str, str, str]]]:
    with store.engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(
                    t.events.c.case_id,
                    t.events.c.version,
                    t.events.c.type_name,
                    t.events.c.payload,
                    t.events.c.hash,
                )
                .where(t.events.c.case_id == case_id)
                .order_by(t.events.c.version)
            )
        )


def test_migrations_build_exactly_the_declared_schema(fresh_store: SqlStore) -> None:
    with fresh_store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = compare_metadata(ctx, t.metadata)
        assert ctx.get_current_revision() == head_revision()
    assert diff == []


def test_unmigrated_database_is_refused(databases: Databases, backend: str, keys: KeyRing) -> None:
    url = databases.new(backend)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM alembic_version"))
    with pytest.raises(SchemaNotReady, match="movecar db upgrade"):
        SqlStore(engine, keys)
    engine.dispose()


def test_commands_keep_state_row_equal_to_fold(fresh_store: SqlStore, clock: ManualClock) -> None:
    app = engine_on(fresh_store, clock)
    case_id = app.open_case(plate="苏D12345", location="湖塘镇", requester_phone=REQUESTER)
    app.locate_owner(case_id, agent_id="seat-1")
    call = app.call_owner(case_id, agent_id="seat-1")
    clock.advance(minutes=1)
    app.record_call_outcome(case_id, call.call_id, CallOutcome.ANSWERED_REFUSED)
    app.escalate(case_id, EscalationReason.OWNER_UNCOOPERATIVE)
    row = fresh_store.state_row(case_id)
    record = fold(fresh_store.load(case_id))
    assert row is not None
    assert (row["state"], row["version"], row["plate"]) == ("escalated_to_110", 6, "苏D12345")
    assert row["opened_at"] == record.opened_at and row["closed_at"] == record.closed_at
    assert fresh_store.find_by_plate("苏D12345") == [case_id]
    lookups = fresh_store.owner_lookups(case_id)
    assert [(x["version"], x["agent_id"], x["found"]) for x in lookups] == [(2, "seat-1", True)]
    assert verify(fresh_store).ok


def test_phones_are_encrypted_at_rest_and_keys_rotate(fresh_url: str, clock: ManualClock) -> None:
    old = SqlStore(make_engine(fresh_url), KeyRing([("k1", KEY_1)]), clock=clock)
    case_id = "case-rotate"
    old.append(case_id, sample_history(case_id), expected_version=0)
    for _, _, _, payload, _ in raw_events(old, case_id):
        assert REQUESTER not in payload and OWNER not in payload
    assert json.loads(raw_events(old, case_id)[0][3])["requester_phone"].startswith("~1:k1:")

    # A new key goes first: old rows still read, new rows use the new key.
    both = SqlStore(old.engine, KeyRing([("k2", KEY_2), ("k1", KEY_1)]), clock=clock)
    assert list(both.load(case_id)) == sample_history(case_id)
    both.append("case-new", sample_history("case-new")[:1], expected_version=0)
    assert json.loads(raw_events(both, "case-new")[0][3])["requester_phone"].startswith("~1:k2:")
    assert both.rotate_keys(batch=1) == 2  # CaseOpened and OwnerLookedUp of case-rotate
    assert both.rotate_keys() == 0 and both.rotation_pending() == 0

    # The old key can go: everything reads and the chain (over plaintext) still verifies.
    new_only = SqlStore(old.engine, KeyRing([("k2", KEY_2)]), clock=clock)
    assert list(new_only.load(case_id)) == sample_history(case_id)
    assert verify(new_only).ok
    with pytest.raises(DecryptionFailed):
        old.load(case_id)
    old.engine.dispose()


def test_oversized_and_mistyped_input_is_refused_and_nothing_written(
    fresh_store: SqlStore,
) -> None:
    case_id = "case-bad"
    good = sample_history(case_id)
    opened = good[0]
    assert isinstance(opened, CaseOpened)
    huge = CaseOpened(case_id, opened.at, None, "苏D12345", "x" * 5000, REQUESTER, "seat-1")
    with pytest.raises(StorageInputError, match=r"CaseOpened\.location"):
        fresh_store.append(case_id, [huge], expected_version=0)
    long_plate = CaseOpened(case_id, opened.at, None, "苏" * 40, "here", REQUESTER, "seat-1")
    with pytest.raises(StorageInputError, match="plate"):
        fresh_store.append(case_id, [long_plate], expected_version=0)
    fresh_store.append(case_id, good[:2], expected_version=0)
    placed = good[2]
    assert isinstance(placed, OwnerCallPlaced)
    wrong = OwnerCallPlaced(
        case_id,
        placed.at,
        None,
        "c1",
        "1",
        "seat-1",
        "0519110",
        "hi",
        "v1",  # type: ignore[arg-type]
    )
    with pytest.raises(StorageInputError, match="attempt"):
        fresh_store.append(case_id, [wrong], expected_version=2)
    naive = attrs_evolve(placed, at=placed.at.replace(tzinfo=None))
    with pytest.raises(StorageInputError, match="naive"):
        fresh_store.append(case_id, [naive], expected_version=2)
    with pytest.raises(StorageInputError, match="case_id"):
        fresh_store.append("has space", sample_history("has space")[:1], expected_version=0)
    with pytest.raises(StorageInputError, match="case_id"):
        fresh_store.append("x" * 65, sample_history("x" * 65)[:1], expected_version=0)
    with pytest.raises(StorageInputError, match="not a valid case history"):
        fresh_store.append(case_id, good[3:4], expected_version=2)  # an outcome, no call
    with pytest.raises(StorageInputError, match="second CaseOpened"):
        fresh_store.append(case_id, [good[0]], expected_version=2)
    with pytest.raises(StorageInputError, match="appended to case"):
        fresh_store.append(case_id, sample_history("other")[2:3], expected_version=2)
    with pytest.raises(StorageInputError, match="expected_version"):
        fresh_store.append(case_id, good[2:3], expected_version="2")  # type: ignore[arg-type]
    with pytest.raises(StorageInputError, match="events"):
        fresh_store.append(case_id, [], expected_version=2)
    assert list(fresh_store.load(case_id)) == good[:2]
    assert fresh_store.version(case_id) == 2
    assert verify(fresh_store).ok


def attrs_evolve(event: OwnerCallPlaced, **changes: object) -> OwnerCallPlaced:
    import attrs

    return attrs.evolve(event, **changes)


def test_bad_rows_in_the_database_raise_typed_errors(fresh_store: SqlStore) -> None:
    case_id = "case-rows"
    fresh_store.append(case_id, sample_history(case_id), expected_version=0)
    with fresh_store.engine.begin() as conn:
        conn.execute(
            t.events.update()
            .where(t.events.c.case_id == case_id, t.events.c.version == 5)
            .values(type_name="CaseTeleported")
        )
    with pytest.raises(UnknownEventType, match="CaseTeleported"):
        fresh_store.load(case_id)
    with fresh_store.engine.begin() as conn:
        conn.execute(
            t.events.update()
            .where(t.events.c.case_id == case_id, t.events.c.version == 5)
            .values(type_name="EscalatedTo110", payload='{"at": 5}')
        )
    with pytest.raises(MalformedEvent):
        fresh_store.load(case_id)
    placed_payload = json.loads(raw_events(fresh_store, case_id)[2][3])
    placed_payload["attempt"] = "1"
    with fresh_store.engine.begin() as conn:
        conn.execute(
            t.events.update()
            .where(t.events.c.case_id == case_id, t.events.c.version == 3)
            .values(payload=json.dumps(placed_payload))
        )
    with pytest.raises(MalformedEvent, match="attempt"):
        fresh_store.load(case_id)
    assert verify(fresh_store).tampered_cases == {case_id}


def test_conflict_on_a_purged_or_unknown_case(fresh_store: SqlStore) -> None:
    with pytest.raises(ConcurrencyConflict) as info:
        fresh_store.append("nobody", sample_history("nobody")[1:2], expected_version=1)
    assert (info.value.expected, info.value.actual) == (1, 0)


def test_recordings_and_access_log(fresh_store: SqlStore, clock: ManualClock) -> None:
    case_id = "case-rec"
    fresh_store.append(case_id, sample_history(case_id), expected_version=0)
    at = dt.datetime(2025, 3, 1, 8, 31, tzinfo=dt.UTC)
    fresh_store.add_recording(
        case_id, "c1", location="s3://rec/c1.wav", checksum_sha256="a" * 64,
        duration_ms=61_000, recorded_at=at,
    )  # fmt: skip
    [rec] = fresh_store.recordings(case_id)
    assert (rec.call_id, rec.duration_ms, rec.recorded_at) == ("c1", 61_000, at)
    with pytest.raises(StorageInputError, match="checksum"):
        fresh_store.add_recording(
            case_id, "c2", location="x", checksum_sha256="nope", duration_ms=1, recorded_at=at
        )
    with pytest.raises(StorageInputError, match="no such case"):
        fresh_store.add_recording(
            "nocase", "c3", location="x", checksum_sha256="b" * 64, duration_ms=1, recorded_at=at
        )
    history = fresh_store.read_history(case_id, actor="auditor-7", purpose="dispute review")
    assert len(history) == 5
    [entry] = fresh_store.access_log(case_id)
    assert (entry["actor"], entry["action"], entry["detail"]) == (
        "auditor-7", "read_history", "dispute review",
    )  # fmt: skip
    with pytest.raises(StorageInputError, match="actor"):
        fresh_store.log_access("", "read")
