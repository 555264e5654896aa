"""Storage benchmark: bulk path vs raw sqlite3, single-command throughput, billable count.

Prints one JSON object. It measures; it does not time-box.

    .venv/bin/python benchmarks/bench_storage.py                     # full run
    .venv/bin/python benchmarks/bench_storage.py --events 100000 --year-cases 200000
    MOVECAR_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python benchmarks/bench_storage.py

1. ``bulk``: N events (5-event case histories) through ``SqlStore.bulk_import`` (validate,
   fold, hash chain, encrypt phones, insert state rows, events and look-ups), against
   ``sqlite3.executemany`` of *the same rows* (read back from the adapter's database) into
   an identically migrated file, same PRAGMAs, same chunking, in the same run; the two
   alternate ``--repeat`` times (default 3) and the median ratio is reported.
2. ``single_command``: facade commands (open, locate, call, outcome, confirm), each its own
   transaction, on SQLite (``synchronous=FULL``) and PostgreSQL if a URL is given.
3. ``billable_count``: a contract year of cases (default 3.2 million, generated through the
   bulk path), then the time to count one month's billable calls via the state rows'
   ``opened_at`` index.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from movecar_adapters.crypto import KeyRing
from movecar_adapters.sql import SqlStore, make_engine, upgrade
from movecar_adapters.sql import schema as t
from movecar_core.app import MoveCar
from movecar_core.calendar import SHANGHAI
from movecar_core.case import CaseOpened, Event
from movecar_core.clock import ManualClock
from movecar_core.integrity import GENESIS
from movecar_core.memory import InMemoryTelephony, InMemoryVehicleRegistry
from movecar_core.settlement import ServiceMonth
from movecar_core.testing.contracts import sample_history

YEAR_START = dt.datetime(2025, 1, 1, tzinfo=SHANGHAI)
WRITERS = ("inline", "process")


def histories(n_cases: int) -> Iterator[list[Event]]:
    for i in range(n_cases):
        yield sample_history(f"b{i:010d}", at=YEAR_START + dt.timedelta(seconds=7 * i))


def opened_only(n_cases: int) -> Iterator[list[Event]]:
    """A year of inbound calls spread evenly (3.2M a year is one every ~10 s)."""
    step = 365 * 86400 / n_cases
    for i in range(n_cases):
        at = YEAR_START + dt.timedelta(seconds=step * i)
        yield [
            CaseOpened(
                f"y{i:010d}", at, None, "苏D12345", "武进区", f"138{i % 10**8:08d}", "seat-1"
            )
        ]


def new_sqlite(folder: Path, name: str, sync: str) -> sa.Engine:
    engine = make_engine(f"sqlite:///{folder / name}", sqlite_synchronous=sync)
    upgrade(engine)
    return engine


def raw_insert(path: Path, rows: dict[str, list[tuple[object, ...]]], n_cases: int) -> float:
    """Seconds to insert ``rows`` with plain ``sqlite3.executemany`` into a new migrated file,
    with the adapter's PRAGMAs and its chunks (2000 cases per transaction)."""
    new_sqlite(path.parent, path.name, "NORMAL").dispose()
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=NORMAL")
    raw.execute("PRAGMA foreign_keys=ON")
    per_case = {"mc_cases": 1, "mc_events": 5, "mc_owner_lookups": 1}
    start = time.perf_counter()
    for i in range(0, n_cases, 2000):
        raw.execute("BEGIN IMMEDIATE")
        for name, data in rows.items():
            k = per_case[name]
            part = data[i * k : (i + 2000) * k]
            if part:
                marks = ",".join("?" * len(part[0]))
                raw.executemany(f"INSERT INTO {name} VALUES ({marks})", part)
        raw.execute("COMMIT")
    seconds = time.perf_counter() - start
    n_raw = raw.execute("SELECT count(*) FROM mc_events").fetchone()[0]
    raw.close()
    assert n_raw == len(rows["mc_events"]), (n_raw, len(rows["mc_events"]))
    return seconds


