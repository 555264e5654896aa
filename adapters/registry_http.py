"""The owner data source over HTTP: the traffic-police platform's look-up service.

二(二): "甲方负责协调江苏省交警平台相关数据的调取". :class:`HttpVehicleRegistry` is the
:class:`~movecar_core.ports.VehicleRegistry` of a deployment that asks the platform for
each plate, on httpx. The default protocol (``docs/registry.md``)::

    GET {base_url}/vehicles/{plate}        the canonical plate, URL-encoded
    Accept: application/json

    200  {"plate": "苏D12345", "owner_phone": "13912345678", "source": "jsjj"}
    404  the plate is unknown                              -> None

``plate`` and ``source`` are optional in the answer (an answer naming another plate is
refused; a missing source is the adapter's ``source``); ``"owner_phone": null`` says the
vehicle is known but has no phone on record (-> None). Another platform's shape is read by
a ``mapping`` hook, and its URL by the ``path`` template.

Every look-up is idempotent (a GET that changes nothing), so it is retried: at most
``retries`` more times, after a jittered exponential backoff, or after the ``Retry-After``
the platform asks for with a 429 or 503 (when that is at most ``max_retry_after_s``). A
circuit breaker stops asking a platform that failed ``breaker_failures`` attempts in a row:
look-ups then fail at once (:class:`~movecar_adapters.registry.RegistryCircuitOpen`) until
``breaker_cooldown_s`` has passed; then one look-up probes it, and its outcome closes the
breaker or opens it again. Time comes from the injected ``monotonic`` function, the waits go
through the injected ``sleep``, the jitter from the injected ``random``: a test controls all
three.

Every failure — a timeout, a refused connection, a 5xx, a body cut short, not JSON, the
wrong content type, larger than ``max_body_bytes``, a phone that is not a phone — raises
:class:`~movecar_core.errors.RegistryUnavailable` (an answer that cannot be used:
:class:`~movecar_adapters.registry.RegistryAnswerInvalid`), whose message names what went
wrong and never the owner's phone.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random as _random
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import httpx

from movecar_adapters.config import ConfigError
from movecar_adapters.registry import (
    RegistryAnswerInvalid,
    RegistryCircuitOpen,
    check_source,
    contact_from,
)
from movecar_core.errors import InvalidPlate, RegistryUnavailable
from movecar_core.plates import parse_plate
from movecar_core.ports import OwnerContact

__all__ = [
    "CircuitBreaker",
    "HttpVehicleRegistry",
    "OwnerMapping",
    "backoff_delay",
    "default_mapping",
]

log = logging.getLogger("movecar.registry")

#: ``mapping(plate, data)``: the contact in the decoded JSON ``data`` of a 200 answer for the
#: canonical ``plate``, or None for an unknown plate. A contact whose source is empty gets the
#: adapter's ``source``. Raising ``KeyError``, ``TypeError``, ``ValueError`` (or another
#: ``LookupError``, ``AttributeError``) refuses the answer as malformed.
OwnerMapping = Callable[[str, Any], OwnerContact | None]

DEFAULT_PATH: Final = "/vehicles/{plate}"
#: An answer with the owner's phone is a few hundred bytes; 64 KiB is far beyond any real
#: one and still small enough that a hostile or broken platform cannot fill the memory.
DEFAULT_MAX_BODY: Final = 64 * 1024
JSON_TYPES: Final = ("application/json",)
_USER_AGENT: Final = "movecar-registry/0.1"


class _State:
    """The breaker's states, as text for logs and ``state``."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Opens after ``failures`` failed attempts in a row, for ``cooldown_s`` seconds of the
    ``monotonic`` clock; then lets one probe through (half-open) whose outcome closes it or
    opens it again. Thread-safe: while a probe is out, other callers fail fast."""

    def __init__(
        self, failures: int, cooldown_s: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        if type(failures) is not int or failures < 1:
            raise ConfigError(f"breaker_failures={failures!r:.20}: must be a whole number >= 1")
        if not _finite(cooldown_s) or cooldown_s <= 0:
            raise ConfigError(f"breaker_cooldown_s={cooldown_s!r:.20}: must be > 0 seconds")
        self.failures = failures
        self.cooldown_s = float(cooldown_s)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._failed = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` (failing fast) or ``half-open`` (a probe may go, or is out)."""
        with self._lock:
            if self._opened_at is None:
                return _State.CLOSED
            return _State.HALF_OPEN if self._cooled() or self._probing else _State.OPEN

    @property
    def consecutive_failures(self) -> int:
        with self._lock:
            return self._failed

    def _cooled(self) -> bool:
        assert self._opened_at is not None
        elapsed = self._monotonic() - self._opened_at
        # A clock that went backwards (a host's own clock function) must not keep the
        # breaker open forever: a negative elapsed time counts as cooled down.
        return elapsed >= self.cooldown_s or elapsed < 0

    def before(self) -> None:
        """Ask to send one attempt: returns, or raises :class:`RegistryCircuitOpen`."""
        with self._lock:
            if self._opened_at is None:
                return
            if self._probing or not self._cooled():
                wait = max(0.0, self.cooldown_s - (self._monotonic() - self._opened_at))
                raise RegistryCircuitOpen(
                    f"the vehicle-owner platform failed {self.failures} times in a row: "
                    f"not asked again for {wait:.1f} s (circuit breaker open)"
                )
            self._probing = True  # this caller is the one half-open probe

    def record(self, ok: bool) -> None:
        """The outcome of the attempt :meth:`before` let through."""
        with self._lock:
            self._probing = False
            if ok:
                self._failed = 0
                self._opened_at = None
                return
            self._failed += 1
            if self._opened_at is not None or self._failed >= self.failures:
                self._opened_at = self._monotonic()  # (re)open: a failed probe restarts it


