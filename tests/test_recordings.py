"""Recordings (二(四) 坐席录音、录音提取; 七(三)): the roles, the port's contract suite on the
in-memory and filesystem stores, and what the filesystem store alone promises: encryption
bound to file, case and call, tamper detection, safe names, atomic writes, crash safety,
key rotation."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from movecar_adapters.crypto import KeyConfigError, KeyRing
from movecar_adapters.recordings_fs import MAGIC, SUFFIX, TEMP, TOMBSTONE, FileRecordingStore
from movecar_core.clock import ManualClock
from movecar_core.errors import MoveCarError
from movecar_core.recordings import (
    EVIDENCE_CALL_ID_MAX,
    InMemoryAccessLog,
    InMemoryRecordingStore,
    InvalidRecording,
    RecordingCorrupt,
    RecordingMisplaced,
    RecordingNotFound,
    RecordingPurged,
    RecordingRef,
    RecordingStore,
    evidence_call_id,
)
from movecar_core.roles import (
    MAX_ACTOR_ID,
    PERMISSIONS,
    Action,
    Actor,
    InvalidActor,
    PermissionDenied,
    Role,
    allowed,
    require,
)
from movecar_core.testing.recording_contracts import (
    AT,
    AUDIO,
    RecordingStoreContract,
    call_of,
)

BOSS = Actor("110-desk-1", Role.COMMAND_CENTRE)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


# --- roles --------------------------------------------------------------------------------


def test_every_action_has_its_row_in_the_one_table() -> None:
    assert set(PERMISSIONS) == set(Action)
    with pytest.raises(TypeError):
        PERMISSIONS[Action.EXTRACT_RECORDING] = frozenset(Role)  # type: ignore[index]


@given(role=st.sampled_from(Role), action=st.sampled_from(Action))
def test_require_follows_the_table(role: Role, action: Action) -> None:
    actor = Actor("someone", role)
    if role in PERMISSIONS[action]:
        assert allowed(actor, action) and require(actor, action) is actor
    else:
        assert not allowed(actor, action)
        with pytest.raises(PermissionDenied) as info:
            require(actor, action)
        message = str(info.value)
        assert "someone" in message and role.value in message and action.value in message


def test_roles_read_as_the_contract_names_them() -> None:
    assert [r.value for r in Role] == ["agent", "supervisor", "command_centre", "auditor"]
    assert Actor("x", "auditor").role is Role.AUDITOR
    assert not allowed(Actor("x", "auditor"), Action.EXTRACT_RECORDING)
    assert allowed(Actor("x", "auditor"), Action.READ_RECORDING_METADATA)


@pytest.mark.parametrize(
    ("actor_id", "role"),
    [
        ("", "agent"),
        ("  ", "agent"),
        (" padded", "agent"),
        ("a" * (MAX_ACTOR_ID + 1), "agent"),
        ("two\nlines", "agent"),
        (None, "agent"),
        ("x", "police"),
        ("x", None),
        ("x", "AGENT"),
    ],
)
def test_malformed_actors_are_refused(actor_id: Any, role: Any) -> None:
    with pytest.raises(InvalidActor):
        Actor(actor_id, role)


def test_a_denial_masks_a_phone_used_as_an_actor_id() -> None:
    with pytest.raises(PermissionDenied) as info:
        require(Actor("13912345678", Role.AGENT), Action.EXTRACT_RECORDING)
    assert "13912345678" not in str(info.value) and "139******78" in str(info.value)


# --- the contract suite on the in-memory store --------------------------------------------


class TestInMemoryRecordingStore(RecordingStoreContract):
    @pytest.fixture
    def log(self) -> InMemoryAccessLog:
        return InMemoryAccessLog(ManualClock())

    @pytest.fixture
    def recording_store(self, log: InMemoryAccessLog) -> InMemoryRecordingStore:
        return InMemoryRecordingStore(log, ManualClock())

    @pytest.fixture
    def access_entries(
        self, log: InMemoryAccessLog
    ) -> Callable[[str], list[tuple[str, str, str | None]]]:
        return lambda case_id: [(e.actor, e.action, e.detail) for e in log.entries(case_id)]

    @pytest.fixture
    def tamper(self, recording_store: InMemoryRecordingStore) -> Callable[[str, str], None]:
        def flip(case_id: str, call_key: str) -> None:
            audio = recording_store._audio[(case_id, call_key)]
            recording_store._audio[(case_id, call_key)] = bytes([audio[0] ^ 1]) + audio[1:]

        return flip


def test_the_in_memory_store_is_a_recording_store() -> None:
    store = InMemoryRecordingStore(InMemoryAccessLog(ManualClock()), ManualClock())
    assert isinstance(store, RecordingStore)


# --- the contract suite on the filesystem store (no database) -----------------------------


class MemoryEvidence:
    """The evidence and access-log ports in memory, as the SQL store offers them."""

    @attrs.frozen
    class Row:
        call_id: str
        location: str
        checksum_sha256: str
        duration_ms: int
        recorded_at: dt.datetime

    def __init__(self, clock: ManualClock) -> None:
        self.rows: dict[str, list[MemoryEvidence.Row]] = {}
        self.log = InMemoryAccessLog(clock)
        self.fail: Exception | None = None

    def add_recording(self, case_id: str, call_id: str, **kw: Any) -> None:
        if self.fail is not None:
            raise self.fail
        if any(r.call_id == call_id for rows in self.rows.values() for r in rows):
            raise ValueError("duplicate call_id")
        self.rows.setdefault(case_id, []).append(self.Row(call_id, **kw))

    def recordings(self, case_id: str) -> Sequence[MemoryEvidence.Row]:
        return list(self.rows.get(case_id, []))

    def log_access(
        self, actor: str, action: str, case_id: str | None = None, detail: str | None = None
    ) -> None:
        self.log.log_access(actor, action, case_id, detail)


def live_path(store: FileRecordingStore, case_id: str, call_key: str) -> Path:
    return store._names(case_id, call_key).live


def flip_last_bit(store: FileRecordingStore) -> Callable[[str, str], None]:
    def flip(case_id: str, call_key: str) -> None:
        path = live_path(store, case_id, call_key)
        data = bytearray(path.read_bytes())
        data[-1] ^= 1
        path.write_bytes(bytes(data))

    return flip


class TestFileRecordingStore(RecordingStoreContract):
    @pytest.fixture
    def log(self) -> InMemoryAccessLog:
        return InMemoryAccessLog(ManualClock())

    @pytest.fixture
    def recording_store(self, tmp_path: Path, log: InMemoryAccessLog) -> FileRecordingStore:
        keys = KeyRing([("k1", KeyRing.generate())])
        return FileRecordingStore(tmp_path / "rec", keys, access_log=log, clock=ManualClock())

    @pytest.fixture
    def access_entries(
        self, log: InMemoryAccessLog
    ) -> Callable[[str], list[tuple[str, str, str | None]]]:
        return lambda case_id: [(e.actor, e.action, e.detail) for e in log.entries(case_id)]

    @pytest.fixture
    def tamper(self, recording_store: FileRecordingStore) -> Callable[[str, str], None]:
        return flip_last_bit(recording_store)


class TestFileRecordingStoreWithEvidence(TestFileRecordingStore):
    """The same suite with an evidence sink: the access log is the evidence's."""

    @pytest.fixture
    def evidence(self) -> MemoryEvidence:
        return MemoryEvidence(ManualClock())

    @pytest.fixture
    def log(self, evidence: MemoryEvidence) -> InMemoryAccessLog:
        return evidence.log

    @pytest.fixture
    def recording_store(self, tmp_path: Path, evidence: MemoryEvidence) -> FileRecordingStore:
        keys = KeyRing([("k1", KeyRing.generate())])
        return FileRecordingStore(tmp_path / "rec", keys, evidence=evidence, clock=ManualClock())


