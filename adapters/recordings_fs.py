"""Call recordings on a filesystem, encrypted at rest (二(四) 坐席录音、录音提取; 七(三)).

:class:`FileRecordingStore` implements :class:`movecar_core.recordings.RecordingStore`.

**Encryption.** 七(三) "防止 ... 个人信息和数据的泄露、篡改、丢失": a recording is a
person's voice. Each file is sealed with AES-256-GCM under a fresh random 256-bit data key;
the data key is sealed (wrapped) by the newest master key of the :class:`KeyRing`
(``MOVECAR_KEYS``), whose id the wrapped key carries, so rotation knows what to rewrap.
The wrapped key's associated data names the file, the case and the call, and the audio's
associated data is the file's header (which names them too): a file copied to another
case or call, or renamed, does not open (:class:`RecordingMisplaced`), and any changed
bit fails its tag (:class:`RecordingCorrupt`).

**Layout** (names are hashes, so no case id or call key can reach outside ``root``)::

    root/<2 hex>/<32 hex of the case>/<40 hex of the call>.mcrec    a recording
    root/<2 hex>/<32 hex of the case>/<40 hex of the call>.purged   its tombstone
    root/<2 hex>/<32 hex of the case>/.<40 hex>.<random>.tmp        a write under way

**File format 1**: ``MCREC/1\\n``, a 4-byte big-endian length and the header (JSON: format,
cipher, case id, call key, file name, SHA-256 and size of the plain audio, duration,
recording time, nonce), a 2-byte length and the wrapped data key (a bound
:meth:`KeyRing.encrypt` token), then the ciphertext and its 16-byte tag.

**Writes are atomic**: the file is written under a temporary name (a dot name ending in
``.tmp``, never taken for a recording), flushed to disk (``fsync``), then linked to its name
(a link never replaces a file: two writers of one call cannot both win) and the folder
flushed. A failure at any step removes the temporary file; a crash leaves at most a
``.tmp`` (:meth:`FileRecordingStore.remove_partial` clears old ones).

**File first, evidence second**: the SHA-256 enters the case's evidence
(``SqlStore.add_recording``: a ledger leaf) only once the file is on disk. The ledger is
append-only: a leaf for audio that was never written could never be taken back, whereas a
file without its evidence (a crash between the two) is visible, is not handed out
(:meth:`~FileRecordingStore.exists` is false, extraction says the put was interrupted) and
is completed by putting the same audio again. When the evidence write fails, the new file
is removed before the error is raised.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from movecar_adapters.clock import SystemClock
from movecar_adapters.crypto import DecryptionFailed, KeyConfigError, KeyRing
from movecar_core.ports import Clock
from movecar_core.recordings import (
    LOG_EXTRACT,
    MAX_RECORDING_BYTES,
    AccessLog,
    EvidenceRow,
    InvalidRecording,
    RecordingCorrupt,
    RecordingEvidence,
    RecordingExists,
    RecordingMisplaced,
    RecordingNotFound,
    RecordingPurged,
    RecordingRef,
    check_call,
    check_case_id,
    check_limit,
    check_recording_facts,
    evidence_call_id,
    extraction_detail,
    guard_extraction,
    read_audio,
    sha256_hex,
)
from movecar_core.roles import Actor

__all__ = ["FORMAT", "MAGIC", "FileRecordingStore"]

MAGIC = b"MCREC/1\n"
FORMAT = 1
CIPHER = "AES-256-GCM"
SUFFIX = ".mcrec"
TOMBSTONE = ".purged"
TEMP = ".tmp"
_HEADER_MAX = 4096
_WRAPPED_MAX = 512
_NONCE = 12
_TAG = 16
_HEADER_KEYS = frozenset(
    {
        "call_key",
        "case_id",
        "cipher",
        "duration_ms",
        "file",
        "format",
        "nonce",
        "recorded_at",
        "sha256",
        "size",
    }
)
_INTERRUPTED = (
    "its write was interrupted before the case's evidence recorded it "
    "(put the same audio again to complete it)"
)
#: First part of a wrapped data key's place: five NUL-separated parts, where a phone's
#: place (:func:`movecar_adapters.crypto.place`) has four, so the two never coincide.
_WRAP_PLACE = "movecar/recording/1"


@attrs.frozen
class _Names:
    folder: Path  # the case's folder
    stem: str  # 40 hex digits of the call
    location: str  # relative to the root: what the evidence records

    @property
    def live(self) -> Path:
        return self.folder / (self.stem + SUFFIX)

    @property
    def tombstone(self) -> Path:
        return self.folder / (self.stem + TOMBSTONE)

    @property
    def file(self) -> str:
        return self.stem + SUFFIX


def _case_hash(case_id: str) -> str:
    return hashlib.sha256(b"movecar/recording/case\x00" + case_id.encode()).hexdigest()[:32]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _canonical(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class FileRecordingStore:
    """Recordings under ``root``, encrypted with a data key per file wrapped by ``keys``.

    ``evidence``: where each recording's SHA-256 enters the case's evidence (a
    :class:`~movecar_adapters.sql.store.SqlStore`); extraction then also checks the audio
    against it. ``access_log``: where extractions are logged (default: ``evidence``, when
    it has ``log_access``); one of the two is required (七(三): every extraction is
    logged). ``clock`` stamps tombstones and ages temporary files. ``max_bytes`` bounds a
    recording (at most :data:`~movecar_core.recordings.MAX_RECORDING_BYTES`).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        keys: KeyRing,
        *,
        evidence: RecordingEvidence | None = None,
        access_log: AccessLog | None = None,
        clock: Clock | None = None,
        max_bytes: int = MAX_RECORDING_BYTES,
    ) -> None:
        given: object = keys
        if not isinstance(given, KeyRing):
            raise KeyConfigError("FileRecordingStore: keys must be a KeyRing (MOVECAR_KEYS)")
        store: object = evidence  # the SQL store is both evidence and access log
        if access_log is None and isinstance(store, AccessLog):
            access_log = store
        if access_log is None:
            raise InvalidRecording(
                "access_log",
                None,
                "needed: every extraction is logged (七(三)); give evidence=<SqlStore> "
                "or access_log=",
            )
        self.root = Path(root)
        self.keys = keys
        self.evidence = evidence
        self.access_log: AccessLog = access_log
        self.clock: Clock = clock or SystemClock()
        self.max_bytes = check_limit(max_bytes)
        # 0o700: the folders name no one, but nobody else needs to list them.
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.root.is_dir():
            raise NotADirectoryError(f"recordings root {self.root} is not a folder")

    def __repr__(self) -> str:
        return f"FileRecordingStore({str(self.root)!r})"  # never the keys

    # --- names ----------------------------------------------------------------------------

    def _names(self, case_id: str, call_key: str) -> _Names:
        case = _case_hash(case_id)
        stem = hashlib.sha256(
            b"movecar/recording/call\x00" + case_id.encode() + b"\x00" + call_key.encode()
        ).hexdigest()[:40]
        folder = self.root / case[:2] / case
        return _Names(folder, stem, f"{case[:2]}/{case}/{stem}{SUFFIX}")

    def _case_folder(self, case_id: str) -> Path:
        case = _case_hash(case_id)
        return self.root / case[:2] / case

    @staticmethod
    def _wrap_place(case_id: str, call_key: str, file: str) -> str:
        return "\x00".join((_WRAP_PLACE, case_id, call_key, file))

    # --- put ------------------------------------------------------------------------------

    def put(
        self,
        case_id: str,
        call_key: str,
        audio: bytes | BinaryIO | os.PathLike[str],
        *,
        recorded_at: dt.datetime,
        duration_ms: int,
    ) -> RecordingRef:
        """Keep ``audio`` (bytes, a binary stream, or the path of a file to read) for the
        call; see :meth:`movecar_core.recordings.RecordingStore.put`."""
        case_id, call_key = check_call(case_id, call_key)
        check_recording_facts(recorded_at, duration_ms)
        if isinstance(audio, os.PathLike):
            with open(audio, "rb") as stream:
                data = read_audio(stream, self.max_bytes)
        else:
            data = read_audio(audio, self.max_bytes)
        names = self._names(case_id, call_key)
        ref = RecordingRef(
            case_id,
            call_key,
            sha256_hex(data),
            len(data),
            duration_ms,
            recorded_at,
            names.location,
        )
        row = self._evidence_row(case_id, call_key)
        if row is not None and not _same(row, ref):
            raise RecordingExists(case_id, call_key)
        for _ in range(3):
            done = self._existing(names, ref, row)
            if done is not None:
                return done
            if self._write_new(names, ref, data):
                break
            # Another writer linked this call's file first: judge theirs on the next turn.
        else:  # pragma: no cover - three lost races in a row
            raise RecordingExists(case_id, call_key)
        if self.evidence is not None and row is None:
            try:
                self._add_evidence(ref)
            except BaseException:
                # Nothing half-done: no file without its evidence when the evidence refused
                # (a purged case, a database down). The file is ours: we linked it.
                with contextlib.suppress(OSError):
                    names.live.unlink()
                    _fsync_dir(names.folder)
                raise
        return ref

    def _existing(
        self, names: _Names, ref: RecordingRef, row: EvidenceRow | None
    ) -> RecordingRef | None:
        """The stored recording if it is ``ref`` (completing its evidence), None when
        there is none; :class:`RecordingExists`/:class:`RecordingPurged` otherwise."""
        if names.tombstone.exists():
            raise RecordingPurged(ref.case_id, ref.call_key, self._tombstone(names).purged_at)
        if not os.path.lexists(names.live):
            if row is not None:
                # The evidence records it, the file is gone: lost, or purged with its
                # tombstone lost too. Never written again from here (a purged case's audio
                # must not come back); restore the file itself from a backup.
                raise RecordingCorrupt(
                    ref.case_id, ref.call_key, "is missing, though the case's evidence records it"
                )
            return None
        have, _ = self._open(names, ref.case_id, ref.call_key, check_evidence=False)
        if have != ref:
            raise RecordingExists(ref.case_id, ref.call_key)
        if self.evidence is not None and row is None:
            self._add_evidence(ref)  # a put that crashed between file and evidence
        return have

    def _write_new(self, names: _Names, ref: RecordingRef, data: bytes) -> bool:
        """Seal and write the file atomically; False when another writer linked it first."""
        blob = self._seal(names, ref, data)
        folder = names.folder
        if not folder.is_dir():
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            _fsync_dir(folder.parent)
            _fsync_dir(self.root)
        tmp = folder / f".{names.stem}.{os.urandom(6).hex()}{TEMP}"
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600
        )
        try:
            try:
                os.fchmod(fd, 0o600)  # whatever the umask
                _write_all(fd, blob)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, names.live)  # never replaces: the first writer wins
            except FileExistsError:
                return False
            _fsync_dir(folder)
            return True
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _seal(self, names: _Names, ref: RecordingRef, data: bytes) -> bytes:
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(_NONCE)
        header = _canonical(
            {
                "format": FORMAT,
                "cipher": CIPHER,
                "case_id": ref.case_id,
                "call_key": ref.call_key,
                "file": names.file,
                "sha256": ref.sha256,
                "size": ref.size,
                "duration_ms": ref.duration_ms,
                "recorded_at": ref.recorded_at.isoformat(),
                "nonce": base64.b64encode(nonce).decode(),
            }
        )
        if len(header) > _HEADER_MAX:  # a 400-character key of 4-byte characters
            raise InvalidRecording("call_key", ref.call_key, "too long for the file header")
        wrapped = self.keys.encrypt(
            base64.b64encode(data_key).decode(),
            self._wrap_place(ref.case_id, ref.call_key, names.file),
        ).encode("ascii")
        sealed = AESGCM(data_key).encrypt(nonce, data, MAGIC + header)
        return b"".join(
            (
                MAGIC,
                len(header).to_bytes(4, "big"),
                header,
                len(wrapped).to_bytes(2, "big"),
                wrapped,
                sealed,
            )
        )

    # --- evidence -------------------------------------------------------------------------

    def _evidence_row(self, case_id: str, call_key: str) -> EvidenceRow | None:
        if self.evidence is None:
            return None
        want = evidence_call_id(call_key)
        for row in self.evidence.recordings(case_id):
            if row.call_id == want:
                return row
        return None

    def _add_evidence(self, ref: RecordingRef) -> None:
        assert self.evidence is not None
        try:
            self.evidence.add_recording(
                ref.case_id,
                evidence_call_id(ref.call_key),
                location=ref.location,
                checksum_sha256=ref.sha256,
                duration_ms=ref.duration_ms,
                recorded_at=ref.recorded_at,
            )
        except Exception:
            # Two puts of the same audio at once: the other one's row is as good as ours.
            row = self._evidence_row(ref.case_id, ref.call_key)
            if row is None or not _same(row, ref):
                raise

    # --- reading --------------------------------------------------------------------------

    def _read_file(self, path: Path, case_id: str, call_key: str) -> bytes:
        limit = len(MAGIC) + 6 + _HEADER_MAX + _WRAPPED_MAX + MAX_RECORDING_BYTES + _TAG
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise
        except OSError as exc:  # a symbolic link planted in the store (ELOOP), say
            raise RecordingCorrupt(case_id, call_key, f"cannot be opened ({exc.strerror})") from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise RecordingCorrupt(case_id, call_key, "is not a regular file")
            if info.st_size > limit:
                raise RecordingCorrupt(case_id, call_key, "is larger than any recording")
            with os.fdopen(fd, "rb", closefd=False) as stream:
                return stream.read(limit + 1)
        finally:
            os.close(fd)

    def _parse(
        self, blob: bytes, case_id: str, call_key: str
    ) -> tuple[bytes, dict[str, Any], str, bytes]:
        """``(header bytes, header, wrapped key, sealed audio)`` of a file's bytes."""

        def bad(why: str) -> RecordingCorrupt:
            return RecordingCorrupt(case_id, call_key, why)

        if not blob.startswith(MAGIC):
            raise bad("is not a movecar recording (format 1)")
        at = len(MAGIC)
        size = int.from_bytes(blob[at : at + 4], "big")
        at += 4
        if not 0 < size <= _HEADER_MAX or len(blob) < at + size + 2:
            raise bad("has a malformed header")
        raw = blob[at : at + size]
        at += size
        wrapped_size = int.from_bytes(blob[at : at + 2], "big")
        at += 2
        if not 0 < wrapped_size <= _WRAPPED_MAX or len(blob) < at + wrapped_size + _TAG:
            raise bad("has a malformed data key")
        try:
            wrapped = blob[at : at + wrapped_size].decode("ascii")
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeError, ValueError, RecursionError):
            raise bad("has a malformed header") from None
        if not isinstance(header, dict) or set(header) != _HEADER_KEYS:
            raise bad("has a malformed header")
        if header["format"] != FORMAT or header["cipher"] != CIPHER:
            raise bad("is in an unknown format")
        return raw, header, wrapped, blob[at + wrapped_size :]

    def _header_ref(self, header: dict[str, Any], names: _Names) -> RecordingRef:
        recorded_at = dt.datetime.fromisoformat(header["recorded_at"])
        for name in ("size", "duration_ms"):
            if type(header[name]) is not int or header[name] < 0:
                raise ValueError(name)
        if recorded_at.utcoffset() is None or not isinstance(header["sha256"], str):
            raise ValueError("recorded_at")
        return RecordingRef(
            header["case_id"],
            header["call_key"],
            header["sha256"],
            header["size"],
            header["duration_ms"],
            recorded_at,
            names.location,
        )

    def _open(
        self, names: _Names, case_id: str, call_key: str, *, check_evidence: bool = True
    ) -> tuple[RecordingRef, bytes]:
        """The recording's metadata and audio, every check passed (the file's place, the
        wrapped key, the tag, the SHA-256 and, when ``check_evidence``, the evidence)."""
        try:
            blob = self._read_file(names.live, case_id, call_key)
        except FileNotFoundError:
            raise RecordingNotFound(case_id, call_key) from None
        raw, header, wrapped, sealed = self._parse(blob, case_id, call_key)
        if (header["case_id"], header["call_key"], header["file"]) != (
            case_id,
            call_key,
            names.file,
        ):
            raise RecordingMisplaced(
                case_id, call_key, "belongs to another case or call: moved or copied here"
            )
        try:
            ref = self._header_ref(header, names)
            nonce = base64.b64decode(header["nonce"], validate=True)
        except (ValueError, TypeError, binascii.Error):
            raise RecordingCorrupt(case_id, call_key, "has a malformed header") from None
        data_key = self._unwrap(wrapped, case_id, call_key, names.file)
        try:
            audio = AESGCM(data_key).decrypt(nonce, sealed, MAGIC + raw)
        except (InvalidTag, ValueError):
            raise RecordingCorrupt(
                case_id, call_key, "fails its authentication tag: altered or truncated"
            ) from None
        if len(audio) != ref.size or sha256_hex(audio) != ref.sha256:
            raise RecordingCorrupt(case_id, call_key, "does not match its SHA-256")
        if check_evidence and self.evidence is not None:
            row = self._evidence_row(case_id, call_key)
            if row is None:
                raise RecordingNotFound(case_id, call_key, _INTERRUPTED)
            if not _same(row, ref):
                raise RecordingCorrupt(case_id, call_key, "does not match the case's evidence")
        return ref, audio

    def _unwrap(self, wrapped: str, case_id: str, call_key: str, file: str) -> bytes:
        try:
            key_id = self.keys.key_id_of(wrapped)
        except DecryptionFailed:
            raise RecordingCorrupt(case_id, call_key, "has a malformed data key") from None
        if key_id not in self.keys.key_ids:
            # Configuration, not corruption: the file may be fine (exit 3 either way).
            raise KeyConfigError(
                f"recording of case {case_id} is sealed under key {key_id!r}, which is not "
                "configured (MOVECAR_KEYS): keep old keys until `rotate_keys` left none"
            )
        try:
            text = self.keys.decrypt(wrapped, self._wrap_place(case_id, call_key, file))
            data_key = base64.b64decode(text, validate=True)
        except (DecryptionFailed, ValueError, binascii.Error):
            raise RecordingMisplaced(
                case_id, call_key, "its data key does not open here: moved, copied or altered"
            ) from None
        if len(data_key) != 32:
            raise RecordingCorrupt(case_id, call_key, "has a malformed data key")
        return data_key

    def _tombstone(self, names: _Names) -> RecordingRef:
        """The metadata a purge kept (unverified: the evidence holds the covered copy)."""
        try:
            kept = json.loads(names.tombstone.read_text(encoding="utf-8"))
            header = kept["header"]
            purged_at = dt.datetime.fromisoformat(kept["purged_at"])
            return attrs.evolve(self._header_ref(header, names), purged_at=purged_at)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise RecordingCorrupt("?", names.stem, "tombstone is unreadable") from exc

    # --- the port -------------------------------------------------------------------------

    def _missing(self, case_id: str, call_key: str) -> RecordingNotFound | RecordingCorrupt:
        """The error for a call without its file: corrupt (lost) when the evidence records
        it, not found otherwise."""
        if self._evidence_row(case_id, call_key) is not None:
            return RecordingCorrupt(
                case_id, call_key, "is missing, though the case's evidence records it"
            )
        return RecordingNotFound(case_id, call_key)

    def _load(self, case_id: str, call_key: str) -> tuple[RecordingRef, bytes]:
        names = self._names(case_id, call_key)
        if names.tombstone.exists():
            raise RecordingPurged(case_id, call_key, self._tombstone(names).purged_at)
        if not os.path.lexists(names.live):
            raise self._missing(case_id, call_key)
        return self._open(names, case_id, call_key)

    def metadata(self, case_id: str, call_key: str) -> RecordingRef:
        """The recording's metadata, from its header (the tombstone's once purged). With
        evidence, the evidence must hold the call and agree (:class:`RecordingCorrupt`);
        without, the header is only checked by :meth:`verify` and :meth:`extract`."""
        case_id, call_key = check_call(case_id, call_key)
        names = self._names(case_id, call_key)
        if names.tombstone.exists():
            ref = self._tombstone(names)
            if (ref.case_id, ref.call_key) != (case_id, call_key):
                raise RecordingMisplaced(case_id, call_key, "tombstone belongs to another call")
            return ref
        try:
            blob = self._read_file(names.live, case_id, call_key)
        except FileNotFoundError:
            raise self._missing(case_id, call_key) from None
        _, header, _, _ = self._parse(blob, case_id, call_key)
        try:
            ref = self._header_ref(header, names)
        except (ValueError, TypeError):
            raise RecordingCorrupt(case_id, call_key, "has a malformed header") from None
        if (ref.case_id, ref.call_key) != (case_id, call_key):
            raise RecordingMisplaced(case_id, call_key, "belongs to another case or call")
        if self.evidence is not None:
            row = self._evidence_row(case_id, call_key)
            if row is None:
                raise RecordingNotFound(case_id, call_key, _INTERRUPTED)
            if not _same(row, ref):
                raise RecordingCorrupt(case_id, call_key, "does not match the case's evidence")
        return ref

    def exists(self, case_id: str, call_key: str) -> bool:
        case_id, call_key = check_call(case_id, call_key)
        names = self._names(case_id, call_key)
        if names.tombstone.exists() or not names.live.exists():
            return False
        return self.evidence is None or self._evidence_row(case_id, call_key) is not None

    def verify(self, case_id: str, call_key: str) -> RecordingRef:
        """Every check extraction makes (place, tag, SHA-256, evidence) without handing
        out or logging the audio: what an auditor runs (checking is not listening)."""
        case_id, call_key = check_call(case_id, call_key)
        return self._load(case_id, call_key)[0]

    def extract(self, case_id: str, call_key: str, actor: Actor) -> bytes:
        """录音提取 (二(四)): the audio for an actor allowed to extract; the refusal or the
        extraction is logged (七(三)) with the actor, role, case, call and, when handed
        out, the SHA-256; never the audio. The log is written before the audio is
        returned: an extraction that cannot be logged hands nothing out."""
        case_id, call_key = check_call(case_id, call_key)
        who = guard_extraction(self.access_log, case_id, call_key, actor)
        ref, audio = self._load(case_id, call_key)
        self.access_log.log_access(
            who.actor_id, LOG_EXTRACT, case_id, extraction_detail(call_key, who.role, ref.sha256)
        )
        return audio

    def purge_case(self, case_id: str) -> int:
        """二(四) after three years: each recording of the case becomes a tombstone (its
        header, i.e. its metadata and SHA-256, and the purge time) and its sealed audio and
        wrapped data key are deleted. Idempotent; interrupted, it is finished by running it
        again. The caller (the retention purge) decides that the case may go."""
        case_id = check_case_id(case_id)
        folder = self._case_folder(case_id)
        if not folder.is_dir():
            return 0
        at = self.clock.now()
        removed = 0
        for path in sorted(folder.iterdir()):
            if path.name.endswith(TEMP):
                with contextlib.suppress(OSError):
                    path.unlink()  # an interrupted write of this case: nothing to keep
                continue
            if not path.name.endswith(SUFFIX):
                continue
            stem = path.name[: -len(SUFFIX)]
            tomb = folder / (stem + TOMBSTONE)
            if not tomb.exists():
                self._write_tombstone(path, tomb, at)
            path.unlink()
            removed += 1
        _fsync_dir(folder)
        return removed

    def _write_tombstone(self, live: Path, tomb: Path, at: dt.datetime) -> None:
        header: Any = None
        try:
            _, header, _, _ = self._parse(self._read_file(live, "?", live.stem), "?", live.stem)
        except (RecordingCorrupt, OSError):
            header = None  # unreadable: removed all the same (二(四) is about time, not form)
        body = _canonical({"format": FORMAT, "header": header, "purged_at": at.isoformat()})
        self._atomic_replace(tomb, body)

    def _atomic_replace(self, path: Path, body: bytes) -> None:
        tmp = path.parent / f".{path.name}.{os.urandom(6).hex()}{TEMP}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                os.fchmod(fd, 0o600)
                _write_all(fd, body)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    # --- maintenance ----------------------------------------------------------------------

    def _files(self, suffix: str) -> Iterator[Path]:
        for shard in sorted(self.root.iterdir()):
            if not shard.is_dir() or len(shard.name) != 2:
                continue
            for folder in sorted(shard.iterdir()):
                if folder.is_dir():
                    yield from sorted(p for p in folder.iterdir() if p.name.endswith(suffix))

    def remove_partial(self, older_than: dt.timedelta = dt.timedelta(hours=1)) -> int:
        """Remove temporary files older than ``older_than`` (left by a crash mid-write;
        a younger one may be a write under way). Returns how many."""
        cutoff = self.clock.now().timestamp() - older_than.total_seconds()
        n = 0
        for path in self._files(TEMP):
            with contextlib.suppress(FileNotFoundError):
                if path.lstat().st_mtime < cutoff:
                    path.unlink()
                    n += 1
        return n

    def rotate_keys(self) -> int:
        """Rewrap every recording's data key under the newest key (七(三) key rotation:
        the audio is not re-encrypted; its ciphertext stays). Returns files changed. A file
        that does not open in its place is left alone and counted by
        :meth:`rotation_pending`; drop an old key only once that is 0."""
        changed = 0
        for path in self._files(SUFFIX):
            try:
                blob = self._read_file(path, "?", path.stem)
                raw, header, wrapped, sealed = self._parse(blob, "?", path.stem)
                case_id, call_key = check_call(header["case_id"], header["call_key"])
                names = self._names(case_id, call_key)
                if names.live != path or not self.keys.needs_rotation(wrapped):
                    continue
                place = self._wrap_place(case_id, call_key, names.file)
                fresh = self.keys.rotate(wrapped, place).encode("ascii")
            except (RecordingCorrupt, InvalidRecording, DecryptionFailed, FileNotFoundError):
                continue
            body = b"".join(
                (MAGIC, len(raw).to_bytes(4, "big"), raw, len(fresh).to_bytes(2, "big"), fresh)
            )
            self._atomic_replace(path, body + sealed)
            changed += 1
        return changed

    def rotation_pending(self) -> int:
        """Recordings whose data key is not wrapped under the newest key (or that cannot
        be read to tell)."""
        n = 0
        for path in self._files(SUFFIX):
            try:
                _, _, wrapped, _ = self._parse(self._read_file(path, "?", path.stem), "?", "?")
                n += self.keys.needs_rotation(wrapped)
            except (RecordingCorrupt, DecryptionFailed, FileNotFoundError):
                n += 1
        return n


def _same(row: EvidenceRow, ref: RecordingRef) -> bool:
    return (row.location, row.checksum_sha256, row.duration_ms, row.recorded_at) == (
        ref.location,
        ref.sha256,
        ref.duration_ms,
        ref.recorded_at,
    )
