"""Ledger sub-commands of the ``movecar`` console script (the evidence ledger, 七(三)/五(三)).

* ``movecar ledger keygen --out PATH``     a new Ed25519 signing key (PEM, mode 0600) and
  ``PATH.pub``; needs no database (a ``--db`` given anyway is ignored)
* ``movecar ledger checkpoint --signing-key PATH [--out FILE]``  sequence the pending
  leaves and sign the tree head; the checkpoint (JSON) goes to ``FILE`` or stdout
* ``movecar ledger sequence``               give pending leaves their indices (the worker
  does this too)
* ``movecar ledger prove --old FILE --new FILE``  an RFC 6962 consistency proof between
  two checkpoints, for Party A to check with ``movecar ledger check-proof``
* ``movecar ledger check-proof PROOF --public-key PATH.pub``  verify a proof with nothing
  but the public key (no database)

Exit codes: :mod:`movecar_adapters.cli_common`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from movecar_adapters.cli_common import CliError, Exit, database_of, say
from movecar_adapters.connect import connect
from movecar_adapters.signing import PublicKey, SigningKey, read_bounded
from movecar_adapters.sql.store import SqlStore
from movecar_core.errors import MoveCarError
from movecar_core.ledger import Checkpoint, InvalidProof, verify_consistency

#: Largest checkpoint or proof file read (a checkpoint is ~400 bytes, a proof ~ 5 KiB).
MAX_FILE = 64 * 1024
PROOF_FORMAT = "movecar-consistency-proof/1"


def read_checkpoint(path: str) -> Checkpoint:
    """A checkpoint file; missing or not a checkpoint is bad input (exit 2)."""
    return Checkpoint.parse(_read_text(path, "checkpoint"))


def _read_text(path: str, what: str) -> str:
    p = Path(path)
    try:
        data = read_bounded(p, MAX_FILE)
    except OSError as exc:
        raise CliError(f"{what} {p.name}: cannot be read ({exc.strerror})") from None
    if data is None:
        raise CliError(f"{what} {p.name}: larger than any {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{what} {p.name}: not UTF-8 text") from None


def _store(args: argparse.Namespace) -> tuple[Any, SqlStore]:
    mc = connect(database_of(args, f"movecar ledger {args.ledger_command}"), config=args.config)
    if not isinstance(mc.store, SqlStore):  # pragma: no cover - database_of refuses memory
        raise CliError("the ledger needs a database")
    return mc, mc.store


def _write_out(path: str | None, text: str) -> None:
    if path is None:
        say(None, text)
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    except FileExistsError:
        raise CliError(f"--out {Path(path).name}: exists (never overwritten)") from None
    except OSError as exc:
        why = f"--out {Path(path).name}: cannot write ({exc.strerror})"
        raise CliError(why, Exit.ENVIRONMENT) from None


def cmd_keygen(args: argparse.Namespace) -> int:
    for p in (Path(args.out), Path(args.out + ".pub")):
        if p.exists() or p.is_symlink():
            raise CliError(f"--out: {p.name} exists (a key is never overwritten)")
    key = SigningKey.generate()
    private, public = key.write(args.out)
    say(
        None,
        f"key {key.key_id}: private {private} (keep it off the database host), public {public}",
    )
    print("give the .pub file to Party A (甲方); it verifies every checkpoint", file=sys.stderr)
    return Exit.OK


def cmd_checkpoint(args: argparse.Namespace) -> int:
    key = SigningKey.load(args.signing_key)  # before the database: a bad key changes nothing
    mc, store = _store(args)
    with mc:
        cp = store.checkpoint(key)
    _write_out(args.out, cp.to_json())
    if args.out:
        say(None, f"checkpoint: {cp.size} leaves, root {cp.root[:16]}…, written to {args.out}")
    return Exit.OK


def cmd_sequence(args: argparse.Namespace) -> int:
    mc, store = _store(args)
    with mc:
        head = store.sequence()
    say(None, f"ledger: {head.size} leaves sequenced, root {head.root}")
    return Exit.OK


def cmd_prove(args: argparse.Namespace) -> int:
    old, new = read_checkpoint(args.old), read_checkpoint(args.new)
    if old.size > new.size:
        raise CliError("--old covers more leaves than --new: give them the other way round")
    mc, store = _store(args)
    with mc:
        proof = store.prove_consistency(old, new)
    body = {
        "format": PROOF_FORMAT,
        "old": json.loads(old.to_json()),
        "new": json.loads(new.to_json()),
        "proof": proof,
    }
    _write_out(args.out, json.dumps(body, indent=2))
    return Exit.OK


def cmd_check_proof(args: argparse.Namespace) -> int:
    """Exit 0 when both checkpoints verify and the old one is a prefix of the new one,
    1 when not (a finding), 2 when the file is not a proof."""
    key = PublicKey.load(args.public_key)
    try:
        body = json.loads(_read_text(args.proof, "proof"))
        if not isinstance(body, dict) or body.get("format") != PROOF_FORMAT:
            raise InvalidProof(f"not a {PROOF_FORMAT} file")
        old = Checkpoint.parse(json.dumps(body["old"]))
        new = Checkpoint.parse(json.dumps(body["new"]))
        proof = body["proof"]
        consistent = verify_consistency(old.size, old.root, new.size, new.root, proof)
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        if isinstance(exc, MoveCarError):
            raise
        raise CliError(f"proof {Path(args.proof).name}: not a consistency proof") from None
    findings = [
        f"checkpoint {name} does not verify under key {key.key_id}"
        for name, cp in (("old", old), ("new", new))
        if not key.verifies(cp)
    ]
    if not consistent:
        findings.append(f"the tree of {old.size} leaves is not a prefix of the tree of {new.size}")
    for line in findings:
        say(None, f"TAMPERED {line}")
    if findings:
        return Exit.FINDINGS
    say(None, f"consistent: the {old.size} leaves signed earlier are the first of {new.size}")
    return Exit.OK


def register(subparsers: Any) -> None:
    """Add ``ledger`` to the ``movecar`` parser."""
    ledger = subparsers.add_parser("ledger", help="the evidence ledger: keys, checkpoints, proofs")
    sub = ledger.add_subparsers(dest="ledger_command", required=True)

    def db(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--db", default=argparse.SUPPRESS, metavar="URL", help="database URL")

    keygen = sub.add_parser("keygen", help="a new Ed25519 signing key and PATH.pub")
    keygen.add_argument("--out", required=True, metavar="PATH", help="private key file to make")
    db(keygen)  # accepted and ignored: keygen touches no database
    keygen.set_defaults(func=cmd_keygen)

    cp = sub.add_parser("checkpoint", help="sequence pending leaves, sign the tree head")
    cp.add_argument("--signing-key", required=True, metavar="PATH")
    cp.add_argument("--out", metavar="FILE", help="write the checkpoint here (default: stdout)")
    db(cp)
    cp.set_defaults(func=cmd_checkpoint)

    seq = sub.add_parser("sequence", help="give pending leaves their indices")
    db(seq)
    seq.set_defaults(func=cmd_sequence)

    prove = sub.add_parser("prove", help="consistency proof between two checkpoints")
    prove.add_argument("--old", required=True, metavar="FILE")
    prove.add_argument("--new", required=True, metavar="FILE")
    prove.add_argument("--out", metavar="FILE", help="write the proof here (default: stdout)")
    db(prove)
    prove.set_defaults(func=cmd_prove)

    check = sub.add_parser("check-proof", help="verify a consistency proof (no database)")
    check.add_argument("proof", metavar="PROOF")
    check.add_argument("--public-key", required=True, metavar="PATH.pub")
    check.set_defaults(func=cmd_check_proof)