# --- the filesystem store's own promises --------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def keys() -> KeyRing:
    return KeyRing([("k1", KeyRing.generate())])


@pytest.fixture
def evidence(clock: ManualClock) -> MemoryEvidence:
    return MemoryEvidence(clock)


@pytest.fixture
def store(
    tmp_path: Path, keys: KeyRing, evidence: MemoryEvidence, clock: ManualClock
) -> FileRecordingStore:
    return FileRecordingStore(tmp_path / "rec", keys, evidence=evidence, clock=clock)


def put(store: FileRecordingStore, case_id: str, audio: bytes = AUDIO, n: int = 1) -> RecordingRef:
    return store.put(case_id, call_of(case_id, n), audio, recorded_at=AT, duration_ms=31_000)


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_the_file_holds_no_audio_and_no_key_and_only_its_owner_reads_it(
    store: FileRecordingStore, keys: KeyRing, evidence: MemoryEvidence
) -> None:
    secret = "车主说：我马上挪车 13912345678".encode() * 50
    ref = put(store, "case-1", secret)
    [path] = all_files(store.root)
    blob = path.read_bytes()
    assert blob.startswith(MAGIC)
    assert secret[:40] not in blob and b"13912345678" not in blob
    for _, key in keys.entries():
        assert key.encode() not in blob
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    # The name is a hash: neither the case id nor the call key shows in the path.
    assert "case-1" not in str(path.relative_to(store.root))
    assert path.relative_to(store.root).as_posix() == ref.location
    [row] = evidence.recordings("case-1")
    assert (row.call_id, row.location, row.checksum_sha256) == (
        "case-1:call:1",
        ref.location,
        hashlib.sha256(secret).hexdigest(),
    )


