"""The evidence ledger: one append-only Merkle tree over every evidentiary record.

七(三) asks the operator to protect the data from "篡改、丢失", and 五(三) lets Party A
withhold a month's fee "如发现有弄虚作假的". A per-case hash chain proves nothing against
someone who can rewrite the database and recompute every hash. The ledger closes that:
every evidentiary record (a case event, an owner look-up, an access-log entry, a legal
hold or its release, a monthly report, a settlement, a recording's metadata, a retention
purge, a record of the incident log) is a *leaf*; the leaves form one Merkle tree in the
style of RFC 6962 (Certificate Transparency); and the operator signs the tree head (size,
root) from time to time with a key kept off the database host. Party A keeps the public key
and every signed checkpoint.
Any change to a record covered by a checkpoint then changes a leaf, hence the root, and no
one without the signing key can sign the new root.

This module is the pure part: how a record becomes a leaf (one definition, used by the
writer and by the audit), the tree's hashes, the compact form a sequencer extends one leaf
at a time, inclusion and consistency proofs (RFC 6962 §2.1.1-2.1.2, verified as RFC 9162
§2.1.3-2.1.4 says), and the checkpoint's signed text. Signing itself lives in the
adapters (it needs ``cryptography``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal

import attrs

from movecar_core.errors import InvalidInput, MoveCarError
from movecar_core.integrity import canonical_json

#: RFC 6962 §2.1: leaves and interior nodes are hashed with different prefixes, so a
#: leaf can never be passed off as a node (second-preimage resistance).
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
#: RFC 6962: the hash of an empty tree is the hash of the empty string.
EMPTY_ROOT = hashlib.sha256(b"").hexdigest()
#: Version of the leaf encoding, first element of every leaf's data.
LEAF_FORMAT = "mc1"
#: First line of a checkpoint's signed text; a new format gets a new line.
CHECKPOINT_FORMAT = "movecar-checkpoint/1"

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_KEY_ID = re.compile(r"[0-9a-f]{16}\Z")


class LedgerError(MoveCarError):
    """Base of the ledger's refusals."""


class BackdatedRecord(LedgerError):
    """A record dated before a signed checkpoint it cannot be part of.

    Such a record could only be a fabrication inserted into the past (or the writer's
    clock is behind): the store refuses to write it, and the audit reports one found.
    """

    def __init__(self, what: str, at: dt.datetime, checkpoint_at: dt.datetime) -> None:
        super().__init__(
            f"{what} is dated {utc_text(at)[:19]}Z, before the checkpoint of "
            f"{utc_text(checkpoint_at)[:19]}Z: a record cannot be added to the signed past "
            "(is this host's clock behind?)"
        )


class InvalidCheckpoint(InvalidInput):
    """Text that is not a movecar checkpoint (malformed JSON, fields, sizes or hashes)."""


class InvalidProof(InvalidInput):
    """A proof that is malformed (not one that fails to verify: that is ``False``)."""


class LeafKind(enum.StrEnum):
    """What a leaf covers; the first part of its identity ``(kind, subject)``."""

    EVENT = "event"
    OWNER_LOOKUP = "owner_lookup"
    ACCESS = "access"
    LEGAL_HOLD = "legal_hold"
    REPORT = "report"
    SETTLEMENT = "settlement"
    RECORDING = "recording"
    PURGE = "purge"
    INCIDENT = "incident"


#: Kinds whose records a lawful retention purge (二(四)) deletes with the case: their
#: leaves stay, so old checkpoints still verify, and the purge is a leaf of its own.
PURGEABLE = frozenset({LeafKind.EVENT, LeafKind.OWNER_LOOKUP, LeafKind.RECORDING})


def utc_text(at: dt.datetime) -> str:
    """One spelling of an aware time: UTC, microseconds, ``Z``
    (``2025-03-01T00:30:00.000000Z``)."""
    offset = at.utcoffset() if isinstance(at, dt.datetime) else None
    if offset is None:
        raise InvalidInput(f"{at!r:.60} is not an aware datetime")
    # isoformat, not strftime: a third of the time, and always four digits of year; the
    # offset read once (a zone's utcoffset is a look-up): a leaf is made per append
    return (at.replace(tzinfo=None) - offset).isoformat(timespec="microseconds") + "Z"