def drop_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the bulk writer process)."""
    me, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def bench_bulk(folder: Path, n_events: int, keys: KeyRing, repeat: int) -> dict[str, object]:
    n_cases = n_events // 5
    # Built before the clock starts: making test events is neither side's work.
    cases_in = list(histories(n_cases))
    rows: dict[str, list[tuple[object, ...]]] = {}
    runs = []
    for run in range(repeat):  # the three alternate, so all see the same machine
        timings: dict[str, float] = {}
        for writer in WRITERS:
            path = folder / f"bulk_{writer}_{run}.db"
            engine = new_sqlite(folder, path.name, "NORMAL")
            store = SqlStore(engine, keys)
            start, cpu = time.perf_counter(), cpu_seconds()
            cases, events = store.bulk_import(cases_in, chunk_cases=2000, writer=writer)
            timings[writer] = time.perf_counter() - start
            timings[f"{writer}_cpu"] = cpu_seconds() - cpu
            if not rows:  # the raw side inserts exactly the rows the adapter made
                with engine.connect() as conn:
                    for tb in (t.cases, t.events, t.owner_lookups):
                        rows[tb.name] = [
                            tuple(r) for r in conn.exec_driver_sql(f"SELECT * FROM {tb.name}")
                        ]
            engine.dispose()
            drop_sqlite(path)
        raw_path = folder / f"bulk_raw_{run}.db"
        cpu = cpu_seconds()
        timings["raw"] = raw_insert(raw_path, rows, n_cases)
        timings["raw_cpu"] = cpu_seconds() - cpu
        drop_sqlite(raw_path)
        runs.append(
            {
                **{f"{k}_seconds": round(v, 2) for k, v in timings.items()},
                **{f"ratio_{w}_over_raw": round(timings[w] / timings["raw"], 2) for w in WRITERS},
            }
        )
    # Where the adapter's time goes: the per-event work raw SQL does not do (validate and
    # encode, encrypt the phones, fold, hash chain), timed again alone on the same cases.
    engine = new_sqlite(folder, "bulk_prepare.db", "NORMAL")
    store = SqlStore(engine, keys)
    start = time.perf_counter()
    for history in cases_in:
        case_id = history[0].case_id
        prepared = store.prepare(case_id, history)
        store._fold(case_id, history)
        store._chain(prepared, 1, GENESIS)
    integrity_s = time.perf_counter() - start
    engine.dispose()
    raw_s = median([float(r["raw_seconds"]) for r in runs])
    return {
        "events": events,
        "cases": cases,
        "runs": runs,
        **{
            f"ratio_{w}_over_raw_median": median([float(r[f"ratio_{w}_over_raw"]) for r in runs])
            for w in WRITERS
        },
        **{
            f"ratio_{w}_over_raw_range": [
                min(float(r[f"ratio_{w}_over_raw"]) for r in runs),
                max(float(r[f"ratio_{w}_over_raw"]) for r in runs),
            ]
            for w in WRITERS
        },
        "raw_seconds_median": raw_s,
        "integrity_and_privacy_seconds": round(integrity_s, 2),
        "raw_events_per_second": round(events / raw_s),
        "note": (
            "same rows (cases, events, look-ups), same schema, PRAGMAs and chunks; each run "
            "times writer='inline', writer='process' (SQL in a child process while the "
            "caller prepares the next chunks) and raw executemany in turn; *_cpu = CPU "
            "seconds of this process and the writer process; integrity_and_privacy = "
            "validate, encode, encrypt, fold and hash, which raw inserts of made rows skip"
        ),
    }


def bench_commands(url: str, keys: KeyRing, n_cases: int) -> dict[str, object]:
    engine = make_engine(url)
    upgrade(engine)
    store = SqlStore(engine, keys)
    clock = ManualClock()
    app = MoveCar(
        store=store,
        registry=InMemoryVehicleRegistry({"苏D12345": "13912345678"}),
        telephony=InMemoryTelephony(),
        clock=clock,
    )
    commands = 0
    start = time.perf_counter()
    for _ in range(n_cases):
        case_id = app.open_case(plate="苏D12345", location="武进", requester_phone="13800001111")
        app.locate_owner(case_id)
        call = app.call_owner(case_id, agent_id="seat-1")
        app.record_call_outcome(case_id, call.call_id, "answered_agreed")
        app.confirm_moved(case_id)
        commands += 5
    elapsed = time.perf_counter() - start
    engine.dispose()
    return {
        "commands": commands,
        "seconds": round(elapsed, 2),
        "commands_per_second": round(commands / elapsed, 1),
    }


def bench_billable(folder: Path, n_cases: int, keys: KeyRing) -> dict[str, object]:
    engine = new_sqlite(folder, "year.db", "NORMAL")
    store = SqlStore(engine, keys)
    start = time.perf_counter()
    store.bulk_import(opened_only(n_cases), chunk_cases=5000)
    load_s = time.perf_counter() - start
    engine.dispose()
    engine = make_engine(f"sqlite:///{folder / 'year.db'}")  # cold pool, fresh connection
    store = SqlStore(engine, keys)
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        count = store.count_opened(*ServiceMonth(2025, 3).bounds())
        timings.append(time.perf_counter() - start)
    with engine.connect() as conn:
        plan = [
            str(r[-1])
            for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT count(*) FROM mc_cases "
                "WHERE opened_at >= ? AND opened_at < ?",
                ("2025-02-28 16:00:00.000000", "2025-03-31 16:00:00.000000"),
            )
        ]
    engine.dispose()
    return {
        "cases_in_year": n_cases,
        "bulk_load_seconds": round(load_s, 1),
        "march_billable_calls": count,
        "count_seconds_first": round(timings[0], 4),
        "count_seconds_best": round(min(timings), 4),
        "query_plan": plan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="bulk runs (median reported)")
    parser.add_argument("--year-cases", type=int, default=3_200_000)
    parser.add_argument("--command-cases", type=int, default=200)
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
        result: dict[str, object] = {"sqlite_version": sqlite3.sqlite_version}
        result["bulk"] = bench_bulk(folder, args.events, keys, args.repeat)
        single: dict[str, object] = {
            "sqlite_synchronous_full": bench_commands(
                f"sqlite:///{folder / 'commands.db'}", keys, args.command_cases
            )
        }
        if args.postgres:
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            url = sa.make_url(args.postgres).update_query_dict(
                {"options": f"-csearch_path={schema}"}
            )
            try:
                single["postgresql"] = bench_commands(
                    url.render_as_string(hide_password=False), keys, args.command_cases
                )
            finally:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
                admin.dispose()
        result["single_command"] = single
        result["billable_count"] = bench_billable(folder, args.year_cases, keys)
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