def backoff_delay(attempt: int, base_s: float, max_s: float, draw: float) -> float:
    """The wait before retry ``attempt + 1``: "equal jitter" over an exponential ceiling.

    The ceiling is ``min(max_s, base_s * 2**attempt)``; the wait is half of it plus ``draw``
    (from ``[0, 1)``, clamped) times the other half. Never less than half the ceiling, so
    retries stay spaced; never more than ``max_s``.
    """
    try:
        grown = base_s * 2.0**attempt
    except OverflowError:  # attempt >= 1024: far past any cap
        grown = math.inf
    ceiling = min(max_s, grown)
    draw = min(max(draw, 0.0), 1.0) if _finite(draw) else 0.5
    return ceiling / 2 + draw * ceiling / 2


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def default_mapping(plate: str, data: Any) -> OwnerContact | None:
    """The default protocol's answer: ``{"plate": ..., "owner_phone": ..., "source": ...}``.

    ``owner_phone`` is required (``null``: the vehicle has no phone on record, None);
    ``plate``, when given, must be the plate asked for; ``source``, when given, names the
    platform (else the adapter's ``source`` is used).
    """
    if not isinstance(data, dict):
        raise RegistryAnswerInvalid(f"the answer is a JSON {_json_kind(data)}, not an object")
    named = data.get("plate")
    if named is not None:
        try:
            same = isinstance(named, str) and parse_plate(named).canonical == plate
        except InvalidPlate:
            same = False
        if not same:
            raise RegistryAnswerInvalid("the answer names another plate than the one asked for")
    if "owner_phone" not in data:
        raise RegistryAnswerInvalid("the answer has no owner_phone")
    phone = data["owner_phone"]
    if phone is None:
        return None
    source = data.get("source", "")
    if source != "":
        check_source(source, "the answer's source")
    if not isinstance(phone, str):
        raise RegistryAnswerInvalid(
            f"the answer's owner_phone is a JSON {_json_kind(phone)}, not a string"
        )
    return OwnerContact(phone=phone, source=source)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "number"
    )


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object with a key twice is ambiguous (which owner_phone?): refused."""
    data = dict(pairs)
    if len(data) != len(pairs):
        raise _DuplicateKey("a key appears twice in one object")
    return data


@attrs.frozen
class _Retry:
    """An attempt that may be repeated: why it failed, and the wait the platform asked for."""

    error: RegistryUnavailable
    retry_after: float | None = None


@attrs.frozen
class _Broken:
    """An answer that shows the platform broken (not JSON, too large): not retried, and a
    failure for the breaker."""

    error: RegistryUnavailable


@attrs.frozen
class _Refused:
    """An answer that is the platform's word, unusable for this plate (an invalid phone, a
    401): not retried, and no failure for the breaker (the platform is up)."""

    error: RegistryUnavailable


#: What one attempt gives: the contact (or None), or why it failed.
_Outcome = OwnerContact | _Retry | _Broken | _Refused | None


class HttpVehicleRegistry:
    """The vehicle-owner platform over HTTP (see the module docstring for the protocol).

    ``base_url``: ``https://host[:port][/prefix]``. ``path``: the look-up's path after it,
    with ``{plate}`` where the URL-encoded canonical plate goes (a query may hold it:
    ``/api/query?hphm={plate}``). ``timeout_s``: the limit of
    each network step (connect, each read, each write) and of the whole body's reading.
    ``retries``: how many more attempts after the first (0 to 10).
    ``backoff_s``/``max_backoff_s``: the exponential backoff's first ceiling and its cap.
    ``max_retry_after_s``: the longest ``Retry-After`` honoured; one longer fails at once
    (a seat does not wait minutes for a look-up). ``breaker_failures``/
    ``breaker_cooldown_s``: the circuit breaker. ``client_cert``/``client_key``/
    ``client_key_password``: the client certificate of mutual TLS (PEM files);
    ``ca_bundle``: the CAs that may sign the platform's certificate (PEM; default the
    system's). ``headers``: extra request headers (an API token: never logged).
    ``trust_env``: let httpx read proxies from the environment (default False: owner data
    does not go through a proxy nobody configured for it). ``transport``: an httpx
    transport (tests). ``monotonic``, ``sleep``, ``random``: the clock, the wait and the
    jitter's source.

    Bad options raise :class:`~movecar_adapters.config.ConfigError`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 2.0,
        retries: int = 2,
        backoff_s: float = 0.2,
        max_backoff_s: float = 2.0,
        max_retry_after_s: float = 5.0,
        breaker_failures: int = 5,
        breaker_cooldown_s: float = 30.0,
        path: str = DEFAULT_PATH,
        mapping: OwnerMapping | None = None,
        source: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        content_types: tuple[str, ...] = JSON_TYPES,
        headers: Mapping[str, str] | None = None,
        client_cert: str | Path | None = None,
        client_key: str | Path | None = None,
        client_key_password: str | None = None,
        ca_bundle: str | Path | None = None,
        trust_env: bool = False,
        transport: httpx.BaseTransport | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.base_url = _base_url(base_url)
        _check_seconds("timeout_s", timeout_s, 0.01, 120)
        _check_seconds("backoff_s", backoff_s, 0, 60)
        _check_seconds("max_backoff_s", max_backoff_s, 0, 600)
        _check_seconds("max_retry_after_s", max_retry_after_s, 0, 600)
        if type(retries) is not int or not 0 <= retries <= 10:
            raise ConfigError(f"retries={retries!r:.20}: must be a whole number from 0 to 10")
        if type(max_body_bytes) is not int or not 256 <= max_body_bytes <= 16 * 1024 * 1024:
            raise ConfigError(f"max_body_bytes={max_body_bytes!r:.20}: must be 256 to 16 MiB")
        if not content_types or not all(isinstance(t, str) and t for t in content_types):
            raise ConfigError("content_types: give at least one media type")
        self.path = _path(path)
        self.timeout_s = float(timeout_s)
        self.retries = retries
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.max_retry_after_s = float(max_retry_after_s)
        self.max_body_bytes = max_body_bytes
        self.content_types = tuple(t.lower() for t in content_types)
        self.mapping: OwnerMapping = mapping if mapping is not None else default_mapping
        host = urllib.parse.urlsplit(self.base_url).hostname or "registry"
        try:
            self.source = check_source(source if source is not None else host)
        except RegistryAnswerInvalid as exc:
            raise ConfigError(f"source: {exc}") from None
        self.breaker = CircuitBreaker(breaker_failures, breaker_cooldown_s, monotonic)
        self._monotonic = monotonic
        self._sleep = sleep
        self._random = random
        verify = _tls(self.base_url, client_cert, client_key, client_key_password, ca_bundle)
        sent = {"Accept": ", ".join(self.content_types), "User-Agent": _USER_AGENT}
        sent.update(_headers(headers))
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.timeout_s),
            verify=verify,
            headers=sent,
            follow_redirects=False,
            trust_env=trust_env,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"HttpVehicleRegistry({self.base_url!r}, breaker={self.breaker.state})"

    def close(self) -> None:
        """Close the connections kept open to the platform."""
        self._client.close()

    def __enter__(self) -> HttpVehicleRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url_for(self, plate: str) -> str:
        """The look-up URL of a canonical plate."""
        return self.base_url + self.path.replace("{plate}", urllib.parse.quote(plate, safe=""))

    def lookup(self, plate: str) -> OwnerContact | None:
        """The owner's contact, or None for an unknown plate; see the module docstring.

        Raises :class:`~movecar_core.errors.InvalidPlate` (nothing sent) for a plate that is
        not one, and :class:`~movecar_core.errors.RegistryUnavailable` for every failure.
        """
        canonical = parse_plate(plate).canonical
        url = self.url_for(canonical)
        masked = parse_plate(canonical).masked()
        for attempt in range(self.retries + 1):
            self.breaker.before()
            ok = False
            try:
                outcome = self._attempt(canonical, url)
                ok = not isinstance(outcome, _Retry | _Broken)
            finally:
                self.breaker.record(ok)  # an unexpected exception counts as a failure
            if isinstance(outcome, _Broken | _Refused):
                log.warning("registry look-up of %s: %s", masked, outcome.error)
                raise outcome.error
            if not isinstance(outcome, _Retry):
                return outcome
            log.warning(
                "registry look-up of %s, attempt %d: %s", masked, attempt + 1, outcome.error
            )
            if attempt == self.retries:
                raise outcome.error
            if outcome.retry_after is not None:
                if outcome.retry_after > self.max_retry_after_s:
                    raise RegistryUnavailable(
                        f"{outcome.error}; the platform asks to wait {outcome.retry_after:.0f} s, "
                        f"more than max_retry_after_s={self.max_retry_after_s:g}"
                    )
                self._sleep(outcome.retry_after)
            else:
                draw = self._random()
                self._sleep(backoff_delay(attempt, self.backoff_s, self.max_backoff_s, draw))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _attempt(self, plate: str, url: str) -> _Outcome:
        """One request: its contact, or why it failed (retry or not)."""
        try:
            with self._client.stream("GET", url) as response:
                return self._answer(plate, response)
        except httpx.TimeoutException as exc:
            return _Retry(
                RegistryUnavailable(f"no answer within {self.timeout_s:g} s ({_name(exc)})")
            )
        except httpx.TransportError as exc:
            # Refused, reset, cut short (a body shorter than its Content-Length), TLS refused.
            return _Retry(
                RegistryUnavailable(f"cannot reach the platform ({_name(exc)}{_why(exc)})")
            )

    def _answer(self, plate: str, response: httpx.Response) -> _Outcome:
        status = response.status_code
        if status == 404:
            return None
        if status in (429, 503):
            wait = _retry_after(response)
            why = "rate limited (429)" if status == 429 else "unavailable (503)"
            return _Retry(RegistryUnavailable(f"the platform answered {why}"), wait)
        if status >= 500:
            return _Retry(RegistryUnavailable(f"the platform answered {status}"))
        if status == 408:
            return _Retry(RegistryUnavailable("the platform answered 408 (request timeout)"))
        if status != 200:
            # 401/403: our certificate or token is refused; 3xx: the URL is wrong. Asking
            # again changes nothing; the platform itself is up, so the breaker stays closed.
            return _Refused(RegistryUnavailable(f"the platform answered {status}"))
        media = response.headers.get("content-type", "")
        kind, _, params = media.partition(";")
        if kind.strip().lower() not in self.content_types:
            return _Broken(
                RegistryAnswerInvalid(
                    f"the answer's content type is {kind.strip()[:40]!r}, "
                    f"not {' or '.join(self.content_types)}"
                )
            )
        charset = _charset(params)
        if charset not in (None, "utf-8", "utf8"):
            return _Broken(
                RegistryAnswerInvalid(f"the answer's charset is {charset[:20]!r}, not UTF-8")
            )
        body = self._read(response)
        if isinstance(body, _Retry | _Broken):
            return body
        try:
            data = json.loads(body.decode("utf-8"), object_pairs_hook=_no_duplicates)
        except (ValueError, RecursionError) as exc:
            # Never the document itself (exc.doc): it may hold the phone.
            if isinstance(exc, json.JSONDecodeError | _DuplicateKey):
                why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            else:  # not UTF-8, a number too long, nested too deep
                why = type(exc).__name__
            return _Broken(RegistryAnswerInvalid(f"the answer is not JSON ({why[:80]})"))
        return self._contact(plate, data)

    def _read(self, response: httpx.Response) -> bytes | _Retry | _Broken:
        """The body, at most ``max_body_bytes`` (decompressed), within ``timeout_s``."""
        too_large = _Broken(
            RegistryAnswerInvalid(f"the answer is larger than {self.max_body_bytes} bytes")
        )
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return too_large
        started = self._monotonic()
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_body_bytes:
                return too_large
            chunks.append(chunk)
            if self._monotonic() - started > self.timeout_s:
                return _Retry(
                    RegistryUnavailable(f"the answer took longer than {self.timeout_s:g} s")
                )
        return b"".join(chunks)

    def _contact(self, plate: str, data: Any) -> OwnerContact | _Refused | None:
        hook: Callable[[str, Any], object] = self.mapping  # a host's: its result is checked
        try:
            found = hook(plate, data)
        except RegistryUnavailable as exc:
            return _Refused(exc)
        except (LookupError, TypeError, ValueError, AttributeError) as exc:
            return _Refused(
                RegistryAnswerInvalid(f"the mapping refused the answer ({type(exc).__name__})")
            )
        if found is None:
            return None
        if not isinstance(found, OwnerContact):
            return _Refused(
                RegistryAnswerInvalid(
                    f"the mapping returned {type(found).__name__}, not an OwnerContact or None"
                )
            )
        try:
            return contact_from(found.phone, found.source or self.source)
        except RegistryAnswerInvalid as exc:
            return _Refused(exc)


