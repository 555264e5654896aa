"""Recordings with the SQL store as their evidence (二(四) 坐席录音、录音提取, 七(三)): the port's
contract suite on SQLite, PostgreSQL and MariaDB, the SHA-256 in the ledger and the audit,
and the 3-year retention purge with legal holds removing the audio and keeping its hash."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import stat
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlsupport import KEY_1, KEY_2, Databases

from movecar_adapters.cli import main
from movecar_adapters.crypto import KeyRing
from movecar_adapters.recordings_fs import SUFFIX, TOMBSTONE, FileRecordingStore
from movecar_adapters.sql import SqlStore, add_years, audit, make_engine, verify
from movecar_adapters.sql import schema as t
from movecar_adapters.sql.errors import StorageInputError
from movecar_core.calendar import SHANGHAI
from movecar_core.clock import ManualClock
from movecar_core.errors import CasePurged
from movecar_core.recordings import (
    LOG_EXTRACT,
    LOG_EXTRACT_DENIED,
    RecordingCorrupt,
    RecordingPurged,
    evidence_call_id,
)
from movecar_core.roles import Actor, Role
from movecar_core.testing.contracts import sample_history
from movecar_core.testing.recording_contracts import AT, AUDIO, RecordingStoreContract, call_of

OPENED = dt.datetime(2025, 3, 1, 8, 30, tzinfo=SHANGHAI)
CLOSED = OPENED + dt.timedelta(minutes=3)  # sample_history escalates after 3 minutes
BOSS = Actor("110-desk-1", Role.COMMAND_CENTRE)


def open_case(store: SqlStore, case_id: str | None = None, *, close: bool = True) -> str:
    case_id = case_id or uuid.uuid4().hex
    history = sample_history(case_id, at=OPENED)
    store.append(case_id, history if close else history[:3], expected_version=0)
    return case_id


def flip_last_bit(files: FileRecordingStore) -> Callable[[str, str], None]:
    def flip(case_id: str, call_key: str) -> None:
        path = files._names(case_id, call_key).live
        blob = bytearray(path.read_bytes())
        blob[-1] ^= 1
        path.write_bytes(bytes(blob))

    return flip


@pytest.fixture
def files(
    tmp_path: Path, keys: KeyRing, fresh_store: SqlStore, clock: ManualClock
) -> FileRecordingStore:
    return FileRecordingStore(tmp_path / "rec", keys, evidence=fresh_store, clock=clock)


class TestFileRecordingsOnSql(RecordingStoreContract):
    @pytest.fixture
    def recording_store(self, files: FileRecordingStore) -> FileRecordingStore:
        return files

    @pytest.fixture
    def new_case(self, fresh_store: SqlStore) -> Callable[[], str]:
        return lambda: open_case(fresh_store)

    @pytest.fixture
    def access_entries(
        self, fresh_store: SqlStore
    ) -> Callable[[str], list[tuple[str, str, str | None]]]:
        def entries(case_id: str) -> list[tuple[str, str, str | None]]:
            return [(e["actor"], e["action"], e["detail"]) for e in fresh_store.access_log(case_id)]

        return entries

    @pytest.fixture
    def tamper(self, files: FileRecordingStore) -> Callable[[str, str], None]:
        return flip_last_bit(files)


# --- the evidence: the SHA-256 in the ledger (二(四), 五(三)) ---------------------------------


def test_the_sha256_enters_the_ledger_and_the_audit_checks_it(
    fresh_store: SqlStore, files: FileRecordingStore
) -> None:
    case_id = open_case(fresh_store)
    ref = files.put(case_id, call_of(case_id), AUDIO, recorded_at=AT, duration_ms=31_000)
    [row] = fresh_store.recordings(case_id)
    assert (row.call_id, row.location, row.checksum_sha256, row.duration_ms) == (
        call_of(case_id),
        ref.location,
        ref.sha256,
        31_000,
    )
    assert row.recorded_at == AT
    files.extract(case_id, call_of(case_id), BOSS)
    assert verify(fresh_store).ok  # the recording's and the extraction's leaves
    [entry] = fresh_store.access_log(case_id)
    assert (entry["actor"], entry["action"]) == ("110-desk-1", LOG_EXTRACT)
    # Someone rewrites the recorded hash to match other audio: the audit names the row,
    # and the store refuses to hand out audio that does not match its evidence.
    with fresh_store.engine.begin() as conn:
        conn.execute(t.recordings.update().values(checksum_sha256="0" * 64))
    findings = verify(fresh_store).findings
    assert any(f.kind == "recording" and "differs from its ledger leaf" in f.why for f in findings)
    with pytest.raises(RecordingCorrupt, match="evidence"):
        files.extract(case_id, call_of(case_id), BOSS)


def test_a_long_call_key_has_a_hashed_call_id_in_the_evidence(
    fresh_store: SqlStore, files: FileRecordingStore
) -> None:
    case_id = open_case(fresh_store)  # (a 64-character case id overflows mc_outbox on servers)
    key = call_of(case_id, 10**30)
    files.put(case_id, key, AUDIO, recorded_at=AT, duration_ms=1)
    [row] = fresh_store.recordings(case_id)
    assert len(key) > 64 and row.call_id == evidence_call_id(key) and len(row.call_id) == 64
    assert files.extract(case_id, key, BOSS) == AUDIO
    assert verify(fresh_store).ok


def test_no_file_is_left_when_the_evidence_refuses(
    fresh_store: SqlStore, files: FileRecordingStore
) -> None:
    with pytest.raises(StorageInputError, match="no such case"):
        files.put("no-such-case", "no-such-case:call:1", AUDIO, recorded_at=AT, duration_ms=1)
    assert [p for p in files.root.rglob("*") if p.is_file()] == []


# --- retention (二(四)): three years after closing, never under legal hold -------------------


def test_the_purge_removes_the_audio_keeps_the_hash_and_spares_held_cases(
    fresh_store: SqlStore,
    files: FileRecordingStore,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = open_case(fresh_store)
    held = open_case(fresh_store)
    ongoing = open_case(fresh_store, close=False)
    for case_id in (old, held, ongoing):
        files.put(case_id, call_of(case_id), AUDIO, recorded_at=AT, duration_ms=31_000)
    fresh_store.set_legal_hold(held, "诉讼中 (court case 2028-17)", actor="legal")
    now = add_years(CLOSED, 3)
    clock.set(now)

    early = fresh_store.purge(now=now - dt.timedelta(microseconds=1), recordings=files)
    assert early.cases == () and early.audio_removed == 0
    assert files.exists(old, call_of(old))

    done = fresh_store.purge(now=now, recordings=files)
    assert (done.cases, done.held, done.audio_removed) == ((old,), (held,), 1)
    assert done.recordings == (files.metadata(old, call_of(old)).location,)
    assert fresh_store.audio_pending() == []
    # the audio is gone, its hash stays in the evidence and in the tombstone
    assert not files.exists(old, call_of(old))
    with pytest.raises(RecordingPurged):
        files.extract(old, call_of(old), BOSS)
    [row] = fresh_store.recordings(old)
    assert row.checksum_sha256 == files.metadata(old, call_of(old)).sha256
    folder = files._names(old, call_of(old)).folder
    assert [p.suffix for p in folder.iterdir()] == [TOMBSTONE]
    # the held and the open case keep theirs
    for case_id in (held, ongoing):
        assert files.extract(case_id, call_of(case_id), BOSS) == AUDIO
    # The kept rows and their leaves stay on the audit's fast path (equal digests): no
    # leaf-by-leaf comparison of every recording on each audit.
    slow: list[object] = []
    monkeypatch.setattr(audit, "compare_kind", lambda store, kind: slow.append(kind) or [])
    assert verify(fresh_store).ok and slow == []
    monkeypatch.undo()
    # a tombstone's kept row is still checked against its leaf
    with fresh_store.engine.begin() as conn:
        conn.execute(
            t.recordings.update()
            .where(t.recordings.c.case_id == old)
            .values(duration_ms=1)
        )  # fmt: skip
    assert any(f.kind == "recording" for f in verify(fresh_store).findings)


def test_released_holds_are_purged_like_any_other(
    fresh_store: SqlStore, files: FileRecordingStore, clock: ManualClock
) -> None:
    held = open_case(fresh_store)
    files.put(held, call_of(held), AUDIO, recorded_at=AT, duration_ms=1)
    fresh_store.set_legal_hold(held, "调查中", actor="legal")
    clock.set(add_years(CLOSED, 4))
    assert fresh_store.purge(recordings=files).held == (held,)
    assert files.exists(held, call_of(held))
    fresh_store.set_legal_hold(held, None, actor="legal")
    assert fresh_store.purge(recordings=files).audio_removed == 1
    assert not files.exists(held, call_of(held))


def test_an_interrupted_audio_purge_is_finished_by_the_next_run(
    fresh_store: SqlStore,
    files: FileRecordingStore,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = open_case(fresh_store), open_case(fresh_store)
    for case_id in (first, second):
        files.put(case_id, call_of(case_id), AUDIO, recorded_at=AT, duration_ms=1)
    clock.set(add_years(CLOSED, 3))

    def disk_fails(case_id: str) -> int:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(files, "purge_case", disk_fails)
    with pytest.raises(OSError, match="I/O error"):
        fresh_store.purge(recordings=files)
    monkeypatch.undo()
    # The first case's purge committed; its audio is pending, and it is still there.
    assert fresh_store.audio_pending() == [first]
    assert files.exists(first, call_of(first))
    done = fresh_store.purge(recordings=files)
    assert done.cases == (second,) and done.audio_removed == 2
    assert fresh_store.audio_pending() == []
    assert not files.exists(first, call_of(first)) and not files.exists(second, call_of(second))
    assert verify(fresh_store).ok


def test_a_purge_without_the_store_leaves_the_audio_pending(
    fresh_store: SqlStore, files: FileRecordingStore, clock: ManualClock
) -> None:
    case_id = open_case(fresh_store)
    files.put(case_id, call_of(case_id), AUDIO, recorded_at=AT, duration_ms=1)
    clock.set(add_years(CLOSED, 3))
    done = fresh_store.purge()
    assert done.cases == (case_id,) and done.audio_removed == 0
    assert done.recordings == (files.metadata(case_id, call_of(case_id)).location,)
    assert fresh_store.audio_pending() == [case_id]
    assert fresh_store.purge_audio(files) == 1
    assert fresh_store.audio_pending() == [] and fresh_store.purge_audio(files) == 0
    suffixes = [p.suffix for p in files.root.rglob("*") if p.is_file()]
    assert suffixes == [TOMBSTONE]


def test_no_new_audio_for_a_purged_case(
    fresh_store: SqlStore, files: FileRecordingStore, clock: ManualClock
) -> None:
    case_id = open_case(fresh_store)
    clock.set(add_years(CLOSED, 3))
    fresh_store.purge(recordings=files)
    with pytest.raises(CasePurged):
        files.put(case_id, call_of(case_id), AUDIO, recorded_at=AT, duration_ms=1)
    assert not any(p.suffix == SUFFIX for p in files.root.rglob("*"))


def test_old_purges_that_deleted_recording_rows_still_verify(
    fresh_store: SqlStore, files: FileRecordingStore, clock: ManualClock
) -> None:
    """Before recordings' rows were kept, a purge deleted them: their leaves stay lawful."""
    case_id = open_case(fresh_store)
    files.put(case_id, call_of(case_id), AUDIO, recorded_at=AT, duration_ms=1)
    clock.set(add_years(CLOSED, 3))
    fresh_store.purge(recordings=files)
    with fresh_store.engine.begin() as conn:
        conn.execute(sa.delete(t.recordings).where(t.recordings.c.case_id == case_id))
    assert verify(fresh_store).ok


