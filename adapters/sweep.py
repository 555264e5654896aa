"""The simulation over a grid of scenarios, in parallel: what ``movecar sweep`` runs.

A :class:`Grid` is a base scenario and axes: annual volumes, first months, lengths, faults
on or off, the operator's case policy (``max_call_attempts``, the outbound calls a case
allows) and seeds. :meth:`Grid.points` is their product in a fixed order (the seed varies
fastest), each a scenario with the axes' values, a seed and a store. Each point is one
:func:`run_point`, a pure function of (scenario, seed, store) that runs
:func:`movecar_adapters.simulate.run` and returns the point's row, JSON-ready; a point
that fails is a row too, whose ``status`` and one-line ``error`` say why.

:func:`sweep` runs the points in this process (``workers=1``), in helper processes, or on
a Dask cluster (``dask="tcp://HOST:PORT"``), and returns the rows in grid order, so the
same grid gives the same table, byte for byte, whatever ran it.

Helper processes start isolated as :mod:`movecar_adapters.sql.child` describes (``python
-I -c BOOT movecar_adapters.sweep_child``), not with :mod:`multiprocessing`: a program
calling :func:`sweep` needs no ``if __name__ == "__main__"`` guard. Each helper runs one
point at a time; one that dies takes only that point with it (its row says so) and a fresh
helper goes on with the rest. Frames (pickle, between parent and helper only): parent to
helper ``(index, scenario, seed, store)`` per point, then ``None``; helper to
parent ``(index, row)``.

Each point uses a store of its own: in memory by default (a sweep is many runs, and the
SQL store's durability is not what a sweep measures), or ``store="sqlite"``, a fresh SQLite
file in a temporary folder, audited and removed after the point.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import io
import itertools
import json
import os
import queue
import signal
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import IO, Any, TypeVar

import attrs

from movecar_adapters.cli_common import scrub
from movecar_adapters.config import MEMORY_URL, ConfigError
from movecar_adapters.simulate import SQLITE_FILE, run
from movecar_adapters.sql.child import Child, frame, read_frame
from movecar_core.errors import InvalidInput
from movecar_core.settlement import ServiceMonth
from movecar_core.simulation import DEFAULT, Scenario, SimulationResult
from movecar_core.simulation.scenario import MAX_CALLS_PER_YEAR

T = TypeVar("T")

#: The form of the JSON table (changes when a column changes meaning).
JSON_FORMAT = "movecar-sweep/1"
#: The seed of a grid that names none: the one ``movecar simulate`` uses.
DEFAULT_SEED = 2024
#: A grid larger than this is refused: it is more likely a typo (a range of seeds one
#: digit too long) than a sweep anyone wants to wait for.
MAX_POINTS = 10_000
#: As a scenario's ``[contract] max_call_attempts``: annex 2 十三(四) forbids mass
#: calling, so a policy of more calls per case is not one to explore.
MAX_CALL_ATTEMPTS = 10
STORES = ("memory", "sqlite")
#: With ``workers=None``, helper processes start only for a grid expected to hold at least
#: this many cases: a helper costs up to a second to start (imports), and below this the
#: points run sooner here (measured: 12 points of 80-270 cases took 1.0 s in this
#: process, 1.4 s in two helpers).
PARALLEL_FROM_CASES = 5_000
#: Seconds to wait for a Dask scheduler to answer before giving up (exit 3 in the CLI).
DASK_CONNECT_TIMEOUT_S = 20

#: What became of a point, and the ``movecar`` exit code it maps to; the sweep exits with
#: the highest of its points' codes.
STATUS_EXIT = {
    "ok": 0,
    "invariant broken": 1,
    "bad input": 2,
    "environment": 3,
    "internal error": 4,
}

#: The grid's values of a point, then what its run gave, in table order.
GRID_COLUMNS = (
    "point", "scenario", "volume", "start", "months", "faults", "max_call_attempts", "seed",
)  # fmt: skip
RESULT_COLUMNS = (
    "status", "cases", "inbound", "connected", "abandoned", "lost_to_outage",
    "service_level", "moved", "escalated_to_110", "cancelled", "unresolved",
    "outbound_calls", "billable_calls", "provisional_fee", "provisional_fee_graduated",
    "true_up", "true_up_graduated", "findings", "findings_cost", "seats_needed_max", "error",
)  # fmt: skip
COLUMNS = GRID_COLUMNS + RESULT_COLUMNS

Row = dict[str, Any]


class InvalidGrid(InvalidInput):
    """A grid that cannot be swept: names the axis and the value (exit 2)."""


# --- the grid ---------------------------------------------------------------------------


def _unique(name: str, values: tuple[T, ...]) -> tuple[T, ...]:
    seen: set[T] = set()
    for value in values:
        if value in seen:
            raise InvalidGrid(f"{name}: {value} is given twice")
        seen.add(value)
    return values


def _whole(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidGrid(f"{name}={value!r:.40}: must be a whole number from {low:,} to {high:,}")
    return value


@attrs.frozen
class Point:
    """One run of a sweep: what :func:`run_point` is given."""

    scenario: Scenario
    seed: int
    store: str = "memory"


@attrs.frozen
class Grid:
    """A base scenario and the axes to sweep it over. An empty axis keeps the scenario's
    own value (its volume, start, length, faults, call attempts)."""

    scenario: Scenario = DEFAULT
    volumes: tuple[int, ...] = ()
    starts: tuple[ServiceMonth, ...] = ()
    months: tuple[int, ...] = ()
    faults: tuple[bool, ...] = ()
    max_call_attempts: tuple[int, ...] = ()
    seeds: tuple[int, ...] = (DEFAULT_SEED,)
    store: str = "memory"

    def __attrs_post_init__(self) -> None:
        for volume in self.volumes:
            _whole("volume", volume, 0, MAX_CALLS_PER_YEAR)
        for start in self.starts:
            if not isinstance(start, ServiceMonth):
                raise InvalidGrid(f"start={start!r:.40}: must be a month (ServiceMonth)")
        for months in self.months:
            _whole("months", months, 1, 36)
        for faults in self.faults:
            if not isinstance(faults, bool):
                raise InvalidGrid(f"faults={faults!r:.40}: must be true or false")
        for attempts in self.max_call_attempts:
            _whole("max_call_attempts", attempts, 1, MAX_CALL_ATTEMPTS)
        if not self.seeds:
            raise InvalidGrid("seeds: at least one seed")
        for seed in self.seeds:
            _whole("seed", seed, 0, 2**63 - 1)
        for name, values in self.axes().items():
            _unique(name, tuple(values))
        if self.store not in STORES:
            raise InvalidGrid(f"store={self.store!r:.40}: must be one of {', '.join(STORES)}")
        size = 1
        for values in self.axes().values():
            size *= len(values)
        if size > MAX_POINTS:
            raise InvalidGrid(f"the grid has {size:,} points: at most {MAX_POINTS:,}")

    def axes(self) -> dict[str, list[Any]]:
        """Each axis's values in sweep order (the last varies fastest), JSON-ready."""
        s = self.scenario
        return {
            "volume": list(self.volumes or (s.calls_per_year,)),
            "start": [str(m) for m in self.starts or (s.start,)],
            "months": list(self.months or (s.months,)),
            "faults": list(self.faults or (s.faults.enabled,)),
            "max_call_attempts": list(self.max_call_attempts or (s.max_call_attempts,)),
            "seed": list(self.seeds),
        }

    def points(self) -> list[Point]:
        """The product of the axes, in the order of :meth:`axes`."""
        s = self.scenario
        axes = itertools.product(
            self.volumes or (s.calls_per_year,),
            self.starts or (s.start,),
            self.months or (s.months,),
            self.faults or (s.faults.enabled,),
            self.max_call_attempts or (s.max_call_attempts,),
            self.seeds,
        )
        return [
            Point(
                attrs.evolve(
                    s,
                    calls_per_year=volume,
                    start=start,
                    months=months,
                    faults=attrs.evolve(s.faults, enabled=faults),
                    max_call_attempts=attempts,
                ),
                seed,
                self.store,
            )
            for volume, start, months, faults, attempts, seed in axes
        ]


