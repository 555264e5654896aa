"""What the evidence ledger costs: the store with its ledger against the same store with
the ledger switched off, in the same run (ratios; these machines are shared and noisy).

Prints one JSON object. It measures; it does not time-box.

    .venv/bin/python benchmarks/bench_ledger.py                        # full run
    .venv/bin/python benchmarks/bench_ledger.py --audit-events 100000 --bulk-events 100000
    MOVECAR_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python benchmarks/bench_ledger.py

1. ``single_command``: the facade's lifecycle (open, locate, call, outcome, confirm; each
   command its own transaction) on SQLite (``synchronous=FULL``) and on PostgreSQL when a
   URL is given; ledger on and off alternate in rounds, and the median ratio of their
   seconds per command is reported. Target (issue 10): at most 1.3.
2. ``bulk``: ``SqlStore.bulk_import`` of the same histories, ledger on and off, alternating;
   the median ratio. Target: at most 1.3. Sequencing the imported leaves afterwards is
   reported on its own (the worker does it, not the import).
3. ``audit``: ``verify`` of a database of N events (default a million) with a checkpoint,
   against a plain loop that reads every row of every evidentiary table (and the leaves)
   and hashes each row once with SHA-256, on the same file. Target: at most 3.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from movecar_adapters.crypto import KeyRing
from movecar_adapters.signing import SigningKey
from movecar_adapters.sql import SqlStore, make_engine, upgrade, verify
from movecar_adapters.sql import schema as t
from movecar_core.app import MoveCar
from movecar_core.calendar import SHANGHAI
from movecar_core.case import Event
from movecar_core.clock import ManualClock
from movecar_core.memory import InMemoryTelephony, InMemoryVehicleRegistry
from movecar_core.testing.contracts import sample_history

START = dt.datetime(2025, 1, 1, tzinfo=SHANGHAI)
EVIDENCE = (
    t.cases, t.events, t.owner_lookups, t.access_log, t.legal_holds, t.recordings,
    t.monthly_reports, t.settlements, t.purge_log, t.ledger_leaves,
)  # fmt: skip


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def histories(n_cases: int, prefix: str) -> Iterator[list[Event]]:
    for i in range(n_cases):
        yield sample_history(f"{prefix}{i:09d}", at=START + dt.timedelta(seconds=7 * i))


def sqlite_url(folder: Path, name: str) -> str:
    return f"sqlite:///{folder / name}"


def _fresh(url: str, sqlite_synchronous: str = "FULL") -> sa.Engine:
    engine = make_engine(url, sqlite_synchronous=sqlite_synchronous)
    upgrade(engine)
    return engine


def lifecycle(store: SqlStore, n_cases: int) -> float:
    """Seconds per command of ``n_cases`` whole lifecycles through the facade."""
    app = MoveCar(
        store=store,
        registry=InMemoryVehicleRegistry({"苏D12345": "13912345678"}),
        telephony=InMemoryTelephony(),
        clock=store.clock,
    )
    start = time.perf_counter()
    for _ in range(n_cases):
        case_id = app.open_case(plate="苏D12345", location="武进", requester_phone="13800001111")
        app.locate_owner(case_id)
        call = app.call_owner(case_id, agent_id="seat-1")
        app.record_call_outcome(case_id, call.call_id, "answered_agreed")
        app.confirm_moved(case_id)
    return (time.perf_counter() - start) / (5 * n_cases)


def bench_commands(
    urls: dict[str, Callable[[bool], str]], keys: KeyRing, n_cases: int, rounds: int
) -> dict[str, object]:
    """Each backend gets two new databases, one per store (``urls[backend](ledger_on)``)."""
    out: dict[str, object] = {}
    for backend, url in urls.items():
        engines = {on: _fresh(url(on)) for on in (True, False)}
        stores = {
            on: SqlStore(engines[on], keys, clock=ManualClock(START), ledger=on) for on in engines
        }
        per: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(rounds):
            for on in (True, False):
                per[on].append(lifecycle(stores[on], n_cases))
        ratios = [a / b for a, b in zip(per[True], per[False], strict=True)]
        out[backend] = {
            "commands_per_round": 5 * n_cases,
            "ms_per_command_ledger": round(median(per[True]) * 1000, 3),
            "ms_per_command_no_ledger": round(median(per[False]) * 1000, 3),
            "ratio_median": round(median(ratios), 2),
            "ratio_range": [round(min(ratios), 2), round(max(ratios), 2)],
        }
        for engine in engines.values():
            engine.dispose()
    return out


def bench_bulk(folder: Path, keys: KeyRing, n_events: int, repeat: int) -> dict[str, object]:
    n_cases = n_events // 5
    cases = list(histories(n_cases, "b"))
    runs = []
    sequence_s = []
    for run in range(repeat):
        timing = {}
        for on in (True, False):
            url = sqlite_url(folder, f"bulk-{run}-{on}.db")
            engine = _fresh(url, sqlite_synchronous="NORMAL")
            store = SqlStore(engine, keys, ledger=on)
            start = time.perf_counter()
            store.bulk_import(cases)
            timing[on] = time.perf_counter() - start
            if on:
                start = time.perf_counter()
                store.sequence()
                sequence_s.append(time.perf_counter() - start)
            engine.dispose()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{folder / f'bulk-{run}-{on}.db'}{suffix}").unlink(missing_ok=True)
        runs.append(timing[True] / timing[False])
    return {
        "events": n_cases * 5,
        "ratio_median": round(median(runs), 2),
        "ratio_range": [round(min(runs), 2), round(max(runs), 2)],
        "sequence_seconds_median": round(median(sequence_s), 2),
        "note": "ledger on / off, same histories, inline writer; sequencing after is apart",
    }


def plain_loop(engine: sa.Engine) -> tuple[float, int]:
    """Seconds to read every row of every evidentiary table and SHA-256 each row once."""
    rows = 0
    start = time.perf_counter()
    with engine.connect() as conn:
        for table in EVIDENCE:
            result = conn.execution_options(yield_per=5000).execute(sa.select(table))
            for row in result:
                hashlib.sha256(repr(tuple(row)).encode()).digest()
                rows += 1
    return time.perf_counter() - start, rows


def bench_audit(folder: Path, keys: KeyRing, n_events: int, repeat: int) -> dict[str, object]:
    url = sqlite_url(folder, "audit.db")
    engine = _fresh(url, sqlite_synchronous="NORMAL")
    clock = ManualClock(START)
    store = SqlStore(engine, keys, clock=clock)
    start = time.perf_counter()
    store.bulk_import(histories(n_events // 5, "a"), chunk_cases=5000)
    load_s = time.perf_counter() - start
    clock.set(START + dt.timedelta(days=400))
    signer = SigningKey.generate()
    start = time.perf_counter()
    cp = store.checkpoint(signer)
    checkpoint_s = time.perf_counter() - start
    audit_s, plain_s = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        result = verify(store, checkpoints=[("cp", cp)], public_key=signer.public)
        audit_s.append(time.perf_counter() - start)
        assert result.ok, result.findings[:3]
        seconds, rows = plain_loop(engine)
        plain_s.append(seconds)
    engine.dispose()
    ratios = [a / p for a, p in zip(audit_s, plain_s, strict=True)]
    return {
        "events": result.events,
        "leaves": cp.size,
        "rows_read_by_plain_loop": rows,
        "load_seconds": round(load_s, 1),
        "checkpoint_seconds": round(checkpoint_s, 2),
        "audit_seconds_median": round(median(audit_s), 1),
        "plain_loop_seconds_median": round(median(plain_s), 1),
        "ratio_median": round(median(ratios), 2),
        "ratio_range": [round(min(ratios), 2), round(max(ratios), 2)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--command-cases", type=int, default=100, help="lifecycles per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bulk-events", type=int, default=500_000)
    parser.add_argument("--audit-events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the SQLite files go (default: tmp)")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("MOVECAR_BENCH_POSTGRES_URL")
        or os.environ.get("MOVECAR_TEST_POSTGRES_URL"),
    )
    args = parser.parse_args()
    keys = KeyRing([("k1", KeyRing.generate())])
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        result: dict[str, object] = {}
        urls: dict[str, Callable[[bool], str]] = {
            "sqlite_synchronous_full": lambda on: sqlite_url(folder, f"commands-{on}.db")
        }
        schemas: list[str] = []
        admin = None
        if args.postgres:
            admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")

            def pg(on: bool) -> str:
                schema = f"bench_{uuid.uuid4().hex[:8]}"
                schemas.append(schema)
                with admin.connect() as conn:  # type: ignore[union-attr]
                    conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
                url = sa.make_url(args.postgres).update_query_dict(
                    {"options": f"-csearch_path={schema}"}
                )
                return url.render_as_string(hide_password=False)

            urls["postgresql"] = pg
        try:
            result["single_command"] = bench_commands(urls, keys, args.command_cases, args.rounds)
        finally:
            if admin is not None:
                with admin.connect() as conn:
                    for schema in schemas:
                        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
                admin.dispose()
        result["bulk"] = bench_bulk(folder, keys, args.bulk_events, args.repeat)
        result["audit"] = bench_audit(folder, keys, args.audit_events, max(1, args.repeat - 1))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
