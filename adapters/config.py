"""Settings of a deployment, from arguments, the environment and ``movecar.toml``.

Each setting is taken from the first place that has it:

1. the argument given to :func:`~movecar_adapters.connect` (or a CLI option);
2. the environment: ``MOVECAR_DB_URL``, ``MOVECAR_KEYS``, ``MOVECAR_DISPATCH``,
   ``MOVECAR_CALENDAR``;
3. the configuration file: ``--config``/``config=``, else ``$MOVECAR_CONFIG``, else
   ``./movecar.toml`` when it exists (read with the standard library's ``tomllib``);
4. the default: the embedded SQLite file ``movecar.db``, inline dispatch, the contract's
   effect timings.

The file, all of it optional::

    [database]
    url = "postgresql+psycopg://movecar@db.internal/movecar"
    upgrade = false            # run the migrations on connect (default: only for SQLite)

    [keys]
    file = "/etc/movecar/keys" # holds what MOVECAR_KEYS would: "k2=KEY,k1=KEY"

    [engine]
    dispatch = "outbox"        # "inline" (default) or "outbox" (a `movecar worker` delivers)
    max_call_attempts = 3
    call_outcome_timeout_s = 180
    follow_up_after_s = 300    # 0 = no follow-up reminders
    calls_per_seat = 1         # caps on calls in flight (annex 2 十三(四)); both or neither
    calls_in_flight = 60

    [telephony]                # real calls over SIP (default: the in-memory switch)
    kind = "sip"
    trunk = "sbc.internal:5060"    # or $MOVECAR_SIP_TRUNK, which implies kind = "sip"
    bind_address = "10.1.2.3"      # the address baresip binds (an explicit one)
    rtp_ports = [30000, 30999]
    ring_timeout_s = 30
    listen_after_greeting_s = 10
    work_dir = "/var/lib/movecar/sip"
    greeting_cache = "/var/cache/movecar/greetings"

    [recordings]
    dir = "/var/lib/movecar/recordings"   # or $MOVECAR_RECORDINGS; needed with SIP (二(四))

    [registry]                 # the owner data source (default: the in-memory registry)
    kind = "http"              # "memory", "http" (the platform) or "sql" (a local mirror)
    url = "https://jsjj.internal/api"  # or $MOVECAR_REGISTRY_URL; its scheme implies kind
    timeout_s = 2.0
    retries = 2
    path = "/vehicles/{plate}"
    source = "jsjj"
    max_retry_after_s = 5
    breaker_failures = 5
    breaker_cooldown_s = 30
    client_cert = "/etc/movecar/registry.pem"  # mutual TLS
    client_key = "/etc/movecar/registry.key"
    ca_bundle = "/etc/movecar/platform-ca.pem"
    # kind = "sql": url is the mirror's database (default: the store's), and
    # table = "mc_vehicle_mirror", encrypted = true
    [smtp]                     # mail: notices to the 110 desk, the monthly report (三)
    url = "smtp://mail.internal:587?starttls=1"  # or $MOVECAR_SMTP_URL (may hold a password)
    user = "movecar"           # the password in password_file, never in this file
    password_file = "/etc/movecar/smtp-password"
    from = "114-movecar@example.cn"
    to_110 = ["110-desk@example.gov.cn"]        # 二(五) notices (escalations, outages)
    report_to = ["zhihui@example.gov.cn"]       # 三: the monthly report, mailed by the worker
    timeout_s = 10
    ca_file = "/etc/movecar/mail-ca.pem"        # a private CA (default: the system's)

    [notices]
    log = "/var/log/movecar/110-notices.log"    # notices as lines, when no [smtp] to_110

    [requesters]               # limits per requester number (default: 3 a day, 5 a month)
    per_day = 3                # requests opened a day (0: no daily limit); default 3
    per_month = 5              # requests opened a month (0: no monthly limit); default 5

    [api]                      # movecar serve (movecar_adapters.http, docs/http.md)
    tokens_file = "/etc/movecar/api-tokens"   # holds what MOVECAR_API_TOKENS would
    webhook_secret_file = "/etc/movecar/webhook-secret"  # or $MOVECAR_WEBHOOK_SECRET
    host = "127.0.0.1"
    port = 8114

    [calendar]                 # working-day years beyond the library's table (or
    years = ["cal-2027.toml"]  # $MOVECAR_CALENDAR): State Council notices as year files
    dir = "calendar"           # where `movecar calendar add` installs (default: calendar/)

Keys, API tokens and the webhook secret are never read from the file itself, only from a
file it names (kept with the
permissions of a secret). Unknown sections and keys are refused, so a typo is an error,
not a silently ignored setting.
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from movecar_adapters.sip.telephony import SipConfig
from movecar_core.app import Dispatch
from movecar_core.calendar import InvalidCalendarNotice, WorkingDayCalendar
from movecar_core.calls import CallLimits
from movecar_core.errors import MoveCarError
from movecar_core.requesters import RequesterPolicy

if TYPE_CHECKING:  # the SMTP adapter imports this module: no cycle at run time
    from movecar_adapters.smtp import SmtpConfig

ENV_URL = "MOVECAR_DB_URL"
ENV_KEYS = "MOVECAR_KEYS"
ENV_CONFIG = "MOVECAR_CONFIG"
ENV_DISPATCH = "MOVECAR_DISPATCH"
ENV_SIP_TRUNK = "MOVECAR_SIP_TRUNK"
ENV_RECORDINGS = "MOVECAR_RECORDINGS"
ENV_REGISTRY_URL = "MOVECAR_REGISTRY_URL"
ENV_SMTP_URL = "MOVECAR_SMTP_URL"
ENV_API_TOKENS = "MOVECAR_API_TOKENS"
ENV_WEBHOOK_SECRET = "MOVECAR_WEBHOOK_SECRET"
#: The sender of movecar's mail when ``[smtp] from`` is not set.
DEFAULT_SENDER = "movecar@localhost"
CONFIG_FILE = "movecar.toml"
#: The embedded default: a SQLite file in the working directory, no server.
DEFAULT_URL = "sqlite:///movecar.db"
#: The in-memory adapters: nothing is kept after the process ends.
MEMORY_URL = "memory://"

_SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "database": {"url": str, "upgrade": bool},
    "keys": {"file": str},
    "engine": {
        "dispatch": str,
        "max_call_attempts": int,
        "call_outcome_timeout_s": int,
        "follow_up_after_s": int,
        "calls_per_seat": int,
        "calls_in_flight": int,
    },
    "telephony": {
        "kind": str,
        "trunk": str,
        "bind_address": str,
        "rtp_ports": list,
        "ring_timeout_s": (int, float),
        "listen_after_greeting_s": (int, float),
        "work_dir": str,
        "greeting_cache": str,
    },
    "recordings": {"dir": str},
    "requesters": {"per_day": int, "per_month": int},
    "calendar": {"years": list, "dir": str},
    "registry": {
        "kind": str,
        "url": str,
        "timeout_s": (int, float),
        "retries": int,
        "path": str,
        "source": str,
        "max_retry_after_s": (int, float),
        "breaker_failures": int,
        "breaker_cooldown_s": (int, float),
        "client_cert": str,
        "client_key": str,
        "ca_bundle": str,
        "table": str,
        "encrypted": bool,
    },
    "smtp": {
        "url": str,
        "user": str,
        "password_file": str,
        "from": str,
        "to_110": (str, list),
        "report_to": (str, list),
        "timeout_s": (int, float),
        "ca_file": str,
    },
    "notices": {"log": str},
    "api": {"tokens_file": str, "webhook_secret_file": str, "host": str, "port": int},
}

#: Which ``[registry]`` settings each kind reads (the rest of the table is refused for it).
_REGISTRY_KEYS = {
    "http": frozenset(
        {
            "kind", "url", "timeout_s", "retries", "path", "source", "max_retry_after_s",
            "breaker_failures", "breaker_cooldown_s", "client_cert", "client_key", "ca_bundle",
        }
    ),
    "sql": frozenset({"kind", "url", "source", "table", "encrypted"}),
    "memory": frozenset({"kind"}),
}  # fmt: skip
_REGISTRY_FILES = ("client_cert", "client_key", "ca_bundle")


class ConfigError(MoveCarError):
    """A configuration file, variable or setting that is missing, unreadable or malformed
    (an environment problem: the CLI exits with 3)."""


@attrs.frozen
class RegistrySettings:
    """The owner data source of ``[registry]`` (or ``$MOVECAR_REGISTRY_URL``).

    ``kind``: ``http`` (:class:`~movecar_adapters.registry_http.HttpVehicleRegistry`) or
    ``sql`` (:class:`~movecar_adapters.registry_sql.SqlVehicleRegistry`). ``url``: the
    platform's base URL, or the mirror's database (None: the store's). ``options``: the
    adapter's keyword arguments from the file (files relative to the file's folder);
    their values are checked when the adapter is built (:func:`~movecar_adapters.connect`).
    """

    kind: str
    url: str | None
    options: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Settings:
    """What :func:`load_settings` found, before any argument overrides it."""

    url: str = DEFAULT_URL
    upgrade: bool | None = None
    keys_spec: str | None = attrs.field(default=None, repr=False)  # secret: never shown
    keys_source: str | None = None
    dispatch: Dispatch = Dispatch.INLINE
    max_call_attempts: int | None = None
    call_outcome_timeout: dt.timedelta | None = None
    follow_up_after: dt.timedelta | None = None
    no_follow_up: bool = False
    source: str | None = None  # the configuration file read, if any
    #: The caps on calls in flight, when configured (else the engine asks nothing).
    call_limits: CallLimits | None = None
    #: The SIP switch's settings, when ``telephony.kind = "sip"`` or ``$MOVECAR_SIP_TRUNK``.
    sip: SipConfig | None = None
    #: Where recordings are kept (二(四)), when configured.
    recordings_dir: Path | None = None
    #: The requester limits of ``[requesters]`` (None: not configured; ``connect()`` then
    #: enforces the policy's defaults).
    requesters: RequesterPolicy | None = None
    #: The working-day calendar: the library's table and the year files configured.
    calendar: WorkingDayCalendar = attrs.field(factory=WorkingDayCalendar.default, repr=False)
    #: The year files it was built from, in order.
    calendar_files: tuple[Path, ...] = ()
    #: Where ``movecar calendar add`` installs a year file (None: nowhere configured).
    calendar_dir: Path | None = None
    #: The owner data source, when ``[registry]`` or ``$MOVECAR_REGISTRY_URL`` names one.
    registry: RegistrySettings | None = None
    #: The SMTP server and addresses (``$MOVECAR_SMTP_URL``, ``[smtp]``), when configured.
    smtp: SmtpConfig | None = None
    #: The file the 110 desk's notices are written to as lines (``[notices] log``).
    notices_log: Path | None = None
    #: ``movecar serve``'s bearer tokens as written (``$MOVECAR_API_TOKENS`` or the file
    #: ``[api] tokens_file`` names; parsed by :func:`movecar_adapters.http.parse_tokens`).
    api_tokens_spec: str | None = attrs.field(default=None, repr=False)  # secret
    api_tokens_source: str | None = None
    #: The telephony gateway's webhook secret (``$MOVECAR_WEBHOOK_SECRET``, ``[api]``).
    webhook_secret: str | None = attrs.field(default=None, repr=False)  # secret
    webhook_secret_source: str | None = None
    #: ``[api] host`` and ``port`` (None: ``movecar serve``'s defaults).
    api_host: str | None = None
    api_port: int | None = None


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user, colon, _ = credentials.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path}: not found") from None
    except OSError as exc:
        raise ConfigError(f"configuration file {path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path}: not valid TOML ({exc})") from None
    except RecursionError:  # arrays or tables nested thousands deep
        raise ConfigError(f"configuration file {path}: nested too deep to be one") from None
    for section, values in data.items():
        known = _SCHEMA.get(section)
        if known is None:
            raise ConfigError(
                f"configuration file {path}: unknown section [{section}] "
                f"(known: {', '.join(sorted(_SCHEMA))})"
            )
        if not isinstance(values, dict):
            raise ConfigError(f"configuration file {path}: [{section}] must be a table")
        for key, value in values.items():
            kind = known.get(key)
            if kind is None:
                raise ConfigError(
                    f"configuration file {path}: unknown setting {section}.{key} "
                    f"(known: {', '.join(sorted(known))})"
                )
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ConfigError(
                    f"configuration file {path}: {section}.{key} must be "
                    f"{getattr(kind, '__name__', kind)}, not {type(value).__name__}"
                )
    return data


def _dispatch(value: str, where: str) -> Dispatch:
    try:
        return Dispatch(value.strip().lower())
    except ValueError:
        raise ConfigError(f"{where}={value!r:.40}: must be 'inline' or 'outbox'") from None


def _seconds(value: int, where: str, *, zero_ok: bool) -> dt.timedelta:
    if value < (0 if zero_ok else 1) or value > 7 * 86400:
        low = 0 if zero_ok else 1
        raise ConfigError(f"{where}={value}: must be {low} to {7 * 86400} seconds")
    return dt.timedelta(seconds=value)


def config_path(config: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path | None:
    """The configuration file to read: the one named, else ``$MOVECAR_CONFIG``, else
    ``./movecar.toml`` if it exists; None when there is none to read."""
    named = config if config is not None else environ.get(ENV_CONFIG) or None
    if named is not None:
        return Path(named)
    local = Path(CONFIG_FILE)
    return local if local.is_file() else None


def load_settings(
    config: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """The deployment's settings from the environment and the configuration file."""
    env = os.environ if environ is None else environ
    path = config_path(config, env)
    data = _read_file(path) if path is not None else {}
    where = str(path) if path is not None else "settings"
    database, keys, engine = (data.get(s, {}) for s in ("database", "keys", "engine"))

    url = env.get(ENV_URL) or database.get("url") or DEFAULT_URL
    keys_spec = env.get(ENV_KEYS) or None
    keys_source: str | None = ENV_KEYS
    if keys_spec is None and "file" in keys:
        key_file = Path(keys["file"])
        if not key_file.is_absolute() and path is not None:
            key_file = path.parent / key_file
        try:
            keys_spec = key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"{where}: keys.file {key_file}: cannot read it ({exc.strerror})"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: keys.file {key_file}: not UTF-8 text") from None
        keys_source = f"keys.file {key_file}"
    if keys_spec is None:
        keys_source = None

    if env.get(ENV_DISPATCH):
        dispatch = _dispatch(env[ENV_DISPATCH], ENV_DISPATCH)
    elif "dispatch" in engine:
        dispatch = _dispatch(engine["dispatch"], f"{where}: engine.dispatch")
    else:
        dispatch = Dispatch.INLINE
    attempts = engine.get("max_call_attempts")
    if attempts is not None and not 1 <= attempts <= 10:
        raise ConfigError(f"{where}: engine.max_call_attempts={attempts}: must be 1 to 10")
    timeout = engine.get("call_outcome_timeout_s")
    follow = engine.get("follow_up_after_s")
    telephony, recordings = data.get("telephony", {}), data.get("recordings", {})
    folder = env.get(ENV_RECORDINGS) or recordings.get("dir")
    notices = data.get("notices", {})
    return Settings(
        url=url,
        upgrade=database.get("upgrade"),
        keys_spec=keys_spec,
        keys_source=keys_source,
        dispatch=dispatch,
        max_call_attempts=attempts,
        call_outcome_timeout=None
        if timeout is None
        else _seconds(timeout, f"{where}: engine.call_outcome_timeout_s", zero_ok=False),
        follow_up_after=None
        if not follow
        else _seconds(follow, f"{where}: engine.follow_up_after_s", zero_ok=True),
        no_follow_up=follow == 0,
        source=None if path is None else str(path),
        call_limits=_call_limits(engine, where),
        sip=_sip(telephony, env, path, where),
        recordings_dir=None if not folder else _relative(Path(folder), path),
        requesters=_requesters(data, where),
        **_calendar(data.get("calendar"), env, path, where),
        registry=_registry(data.get("registry", {}), env, path, where),
        smtp=_smtp(data.get("smtp", {}), env, path, where),
        notices_log=_relative(Path(notices["log"]), path) if notices.get("log") else None,
        **_api(data.get("api", {}), env, path, where),
    )


