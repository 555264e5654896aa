"""The contract suite of the :class:`~movecar_core.recordings.RecordingStore` port.

Subclass :class:`RecordingStoreContract` in a ``Test...`` class and provide its fixtures::

    class TestMyRecordings(RecordingStoreContract):
        @pytest.fixture
        def recording_store(self) -> RecordingStore: ...

        @pytest.fixture
        def access_entries(self) -> Callable[[str], list[tuple[str, str, str | None]]]:
            ...  # (actor, action, detail) of the access log's entries about a case

        @pytest.fixture
        def tamper(self) -> Callable[[str, str], None]:
            ...  # change the stored audio of (case id, call key) behind the store's back

and, when recordings need a case to exist (a store with evidence), ``new_case`` (a
function giving the id of a new case). Every adapter passes the suite unchanged: the
engine, the SIP adapter and the host treat recording stores as interchangeable.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from movecar_core.calendar import SHANGHAI
from movecar_core.recordings import (
    LOG_EXTRACT,
    LOG_EXTRACT_DENIED,
    MAX_CALL_KEY,
    MAX_RECORDING_BYTES,
    InvalidRecording,
    RecordingCorrupt,
    RecordingExists,
    RecordingNotFound,
    RecordingPurged,
    RecordingStore,
)
from movecar_core.roles import PERMISSIONS, Action, Actor, InvalidActor, PermissionDenied, Role
from movecar_core.testing.strategies import forbidden_texts

AT = dt.datetime(2025, 3, 1, 8, 31, tzinfo=SHANGHAI)
#: Audio as a seat records it would do; the store keeps any bytes.
AUDIO = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4

Entries = Callable[[str], list[tuple[str, str, str | None]]]
#: Each subclass runs the suite on its own adapter (several in one module is fine: the
#: store comes from the fixture, not from the executor).
_SLOW = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors],
)


def call_of(case_id: str, attempt: int = 1) -> str:
    """The engine's call key (``movecar_core.calls.call_key``)."""
    return f"{case_id}:call:{attempt}"


