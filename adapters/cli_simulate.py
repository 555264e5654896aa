"""``movecar simulate``: run contract months through the real engine and write the report.

::

    movecar simulate [SCENARIO.toml] [--seed N] [--volume CALLS_PER_YEAR] [--start YYYY-MM]
                     [--months N] [--store memory|sqlite|URL] [--faults] [--out DIR]
                     [--json FILE]

With no arguments: the default scenario (:data:`movecar_core.simulation.DEFAULT`: April
2024, the contract's first month, at 30,000 calls a year, about 2,500 cases) on a fresh
SQLite file ``DIR/simulation.db``, report in ``DIR`` (default ``movecar-simulation``).
Exit 0 when the run completed (breaches of the contract are results, in the report),
1 when an invariant broke (the message gives the command that reproduces it), 2 for bad
input, 3 when the store cannot be used.

The report is ``report.md`` and ``report.html`` with charts in ``charts/`` (the charts need
matplotlib, the ``simulate`` extra). On a terminal, a run that takes more than a few
seconds shows a progress bar on stderr (rich, the same extra), gone when the run ends.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import attrs

from movecar_adapters.cli_common import CliError, Exit, say
from movecar_core.settlement import ServiceMonth
from movecar_core.simulation import DEFAULT, Scenario, SimulationFailed
from movecar_core.simulation.scenario import MAX_CALLS_PER_YEAR, InvalidScenario

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

#: The seed when none is given: every run of the same options is the same run.
DEFAULT_SEED = 2024
DEFAULT_OUT = "movecar-simulation"
MAX_SCENARIO_BYTES = 1_000_000
#: Seconds of wall time before the progress bar appears: a shorter run would only flicker.
PROGRESS_AFTER_S = 2.0


def _seed(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise argparse.ArgumentTypeError(f"{text[:20]!r}: a whole number from 0 to 10**18")
    return int(text)


def _volume(text: str) -> int:
    clean = text.replace("_", "")
    if not clean.isascii() or not clean.isdigit() or not 0 <= int(clean) <= MAX_CALLS_PER_YEAR:
        raise argparse.ArgumentTypeError(
            f"{text[:20]!r}: calls a year, a whole number from 0 to {MAX_CALLS_PER_YEAR:,}"
        )
    return int(clean)


def _month(text: str) -> ServiceMonth:
    try:
        return ServiceMonth.parse(text)
    except Exception:
        raise argparse.ArgumentTypeError(f"{text[:20]!r}: a month written YYYY-MM") from None


def _months(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 36:
        raise argparse.ArgumentTypeError(f"{text[:20]!r}: a whole number of months from 1 to 36")
    return int(text)


def read_text(path: str, what: str) -> str:
    """A scenario or grid file's text, bounded in size; each failure one line naming
    ``what`` and the path."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_SCENARIO_BYTES + 1)
    except OSError as exc:
        raise CliError(f"{what} {path!r:.80}: cannot read it ({exc.strerror})") from None
    if len(raw) > MAX_SCENARIO_BYTES:
        raise CliError(f"{what} {path!r:.80}: larger than {MAX_SCENARIO_BYTES:,} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{what} {path!r:.80}: not UTF-8 text") from None


def load_scenario(path: str | None) -> Scenario:
    if path is None:
        return DEFAULT
    text = read_text(path, "scenario")
    try:
        return Scenario.from_toml(text)
    except InvalidScenario as exc:
        raise CliError(f"scenario {path!r:.80}: {exc}") from None


def _options(args: argparse.Namespace, scenario: Scenario) -> dict[str, Any]:
    """The options that reproduce the run (in the JSON, and in a failure's message)."""
    return {
        "scenario_file": args.scenario,
        "volume": scenario.calls_per_year,
        "start": str(scenario.start),
        "months": scenario.months,
        "store": "URL" if args.store not in ("memory", "sqlite") else args.store,
        "faults": scenario.faults.enabled,
    }


def _command_line(args: argparse.Namespace, scenario: Scenario) -> str:
    words = ["movecar", "simulate"]
    if args.scenario:
        words.append(args.scenario)
    words += ["--seed", str(args.seed), "--volume", str(scenario.calls_per_year)]
    words += ["--start", str(scenario.start), "--months", str(scenario.months)]
    words += ["--store", args.store if args.store in ("memory", "sqlite") else "URL"]
    if scenario.faults.enabled:
        words.append("--faults")
    return shlex.join(words)


