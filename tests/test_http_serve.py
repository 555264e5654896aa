"""``movecar serve`` as a real process on 127.0.0.1: a smoke test, and SIGTERM's graceful
stop (a request in flight is answered, the engine closed, exit code 0)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_support import CASE, KEY, SECRET, TOKEN_SPEC, TOKENS

pytest.importorskip("uvicorn", reason="movecar serve needs the http extra")


class Served:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url
        self.lines: list[str] = []

    def read_until(self, pattern: str) -> str:
        """stderr lines until one matches (the server's own readiness lines)."""
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"{pattern!r} never came; stderr:\n{''.join(self.lines)}")


def spawn(argv: list[str], folder: Path, env: dict[str, str]) -> Served:
    """``argv`` (a ``movecar serve`` in the end) in ``folder``, read until it says where it
    listens; ``url`` is that address. The caller stops it (``proc.terminate()``)."""
    proc = subprocess.Popen(
        argv,
        cwd=folder,
        env=env | {"PYTHONUNBUFFERED": "1"},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    served = Served(proc, "")
    line = served.read_until(r"movecar serve: ")
    found = re.search(r"listening on (http://[0-9.]+:[0-9]+)", line)
    assert found is not None, "".join(served.lines)
    served.url = found[1]
    return served


def start(folder: Path) -> Served:
    env = dict(os.environ) | {
        "MOVECAR_KEYS": f"k1={KEY}",
        "MOVECAR_API_TOKENS": TOKEN_SPEC,
        "MOVECAR_WEBHOOK_SECRET": SECRET,
    }
    env.pop("MOVECAR_DB_URL", None)
    env.pop("MOVECAR_CONFIG", None)
    return spawn(
        [sys.executable, "-m", "movecar_adapters.cli", "serve", "--port", "0"], folder, env
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = start(tmp_path)
    yield s
    if s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait(10)


def request(
    url: str,
    method: str = "GET",
    body: dict[str, str] | None = None,
    token: str | None = TOKENS["agent"],
) -> tuple[int, dict[str, object]]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_real_server_answers_on_loopback(served: Served, tmp_path: Path) -> None:
    assert request(f"{served.url}/healthz", token=None) == (200, {"status": "ok"})
    status, body = request(f"{served.url}/v1/cases", "POST", CASE)
    assert status == 201 and body["state"] == "received"
    status, body = request(f"{served.url}/v1/cases/{body['case_id']}", token=None)
    assert status == 401 and body["type"] == "urn:movecar:error:Unauthenticated"
    assert (tmp_path / "movecar.db").is_file(), "the embedded SQLite file by default"
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(30) == 0
    rest = served.proc.stderr.read() if served.proc.stderr else ""
    assert "engine closed" in rest
    assert TOKENS["agent"] not in "".join(served.lines) + rest


def test_sigterm_answers_the_request_in_flight_then_exits_0(served: Served) -> None:
    body = json.dumps(CASE).encode()
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as conn:
        conn.sendall(
            (
                "POST /v1/cases HTTP/1.1\r\n"
                f"Host: {host}\r\nAuthorization: Bearer {TOKENS['agent']}\r\n"
                "Content-Type: application/json\r\nExpect: 100-continue\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
        )
        # The app is reading the body: the request is in flight.
        assert conn.recv(100).startswith(b"HTTP/1.1 100 Continue")
        served.proc.send_signal(signal.SIGTERM)
        served.read_until(r"Shutting down")
        conn.sendall(body)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
    assert served.proc.wait(30) == 0
    served.read_until(r"movecar serve: stopped; engine closed")
