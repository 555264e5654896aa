"""Issue 10, inputs: one text rule in the core, so every backend refuses the same text with
the same typed error (never an encoding or driver error) and stores the rest exactly."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlsupport import BACKENDS, Databases

from movecar_adapters.crypto import KeyRing
from movecar_adapters.sql import SqlStore, StorageInputError, make_engine, verify
from movecar_adapters.sql import schema as t
from movecar_adapters.sql.bulk import ProcessWriter
from movecar_adapters.sql.child import (
    CHILD_ENVIRONMENT,
    LIBPQ_ENVIRONMENT,
    child_environment,
    child_url,
    read_frame,
)
from movecar_adapters.sql.engine import engine_recipe
from movecar_core.app import MoveCar
from movecar_core.calls import TransferOutcome, TransferRequest
from movecar_core.case import CaseState, EscalationRequested
from movecar_core.clock import ManualClock
from movecar_core.codec import MalformedEvent
from movecar_core.errors import CaseClosed, IllegalTransition, InvalidCommand, InvalidInput
from movecar_core.memory import (
    InMemoryCaseStore,
    InMemoryTelephony,
    InMemoryVehicleRegistry,
)
from movecar_core.ports import CaseStore
from movecar_core.testing.contracts import sample_history
from movecar_core.testing.strategies import forbidden_texts, texts

OWNER = "13912345678"
REQUESTER = "13800001111"
PLATE = "苏D12345"
SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(params=["memory", *BACKENDS])
def make_engine_for(
    request: pytest.FixtureRequest, databases: Databases, keys: KeyRing
) -> Iterator[Callable[[], MoveCar]]:
    """Engines on the in-memory store and on each SQL backend (one database per test)."""
    clock = ManualClock()
    store: CaseStore
    if request.param == "memory":
        store = InMemoryCaseStore(clock=clock)
    else:
        store = SqlStore(make_engine(databases.new(request.param)), keys, clock=clock)

    def make() -> MoveCar:
        return MoveCar(
            store=store,
            registry=InMemoryVehicleRegistry({PLATE: OWNER}),
            telephony=InMemoryTelephony(),
            clock=clock,
        )

    yield make
    if isinstance(store, SqlStore):
        store.engine.dispose()


def _called(mc: MoveCar) -> str:
    case_id = mc.open_case(plate=PLATE, location="花园街 8 号", requester_phone=REQUESTER)
    mc.locate_owner(case_id)
    call = mc.call_owner(case_id, agent_id="seat-1")
    mc.record_call_outcome(case_id, call.call_id, "answered_refused")
    return case_id


COMMANDS: dict[str, Callable[[MoveCar, str, str], object]] = {
    "open_case.location": lambda mc, _, bad: mc.open_case(
        plate=PLATE, location=bad, requester_phone=REQUESTER
    ),
    "open_case.agent_id": lambda mc, _, bad: mc.open_case(
        plate=PLATE, location="人民路口", requester_phone=REQUESTER, agent_id=bad
    ),
    "open_case.command_id": lambda mc, _, bad: mc.open_case(
        plate=PLATE, location="人民路口", requester_phone=REQUESTER, command_id=bad
    ),
    "locate_owner.agent_id": lambda mc, cid, bad: mc.locate_owner(cid, agent_id=bad),
    "call_owner.agent_id": lambda mc, cid, bad: mc.call_owner(cid, agent_id=bad),
    "confirm_moved.note": lambda mc, cid, bad: mc.confirm_moved(cid, note=bad),
    "dispute.note": lambda mc, cid, bad: mc.dispute(cid, note=bad),
    "cancel.note": lambda mc, cid, bad: mc.cancel(cid, note=bad),
    "cancel.command_id": lambda mc, cid, bad: mc.cancel(cid, note="撤销", command_id=bad),
    "escalate.note": lambda mc, cid, bad: mc.escalate(cid, "other", note=bad),
}


@SETTINGS
@given(bad=forbidden_texts(), command=st.sampled_from(sorted(COMMANDS)))
def test_forbidden_text_in_any_argument_is_invalid_input_on_every_backend(
    make_engine_for: Callable[[], MoveCar], bad: str, command: str
) -> None:
    mc = make_engine_for()
    case_id = mc.open_case(plate=PLATE, location="人民路口", requester_phone=REQUESTER)
    ids = set(mc.store.case_ids())
    with pytest.raises(InvalidCommand) as info:
        COMMANDS[command](mc, case_id, bad)
    assert info.value.field == command.split(".")[1]
    assert len(mc.history(case_id)) == 1
    assert set(mc.store.case_ids()) == ids


@SETTINGS
@given(location=texts(min_size=1, max_size=200), note=texts(max_size=300))
def test_any_allowed_text_round_trips_on_every_backend(
    make_engine_for: Callable[[], MoveCar], location: str, note: str
) -> None:
    mc = make_engine_for()
    if not location.strip():
        location = "x" + location
    case_id = mc.open_case(plate=PLATE, location=location, requester_phone=REQUESTER)
    mc.cancel(case_id, note=note + "。")
    opened, cancelled = mc.history(case_id)
    assert opened.location == location.strip()  # type: ignore[union-attr]
    assert cancelled.note == (note + "。").strip()  # type: ignore[union-attr]
    assert mc.case(case_id).location == location.strip()


def test_lengths_are_bounded(make_engine_for: Callable[[], MoveCar]) -> None:
    mc = make_engine_for()
    case_id = _called(mc)
    with pytest.raises(InvalidCommand, match="longer than 2000"):
        mc.dispute(case_id, note="争" * 2001)
    with pytest.raises(InvalidCommand, match="longer than 500"):
        mc.open_case(plate=PLATE, location="路" * 501, requester_phone=REQUESTER)
    with pytest.raises(InvalidCommand, match="longer than 100"):
        mc.call_owner(case_id, agent_id="s" * 101)
    assert mc.dispute(case_id, note="争" * 2000).version == 5


@SETTINGS
@given(bad=forbidden_texts(), at=st.integers(0, 4))
def test_a_bulk_history_with_forbidden_text_is_refused_before_any_write(
    fresh_store: SqlStore, bad: str, at: int
) -> None:
    good = [sample_history(uuid.uuid4().hex) for _ in range(3)]
    spoiled = sample_history(uuid.uuid4().hex)
    field = {0: "location", 1: "agent_id", 2: "greeting", 3: "call_id", 4: "note"}[at]
    spoiled[at] = attrs.evolve(spoiled[at], **{field: bad})  # type: ignore[misc]
    before = sum(1 for _ in fresh_store.case_ids())
    with pytest.raises(StorageInputError) as info:
        fresh_store.bulk_import([*good, spoiled], chunk_cases=10)
    assert isinstance(info.value, InvalidInput)
    assert sum(1 for _ in fresh_store.case_ids()) == before  # the chunk was never written


# --- the bulk writer process starts isolated ---------------------------------------------


def test_the_bulk_writer_process_starts_isolated(
    fresh_url: str, keys: KeyRing, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started as the real child is (same command, environment and pipe), a probe reports:
    isolated mode, no current directory on sys.path (a module planted there does not
    import), an environment without keys or passwords, and the URL over the pipe."""
    (tmp_path / "planted_in_cwd.py").write_text("raise SystemExit('imported from cwd')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # as `python -m ...` run from there would
    monkeypatch.syspath_prepend("")
    monkeypatch.setenv("MOVECAR_KEYS", "k1:" + "A" * 44)
    monkeypatch.setenv("PGPASSWORD", "s3cret-pw")
    monkeypatch.setenv("MYSQL_PWD", "s3cret-pw")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("PYTHONSTARTUP", str(tmp_path / "planted_in_cwd.py"))
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setattr(ProcessWriter, "child_module", "bulk_probe")
    engine = make_engine(fresh_url)
    writer = ProcessWriter(engine, on_integrity_error=lambda ids, why: pytest.fail(why))
    try:
        status, report = read_frame(writer.child.stdout)
    finally:
        writer.abandon()
        engine.dispose()
    assert status == "ok"
    assert report["isolated"] == 1
    assert report["cwd"] == os.path.realpath(tmp_path)  # relative SQLite paths still work
    assert not report["planted"]
    here = os.path.realpath(tmp_path)
    assert all(p and os.path.realpath(p) != here for p in report["path"])
    env = report["environment"]
    assert set(env) <= CHILD_ENVIRONMENT | LIBPQ_ENVIRONMENT | {k for k in env if k[:3] == "LC_"}
    assert env["LC_ALL"] == "C.UTF-8"
    assert not {"MOVECAR_KEYS", "PGPASSWORD", "MYSQL_PWD", "PYTHONPATH"} & set(env)
    assert "s3cret-pw" not in repr(env)
    recipe = engine_recipe(engine)
    assert recipe is not None and report["url"] == child_url(recipe[0])


def test_pgpassword_goes_over_the_pipe_in_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "pw")
    assert child_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u:pw@h/db"
    assert child_url("postgresql+psycopg://u:own@h/db") == "postgresql+psycopg://u:own@h/db"
    assert child_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    monkeypatch.setenv("PGHOST", "db.internal")
    assert child_environment("postgresql+psycopg://u@h/db")["PGHOST"] == "db.internal"
    assert "PGHOST" not in child_environment("sqlite:////tmp/x.db")
    assert "PGPASSWORD" not in child_environment("postgresql+psycopg://u@h/db")