def _secret(
    env: Mapping[str, str],
    variable: str,
    table: Mapping[str, Any],
    *,
    key: str,
    config: Path | None,
    where: str,
) -> tuple[str | None, str | None]:
    """A secret from ``variable``, else from the file ``[api] key`` names: (its text, where
    it came from). Never from movecar.toml itself: the file is shared, a secret is not."""
    if env.get(variable):
        return env[variable].strip(), variable
    if key not in table:
        return None, None
    named = _relative(Path(table[key]), config)
    try:
        text = named.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{where}: api.{key} {named}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: api.{key} {named}: not UTF-8 text") from None
    return text or None, f"api.{key} {named}"


def _api(
    table: Mapping[str, Any], env: Mapping[str, str], config: Path | None, where: str
) -> dict[str, Any]:
    """``[api]``: movecar serve's secrets (from the environment or the files named) and
    its address."""
    tokens, tokens_source = _secret(
        env, ENV_API_TOKENS, table, key="tokens_file", config=config, where=where
    )
    secret, secret_source = _secret(
        env, ENV_WEBHOOK_SECRET, table, key="webhook_secret_file", config=config, where=where
    )
    port = table.get("port")
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"{where}: api.port={port}: must be 1 to 65535")
    host = table.get("host")
    if host is not None and (not host.strip() or len(host) > 253):
        raise ConfigError(f"{where}: api.host must be a host name or address")
    return {
        "api_tokens_spec": tokens,
        "api_tokens_source": tokens_source,
        "webhook_secret": secret,
        "webhook_secret_source": secret_source,
        "api_host": host,
        "api_port": port,
    }