def parse_list(
    text: str, item: Callable[[str], T], *, what: str, ranges: bool = False
) -> tuple[T, ...]:
    """``"1,3,7-9"``: values separated by commas; with ``ranges``, ``A-B`` is every whole
    number from A to B."""
    out: list[Any] = []
    for part in text.split(","):
        word = part.strip()
        if not word:
            raise InvalidGrid(f"{what} {text[:40]!r}: an empty value")
        low, dash, high = word.partition("-")
        if ranges and dash and low:
            first, last = item(low), item(high)
            assert isinstance(first, int) and isinstance(last, int)
            if last < first:
                raise InvalidGrid(f"{what} {word[:40]!r}: the range ends before it starts")
            if last - first >= MAX_POINTS:
                raise InvalidGrid(f"{what} {word[:40]!r}: more than {MAX_POINTS:,} values")
            out.extend(range(first, last + 1))
        else:
            out.append(item(word))
        if len(out) > MAX_POINTS:
            raise InvalidGrid(f"{what}: more than {MAX_POINTS:,} values")
    return tuple(out)


def whole_number(what: str, low: int, high: int) -> Callable[[str], int]:
    """A parser of one whole number from ``low`` to ``high`` (``_`` may group digits)."""

    def parse(word: str) -> int:
        clean = word.strip().replace("_", "")
        if not clean.isascii() or not clean.isdigit() or len(clean) > 19:
            raise InvalidGrid(f"{what} {word[:20]!r}: a whole number from {low:,} to {high:,}")
        return _whole(what, int(clean), low, high)

    return parse


