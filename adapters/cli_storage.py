"""Storage sub-commands of the ``movecar`` console script.

``movecar_adapters.cli`` calls :func:`register` with its sub-parsers; this adds

* ``movecar db upgrade``                       migrate the schema (Alembic) to head
* ``movecar audit verify [--expect-report M=D]`` recompute every hash; name what changed
* ``movecar retention purge [--dry-run]``       二(四): remove what closed >= 3 years ago
* ``movecar keys new``                          print a new encryption key
* ``movecar keys rotate``                       re-encrypt phone numbers under the newest key

The database is ``--db URL``, else ``$MOVECAR_DB_URL``, else ``sqlite:///movecar.db``.
Keys come from ``$MOVECAR_KEYS`` ("newest_id=KEY,older_id=KEY"), never from the database.
Exit status: 0 fine, 1 the audit found tampering, 2 configuration or schema problem.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any, TextIO

from movecar_adapters.crypto import KeyConfigError, KeyRing
from movecar_adapters.sql.audit import verify
from movecar_adapters.sql.engine import current_revision, database_url, make_engine, upgrade
from movecar_adapters.sql.errors import SchemaNotReady, StorageError
from movecar_adapters.sql.store import SqlStore

OK, TAMPERED, CONFIG = 0, 1, 2


def _url(args: argparse.Namespace) -> str:
    return database_url(getattr(args, "db", None))


def _out(args: argparse.Namespace) -> TextIO:
    stream: TextIO = getattr(args, "stdout", None) or sys.stdout
    return stream


def _err(args: argparse.Namespace) -> TextIO:
    stream: TextIO = getattr(args, "stderr", None) or sys.stderr
    return stream


def _store(args: argparse.Namespace, keys: KeyRing) -> SqlStore:
    return SqlStore(make_engine(_url(args)), keys)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    engine = make_engine(_url(args))
    try:
        before = current_revision(engine)
        after = upgrade(engine)
    finally:
        engine.dispose()
    print(f"database {_url(args)}: schema {before or 'empty'} -> {after}", file=_out(args))
    return OK


def cmd_audit_verify(args: argparse.Namespace) -> int:
    expect: dict[str, str] = {}
    for item in args.expect_report or ():
        month, sep, digest = item.partition("=")
        if not sep or len(month) != 7:
            print(f"--expect-report {item!r}: expected MONTH=DIGEST", file=_err(args))
            return CONFIG
        expect[month] = digest
    try:
        store = _store(args, KeyRing.from_env())
    except (KeyConfigError, SchemaNotReady) as exc:
        print(f"audit verify: {exc}", file=_err(args))
        return CONFIG
    try:
        result = verify(store, expect_reports=expect)
    finally:
        store.engine.dispose()
    out = _out(args)
    for finding in result.findings:
        print(f"TAMPERED {finding}", file=out)
    print(
        f"checked {result.cases} cases, {result.events} events, {result.reports} reports: "
        + ("all verify" if result.ok else f"{len(result.findings)} findings"),
        file=out,
    )
    return OK if result.ok else TAMPERED


def cmd_retention_purge(args: argparse.Namespace) -> int:
    # The purge neither encrypts nor decrypts: without MOVECAR_KEYS it runs on a
    # throwaway key, so retention never depends on the key holder.
    try:
        keys = KeyRing.from_env()
    except KeyConfigError:
        keys = KeyRing([("purge-only", KeyRing.generate())])
    try:
        store = _store(args, keys)
    except SchemaNotReady as exc:
        print(f"retention purge: {exc}", file=_err(args))
        return CONFIG
    now = None
    if args.now:
        now = dt.datetime.fromisoformat(args.now)
        if now.tzinfo is None:
            print(f"--now {args.now!r}: give an offset, e.g. +08:00", file=_err(args))
            return CONFIG
    try:
        result = store.purge(now=now, dry_run=args.dry_run, actor=args.actor)
    finally:
        store.engine.dispose()
    out = _out(args)
    verb = "would purge" if result.dry_run else "purged"
    for case_id in result.cases:
        print(f"{verb} {case_id}", file=out)
    for case_id in result.held:
        print(f"kept {case_id} (legal hold)", file=out)
    for location in result.recordings:
        print(f"delete audio {location}", file=out)
    print(f"{verb} {len(result.cases)} cases {result.cutoff_note}", file=out)
    return OK


def cmd_keys_new(args: argparse.Namespace) -> int:
    key_id = args.id or dt.datetime.now(dt.UTC).strftime("k%Y%m%d")
    print(f"{key_id}={KeyRing.generate()}", file=_out(args))
    print(
        "put it first in MOVECAR_KEYS (keep the old keys after it), then run `movecar keys rotate`",
        file=_err(args),
    )
    return OK


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    try:
        store = _store(args, KeyRing.from_env())
    except (KeyConfigError, SchemaNotReady) as exc:
        print(f"keys rotate: {exc}", file=_err(args))
        return CONFIG
    try:
        changed = store.rotate_keys()
    except StorageError as exc:
        print(f"keys rotate: {exc}", file=_err(args))
        return CONFIG
    finally:
        store.engine.dispose()
    print(f"re-encrypted {changed} events under key {store.keys.current_id!r}", file=_out(args))
    return OK


def _db_option(parser: argparse.ArgumentParser) -> None:
    # Also accepted after the sub-command; SUPPRESS keeps a global --db from being reset.
    parser.add_argument(
        "--db",
        default=argparse.SUPPRESS,
        metavar="URL",
        help="database URL (default: $MOVECAR_DB_URL or sqlite:///movecar.db)",
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
    ver.set_defaults(func=cmd_audit_verify)

    retention = subparsers.add_parser("retention", help="二(四) 3-year retention")
    retention_sub = retention.add_subparsers(dest="retention_command", required=True)
    purge = retention_sub.add_parser(
        "purge", help="remove cases closed at least 3 years ago (never under legal hold)"
    )
    _db_option(purge)
    purge.add_argument("--dry-run", action="store_true", help="list, delete nothing")
    purge.add_argument("--now", help="ISO time with offset to purge as of (default: now)")
    purge.add_argument("--actor", default="retention", help="name in the access log")
    purge.set_defaults(func=cmd_retention_purge)

    keys = subparsers.add_parser("keys", help="encryption keys for phone numbers")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="print a new key as id=KEY")
    new.add_argument("--id", help="key id (default: k<today>)")
    new.set_defaults(func=cmd_keys_new)
    rotate = keys_sub.add_parser("rotate", help="re-encrypt stored phones under the newest key")
    _db_option(rotate)
    rotate.set_defaults(func=cmd_keys_rotate)
