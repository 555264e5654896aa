"""The benchmarks still run and print their JSON (tiny sizes: this checks, not measures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

RUNS = {
    "bench_engine.py": ["--cases", "200", "--machine-cases", "20"],
    "bench_http.py": [
        "--clients", "2", "--lifecycles", "4", "--sequential", "2", "--rounds", "2",
        "--plates", "10",
    ],
    "bench_lifecycle.py": ["--cases", "20", "--rounds", "2", "--small", "10", "--large", "60"],
    "bench_ledger.py": [
        "--command-cases", "2", "--rounds", "1", "--bulk-events", "500", "--audit-events", "500",
        "--repeat", "1",
    ],
    "bench_pricing.py": ["--calls", "20000", "--repeat", "1"],
    "bench_simulate.py": ["--volume", "3000", "--sqlite-volume", "300"],
    "bench_sip.py": ["--calls", "4", "--agents", "2", "--hold-ms", "50"],
    "bench_sqlite_lifecycle.py": ["--cases", "3", "--rounds", "2"],
    "bench_storage.py": [
        "--events", "2000", "--repeat", "2", "--year-cases", "2000", "--command-cases", "2",
    ],
}  # fmt: skip


@pytest.mark.parametrize("script", sorted(RUNS))
def test_benchmark_runs_and_prints_json(script: str, tmp_path: Path) -> None:
    extra = (
        ["--dir", str(tmp_path)]
        if script
        in (
            "bench_storage.py",
            "bench_ledger.py",
            "bench_simulate.py",
            "bench_sqlite_lifecycle.py",
            "bench_http.py",
        )
        else []
    )
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *RUNS[script], *extra],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert isinstance(result, dict) and result
    if script == "bench_ledger.py":
        assert result["audit"]["events"] == 500 and result["bulk"]["events"] == 500
        assert result["audit"]["ratio_median"] > 0
    if script == "bench_simulate.py":
        for store in ("memory", "sqlite"):
            assert result[store]["cases"] > 0
            assert sum(result[store]["share"].values()) == pytest.approx(1, abs=0.01)
    if script == "bench_lifecycle.py":
        assert result["cases_per_round"] == 20 and result["rounds"] == 2
        assert result["facade_vs_machine_ratio"] > 0
        assert result["with_command_ids"]["facade_us_per_case"] > 0
        assert (result["store_size"]["small"], result["store_size"]["large"]) == (10, 60)
        assert result["store_size"]["ratio"] > 0
    if script == "bench_http.py" and "skipped" not in result:  # skipped: no http extra
        assert (result["clients"], result["rounds"]) == (2, 2)
        assert result["errors"] == 0 and result["server_exit"] == 0
        for side in ("http", "inprocess", "http_sequential", "inprocess_sequential"):
            assert result[side]["errors"] == 0
            assert result[side]["lifecycles_per_s"] > 0 and result[side]["requests_per_s"] > 0
            assert 0 < result[side]["p50_ms"] <= result[side]["p99_ms"]
            assert set(result[side]["per_kind"]) == {
                "open", "locate", "call", "outcome", "confirm_moved",
            }  # fmt: skip
        assert result["http"]["server_cpu_ms_per_lifecycle"] >= 0
        for ratio in ("lifecycles_per_s", "p50", "sequential_lifecycles_per_s", "sequential_p50"):
            assert result["ratio"][ratio]["median"] > 0
            assert len(result["ratio"][ratio]["rounds"]) == 2
        rounds = result["every_round"]
        assert [len(rounds[side]) for side in ("http", "inprocess")] == [2, 2]
        assert all(r["lifecycles"] == 4 for r in rounds["http"] + rounds["inprocess"])
    if script == "bench_sqlite_lifecycle.py":
        assert (result["cases_per_round"], result["rounds"]) == (3, 2)
        assert result["ratio_median"] > 0
        for side in ("movecar", "eventsourcing"):
            assert result[side]["lifecycles_per_s"] > 0
            assert result[side]["commits"] == 5  # one per command, on both sides
            assert result[side]["statements"] > result[side]["commits"]
            assert result[side]["pragmas"] == {"journal_mode": "wal", "synchronous": 2}
    if script == "bench_sip.py" and "skipped" not in result:  # skipped: no baresip/sipp
        assert result["movecar_sip"]["calls"] == 4 and result["movecar_sip"]["lost"] == 0
        assert result["movecar_sip"]["recordings"] == 4
        assert result["sipp_uac"]["lost"] == 0
        assert result["movecar_sip"]["setup_ms"]["p50"] > 0 and result["ratio"]["setup_p50"] > 0
    if script == "bench_storage.py":
        assert result["bulk"]["events"] == 2000
        assert len(result["bulk"]["runs"]) == 2
        assert result["billable_count"]["cases_in_year"] == 2000
