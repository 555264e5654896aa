"""``movecar sweep``: the simulation over a grid of scenarios, collected in one table.

::

    movecar sweep [SCENARIO.toml] [--grid GRID.toml] [--volume 500000,1500000]
                  [--seeds 1-5] [--max-call-attempts 2,3] [--start YYYY-MM,...]
                  [--months N,...] [--faults] [--store memory|sqlite]
                  [--workers N | --dask tcp://HOST:PORT] [--csv FILE] [--json FILE]
                  [--out DIR]

Each point of the grid (the product of the axes) is one simulation on a store of its own
(in memory by default), run in helper processes (one per core; in this process for a grid
too small to be worth starting them), or as a task on a Dask cluster. The table (one row
per point, in grid order) goes to stdout as Markdown, or to ``--out DIR`` (table.md,
table.csv, table.json), ``--csv`` and ``--json``. Exit 0 when every point ran, else the
highest of the failed points' codes: 1 an invariant broke, 2 a point's scenario is
refused (and for bad input in the grid itself, before anything runs), 3 environment (a
helper died, the cluster cannot be used).
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from movecar_adapters.cli_common import CliError, Exit, count_1_to_64, say, scrub
from movecar_adapters.cli_simulate import load_scenario, read_text
from movecar_adapters.sweep import (
    AXIS_TEXT,
    PARALLEL_FROM_CASES,
    STORES,
    Grid,
    InvalidGrid,
    default_workers,
    dumps,
    exit_status,
    grid_file_values,
    grid_of,
    parse_list,
    sweep,
    table_csv,
    table_json,
    table_markdown,
)


def _axis(key: str) -> Callable[[str], tuple[Any, ...]]:
    item, ranges = AXIS_TEXT[key]

    def parse(text: str) -> tuple[Any, ...]:
        try:
            return parse_list(text, item, what=key.replace("_", "-"), ranges=ranges)
        except InvalidGrid as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _address(text: str) -> str:
    if "://" not in text or len(text) > 200 or not text.isprintable() or " " in text:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r}: a Dask scheduler's address, such as tcp://HOST:8786"
        )
    return text


def _read_grid(path: str) -> tuple[dict[str, Any], str | None]:
    """A grid file's values, and its scenario's path made relative to where it is."""
    text = read_text(path, "grid")
    try:
        values = grid_file_values(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise CliError(f"grid {path!r:.80}: not a TOML grid: {exc}") from None
    except RecursionError:  # arrays or tables nested thousands deep
        raise CliError(f"grid {path!r:.80}: nested too deep to be a grid") from None
    except InvalidGrid as exc:
        raise CliError(f"grid {path!r:.80}: {exc}") from None
    scenario = values.pop("scenario", None)
    if scenario is not None:
        scenario = str(Path(path).parent / scenario)
    return values, scenario


def build_grid(args: argparse.Namespace) -> tuple[Grid, str | None]:
    """The grid of the command line: the grid file's values, each replaced by the
    command line's when both give it; the scenario file likewise."""
    values: dict[str, Any] = {}
    scenario_file = None
    if args.grid:
        values, scenario_file = _read_grid(args.grid)
    scenario_file = args.scenario or scenario_file
    for key in AXIS_TEXT:
        given = getattr(args, key)
        if given is not None:
            values[key] = given
    if args.faults:
        values["faults"] = (True,)
    if args.store is not None:
        values["store"] = args.store
    try:
        return grid_of(load_scenario(scenario_file), values), scenario_file
    except InvalidGrid as exc:
        raise CliError(str(exc)) from None


def _write(path: Path, text: str, what: str) -> Path:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(
            f"{what} {str(path)!r:.80}: cannot write it ({exc.strerror})", Exit.ENVIRONMENT
        ) from None
    return path


