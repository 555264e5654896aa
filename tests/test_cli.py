"""The ``movecar`` console script, as installed."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from adapters.cli import main, run_demo
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


def test_unknown_command_fails_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_docs_show_the_current_diagram() -> None:
    from pathlib import Path

    from movecar_core.machine import mermaid

    docs = Path(__file__).resolve().parent.parent / "docs" / "cases.md"
    assert mermaid().rstrip() in docs.read_text(encoding="utf-8"), (
        "docs/cases.md is stale: paste the output of `movecar diagram`"
    )