def month(word: str) -> ServiceMonth:
    try:
        return ServiceMonth.parse(word.strip())
    except InvalidInput:
        raise InvalidGrid(f"start {word[:20]!r}: a month written YYYY-MM") from None


#: The parsers of each axis's text (the command line's values, a grid file's strings).
AXIS_TEXT: dict[str, tuple[Callable[[str], Any], bool]] = {
    "volume": (whole_number("volume", 0, MAX_CALLS_PER_YEAR), False),
    "start": (month, False),
    "months": (whole_number("months", 1, 36), True),
    "max_call_attempts": (whole_number("max_call_attempts", 1, MAX_CALL_ATTEMPTS), True),
    "seeds": (whole_number("seed", 0, 2**63 - 1), True),
}
GRID_FILE_KEYS = frozenset({"scenario", "store", "faults", *AXIS_TEXT})


def grid_file_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """A grid file's values, checked: ``scenario`` (a path, as written) and ``store``
    (text), and each axis as a tuple. An axis is a value, a list of values, or for the
    whole-number axes also text such as ``"1-5"``. Unknown keys are refused."""
    unknown = sorted(set(data) - GRID_FILE_KEYS)
    if unknown:
        raise InvalidGrid(
            f"{unknown[0][:40]}: unknown key (known: {', '.join(sorted(GRID_FILE_KEYS))})"
        )
    out: dict[str, Any] = {}
    for key in ("scenario", "store"):
        if key in data:
            if not isinstance(data[key], str) or not data[key]:
                raise InvalidGrid(f"{key}: must be text")
            out[key] = data[key]
    if "faults" in data:
        values = data["faults"] if isinstance(data["faults"], list) else [data["faults"]]
        if not values or not all(isinstance(v, bool) for v in values):
            raise InvalidGrid("faults: must be true, false or a list of them")
        out["faults"] = tuple(values)
    for key, (item, ranges) in AXIS_TEXT.items():
        if key not in data:
            continue
        value = data[key]
        if isinstance(value, str):
            out[key] = parse_list(value, item, what=key, ranges=ranges)
            continue
        values = value if isinstance(value, list) else [value]
        if not values:
            raise InvalidGrid(f"{key}: an empty list")
        parsed = []
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | str):
                raise InvalidGrid(f"{key}={v!r:.40}: a whole number or text")
            parsed.append(item(str(v)))
        out[key] = tuple(parsed)
    return out


