"""Call recordings: the ``RecordingStore`` port, its typed errors and an in-memory adapter.

二(四) "负责 ... 坐席录音、统计分析、录音提取 ... 所有移车服务数据及电话录音资料，必须保存
3 年": every outbound call's audio is kept with its case for three years after the case
closed, and extracted (录音提取) when Party A (甲方, the 110 command centre) asks. 七(三)
asks that the data be protected "防止未经授权的访问以及个人信息和数据的泄露、篡改、丢失".
So a store of recordings:

* **attaches each recording to a call of a case** (``case_id``, ``call_key``; the engine's
  keys are ``"<case id>:call:<attempt>"``) and keeps the SHA-256 of the plain audio, which
  adapters also enter in the case's evidence (the ledger covers it);
* **extracts only for roles allowed to** (:data:`movecar_core.roles.PERMISSIONS`), logs
  every extraction and every refusal in the access log (actor, role, case, call, time;
  never the audio), and checks the audio against its SHA-256 before handing it out;
* **purges a case's audio** when retention says so (three years after closing, never
  under legal hold: the caller decides, :mod:`movecar_core.retention`) **and keeps the
  recording's metadata and hash**, so evidence taken earlier stays verifiable.

Pure: no I/O. The filesystem adapter (encrypted at rest) is
``movecar_adapters.recordings_fs.FileRecordingStore``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import threading
from collections.abc import Sequence
from typing import BinaryIO, Protocol, runtime_checkable

import attrs

from movecar_core.calls import CALL_KEY_MARK, parse_call_key
from movecar_core.errors import InvalidCommand, InvalidInput, MoveCarError, excerpt
from movecar_core.ports import Clock
from movecar_core.roles import Action, Actor, PermissionDenied, require
from movecar_core.text import text_problem

#: Longest case id a recording can belong to (the SQL store's column).
MAX_CASE_ID = 64
#: Longest call key (the engine's keys are ``"<case id>:call:<attempt>"``).
MAX_CALL_KEY = 400
#: Largest recording, in bytes: 64 MiB is about 70 minutes of the 8 kHz mono 16-bit audio
#: a seat records (a move-car call lasts minutes). The filesystem adapter encrypts a
#: recording in one piece, so this bounds its memory too; a store may be given less.
MAX_RECORDING_BYTES = 64 * 1024 * 1024
#: Longest call id the evidence (``mc_recordings.call_id``) holds: see
#: :func:`evidence_call_id`.
EVIDENCE_CALL_ID_MAX = 64
#: The call-key mark of the engine's keys (``movecar_core.calls.call_key``).
CALL_MARK = CALL_KEY_MARK  # the engine's call keys: movecar_core.calls.call_key

#: Access-log actions (七(三)): an extraction handed out, and one refused.
LOG_EXTRACT = "recording_extract"
LOG_EXTRACT_DENIED = "recording_extract_denied"


# --- errors ---------------------------------------------------------------------------


class RecordingError(MoveCarError):
    """Base of the recording store's refusals."""


class InvalidRecording(InvalidInput, RecordingError):
    """A malformed argument: case id, call key, audio (too large, not bytes), duration or
    time. The message names the field; never the audio."""

    def __init__(self, field: str, value: object, why: str) -> None:
        self.field = field
        super().__init__(f"{field}={excerpt(value)}: {why}")


class RecordingNotFound(RecordingError, LookupError):
    """No recording for that call of that case (or only an interrupted write of one)."""

    def __init__(self, case_id: str, call_key: str, why: str = "no recording") -> None:
        self.case_id = case_id
        self.call_key = call_key
        super().__init__(f"case {case_id} call {excerpt(call_key, 120)}: {why}")


class RecordingPurged(RecordingNotFound):
    """The audio was removed by the retention purge (二(四): three years after the case
    closed); its metadata and SHA-256 are kept."""

    def __init__(self, case_id: str, call_key: str, purged_at: dt.datetime | None) -> None:
        self.purged_at = purged_at
        when = "" if purged_at is None else f" on {purged_at.date().isoformat()}"
        super().__init__(
            case_id,
            call_key,
            f"audio purged{when} under the 3-year retention of 二(四); its SHA-256 is kept",
        )


