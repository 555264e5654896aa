"""Encryption at rest for personal data (owner and requester phone numbers).

七(三): "采取措施 ... 防止未经授权的访问以及个人信息和数据的泄露、篡改、丢失". Phone numbers are
stored encrypted with AES-256-GCM (authenticated: a changed token does not decrypt), a
fresh 96-bit nonce per value, and associated data that names the key *and the value's
place*: the case, the record (event version and type) and the field (:func:`place`). A
token copied into another case, another event or another field of the same case does not
decrypt there (:class:`CiphertextMisplaced`), so the engine can never dial an owner or
notify a requester whose number was moved in from elsewhere. Keys come from configuration
(the ``MOVECAR_KEYS`` environment variable or an explicit list), never from the database.
A key is 32 random bytes in url-safe base64 (``movecar keys new``).

Stored forms::

    ~1:<key id>:<base64(nonce | ciphertext | tag)>   bound (written since schema 0003)
    <key id>:<base64(nonce | ciphertext | tag)>      legacy, unbound (the key id only)

``~`` is in neither the key-id nor the base64 alphabet, so the two never look alike. The
bound form's associated data starts with ``movecar/aad/1`` and the legacy form's is the bare
key id, so neither form can be relabelled as the other. Legacy tokens are never opened by
:meth:`KeyRing.decrypt` (:class:`UnboundCiphertext`): only :meth:`KeyRing.rotate` (the
migration and ``movecar keys rotate``) and the audit open them, to rebind or report them.

Rotation: a :class:`KeyRing` holds several keys, newest first. New writes use the newest
key; rows written under an older key still decrypt, and :meth:`KeyRing.rotate` re-encrypts
a token under the newest key, bound to its place. Each key has an id, stored in the token,
so a re-encryption job can find the rows still under an old key without decrypting them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from movecar_core.errors import MoveCarError

ENV_VAR = "MOVECAR_KEYS"
_TOKEN = re.compile(r"[A-Za-z0-9_-]+={0,2}")
KEY_ID_MAX = 24
#: A key id: short and plain, so that a key (44 base64 characters) is never taken for one.
KEY_ID = re.compile(rf"[A-Za-z0-9._-]{{1,{KEY_ID_MAX}}}")
_NONCE = 12  # bytes: the size GCM is designed for
_KEY = 32  # bytes: AES-256


def _canonical_b64(token: str) -> str | None:
    try:
        return base64.urlsafe_b64encode(base64.urlsafe_b64decode(token)).decode("ascii")
    except (ValueError, binascii.Error):
        return None


def _label(source: str, index: int, key_id: object) -> str:
    if isinstance(key_id, str) and KEY_ID.fullmatch(key_id):
        return f"{source}: key {key_id!r}"
    return f"{source}: entry {index}"


class KeyConfigError(MoveCarError):
    """Missing, malformed or unknown encryption keys."""


class DecryptionFailed(MoveCarError):
    """A stored token that no configured key opens (tampered, or its key was dropped)."""


class CiphertextMisplaced(DecryptionFailed):
    """A bound token that does not open in the place it is read from.

    It was moved there from another case, event or field, or edited, or its key id now
    names other key bytes: AES-GCM cannot tell these apart, and in each case the value must
    not be used (nobody is dialled with it). The message names the place, never the value.
    """


class UnboundCiphertext(DecryptionFailed):
    """A token in the legacy form, bound to its key id only (written before schema 0003).

    Refused on reading: it could have been copied in from any other case. ``movecar keys
    rotate`` (or the 0003 migration, when it is given the keys) rebinds it to its place.
    """


#: Marks a token bound to its place (format 1); never part of a key id or of base64.
BOUND = "~1:"
#: First part of a bound token's associated data: the format, so a future format 2 and
#: format 1 can never share associated data.
_AAD_FORMAT = b"movecar/aad/1\x00"
#: The HKDF info of every blind-index key (the purpose follows): never an AES-GCM key.
_INDEX_INFO = b"movecar/blind-index/1\x00"


def place(case_id: str, version: int, type_name: str, field: str) -> str:
    """Where a value is stored: case, event version, event type and field.

    The parts are joined with NUL, which none of them holds (case ids, type names and field
    names are plain identifiers, the version is decimal digits), so two places never give
    the same text. Callers on the hot path build ``place_prefix(...) + field`` themselves.
    """
    return f"{case_id}\x00{version}\x00{type_name}\x00{field}"


def place_prefix(case_id: str, version: int, type_name: str) -> str:
    """The place of an event, to which a field name is appended (see :func:`place`)."""
    return f"{case_id}\x00{version}\x00{type_name}\x00"


class KeyRing:
    """Named AES-256-GCM keys, newest first: ``KeyRing([("k2", key2), ("k1", key1)])``."""

    def __init__(self, keys: Sequence[tuple[str, bytes | str]], *, source: str = "KeyRing") -> None:
        # Messages name an entry by its position, and by its id only when the id looks
        # like one: an entry written the wrong way round would otherwise echo the key.
        if not isinstance(keys, list | tuple) or not keys:
            raise KeyConfigError(f"{source}: needs at least one key")
        self._keys: dict[str, AESGCM] = {}
        self._entries: list[tuple[str, str]] = []
        for index, entry in enumerate(keys, start=1):
            if not isinstance(entry, tuple) or len(entry) != 2:
                raise KeyConfigError(f"{source}: entry {index} is not an (id, key) pair")
            key_id, key = entry
            label = _label(source, index, key_id)
            if not isinstance(key_id, str) or not KEY_ID.fullmatch(key_id):
                raise KeyConfigError(
                    f"{label}: the key id must be 1-{KEY_ID_MAX} characters of "
                    "A-Z a-z 0-9 . _ - (a key id is not secret; the key is)"
                )
            if key_id in self._keys:
                raise KeyConfigError(f"{label}: the key id appears twice")
            try:
                raw = base64.urlsafe_b64decode(key)
            except (ValueError, TypeError, binascii.Error):
                raw = b""
            if len(raw) != _KEY:
                raise KeyConfigError(
                    f"{label}: not a url-safe base64 32-byte key (make one: movecar keys new)"
                )
            self._keys[key_id] = AESGCM(raw)
            self._entries.append((key_id, base64.urlsafe_b64encode(raw).decode()))
        self._current_id: str = keys[0][0]
        #: (key id, purpose) -> the HMAC key of blind indexes derived from that key
        self._index_keys: dict[tuple[str, str], bytes] = {}
        # What every write needs, looked up once: the token prefix, the key, and the start
        # of the associated data (the place is appended per value: one bytes concatenation).
        self._writer = (
            f"{BOUND}{self._current_id}:",
            self._keys[self._current_id],
            _aad_head(self._current_id),
        )

    def __repr__(self) -> str:
        return f"KeyRing(key_ids={self.key_ids!r})"  # never the keys

    def entries(self) -> list[tuple[str, str]]:
        """The ``(id, key)`` pairs of this ring, newest first: ``KeyRing(ring.entries())``
        is the same ring. They are the secret keys, for a process of your own over a pipe
        (the audit's helper processes get them so): never log, store or print them."""
        return list(self._entries)

    @classmethod
    def from_config(cls, spec: str, *, source: str = ENV_VAR) -> KeyRing:
        """Parse ``"id2=KEY2,id1=KEY1"`` (newest first), the form of ``MOVECAR_KEYS``.

        ``source`` names where the text came from in error messages, which never quote
        the text itself.
        """
        if not isinstance(spec, str) or not spec.strip():
            raise KeyConfigError(f"{source}: is empty; give keys as 'id=KEY[,older_id=KEY]'")
        pairs: list[tuple[str, bytes | str]] = []
        for index, part in enumerate(spec.split(","), start=1):
            key_id, sep, key = part.strip().partition("=")
            if not sep:
                raise KeyConfigError(f"{source}: entry {index}: expected 'id=KEY'")
            pairs.append((key_id.strip(), key.strip()))
        return cls(pairs, source=source)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KeyRing:
        env = os.environ if environ is None else environ
        spec = env.get(ENV_VAR)
        if not spec:
            raise KeyConfigError(
                f"{ENV_VAR} is not set: give keys as 'id=KEY[,older_id=KEY]' "
                "(make one with `movecar keys new`)"
            )
        return cls.from_config(spec)

    @staticmethod
    def generate() -> str:
        return base64.urlsafe_b64encode(os.urandom(_KEY)).decode("ascii")

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    @property
    def current_id(self) -> str:
        """The id of the newest key, the one new writes use."""
        return self._current_id

    def blind_indexes(self, value: str, purpose: str) -> list[tuple[str, str]]:
        """``(key id, index)`` of ``value`` under every key of the ring, newest first: the
        index is HMAC-SHA256 (hex) of ``value`` under a key derived from that data key for
        ``purpose`` (HKDF-SHA256, info ``movecar/blind-index/1`` and the purpose).

        A keyed blind index: equal values give equal indexes, so a table can count or
        find a value without holding it; without the key, an index does not tell the value
        (a phone number, whose few billion possibilities a plain hash would not hide). Each
        purpose has its own derived key, never the data key itself. Under the newest key
        first: new rows use it, and rows indexed under an older key are still found while
        that key is in the ring.
        """
        data = value.encode("utf-8")
        return [
            (key_id, hmac.new(self._index_key(key_id, purpose), data, hashlib.sha256).hexdigest())
            for key_id in self._keys
        ]

    def blind_index(self, value: str, purpose: str) -> str:
        """:meth:`blind_indexes` under the newest key only (what a new row stores)."""
        digest = hmac.new(
            self._index_key(self._current_id, purpose), value.encode("utf-8"), hashlib.sha256
        )
        return digest.hexdigest()

    def _index_key(self, key_id: str, purpose: str) -> bytes:
        found = self._index_keys.get((key_id, purpose))
        if found is None:
            raw = base64.urlsafe_b64decode(dict(self._entries)[key_id])
            found = HKDF(
                algorithm=SHA256(), length=32, salt=None, info=_INDEX_INFO + purpose.encode()
            ).derive(raw)
            self._index_keys[(key_id, purpose)] = found
        return found

    def encrypt(self, plaintext: str, where: str) -> str:
        """``plaintext`` sealed under the newest key and bound to ``where`` (:func:`place`).

        七(三) "防止 ... 个人信息和数据的泄露、篡改": the token opens only at ``where``.
        """
        prefix, aead, head = self._writer
        nonce = os.urandom(_NONCE)
        sealed = aead.encrypt(nonce, plaintext.encode("utf-8"), head + where.encode("utf-8"))
        return prefix + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def encrypt_at(self, event_place: str, plaintext: str, field: str) -> str:
        """:meth:`encrypt` at ``event_place + field`` (:func:`place_prefix`): the argument
        order of a sealer, ``functools.partial(keys.encrypt_at, prefix)(value, field)``.
        The body is :meth:`encrypt`'s, not a call to it: this runs once per phone on the
        bulk path."""
        prefix, aead, head = self._writer
        nonce = os.urandom(_NONCE)
        where = (event_place + field).encode("utf-8")
        sealed = aead.encrypt(nonce, plaintext.encode("utf-8"), head + where)
        return prefix + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def encrypt_legacy(self, plaintext: str) -> str:
        """The legacy, unbound form (associated data = key id only).

        The library never writes it; it exists so that tests and tools can produce what
        databases written before schema 0003 hold.
        """
        _, aead, _ = self._writer
        nonce = os.urandom(_NONCE)
        sealed = aead.encrypt(nonce, plaintext.encode("utf-8"), self._current_id.encode())
        return f"{self._current_id}:" + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    @staticmethod
    def is_bound(stored: str) -> bool:
        return stored.startswith(BOUND)

    def key_id_of(self, stored: str) -> str:
        body = stored[len(BOUND) :] if stored.startswith(BOUND) else stored
        key_id, sep, _ = body.partition(":")
        if not sep:
            raise DecryptionFailed("stored value carries no key id")
        return key_id

    def _open(self, stored: str, aad: bytes | None, where: str | None) -> str:
        """Open ``stored`` (bound when ``where`` is given, else legacy)."""
        key_id = self.key_id_of(stored)
        aead = self._keys.get(key_id)
        if aead is None:
            raise DecryptionFailed(
                f"stored value was encrypted with key {key_id!r}, which is not configured"
            )
        # Exactly "[~1:]<key id>:<token>": anything between the key id and the token (a
        # second colon, say) fails the token's alphabet below.
        token = (stored[len(BOUND) :] if where is not None else stored).partition(":")[2]
        # base64 decoding skips stray characters: insist on the one canonical spelling, so
        # that any change to a stored token is an error, not silently the same plaintext.
        if not _TOKEN.fullmatch(token) or _canonical_b64(token) != token:
            raise DecryptionFailed(f"stored value under key {key_id!r} is not a sealed token")
        raw = base64.urlsafe_b64decode(token)
        data = aad if aad is not None else key_id.encode()
        try:
            return aead.decrypt(raw[:_NONCE], raw[_NONCE:], data).decode("utf-8")
        except (InvalidTag, UnicodeError, ValueError) as exc:
            if where is None:
                raise DecryptionFailed(
                    f"stored value under key {key_id!r} does not decrypt"
                ) from exc
            raise CiphertextMisplaced(
                f"stored value under key {key_id!r} does not open at {_shown(where)}: moved "
                "there from another case, event or field, or altered"
            ) from exc

    def decrypt(self, stored: str, where: str) -> str:
        """The plaintext of a bound token read at ``where`` (:func:`place`).

        Raises :class:`CiphertextMisplaced` when it was sealed for another place (or
        altered), :class:`UnboundCiphertext` for a legacy token (it could come from
        anywhere: rotate the keys to rebind it) and :class:`DecryptionFailed` otherwise.
        """
        if not stored.startswith(BOUND):
            if ":" in stored and not stored.startswith("~"):
                raise UnboundCiphertext(
                    f"stored value at {_shown(where)} is not bound to its place "
                    "(written before schema 0003): run `movecar keys rotate`"
                )
            raise DecryptionFailed(f"stored value at {_shown(where)} is not a sealed token")
        return self._open(stored, _aad_head(self.key_id_of(stored)) + where.encode(), where)

    def decrypt_legacy(self, stored: str) -> str:
        """The plaintext of a legacy (unbound) token: for rebinding and auditing only."""
        if stored.startswith("~"):
            raise DecryptionFailed("stored value is not in the legacy form")
        return self._open(stored, None, None)

    def needs_rotation(self, stored: str) -> bool:
        """Under an older key, or not yet bound to its place."""
        return not stored.startswith(BOUND) or self.key_id_of(stored) != self.current_id

    def rotate(self, stored: str, where: str) -> str:
        """The same plaintext under the newest key, bound to ``where`` (unchanged if it
        already is). A legacy token is bound to the place it is found in: run the rotation
        on data the audit found clean (its chain hashes cover the plaintext)."""
        if not self.needs_rotation(stored):
            return stored
        plain = (
            self.decrypt(stored, where) if stored.startswith(BOUND) else self.decrypt_legacy(stored)
        )
        return self.encrypt(plain, where)


def _aad_head(key_id: str) -> bytes:
    return _AAD_FORMAT + key_id.encode() + b"\x00"


def _shown(where: str) -> str:
    """A place for a message: ``case C v2 OwnerLookedUp.owner_phone``."""
    parts = where.split("\x00")
    if len(parts) != 4:
        return "an unnamed place"
    case_id, version, type_name, field = parts
    return f"case {case_id} v{version} {type_name}.{field}"