class _EndlessStream(io.RawIOBase):
    """A binary stream that never ends, counting what was read from it."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = 1 << 20 if size is None or size < 0 else size
        self.read_bytes += n
        return b"\x00" * n


class RecordingStoreContract:
    """What every recording store must do (二(四) 坐席录音、录音提取; 七(三))."""

    @pytest.fixture
    def new_case(self) -> Callable[[], str]:
        return lambda: uuid.uuid4().hex

    def put(self, store: RecordingStore, case_id: str, audio: Any = AUDIO, **kw: Any) -> Any:
        kw.setdefault("recorded_at", AT)
        kw.setdefault("duration_ms", 31_000)
        return store.put(case_id, kw.pop("call_key", call_of(case_id)), audio, **kw)

    # --- put, metadata, extract --------------------------------------------------------

    def test_put_returns_the_sha256_of_the_audio_and_extract_gives_it_back(
        self, recording_store: RecordingStore, new_case: Callable[[], str]
    ) -> None:
        case_id = new_case()
        ref = self.put(recording_store, case_id)
        assert ref.sha256 == hashlib.sha256(AUDIO).hexdigest()
        assert (ref.case_id, ref.call_key, ref.size) == (case_id, call_of(case_id), len(AUDIO))
        assert (ref.duration_ms, ref.recorded_at, ref.purged_at) == (31_000, AT, None)
        assert recording_store.metadata(case_id, call_of(case_id)) == ref
        assert recording_store.exists(case_id, call_of(case_id))
        boss = Actor("110-desk-1", Role.COMMAND_CENTRE)
        assert recording_store.extract(case_id, call_of(case_id), boss) == AUDIO

    @_SLOW
    @given(audio=st.binary(max_size=3000), attempt=st.integers(1, 99))
    def test_any_bytes_round_trip(
        self,
        recording_store: RecordingStore,
        new_case: Callable[[], str],
        audio: bytes,
        attempt: int,
    ) -> None:
        case_id = new_case()
        key = call_of(case_id, attempt)
        ref = self.put(recording_store, case_id, audio, call_key=key)
        assert ref.sha256 == hashlib.sha256(audio).hexdigest() and ref.size == len(audio)
        got = recording_store.extract(case_id, key, Actor("sup-1", Role.SUPERVISOR))
        assert got == audio

    def test_a_stream_is_kept_like_its_bytes(
        self, recording_store: RecordingStore, new_case: Callable[[], str]
    ) -> None:
        case_id = new_case()
        ref = self.put(recording_store, case_id, io.BytesIO(AUDIO))
        assert ref.sha256 == hashlib.sha256(AUDIO).hexdigest()
        assert recording_store.extract(case_id, call_of(case_id), Actor("s", "supervisor")) == AUDIO

    def test_the_same_audio_again_is_a_repeat_other_audio_is_refused(
        self, recording_store: RecordingStore, new_case: Callable[[], str]
    ) -> None:
        case_id = new_case()
        ref = self.put(recording_store, case_id)
        assert self.put(recording_store, case_id) == ref
        for other in (
            {"audio": AUDIO + b"\x00"},
            {"duration_ms": 30_999},
            {"recorded_at": AT + dt.timedelta(seconds=1)},
        ):
            with pytest.raises(RecordingExists):
                self.put(recording_store, case_id, **other)
        assert recording_store.metadata(case_id, call_of(case_id)) == ref
        assert recording_store.extract(case_id, call_of(case_id), Actor("s", "supervisor")) == AUDIO

    def test_calls_of_a_case_are_separate(
        self, recording_store: RecordingStore, new_case: Callable[[], str]
    ) -> None:
        case_id = new_case()
        first = self.put(recording_store, case_id, b"one", call_key=call_of(case_id, 1))
        second = self.put(recording_store, case_id, b"two", call_key=call_of(case_id, 2))
        assert first.location != second.location
        boss = Actor("desk", Role.COMMAND_CENTRE)
        assert recording_store.extract(case_id, call_of(case_id, 1), boss) == b"one"
        assert recording_store.extract(case_id, call_of(case_id, 2), boss) == b"two"

    def test_an_unknown_call_is_not_found(
        self, recording_store: RecordingStore, new_case: Callable[[], str]
    ) -> None:
        case_id = new_case()
        self.put(recording_store, case_id)
        key = call_of(case_id, 2)
        assert not recording_store.exists(case_id, key)
        with pytest.raises(RecordingNotFound):
            recording_store.metadata(case_id, key)
        with pytest.raises(RecordingNotFound):
            recording_store.extract(case_id, key, Actor("desk", Role.COMMAND_CENTRE))

    # --- who may extract, and the access log (二(四), 七(三)) ------------------------------

    @_SLOW
    @given(role=st.sampled_from(Role), actor_id=st.sampled_from(["desk-7", "张三", "a" * 100]))
    def test_extraction_by_every_role(
        self,
        recording_store: RecordingStore,
        new_case: Callable[[], str],
        access_entries: Entries,
        role: Role,
        actor_id: str,
    ) -> None:
        case_id = new_case()
        ref = self.put(recording_store, case_id)
        actor = Actor(actor_id, role)
        key = call_of(case_id)
        if role in PERMISSIONS[Action.EXTRACT_RECORDING]:
            assert recording_store.extract(case_id, key, actor) == AUDIO
            action, detail = LOG_EXTRACT, f"call {key}; role {role}; sha256 {ref.sha256}"
        else:
            with pytest.raises(PermissionDenied) as info:
                recording_store.extract(case_id, key, actor)
            assert (info.value.actor_id, info.value.role) == (actor_id, role)
            assert info.value.action is Action.EXTRACT_RECORDING
            action, detail = LOG_EXTRACT_DENIED, f"call {key}; role {role}"
        assert access_entries(case_id) == [(actor_id, action, detail)]

    def test_only_the_command_centre_and_supervisors_extract(self) -> None:
        """二(四) 录音提取 is Party A's; the auditor checks hashes, never listens."""
        assert PERMISSIONS[Action.EXTRACT_RECORDING] == {Role.COMMAND_CENTRE, Role.SUPERVISOR}
        assert PERMISSIONS[Action.READ_RECORDING_METADATA] == set(Role)

    def test_extraction_needs_an_actor(
        self, recording_store: RecordingStore, new_case: Callable[[], str], access_entries: Entries
    ) -> None:
        case_id = new_case()
        self.put(recording_store, case_id)
        for who in (None, "110-desk", ("desk", "command_centre")):
            with pytest.raises(InvalidActor):
                recording_store.extract(case_id, call_of(case_id), who)  # type: ignore[arg-type]
        assert access_entries(case_id) == []

    def test_the_log_never_holds_the_audio(
        self, recording_store: RecordingStore, new_case: Callable[[], str], access_entries: Entries
    ) -> None:
        case_id = new_case()
        secret = "车主 13912345678 说".encode()
        self.put(recording_store, case_id, secret)
        recording_store.extract(case_id, call_of(case_id), Actor("desk", Role.COMMAND_CENTRE))
        [(_, _, detail)] = access_entries(case_id)
        assert detail is not None and "13912345678" not in detail and "车主" not in detail

    def test_a_refused_extraction_is_refused_before_anything_is_read(
        self, recording_store: RecordingStore, new_case: Callable[[], str], access_entries: Entries
    ) -> None:
        """An agent learns nothing, not even whether the call has a recording."""
        case_id = new_case()
        for key in (call_of(case_id, 1), call_of(case_id, 9)):
            with pytest.raises(PermissionDenied):
                recording_store.extract(case_id, key, Actor("seat-3", Role.AGENT))
        assert [a for _, a, _ in access_entries(case_id)] == [LOG_EXTRACT_DENIED] * 2

    # --- tampering ---------------------------------------------------------------------

    def test_changed_audio_is_never_handed_out(
        self,
        recording_store: RecordingStore,
        new_case: Callable[[], str],
        access_entries: Entries,
        tamper: Callable[[str, str], None],
    ) -> None:
        case_id = new_case()
        self.put(recording_store, case_id)
        tamper(case_id, call_of(case_id))
        with pytest.raises(RecordingCorrupt):
            recording_store.extract(case_id, call_of(case_id), Actor("d", Role.COMMAND_CENTRE))
        assert [a for _, a, _ in access_entries(case_id)] == []  # nothing was handed out

    # --- retention (二(四)) ------------------------------------------------------------------

    def test_a_purge_removes_the_audio_and_keeps_its_hash(
        self, recording_store: RecordingStore, new_case: Callable[[], str]
    ) -> None:
        case_id, other = new_case(), new_case()
        ref = self.put(recording_store, case_id)
        self.put(recording_store, case_id, b"second", call_key=call_of(case_id, 2))
        kept = self.put(recording_store, other)
        assert recording_store.purge_case(case_id) == 2
        assert not recording_store.exists(case_id, call_of(case_id))
        gone = recording_store.metadata(case_id, call_of(case_id))
        assert gone.purged_at is not None
        assert (gone.sha256, gone.size, gone.duration_ms) == (ref.sha256, ref.size, 31_000)
        with pytest.raises(RecordingPurged):
            recording_store.extract(case_id, call_of(case_id), Actor("d", Role.COMMAND_CENTRE))
        with pytest.raises(RecordingPurged):  # nor can new audio take its place
            self.put(recording_store, case_id)
        assert recording_store.purge_case(case_id) == 0  # idempotent
        assert recording_store.metadata(other, call_of(other)) == kept
        assert recording_store.extract(other, call_of(other), Actor("d", "supervisor")) == AUDIO

    def test_purging_a_case_without_recordings_removes_nothing(
        self, recording_store: RecordingStore, new_case: Callable[[], str]
    ) -> None:
        assert recording_store.purge_case(new_case()) == 0

    # --- hostile input -----------------------------------------------------------------

    @_SLOW
    @given(bad=forbidden_texts(max_size=30), where=st.sampled_from(["case_id", "call_key"]))
    def test_ids_that_are_not_one_line_are_refused(
        self, recording_store: RecordingStore, new_case: Callable[[], str], bad: str, where: str
    ) -> None:
        case_id = new_case()
        args = {"case_id": case_id, "call_key": call_of(case_id), where: bad}
        with pytest.raises(InvalidRecording) as info:
            recording_store.put(args["case_id"], args["call_key"], AUDIO, recorded_at=AT,
                                duration_ms=1)  # fmt: skip
        assert info.value.field == where
        assert not recording_store.exists(case_id, call_of(case_id))

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("case_id", ""),
            ("case_id", "x" * 65),
            ("case_id", " padded"),
            ("case_id", 7),
            ("call_key", ""),
            ("call_key", "k" * (MAX_CALL_KEY + 1)),
            ("call_key", None),
            ("call_key", "other-case:call:1"),
            ("duration_ms", -1),
            ("duration_ms", 2**31),
            ("duration_ms", True),
            ("duration_ms", 1.5),
            ("recorded_at", dt.datetime(2025, 3, 1, 8, 31)),
            ("recorded_at", "2025-03-01T08:31:00+08:00"),
            ("audio", "text is not audio"),
            ("audio", io.StringIO("text")),
            ("audio", None),
        ],
    )
    def test_malformed_arguments_are_refused_and_nothing_is_kept(
        self,
        recording_store: RecordingStore,
        new_case: Callable[[], str],
        field: str,
        value: object,
    ) -> None:
        case_id = new_case()
        args: dict[str, Any] = {
            "case_id": case_id,
            "call_key": call_of(case_id),
            "audio": AUDIO,
            "recorded_at": AT,
            "duration_ms": 1,
        }
        args[field] = value
        with pytest.raises(InvalidRecording) as info:
            recording_store.put(
                args["case_id"], args["call_key"], args["audio"],
                recorded_at=args["recorded_at"], duration_ms=args["duration_ms"],
            )  # fmt: skip
        assert info.value.field == field
        assert not recording_store.exists(case_id, call_of(case_id))

    def test_audio_beyond_the_largest_size_is_refused_without_reading_it_all(
        self, recording_store: RecordingStore, new_case: Callable[[], str]
    ) -> None:
        case_id = new_case()
        endless = _EndlessStream()
        with pytest.raises(InvalidRecording, match="larger than"):
            self.put(recording_store, case_id, endless)
        assert endless.read_bytes <= MAX_RECORDING_BYTES + (1 << 20)
        with pytest.raises(InvalidRecording, match="larger than"):
            self.put(recording_store, case_id, bytes(MAX_RECORDING_BYTES + 1))
        assert not recording_store.exists(case_id, call_of(case_id))

    def test_the_longest_call_key_is_kept_and_logged_whole(
        self, recording_store: RecordingStore, new_case: Callable[[], str], access_entries: Entries
    ) -> None:
        case_id = new_case()
        key = "呼" * MAX_CALL_KEY
        ref = self.put(recording_store, case_id, call_key=key)
        assert recording_store.metadata(case_id, key) == ref
        assert recording_store.extract(case_id, key, Actor("d", Role.COMMAND_CENTRE)) == AUDIO
        [(_, _, detail)] = access_entries(case_id)
        assert detail is not None and key in detail and len(detail) <= 500
