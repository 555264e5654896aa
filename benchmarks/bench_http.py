"""The case lifecycle over HTTP (``movecar serve``) against the same lifecycle in-process
(issue 14, "Performance": the ratio is the HTTP overhead).

Two SQLite files of the same configuration (``movecar.toml`` with ``[registry] kind =
"sql"``, the owner mirror loaded by ``movecar registry load-mirror`` with ``--plates``
plates, the same key ring), one per side:

* ``http``: a real ``movecar serve`` subprocess on 127.0.0.1 (``--port 0``, ``--db`` its
  file, ``MOVECAR_KEYS`` and ``MOVECAR_API_TOKENS`` in its environment: one token per seat
  ``agent:seat-NN``), driven by ``--clients`` asyncio clients (``httpx.AsyncClient``, one
  keep-alive connection each, each a seat of its own: a seat has one call in flight at a
  time, annex 2 十三(四)). Each client runs whole lifecycles: ``POST /v1/cases``,
  ``/locate``, ``/call``, ``/outcome`` (``answered_agreed`` with the ``call_id`` the
  ``/call`` answer gave), ``/confirm-moved``;
* ``inprocess``: the same five commands through :class:`~movecar_core.desk.Desk` (one per
  seat) over :func:`~movecar_adapters.connect` on its own file, in ``--clients`` threads
  sharing the engine (as the server's worker threads share it).

Both sides also run ``--sequential`` lifecycles with one client (one thread): the
per-request cost without queueing. Every lifecycle has a plate of its own among the
mirror's and a requester number of its own (the requester limits stay the defaults).

Each round runs both sides (which goes first alternates); each figure is the median over
the rounds and every round is listed. Times are wall clock (requests/s, lifecycles/s, p50
and p99 per request and per request kind); ``cpu_ms_per_lifecycle`` is CPU time: the
server process's (``/proc``) and the clients' for HTTP, the benchmark process's
in-process. Clients and server share the machine's cores, as a host's seats would not.
``errors`` counts every failed request (an exception or an unexpected status): it must be
0, else the exit code is 1. Ratios are HTTP over in-process, per round, then the median.

    python benchmarks/bench_http.py [--clients 8] [--lifecycles 160] [--sequential 40]
        [--rounds 5] [--plates 1000] [--dir DIR]

Measured on the project's 2-core machine: see docs/http.md, "Performance".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from movecar_adapters import connect
from movecar_adapters.crypto import KeyRing
from movecar_core import Desk
from movecar_core.app import MoveCar
from movecar_core.roles import Actor

KINDS = ("open", "locate", "call", "outcome", "confirm_moved")
LOCATION = "武进区湖塘镇花园街 8 号"
MOVECAR = [sys.executable, "-m", "movecar_adapters.cli"]
TOML = '[registry]\nkind = "sql"\n'


def plate(i: int) -> str:
    return f"苏D{i:05d}"


def seat(k: int) -> str:
    return f"seat-{k + 1:02d}"


class Numbers:
    """Each lifecycle's plate and requester number: never one requester twice in a file
    (the default limits, 3 a day, stay on), plates in turn among the mirror's."""

    def __init__(self, plates: int) -> None:
        self.plates = plates
        self.next = 0
        self.lock = threading.Lock()

    def take(self, n: int) -> range:
        with self.lock:
            start, self.next = self.next, self.next + n
        return range(start, start + n)

    def case(self, i: int) -> tuple[str, str]:
        return plate(i % self.plates), f"138{i:08d}"


class Measure:
    """Latencies per request kind, errors and the wall time of one measurement."""

    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = {kind: [] for kind in KINDS}
        self.errors: Counter[str] = Counter()
        self.lifecycles = 0
        self.wall = 0.0
        self.cpu = 0.0  # CPU seconds: the server's and the clients' for HTTP
        self.server_cpu = 0.0

    def merge(self, other: Measure) -> None:
        for kind in KINDS:
            self.latency[kind].extend(other.latency[kind])
        self.errors.update(other.errors)
        self.lifecycles += other.lifecycles


