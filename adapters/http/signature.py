"""Signed telephony callbacks: ``X-Movecar-Signature``, the way Stripe signs webhooks.

The gateway sends ``X-Movecar-Signature: t=<unix time>,v1=<hex>`` where ``<hex>`` is
HMAC-SHA256 under the shared secret of ``f"{t}.{raw body}"`` (the body's bytes exactly as
sent). A signature is accepted when one ``v1`` matches (several may be given while a
secret is rotated), ``t`` is within :data:`TOLERANCE` of the engine's clock, and the same
signature was not accepted before: a replay inside the tolerance is refused, one outside
it is stale. The seen signatures are kept in this process until they expire; a replay to
another process of the same deployment is still applied at most once by the engine (a
call event carries its own idempotency).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import threading

from movecar_adapters.config import ConfigError
from movecar_core.errors import MoveCarError
from movecar_core.ports import Clock

HEADER = "X-Movecar-Signature"
#: Five minutes either way of the engine's clock.
TOLERANCE = dt.timedelta(minutes=5)
MIN_SECRET = 32
MAX_HEADER = 1000


class SignatureRefused(MoveCarError):
    """A telephony callback whose ``X-Movecar-Signature`` is missing, malformed, does not
    match the body, or is older or newer than the tolerance (HTTP 401)."""


class SignatureReplayed(MoveCarError):
    """A telephony callback whose signature was accepted before, inside the tolerance
    (HTTP 409): a captured delivery sent again."""


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def check_secret(secret: str | None, where: str) -> str | None:
    """The webhook secret, refused when too short to resist guessing (never quoted)."""
    if secret is None:
        return None
    if len(secret) < MIN_SECRET:
        raise ConfigError(
            f"{where}: the webhook secret must be at least {MIN_SECRET} characters "
            "(make one with `movecar serve --new-token`)"
        )
    return secret


class Verifier:
    """Checks signatures against one secret and the engine's clock; remembers those it
    accepted until they expire (thread-safe)."""

    def __init__(self, secret: str, clock: Clock, tolerance: dt.timedelta = TOLERANCE) -> None:
        self._key = secret.encode("utf-8")
        self._clock = clock
        self._tolerance = int(tolerance.total_seconds())
        self._seen: dict[str, int] = {}  # signature -> the unix time it expires
        self._lock = threading.Lock()

    def verify(self, header: str | None, body: bytes) -> None:
        """Accept the delivery or raise :class:`SignatureRefused` /
        :class:`SignatureReplayed`."""
        if not header:
            raise SignatureRefused(f"no {HEADER} header")
        if len(header) > MAX_HEADER:
            raise SignatureRefused(f"{HEADER}: longer than {MAX_HEADER} characters")
        stamp: int | None = None
        given: list[str] = []
        for part in header.split(","):
            name, sep, value = part.strip().partition("=")
            if not sep:
                raise SignatureRefused(f"{HEADER}: expected t=<unix time>,v1=<hex>")
            if name == "t":
                if stamp is not None or not value.isascii() or not value.isdigit():
                    raise SignatureRefused(f"{HEADER}: t must be one unix time in seconds")
                if len(value) > 12:
                    raise SignatureRefused(f"{HEADER}: t is out of range")
                stamp = int(value)
            elif name == "v1":
                given.append(value)
        if stamp is None or not given:
            raise SignatureRefused(f"{HEADER}: expected t=<unix time>,v1=<hex>")
        now = int(self._clock.now().timestamp())
        if abs(now - stamp) > self._tolerance:
            raise SignatureRefused(
                f"{HEADER}: t is {abs(now - stamp)} s from the server's clock "
                f"(tolerance {self._tolerance} s)"
            )
        expected = hmac.new(self._key, f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        if not any(hmac.compare_digest(expected, v.lower().encode("ascii", "replace").decode())
                   for v in given):  # fmt: skip
            raise SignatureRefused(f"{HEADER}: no v1 signature matches the body")
        with self._lock:
            for seen, until in list(self._seen.items()):
                if until < now:
                    del self._seen[seen]
            if expected in self._seen:
                raise SignatureReplayed(f"{HEADER}: this signature was accepted already")
            self._seen[expected] = stamp + self._tolerance