def _requesters(data: Mapping[str, Any], where: str) -> RequesterPolicy | None:
    """``[requesters]``: the policy's defaults for what is not set, 0 for no limit."""
    if "requesters" not in data:
        return None
    table = data["requesters"]
    given: dict[str, int | None] = {}
    for name in ("per_day", "per_month"):
        if name in table:
            given[name] = table[name] or None
    try:
        return RequesterPolicy(**given)
    except MoveCarError as exc:
        raise ConfigError(f"{where}: [requesters]: {exc} (0 turns that limit off)") from None


def _calendar(
    table: Mapping[str, Any] | None, env: Mapping[str, str], config: Path | None, where: str
) -> dict[str, Any]:
    """The calendar of ``$MOVECAR_CALENDAR`` or ``[calendar]`` (movecar_adapters.calendar_files):
    the library's table with the year files added, the files, and the install folder."""
    from movecar_adapters.calendar_files import (
        DEFAULT_DIR,
        ENV_CALENDAR,
        CalendarFileError,
        load_calendar,
        year_files,
    )

    table = table or {}
    folder: Path | None
    if env.get(ENV_CALENDAR):
        entries = [Path(p) for p in env[ENV_CALENDAR].split(os.pathsep) if p.strip()]
        folder = next((p for p in entries if p.is_dir()), None)
        source = ENV_CALENDAR
    else:
        named = table.get("years", [])
        if not all(isinstance(n, str) and n.strip() for n in named):
            raise ConfigError(f"{where}: calendar.years must be a list of file names")
        entries = [_relative(Path(n), config) for n in named]
        base = config.parent if config is not None else Path()
        folder = _relative(Path(table["dir"]), config) if "dir" in table else base / DEFAULT_DIR
        if folder.is_dir():
            entries.append(folder)
        source = f"{where}: [calendar]"
    try:
        files = year_files(entries)
        calendar = load_calendar(files)
    except (CalendarFileError, InvalidCalendarNotice) as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return {"calendar": calendar, "calendar_files": tuple(files), "calendar_dir": folder}