#: A grid file's keys (the command line's names) and the :class:`Grid` field each fills.
GRID_FIELDS = {
    "volume": "volumes",
    "start": "starts",
    "months": "months",
    "faults": "faults",
    "max_call_attempts": "max_call_attempts",
    "seeds": "seeds",
    "store": "store",
}


def grid_of(scenario: Scenario, values: Mapping[str, Any]) -> Grid:
    """The grid of ``scenario`` and values named as in a grid file (``scenario`` aside)."""
    return Grid(scenario, **{GRID_FIELDS[key]: value for key, value in values.items()})


# --- one point --------------------------------------------------------------------------


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _total(values: Iterable[Decimal | None]) -> Decimal:
    return sum((v for v in values if v is not None), Decimal("0.00"))


def grid_values(scenario: Scenario, seed: int) -> Row:
    """A point's grid columns (all but ``point``, which is its place in the grid)."""
    return {
        "scenario": scenario.name,
        "volume": scenario.calls_per_year,
        "start": str(scenario.start),
        "months": scenario.months,
        "faults": scenario.faults.enabled,
        "max_call_attempts": scenario.max_call_attempts,
        "seed": seed,
    }


def result_values(result: SimulationResult) -> Row:
    """A run's result columns: sums over its months, the findings and the seat plan."""
    months = result.months
    connected = sum(m.connected for m in months)
    within = sum(m.answered_within_20s for m in months)
    outcomes: Counter[str] = Counter()
    for m in months:
        outcomes.update(m.cases)
    ended = [m for m in months if m.true_up is not None]  # a service year ended
    return {
        "status": "ok",
        "cases": result.cases,
        "inbound": sum(m.inbound for m in months),
        "connected": connected,
        "abandoned": sum(m.abandoned for m in months),
        "lost_to_outage": sum(m.lost_to_outage for m in months),
        "service_level": round(within / connected, 4) if connected else 1.0,
        "moved": outcomes["moved"],
        "escalated_to_110": outcomes["escalated_to_110"],
        "cancelled": outcomes["cancelled"],
        "unresolved": outcomes["unresolved"],
        "outbound_calls": sum(m.outbound_calls for m in months),
        "billable_calls": sum(m.billable_calls for m in months),
        "provisional_fee": _money(_total(m.provisional_fee for m in months)),
        "provisional_fee_graduated": _money(_total(m.provisional_fee_graduated for m in months)),
        "true_up": _money(_total(m.true_up for m in ended)) if ended else None,
        "true_up_graduated": _money(_total(m.true_up_graduated for m in ended)) if ended else None,
        "findings": len(result.findings),
        "findings_cost": _money(_total(f.cost for f in result.findings)),
        "seats_needed_max": max((p.seats_needed for p in result.seat_plan), default=0),
        "error": None,
    }


def failure(status: str, message: str) -> Row:
    """The result columns of a point that did not run to its end."""
    return {"status": status, "error": scrub(message)}


def _failed(exc: Exception) -> Row:
    from movecar_adapters.cli import exit_code  # the one mapping of errors to exit codes

    code = int(exit_code(exc))
    status = next(s for s, c in STATUS_EXIT.items() if c == code)
    message = str(exc) or type(exc).__name__
    if status == "internal error":
        message = f"{type(exc).__name__}: {message}"
    return failure(status, message)


def run_point(scenario: Scenario, seed: int, store: str = "memory") -> Row:
    """Simulate one point and return its row (without ``point``); never raises for a
    point that fails: the row's ``status`` and ``error`` say why. A pure function of its
    arguments, so any process (or Dask worker) gives the same row."""
    row = grid_values(scenario, seed)
    try:
        if store == "memory":
            result = run(scenario, seed, MEMORY_URL)
        elif store == "sqlite":
            with tempfile.TemporaryDirectory(prefix="movecar-sweep-") as folder:
                url = f"sqlite:///{os.path.join(folder, SQLITE_FILE)}"
                result = run(scenario, seed, url)
        else:
            raise InvalidGrid(f"store={store!r:.40}: must be one of {', '.join(STORES)}")
    except Exception as exc:  # the row says what went wrong; the sweep goes on
        return {**row, **_failed(exc)}
    return {**row, **result_values(result)}