def _name(exc: BaseException) -> str:
    return type(exc).__name__


def _why(exc: BaseException) -> str:
    """A short reason from a transport error's causes: the OS's or TLS's words, never the
    URL or the body (they name the plate, may hold the phone)."""
    seen: BaseException | None = exc
    for _ in range(5):  # httpx wraps httpcore, which wraps the socket's error
        seen = seen.__cause__ or seen.__context__ if seen is not None else None
        if isinstance(seen, ssl.SSLError):
            return f": {seen.reason or 'TLS error'}"[:80]
        if isinstance(seen, OSError) and seen.strerror:
            return f": {seen.strerror}"[:80]
    return ""


def _charset(params: str) -> str | None:
    for part in params.split(";"):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the platform asks to wait (RFC 9110 10.2.3): a number of seconds, or an
    HTTP date read against the answer's own ``Date`` (the platform's clock, not ours)."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return float(min(int(value[:12]), 10**9))
    try:
        until = email.utils.parsedate_to_datetime(value)
        sent = email.utils.parsedate_to_datetime(response.headers.get("date", ""))
    except (TypeError, ValueError, IndexError):
        return None
    if until.tzinfo is None or sent.tzinfo is None:
        return None
    return max(0.0, (until - sent).total_seconds())


def _check_seconds(name: str, value: object, low: float, high: float) -> None:
    if not _finite(value) or not low <= value <= high:  # type: ignore[operator]
        raise ConfigError(f"{name}={value!r:.20}: must be {low:g} to {high:g} seconds")


