"""七(三): a phone ciphertext opens only in its place (case, event, field), on every backend.

The attack replayed here needs no key: copy a stored ciphertext from one row into another.
Before binding, the copy decrypted in its new place and the engine dialled the wrong owner
(or notified the wrong requester). Also: the 0003 migration and key rotation turn a
database written with legacy (unbound) tokens into a bound one, and a legacy token is
never a way around the binding.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlsupport import KEY_1, KEY_2, Databases

from movecar_adapters.cli import main
from movecar_adapters.crypto import (
    CiphertextMisplaced,
    DecryptionFailed,
    KeyRing,
    UnboundCiphertext,
)
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
from movecar_core.app import Dispatch, MoveCar
from movecar_core.clock import ManualClock
from movecar_core.errors import MoveCarError
from movecar_core.memory import InMemoryNotifier, InMemoryTelephony, InMemoryVehicleRegistry
from movecar_core.outbox import EffectPolicy

OWNER_A, OWNER_B = "13912345678", "13987654321"
REQUESTER_A, REQUESTER_B = "13800001111", "13800002222"
PLATE_A, PLATE_B = "苏D12345", "苏D54321"
PHONES = (OWNER_A, OWNER_B, REQUESTER_A, REQUESTER_B)
#: (type name, field) of each version of a located case: v1 opened, v2 looked up.
FIELDS = {1: "requester_phone", 2: "owner_phone"}


def facade(store: SqlStore, clock: ManualClock) -> tuple[MoveCar, InMemoryTelephony]:
    telephony = InMemoryTelephony()
    app = MoveCar(
        store=store,
        registry=InMemoryVehicleRegistry({PLATE_A: OWNER_A, PLATE_B: OWNER_B}),
        telephony=telephony,
        notifier=InMemoryNotifier(),
        clock=clock,
    )
    return app, telephony


def two_located_cases(app: MoveCar) -> tuple[str, str]:
    a = app.open_case(plate=PLATE_A, location="湖塘镇", requester_phone=REQUESTER_A)
    b = app.open_case(plate=PLATE_B, location="湖塘镇", requester_phone=REQUESTER_B)
    for case_id in (a, b):
        app.locate_owner(case_id, agent_id="seat-1")
    return a, b


def token(engine: sa.Engine, case_id: str, version: int) -> str:
    """The stored ciphertext of the phone of ``case_id`` v``version`` (see FIELDS)."""
    e = t.events
    with engine.connect() as conn:
        payload = conn.execute(
            sa.select(e.c.payload).where(e.c.case_id == case_id, e.c.version == version)
        ).scalar_one()
    value = json.loads(payload)[FIELDS[version]]
    assert isinstance(value, str)
    return value


def plant(engine: sa.Engine, case_id: str, version: int, value: str) -> None:
    """Write ``value`` as the phone of ``case_id`` v``version``: no key, no re-encryption."""
    e = t.events
    where = (e.c.case_id == case_id, e.c.version == version)
    with engine.begin() as conn:
        payload = json.loads(conn.execute(sa.select(e.c.payload).where(*where)).scalar_one())
        payload[FIELDS[version]] = value
        conn.execute(
            e.update().where(*where).values(payload=json.dumps(payload, ensure_ascii=False))
        )


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def store(fresh_url: str, clock: ManualClock) -> Iterator[SqlStore]:
    s = SqlStore(make_engine(fresh_url), KeyRing([("k1", KEY_1)]), clock=clock)
    yield s
    s.engine.dispose()


# --- a moved ciphertext: the engine dials nobody, the audit names the case ---------------


def forget_record(engine: sa.Engine, case_id: str) -> None:
    """The case's state row without its kept record, as cases written before 0005 are."""
    with engine.begin() as conn:
        conn.execute(t.cases.update().where(t.cases.c.case_id == case_id).values(folded=None))