def _point_row(index: int, row: Mapping[str, Any]) -> Row:
    """The table's row: every column in order, ``point`` counted from 1."""
    return {c: index + 1 if c == "point" else row.get(c) for c in COLUMNS}


# --- running the grid -------------------------------------------------------------------


def cores() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def default_workers(points: Sequence[Point]) -> int:
    """One process per core (at most one per point), or 1 (this process) for a grid
    expected to hold fewer than :data:`PARALLEL_FROM_CASES` cases."""
    expected = sum(p.scenario.calls_per_year * p.scenario.months / 12 for p in points)
    if expected < PARALLEL_FROM_CASES:
        return 1
    return max(1, min(cores(), len(points)))


Progress = Callable[[int, int], None]


def sweep(
    points: Sequence[Point],
    *,
    workers: int | None = None,
    dask: str | None = None,
    dask_timeout: float | None = None,
    progress: Progress | None = None,
) -> list[Row]:
    """Run every point and return the table's rows in grid order.

    ``dask``: the address of a Dask scheduler (``tcp://HOST:PORT``), each point a task
    there (needs ``movecar[sweep]`` here and movecar on the cluster's workers; a scheduler
    that does not answer within ``dask_timeout`` seconds, default
    :data:`DASK_CONNECT_TIMEOUT_S`, is a ConfigError). Otherwise ``workers`` processes
    on this machine, at most one per point (default: :func:`default_workers`); ``1``
    runs the points in this process. ``progress(done, total)`` is called in this
    thread as points finish. Ctrl-C (KeyboardInterrupt) stops the helpers or cancels the
    cluster's tasks, then propagates.
    """
    if dask is not None:
        timeout = DASK_CONNECT_TIMEOUT_S if dask_timeout is None else dask_timeout
        rows = _on_dask(points, dask, timeout, progress)
    else:
        count = default_workers(points) if workers is None else workers
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 64:
            raise InvalidGrid(f"workers={count!r:.20}: must be a whole number from 1 to 64")
        count = min(count, len(points))
        rows = _here(points, progress) if count <= 1 else _Helpers(points, count).run(progress)
    return [_point_row(i, row) for i, row in enumerate(rows)]


def _here(points: Sequence[Point], progress: Progress | None) -> list[Row]:
    rows = []
    for p in points:
        rows.append(run_point(p.scenario, p.seed, p.store))
        if progress is not None:
            progress(len(rows), len(points))
    return rows


def _ended(child: Child, exc: Exception) -> str:
    """One line for a helper that went away: its exit code and the last line it wrote
    (an exception's name and message, never the traceback above it)."""
    said = str(exc).rpartition(": ")[2].split(" | ")[-1].strip()
    rc = child.process.returncode
    if said in ("", "no message") or said.startswith(("Traceback", "File ")):
        return f"the helper process running this point ended (exit {rc})"
    return f"the helper process running this point ended (exit {rc}): {said}"