def quantile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least ``q`` of them at or below it (0 for
    none: every request of that kind failed, which ``errors`` says)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def summary(m: Measure) -> dict[str, Any]:
    every = [x for kind in KINDS for x in m.latency[kind]]
    return {
        "lifecycles": m.lifecycles,
        "requests": len(every),
        "seconds": round(m.wall, 3),
        "lifecycles_per_s": round(m.lifecycles / m.wall, 2),
        "requests_per_s": round(len(every) / m.wall, 1),
        "p50_ms": ms(quantile(every, 0.5)),
        "p99_ms": ms(quantile(every, 0.99)),
        "per_kind": {
            kind: {"p50_ms": ms(quantile(xs, 0.5)), "p99_ms": ms(quantile(xs, 0.99))}
            for kind, xs in m.latency.items()
        },
        "cpu_ms_per_lifecycle": round(m.cpu * 1000 / max(1, m.lifecycles), 3),
        "errors": sum(m.errors.values()),
        "error_kinds": dict(m.errors),
    }


# --- the deployment: two files, one configuration -----------------------------------------


def prepare(folder: Path, plates: int, env: dict[str, str]) -> Path:
    """A folder with ``movecar.toml``, a migrated ``movecar.db`` and its owner mirror."""
    folder.mkdir()
    (folder / "movecar.toml").write_text(TOML, encoding="utf-8")
    rows = "".join(f"{plate(i)},139{i:08d}\n" for i in range(plates))
    (folder / "owners.csv").write_text("plate,owner_phone\n" + rows, encoding="utf-8")
    for command in (["db", "upgrade"], ["registry", "load-mirror", "--create", "owners.csv"]):
        subprocess.run([*MOVECAR, *command], cwd=folder, env=env, check=True, capture_output=True)
    return folder / "movecar.db"