@pytest.mark.parametrize("kept", [True, False], ids=["record-kept", "no-record"])
@pytest.mark.parametrize(
    ("source_version", "target_version"),
    [
        (2, 2),  # A's owner phone into B's look-up: B's call would ring A's owner
        (1, 2),  # A's requester phone into B's owner phone: it would ring A's requester
        (1, 1),  # A's requester phone into B's case: B's notices would go to A's requester
    ],
)
def test_a_ciphertext_moved_into_another_case_never_rings_the_wrong_phone(
    store: SqlStore,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    *,
    source_version: int,
    target_version: int,
    kept: bool,
) -> None:
    """With B's record kept in its state row, a command reads that sealed record, not the
    events, so B's call rings B's own owner; without it, the events are folded and the
    moved value is refused (nobody is dialled). Either way the audit names B."""
    app, telephony = facade(store, clock)
    a, b = two_located_cases(app)
    if not kept:
        forget_record(store.engine, b)
    plant(store.engine, b, target_version, token(store.engine, a, source_version))

    if kept:
        app.call_owner(b, agent_id="seat-1")
        assert [c.callee for c in telephony.calls] == [OWNER_B]
    else:
        with pytest.raises(CiphertextMisplaced) as refused:
            app.call_owner(b, agent_id="seat-1")
        assert telephony.calls == []  # nobody was dialled
        assert isinstance(refused.value, MoveCarError)
        message = str(refused.value)
        assert f"case {b} v{target_version}" in message
        assert not any(phone in message for phone in PHONES) and KEY_1 not in message
    with pytest.raises(CiphertextMisplaced):
        store.load(b)
    assert [e.case_id for e in store.load(a)] == [a, a]  # the source still reads

    result = verify(store)
    assert result.tampered_cases == {b} and result.unverifiable == ()
    assert any("does not open" in f.why for f in result.findings)

    monkeypatch.setenv("MOVECAR_KEYS", f"k1={KEY_1}")
    url = store.engine.url.render_as_string(hide_password=False)
    code, out, err = run_cli(
        "--db", url, "audit", "verify", "--actor", "audit-1", "--role", "auditor"
    )
    assert code == 1, (out, err)
    assert f"TAMPERED case {b}:" in out and f"case {a}:" not in out
    # Case A still dials its own owner: only the moved value is refused.
    app.call_owner(a, agent_id="seat-1")
    assert [c.callee for c in telephony.calls][-1] == OWNER_A


def kept_record(engine: sa.Engine, case_id: str) -> tuple[int, str]:
    c = t.cases
    with engine.connect() as conn:
        row = conn.execute(sa.select(c.c.version, c.c.folded).where(c.c.case_id == case_id)).one()
    assert row.folded is not None and row.folded.startswith("~1:k1:")
    return row.version, row.folded


@pytest.mark.parametrize("what", ["another case's", "an older one", "altered"])
def test_a_kept_record_opens_only_where_it_was_sealed(
    store: SqlStore, clock: ManualClock, what: str
) -> None:
    """The record in B's state row holds B's phones: one copied from A (whose owner it would
    ring), an older one of B's replayed, or an altered one, is refused before anything is
    decided; nobody is dialled, and the audit names B."""
    app, telephony = facade(store, clock)
    a, b = two_located_cases(app)
    c = t.cases
    if what == "another case's":
        values = {"folded": kept_record(store.engine, a)[1]}
    elif what == "an older one":
        _, older = kept_record(store.engine, b)
        app.record_call_outcome(b, app.call_owner(b, agent_id="seat-1").call_id, "no_answer")
        values = {"folded": older}
    else:
        sealed = kept_record(store.engine, b)[1]
        raw = bytearray(base64.urlsafe_b64decode(sealed[len("~1:k1:") :]))
        raw[20] ^= 1
        values = {"folded": "~1:k1:" + base64.urlsafe_b64encode(bytes(raw)).decode()}
    with store.engine.begin() as conn:
        conn.execute(c.update().where(c.c.case_id == b).values(**values))
    dialled = len(telephony.calls)
    with pytest.raises(CiphertextMisplaced) as refused:
        app.call_owner(b, agent_id="seat-1")
    assert len(telephony.calls) == dialled
    assert f"case {b} v" in str(refused.value) and "CaseRecord.folded" in str(refused.value)
    result = verify(store)
    assert result.tampered_cases == {b} and result.unverifiable == ()
    assert any("kept record" in f.why for f in result.findings)