def progress_wanted(stream: TextIO) -> bool:
    """A bar only where a person watches: a terminal, never a pipe, a file or a CI log."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # not a real stream, or closed
        return False


class ProgressBar:
    """The run's progress (simulated hours done of all) as a rich bar on ``stream``, shown
    once the run has taken :data:`PROGRESS_AFTER_S`, and erased when it stops, so the
    summary stays the command's one line."""

    def __init__(
        self,
        stream: TextIO,
        *,
        finishing: str = "finishing",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.finishing = finishing
        self.clock = clock
        self.started = clock()
        self._live: tuple[Progress, TaskID] | None = None

    @property
    def shown(self) -> bool:
        return self._live is not None

    def __call__(self, done: int, total: int) -> None:
        if self._live is None:
            if self.clock() - self.started < PROGRESS_AFTER_S:
                return
            self._live = self._show(total)
        bar, task = self._live
        if done >= total:
            # The model is done; the liveness check and an audit still take their time.
            bar.update(task, completed=done, description=self.finishing)
        else:
            bar.update(task, completed=done)

    def _show(self, total: int) -> tuple[Progress, TaskID]:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("simulated hours"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(file=self.stream),
            transient=True,
            # The bar never touches stdout, where --json - writes.
            redirect_stdout=False,
            redirect_stderr=False,
        )
        bar.start()
        return bar, bar.add_task("simulating", total=total)

    def close(self) -> None:
        if self._live is not None:
            self._live[0].stop()


def progress_bar(stream: TextIO, *, finishing: str = "finishing") -> ProgressBar | None:
    """A :class:`ProgressBar` on ``stream`` when it is a terminal and rich is installed."""
    if not progress_wanted(stream):
        return None
    try:
        import rich.progress  # noqa: F401
    except ImportError:
        return None
    return ProgressBar(stream, finishing=finishing)


def cmd_simulate(args: argparse.Namespace) -> int:
    from movecar_adapters import sim_report
    from movecar_adapters.config import MEMORY_URL, load_settings, mask_url
    from movecar_adapters.simulate import dumps, result_json, run, store_url

    scenario = load_scenario(args.scenario)
    changes: dict[str, Any] = {}
    if args.volume is not None:
        changes["calls_per_year"] = args.volume
    if args.start is not None:
        changes["start"] = args.start
    if args.months is not None:
        changes["months"] = args.months
    if args.faults:
        changes["faults"] = attrs.evolve(scenario.faults, enabled=True)
    scenario = attrs.evolve(scenario, **changes)
    # The deployment's working-day years ([calendar], $MOVECAR_CALENDAR): a period reaching
    # past the library's table runs once its year's notice is configured.
    calendar = load_settings(args.config).calendar
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(
            f"--out {args.out!r:.80}: cannot create it ({exc.strerror})", Exit.ENVIRONMENT
        ) from None
    url = store_url(args.store, out)
    started = time.monotonic()
    bar = progress_bar(
        sys.stderr, finishing="finishing" if url == MEMORY_URL else "auditing the store"
    )
    try:
        result = run(scenario, args.seed, url, calendar=calendar, progress=bar)
    except SimulationFailed as exc:
        raise CliError(
            f"{exc}; reproduce: {_command_line(args, scenario)}", Exit.FINDINGS
        ) from None
    finally:
        if bar is not None:
            bar.close()
    data = result_json(result, _options(args, scenario))
    report = sim_report.write(data, out)
    # One line however many files: the charts go by their folder.
    written = [str(report.markdown), str(report.html)]
    if report.charts:
        written.append(f"{len(report.charts)} charts in {report.charts[0].parent}")
    if args.json:
        target = sys.stdout if args.json == "-" else None
        if target is not None:
            target.write(dumps(data))
        else:
            Path(args.json).write_text(dumps(data), encoding="utf-8")
            written.append(args.json)
    seconds = time.monotonic() - started
    fees = sum(float(m["provisional_fee"] or 0) for m in data["months"])
    say(
        sys.stderr if args.json == "-" else None,
        f"simulated {scenario.months} month(s) from {scenario.start}: {result.cases:,} cases "
        f"on {mask_url(url) if args.store not in ('memory', 'sqlite') else args.store}, "
        f"{len(result.findings)} finding(s), fees {fees:,.2f} yuan, in {seconds:.1f} s; "
        f"report: {', '.join(written)}"
        + (f"; {report.charts_missing}" if report.charts_missing else ""),
    )
    return Exit.OK


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = subparsers.add_parser(
        "simulate",
        help="run contract months through the real engine: volume, fees, breaches, seats",
        description=__doc__.split("::")[0].strip() if __doc__ else None,
    )
    sim.add_argument("scenario", nargs="?", metavar="SCENARIO.toml", help="scenario file")
    sim.add_argument("--seed", type=_seed, default=DEFAULT_SEED, help=f"default {DEFAULT_SEED}")
    sim.add_argument("--volume", type=_volume, metavar="CALLS_PER_YEAR", help="annual volume")
    sim.add_argument("--start", type=_month, metavar="YYYY-MM", help="first month")
    sim.add_argument("--months", type=_months, metavar="N", help="months to simulate (1-36)")
    sim.add_argument(
        "--store",
        default="sqlite",
        metavar="memory|sqlite|URL",
        help="where the cases go (default: a fresh SQLite file in --out)",
    )
    sim.add_argument("--faults", action="store_true", help="inject faults by seed")
    sim.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"default {DEFAULT_OUT}")
    sim.add_argument("--json", metavar="FILE", help="also write the JSON here ('-': stdout)")
    sim.set_defaults(func=cmd_simulate)