class Server:
    """``movecar serve`` as its own process; stderr read by a thread (uvicorn logs every
    request there, and a full pipe would stop the server)."""

    def __init__(self, folder: Path, db: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [*MOVECAR, "serve", "--host", "127.0.0.1", "--port", "0", "--db", f"sqlite:///{db}"],
            cwd=folder,
            env=env | {"PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.url = ""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if not self.ready.wait(60) or not self.url:
            self.stop()
            raise RuntimeError("movecar serve did not start:\n" + "".join(self.lines[-20:]))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if not self.url:
                self.lines.append(line)
                found = re.search(r"listening on (http://127\.0\.0\.1:[0-9]+)", line)
                if found:
                    self.url = found[1]
                    self.ready.set()
            elif "movecar serve:" in line:
                self.lines.append(line)
        self.ready.set()  # the process ended (before it listened, or after)

    def cpu(self) -> float | None:
        """CPU seconds the server process has used, from /proc (None elsewhere)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        self.reader.join(10)
        return code


# --- the two sides ------------------------------------------------------------------------


class Gate:
    """The clients start together, once each has its connection open (building an httpx
    client and connecting are not part of what is measured)."""

    def __init__(self, clients: int) -> None:
        self.waiting = clients
        self.all_ready = asyncio.Event()
        self.go = asyncio.Event()

    async def wait(self) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self.all_ready.set()
        await self.go.wait()


async def http_client(
    url: str, token: str, *, cases: Iterator[int], numbers: Numbers, out: Measure, gate: Gate
) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=60
    ) as client:
        await client.get("/healthz")  # the connection is open before the clock starts
        await gate.wait()

        async def send(kind: str, path: str, body: Any, expect: int) -> Any:
            start = time.perf_counter()
            try:
                answer = await client.post(path, json=body)
            except httpx.HTTPError as exc:
                out.errors[f"{kind}:{type(exc).__name__}"] += 1
                return None
            out.latency[kind].append(time.perf_counter() - start)
            if answer.status_code != expect:
                problem = re.search(r"urn:movecar:error:(\w+)", answer.text)
                out.errors[f"{kind}:{answer.status_code}:{problem[1] if problem else '?'}"] += 1
                return None
            return answer.json()

        for i in cases:
            the_plate, requester = numbers.case(i)
            body = {"plate": the_plate, "location": LOCATION, "requester_phone": requester}
            opened = await send("open", "/v1/cases", body, 201)
            if opened is None:
                continue
            case = f"/v1/cases/{opened['case_id']}"
            if await send("locate", f"{case}/locate", None, 200) is None:
                continue
            call = await send("call", f"{case}/call", None, 200)
            if call is None:
                continue
            outcome = {"call_id": call["call_id"], "outcome": "answered_agreed"}
            if await send("outcome", f"{case}/outcome", outcome, 200) is None:
                continue
            if await send("confirm_moved", f"{case}/confirm-moved", {}, 200) is None:
                continue
            out.lifecycles += 1


def run_http(
    server: Server, tokens: list[str], clients: int, lifecycles: int, numbers: Numbers
) -> Measure:
    indices = numbers.take(lifecycles)
    parts = [Measure() for _ in range(clients)]

    async def drive() -> tuple[float, float, float | None]:
        gate = Gate(clients)
        running = asyncio.gather(
            *(
                http_client(
                    server.url,
                    tokens[k],
                    cases=iter(indices[k::clients]),
                    numbers=numbers,
                    out=parts[k],
                    gate=gate,
                )
                for k in range(clients)
            )
        )
        await gate.all_ready.wait()
        server_cpu, own_cpu, start = server.cpu(), time.process_time(), time.perf_counter()
        gate.go.set()
        await running
        return time.perf_counter() - start, time.process_time() - own_cpu, server_cpu

    wall, own_cpu, server_cpu = asyncio.run(drive())
    total = Measure()
    for part in parts:
        total.merge(part)
    total.wall = wall
    after = server.cpu()
    served = after - server_cpu if after is not None and server_cpu is not None else 0.0
    total.cpu = served + own_cpu
    total.server_cpu = served
    return total


def inprocess_client(engine: MoveCar, k: int, cases: range, numbers: Numbers, out: Measure) -> None:
    desk = Desk(engine, Actor(seat(k), "agent"))

    def timed(kind: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            result = fn()
        except Exception as exc:  # counted, as the HTTP side counts a problem answer
            out.errors[f"{kind}:{type(exc).__name__}"] += 1
            return None
        out.latency[kind].append(time.perf_counter() - start)
        return result

    for i in cases:
        the_plate, requester = numbers.case(i)
        opening = partial(
            desk.open_case, plate=the_plate, location=LOCATION, requester_phone=requester
        )
        case_id = timed("open", opening)
        if case_id is None or timed("locate", partial(desk.locate_owner, case_id)) is None:
            continue
        call = timed("call", partial(desk.call_owner, case_id))
        if call is None:
            continue
        outcome = partial(desk.record_call_outcome, case_id, call.call_id, "answered_agreed")
        if timed("outcome", outcome) is None:
            continue
        if timed("confirm_moved", partial(desk.confirm_moved, case_id)) is None:
            continue
        out.lifecycles += 1


def run_inprocess(engine: MoveCar, clients: int, lifecycles: int, numbers: Numbers) -> Measure:
    indices = numbers.take(lifecycles)
    parts = [Measure() for _ in range(clients)]
    threads = [
        threading.Thread(
            target=inprocess_client, args=(engine, k, indices[k::clients], numbers, parts[k])
        )
        for k in range(clients)
    ]
    own_cpu = time.process_time()
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = Measure()
    for part in parts:
        total.merge(part)
    total.wall = time.perf_counter() - start
    total.cpu = time.process_time() - own_cpu
    return total


# --- the run ------------------------------------------------------------------------------


def ratios(http: list[dict[str, Any]], inproc: list[dict[str, Any]], key: str) -> dict[str, Any]:
    each = [h[key] / i[key] if i[key] else 0.0 for h, i in zip(http, inproc, strict=True)]
    return {"median": round(statistics.median(each), 3), "rounds": [round(x, 3) for x in each]}


def medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def mid(key: str) -> float:
        return round(float(statistics.median(r[key] for r in rounds)), 3)

    return {
        "lifecycles_per_s": mid("lifecycles_per_s"),
        "requests_per_s": mid("requests_per_s"),
        "p50_ms": mid("p50_ms"),
        "p99_ms": mid("p99_ms"),
        "per_kind": {
            kind: {
                q: round(statistics.median(r["per_kind"][kind][q] for r in rounds), 3)
                for q in ("p50_ms", "p99_ms")
            }
            for kind in KINDS
        },
        "cpu_ms_per_lifecycle": mid("cpu_ms_per_lifecycle"),
        **(
            {"server_cpu_ms_per_lifecycle": mid("server_cpu_ms_per_lifecycle")}
            if "server_cpu_ms_per_lifecycle" in rounds[0]
            else {}
        ),
        "errors": sum(r["errors"] for r in rounds),
    }


def measure(
    args: argparse.Namespace, server: Server, tokens: list[str], engine: MoveCar
) -> dict[str, list[dict[str, Any]]]:
    """Every round of both sides, after a warm-up of each (first connections, statements)."""
    numbers = {"http": Numbers(args.plates), "inprocess": Numbers(args.plates)}
    warm = max(args.clients, min(40, args.lifecycles // 4))
    warmed = [
        summary(run_http(server, tokens, args.clients, warm, numbers["http"])),
        summary(run_inprocess(engine, args.clients, warm, numbers["inprocess"])),
    ]

    def http(clients: int, n: int) -> dict[str, Any]:
        m = run_http(server, tokens, clients, n, numbers["http"])
        served = round(m.server_cpu * 1000 / max(1, m.lifecycles), 3)
        return summary(m) | {"server_cpu_ms_per_lifecycle": served}

    def inprocess(clients: int, n: int) -> dict[str, Any]:
        return summary(run_inprocess(engine, clients, n, numbers["inprocess"]))

    runs: dict[str, list[dict[str, Any]]] = {
        name: [] for name in ("http", "inprocess", "http_sequential", "inprocess_sequential")
    }
    runs["warm_up"] = warmed  # not measured; listed for its errors (counted too)
    for round_ in range(args.rounds):
        sides = [("http", http), ("inprocess", inprocess)]
        # Which side goes first alternates: neither always finds the other's leftovers.
        for name, side in sides if round_ % 2 == 0 else sides[::-1]:
            runs[name].append(side(args.clients, args.lifecycles))
            runs[f"{name}_sequential"].append(side(1, args.sequential))
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (seats)")
    parser.add_argument("--lifecycles", type=int, default=160, help="per side per round")
    parser.add_argument("--sequential", type=int, default=40, help="one client, per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--plates", type=int, default=1000, help="owners in the mirror")
    parser.add_argument("--dir", type=Path, default=None, help="where the databases go")
    args = parser.parse_args()
    if not 1 <= args.clients <= 64 or min(args.lifecycles, args.sequential, args.rounds) < 1:
        parser.error("--clients 1 to 64; --lifecycles, --sequential, --rounds at least 1")
    if args.plates < args.clients or args.plates > 100_000:
        parser.error("--plates: at least --clients, at most 100000")
    try:
        import httpx  # noqa: F401
        import uvicorn  # noqa: F401
    except ModuleNotFoundError as exc:
        print(json.dumps({"benchmark": "bench_http", "skipped": f"{exc.name} is missing"}))
        return 0

    folder = Path(tempfile.mkdtemp(prefix="bench-http-", dir=args.dir))
    key = KeyRing.generate()
    tokens = [secrets.token_urlsafe(32) for _ in range(args.clients)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOVECAR_")}
    env |= {
        "MOVECAR_KEYS": f"k1={key}",
        "MOVECAR_API_TOKENS": ",".join(f"agent:{seat(k)}={t}" for k, t in enumerate(tokens)),
    }
    server: Server | None = None
    engine: MoveCar | None = None
    try:
        http_db = prepare(folder / "http", args.plates, env)
        inproc_db = prepare(folder / "inprocess", args.plates, env)
        server = Server(folder / "http", http_db, env)
        engine = connect(
            f"sqlite:///{inproc_db}",
            config=folder / "inprocess" / "movecar.toml",
            environ={"MOVECAR_KEYS": env["MOVECAR_KEYS"]},
        )
        runs = measure(args, server, tokens, engine)
        server_exit = server.stop()
        server = None
    finally:
        if server is not None:
            server.stop()
        if engine is not None:
            engine.close()
        shutil.rmtree(folder, ignore_errors=True)

    result = {
        "benchmark": "bench_http",
        "lifecycle": [
            "POST /v1/cases",
            "POST …/locate",
            "POST …/call",
            "POST …/outcome (answered_agreed)",
            "POST …/confirm-moved",
        ],
        "clients": args.clients,
        "lifecycles_per_round": args.lifecycles,
        "sequential_per_round": args.sequential,
        "rounds": args.rounds,
        "plates": args.plates,
        "http": medians(runs["http"]),
        "inprocess": medians(runs["inprocess"]),
        "http_sequential": medians(runs["http_sequential"]),
        "inprocess_sequential": medians(runs["inprocess_sequential"]),
        "ratio": {
            "lifecycles_per_s": ratios(runs["http"], runs["inprocess"], "lifecycles_per_s"),
            "p50": ratios(runs["http"], runs["inprocess"], "p50_ms"),
            "sequential_lifecycles_per_s": ratios(
                runs["http_sequential"], runs["inprocess_sequential"], "lifecycles_per_s"
            ),
            "sequential_p50": ratios(
                runs["http_sequential"], runs["inprocess_sequential"], "p50_ms"
            ),
            "cpu_per_lifecycle": ratios(runs["http"], runs["inprocess"], "cpu_ms_per_lifecycle"),
        },
        "errors": sum(r["errors"] for rs in runs.values() for r in rs),
        "server_exit": server_exit,
        "every_round": runs,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if result["errors"] or server_exit != 0:
        failed = f"bench_http: {result['errors']} error(s), server exit {server_exit}"
        print(failed, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