def _relative(given: Path, config: Path | None) -> Path:
    """A path of the configuration file is relative to the file's folder."""
    return config.parent / given if config is not None and not given.is_absolute() else given


def _call_limits(engine: Mapping[str, Any], where: str) -> CallLimits | None:
    per_seat, total = engine.get("calls_per_seat"), engine.get("calls_in_flight")
    if per_seat is None and total is None:
        return None
    if per_seat is None or total is None:
        raise ConfigError(f"{where}: engine.calls_per_seat and calls_in_flight go together")
    try:
        return CallLimits(per_seat=per_seat, total=total)
    except MoveCarError as exc:
        raise ConfigError(f"{where}: engine.calls_per_seat/calls_in_flight: {exc}") from None


def _sip(
    table: Mapping[str, Any], env: Mapping[str, str], config: Path | None, where: str
) -> SipConfig | None:
    """The SIP switch's settings, or None for the in-memory switch."""
    trunk = env.get(ENV_SIP_TRUNK) or table.get("trunk")
    kind = "sip" if env.get(ENV_SIP_TRUNK) else table.get("kind", "memory")
    if kind == "memory":
        if len(table) > ("kind" in table):
            raise ConfigError(f"{where}: [telephony] settings given, but kind is not 'sip'")
        return None
    if kind != "sip":
        raise ConfigError(f"{where}: telephony.kind={kind!r:.40}: must be 'memory' or 'sip'")
    if not trunk:
        raise ConfigError(f"{where}: telephony.kind='sip' needs a trunk (or {ENV_SIP_TRUNK})")
    options: dict[str, Any] = {
        name: table[name]
        for name in ("bind_address", "ring_timeout_s", "listen_after_greeting_s")
        if name in table
    }
    if "rtp_ports" in table:
        ports = table["rtp_ports"]
        if len(ports) != 2 or not all(type(p) is int for p in ports):
            raise ConfigError(f"{where}: telephony.rtp_ports must be two port numbers")
        options["rtp_ports"] = (ports[0], ports[1])
    for name in ("work_dir", "greeting_cache"):
        if name in table:
            options[name] = _relative(Path(table[name]), config)
    try:
        return SipConfig(trunk, **options)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: [telephony]: {str(exc)[:200]}") from None


