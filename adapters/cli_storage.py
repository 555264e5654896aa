"""Storage sub-commands of the ``movecar`` console script.

* ``movecar db upgrade``                          migrate the schema (Alembic) to head
* ``movecar audit verify --actor ID --role ROLE [--checkpoint FILE]... [--public-key PATH.pub]
  [--expect-report M=D] [--workers N] [--json]``  recompute every hash, the ledger and its
  signed checkpoints; name what changed. ``evidence.verify``: an ``auditor``, a
  ``supervisor`` or the ``command_centre``; a refusal is logged as
  ``denied:evidence.verify`` and exits 2
* ``movecar retention purge [--dry-run] [--now T] [--actor A] [--recordings DIR]``  二(四):
  remove what closed at least 3 years ago (never under legal hold), and with
  ``--recordings`` (or ``$MOVECAR_RECORDINGS``) the audio of its recordings (their SHA-256
  kept); a ``--now`` later than the wall clock (beyond
  :data:`~movecar_core.retention.PURGE_CLOCK_SKEW`) or without an offset is refused with
  exit 2, nothing purged
* ``movecar keys new [--id ID]``                  print a new encryption key
* ``movecar keys rotate [--recordings DIR]``      re-encrypt phone numbers under the newest key,
  bound to their place (rebinds tokens written before schema 0003), and rewrap the
  recordings' data keys

The database is ``--db URL``, else ``$MOVECAR_DB_URL``, else ``movecar.toml``, else
``sqlite:///movecar.db``. Keys come from ``$MOVECAR_KEYS`` (or the file ``movecar.toml``
names), never from the database. Exit codes: :mod:`movecar_adapters.cli_common`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from pathlib import Path
from typing import Any

from movecar_adapters.cli_common import (
    CliError,
    Exit,
    actor_of,
    actor_options,
    authorize,
    count_1_to_64,
    database_of,
    fail_line,
    say,
)
from movecar_adapters.cli_ledger import read_checkpoint
from movecar_adapters.cli_recordings import recordings_option, recordings_root
from movecar_adapters.config import mask_url
from movecar_adapters.connect import connect
from movecar_adapters.crypto import KeyConfigError, KeyRing
from movecar_adapters.recordings_fs import FileRecordingStore
from movecar_adapters.signing import PublicKey
from movecar_adapters.sql.audit import AuditResult, verify
from movecar_adapters.sql.engine import current_revision, open_engine
from movecar_adapters.sql.errors import DatabaseUnavailable
from movecar_adapters.sql.store import SqlStore
from movecar_core.app import MoveCar
from movecar_core.errors import MoveCarError
from movecar_core.roles import Action
from movecar_core.settlement import ServiceMonth


def _engine(args: argparse.Namespace, **kwargs: Any) -> MoveCar:
    url = database_of(args, f"movecar {args.command}")
    return connect(url, config=args.config, upgrade=False, **kwargs)


def _store(mc: MoveCar) -> SqlStore:
    assert isinstance(mc.store, SqlStore)  # connect() gives a SqlStore for a database URL
    return mc.store


def _configured_keys(args: argparse.Namespace) -> KeyRing | None:
    """The data-encryption keys if configured (``db upgrade`` works without them)."""
    from movecar_adapters.config import load_settings

    settings = load_settings(args.config)
    if settings.keys_spec is None:
        return None
    return KeyRing.from_config(settings.keys_spec, source=settings.keys_source or "keys")


def _unbound_warning(engine: Any) -> None:
    """七(三): tell the operator about phones not yet bound to their place (the engine
    refuses them, and the audit reports them, until `movecar keys rotate`)."""
    from movecar_adapters.sql.retention import count_values

    left = count_values(engine, lambda value: not KeyRing.is_bound(value))
    if left:
        print(
            f"{left} stored phone values are not bound to their place yet (written before "
            "schema 0003; the engine refuses them): run `movecar keys rotate`",
            file=sys.stderr,
        )


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    url = database_of(args, "db upgrade")
    keys = _configured_keys(args)
    try:
        engine = open_engine(url, migrate=False)
    except DatabaseUnavailable:
        before = None  # a SQLite file not yet made: the upgrade makes it
    else:
        try:
            before = current_revision(engine)
        finally:
            engine.dispose()
    engine = open_engine(url, migrate=True, keys=keys)
    try:
        after = current_revision(engine)
        say(None, f"database {mask_url(url)}: schema {before or 'empty'} -> {after}")
        _unbound_warning(engine)
    finally:
        engine.dispose()
    return Exit.OK


def _expected(items: list[str] | None) -> dict[ServiceMonth, str]:
    expect: dict[ServiceMonth, str] = {}
    for item in items or ():
        month, sep, digest = item.partition("=")
        try:
            parsed = ServiceMonth.parse(month)
        except MoveCarError:
            parsed = None
        if not sep or parsed is None or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise CliError(f"--expect-report {item[:40]!r}: expected YYYY-MM=<64 hex digits>")
        expect[parsed] = digest
    return expect


def audit_json(result: AuditResult) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "cases": result.cases,
        "events": result.events,
        "reports": result.reports,
        "findings": [{"kind": f.kind, "subject": f.subject, "why": f.why} for f in result.findings],
        "cannot_verify": list(result.unverifiable),
    }


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Exit 0 clean, 1 findings (tampering), 2 bad input (a checkpoint file that is not
    one, ``--checkpoint`` without ``--public-key``), 3 cannot verify (database, a key file
    that is not a key, data-encryption keys missing or wrong)."""
    expect = _expected(args.expect_report)
    given = args.checkpoint or []
    if given and not args.public_key:
        raise CliError("--checkpoint needs --public-key (the key the checkpoints were signed with)")
    checkpoints = [(Path(path).name, read_checkpoint(path)) for path in given]
    public_key = PublicKey.load(args.public_key) if args.public_key else None
    actor = actor_of(args)  # checked before the database is opened
    with _engine(args) as mc:
        authorize(mc, actor, Action.VERIFY_EVIDENCE)
        result = verify(
            _store(mc),
            expect_reports=expect,
            checkpoints=checkpoints,
            public_key=public_key,
            workers=args.workers,
        )
    code = Exit.FINDINGS if result.findings else Exit.ENVIRONMENT if result.unverifiable else 0
    if code is Exit.ENVIRONMENT:
        print(fail_line("audit verify", result.unverifiable[0]), file=sys.stderr)
    if args.json:
        say(None, json.dumps(audit_json(result), ensure_ascii=False, indent=2))
        return code
    for finding in result.findings:
        say(None, f"TAMPERED {finding}")
    for why in result.unverifiable:
        say(None, f"CANNOT VERIFY {why}")
    if result.ok:
        verdict = "all verify"
    else:
        parts = [f"{len(result.findings)} findings"] if result.findings else []
        if result.unverifiable:
            parts.append("some data cannot be verified with these keys")
        verdict = "; ".join(parts)
    say(
        None,
        f"checked {result.cases} cases, {result.events} events, {result.reports} reports: "
        + verdict,
    )
    return code