def test_each_file_has_its_own_data_key(store: FileRecordingStore) -> None:
    put(store, "case-1", AUDIO, 1)
    put(store, "case-1", AUDIO, 2)
    first, second = all_files(store.root)
    # Same audio, other key and nonce: nothing in common past the header.
    assert first.read_bytes()[-len(AUDIO) :] != second.read_bytes()[-len(AUDIO) :]


@pytest.mark.parametrize(
    "case_id",
    ["..", "../../etc", "a/../../b", "/etc/passwd", "C:\\win", ".", "~", "x" * 64, "空格 案件"],
)
def test_hostile_case_ids_stay_inside_the_root(tmp_path: Path, case_id: str) -> None:
    root = tmp_path / "rec"
    store = FileRecordingStore(
        root, KeyRing([("k1", KeyRing.generate())]), access_log=InMemoryAccessLog(ManualClock())
    )
    key = f"{case_id}:call:1"
    store.put(case_id, key, b"x", recorded_at=AT, duration_ms=1)
    assert store.extract(case_id, key, BOSS) == b"x"
    assert [p.parent.parent.parent for p in all_files(tmp_path)] == [root]
    assert store.purge_case(case_id) == 1
    assert [p.parent.parent.parent for p in all_files(tmp_path)] == [root]


def test_long_call_keys_have_a_short_evidence_id() -> None:
    assert evidence_call_id("c" * 32 + ":call:1") == "c" * 32 + ":call:1"
    long = evidence_call_id("k" * 400)
    assert len(long) == EVIDENCE_CALL_ID_MAX and long.startswith("~")
    assert evidence_call_id("~x") != "~x"  # a key shaped like a hashed id is hashed too
    assert long != evidence_call_id("k" * 399)


# --- tampering: every change is found (七(三) 防止 ... 篡改) --------------------------------


def _tamper_errors() -> tuple[type[Exception], ...]:
    # A flip inside the wrapped key's key id names a key that is not configured: that is
    # reported as a configuration error (exit 3 too), never as audio.
    return (RecordingCorrupt, KeyConfigError)