def _registry(
    table: Mapping[str, Any], env: Mapping[str, str], config: Path | None, where: str
) -> RegistrySettings | None:
    """The owner data source's settings, or None for the in-memory registry.

    ``$MOVECAR_REGISTRY_URL`` overrides ``registry.url``; without ``registry.kind`` the
    URL's scheme says the kind: ``http(s)://`` the platform, any other a mirror database.
    """
    url = env.get(ENV_REGISTRY_URL) or table.get("url") or None
    kind = table.get("kind")
    if kind is None:
        if url is None:
            if table:
                raise ConfigError(f"{where}: [registry] settings given without kind or url")
            return None
        kind = "http" if url.lower().startswith(("http://", "https://")) else "sql"
    if kind not in _REGISTRY_KEYS:
        raise ConfigError(f"{where}: registry.kind={kind!r:.40}: must be 'memory', 'http' or 'sql'")
    extra = sorted(set(table) - _REGISTRY_KEYS[kind])
    if extra:
        raise ConfigError(
            f"{where}: registry.{extra[0]} is not a setting of registry.kind={kind!r}"
        )
    if kind == "memory":
        if env.get(ENV_REGISTRY_URL):
            raise ConfigError(f"{where}: {ENV_REGISTRY_URL} is set but registry.kind='memory'")
        return None
    is_http = url is not None and url.lower().startswith(("http://", "https://"))
    if kind == "http" and not is_http:
        raise ConfigError(
            f"{where}: registry.kind='http' needs an http(s):// url (registry.url or "
            f"{ENV_REGISTRY_URL})"
        )
    if kind == "sql" and is_http:
        raise ConfigError(f"{where}: registry.kind='sql' needs a database URL, not http(s)")
    options = {k: v for k, v in table.items() if k not in ("kind", "url")}
    for name in _REGISTRY_FILES:
        if name in options:
            options[name] = _relative(Path(options[name]), config)
    return RegistrySettings(kind=kind, url=url, options=options)


