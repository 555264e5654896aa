"""``movecar registry load-mirror FILE``: load the platform's extract into the mirror table.

二(二): a host that receives the traffic-police platform's nightly extract loads it with
this command, and the engine's look-ups read the mirror
(:class:`~movecar_adapters.registry_sql.SqlVehicleRegistry`, ``[registry] kind = "sql"``).
The CSV's first line names the columns ``plate``, ``owner_phone`` and optionally
``source`` and ``extracted_at``. Phones are sealed with the deployment's keys
(``MOVECAR_KEYS`` or ``keys.file``). The load is one transaction: a bad row (exit 2, its
line named, the phone masked) leaves the table as it was.

The database is ``--db``, else ``registry.url`` when it names a database, else the
store's (``MOVECAR_DB_URL``, ``movecar.toml``). There is deliberately no command that looks
a plate up: 四 allows vehicle data for moving cars only, so a look-up happens inside an
open case, where it is recorded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from movecar_adapters.cli_common import CliError, Exit, database_of, say
from movecar_adapters.config import load_settings, mask_url


def cmd_load_mirror(args: argparse.Namespace) -> int:
    from movecar_adapters.clock import SystemClock
    from movecar_adapters.crypto import KeyConfigError, KeyRing
    from movecar_adapters.registry_sql import (
        MIRROR_TABLE,
        create_mirror_table,
        load_mirror_csv,
    )
    from movecar_adapters.sql.engine import make_engine, open_engine

    settings = load_settings(args.config)
    url = args.db
    chosen = settings.registry
    if url is None and chosen is not None and chosen.kind == "sql" and chosen.url:
        url = chosen.url
    if url is None:
        url = database_of(args, "movecar registry load-mirror")
    if settings.keys_spec is None:
        raise KeyConfigError(
            "the mirror's phones are sealed at rest: set MOVECAR_KEYS or keys.file "
            "(the keys the engine reads them with)"
        )
    keys = KeyRing.from_config(settings.keys_spec, source=settings.keys_source or "keys")
    table = args.table or (
        chosen.options.get("table", MIRROR_TABLE) if chosen is not None else MIRROR_TABLE
    )
    source = args.source or (chosen.options.get("source") if chosen is not None else None)
    if not Path(args.file).is_file():
        raise CliError(f"{args.file[:200]}: no such file", Exit.ENVIRONMENT)
    if args.create:  # a new SQLite file may be made for the mirror
        try:
            engine = make_engine(url)
        except (ValueError, ImportError) as exc:
            raise CliError(f"database {mask_url(url)}: {exc}", Exit.ENVIRONMENT) from None
    else:  # without --create, a path with a typo is refused, not made a new database
        engine = open_engine(url, migrate=False)
    try:
        if args.create:
            create_mirror_table(engine, table)
        done = load_mirror_csv(
            engine,
            args.file,
            keys,
            now=SystemClock().now(),
            encoding=args.encoding,
            table=table,
            source=source or "mirror",
            merge=args.merge,
        )
    finally:
        engine.dispose()
    report: dict[str, Any] = {
        "table": done.table,
        "rows": done.rows,
        "removed": done.removed,
        "mode": "merge" if done.merged else "replace",
    }
    if args.json:
        say(None, json.dumps(report, sort_keys=True))
    else:
        say(
            None,
            f"load-mirror {done.table}: {done.rows} rows loaded ({report['mode']}), "
            f"{done.removed} removed",
        )
    return Exit.OK


def register(subparsers: Any) -> None:
    """Add ``registry`` to the ``movecar`` parser."""
    registry = subparsers.add_parser("registry", help="the owner data source (二(二))")
    sub = registry.add_subparsers(dest="registry_command", required=True, metavar="COMMAND")
    load = sub.add_parser(
        "load-mirror",
        help="load the platform's CSV extract into the mirror table (phones sealed)",
    )
    load.add_argument("file", metavar="FILE", help="CSV: plate,owner_phone[,source,extracted_at]")
    load.add_argument("--db", metavar="URL", help="the mirror's database")
    load.add_argument("--table", help="the mirror table (default mc_vehicle_mirror)")
    load.add_argument("--source", help="the source of rows without one (default mirror)")
    load.add_argument(
        "--merge",
        action="store_true",
        help="replace only the plates in FILE (default: FILE is the whole extract)",
    )
    load.add_argument("--create", action="store_true", help="create the table if missing")
    load.add_argument(
        "--encoding", default="utf-8-sig", help="the file's encoding (utf-8; gb18030 for GBK)"
    )
    load.add_argument("--json", action="store_true", help="print JSON")
    load.set_defaults(func=cmd_load_mirror)
