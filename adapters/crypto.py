"""Encryption at rest for personal data (owner and requester phone numbers).

七(三): "采取措施 ... 防止未经授权的访问以及个人信息和数据的泄露、篡改、丢失". Phone numbers are
stored encrypted with AES-256-GCM (authenticated: a changed token does not decrypt), a
fresh 96-bit nonce per value and the key id as associated data. Keys come from
configuration (the ``MOVECAR_KEYS`` environment variable or an explicit list), never from
the database. A key is 32 random bytes in url-safe base64 (``movecar keys new``).

Rotation: a :class:`KeyRing` holds several keys, newest first. New writes use the newest
key; rows written under an older key still decrypt, and :meth:`KeyRing.rotate` re-encrypts
a token under the newest key. Each key has an id, stored in front of the token, so a
re-encryption job can find the rows still under an old key without trying to decrypt them.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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


class KeyRing:
    """Named AES-256-GCM keys, newest first: ``KeyRing([("k2", key2), ("k1", key1)])``."""

    def __init__(self, keys: Sequence[tuple[str, bytes | str]], *, source: str = "KeyRing") -> None:
        # Messages name an entry by its position, and by its id only when the id looks
        # like one: an entry written the wrong way round would otherwise echo the key.
        if not isinstance(keys, list | tuple) or not keys:
            raise KeyConfigError(f"{source}: needs at least one key")
        self._keys: dict[str, AESGCM] = {}
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
        self._current_id: str = keys[0][0]
        # What every write needs, looked up once: the token prefix, the key, the AAD.
        self._writer = (
            f"{self._current_id}:",
            self._keys[self._current_id],
            self._current_id.encode(),
        )

    def __repr__(self) -> str:
        return f"KeyRing(key_ids={self.key_ids!r})"  # never the keys

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

    def encrypt(self, plaintext: str) -> str:
        prefix, aead, aad = self._writer
        nonce = os.urandom(_NONCE)
        sealed = aead.encrypt(nonce, plaintext.encode("utf-8"), aad)
        return prefix + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def key_id_of(self, stored: str) -> str:
        key_id, sep, _ = stored.partition(":")
        if not sep:
            raise DecryptionFailed("stored value carries no key id")
        return key_id

    def decrypt(self, stored: str) -> str:
        key_id = self.key_id_of(stored)
        aead = self._keys.get(key_id)
        if aead is None:
            raise DecryptionFailed(
                f"stored value was encrypted with key {key_id!r}, which is not configured"
            )
        token = stored.partition(":")[2]
        # base64 decoding skips stray characters: insist on the one canonical spelling, so
        # that any change to a stored token is an error, not silently the same plaintext.
        if not _TOKEN.fullmatch(token) or _canonical_b64(token) != token:
            raise DecryptionFailed(f"stored value under key {key_id!r} is not a sealed token")
        raw = base64.urlsafe_b64decode(token)
        try:
            return aead.decrypt(raw[:_NONCE], raw[_NONCE:], key_id.encode()).decode("utf-8")
        except (InvalidTag, UnicodeError, ValueError) as exc:
            raise DecryptionFailed(f"stored value under key {key_id!r} does not decrypt") from exc

    def needs_rotation(self, stored: str) -> bool:
        return self.key_id_of(stored) != self.current_id

    def rotate(self, stored: str) -> str:
        """The same plaintext under the newest key (unchanged if already under it)."""
        return stored if not self.needs_rotation(stored) else self.encrypt(self.decrypt(stored))
