"""Shared by the HTTP tests: tokens, an engine on a real SQLite file, a client, signing."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from movecar_adapters import connect
from movecar_adapters.crypto import KeyRing
from movecar_adapters.http import create_app, sign
from movecar_core.app import MoveCar
from movecar_core.calendar import SHANGHAI
from movecar_core.clock import ManualClock
from movecar_core.memory import InMemoryVehicleRegistry
from movecar_core.requesters import RequesterPolicy

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx versions
    from fastapi.testclient import TestClient

KEY = KeyRing.generate()
TOKENS = {
    "agent": "agent-token-" + "a" * 32,
    "agent2": "agent2-token-" + "c" * 32,
    "supervisor": "supervisor-token-" + "s" * 32,
    "command_centre": "command-centre-token-" + "k" * 32,
    "auditor": "auditor-token-" + "u" * 32,
}
TOKEN_SPEC = (
    f"agent:seat-07={TOKENS['agent']},agent:seat-08={TOKENS['agent2']},"
    f"supervisor={TOKENS['supervisor']},command_centre:110-desk={TOKENS['command_centre']},"
    f"auditor={TOKENS['auditor']}"
)
SECRET = "whsec-" + "w" * 40
T0 = dt.datetime(2024, 5, 6, 9, 0, tzinfo=SHANGHAI)
OWNERS = {"苏D12345": "13900001111", "苏D54321": "13900002222", "苏DA1234": "13900003333"}
CASE = {"plate": "苏D12345", "location": "湖塘镇", "requester_phone": "13800001111"}


def auth(role: str = "agent") -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def sqlite_engine(
    folder: Path, clock: ManualClock | None = None, url: str | None = None
) -> MoveCar:
    return connect(
        url or f"sqlite:///{folder / 'http.db'}",
        clock=clock or ManualClock(T0),
        keys=KeyRing([("k1", KEY)]),
        registry=InMemoryVehicleRegistry(OWNERS),
        environ={},
        upgrade=True,
        # these tests open many cases from one requester number: no daily limit
        requesters=RequesterPolicy(per_day=None, per_month=None),
    )


def client(engine: MoveCar, **options: Any) -> TestClient:
    app = create_app(engine, tokens=TOKEN_SPEC, webhook_secret=SECRET, **options)
    # raise_server_exceptions=False: a 500 is an answer to check, as a client sees it
    return TestClient(app, raise_server_exceptions=False)


def signed(
    body: dict[str, Any] | bytes, at: dt.datetime, secret: str = SECRET
) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    header = sign(secret, raw, int(at.timestamp()))
    return raw, {"X-Movecar-Signature": header, "Content-Type": "application/json"}


@contextlib.contextmanager
def live(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free port of 127.0.0.1, in a thread: its URL."""
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # the port is ours before the server starts
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:  # uvicorn says when it listens; its thread's end is a failure
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        thread.join(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