@FAST
@given(data=st.data())
def test_any_single_bit_flip_is_found(tmp_path_factory: pytest.TempPathFactory, data: Any) -> None:
    root = tmp_path_factory.mktemp("flip")
    store = FileRecordingStore(
        root, KeyRing([("k1", KeyRing.generate())]), access_log=InMemoryAccessLog(ManualClock())
    )
    audio = data.draw(st.binary(max_size=200))
    put(store, "c", audio)
    [path] = all_files(root)
    blob = bytearray(path.read_bytes())
    bit = data.draw(st.integers(0, len(blob) * 8 - 1))
    blob[bit // 8] ^= 1 << (bit % 8)
    path.write_bytes(bytes(blob))
    with pytest.raises(_tamper_errors()):
        store.extract("c", call_of("c"), BOSS)
    with pytest.raises(_tamper_errors()):
        store.verify("c", call_of("c"))


@FAST
@given(data=st.data())
def test_truncation_and_extension_are_found(
    tmp_path_factory: pytest.TempPathFactory, data: Any
) -> None:
    root = tmp_path_factory.mktemp("cut")
    store = FileRecordingStore(
        root, KeyRing([("k1", KeyRing.generate())]), access_log=InMemoryAccessLog(ManualClock())
    )
    put(store, "c", data.draw(st.binary(max_size=200)))
    [path] = all_files(root)
    blob = path.read_bytes()
    if data.draw(st.booleans()):
        changed = blob[: data.draw(st.integers(0, len(blob) - 1))]
    else:
        changed = blob + data.draw(st.binary(min_size=1, max_size=40))
    path.write_bytes(changed)
    with pytest.raises(RecordingCorrupt):
        store.extract("c", call_of("c"), BOSS)


@pytest.mark.parametrize("target", ["other call", "other case"])
def test_a_file_moved_to_another_call_or_case_does_not_open(
    store: FileRecordingStore, target: str
) -> None:
    put(store, "case-1", b"first", 1)
    other = (
        ("case-1", call_of("case-1", 2)) if target == "other call" else ("case-2", "case-2:call:1")
    )
    put(store, other[0], b"second", int(other[1].rsplit(":", 1)[1]))
    source = live_path(store, "case-1", call_of("case-1", 1))
    dest = live_path(store, *other)
    dest.write_bytes(source.read_bytes())  # a swap: call 2 now holds call 1's file
    with pytest.raises(RecordingMisplaced):
        store.extract(*other, BOSS)
    with pytest.raises(RecordingMisplaced):
        store.metadata(*other)


def test_a_file_relabelled_for_another_call_does_not_open(store: FileRecordingStore) -> None:
    """Moved, and its header edited to name the new call: the wrapped key and the tag
    still name the old one."""
    put(store, "case-1", b"first", 1)
    put(store, "case-1", b"second", 2)
    source = live_path(store, "case-1", call_of("case-1", 1))
    dest = live_path(store, "case-1", call_of("case-1", 2))
    blob = source.read_bytes()
    size = int.from_bytes(blob[8:12], "big")
    header = json.loads(blob[12 : 12 + size])
    header.update(call_key=call_of("case-1", 2), file=dest.name)
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    dest.write_bytes(blob[:8] + len(raw).to_bytes(4, "big") + raw + blob[12 + size :])
    with pytest.raises(RecordingMisplaced):
        store.extract("case-1", call_of("case-1", 2), BOSS)


def test_audio_resealed_by_someone_with_the_keys_fails_the_evidence(
    tmp_path: Path, keys: KeyRing, evidence: MemoryEvidence, clock: ManualClock
) -> None:
    """Whoever holds the master key can seal other audio in a valid file; the SHA-256
    in the case's evidence (the ledger covers it) still tells."""
    store = FileRecordingStore(tmp_path / "rec", keys, evidence=evidence, clock=clock)
    put(store, "c", b"what was said")
    forger = FileRecordingStore(tmp_path / "rec", keys, access_log=evidence, clock=clock)
    live_path(store, "c", call_of("c")).unlink()
    put(forger, "c", b"what was not said")
    with pytest.raises(RecordingCorrupt, match="evidence"):
        store.extract("c", call_of("c"), BOSS)
    with pytest.raises(RecordingCorrupt, match="evidence"):
        store.metadata("c", call_of("c"))


def test_a_lost_file_is_not_a_missing_recording(store: FileRecordingStore) -> None:
    put(store, "c")
    path = live_path(store, "c", call_of("c"))
    backup = path.read_bytes()
    path.unlink()
    assert not store.exists("c", call_of("c"))
    with pytest.raises(RecordingCorrupt, match="missing"):
        store.extract("c", call_of("c"), BOSS)
    with pytest.raises(RecordingCorrupt, match="missing"):
        store.verify("c", call_of("c"))
    # Not written again by a put (a purged case whose tombstone was lost too must not get
    # its audio back): the file itself is restored from a backup.
    with pytest.raises(RecordingCorrupt, match="missing"):
        put(store, "c")
    assert all_files(store.root) == []
    path.write_bytes(backup)
    assert store.extract("c", call_of("c"), BOSS) == AUDIO


def test_a_symbolic_link_is_not_followed(store: FileRecordingStore, tmp_path: Path) -> None:
    put(store, "c")
    path = live_path(store, "c", call_of("c"))
    outside = tmp_path / "elsewhere"
    outside.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(outside)
    with pytest.raises(RecordingCorrupt):
        store.extract("c", call_of("c"), BOSS)


# --- keys ------------------------------------------------------------------------------------


def test_without_its_master_key_a_recording_does_not_open(
    tmp_path: Path, evidence: MemoryEvidence, clock: ManualClock
) -> None:
    old = KeyRing([("k1", KeyRing.generate())])
    FileRecordingStore(tmp_path / "rec", old, evidence=evidence, clock=clock).put(
        "c", "c:call:1", AUDIO, recorded_at=AT, duration_ms=1
    )
    other = KeyRing([("k2", KeyRing.generate())])
    store = FileRecordingStore(tmp_path / "rec", other, evidence=evidence, clock=clock)
    with pytest.raises(KeyConfigError, match="'k1'") as info:
        store.extract("c", "c:call:1", BOSS)
    assert old.entries()[0][1] not in str(info.value)
    # the same id with other key bytes: the wrapped key does not open
    same_id = KeyRing([("k1", KeyRing.generate())])
    store = FileRecordingStore(tmp_path / "rec", same_id, evidence=evidence, clock=clock)
    with pytest.raises(RecordingCorrupt):
        store.extract("c", "c:call:1", BOSS)


def test_a_store_needs_a_key_ring_and_an_access_log(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigError):
        FileRecordingStore(tmp_path, None, access_log=InMemoryAccessLog(ManualClock()))  # type: ignore[arg-type]
    with pytest.raises(InvalidRecording, match="access_log"):
        FileRecordingStore(tmp_path, KeyRing([("k1", KeyRing.generate())]))
    with pytest.raises(InvalidRecording, match="max_bytes"):
        FileRecordingStore(
            tmp_path,
            KeyRing([("k1", KeyRing.generate())]),
            access_log=InMemoryAccessLog(ManualClock()),
            max_bytes=0,
        )
    ring = KeyRing([("k1", KeyRing.generate())])
    shown = repr(FileRecordingStore(tmp_path, ring, access_log=InMemoryAccessLog(ManualClock())))
    assert ring.entries()[0][1] not in shown and str(tmp_path) in shown


def test_a_smaller_limit_is_kept(tmp_path: Path) -> None:
    store = FileRecordingStore(
        tmp_path,
        KeyRing([("k1", KeyRing.generate())]),
        access_log=InMemoryAccessLog(ManualClock()),
        max_bytes=10,
    )
    store.put("c", "c:call:1", b"x" * 10, recorded_at=AT, duration_ms=1)
    with pytest.raises(InvalidRecording, match="larger than 10 bytes"):
        store.put("c", "c:call:2", b"x" * 11, recorded_at=AT, duration_ms=1)


def test_rotation_rewraps_the_data_keys_and_leaves_the_audio(
    tmp_path: Path, evidence: MemoryEvidence, clock: ManualClock
) -> None:
    k1 = ("k1", KeyRing.generate())
    old = FileRecordingStore(tmp_path / "rec", KeyRing([k1]), evidence=evidence, clock=clock)
    refs = [put(old, f"case-{i}", bytes([i]) * 100) for i in range(3)]
    before = {p: p.read_bytes() for p in all_files(old.root)}
    new = FileRecordingStore(
        tmp_path / "rec", KeyRing([("k2", KeyRing.generate()), k1]), evidence=evidence, clock=clock
    )
    assert new.rotation_pending() == 3
    assert new.rotate_keys() == 3
    assert new.rotation_pending() == 0 and new.rotate_keys() == 0
    for path, blob in before.items():
        after = path.read_bytes()
        assert after != blob and after[-116:] == blob[-116:]  # the sealed audio is unchanged
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # The old key can go now.
    only_new = FileRecordingStore(
        tmp_path / "rec", KeyRing([new.keys.entries()[0]]), evidence=evidence, clock=clock
    )
    for i, ref in enumerate(refs):
        assert only_new.extract(ref.case_id, ref.call_key, BOSS) == bytes([i]) * 100
    assert all(p.suffix == SUFFIX for p in all_files(old.root))


def test_rotation_leaves_a_file_it_cannot_open_and_counts_it(
    tmp_path: Path, evidence: MemoryEvidence, clock: ManualClock
) -> None:
    k1 = ("k1", KeyRing.generate())
    old = FileRecordingStore(tmp_path / "rec", KeyRing([k1]), evidence=evidence, clock=clock)
    put(old, "a")
    put(old, "b")
    moved = live_path(old, "b", call_of("b"))
    moved.write_bytes(live_path(old, "a", call_of("a")).read_bytes())  # b now holds a's file
    new = FileRecordingStore(
        tmp_path / "rec", KeyRing([("k2", KeyRing.generate()), k1]), evidence=evidence, clock=clock
    )
    assert new.rotate_keys() == 1
    assert new.rotation_pending() == 1


# --- atomic writes and crash safety --------------------------------------------------------
#
# The order is: file (temp, fsync, link, folder fsync) first, evidence second. The ledger
# is append-only: a leaf for audio that was never written could never be taken back,
# whereas a file without its evidence is visible, not handed out, and completed by a retry.


@pytest.mark.parametrize("step", ["write", "fsync", "link"])
def test_a_failure_mid_write_leaves_nothing(
    store: FileRecordingStore, evidence: MemoryEvidence, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    real = getattr(os, step)

    def broken(*args: Any) -> Any:
        # only on the temporary file (pytest writes through os.write too)
        if step == "link" or os.readlink(f"/proc/self/fd/{args[0]}").endswith(TEMP):
            raise OSError(28, "No space left on device")
        return real(*args)

    monkeypatch.setattr(os, step, broken)
    with pytest.raises(OSError, match="No space"):
        put(store, "c")
    monkeypatch.undo()
    assert [p for p in all_files(store.root)] == []
    assert evidence.recordings("c") == []
    assert not store.exists("c", call_of("c"))
    assert put(store, "c").sha256 == hashlib.sha256(AUDIO).hexdigest()  # then it works


def test_when_the_evidence_refuses_the_file_goes_too(
    store: FileRecordingStore, evidence: MemoryEvidence
) -> None:
    evidence.fail = MoveCarError("database is down")
    with pytest.raises(MoveCarError, match="down"):
        put(store, "c")
    assert all_files(store.root) == [] and evidence.recordings("c") == []
    evidence.fail = None
    put(store, "c")
    assert len(all_files(store.root)) == 1 and len(evidence.recordings("c")) == 1


def _crash_in_child(action: Callable[[], None]) -> None:
    """Run ``action`` in a forked child that dies (``os._exit``) where the test says."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            action()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 99, status


@pytest.fixture
def forked() -> None:
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")


@pytest.mark.usefixtures("forked")
def test_a_crash_between_file_and_evidence_is_completed_by_a_retry(
    store: FileRecordingStore, evidence: MemoryEvidence, monkeypatch: pytest.MonkeyPatch
) -> None:
    def die(*args: Any, **kwargs: Any) -> None:
        os._exit(99)

    def child() -> None:
        monkeypatch.setattr(evidence, "add_recording", die)
        put(store, "c")

    _crash_in_child(child)
    [path] = all_files(store.root)  # the file is complete: it was linked after its fsync
    assert path.suffix == SUFFIX and evidence.recordings("c") == []
    assert not store.exists("c", call_of("c"))
    with pytest.raises(RecordingNotFound, match="interrupted"):
        store.extract("c", call_of("c"), BOSS)
    with pytest.raises(RecordingNotFound, match="interrupted"):
        store.metadata("c", call_of("c"))
    assert evidence.log.entries("c") == []  # nothing handed out, nothing logged
    ref = put(store, "c")  # the retry: the same audio completes the evidence
    assert [r.checksum_sha256 for r in evidence.recordings("c")] == [ref.sha256]
    assert store.extract("c", call_of("c"), BOSS) == AUDIO


@pytest.mark.usefixtures("forked")
def test_a_crash_mid_write_leaves_only_a_temporary_file(
    store: FileRecordingStore, evidence: MemoryEvidence, clock: ManualClock
) -> None:
    def child() -> None:
        real = os.fsync

        def die(fd: int) -> None:
            if os.readlink(f"/proc/self/fd/{fd}").endswith(TEMP):
                os._exit(99)  # after the bytes were written, before they were flushed
            real(fd)

        os.fsync = die
        put(store, "c")

    _crash_in_child(child)
    [tmp] = all_files(store.root)
    assert tmp.name.startswith(".") and tmp.name.endswith(TEMP)
    assert not store.exists("c", call_of("c")) and evidence.recordings("c") == []
    with pytest.raises(RecordingNotFound):
        store.extract("c", call_of("c"), BOSS)
    assert store.remove_partial() == 0  # younger than an hour: may be a write under way
    clock.set(clock.now() + dt.timedelta(days=1))
    os.utime(tmp, (0, 0))
    assert store.remove_partial() == 1 and all_files(store.root) == []
    put(store, "c")
    assert store.extract("c", call_of("c"), BOSS) == AUDIO


def test_two_writers_of_one_call_cannot_both_win(
    store: FileRecordingStore, evidence: MemoryEvidence, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link never replaces: the second writer judges the first one's file."""
    real_link = os.link
    calls: list[int] = []

    def racing_link(src: Any, dst: Any) -> None:
        if not calls:
            calls.append(1)
            other = FileRecordingStore(
                store.root, store.keys, access_log=evidence.log, clock=ManualClock()
            )
            put(other, "c", b"the other writer's audio")  # lands first
        real_link(src, dst)

    monkeypatch.setattr(os, "link", racing_link)
    with pytest.raises(Exception, match="another recording"):
        put(store, "c")
    monkeypatch.undo()
    assert [p.suffix for p in all_files(store.root)] == [SUFFIX]
    other = FileRecordingStore(store.root, store.keys, access_log=evidence.log)
    assert other.extract("c", call_of("c"), BOSS) == b"the other writer's audio"


# --- purge ----------------------------------------------------------------------------------


def test_a_purge_leaves_a_tombstone_with_the_hash_and_no_audio(
    store: FileRecordingStore, clock: ManualClock
) -> None:
    ref = put(store, "c")
    clock.advance(days=3 * 366)
    assert store.purge_case("c") == 1
    [tomb] = all_files(store.root)
    assert tomb.suffix == TOMBSTONE
    kept = json.loads(tomb.read_text())
    assert kept["header"]["sha256"] == ref.sha256 and "nonce" in kept["header"]
    assert AUDIO[:20] not in tomb.read_bytes()
    meta = store.metadata("c", call_of("c"))
    assert meta.purged_at == clock.now() and meta.sha256 == ref.sha256
    with pytest.raises(RecordingPurged, match="二\\(四\\)"):
        store.verify("c", call_of("c"))


def test_an_interrupted_purge_is_finished_by_running_it_again(
    store: FileRecordingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(store, "c", b"one", 1)
    put(store, "c", b"two", 2)
    real_unlink = Path.unlink
    seen: list[Path] = []

    def crash_once(self: Path, missing_ok: bool = False) -> None:
        if self.suffix == SUFFIX and not seen:
            seen.append(self)
            raise OSError(5, "I/O error")
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", crash_once)
    with pytest.raises(OSError, match="I/O error"):
        store.purge_case("c")
    monkeypatch.undo()
    # the tombstone was written first: the call already reads as purged
    [first] = [n for n in (1, 2) if live_path(store, "c", call_of("c", n)) == seen[0]]
    with pytest.raises(RecordingPurged):
        store.extract("c", call_of("c", first), BOSS)
    assert store.purge_case("c") == 2
    assert sorted(p.suffix for p in all_files(store.root)) == [TOMBSTONE, TOMBSTONE]


def test_stream_and_path_inputs(store: FileRecordingStore, tmp_path: Path) -> None:
    source = tmp_path / "call.wav"
    source.write_bytes(AUDIO)
    ref = store.put("c", "c:call:1", source, recorded_at=AT, duration_ms=5)
    assert ref.sha256 == hashlib.sha256(AUDIO).hexdigest()
    with pytest.raises(InvalidRecording):
        store.put("c", "c:call:2", str(source), recorded_at=AT, duration_ms=5)  # type: ignore[arg-type]


def test_a_file_whose_header_lies_about_its_audio_is_refused(tmp_path: Path) -> None:
    """Sealed by someone with the keys, with the SHA-256 of other audio in its header:
    the tag passes, the hash does not."""
    store = FileRecordingStore(
        tmp_path, KeyRing([("k1", KeyRing.generate())]), access_log=InMemoryAccessLog(ManualClock())
    )
    ref = put(store, "c", b"real")
    names = store._names("c", call_of("c"))
    lie = attrs.evolve(ref, sha256=hashlib.sha256(b"other").hexdigest())
    names.live.write_bytes(store._seal(names, lie, b"real"))
    with pytest.raises(RecordingCorrupt, match="SHA-256"):
        store.extract("c", call_of("c"), BOSS)
