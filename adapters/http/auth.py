"""Bearer tokens of ``movecar serve``: who each one is (an :class:`~movecar_core.roles.Actor`).

``MOVECAR_API_TOKENS`` (or the file ``[api] tokens_file`` names) holds entries separated by
commas or newlines, each ``ROLE=TOKEN`` or ``ROLE:NAME=TOKEN``:

* ``agent:seat-07=…`` is the actor ``seat-07`` with the role ``agent``: each seat its own
  token, so the access log and the case's events name the seat (七(三));
* ``supervisor=…`` is the actor ``supervisor`` (the role's name), for a deployment with
  one token per role.

A token is 32 to 256 characters of ``A-Z a-z 0-9 - . _ ~ + / =`` (RFC 6750's token68):
anything shorter is guessable, so it is refused with :class:`ConfigError`, as is a token
given twice. Tokens are compared in constant time (the digests of every configured token
are compared, none skipped), and no message or log line ever holds one: entries are named
by their position.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

import attrs

from movecar_adapters.config import ConfigError
from movecar_core.errors import MoveCarError
from movecar_core.roles import Actor, Role

#: Shortest token accepted: 32 characters of base64 are 192 bits.
MIN_TOKEN = 32
MAX_TOKEN = 256
_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]+")


@attrs.frozen
class TokenTable:
    """The configured tokens: digests and actors (the tokens themselves are not kept)."""

    entries: tuple[tuple[bytes, Actor], ...] = attrs.field(repr=False)

    @property
    def actors(self) -> tuple[Actor, ...]:
        return tuple(actor for _, actor in self.entries)

    def actor_of(self, token: str) -> Actor | None:
        """The actor ``token`` belongs to, or None; the time taken does not depend on
        which entry matches, or on how much of a token matches."""
        digest = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        found: Actor | None = None
        for known, actor in self.entries:
            if hmac.compare_digest(known, digest):
                found = actor
        return found


def _entries(spec: str) -> Iterable[str]:
    for part in re.split(r"[,\n]", spec):
        if part.strip():
            yield part.strip()


def parse_tokens(spec: str | None, where: str = "MOVECAR_API_TOKENS") -> TokenTable:
    """The token table of ``spec`` (see the module); :class:`ConfigError` naming the entry
    by position, never quoting a token."""
    if spec is None or not spec.strip():
        raise ConfigError(
            f"{where}: no API tokens configured (ROLE=TOKEN or ROLE:NAME=TOKEN entries, "
            "e.g. from `movecar serve --new-token`)"
        )
    entries: list[tuple[bytes, Actor]] = []
    seen: set[bytes] = set()
    roles = ", ".join(r.value for r in Role)
    for n, entry in enumerate(_entries(spec), start=1):
        who, sep, token = entry.partition("=")
        token = token.strip()
        role_text, colon, name = who.strip().partition(":")
        if not sep:
            raise ConfigError(f"{where}: entry {n}: expected ROLE=TOKEN or ROLE:NAME=TOKEN")
        try:
            role = Role(role_text.strip())
        except ValueError:
            raise ConfigError(f"{where}: entry {n}: the role must be one of {roles}") from None
        if len(token) < MIN_TOKEN or len(token) > MAX_TOKEN or not _TOKEN.fullmatch(token):
            raise ConfigError(
                f"{where}: entry {n}: a token must be {MIN_TOKEN} to {MAX_TOKEN} characters "
                "of A-Z a-z 0-9 - . _ ~ + / = (make one with `movecar serve --new-token`)"
            )
        try:
            actor = Actor(name.strip() if colon else role.value, role)
        except MoveCarError as exc:
            raise ConfigError(f"{where}: entry {n}: {exc}") from None
        digest = hashlib.sha256(token.encode("ascii")).digest()
        if digest in seen:
            raise ConfigError(f"{where}: entry {n}: the same token is given twice")
        seen.add(digest)
        entries.append((digest, actor))
    if not entries:
        raise ConfigError(f"{where}: no API tokens configured")
    return TokenTable(tuple(entries))


def new_token() -> str:
    """A fresh token (43 characters of URL-safe base64, 256 bits)."""
    import secrets

    return secrets.token_urlsafe(32)