def cmd_retention_purge(args: argparse.Namespace) -> int:
    now = None
    if args.now:
        try:
            now = dt.datetime.fromisoformat(args.now)
        except ValueError:
            raise CliError(f"--now {args.now[:40]!r}: not an ISO 8601 time") from None
        if now.utcoffset() is None:
            raise CliError(f"--now {args.now!r}: give an offset, e.g. +08:00")
    root = recordings_root(args, required=False)
    # The purge neither encrypts nor decrypts: it runs on a throwaway key, so retention
    # never depends on the key holder (nor on MOVECAR_KEYS being well formed). Removing
    # audio needs no key either: a recording's file goes whole.
    with _engine(args, keys=KeyRing([("purge-only", KeyRing.generate())])) as mc:
        store = _store(mc)
        files = None
        if root is not None:
            files = FileRecordingStore(root, store.keys, evidence=store, clock=store.clock)
        result = store.purge(now=now, dry_run=args.dry_run, actor=args.actor, recordings=files)
        pending = [] if result.dry_run else store.audio_pending()
    verb = "would purge" if result.dry_run else "purged"
    for case_id in result.cases:
        say(None, f"{verb} {case_id}")
    for case_id in result.held:
        say(None, f"kept {case_id} (legal hold)")
    if files is not None:
        say(None, f"removed the audio of {result.audio_removed} recordings (their SHA-256 kept)")
    else:
        for location in result.recordings:
            say(None, f"delete audio {location}")
        if pending:
            say(None, f"{len(pending)} purged cases still have audio: run with --recordings DIR")
    say(None, f"{verb} {len(result.cases)} cases {result.cutoff_note}")
    return Exit.OK