def test_a_call_waiting_in_the_outbox_is_not_dialled_after_a_move(
    fresh_url: str, clock: ManualClock
) -> None:
    """The worker's path: the call is recorded, the owner's phone is swapped before the
    worker dials; the effect fails (stays pending) and nobody is dialled. (The requester's
    notice reads the record kept in the state row, which holds B's own requester.)"""
    store = SqlStore(
        make_engine(fresh_url),
        KeyRing([("k1", KEY_1)]),
        clock=clock,
        effects=EffectPolicy(dispatch_calls=True),
    )
    telephony = InMemoryTelephony()
    app = MoveCar(
        store=store,
        registry=InMemoryVehicleRegistry({PLATE_A: OWNER_A, PLATE_B: OWNER_B}),
        telephony=telephony,
        clock=clock,
        dispatch=Dispatch.OUTBOX,
    )
    a, b = two_located_cases(app)
    app.call_owner(b, agent_id="seat-1")  # recorded; the worker dials
    plant(store.engine, b, 2, token(store.engine, a, 2))
    runs = [r for r in app.run_due() if r.case_id == b and r.kind == "place_call"]
    assert runs and all(r.outcome == "failed" for r in runs)
    assert all(r.error and "does not open" in r.error for r in runs)
    assert telephony.calls == []
    store.engine.dispose()


def test_binding_finds_a_move_the_chain_cannot(store: SqlStore, clock: ManualClock) -> None:
    """Two requesters with the same number: the chain (over plaintext) stays intact, so
    only the binding shows that B's ciphertext is A's."""
    app, _ = facade(store, clock)
    a = app.open_case(plate=PLATE_A, location="湖塘镇", requester_phone=REQUESTER_A)
    b = app.open_case(plate=PLATE_B, location="湖塘镇", requester_phone=REQUESTER_A)
    plant(store.engine, b, 1, token(store.engine, a, 1))
    result = verify(store)
    assert result.tampered_cases == {b} and result.unverifiable == ()
    (finding,) = result.findings
    assert "does not open at case" in finding.why and "chain" not in finding.why


def test_a_wrong_key_is_still_cannot_verify_not_tampering(
    store: SqlStore, clock: ManualClock
) -> None:
    app, _ = facade(store, clock)
    two_located_cases(app)
    wrong = SqlStore(store.engine, KeyRing([("k1", KEY_2)]), clock=clock)  # same id
    result = verify(wrong)
    assert result.findings == () and len(result.unverifiable) == 1


def test_rotation_does_not_launder_a_moved_ciphertext(store: SqlStore, clock: ManualClock) -> None:
    app, _ = facade(store, clock)
    a, b = two_located_cases(app)
    plant(store.engine, b, 2, token(store.engine, a, 2))
    both = SqlStore(store.engine, KeyRing([("k2", KEY_2), ("k1", KEY_1)]), clock=clock)
    assert both.rotate_keys() == 3  # every phone but the moved one
    assert both.rotation_pending() == 1
    assert token(store.engine, b, 2).startswith("~1:k1:")  # left as it was
    with pytest.raises(CiphertextMisplaced):
        both.load(b)
    # The moved value is now the only one under k1, and AES-GCM cannot tell a moved value
    # from a wrong key: the audit says it cannot verify k1 (exit 3), never "clean".
    result = verify(both)
    assert not result.ok and any("'k1'" in why for why in result.unverifiable)


# --- legacy tokens: migration 0003 and rotation -----------------------------------------