class _Helpers:
    """``workers`` helper processes, each fed by a thread of its own (see the module)."""

    #: The module the helpers run as ``__main__``.
    child_module = "movecar_adapters.sweep_child"

    def __init__(self, points: Sequence[Point], workers: int) -> None:
        self.points = points
        self.workers = workers
        self.todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in range(len(points)):
            self.todo.put(index)
        self.done: queue.SimpleQueue[tuple[int, Row]] = queue.SimpleQueue()
        self.children: set[Child] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def run(self, progress: Progress | None) -> list[Row]:
        threads = [
            threading.Thread(target=self._feed, daemon=True, name=f"movecar-sweep-{n}")
            for n in range(self.workers)
        ]
        rows: dict[int, Row] = {}
        try:
            for thread in threads:
                thread.start()
            while len(rows) < len(self.points):
                try:
                    index, row = self.done.get(timeout=0.5)
                except queue.Empty:
                    if not any(t.is_alive() for t in threads) and self.done.empty():
                        break  # pragma: no cover - every thread puts a row per point
                    continue
                rows[index] = row
                if progress is not None:
                    progress(len(rows), len(self.points))
        except BaseException:  # Ctrl-C: the helpers stop now, mid-point
            self.stopping.set()
            self._retire_all(kill=True)
            raise
        self.stopping.set()
        self._retire_all(kill=False)  # idle by now: each ends as told
        lost = failure("internal error", "the point was not run")
        return [rows.get(i) or {**self._grid(i), **lost} for i in range(len(self.points))]

    def _grid(self, index: int) -> Row:
        p = self.points[index]
        return grid_values(p.scenario, p.seed)

    def _start(self) -> Child:
        child = Child(self.child_module, MEMORY_URL, "the helper process")
        with self.lock:
            self.children.add(child)
        if self.stopping.is_set():  # Ctrl-C came while it started
            self._retire(child, kill=True)
        return child

    def _retire(self, child: Child, *, kill: bool) -> None:
        """End ``child``: told to (it finishes what it was sent) or killed. Whichever
        thread takes it out of :attr:`children` first does it, once."""
        with self.lock:
            if child not in self.children:
                return
            self.children.discard(child)
        if kill:
            with contextlib.suppress(OSError):  # gone already
                child.process.kill()
        else:
            with contextlib.suppress(Exception):  # gone already: stop() reaps it
                child.send(None)
        child.stop(timeout=60)

    def _retire_all(self, *, kill: bool) -> None:
        with self.lock:
            children = list(self.children)
        for child in children:
            self._retire(child, kill=kill)

    def _feed(self, child: Child | None = None) -> None:
        """One helper's thread: a point at a time until none is left."""
        try:
            while not self.stopping.is_set():
                try:
                    index = self.todo.get_nowait()
                except queue.Empty:
                    return
                if child is None:
                    child = self._start()
                p = self.points[index]
                try:
                    child.send((index, p.scenario, p.seed, p.store))
                    got, row = child.receive()
                    if got != index or not isinstance(row, dict):
                        raise ValueError("a reply that is not this point's row")
                except Exception as exc:  # the helper died or went wrong: a fresh one goes on
                    self.done.put((index, {**self._grid(index), **self._lost(child, exc)}))
                    self._retire(child, kill=True)
                    child = None
                    continue
                self.done.put((index, row))
        finally:
            if child is not None:
                self._retire(child, kill=False)

    def _lost(self, child: Child, exc: Exception) -> Row:
        if self.stopping.is_set():
            return failure("environment", "stopped (interrupted)")
        if child.process.poll() is None:
            return failure("internal error", f"the helper process answered wrongly: {exc}")
        return failure("environment", _ended(child, exc))


