"""The composition root: one call builds the engine and every part it needs, once.

A host backend, the CLI, the worker, the simulator and the examples all start here::

    from movecar_adapters import connect

    with connect() as mc:                     # the embedded SQLite file, movecar.db
        case_id = mc.open_case(plate="苏D12345", location="湖塘镇", requester_phone="...")

    mc = connect("memory://")                 # the in-memory adapters
    mc = connect("postgresql+psycopg://movecar@db/movecar", telephony=MySwitch(), ...)

The contract, the clock and the key material are given once and handed to every part
that needs them: the store gets the engine's clock (so events, state rows, the access
log, outbox deadlines and the worker all see one time) and the engine's contract (so
retention and settlement follow the same terms), and the engine plans effects with the
store's policy. Settings not given as arguments come from the environment and
``movecar.toml`` (:mod:`movecar_adapters.config`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping
from typing import Any

import attrs

from movecar_adapters.clock import SystemClock
from movecar_adapters.config import (
    MEMORY_URL,
    ConfigError,
    RegistrySettings,
    Settings,
    load_settings,
    mask_url,
)
from movecar_core.app import Dispatch, MoveCar
from movecar_core.calendar import WorkingDayCalendar
from movecar_core.calls import CallLimits
from movecar_core.contract import WUJIN_114_2024, Contract
from movecar_core.machine import CasePolicy
from movecar_core.memory import (
    InMemoryCaseStore,
    InMemoryCommandCentre,
    InMemoryNotifier,
    InMemorySeatReminders,
    InMemoryTelephony,
    InMemoryVehicleRegistry,
)
from movecar_core.outbox import EffectPolicy
from movecar_core.ports import (
    CaseStore,
    Clock,
    CommandCentre,
    RequesterNotifier,
    SeatReminders,
    Telephony,
    VehicleRegistry,
)
from movecar_core.requesters import RequesterPolicy
from movecar_core.term import ContractTerm
from movecar_core.volume import ReportDelivery

log = logging.getLogger("movecar")

__all__ = ["ConfigError", "connect", "effect_policy"]


def effect_policy(
    settings: Settings, dispatch: Dispatch, given: EffectPolicy | None
) -> EffectPolicy:
    """The one effect policy of a deployment: ``dispatch`` decides who dials."""
    base = given or EffectPolicy()
    changes: dict[str, Any] = {"dispatch_calls": dispatch is Dispatch.OUTBOX}
    if given is None:
        if settings.call_outcome_timeout is not None:
            changes["call_outcome_timeout"] = settings.call_outcome_timeout
        if settings.follow_up_after is not None or settings.no_follow_up:
            changes["follow_up_after"] = settings.follow_up_after
    return attrs.evolve(base, **changes)


def connect(
    url: str | None = None,
    *,
    contract: Contract = WUJIN_114_2024,
    clock: Clock | None = None,
    keys: Any = None,
    registry: VehicleRegistry | None = None,
    telephony: Telephony | None = None,
    notifier: RequesterNotifier | None = None,
    command_centre: CommandCentre | None = None,
    reminders: SeatReminders | None = None,
    dispatch: Dispatch | str | None = None,
    policy: CasePolicy | None = None,
    effects: EffectPolicy | None = None,
    term: ContractTerm | None = None,
    call_limits: CallLimits | None = None,
    requesters: RequesterPolicy | None = None,
    calendar: WorkingDayCalendar | None = None,
    reports: ReportDelivery | None = None,
    upgrade: bool | None = None,
    config: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> MoveCar:
    """The engine of a deployment, wired from one configuration.

    ``url``: ``None`` for the configured database (``$MOVECAR_DB_URL``, ``movecar.toml``)
    or else the embedded SQLite file ``movecar.db``; ``"memory://"`` for the in-memory
    adapters; or any SQLAlchemy URL of SQLite, PostgreSQL or MariaDB.

    ``keys``: a :class:`~movecar_adapters.crypto.KeyRing` for phone numbers at rest;
    default ``$MOVECAR_KEYS`` or the file ``movecar.toml`` names. A database needs keys
    (:class:`~movecar_adapters.crypto.KeyConfigError` without them); memory does not.

    ``clock`` defaults to the wall clock (:class:`~movecar_adapters.clock.SystemClock`).
    Ports not given are the in-memory adapters (a warning is logged when a database is
    used with an in-memory phone switch or registry: nothing rings, nobody is looked up),
    except those configured: the SIP switch of ``[telephony]`` and the owner data source
    of ``[registry]`` (the platform over HTTP or a mirror table, ``docs/registry.md``).
    ``dispatch`` (default ``inline``, or ``engine.dispatch``): who delivers effects;
    with ``"outbox"`` a ``movecar worker`` process does. ``upgrade``: run the schema
    migrations first (default: for SQLite files only; servers migrate with
    ``movecar db upgrade``). ``term``: the contract term with the renewals granted so far
    (default: the first service year of ``contract``). ``call_limits``: the caps on calls
    in flight per seat and in total (annex 2 十三(四); default
    :class:`~movecar_core.calls.CallLimits`). ``requesters``: the requester limits the
    store enforces when a case is opened (default ``[requesters]`` of ``movecar.toml``,
    else :class:`~movecar_core.requesters.RequesterPolicy`'s defaults: 3 a day, 5 a month).
    ``calendar``: the working days of every deadline (default: the library's table with
    the year files of ``[calendar]`` or ``$MOVECAR_CALENDAR``).

    Mail (``$MOVECAR_SMTP_URL`` or ``[smtp]``): with ``to_110`` the 110 desk's notices go
    through :class:`~movecar_adapters.smtp.SmtpMailer` (else, with ``[notices] log``, to
    that file as lines); with ``report_to`` the monthly volume report (三) is scheduled and
    mailed with its CSV and XLSX (``reports``: a
    :class:`~movecar_core.volume.ReportDelivery` of your own instead).

    Raises :class:`~movecar_adapters.config.ConfigError` for bad settings, and the SQL
    adapter's typed errors when the database cannot be opened or is not migrated.
    """
    settings = load_settings(config, environ)
    chosen = _dispatch(dispatch, settings)
    the_clock: Clock = clock if clock is not None else SystemClock()
    case_policy = policy or (
        CasePolicy(max_call_attempts=settings.max_call_attempts)
        if settings.max_call_attempts is not None
        else CasePolicy()
    )
    rules = effect_policy(settings, chosen, effects)
    target = url if url is not None else settings.url
    if not isinstance(target, str) or not target.strip():
        raise ConfigError(f"url={target!r:.60}: give a database URL or 'memory://'")
    limited = requesters if requesters is not None else settings.requesters or RequesterPolicy()
    if target == MEMORY_URL:
        store: CaseStore = InMemoryCaseStore(
            effects=rules, clock=the_clock, contract=contract, requesters=limited
        )
    else:
        store = _sql_store(
            target, keys, settings, clock=the_clock, contract=contract, effects=rules,
            upgrade=upgrade, requesters=limited,
        )  # fmt: skip
        missing = [
            name
            for name, port in (
                ("telephony", telephony if settings.sip is None else "sip"),
                ("registry", registry if settings.registry is None else "configured"),
            )
            if port is None
        ]
        if missing:
            # INFO, not WARNING: simulations, imports and the CLI's storage commands run this
            # way on purpose; "Running in production" says which ports a deployment passes.
            log.info(
                "%s on %s: in-memory %s (nothing rings, nobody is looked up)",
                "connect",
                mask_url(target),
                " and ".join(missing),
            )
    limits = call_limits if call_limits is not None else settings.call_limits
    built: list[Any] = [store]
    try:
        if registry is None and settings.registry is not None:
            registry = _registry(settings.registry, store, keys, settings)
            built.append(registry)
        if telephony is None and settings.sip is not None:
            telephony = _sip_switch(settings, store, keys, the_clock, limits)
            built.append(telephony)
        command_centre, reports = _mail(settings, the_clock, command_centre, reports)
    except BaseException:
        for part in reversed(built):  # nothing this call opened stays open
            close = getattr(part, "close", None)
            if callable(close):
                close()
        raise
    engine = MoveCar(
        store=store,
        registry=registry if registry is not None else InMemoryVehicleRegistry(),
        telephony=telephony if telephony is not None else InMemoryTelephony(clock=the_clock),
        clock=the_clock,
        notifier=notifier if notifier is not None else InMemoryNotifier(),
        command_centre=command_centre if command_centre is not None else InMemoryCommandCentre(),
        reminders=reminders if reminders is not None else InMemorySeatReminders(),
        contract=contract,
        policy=case_policy,
        dispatch=chosen,
        term=term,
        call_limits=limits,
        calendar=calendar if calendar is not None else settings.calendar,
        reports=reports,
    )
    return engine


def _registry(
    chosen: RegistrySettings, store: CaseStore, keys: Any, settings: Settings
) -> VehicleRegistry:
    """The owner data source of ``[registry]`` (二(二)): the platform over HTTP, or a
    mirror table in ``registry.url``'s database or else the store's own."""
    options = dict(chosen.options)
    if chosen.kind == "http":
        try:
            from movecar_adapters.registry_http import HttpVehicleRegistry
        except ModuleNotFoundError as exc:  # the [registry] extra is not installed
            raise ConfigError(
                f"registry.kind='http' needs httpx: pip install 'movecar[registry]' ({exc.name})"
            ) from None
        assert chosen.url is not None  # load_settings checked it
        return HttpVehicleRegistry(chosen.url, **options)
    try:
        from movecar_adapters.crypto import KeyRing
        from movecar_adapters.registry_sql import SqlVehicleRegistry
        from movecar_adapters.sql.store import SqlStore
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"registry.kind='sql' needs the SQL adapter: pip install 'movecar[sql]' ({exc.name})"
        ) from None
    ring: KeyRing | None = None
    if isinstance(store, SqlStore):
        ring = store.keys
    elif isinstance(keys, KeyRing):
        ring = keys
    elif settings.keys_spec is not None:
        ring = KeyRing.from_config(settings.keys_spec, source=settings.keys_source or "keys")
    where: Any
    if chosen.url is not None:
        where = chosen.url
    elif isinstance(store, SqlStore):
        where = store.engine  # the mirror beside the store: one pool of connections
    else:
        raise ConfigError(
            "registry.kind='sql' with the in-memory store: set registry.url to the mirror's "
            "database"
        )
    if options.get("encrypted", True) and ring is None:
        raise ConfigError(
            "registry.kind='sql': the mirror's phones are sealed; set MOVECAR_KEYS or "
            "keys.file (or registry.encrypted = false for a table of plain phones)"
        )
    return SqlVehicleRegistry(where, keys=ring, **options)


def _mail(
    settings: Settings,
    clock: Clock,
    command_centre: CommandCentre | None,
    reports: ReportDelivery | None,
) -> tuple[CommandCentre | None, ReportDelivery | None]:
    """The 110 desk and the monthly report's delivery from ``[smtp]``/``[notices]``, for
    the ports the caller did not give."""
    smtp = settings.smtp
    mailer = None
    if smtp is not None:
        from movecar_adapters.smtp import SmtpMailer

        mailer = SmtpMailer(smtp, clock=clock)
    if command_centre is None:
        if mailer is not None and smtp is not None and smtp.to_110:
            command_centre = mailer
        elif settings.notices_log is not None:
            from movecar_adapters.notices import LogCommandCentre

            command_centre = LogCommandCentre(settings.notices_log, clock=clock)
    if reports is None and mailer is not None and smtp is not None and smtp.report_to:
        if importlib.util.find_spec("openpyxl") is None:  # the workbook goes with every report
            raise ConfigError(
                "[smtp] report_to mails the report as a workbook: pip install 'movecar[reports]'"
            )
        from movecar_adapters.report_files import report_attachments

        reports = ReportDelivery(mailer, smtp.report_to, render=report_attachments)
    return command_centre, reports


def _sip_switch(
    settings: Settings, store: CaseStore, keys: Any, clock: Clock, limits: CallLimits | None
) -> Telephony:
    """The SIP switch of ``[telephony]``, its recordings put into the encrypted store of
    ``[recordings]`` with their SHA-256 in the case's evidence (二(四) "坐席录音").

    A deployment that calls owners keeps what was said: SIP without a recordings folder
    is refused, not run with recordings left unencrypted in a working folder.
    """
    from movecar_adapters.crypto import KeyRing
    from movecar_adapters.recordings_fs import FileRecordingStore
    from movecar_adapters.sip import SipTelephony, into_store
    from movecar_adapters.sql.store import SqlStore

    assert settings.sip is not None
    root = settings.recordings_dir
    if root is None:
        raise ConfigError(
            "telephony.kind = 'sip' records every call (二(四)): set recordings.dir in "
            "movecar.toml or MOVECAR_RECORDINGS to the folder that keeps them"
        )
    if not root.is_dir():
        raise ConfigError(f"recordings folder {str(root)[:200]!r} does not exist")
    if isinstance(store, SqlStore):
        files = FileRecordingStore(root, store.keys, evidence=store, clock=clock)
    else:  # memory: no evidence to write into, the audio still encrypted
        if keys is None and settings.keys_spec is None:
            raise ConfigError("recordings are encrypted at rest: set MOVECAR_KEYS or keys.file")
        ring = keys if keys is not None else KeyRing.from_config(settings.keys_spec or "")
        files = FileRecordingStore(root, ring, clock=clock)
    return SipTelephony(
        settings.sip, limits=limits, clock=clock, on_recording=into_store(files, clock)
    )


def _dispatch(given: Dispatch | str | None, settings: Settings) -> Dispatch:
    if given is None:
        return settings.dispatch
    if isinstance(given, Dispatch):
        return given
    try:
        return Dispatch(str(given))
    except ValueError:
        raise ConfigError(f"dispatch={given!r:.40}: must be 'inline' or 'outbox'") from None


def _sql_store(
    url: str,
    keys: Any,
    settings: Settings,
    *,
    clock: Clock,
    contract: Contract,
    effects: EffectPolicy,
    upgrade: bool | None,
    requesters: RequesterPolicy,
) -> CaseStore:
    try:
        from movecar_adapters.crypto import KeyConfigError, KeyRing
        from movecar_adapters.sql import SqlStore, open_engine
    except ModuleNotFoundError as exc:  # the [sql] extra is not installed
        raise ConfigError(
            f"{mask_url(url)} needs the SQL adapter: pip install 'movecar[sql]' ({exc.name})"
        ) from None
    if keys is None:
        if settings.keys_spec is None:
            raise KeyConfigError(
                "no encryption keys for phone numbers at rest: set MOVECAR_KEYS "
                "('id=KEY', from `movecar keys new`) or keys.file in movecar.toml"
            )
        keys = KeyRing.from_config(settings.keys_spec, source=settings.keys_source or "keys")
    if not isinstance(keys, KeyRing):
        raise ConfigError(f"keys={type(keys).__name__}: must be a KeyRing")
    migrate = upgrade if upgrade is not None else settings.upgrade
    engine = open_engine(url, migrate=migrate, keys=keys)  # 0003 rebinds with them
    try:
        return SqlStore(
            engine, keys, clock=clock, contract=contract, effects=effects, requesters=requesters
        )
    except BaseException:
        engine.dispose()
        raise