class RecordingExists(RecordingError):
    """A different recording is already stored for that call (a call has one recording;
    putting the same audio again is not an error)."""

    def __init__(self, case_id: str, call_key: str) -> None:
        self.case_id = case_id
        self.call_key = call_key
        super().__init__(
            f"case {case_id} call {excerpt(call_key, 120)}: another recording is stored "
            "for this call (a call has one recording)"
        )


class RecordingCorrupt(RecordingError):
    """Stored audio that fails its check: the authentication tag, the SHA-256 kept with
    it or in the evidence, or the file's form. Never handed out."""

    def __init__(self, case_id: str, call_key: str, why: str) -> None:
        self.case_id = case_id
        self.call_key = call_key
        super().__init__(f"case {case_id} call {excerpt(call_key, 120)}: recording {why}")


class RecordingMisplaced(RecordingCorrupt):
    """A stored recording that belongs to another case or call: moved or copied there.
    The associated data of its encryption names its case, call and file, so it does not
    open anywhere else."""


# --- values and ports ------------------------------------------------------------------


@attrs.frozen
class RecordingRef:
    """A stored recording's metadata: what it belongs to, its SHA-256, size and length.

    ``location`` is where the store keeps it (relative to the store; the evidence holds
    it); ``purged_at`` is set once retention removed the audio (the rest is kept).
    """

    case_id: str
    call_key: str
    sha256: str
    size: int
    duration_ms: int
    recorded_at: dt.datetime
    location: str
    purged_at: dt.datetime | None = None


@runtime_checkable
class AccessLog(Protocol):
    """七(三) who read or changed what: ``log_access`` records an entry stamped with the
    log's own clock. The SQL store (``SqlStore.log_access``) is one; the entry is a ledger
    leaf there."""

    def log_access(
        self, actor: str, action: str, case_id: str | None = None, detail: str | None = None
    ) -> None: ...


class EvidenceRow(Protocol):
    """A recording as the case's evidence holds it (``mc_recordings``)."""

    @property
    def call_id(self) -> str: ...
    @property
    def location(self) -> str: ...
    @property
    def checksum_sha256(self) -> str: ...
    @property
    def duration_ms(self) -> int: ...
    @property
    def recorded_at(self) -> dt.datetime: ...


class RecordingEvidence(Protocol):
    """Where a recording's SHA-256 enters the case's evidence: the SQL store's
    ``add_recording`` and ``recordings`` (a ledger leaf per recording)."""

    def add_recording(
        self,
        case_id: str,
        call_id: str,
        *,
        location: str,
        checksum_sha256: str,
        duration_ms: int,
        recorded_at: dt.datetime,
    ) -> None: ...

    def recordings(self, case_id: str) -> Sequence[EvidenceRow]: ...


@runtime_checkable
class RecordingStore(Protocol):
    """Call recordings, attached to the calls of cases (二(四) 坐席录音、录音提取).

    A recording is named by its ``case_id`` and ``call_key``; a call has one recording.
    """

    def put(
        self,
        case_id: str,
        call_key: str,
        audio: bytes | BinaryIO,
        *,
        recorded_at: dt.datetime,
        duration_ms: int,
    ) -> RecordingRef:
        """Keep ``audio`` (bytes or a binary stream, at most the store's maximum size) for
        that call and return its metadata, with the SHA-256 of the audio as given.

        Putting the same audio again returns the same metadata (a retry after a crash
        completes what the first try left undone); other audio for the same call raises
        :class:`RecordingExists`. Nothing is kept when it raises."""
        ...

    def metadata(self, case_id: str, call_key: str) -> RecordingRef:
        """The recording's metadata, also once purged (``purged_at`` set);
        :class:`RecordingNotFound` when there is none."""
        ...

    def exists(self, case_id: str, call_key: str) -> bool:
        """Whether the call's audio is stored and complete (not purged)."""
        ...

    def extract(self, case_id: str, call_key: str, actor: Actor) -> bytes:
        """录音提取: the audio, for an actor whose role may extract
        (:class:`~movecar_core.roles.PermissionDenied` otherwise, logged too). The audio is
        checked against its SHA-256 (:class:`RecordingCorrupt`) and the extraction logged
        before it is returned."""
        ...

    def purge_case(self, case_id: str) -> int:
        """Remove the audio of every recording of the case, keeping their metadata and
        SHA-256 (二(四): the caller decides that the case's three years are over and that
        it is not under legal hold). Returns how many were removed; idempotent."""
        ...


# --- input checks ----------------------------------------------------------------------