def serve(
    source: IO[bytes],
    replies: IO[bytes],
    point: Callable[[Scenario, int, str], Row] = run_point,
) -> None:
    """A helper's side: run each point read from ``source``, reply on ``replies``.

    Ctrl-C at a terminal reaches the whole process group: the helper ignores it and lets
    the sweep, which sees it too, stop it (no traceback from every helper)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        while (task := read_frame(source)) is not None:
            index, scenario, seed, store = task
            replies.write(frame((index, point(scenario, seed, store))))
            replies.flush()
    except (EOFError, BrokenPipeError):  # the sweep went away
        pass


def _on_dask(
    points: Sequence[Point], address: str, timeout: float, progress: Progress | None
) -> list[Row]:
    try:
        # Typed as Any: the sweep needs three calls of it, and it is an optional extra.
        distributed: Any = importlib.import_module("distributed")
    except ModuleNotFoundError:
        raise ConfigError(
            "a sweep on a Dask cluster needs dask[distributed]: pip install 'movecar[sweep]'"
        ) from None
    try:
        client = distributed.Client(address, timeout=timeout, set_as_default=False)
    except Exception as exc:  # unreachable, refused, not a scheduler: one line, exit 3
        raise ConfigError(
            f"cannot use the Dask scheduler at {address[:100]!r}: {type(exc).__name__}: {exc}"
        ) from None
    futures: list[Any] = []
    rows: list[Row] = []
    try:
        # pure=False: a point's key must not depend on hashing a Scenario; every point is
        # its own task even if two were equal.
        futures = [
            client.submit(run_point, p.scenario, p.seed, p.store, pure=False) for p in points
        ]
        for p, future in zip(points, futures, strict=True):
            try:
                row = future.result()
            except Exception as exc:  # the cluster could not run it (a worker died, ...)
                row = {
                    **grid_values(p.scenario, p.seed),
                    **failure(
                        "environment",
                        f"the Dask cluster did not run this point: {type(exc).__name__}: {exc}",
                    ),
                }
            rows.append(row)
            if progress is not None:
                progress(len(rows), len(points))
    except BaseException:  # Ctrl-C: the cluster's workers stop this sweep's tasks
        with contextlib.suppress(Exception):
            client.cancel(futures)
        raise
    finally:
        with contextlib.suppress(Exception):
            client.close()
    return rows


# --- the table --------------------------------------------------------------------------


def exit_status(rows: Iterable[Mapping[str, Any]]) -> int:
    """The sweep's exit code: the highest of its points' (0 when every point ran)."""
    return max((STATUS_EXIT.get(r["status"], 4) for r in rows), default=0)


def table_json(grid: Grid, rows: Sequence[Row], *, scenario_file: str | None = None) -> Row:
    """The table as JSON-ready data: the grid (scenario, axes, store) and one row per
    point. Nothing of the machine, the executor or the wall clock is in it."""
    return {
        "format": JSON_FORMAT,
        "scenario": grid.scenario.name,
        "scenario_file": scenario_file,
        "store": grid.store,
        "axes": grid.axes(),
        "points": len(rows),
        "columns": list(COLUMNS),
        "rows": list(rows),
    }


def dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def table_csv(rows: Sequence[Row]) -> str:
    """CSV, one header line and a line per point; an empty cell is a value the point does
    not have (a failed point's results, a true-up when no service year ended)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in COLUMNS])
    return out.getvalue()


def _md(value: Any, *, thousands: bool = True) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and thousands:
        return f"{value:,}"
    return str(value).replace("|", "\\|")


#: The Markdown table's columns: (heading, column, right-aligned).
_MD_COLUMNS = (
    ("#", "point", True),
    ("volume", "volume", True),
    ("start", "start", False),
    ("months", "months", True),
    ("faults", "faults", False),
    ("attempts", "max_call_attempts", True),
    ("seed", "seed", True),
    ("status", "status", False),
    ("cases", "cases", True),
    ("connected", "connected", True),
    ("abandoned", "abandoned", True),
    ("≤ 20 s", "service_level", True),
    ("unresolved", "unresolved", True),
    ("to 110", "escalated_to_110", True),
    ("billable", "billable_calls", True),
    ("fee (volume tiers)", "provisional_fee", True),
    ("fee (graduated)", "provisional_fee_graduated", True),
    ("true-up (volume)", "true_up", True),
    ("true-up (graduated)", "true_up_graduated", True),
    ("findings", "findings", True),
    ("cost", "findings_cost", True),
    ("seats", "seats_needed_max", True),
)


def table_markdown(data: Mapping[str, Any]) -> str:
    """The table a person reads, from :func:`table_json`'s data (so they never differ):
    one line per point; an ``error`` column when a point failed."""
    rows = data["rows"]
    columns = list(_MD_COLUMNS)
    if any(r["error"] for r in rows):
        columns.append(("error", "error", False))
    axes = data["axes"]
    lines = [
        f"# movecar sweep: {data['scenario']}",
        "",
        f"{data['points']:,} point(s): "
        + "; ".join(f"{name} {', '.join(_md(v) for v in values)}" for name, values in axes.items())
        + f"; store {data['store']}. Fees and true-ups in yuan, summed over each point's "
        "months; seats: the most any hour of the week needs (80 % within 20 s).",
        "",
        "| " + " | ".join(h for h, _, _ in columns) + " |",
        "|" + "|".join("---:" if right else "---" for _, _, right in columns) + "|",
    ]
    for r in rows:
        cells = []
        for _, column, _ in columns:
            value = r[column]
            if column == "service_level" and value is not None:
                cells.append(f"{value:.1%}")
            else:
                cells.append(_md(value, thousands=column != "seed"))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)