def cmd_keys_new(args: argparse.Namespace) -> int:
    key_id = args.id or dt.datetime.now(dt.UTC).strftime("k%Y%m%d")
    try:
        KeyRing([(key_id, KeyRing.generate())], source="--id")  # checks the id's form
    except KeyConfigError as exc:
        raise CliError(str(exc)) from None
    say(None, f"{key_id}={KeyRing.generate()}")
    print(
        "put it first in MOVECAR_KEYS (keep the old keys after it), then run `movecar keys rotate`",
        file=sys.stderr,
    )
    return Exit.OK


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    """Exit 0 when every phone is bound under the newest key, 3 when some are left."""
    root = recordings_root(args, required=False)
    with _engine(args) as mc:
        store = _store(mc)
        changed = store.rotate_keys()
        left = store.rotation_pending()
    say(None, f"re-encrypted {changed} events under key {store.keys.current_id!r}")
    if root is not None:
        files = FileRecordingStore(root, store.keys, evidence=store, clock=store.clock)
        say(None, f"rewrapped the data keys of {files.rotate_keys()} recordings")
        left += files.rotation_pending()
    if left:
        raise CliError(
            f"{left} stored phone values or recordings were left as they were: they do not "
            "open in their place or under the configured keys (`movecar audit verify` names "
            "the cases)",
            Exit.ENVIRONMENT,
        )
    return Exit.OK


def _db_option(parser: argparse.ArgumentParser) -> None:
    # Also accepted after the sub-command; SUPPRESS keeps a global --db from being reset.
    parser.add_argument(
        "--db",
        default=argparse.SUPPRESS,
        metavar="URL",
        help="database URL (default: $MOVECAR_DB_URL, movecar.toml, or sqlite:///movecar.db)",
    )


def register(subparsers: Any) -> None:
    """Add ``db``, ``audit``, ``retention`` and ``keys`` to the ``movecar`` parser."""
    db = subparsers.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="migrate the schema to the newest revision")
    _db_option(up)
    up.set_defaults(func=cmd_db_upgrade)

    audit = subparsers.add_parser("audit", help="tamper evidence (七(三), 五(三))")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    ver = audit_sub.add_parser(
        "verify", help="recompute hash chains and report digests; name what was changed"
    )
    _db_option(ver)
    ver.add_argument(
        "--expect-report",
        action="append",
        metavar="MONTH=DIGEST",
        help="a digest Party A received for a month's report (repeatable)",
    )
    ver.add_argument(
        "--checkpoint",
        action="append",
        metavar="FILE",
        help="a signed checkpoint Party A holds (repeatable; needs --public-key)",
    )
    ver.add_argument(
        "--public-key",
        metavar="PATH.pub",
        help="the ledger's public key: checks the given and the stored checkpoints' signatures",
    )
    ver.add_argument(
        "--workers",
        type=count_1_to_64,
        metavar="N",
        help="processes checking cases (1-64; default: one per core, up to 4, from 10,000 cases)",
    )
    ver.add_argument("--json", action="store_true", help="print JSON instead of lines")
    actor_options(ver, what="who verifies")
    ver.set_defaults(func=cmd_audit_verify)

    retention = subparsers.add_parser("retention", help="二(四) 3-year retention")
    retention_sub = retention.add_subparsers(dest="retention_command", required=True)
    purge = retention_sub.add_parser(
        "purge", help="remove cases closed at least 3 years ago (never under legal hold)"
    )
    _db_option(purge)
    purge.add_argument("--dry-run", action="store_true", help="list, delete nothing")
    purge.add_argument(
        "--now",
        help="ISO time with offset to purge as of (default: now); "
        "never later than the wall clock beyond a few minutes",
    )
    purge.add_argument("--actor", default="retention", help="name in the access log")
    recordings_option(purge)
    purge.set_defaults(func=cmd_retention_purge)

    keys = subparsers.add_parser("keys", help="encryption keys for phone numbers")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="print a new key as id=KEY")
    new.add_argument("--id", help="key id (default: k<today>)")
    new.set_defaults(func=cmd_keys_new)
    rotate = keys_sub.add_parser("rotate", help="re-encrypt stored phones under the newest key")
    _db_option(rotate)
    recordings_option(rotate)
    rotate.set_defaults(func=cmd_keys_rotate)