# --- the command line: `movecar recording extract|show`, `retention purge --recordings` --------


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def cli_store(
    databases: Databases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, SqlStore, FileRecordingStore]:
    url = databases.new("sqlite")
    store = SqlStore(make_engine(url), KeyRing([("k1", KEY_1)]))
    files = FileRecordingStore(tmp_path / "rec", store.keys, evidence=store)
    monkeypatch.setenv("MOVECAR_KEYS", f"k1={KEY_1}")
    monkeypatch.setenv("MOVECAR_RECORDINGS", str(files.root))
    monkeypatch.setenv("MOVECAR_DB_URL", url)
    return url, store, files


def test_cli_extract_writes_a_new_private_file_and_logs_it(
    cli_store: tuple[str, SqlStore, FileRecordingStore], tmp_path: Path
) -> None:
    _, store, files = cli_store
    case_id = open_case(store)
    ref = files.put(case_id, call_of(case_id), AUDIO, recorded_at=AT, duration_ms=31_000)
    out = tmp_path / "for-110.wav"
    base = ("recording", "extract", "--call", call_of(case_id), "--out", str(out))
    code, stdout, _ = run(*base, "--actor", "110-desk-1", "--role", "command_centre")
    assert code == 0 and ref.sha256 in stdout and f"{len(AUDIO)} bytes" in stdout
    assert out.read_bytes() == AUDIO and stat.S_IMODE(out.stat().st_mode) == 0o600
    # the file exists now: a second extraction never overwrites it, and logs nothing
    code, _, err = run(*base, "--actor", "110-desk-1", "--role", "command_centre")
    assert code == 2 and "exists" in err
    actions = [(e["actor"], e["action"]) for e in store.access_log(case_id)]
    assert actions == [("110-desk-1", LOG_EXTRACT)]