def _progress_line() -> Callable[[int, int], None] | None:
    """A count of finished points on a terminal's stderr (nothing when it is a file)."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        end = "\n" if done == total else ""
        print(f"\rswept {done:,}/{total:,} point(s)", end=end, file=sys.stderr, flush=True)

    return show


def cmd_sweep(args: argparse.Namespace) -> int:
    grid, scenario_file = build_grid(args)
    if args.dask is not None and args.workers is not None:
        raise CliError("--workers is for processes on this machine; with --dask, not both")
    if args.csv == "-" and args.json == "-":
        raise CliError("--csv and --json cannot both go to stdout ('-')")
    points = grid.points()
    out = Path(args.out) if args.out else None
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CliError(
                f"--out {args.out!r:.80}: cannot create it ({exc.strerror})", Exit.ENVIRONMENT
            ) from None
    started = time.monotonic()
    rows = sweep(points, workers=args.workers, dask=args.dask, progress=_progress_line())
    seconds = time.monotonic() - started
    data = table_json(grid, rows, scenario_file=scenario_file)
    markdown, text_csv, text_json = table_markdown(data), table_csv(rows), dumps(data)
    written: list[Path] = []
    to_stdout = text_csv if args.csv == "-" else text_json if args.json == "-" else None
    if out is not None:
        written.append(_write(out / "table.md", markdown, "--out"))
        written.append(_write(out / "table.csv", text_csv, "--out"))
        written.append(_write(out / "table.json", text_json, "--out"))
    for target, text, what in ((args.csv, text_csv, "--csv"), (args.json, text_json, "--json")):
        if target and target != "-":
            written.append(_write(Path(target), text, what))
    if to_stdout is not None:
        sys.stdout.write(to_stdout)
    elif out is None:
        sys.stdout.write(markdown)
    failed = Counter(r["status"] for r in rows if r["status"] != "ok")
    if args.dask:
        how = f"on the Dask cluster at {args.dask}"
    else:
        n = min(args.workers or default_workers(points), len(points))
        how = "in this process" if n <= 1 else f"in {n} processes"
    summary = (
        f"swept {len(rows):,} point(s) {how} in {seconds:.1f} s: "
        f"{len(rows) - sum(failed.values()):,} ran"
        + "".join(f", {n:,} {status}" for status, n in sorted(failed.items()))
        + (f"; table: {', '.join(str(p) for p in written)}" if written else "")
    )
    # stdout holds the table unless it went to files; a failed point is news for stderr
    quiet_stdout = out is not None and to_stdout is None and not failed
    say(None if quiet_stdout else sys.stderr, scrub(summary))
    return exit_status(rows)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sw = subparsers.add_parser(
        "sweep",
        help="the simulation over a grid of volumes, seeds and policies, in one table",
        description=__doc__.split("::")[0].strip() if __doc__ else None,
    )
    sw.add_argument("scenario", nargs="?", metavar="SCENARIO.toml", help="base scenario file")
    sw.add_argument("--grid", metavar="GRID.toml", help="grid file (the flags override it)")
    sw.add_argument("--volume", type=_axis("volume"), metavar="N,N,...", help="calls a year")
    sw.add_argument("--seeds", type=_axis("seeds"), metavar="1-5,9", help="default 2024")
    sw.add_argument(
        "--max-call-attempts",
        type=_axis("max_call_attempts"),
        metavar="2,3",
        help="case policies: outbound calls a case allows (default: the scenario's, 3)",
    )
    sw.add_argument("--start", type=_axis("start"), metavar="YYYY-MM,...", help="first months")
    sw.add_argument("--months", type=_axis("months"), metavar="N,...", help="lengths (1-36)")
    sw.add_argument("--faults", action="store_true", help="inject faults by seed")
    sw.add_argument(
        "--store",
        choices=STORES,
        help="memory (default), or sqlite: a fresh SQLite file per point in a temp folder",
    )
    sw.add_argument(
        "--workers",
        type=count_1_to_64,
        metavar="N",
        help=f"processes (default: one per core; 1 for under {PARALLEL_FROM_CASES:,} cases)",
    )
    sw.add_argument("--dask", type=_address, metavar="tcp://HOST:PORT", help="a Dask scheduler")
    sw.add_argument("--csv", metavar="FILE", help="write the table as CSV ('-': stdout)")
    sw.add_argument("--json", metavar="FILE", help="write the table as JSON ('-': stdout)")
    sw.add_argument("--out", metavar="DIR", help="write table.md, table.csv and table.json here")
    sw.set_defaults(func=cmd_sweep)