def test_the_real_child_imports_and_writes_from_an_isolated_start(
    fresh_store: SqlStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MOVECAR_KEYS", "k1:" + "A" * 44)
    histories = [sample_history(f"iso-{i}") for i in range(12)]
    assert fresh_store.bulk_import(histories, chunk_cases=5, writer="process") == (12, 60)
    assert fresh_store.version("iso-11") == 5


# --- the audit survives malformed rows ---------------------------------------------------


def _raw(store: SqlStore, *statements: str, **params: object) -> None:
    with store.engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement), params)


def test_the_audit_survives_malformed_rows(fresh_store: SqlStore, backend: str) -> None:
    """Rows no engine could have written, inserted with raw SQL: a payload nested 100,000
    deep (``json.loads`` raises RecursionError), a state row whose time is not a time, a
    version that is not a number (SQLite: the other databases' column types refuse one).
    Each is one finding naming its case; every other case is still verified."""
    ids = ["deep", "when", "closed", "version", "edited", "fine"]
    for case_id in ids:
        fresh_store.append(case_id, sample_history(case_id), expected_version=0)
    cases, events = t.cases.name, t.events.name
    deep = "[" * 100_000 + "]" * 100_000
    _raw(fresh_store, f"UPDATE {events} SET payload = :p WHERE case_id = 'deep' AND version = 2",
         p=deep)  # fmt: skip
    if backend == "sqlite":
        bad_time, bad_version = "'not a time'", "'five'"
    elif backend == "postgresql":
        bad_time, bad_version = "'infinity'", None  # psycopg cannot load it: a DataError
    else:
        bad_time, bad_version = "'0000-00-00 00:00:00'", None
    with fresh_store.engine.begin() as conn:
        if backend == "mariadb":  # the zero date needs a lax session
            conn.execute(sa.text("SET SESSION sql_mode = ''"))
        conn.execute(sa.text(f"UPDATE {cases} SET opened_at = {bad_time} WHERE case_id = 'when'"))
        conn.execute(sa.text(f"UPDATE {cases} SET closed_at = {bad_time} WHERE case_id = 'closed'"))
        if bad_version is not None:
            conn.execute(
                sa.text(f"UPDATE {cases} SET version = {bad_version} WHERE case_id = 'version'")
            )
    payload = json.loads(_payload(fresh_store, "edited", 5))
    payload["note"] = "改过"
    _raw(fresh_store, f"UPDATE {events} SET payload = :p WHERE case_id = 'edited' AND version = 5",
         p=json.dumps(payload))  # fmt: skip

    result = verify(fresh_store)

    by_case: dict[str, list[str]] = {}
    for finding in result.findings:
        by_case.setdefault(finding.subject, []).append(finding.why)
    spoiled = {"deep", "when", "closed", "edited"} | ({"version"} if bad_version else set())
    assert set(by_case) == spoiled, result.findings
    assert all(len(whys) == 1 for whys in by_case.values()), by_case
    assert "fine" not in result.tampered_cases
    assert bad_version or "version" not in result.tampered_cases  # checked, and clean
    assert "RecursionError" in by_case["deep"][0]
    if backend == "sqlite":
        assert "not a number" in by_case["version"][0]
    with pytest.raises(MalformedEvent):  # the engine's own read: a typed error too
        fresh_store.load("deep")