def test_cli_extract_refusals_and_their_exit_codes(
    cli_store: tuple[str, SqlStore, FileRecordingStore],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, store, files = cli_store
    case_id = open_case(store)
    files.put(case_id, call_of(case_id), AUDIO, recorded_at=AT, duration_ms=31_000)
    out = tmp_path / "x.wav"

    def extract(*extra: str, call: str = call_of(case_id)) -> tuple[int, str]:
        code, _, err = run("recording", "extract", "--call", call, "--out", str(out), *extra)
        assert not out.exists()  # nothing written when refused
        assert err.count("\n") <= 1 and "Traceback" not in err
        return code, err

    assert extract("--actor", "seat-3", "--role", "agent")[0] == 2  # PermissionDenied
    assert extract("--actor", "aud", "--role", "auditor")[0] == 2
    assert extract("--actor", "x", "--role", "police")[0] == 2  # not a role
    assert extract("--actor", "", "--role", "supervisor")[0] == 2  # InvalidActor
    code, err = extract("--actor", "s", "--role", "supervisor", call=call_of(case_id, 7))
    assert code == 2 and "no recording" in err
    code, err = extract("--actor", "s", "--role", "supervisor", call="not-a-key")
    assert code == 2 and "--case" in err
    flip_last_bit(files)(case_id, call_of(case_id))
    code, err = extract("--actor", "s", "--role", "supervisor")
    assert code == 3 and "authentication tag" in err
    monkeypatch.delenv("MOVECAR_RECORDINGS")
    assert extract("--actor", "s", "--role", "supervisor")[0] == 2  # where is the audio?
    code, err = extract("--actor", "s", "--role", "supervisor", "--recordings", "/nonexistent")
    assert code == 3
    denied = [e["action"] for e in store.access_log(case_id)]
    assert denied == [LOG_EXTRACT_DENIED] * 2  # the agent's and the auditor's attempts


def test_cli_show_prints_the_metadata_for_every_role(
    cli_store: tuple[str, SqlStore, FileRecordingStore],
) -> None:
    _, store, files = cli_store
    case_id = open_case(store)
    ref = files.put(case_id, call_of(case_id), AUDIO, recorded_at=AT, duration_ms=31_000)
    code, out, _ = run(
        "recording", "show", "--call", call_of(case_id), "--actor", "aud", "--role", "auditor",
        "--json",
    )  # fmt: skip
    assert code == 0
    shown = json.loads(out)
    assert (shown["sha256"], shown["size"], shown["purged_at"]) == (ref.sha256, len(AUDIO), None)
    assert store.access_log(case_id) == []  # metadata is not an extraction


def test_cli_purge_removes_the_audio_with_recordings_and_lists_it_without(
    cli_store: tuple[str, SqlStore, FileRecordingStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, store, files = cli_store
    # Closed 2021-03-01: due in 2024, in the past of the wall clock the CLI purges by.
    opened = dt.datetime(2021, 3, 1, 8, 30, tzinfo=SHANGHAI)
    ids = []
    for name in ("first", "second"):
        store.append(name, sample_history(name, at=opened), expected_version=0)
        files.put(name, call_of(name), AUDIO, recorded_at=opened, duration_ms=1)
        ids.append(name)
    store.set_legal_hold("second", "court", actor="legal")
    monkeypatch.delenv("MOVECAR_RECORDINGS")
    code, out, _ = run("retention", "purge")
    assert code == 0 and "delete audio" in out and "1 purged cases still have audio" in out
    assert files.exists("first", call_of("first"))
    code, out, _ = run("retention", "purge", "--recordings", str(files.root))
    assert code == 0 and "removed the audio of 1 recordings" in out
    assert not files.exists("first", call_of("first"))
    assert files.exists("second", call_of("second"))  # under legal hold
    assert store.audio_pending() == []


def test_cli_keys_rotate_rewraps_the_recordings(
    cli_store: tuple[str, SqlStore, FileRecordingStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, store, files = cli_store
    case_id = open_case(store)
    files.put(case_id, call_of(case_id), AUDIO, recorded_at=AT, duration_ms=1)
    monkeypatch.setenv("MOVECAR_KEYS", f"k2={KEY_2},k1={KEY_1}")
    code, out, _ = run("keys", "rotate", "--recordings", str(files.root))
    assert code == 0 and "rewrapped the data keys of 1 recordings" in out
    newest = FileRecordingStore(files.root, KeyRing([("k2", KEY_2)]), evidence=store)
    assert newest.extract(case_id, call_of(case_id), BOSS) == AUDIO
