"""Ed25519 keys for the evidence ledger's checkpoints.

The signing key is what an attacker with the whole database and the data-encryption keys
still lacks: the operator keeps it off the database host (a file on another machine, or
an HSM behind the same :class:`~movecar_adapters.sql.ledger.Signer` protocol), and Party A
keeps the public key and every checkpoint it received (五(三), 七(三)).

Files: the private key is PKCS#8 PEM, unencrypted, mode 0600 (refused if anyone but the
owner may read it, as ssh refuses); the public key is SubjectPublicKeyInfo PEM beside it,
``PATH.pub``. A key's id is the first 16 hex digits of the SHA-256 of its raw public key.
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from movecar_core.errors import MoveCarError
from movecar_core.ledger import Checkpoint, key_id_of

#: Key files are small; anything larger is not one (and is not read whole).
MAX_KEY_FILE = 4096


class SigningKeyError(MoveCarError):
    """A key file that is missing, unreadable, not an Ed25519 key, or readable by others."""


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def read_bounded(path: Path, limit: int) -> bytes | None:
    """The file's bytes, or None when it holds more than ``limit`` (never read whole).
    Raises ``OSError``: callers say what the file was for."""
    with path.open("rb") as f:
        data = f.read(limit + 1)
    return None if len(data) > limit else data


def _read(path: Path, what: str) -> bytes:
    try:
        data = read_bounded(path, MAX_KEY_FILE)
    except OSError as exc:
        raise SigningKeyError(f"{what} {path.name}: cannot be read ({exc.strerror})") from None
    if data is None:
        raise SigningKeyError(f"{what} {path.name}: larger than a key file")
    return data


class SigningKey:
    """An Ed25519 private key that signs checkpoints."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = PublicKey(private.public_key())

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"  # never the key

    @property
    def key_id(self) -> str:
        return self.public.key_id

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SigningKey:
        """The key in ``path``; refused unless only its owner may read or write it."""
        p = Path(path)
        try:
            mode = p.stat().st_mode
        except OSError as exc:
            raise SigningKeyError(f"signing key {p.name}: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SigningKeyError(
                f"signing key {p.name}: readable by others (mode {stat.filemode(mode)}); "
                "chmod 600 it"
            )
        data = _read(p, "signing key")
        try:
            private = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise SigningKeyError(f"signing key {p.name}: not an unencrypted PEM key") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise SigningKeyError(f"signing key {p.name}: not an Ed25519 key")
        return cls(private)

    def write(self, path: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write the key (mode 0600) and ``PATH.pub``; existing files are never replaced."""
        private_path = Path(path)
        public_path = private_path.with_name(private_path.name + ".pub")
        for p in (private_path, public_path):
            if p.exists() or p.is_symlink():
                raise SigningKeyError(f"{p.name} exists: a key is never overwritten")
        pem = self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            # O_EXCL: no race with another writer, no following a planted symlink.
            fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
            fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(self.public.pem())
        except OSError as exc:
            raise SigningKeyError(f"{private_path.name}: cannot write ({exc.strerror})") from None
        return private_path, public_path


class PublicKey:
    """An Ed25519 public key that verifies checkpoints."""

    def __init__(self, public: Ed25519PublicKey) -> None:
        self._public = public
        self.key_id = key_id_of(_raw(public))

    def __repr__(self) -> str:
        return f"PublicKey(key_id={self.key_id!r})"

    def pem(self) -> bytes:
        return self._public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PublicKey:
        p = Path(path)
        data = _read(p, "public key")
        try:
            public = serialization.load_pem_public_key(data)
        except (ValueError, TypeError):
            raise SigningKeyError(f"public key {p.name}: not a PEM public key") from None
        if not isinstance(public, Ed25519PublicKey):
            raise SigningKeyError(f"public key {p.name}: not an Ed25519 key")
        return cls(public)

    def verifies(self, checkpoint: Checkpoint) -> bool:
        """Was ``checkpoint`` signed by this key's private half?"""
        if checkpoint.key_id != self.key_id:
            return False
        try:
            self._public.verify(base64.b64decode(checkpoint.signature), checkpoint.message())
        except InvalidSignature:
            return False
        return True
