"""Recording sub-commands of the ``movecar`` console script (二(四) 录音提取).

* ``movecar recording extract --call KEY [--case ID] --actor ID --role ROLE --out FILE``
  writes a call's audio to a new file (mode 0600) for an actor whose role may extract
  (``command_centre``, ``supervisor``); the extraction, or its refusal, is logged in the
  access log (七(三)) before anything is written
* ``movecar recording show --call KEY [--case ID] --actor ID --role ROLE [--json]``
  prints a recording's metadata: SHA-256, size, duration, times (no audio; every role)

The recordings are in ``--recordings DIR``, else ``$MOVECAR_RECORDINGS``; the database
(the evidence and the access log) and the keys are found as for every command. The case
is ``--case``, else the case part of an engine call key (``<case id>:call:<attempt>``).
Exit codes (:mod:`movecar_adapters.cli_common`): 2 for a refused role, an unknown call, a
purged recording or an existing ``--out`` file; 3 for a recording that fails its checks,
a missing key or folder.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from movecar_adapters.cli_common import CliError, Exit, actor_of, actor_options, database_of, say
from movecar_adapters.connect import connect
from movecar_adapters.recordings_fs import FileRecordingStore
from movecar_adapters.sql.store import SqlStore
from movecar_core.app import MoveCar
from movecar_core.calls import parse_call_key
from movecar_core.errors import InvalidCommand
from movecar_core.roles import Action, require

ENV_RECORDINGS = "MOVECAR_RECORDINGS"


def recordings_root(args: argparse.Namespace, *, required: bool = True) -> Path | None:
    """``--recordings``, else ``$MOVECAR_RECORDINGS``: an existing folder."""
    given = getattr(args, "recordings", None) or os.environ.get(ENV_RECORDINGS)
    if not given:
        if not required:
            return None
        raise CliError(f"needs --recordings DIR (or {ENV_RECORDINGS}): where the audio is kept")
    root = Path(given)
    if not root.is_dir():
        raise CliError(f"recordings folder {given[:200]!r} does not exist", Exit.ENVIRONMENT)
    return root


def _engine(args: argparse.Namespace) -> MoveCar:
    url = database_of(args, f"movecar {args.command}")
    return connect(url, config=args.config, upgrade=False)


def _files(mc: MoveCar, root: Path) -> FileRecordingStore:
    store = mc.store
    assert isinstance(store, SqlStore)  # connect() gives a SqlStore for a database URL
    return FileRecordingStore(root, store.keys, evidence=store, clock=store.clock)


def _case(args: argparse.Namespace) -> str:
    if args.case:
        return str(args.case)
    try:
        return parse_call_key(str(args.call))[0]
    except InvalidCommand:
        raise CliError(
            "--call is not an engine call key (<case id>:call:<n>): give --case too"
        ) from None


def cmd_recording_extract(args: argparse.Namespace) -> int:
    actor = actor_of(args)
    case_id = _case(args)
    root = recordings_root(args)
    assert root is not None
    out = Path(args.out)
    try:  # made first, never replacing a file: the audio goes nowhere else
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CliError(f"--out {args.out[:200]!r} exists: name a new file") from None
    done = False
    try:
        with _engine(args) as mc:
            audio = _files(mc, root).extract(case_id, args.call, actor)
        with os.fdopen(fd, "wb") as stream:
            fd = -1
            stream.write(audio)
            stream.flush()
            os.fsync(stream.fileno())
        done = True
    finally:
        if fd >= 0:
            os.close(fd)
        if not done:
            with contextlib.suppress(OSError):
                out.unlink()
    say(
        None,
        f"extracted case {case_id} call {args.call}: {len(audio)} bytes, "
        f"sha256 {hashlib.sha256(audio).hexdigest()} -> {out}",
    )
    return Exit.OK


def cmd_recording_show(args: argparse.Namespace) -> int:
    # Every role may read metadata (no personal data in it); the check names a bad role.
    require(actor_of(args), Action.READ_RECORDING_METADATA)
    case_id = _case(args)
    root = recordings_root(args)
    assert root is not None
    with _engine(args) as mc:
        ref = _files(mc, root).metadata(case_id, args.call)
    shown: dict[str, Any] = {
        "case_id": ref.case_id,
        "call_key": ref.call_key,
        "sha256": ref.sha256,
        "size": ref.size,
        "duration_ms": ref.duration_ms,
        "recorded_at": ref.recorded_at.isoformat(),
        "location": ref.location,
        "purged_at": None if ref.purged_at is None else ref.purged_at.isoformat(),
    }
    if args.json:
        say(None, json.dumps(shown, ensure_ascii=False, indent=2))
    else:
        for key, value in shown.items():
            say(None, f"{key}: {value}")
    return Exit.OK


def recordings_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recordings",
        metavar="DIR",
        help=f"the recording store's folder (default: ${ENV_RECORDINGS})",
    )


def register(subparsers: Any) -> None:
    """Add ``recording extract`` and ``recording show`` to the ``movecar`` parser."""
    rec = subparsers.add_parser("recording", help="call recordings (二(四) 录音提取)")
    sub = rec.add_subparsers(dest="recording_command", required=True)
    for name, func, helptext in (
        ("extract", cmd_recording_extract, "write a call's audio to a new file (logged)"),
        ("show", cmd_recording_show, "print a recording's metadata and SHA-256"),
    ):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("--db", default=argparse.SUPPRESS, metavar="URL", help="database URL")
        recordings_option(cmd)
        cmd.add_argument("--call", required=True, metavar="KEY", help="the call key")
        cmd.add_argument("--case", metavar="ID", help="the case (default: from the call key)")
        actor_options(cmd, what="who asks")
        if name == "extract":
            cmd.add_argument("--out", required=True, metavar="FILE", help="a new file")
        else:
            cmd.add_argument("--json", action="store_true", help="print JSON")
        cmd.set_defaults(func=func)
