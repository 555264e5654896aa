"""``movecar worker``: delivers what the outbox holds, once each, and stops gracefully."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlsupport import KEY_1

from movecar_adapters import connect
from movecar_adapters.crypto import KeyRing
from movecar_adapters.worker import run
from movecar_core import EscalationReason, MoveCar
from movecar_core.app import Dispatch
from movecar_core.memory import InMemoryCommandCentre
from movecar_core.requesters import BLOCK_LIST_ONLY

HERE = Path(__file__).resolve().parent
MOVECAR = str(Path(sys.executable).parent / "movecar")


def escalated(mc: MoveCar, n: int) -> list[str]:
    ids = []
    for i in range(n):
        case_id = mc.open_case(
            plate="苏D12345", location=f"路口 {i}", requester_phone="13800001111"
        )
        mc.escalate(case_id, EscalationReason.EMERGENCY_LANE_BLOCKED)
        ids.append(case_id)
    return ids


def env_for(url: str, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOVECAR_")}
    return {**env, "MOVECAR_DB_URL": url, "MOVECAR_KEYS": f"k1={KEY_1}", **more}


def test_worker_threads_deliver_each_effect_once(fresh_url: str) -> None:
    desk = InMemoryCommandCentre()
    mc = connect(
        fresh_url,
        keys=KeyRing([("k1", KEY_1)]),
        dispatch="outbox",
        command_centre=desk,
        environ={},
        requesters=BLOCK_LIST_ONLY,  # one requester opens all 30 cases
    )
    assert mc.dispatch is Dispatch.OUTBOX
    ids = escalated(mc, 30)
    assert desk.notices == []  # recorded, left for the worker
    lines: list[str] = []
    stats = run(mc, name="t", concurrency=4, once=True, poll_seconds=0.05, report=lines.append)
    assert stats.failed == 0
    assert stats.ran == 60  # a notice to 110 and a requester message per case
    assert sorted(n.key.split(":")[0] for n in desk.notices) == sorted(ids)
    assert len(lines) == 60 and all(" ok: " in line for line in lines)
    assert not any("13800001111" in line for line in lines)
    assert list(mc.outbox.pending()) == []  # type: ignore[union-attr]
    mc.close()


def worker_once_after(tmp_path: Path, escalations: int, **env: str) -> tuple[str, Any]:
    """A database with ``escalations`` escalated cases (outbox dispatch), then
    ``movecar worker --once`` with the host's factory; returns (url, the finished run)."""
    url = f"sqlite:///{tmp_path}/w.db"
    with connect(url, keys=KeyRing([("k1", KEY_1)]), dispatch="outbox", environ={}) as mc:
        escalated(mc, escalations)
    done = subprocess.run(
        [MOVECAR, "worker", "--once", "--factory", "worker_factory:build"],
        env=env_for(url, PYTHONPATH=str(HERE), **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return url, done


def test_worker_once_from_the_command_line(tmp_path: Path) -> None:
    _, done = worker_once_after(tmp_path, 3)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith("worker worker: started on sqlite:///")
    assert sum("notify_110" in line and " ok: notice sent to 110" in line for line in lines) == 3
    assert lines[-1] == "worker worker: stopped; 6 effects ran, 0 failed"
    assert "Traceback" not in done.stderr


def test_worker_once_with_a_port_down_exits_3_and_keeps_the_effects(tmp_path: Path) -> None:
    url, done = worker_once_after(tmp_path, 2, DESK_DOWN="1")
    assert done.returncode == 3, done.stderr
    assert done.stderr.count("FAILED: ") == 2 and "refused the connection" in done.stderr
    with connect(url, keys=KeyRing([("k1", KEY_1)]), environ={}) as mc:
        assert {e.kind for e in mc.outbox.pending()} == {"notify_110"}  # type: ignore[union-attr]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_worker_stops_gracefully_on_a_signal(tmp_path: Path, signum: int) -> None:
    url = f"sqlite:///{tmp_path}/w.db"
    with connect(url, keys=KeyRing([("k1", KEY_1)]), environ={}):
        pass
    proc = subprocess.Popen(
        [MOVECAR, "worker", "--poll", "0.2", "--concurrency", "2"],
        env=env_for(url),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()
    assert "started" in first and "in-memory telephony and 110 desk" in first
    time.sleep(0.3)
    proc.send_signal(signum)
    assert proc.wait(timeout=15) == 0
    rest = proc.stderr.read()
    assert f"{signal.Signals(signum).name}, stopping" in rest
    assert rest.rstrip().endswith("stopped; 0 effects ran, 0 failed")