def _payload(store: SqlStore, case_id: str, version: int) -> str:
    with store.engine.connect() as conn:
        found: str = conn.execute(
            sa.select(t.events.c.payload).where(
                t.events.c.case_id == case_id, t.events.c.version == version
            )
        ).scalar_one()
    return found


# --- escalate records the transfer before placing it -------------------------------------


class SlowSwitch(InMemoryTelephony):
    """A switch that takes a moment to transfer: the window a racing cancel would use."""

    def transfer_to_110(self, request: TransferRequest) -> TransferOutcome:
        time.sleep(0.005)
        return super().transfer_to_110(request)


def test_a_cancel_racing_an_escalate_never_leaves_a_transfer_the_case_does_not_show(
    make_engine_for: Callable[[], MoveCar],
) -> None:
    """Two seats at once, one escalating and one cancelling, on every store: a transfer
    placed is always in the history (its request first), and the case is then with
    110; a case that ends cancelled had no transfer at all."""
    mc = make_engine_for()
    switch = SlowSwitch()
    mc.telephony = switch
    ids = [
        mc.open_case(plate=PLATE, location="人民路口", requester_phone=REQUESTER) for _ in range(16)
    ]
    for case_id in ids:
        barrier = threading.Barrier(2)

        def escalate(case_id: str = case_id, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            with contextlib.suppress(CaseClosed):  # the cancel was stored first
                mc.escalate(case_id, "owner_uncooperative")

        def cancel(case_id: str = case_id, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            with contextlib.suppress(IllegalTransition, CaseClosed):  # escalation first
                mc.cancel(case_id, note="求助人已自行解决")

        threads = [threading.Thread(target=escalate), threading.Thread(target=cancel)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    endings = set()
    for case_id in ids:
        history = mc.history(case_id)
        placed = [x for x in switch.transfers if x.case_id == case_id]
        requested = [e for e in history if isinstance(e, EscalationRequested)]
        state = mc.case(case_id).state
        endings.add(state)
        assert len(placed) <= len(requested), history
        if placed:
            assert state is CaseState.ESCALATED_TO_110, history
        else:
            assert state is CaseState.CANCELLED, history
    assert endings <= {CaseState.ESCALATED_TO_110, CaseState.CANCELLED}