def _smtp(
    table: Mapping[str, Any], env: Mapping[str, str], config: Path | None, where: str
) -> SmtpConfig | None:
    """The SMTP server of ``$MOVECAR_SMTP_URL`` or ``[smtp] url`` with the file's addresses;
    None when neither names one.

    A password goes in ``$MOVECAR_SMTP_URL`` or in the file ``password_file`` names, never
    in ``movecar.toml`` itself (as keys: the file is shared, a secret is not).
    """
    from movecar_adapters.smtp import SmtpConfig

    from_env = env.get(ENV_SMTP_URL) or None
    url = from_env or table.get("url")
    if not url:
        if table:
            raise ConfigError(f"{where}: [smtp] settings given, but no url (or {ENV_SMTP_URL})")
        return None
    if from_env is None and "@" in url.partition("://")[2].partition("/")[0]:
        raise ConfigError(
            f"{where}: smtp.url={mask_url(url)[:200]!r}: give the user as smtp.user and the "
            f"password in smtp.password_file (or {ENV_SMTP_URL}), not in this file"
        )
    password = None
    if "password_file" in table:
        secret = _relative(Path(table["password_file"]), config)
        try:
            password = secret.read_text(encoding="utf-8").strip("\r\n")
        except OSError as exc:
            raise ConfigError(
                f"{where}: smtp.password_file {secret}: cannot read it ({exc.strerror})"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: smtp.password_file {secret}: not UTF-8 text") from None
    if "user" in table:
        if from_env is not None and "@" in url.partition("://")[2].partition("/")[0]:
            raise ConfigError(f"{where}: smtp.user and a user in {ENV_SMTP_URL}: give one")
        scheme, _, rest = url.partition("://")
        user = urllib.parse.quote(table["user"], safe="")
        url = f"{scheme}://{user}@{rest}"
    elif password is not None and "@" not in url.partition("://")[2].partition("/")[0]:
        raise ConfigError(f"{where}: smtp.password_file without smtp.user")

    def addresses(name: str) -> list[str]:
        value = table.get(name, [])
        return [value] if isinstance(value, str) else list(value)

    return SmtpConfig.from_url(
        url,
        sender=table.get("from", DEFAULT_SENDER),
        to_110=addresses("to_110"),
        report_to=addresses("report_to"),
        timeout_s=table.get("timeout_s"),
        ca_file=_relative(Path(table["ca_file"]), config) if "ca_file" in table else None,
        password=password,
        where=f"{where}: smtp url" if from_env is None else ENV_SMTP_URL,
    )