def _one_line(field: str, value: object, limit: int) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRecording(field, value, "must be a non-empty string")
    if len(value) > limit:
        raise InvalidRecording(field, value, f"longer than {limit} characters")
    if value != value.strip():
        raise InvalidRecording(field, value, "has surrounding spaces")
    problem = text_problem(value)
    if problem is not None:
        raise InvalidRecording(field, value, problem)
    return value


def check_case_id(case_id: object) -> str:
    """``case_id`` checked: one-line text of at most :data:`MAX_CASE_ID` characters."""
    return _one_line("case_id", case_id, MAX_CASE_ID)


def check_call(case_id: object, call_key: object) -> tuple[str, str]:
    """``(case_id, call_key)`` checked: one-line texts of at most :data:`MAX_CASE_ID` and
    :data:`MAX_CALL_KEY` characters. A key in the engine's form (``<case>:call:<n>``) must
    name this case: a recording filed under another case's call is refused."""
    case = _one_line("case_id", case_id, MAX_CASE_ID)
    key = _one_line("call_key", call_key, MAX_CALL_KEY)
    try:
        owner, _ = parse_call_key(key)
    except InvalidCommand:
        return case, key  # a host's own naming of the call
    if owner != case:
        raise InvalidRecording("call_key", key, f"is a call of another case, not of {case}")
    return case, key


def check_recording_facts(recorded_at: object, duration_ms: object) -> None:
    if not isinstance(recorded_at, dt.datetime) or recorded_at.utcoffset() is None:
        raise InvalidRecording("recorded_at", recorded_at, "must be a timezone-aware datetime")
    if type(duration_ms) is not int or not 0 <= duration_ms < 2**31:
        raise InvalidRecording("duration_ms", duration_ms, "must be an int from 0 to 2**31-1")


def read_audio(audio: object, limit: int) -> bytes:
    """The bytes of ``audio`` (bytes-like, or a binary stream read to its end), at most
    ``limit`` of them (:class:`InvalidRecording` beyond: nothing more is read)."""
    if isinstance(audio, bytes | bytearray | memoryview):
        data = bytes(audio)
        if len(data) > limit:
            raise InvalidRecording("audio", f"<{len(data)} bytes>", f"larger than {limit} bytes")
        return data
    read = getattr(audio, "read", None)
    if not callable(read) or isinstance(audio, io.TextIOBase):
        raise InvalidRecording(
            "audio", f"<{type(audio).__name__}>", "must be bytes or a binary stream"
        )
    parts: list[bytes] = []
    total = 0
    while True:
        chunk = read(min(1 << 20, limit + 1 - total))
        if not isinstance(chunk, bytes | bytearray):
            raise InvalidRecording("audio", f"<{type(audio).__name__}>", "is not a binary stream")
        if not chunk:
            return b"".join(parts)
        total += len(chunk)
        if total > limit:
            raise InvalidRecording("audio", "<stream>", f"larger than {limit} bytes")
        parts.append(bytes(chunk))


def check_limit(max_bytes: object) -> int:
    if type(max_bytes) is not int or not 0 < max_bytes <= MAX_RECORDING_BYTES:
        raise InvalidRecording(
            "max_bytes", max_bytes, f"must be an int from 1 to {MAX_RECORDING_BYTES}"
        )
    return max_bytes


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def evidence_call_id(call_key: str) -> str:
    """The call id a recording has in the evidence (``mc_recordings.call_id``, at most
    :data:`EVIDENCE_CALL_ID_MAX` characters): the call key itself when it fits (the
    engine's keys do: a 32-character case id, ``:call:``, the attempt), else ``~`` and the
    first 63 hex digits of its SHA-256 (no key of the engine's form starts with ``~``)."""
    if len(call_key) <= EVIDENCE_CALL_ID_MAX and not call_key.startswith("~"):
        return call_key
    return "~" + hashlib.sha256(call_key.encode("utf-8")).hexdigest()[:63]


def extraction_detail(call_key: str, role: str, sha256: str | None = None) -> str:
    """The access-log detail of an extraction: call, role and, when handed out, the
    SHA-256 of what was (at most 499 characters; never the audio nor a phone number)."""
    text = f"call {call_key}; role {role}"
    return text if sha256 is None else f"{text}; sha256 {sha256}"