def legacy_database(url: str, clock: ManualClock) -> tuple[sa.Engine, str, str]:
    """A database as the library before 0003 left it: schema 0001, unbound tokens."""
    engine = make_engine(url)
    keys = KeyRing([("k1", KEY_1)])
    store = SqlStore(engine, keys, clock=clock)
    a, b = two_located_cases(facade(store, clock)[0])
    assert downgrade(engine, "0001_initial", keys=keys) == "0001_initial"
    for case_id, version in ((a, 1), (a, 2), (b, 1), (b, 2)):
        stored = token(engine, case_id, version)
        # Exactly the old format: key id in front, AES-GCM with the key id as AAD.
        key_id, _, body = stored.partition(":")
        raw = base64.urlsafe_b64decode(body)
        plain = AESGCM(base64.urlsafe_b64decode(KEY_1)).decrypt(raw[:12], raw[12:], b"k1")
        assert key_id == "k1" and plain.decode() in PHONES
    return engine, a, b


def test_migration_without_keys_then_rotation_binds_legacy_tokens(
    fresh_url: str, clock: ManualClock
) -> None:
    engine, a, b = legacy_database(fresh_url, clock)
    assert upgrade(engine) == head_revision()  # no keys: nothing rewritten
    assert not token(engine, a, 1).startswith("~")
    store = SqlStore(engine, KeyRing([("k1", KEY_1)]), clock=clock)
    app, telephony = facade(store, clock)

    # The engine never opens a legacy token: it could have come from any case.
    with pytest.raises(UnboundCiphertext, match="keys rotate"):
        app.call_owner(a, agent_id="seat-1")
    assert telephony.calls == []
    result = verify(store)
    assert result.tampered_cases == {a, b} and result.unverifiable == ()
    assert all("not bound to their place" in f.why for f in result.findings)
    assert store.rotation_pending() == 4

    assert store.rotate_keys() == 4  # same key: the tokens are rebound, not re-keyed
    assert store.rotation_pending() == 0 and store.rotate_keys() == 0
    assert token(engine, a, 1).startswith("~1:k1:")
    assert verify(store).ok
    app.call_owner(a, agent_id="seat-1")
    assert [c.callee for c in telephony.calls] == [OWNER_A]

    # From now on a moved token is caught.
    plant(engine, b, 2, token(engine, a, 2))
    with pytest.raises(CiphertextMisplaced):
        app.call_owner(b, agent_id="seat-1")
    assert [c.callee for c in telephony.calls] == [OWNER_A]
    found = verify(store)
    assert found.tampered_cases == {b}, found.findings
    engine.dispose()


def test_migration_with_keys_rebinds_in_its_transaction(fresh_url: str, clock: ManualClock) -> None:
    engine, a, b = legacy_database(fresh_url, clock)
    keys = KeyRing([("k2", KEY_2), ("k1", KEY_1)])
    assert upgrade(engine, keys=keys) == head_revision()
    store = SqlStore(engine, keys, clock=clock)
    assert store.rotation_pending() == 0 and token(engine, b, 2).startswith("~1:k2:")
    assert verify(store).ok
    plant(engine, b, 1, token(engine, a, 1))
    assert verify(store).tampered_cases == {b}
    engine.dispose()


def test_connect_upgrades_a_legacy_sqlite_file_with_its_keys(
    databases: Databases, clock: ManualClock
) -> None:
    from movecar_adapters import connect

    url = databases.new("sqlite")
    engine, a, _ = legacy_database(url, clock)
    engine.dispose()
    keys = KeyRing([("k1", KEY_1)])
    with connect(url, keys=keys, clock=clock, environ={}) as mc:  # SQLite: auto-upgrade
        store = mc.store
        assert isinstance(store, SqlStore)
        assert store.rotation_pending() == 0 and verify(store).ok
        assert token(store.engine, a, 2).startswith("~1:k1:")