def _base_url(text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("registry url: give the platform's base URL, https://host[/prefix]")
    try:
        parts = urllib.parse.urlsplit(text.strip())
        parts.port  # noqa: B018  (a port that is not a number raises here)
    except ValueError:
        raise ConfigError(f"registry url {text[:80]!r}: not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"registry url {text[:80]!r}: must be http(s)://host[/prefix]")
    if parts.username is not None or parts.password is not None:
        raise ConfigError("registry url: no credentials in the URL (use headers or mutual TLS)")
    if parts.query or parts.fragment:
        raise ConfigError(f"registry url {text[:80]!r}: no query or fragment")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _path(template: object) -> str:
    rest = template.replace("{plate}", "", 1) if isinstance(template, str) else ""
    if (
        not isinstance(template, str)
        or not template.startswith("/")
        or "{plate}" not in template
        or "{" in rest
        or "}" in rest
        or any(c in template for c in "# \t\r\n")
    ):
        raise ConfigError(
            f"registry path {str(template)[:80]!r}: must start with '/' and hold {{plate}} "
            "once (no other braces, no fragment, no spaces)"
        )
    return template


def _headers(given: Mapping[str, str] | None) -> dict[str, str]:
    if given is None:
        return {}
    out: dict[str, str] = {}
    for name, value in given.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ConfigError("registry headers: names and values must be text")
        if not name.isascii() or not name.replace("-", "").isalnum():
            raise ConfigError(f"registry header name {name[:40]!r}: not a header name")
        if any(c in value for c in "\r\n\x00"):
            raise ConfigError(f"registry header {name[:40]}: its value holds a line break")
        out[name] = value
    return out


def _tls(
    base_url: str,
    cert: str | Path | None,
    key: str | Path | None,
    password: str | None,
    ca_bundle: str | Path | None,
) -> ssl.SSLContext | bool:
    """httpx's ``verify``: the TLS context with the CA bundle and the client certificate."""
    if cert is None and key is not None:
        raise ConfigError("registry client_key given without client_cert")
    if cert is None and ca_bundle is None:
        return True  # httpx's default verification
    if not base_url.startswith("https://"):
        raise ConfigError("registry TLS options need an https:// URL")
    try:
        context = ssl.create_default_context(cafile=None if ca_bundle is None else str(ca_bundle))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"registry ca_bundle {str(ca_bundle)[:120]!r}: {_tls_why(exc)}") from None
    if cert is not None:
        try:
            context.load_cert_chain(str(cert), None if key is None else str(key), password=password)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"registry client_cert {str(cert)[:120]!r}: {_tls_why(exc)}"
            ) from None
    return context


def _tls_why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"not usable ({exc.reason or 'TLS error'})"
    if isinstance(exc, OSError):
        return f"cannot read it ({exc.strerror or type(exc).__name__})"
    return type(exc).__name__