def guard_extraction(log: AccessLog, case_id: str, call_key: str, actor: object) -> Actor:
    """The role check of 录音提取: ``actor`` if allowed; otherwise the refusal is logged
    (七(三): attempts are records too) and :class:`PermissionDenied` raised."""
    try:
        return require(actor, Action.EXTRACT_RECORDING)
    except PermissionDenied as denied:
        log.log_access(
            denied.actor_id,
            LOG_EXTRACT_DENIED,
            case_id,
            extraction_detail(call_key, denied.role),
        )
        raise


# --- in-memory adapters ----------------------------------------------------------------


@attrs.frozen
class AccessEntry:
    at: dt.datetime
    actor: str
    action: str
    case_id: str | None
    detail: str | None


class InMemoryAccessLog:
    """An access log kept in a list, stamped by ``clock`` (tests, simulations)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._entries: list[AccessEntry] = []
        self._lock = threading.Lock()

    def log_access(
        self, actor: str, action: str, case_id: str | None = None, detail: str | None = None
    ) -> None:
        with self._lock:
            self._entries.append(AccessEntry(self._clock.now(), actor, action, case_id, detail))

    def entries(self, case_id: str | None = None) -> list[AccessEntry]:
        with self._lock:
            return [e for e in self._entries if case_id is None or e.case_id == case_id]


class InMemoryRecordingStore:
    """A complete :class:`RecordingStore` in memory: the contract suite's reference, and
    the store of simulations and host tests. Extractions are logged to ``access_log``;
    audio is checked against its SHA-256 when handed out."""

    def __init__(
        self, access_log: AccessLog, clock: Clock, *, max_bytes: int = MAX_RECORDING_BYTES
    ) -> None:
        self.access_log = access_log
        self._clock = clock
        self.max_bytes = check_limit(max_bytes)
        self._refs: dict[tuple[str, str], RecordingRef] = {}
        self._audio: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()

    def put(
        self,
        case_id: str,
        call_key: str,
        audio: bytes | BinaryIO,
        *,
        recorded_at: dt.datetime,
        duration_ms: int,
    ) -> RecordingRef:
        case_id, call_key = check_call(case_id, call_key)
        check_recording_facts(recorded_at, duration_ms)
        data = read_audio(audio, self.max_bytes)
        ref = RecordingRef(
            case_id,
            call_key,
            sha256_hex(data),
            len(data),
            duration_ms,
            recorded_at,
            f"memory:{case_id}/{evidence_call_id(call_key)}",
        )
        with self._lock:
            have = self._refs.get((case_id, call_key))
            if have is not None:
                if have.purged_at is not None:
                    raise RecordingPurged(case_id, call_key, have.purged_at)
                if have != ref:
                    raise RecordingExists(case_id, call_key)
                return have
            self._refs[(case_id, call_key)] = ref
            self._audio[(case_id, call_key)] = data
        return ref

    def metadata(self, case_id: str, call_key: str) -> RecordingRef:
        case_id, call_key = check_call(case_id, call_key)
        with self._lock:
            ref = self._refs.get((case_id, call_key))
        if ref is None:
            raise RecordingNotFound(case_id, call_key)
        return ref

    def exists(self, case_id: str, call_key: str) -> bool:
        case_id, call_key = check_call(case_id, call_key)
        with self._lock:
            return (case_id, call_key) in self._audio

    def extract(self, case_id: str, call_key: str, actor: Actor) -> bytes:
        case_id, call_key = check_call(case_id, call_key)
        who = guard_extraction(self.access_log, case_id, call_key, actor)
        with self._lock:
            ref = self._refs.get((case_id, call_key))
            data = self._audio.get((case_id, call_key))
        if ref is None:
            raise RecordingNotFound(case_id, call_key)
        if data is None:
            raise RecordingPurged(case_id, call_key, ref.purged_at)
        if sha256_hex(data) != ref.sha256 or len(data) != ref.size:
            raise RecordingCorrupt(case_id, call_key, "does not match its SHA-256")
        self.access_log.log_access(
            who.actor_id, LOG_EXTRACT, case_id, extraction_detail(call_key, who.role, ref.sha256)
        )
        return data

    def purge_case(self, case_id: str) -> int:
        case_id = check_case_id(case_id)
        at = self._clock.now()
        removed = 0
        with self._lock:
            for key, ref in list(self._refs.items()):
                if key[0] == case_id and key in self._audio:
                    del self._audio[key]
                    self._refs[key] = attrs.evolve(ref, purged_at=at)
                    removed += 1
        return removed