class _FailingRing(KeyRing):
    """Fails on the third value it seals: a crash in the middle of the migration."""

    sealed = 0

    def encrypt(self, plaintext: str, where: str) -> str:
        self.sealed += 1
        if self.sealed == 3:
            raise RuntimeError("crash in the middle of the migration")
        return super().encrypt(plaintext, where)


def test_a_failed_migration_writes_nothing(fresh_url: str, clock: ManualClock) -> None:
    engine, _, _ = legacy_database(fresh_url, clock)
    e = t.events
    with engine.connect() as conn:
        before = conn.execute(sa.select(e.c.payload).order_by(e.c.case_id, e.c.version)).all()
    with pytest.raises(RuntimeError, match="crash"):
        upgrade(engine, keys=_FailingRing([("k1", KEY_1)]))
    assert current_revision(engine) == "0001_initial"
    with engine.connect() as conn:
        after = conn.execute(sa.select(e.c.payload).order_by(e.c.case_id, e.c.version)).all()
    assert after == before  # not one token rebound
    engine.dispose()


def test_a_legacy_token_moved_before_the_migration_is_not_rebound(
    fresh_url: str, clock: ManualClock
) -> None:
    engine, a, b = legacy_database(fresh_url, clock)
    plant(engine, b, 2, token(engine, a, 2))  # the old attack, before binding existed
    keys = KeyRing([("k1", KEY_1)])
    upgrade(engine, keys=keys)
    store = SqlStore(engine, keys, clock=clock)
    assert store.rotation_pending() == 1 and store.rotate_keys() == 0
    assert not token(engine, b, 2).startswith("~")  # not laundered into a bound token
    app, telephony = facade(store, clock)
    with pytest.raises(UnboundCiphertext):
        app.call_owner(b, agent_id="seat-1")
    assert telephony.calls == []
    assert verify(store).tampered_cases == {b}
    engine.dispose()


def test_downgrade_needs_the_keys_once_tokens_are_bound(fresh_url: str, clock: ManualClock) -> None:
    engine = make_engine(fresh_url)
    store = SqlStore(engine, KeyRing([("k1", KEY_1)]), clock=clock)
    two_located_cases(facade(store, clock)[0])
    with pytest.raises(RuntimeError, match="with the keys"):
        downgrade(engine, "0001_initial")
    assert current_revision(engine) == head_revision()
    with pytest.raises(DecryptionFailed):  # still bound: nothing was half-converted
        KeyRing([("k1", KEY_1)]).decrypt_legacy(token(engine, store.case_ids().__next__(), 1))
    engine.dispose()


def test_cli_upgrade_tells_the_operator_to_rotate(
    databases: Databases, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = databases.new("sqlite")
    engine, a, _ = legacy_database(url, clock)
    monkeypatch.delenv("MOVECAR_KEYS", raising=False)
    code, out, err = run_cli("--db", url, "db", "upgrade")
    assert code == 0 and "4 stored phone values are not bound" in err and "keys rotate" in err
    monkeypatch.setenv("MOVECAR_KEYS", f"k1={KEY_1}")
    assert (
        run_cli("--db", url, "audit", "verify", "--actor", "audit-1", "--role", "auditor")[0] == 1
    )
    code, out, err = run_cli("--db", url, "keys", "rotate")
    assert code == 0 and "re-encrypted 4 events" in out, err
    assert (
        run_cli("--db", url, "audit", "verify", "--actor", "audit-1", "--role", "auditor")[0] == 0
    )
    plant(engine, a, 2, token(engine, a, 1))  # requester into owner, same case
    code, out, _ = run_cli(
        "--db", url, "audit", "verify", "--actor", "audit-1", "--role", "auditor"
    )
    assert code == 1 and f"TAMPERED case {a}:" in out
    monkeypatch.setenv("MOVECAR_KEYS", f"k2={KEY_2},k1={KEY_1}")  # a new key: re-encrypt
    code, out, err = run_cli("--db", url, "keys", "rotate")
    assert code == 3 and "re-encrypted 3 events" in out and "1 stored phone values" in err
    engine.dispose()
