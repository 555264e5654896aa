"""The ``movecar`` console script, as installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from movecar_adapters.cli import main, run_demo
from movecar_core import CaseState


def test_demo_runs_five_cases_through_every_kind_of_ending() -> None:
    lines: list[str] = []
    mc = run_demo(lines.append)
    states = sorted(mc.case(c).state for c in mc.store.case_ids())
    assert states == sorted(
        [
            CaseState.MOVED,
            CaseState.MOVED,
            CaseState.ESCALATED_TO_110,
            CaseState.ESCALATED_TO_110,
            CaseState.UNRESOLVED,
        ]
    )
    text = "\n".join(lines)
    assert "0519-81997327" in text
    assert "13912345678" not in text  # histories are printed masked
    assert "139****5678" in text


def test_diagram_prints_mermaid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagram"]) == 0
    out = capsys.readouterr().out
    assert "stateDiagram-v2" in out
    assert "owner_located --> owner_called" in out


def test_console_script_is_installed() -> None:
    exe = shutil.which("movecar") or shutil.which("movecar", path=str(sys.prefix) + "/bin")
    assert exe is not None, "pip install -e . should install the movecar console script"
    done = subprocess.run([exe, "demo"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\ncase ") == 5


def test_unknown_command_fails_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and err.count("\n") == 1


def test_docs_show_the_current_diagram() -> None:
    from movecar_core.machine import mermaid

    docs = Path(__file__).resolve().parent.parent / "docs" / "cases.md"
    assert mermaid().rstrip() in docs.read_text(encoding="utf-8"), (
        "docs/cases.md is stale: paste the output of `movecar diagram`"
    )


def test_demo_on_the_embedded_sqlite_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from movecar_adapters.crypto import KeyRing

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MOVECAR_DB_URL", raising=False)
    monkeypatch.setenv("MOVECAR_KEYS", f"k1={KeyRing.generate()}")
    assert main(["demo", "--sqlite"]) == 0
    assert main(["demo", "--sqlite"]) == 0  # a second run adds to the same database
    out = capsys.readouterr().out
    assert "stored in sqlite:///movecar.db: 10 cases, 52 events; audit: all verify" in out
    assert (tmp_path / "movecar.db").exists()


def test_demo_without_keys_uses_a_database_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import tempfile

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MOVECAR_KEYS", raising=False)
    monkeypatch.delenv("MOVECAR_DB_URL", raising=False)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    assert main(["demo", "--sqlite"]) == 0
    out = capsys.readouterr().out
    assert "one-off key" in out
    assert "5 cases, 26 events; audit: all verify" in out
    assert not (tmp_path / "movecar.db").exists()
    assert list(temp.iterdir()) == []  # the one-off database is removed with its folder
    assert main(["demo", "--db", f"sqlite:///{tmp_path}/x.db"]) == 3  # no keys: refused
    assert "MOVECAR_KEYS" in capsys.readouterr().err