@attrs.frozen
class Leaf:
    """One evidentiary record as the ledger holds it.

    ``subject`` names the record within its kind (``<case id>/<version>`` for an event,
    the row id for an access-log entry, the month for a report); ``at`` is the record's
    own date, the one the backdating rule compares with checkpoints; ``hash`` is the
    RFC 6962 leaf hash of the record's canonical data.
    """

    kind: LeafKind
    subject: str
    at: dt.datetime
    hash: str
    #: The case the record belongs to, if any (kept beside the leaf so an audit can tell
    #: a leaf whose case was lawfully purged from one whose record was deleted).
    case_id: str | None = None


def _value(value: object) -> object:
    if isinstance(value, dt.datetime):
        return utc_text(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def leaf(
    kind: LeafKind, subject: str, at: dt.datetime, *fields: object, case_id: str | None = None
) -> Leaf:
    """The leaf of a record: ``fields`` are its columns, in the order its kind fixes.

    The data hashed is the canonical JSON of ``[format, kind, subject, at, *fields]``;
    times are written :func:`utc_text`, decimals as their text.
    """
    values: list[object] = [LEAF_FORMAT, kind.value, subject, utc_text(at)]
    for value in fields:
        values.append(value if type(value) in _PLAIN else _value(value))
    data = leaf_json(values)
    return Leaf(kind, subject, at, leaf_hash(data.encode("utf-8")), case_id)


#: Values a leaf holds as they are (the others go through ``_value``).
_PLAIN = frozenset({str, int, bool, type(None)})


#: What the canonical encoder writes for a str (``ensure_ascii=False``): its own function.
_text = json.encoder.encode_basestring
_LITERALS = {None: "null", True: "true", False: "false"}


def leaf_json(values: list[object]) -> str:
    """``canonical_json(values)``, written directly when every value is a str, an int, a
    bool or None (every leaf's are: one is made per append and per record, so this is on
    the write path), and by the canonical encoder otherwise.
    ``tests/test_ledger.py`` checks the two agree for any such list."""
    parts = []
    for value in values:
        kind = type(value)
        if isinstance(value, str) and kind is str:
            parts.append(_text(value))
        elif isinstance(value, int) and kind is int:
            parts.append(int.__repr__(value))
        elif value is None or kind is bool:
            parts.append(_LITERALS[value])  # type: ignore[index]
        else:
            return canonical_json(values)
    return "[" + ",".join(parts) + "]"


def case_subject(case_id: str, name: object) -> str:
    """The subject of a record of a case: ``<case id>/<version, last version or call id>``
    (the audit tells a lawfully purged case's leaves by this prefix)."""
    return f"{case_id}/{name}"


# --- one definition per kind of record --------------------------------------------------


def event_leaf(
    case_id: str, first_version: int, last_version: int, at: dt.datetime, chain_hash: str
) -> Leaf:
    """The events of one append: versions ``first_version`` to ``last_version`` of the
    case, written together (one command's events, or an imported history). ``at`` is the
    first one's time and ``chain_hash`` the last one's hash, which covers every event of
    the case up to it (type, position, plaintext payload): changing, inserting or deleting
    any of them changes it. One leaf per append, not per event: a bulk import of a
    five-event history writes one leaf instead of five."""
    return leaf(
        LeafKind.EVENT,
        case_subject(case_id, last_version),
        at,
        first_version,
        chain_hash,
        case_id=case_id,
    )


def owner_lookup_leaf(
    case_id: str,
    version: int,
    at: dt.datetime,
    *,
    agent_id: str,
    plate: str | None,
    found: bool,
    source: str,
) -> Leaf:
    """二(二)/四: a look-up in the owner data source, by whom, for which case."""
    return leaf(
        LeafKind.OWNER_LOOKUP,
        case_subject(case_id, version),
        at,
        agent_id,
        plate,
        bool(found),
        source,
        case_id=case_id,
    )


def access_leaf(
    row_id: int,
    at: dt.datetime,
    *,
    actor: str,
    action: str,
    case_id: str | None,
    detail: str | None,
) -> Leaf:
    """七(三): an access-log entry."""
    return leaf(LeafKind.ACCESS, str(row_id), at, actor, action, case_id, detail, case_id=case_id)


def legal_hold_leaf(
    row_id: int, at: dt.datetime, *, case_id: str, actor: str, reason: str | None
) -> Leaf:
    """A legal hold placed on a case (``reason``) or released (``None``)."""
    return leaf(LeafKind.LEGAL_HOLD, str(row_id), at, case_id, actor, reason, case_id=case_id)


def report_leaf(month: str, at: dt.datetime, report_hash: str) -> Leaf:
    """二(七)/三: a monthly report; its own hash covers counts, digest, tree head and the
    report before it."""
    return leaf(LeafKind.REPORT, month, at, report_hash)


def settlement_leaf(
    month: str,
    at: dt.datetime,
    *,
    billable_calls: int,
    unit_price: Decimal,
    fee: Decimal,
    report_digest: str,
) -> Leaf:
    """三: what was billed for a reported month (money as text with two places, the
    columns' scale, so 1.5 and 1.50 are one amount)."""
    money = _cents(unit_price), _cents(fee)
    return leaf(LeafKind.SETTLEMENT, month, at, billable_calls, *money, report_digest)


def _cents(amount: Decimal) -> str:
    return f"{Decimal(amount).quantize(Decimal('0.01')):f}"


def recording_leaf(
    case_id: str,
    call_id: str,
    at: dt.datetime,
    *,
    location: str,
    checksum_sha256: str,
    duration_ms: int,
) -> Leaf:
    """二(四) 坐席录音: where a call's audio is, its SHA-256 and length."""
    return leaf(
        LeafKind.RECORDING,
        case_subject(case_id, call_id),
        at,
        location,
        checksum_sha256,
        duration_ms,
        case_id=case_id,
    )


def purge_leaf(
    case_id: str,
    at: dt.datetime,
    *,
    closed_at: dt.datetime,
    anchor_version: int,
    anchor_hash: str,
    events_removed: int,
) -> Leaf:
    """二(四): a retention purge of a case, with the anchor that keeps it verifiable."""
    anchor = (closed_at, anchor_version, anchor_hash, events_removed)
    return leaf(LeafKind.PURGE, case_id, at, *anchor, case_id=case_id)


def incident_leaf(
    seq: int, recorded_at: dt.datetime, *, incident_id: str, type_name: str, payload: str
) -> Leaf:
    """二(五), annex 2 十六: record ``seq`` of the incident log (an outage's start or end, a
    security incident, a notice given), its canonical JSON ``payload`` as stored."""
    return leaf(LeafKind.INCIDENT, str(seq), recorded_at, incident_id, type_name, payload)


# --- the tree (RFC 6962 §2.1) -----------------------------------------------------------


def leaf_hash(data: bytes) -> str:
    """``SHA-256(0x00 || data)``, hex."""
    return hashlib.sha256(LEAF_PREFIX + data).hexdigest()


def node_hash(left: str, right: str) -> str:
    """``SHA-256(0x01 || left || right)`` of two hex hashes, hex."""
    return hashlib.sha256(NODE_PREFIX + bytes.fromhex(left) + bytes.fromhex(right)).hexdigest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


@attrs.define
class CompactTree:
    """The root of a growing tree without its leaves: the roots of its perfect subtrees.

    A tree of ``size`` leaves is a run of perfect subtrees, one per set bit of ``size``,
    largest first; appending a leaf merges equal-sized ones as a binary counter carries.
    The sequencer keeps this (at most 64 hashes) instead of re-reading every leaf. The
    peaks are kept as bytes (hex only at the edges): the audit appends a million leaves.
    """

    size: int = 0
    _peaks: list[bytes] = attrs.field(factory=list, alias="peaks")

    @property
    def peaks(self) -> list[str]:
        return [p.hex() for p in self._peaks]

    def append(self, hashed_leaf: str) -> None:
        node, n = bytes.fromhex(hashed_leaf), self.size
        peaks, sha256 = self._peaks, hashlib.sha256
        while n & 1:
            node = sha256(NODE_PREFIX + peaks.pop() + node).digest()
            n >>= 1
        peaks.append(node)
        self.size += 1

    def extend(self, hashed_leaves: Iterable[str]) -> None:
        for h in hashed_leaves:
            self.append(h)

    def root(self) -> str:
        """RFC 6962's MTH of the leaves appended so far."""
        if not self._peaks:
            return EMPTY_ROOT
        root = self._peaks[-1]
        for peak in reversed(self._peaks[:-1]):
            root = hashlib.sha256(NODE_PREFIX + peak + root).digest()
        return root.hex()

    def head(self) -> TreeHead:
        return TreeHead(self.size, self.root())

    def to_json(self) -> str:
        return json.dumps({"size": self.size, "peaks": self.peaks}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> CompactTree:
        """The stored form back; anything malformed is :class:`InvalidInput`."""
        try:
            data = json.loads(text)
            size, peaks = data["size"], data["peaks"]
        except (ValueError, TypeError, KeyError, RecursionError):
            raise InvalidInput("the ledger's compact tree is not readable") from None
        if (
            type(size) is not int
            or size < 0
            or not isinstance(peaks, list)
            or len(peaks) != size.bit_count()
            or not all(isinstance(p, str) and _HEX64.match(p) for p in peaks)
        ):
            raise InvalidInput("the ledger's compact tree does not describe a tree")
        return cls(size, [bytes.fromhex(p) for p in peaks])


def merkle_root(hashes: Sequence[str]) -> str:
    """MTH(D[n]) of leaf hashes (iteratively: no recursion depth for large trees)."""
    tree = CompactTree()
    tree.extend(hashes)
    return tree.root()


def inclusion_proof(hashes: Sequence[str], index: int) -> list[str]:
    """RFC 6962 §2.1.1 PATH(index, D[n]) over the leaf hashes ``hashes``."""
    if not 0 <= index < len(hashes):
        raise InvalidProof(f"leaf {index} is not in a tree of {len(hashes)}")
    path: list[str] = []
    lo, hi, m = 0, len(hashes), index
    # Descend from the root; the sibling subtrees are collected top-down, so reverse.
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            path.append(merkle_root(hashes[lo + k : hi]))
            hi = lo + k
        else:
            path.append(merkle_root(hashes[lo : lo + k]))
            lo, m = lo + k, m - k
    path.reverse()
    return path


def consistency_proof(hashes: Sequence[str], old_size: int) -> list[str]:
    """RFC 6962 §2.1.2 PROOF(old_size, D[n]): that the first ``old_size`` leaves of the
    tree of ``hashes`` are a tree head's leaves."""
    n = len(hashes)
    if not 0 <= old_size <= n:
        raise InvalidProof(f"a tree of {old_size} is not a prefix of a tree of {n}")
    if old_size in (0, n):
        return []
    proof: list[str] = []
    lo, hi, m, whole = 0, n, old_size, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            proof.append(merkle_root(hashes[lo + k : hi]))
            hi = lo + k
        else:
            proof.append(merkle_root(hashes[lo : lo + k]))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        proof.append(merkle_root(hashes[lo:hi]))
    proof.reverse()
    return proof


def _check_hashes(proof: object) -> list[str]:
    if not isinstance(proof, list | tuple) or len(proof) > 128:
        raise InvalidProof("a proof is a list of at most 128 hashes")
    for h in proof:
        if not isinstance(h, str) or not _HEX64.match(h):
            raise InvalidProof(f"{h!r:.70} is not a 64-hex-digit hash")
    return list(proof)


def verify_inclusion(
    hashed_leaf: str, index: int, size: int, proof: Sequence[str], root: str
) -> bool:
    """RFC 9162 §2.1.3.2: is the leaf with hash ``hashed_leaf`` number ``index`` of the
    tree of ``size`` leaves whose root is ``root``?"""
    path = _check_hashes(proof)
    if type(index) is not int or type(size) is not int or not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, hashed_leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, old_root: str, new_size: int, new_root: str, proof: Sequence[str]
) -> bool:
    """RFC 9162 §2.1.4.2: is the tree (old_size, old_root) a prefix of (new_size, new_root)?"""
    path = _check_hashes(proof)
    if type(old_size) is not int or type(new_size) is not int or not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not path and old_root == new_root
    if old_size == 0:
        return not path and old_root == EMPTY_ROOT
    if not path:
        return False
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is a node of the new
        path = [old_root, *path]
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0


# --- tree heads and checkpoints ---------------------------------------------------------


@attrs.frozen
class TreeHead:
    """The ledger at one moment: how many leaves, and their Merkle root."""

    size: int
    root: str


@attrs.frozen
class Checkpoint:
    """A signed tree head: the operator's statement that the ledger had ``size`` leaves
    with ``root`` at ``issued_at``, signed (Ed25519) by the key ``key_id`` names."""

    size: int
    root: str
    issued_at: dt.datetime
    key_id: str
    signature: str  # base64 of the 64-byte Ed25519 signature

    @property
    def head(self) -> TreeHead:
        return TreeHead(self.size, self.root)

    def message(self) -> bytes:
        """The exact bytes signed (see :func:`checkpoint_message`)."""
        return checkpoint_message(self.size, self.root, self.issued_at, self.key_id)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": CHECKPOINT_FORMAT,
                "size": self.size,
                "root": self.root,
                "issued_at": utc_text(self.issued_at),
                "key_id": self.key_id,
                "signature": self.signature,
            },
            indent=2,
        )

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """A checkpoint from its JSON; anything else is :class:`InvalidCheckpoint`."""
        if not isinstance(text, str) or len(text) > 4096:
            raise InvalidCheckpoint("a checkpoint is a JSON object of at most 4 KiB")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise InvalidCheckpoint("not JSON") from None
        if not isinstance(data, dict):
            raise InvalidCheckpoint("not a JSON object")
        want = {"format", "size", "root", "issued_at", "key_id", "signature"}
        if set(data) != want:
            raise InvalidCheckpoint(f"needs exactly the fields {', '.join(sorted(want))}")
        if data["format"] != CHECKPOINT_FORMAT:
            raise InvalidCheckpoint(f"format is not {CHECKPOINT_FORMAT!r}")
        return cls.of(
            data["size"], data["root"], data["issued_at"], data["key_id"], data["signature"]
        )

    @classmethod
    def of(
        cls, size: object, root: object, issued_at: object, key_id: object, signature: object
    ) -> Checkpoint:
        """A checkpoint from loose values (JSON or a database row), each checked."""
        if type(size) is not int or not 0 <= size < 2**63:
            raise InvalidCheckpoint("size is not a count")
        if not isinstance(root, str) or not _HEX64.match(root):
            raise InvalidCheckpoint("root is not 64 lower-case hex digits")
        if isinstance(issued_at, str):
            issued_at = _parse_utc(issued_at)
        if not isinstance(issued_at, dt.datetime) or issued_at.utcoffset() is None:
            raise InvalidCheckpoint("issued_at is not an aware time")
        if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
            raise InvalidCheckpoint("key_id is not 16 lower-case hex digits")
        if not isinstance(signature, str) or len(signature) != 88:
            raise InvalidCheckpoint("signature is not a base64 Ed25519 signature")
        try:
            raw = base64.b64decode(signature, validate=True)
        except (ValueError, binascii.Error):
            raise InvalidCheckpoint("signature is not base64") from None
        if len(raw) != 64:
            raise InvalidCheckpoint("signature is not 64 bytes")
        return cls(size, root, issued_at.astimezone(dt.UTC), key_id, signature)


def _parse_utc(text: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise InvalidCheckpoint("issued_at is not YYYY-MM-DDTHH:MM:SS.ffffffZ") from None


def checkpoint_message(size: int, root: str, issued_at: dt.datetime, key_id: str) -> bytes:
    """The text a checkpoint's signature covers, one field per line (as C2SP's signed
    notes do): a verifier needs nothing but these bytes and the public key."""
    return (
        f"{CHECKPOINT_FORMAT}\nsize {size}\nroot {root}\n"
        f"issued_at {utc_text(issued_at)}\nkey_id {key_id}\n"
    ).encode("ascii")


def key_id_of(public_key: bytes) -> str:
    """A public key's id: the first 8 bytes of the SHA-256 of its 32 raw bytes, hex."""
    return hashlib.sha256(public_key).hexdigest()[:16]
