"""``movecar sweep``: a grid of simulations in processes or on Dask, collected in one table
that does not depend on what ran it."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from movecar_adapters import sweep as sweep_module
from movecar_adapters.cli import main
from movecar_adapters.sweep import COLUMNS, Grid, _Helpers, run_point
from movecar_core.simulation import Scenario, SimulationFailed, SimulationResult

#: Eight points of one small month each (80 to 270 cases): well under a second a point.
GRID = ["--volume", "1000,3000", "--seeds", "1-2", "--max-call-attempts", "1,3"]


def tables(out: Path) -> tuple[bytes, ...]:
    return tuple((out / name).read_bytes() for name in ("table.csv", "table.json", "table.md"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, ...]:
    """The grid run point after point in this process (``--workers 1``)."""
    out = tmp_path_factory.mktemp("sweep-one")
    assert main(["sweep", *GRID, "--workers", "1", "--out", str(out)]) == 0
    return tables(out)


def test_the_table_has_a_row_per_point_in_grid_order(
    reference: tuple[bytes, ...],
) -> None:
    text_csv, text_json, text_md = reference
    rows = list(csv.DictReader(io.StringIO(text_csv.decode("utf-8"))))
    assert tuple(rows[0]) == COLUMNS
    grid = [(r["volume"], r["max_call_attempts"], r["seed"]) for r in rows]
    assert grid == [(v, a, s) for v in ("1000", "3000") for a in ("1", "3") for s in ("1", "2")]
    assert [r["point"] for r in rows] == [str(i) for i in range(1, 9)]
    for r in rows:
        assert r["status"] == "ok" and r["error"] == "" and int(r["cases"]) > 50
        assert r["billable_calls"] == r["connected"]
        assert r["true_up"] == ""  # no service year ended in one month
        # the policy reached the engine: one call a case at most with one attempt
        if r["max_call_attempts"] == "1":
            assert int(r["outbound_calls"]) <= int(r["cases"])
        else:
            assert int(r["outbound_calls"]) > int(r["cases"])
    data = json.loads(text_json)
    assert data["format"] == "movecar-sweep/1" and data["points"] == 8
    assert data["axes"]["seed"] == [1, 2] and data["axes"]["max_call_attempts"] == [1, 3]
    assert data["rows"][0]["provisional_fee"] == rows[0]["provisional_fee"]
    assert text_md.decode("utf-8").count("\n| ") == 9  # heading and 8 points


def test_two_processes_give_the_same_bytes_as_one(
    tmp_path: Path, reference: tuple[bytes, ...]
) -> None:
    assert main(["sweep", *GRID, "--workers", "2", "--out", str(tmp_path)]) == 0
    assert tables(tmp_path) == reference


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[str]:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        yield cluster.scheduler_address


def test_a_dask_cluster_gives_the_same_bytes(
    tmp_path: Path, reference: tuple[bytes, ...], dask_cluster: str
) -> None:
    assert main(["sweep", *GRID, "--dask", dask_cluster, "--out", str(tmp_path)]) == 0
    assert tables(tmp_path) == reference


def test_a_failing_point_is_a_row_with_its_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 2027-03 and the month after it lie beyond the contract's last possible day.
    args = ["sweep", "--volume", "1000", "--start", "2024-04,2027-03", "--months", "2"]
    assert main([*args, "--workers", "2", "--csv", str(tmp_path / "t.csv")]) == 2
    captured = capsys.readouterr()
    assert "| bad input |" in captured.out and "1 bad input" in captured.err
    ok, bad = csv.DictReader(io.StringIO((tmp_path / "t.csv").read_text(encoding="utf-8")))
    assert ok["status"] == "ok" and ok["error"] == ""
    assert bad["status"] == "bad input" and bad["cases"] == "" and bad["start"] == "2027-03"
    assert "outside the contract's possible term" in bad["error"]
    assert "\n" not in bad["error"] and "Traceback" not in bad["error"]


def test_a_broken_invariant_is_exit_1_and_the_other_points_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = sweep_module.run

    def breaks_on_seed_2(scenario: Scenario, seed: int, url: str, **kw: Any) -> SimulationResult:
        if seed == 2:
            raise SimulationFailed("invariant broken: case x: 4 outbound calls (seed 2)")
        return real(scenario, seed, url, **kw)

    monkeypatch.setattr(sweep_module, "run", breaks_on_seed_2)
    assert (
        main(["sweep", "--volume", "1000", "--seeds", "1-3", "--workers", "1", "--json", "-"]) == 1
    )
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["status"] for r in rows] == ["ok", "invariant broken", "ok"]
    assert rows[1]["error"] == "invariant broken: case x: 4 outbound calls (seed 2)"


def test_a_helper_that_dies_takes_only_its_point(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_Helpers, "child_module", "sweep_probe_dies")
    assert (
        main(["sweep", "--volume", "1000", "--seeds", "1-4", "--workers", "2", "--csv", "-"]) == 3
    )
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["status"] for r in rows] == ["ok", "environment", "ok", "ok"]
    assert rows[1]["error"] == "the helper process running this point ended (exit 9)"
    alone = run_point(Scenario(calls_per_year=1000), 3)
    assert rows[2]["cases"] == str(alone["cases"])


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--seeds", "1-x"], "seed 'x'"),
        (["--seeds", "5-1"], "ends before it starts"),
        (["--seeds", "1,1"], "seed: 1 is given twice"),
        (["--seeds", "1-20000"], "more than 10,000"),
        (["--volume", "3500001"], "volume"),
        (["--volume", "1000,"], "empty value"),
        (["--max-call-attempts", "0"], "max_call_attempts"),
        (["--start", "2024-13"], "YYYY-MM"),
        (["--months", "37"], "months"),
        (["--store", "postgres"], "--store"),
        (["--workers", "0"], "--workers"),
        (["--dask", "nowhere"], "Dask scheduler"),
        (["--dask", "tcp://127.0.0.1:1", "--workers", "2"], "not both"),
        (["--csv", "-", "--json", "-"], "both go to stdout"),
        (["--volume", "1000,2000", "--seeds", "1-5000", "--months", "1-2"], "20,000 points"),
        (["missing.toml"], "cannot read it"),
        (["--grid", "missing.toml"], "cannot read it"),
    ],
)
def test_bad_grid_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], said: str
) -> None:
    assert main(["sweep", *args]) == 2
    captured = capsys.readouterr()
    assert said in captured.err and len(captured.err.splitlines()) == 1
    assert "Traceback" not in captured.err and captured.out == ""


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("seeds = [1, 2]\nvolumes = [1000]\n", "volumes: unknown key"),
        ("seeds = [true]\n", "a whole number or text"),
        ("faults = 'yes'\n", "faults: must be true"),
        ("seeds = [\n", "not a TOML grid"),
        ("max_call_attempts = []\n", "an empty list"),
    ],
)
def test_a_grid_file_that_is_not_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, said: str
) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(text, encoding="utf-8")
    assert main(["sweep", "--grid", str(grid)]) == 2
    err = capsys.readouterr().err
    assert said in err and len(err.splitlines()) == 1


def test_a_grid_file_and_the_flags_that_override_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tiny.toml").write_text('name = "tiny"\ncalls_per_year = 2000\n', encoding="utf-8")
    grid = tmp_path / "grid.toml"
    grid.write_text(
        'scenario = "tiny.toml"\nseeds = "1-2"\nmax_call_attempts = [2, 3]\nfaults = true\n',
        encoding="utf-8",
    )
    args = ["sweep", "--grid", str(grid), "--seeds", "7", "--workers", "1", "--json", "-"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["scenario"] == "tiny" and data["scenario_file"] == str(tmp_path / "tiny.toml")
    assert data["axes"] == {
        "volume": [2000],
        "start": ["2024-04"],
        "months": [1],
        "faults": [True],
        "max_call_attempts": [2, 3],
        "seed": [7],
    }
    assert [(r["max_call_attempts"], r["seed"], r["faults"]) for r in data["rows"]] == [
        (2, 7, True),
        (3, 7, True),
    ]


def test_without_dask_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    assert main(["sweep", "--dask", "tcp://127.0.0.1:1"]) == 3
    err = capsys.readouterr().err
    assert "movecar[sweep]" in err and len(err.splitlines()) == 1


def test_an_unreachable_scheduler_is_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("distributed")
    monkeypatch.setattr(sweep_module, "DASK_CONNECT_TIMEOUT_S", 1)
    assert main(["sweep", "--dask", "tcp://127.0.0.1:1"]) == 3
    err = capsys.readouterr().err
    assert "cannot use the Dask scheduler at 'tcp://127.0.0.1:1'" in err
    assert len(err.splitlines()) == 1


def test_a_host_script_needs_no_main_guard(tmp_path: Path) -> None:
    """The helpers are not started by multiprocessing, so a script without
    ``if __name__ == "__main__"`` is not run again in each of them."""
    script = tmp_path / "host.py"
    script.write_text(
        textwrap.dedent(
            """
            import json
            from movecar_adapters.sweep import Grid, sweep

            print("host started", flush=True)
            rows = sweep(Grid(volumes=(1000,), seeds=(1, 2)).points(), workers=2)
            print(json.dumps([r["status"] for r in rows]))
            """
        ),
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["host started", '["ok", "ok"]']


#: Two points of about 20 s each.
SLOW = ["--volume", "300000", "--seeds", "1,2"]


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


@pytest.mark.skipif(
    not Path("/proc/self/task").exists(), reason="reads a process's children in /proc"
)
def test_ctrl_c_stops_the_helpers(tmp_path: Path) -> None:
    # The sweep must end at once, not when its points finish.
    sweep = subprocess.Popen(
        [sys.executable, "-m", "movecar_adapters.cli", "sweep", *SLOW, "--workers", "2"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a terminal's job
    )
    try:
        deadline = time.monotonic() + 60
        while len(helpers := _children(sweep.pid)) < 2:
            assert time.monotonic() < deadline, "the helpers did not start"
            time.sleep(0.1)
        time.sleep(1.5)  # the helpers are running their points
        os.killpg(sweep.pid, signal.SIGINT)  # Ctrl-C at a terminal: the whole group
        started = time.monotonic()
        _, err = sweep.communicate(timeout=30)
        assert time.monotonic() - started < 10
    finally:
        if sweep.poll() is None:  # pragma: no cover - only when the test fails
            sweep.kill()
            sweep.wait()
    assert sweep.returncode == 130 and b"Traceback" not in err
    for pid in helpers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "gone"


def test_run_point_is_a_pure_function_of_its_arguments() -> None:
    scenario = Scenario(calls_per_year=1000, max_call_attempts=2)
    once = run_point(scenario, 4)
    assert once == run_point(scenario, 4)
    assert once["status"] == "ok" and once["max_call_attempts"] == 2
    assert list(once) == [c for c in COLUMNS if c != "point"]


def test_the_grid_refuses_what_it_cannot_sweep() -> None:
    with pytest.raises(ValueError, match="seed: 3 is given twice"):
        Grid(seeds=(3, 3))
    with pytest.raises(ValueError, match="store='postgres'"):
        Grid(store="postgres")
    assert len(Grid(volumes=(1, 2), seeds=(1, 2, 3)).points()) == 6


def test_an_axis_not_given_keeps_the_scenarios_value() -> None:
    base = Scenario(name="strict", calls_per_year=2000, max_call_attempts=2)
    (point,) = Grid(base).points()
    assert point.scenario == base and point.seed == 2024
    assert Grid(base).axes()["max_call_attempts"] == [2]
    assert [
        p.scenario.max_call_attempts for p in Grid(base, max_call_attempts=(1, 3)).points()
    ] == [1, 3]


def test_small_grids_run_here_and_large_ones_on_every_core() -> None:
    small = Grid(volumes=(1000, 3000), seeds=(1, 2, 3)).points()
    assert sweep_module.default_workers(small) == 1
    large = Grid(volumes=(300_000,), seeds=(1, 2, 3)).points()
    assert sweep_module.default_workers(large) == min(sweep_module.cores(), 3)


def test_the_grid_file_in_the_docs_is_one() -> None:
    import tomllib

    docs = Path(__file__).resolve().parent.parent / "docs" / "simulation.md"
    section = docs.read_text(encoding="utf-8").split("## Sweeps", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    values = sweep_module.grid_file_values(tomllib.loads(example))
    assert values.pop("scenario") == "../examples/scenarios/wujin_year.toml"
    assert values["seeds"] == (1, 2, 3, 4, 5) and values["faults"] == (False, True)
    assert len(sweep_module.grid_of(Scenario(), values).points()) == 3 * 2 * 2 * 5
