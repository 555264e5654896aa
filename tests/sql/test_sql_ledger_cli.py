"""`movecar ledger ...` and `movecar audit verify --checkpoint`: the operator's and Party
A's commands, with the exit codes of the CLI contract (0 ok, 1 findings, 2 bad input,
3 cannot verify)."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from movecar_adapters.cli import main
from movecar_adapters.connect import connect
from movecar_adapters.crypto import KeyRing
from movecar_core.testing.contracts import sample_history

KEY = KeyRing.generate()


def run(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    for name in ("MOVECAR_DB_URL", "MOVECAR_CONFIG", "MOVECAR_DISPATCH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MOVECAR_KEYS", f"k1={KEY}")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path, Path]:
    """A database with two cases, a signing key, and a first checkpoint."""
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'm.db'}"
    with connect(url, keys=KeyRing([("k1", KEY)]), environ={}) as mc:
        for case_id in ("c-1", "c-2"):
            mc.store.append(case_id, sample_history(case_id), expected_version=0)
    code, out, _ = run(
        ["ledger", "keygen", "--out", "signing.key", "--db", "nonsense"], monkeypatch
    )
    assert code == 0 and "signing.key.pub" in out
    code, _, err = run(
        ["ledger", "checkpoint", "--signing-key", "signing.key", "--db", url, "--out", "cp1.json"],
        monkeypatch,
    )
    assert code == 0, err
    return url, tmp_path / "signing.key", tmp_path / "cp1.json"


def test_keygen_writes_a_private_key_only_its_owner_reads(
    ledger: tuple[str, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, key, _ = ledger
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.with_name("signing.key.pub").read_text().startswith("-----BEGIN PUBLIC KEY")
    code, _, err = run(["ledger", "keygen", "--out", "signing.key"], monkeypatch)
    assert code == 2 and "never overwritten" in err and err.count("\n") == 1


def test_a_checkpoint_verifies_and_tampering_is_found(
    ledger: tuple[str, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, key, cp = ledger
    body = json.loads(cp.read_text())
    assert set(body) == {"format", "size", "root", "issued_at", "key_id", "signature"}
    assert body["size"] > 0
    verify = [
        "audit",
        "verify",
        "--actor",
        "audit-1",
        "--role",
        "auditor",
        "--db",
        url,
        "--checkpoint",
        str(cp),
        "--public-key",
        f"{key}.pub",
    ]
    code, out, _ = run(verify, monkeypatch)
    assert code == 0 and "all verify" in out
    db = url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE mc_owner_lookups SET agent_id = 'nobody'")
    code, out, err = run(verify, monkeypatch)
    found = "TAMPERED case c-1: look-up row v2 differs from its event"
    assert code == 1 and found in out, (out, err)


@pytest.mark.parametrize(
    ("make", "code", "word"),
    [
        (lambda p: None, 2, "cannot be read"),
        (lambda p: p.write_text("{}"), 2, "needs exactly the fields"),
        (lambda p: p.write_bytes(b"\xff\xfe"), 2, "not UTF-8"),
        (lambda p: p.write_text("[" * 4000), 2, "not JSON"),
        (lambda p: p.write_text(" " * 100_000), 2, "larger than"),
    ],
)
def test_a_checkpoint_file_that_is_not_one(  # noqa: PLR0917 - fixtures and parameters
    ledger: tuple[str, Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    make: object,
    code: int,
    word: str,
) -> None:
    url, key, _ = ledger
    bad = tmp_path / "bad.json"
    make(bad)  # type: ignore[operator]
    argv = [
        "audit",
        "verify",
        "--actor",
        "audit-1",
        "--role",
        "auditor",
        "--db",
        url,
        "--checkpoint",
        str(bad),
        "--public-key",
        f"{key}.pub",
    ]
    got, out, err = run(argv, monkeypatch)
    assert (got, err.count("\n")) == (code, 1) and word in err, err
    assert not out


def test_usage_and_key_files(
    ledger: tuple[str, Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, key, cp = ledger
    code, _, err = run(
        [
            "audit",
            "verify",
            "--actor",
            "audit-1",
            "--role",
            "auditor",
            "--db",
            url,
            "--checkpoint",
            str(cp),
        ],
        monkeypatch,
    )
    assert code == 2 and "--public-key" in err
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("not a key")
    argv = [
        "audit",
        "verify",
        "--actor",
        "audit-1",
        "--role",
        "auditor",
        "--db",
        url,
        "--checkpoint",
        str(cp),
        "--public-key",
        str(garbage),
    ]
    code, _, err = run(argv, monkeypatch)
    assert code == 3 and "not a PEM public key" in err
    os.chmod(key, 0o644)
    code, _, err = run(
        ["ledger", "checkpoint", "--signing-key", str(key), "--db", url], monkeypatch
    )
    assert code == 3 and "readable by others" in err
    code, _, err = run(["ledger", "checkpoint", "--signing-key", str(cp), "--db", url], monkeypatch)
    assert code == 3


def test_another_keys_checkpoint_is_a_finding(
    ledger: tuple[str, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _, cp = ledger
    assert run(["ledger", "keygen", "--out", "other.key"], monkeypatch)[0] == 0
    argv = [
        "audit",
        "verify",
        "--actor",
        "110-desk-2",
        "--role",
        "command_centre",
        "--db",
        url,
        "--checkpoint",
        str(cp),
        "--public-key",
        "other.key.pub",
    ]
    code, out, _ = run(argv, monkeypatch)
    assert code == 1 and "another key" in out


def test_party_a_checks_a_consistency_proof_without_the_database(
    ledger: tuple[str, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, key, cp1 = ledger
    with connect(url, keys=KeyRing([("k1", KEY)]), environ={}) as mc:
        now = dt.datetime.now(dt.UTC)  # after the first checkpoint: the past is sealed
        mc.store.append("c-3", sample_history("c-3", at=now), expected_version=0)
    sign = ["ledger", "checkpoint", "--signing-key", str(key), "--db", url, "--out", "cp2.json"]
    assert run(sign, monkeypatch)[0] == 0
    prove = ["ledger", "prove", "--old", str(cp1), "--new", "cp2.json", "--db", url]
    code, _, _ = run([*prove, "--out", "proof.json"], monkeypatch)
    assert code == 0
    check = ["ledger", "check-proof", "proof.json", "--public-key", f"{key}.pub"]
    code, out, _ = run(check, monkeypatch)
    assert code == 0 and "consistent" in out
    body = json.loads(Path("proof.json").read_text())
    body["old"]["root"] = "0" * 64  # the operator rewrote what it signed before
    Path("forged.json").write_text(json.dumps(body))
    code, out, _ = run(
        ["ledger", "check-proof", "forged.json", "--public-key", f"{key}.pub"], monkeypatch
    )
    assert code == 1 and "TAMPERED" in out
    Path("junk.json").write_text("[]")
    code, _, err = run(
        ["ledger", "check-proof", "junk.json", "--public-key", f"{key}.pub"], monkeypatch
    )
    assert code == 2 and err.count("\n") == 1
