"""``movecar simulate``: the main job from the command line, as a newcomer runs it."""

from __future__ import annotations

import builtins
import io
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

from movecar_adapters import cli_simulate
from movecar_adapters.cli import main

SCENARIOS = Path(__file__).resolve().parent.parent / "examples" / "scenarios"
SMALL = ["--volume", "3000"]


def test_defaults_write_a_report_and_json_on_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MOVECAR_KEYS", raising=False)
    assert main(["simulate", *SMALL, "--json", "run.json"]) == 0
    said = capsys.readouterr().out
    assert "on sqlite" in said and "movecar-simulation/report.md" in said
    out = tmp_path / "movecar-simulation"
    assert (out / "simulation.db").exists()
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Contract findings" in report and "## Seat planning" in report
    data = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    (month,) = data["months"]
    for key in ("month", "inbound", "connected", "billable_calls", "provisional_fee"):
        assert key in month
    assert data["seed"] == 2024 and isinstance(data["findings"], list)
    assert month["month"] == "2024-04" and month["billable_calls"] == month["connected"] > 0


def test_the_same_options_give_the_same_bytes(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        args = ["simulate", str(SCENARIOS / "unreliable_switch.toml"), *SMALL, "--seed", "5"]
        assert (
            main([*args, "--store", "memory", "--out", str(out), "--json", str(out / "r.json")])
            == 0
        )
        runs.append(
            tuple((out / name).read_bytes() for name in ("r.json", "report.md", "report.html"))
        )
    assert runs[0] == runs[1]
    data = json.loads(runs[0][0])
    assert data["options"]["faults"] is True and data["findings"]


def test_json_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["simulate", *SMALL, "--store", "memory", "--out", str(tmp_path), "--json", "-"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["format"] == "movecar-simulation/1"
    assert "simulated 1 month(s)" in captured.err


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (["missing.toml"], 2, "cannot read it"),
        (["--volume", "3500001"], 2, "calls a year"),
        (["--volume", "-1"], 2, "calls a year"),
        (["--start", "2024-13"], 2, "YYYY-MM"),
        (["--months", "0"], 2, "1 to 36"),
        (["--seed", "x"], 2, "whole number"),
        (["--start", "2023-01"], 2, "outside the contract"),
        (["--start", "2026-12"], 3, "2027"),
    ],
)
def test_bad_input_is_one_line_and_an_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, said: str
) -> None:
    assert main(["simulate", *args, "--store", "memory", "--out", str(tmp_path)]) == code
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_a_scenario_file_that_is_not_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"calls_per_year = 'many'\n")
    assert main(["simulate", str(bad), "--store", "memory", "--out", str(tmp_path)]) == 2
    assert "calls_per_year" in capsys.readouterr().err
    bad.write_bytes(b"\xff\xfe")
    assert main(["simulate", str(bad), "--store", "memory", "--out", str(tmp_path)]) == 2


def test_a_broken_invariant_prints_the_command_that_reproduces_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from movecar_core.simulation import run as model

    real = model.fold

    def off_by_one(events: object) -> object:  # a bug in the engine, as a test can make one
        record = real(events)  # type: ignore[arg-type]
        return (
            attrs.evolve(record, version=record.version + 1)
            if record.case_id[0] in "0123"
            else record
        )

    monkeypatch.setattr(model, "fold", off_by_one)
    args = ["simulate", *SMALL, "--seed", "17", "--store", "memory", "--out", str(tmp_path)]
    assert main(args) == 1
    first = capsys.readouterr().err
    assert "invariant broken" in first and "seed 17" in first
    command = first.split("reproduce: ", 1)[1].strip()
    assert command.startswith("movecar simulate --seed 17 --volume 3000")
    again = shlex.split(command)[1:]
    assert main([*again, "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err == first  # the same run, the same failure


# --- the progress bar (on a terminal only) --------------------------------------------------


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        super().isatty()  # raises on a closed stream, as a real terminal's does
        return True


def test_a_progress_bar_only_on_a_terminal() -> None:
    assert cli_simulate.progress_wanted(FakeTerminal())
    assert not cli_simulate.progress_wanted(io.StringIO())
    closed = FakeTerminal()
    closed.close()
    assert not cli_simulate.progress_wanted(closed)
    assert cli_simulate.progress_bar(io.StringIO()) is None
    assert isinstance(cli_simulate.progress_bar(FakeTerminal()), cli_simulate.ProgressBar)


def test_the_bar_waits_a_few_seconds_before_it_shows() -> None:
    now = [100.0]
    screen = FakeTerminal()
    bar = cli_simulate.ProgressBar(screen, clock=lambda: now[0])
    bar(1, 720)
    now[0] += cli_simulate.PROGRESS_AFTER_S - 0.1
    bar(2, 720)
    assert not bar.shown and screen.getvalue() == ""  # a short run never flickers a bar
    now[0] += 0.2
    bar(3, 720)
    bar(720, 720)
    assert bar.shown
    bar.close()
    assert screen.getvalue()  # drawn on the stream it was given, and erased


def test_no_bar_without_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    real = builtins.__import__

    def fake(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".", maxsplit=1)[0] == "rich":
            raise ModuleNotFoundError(name=name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    assert cli_simulate.progress_bar(FakeTerminal()) is None


def test_the_bar_goes_to_the_terminal_never_into_json_on_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    made: list[cli_simulate.ProgressBar | None] = []
    real = cli_simulate.progress_bar

    def spy(stream: Any, **kwargs: Any) -> cli_simulate.ProgressBar | None:
        made.append(real(stream, **kwargs))
        return made[-1]

    monkeypatch.setattr(cli_simulate, "progress_bar", spy)
    monkeypatch.setattr(cli_simulate, "PROGRESS_AFTER_S", 0.0)
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    args = ["simulate", *SMALL, "--store", "memory", "--out", str(tmp_path), "--json", "-"]
    assert main(args) == 0
    (bar,) = made
    assert bar is not None and bar.shown
    assert json.loads(capsys.readouterr().out)["format"] == "movecar-simulation/1"
    # The bar is erased; the summary is still the last line.
    assert "simulated 1 month(s)" in terminal.getvalue().splitlines()[-1]
