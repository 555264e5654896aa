"""Testing an integration over HTTP with the library's test kit.

A call-centre platform that runs ``movecar serve`` beside it (in any language) tests the
integration the way the library tests itself: the test kit's CaseServiceMachine drives
random command sequences through the service's HTTP API, as a seat, reads every case
back as a supervisor, and checks the invariants visible from outside (state = fold of
the history, terminal states absorb, call attempts within the limit, refusals typed and
writing nothing, repeated Idempotency-Keys answering the first result, no owner number
shown to the seat).

Everything here is real: ``movecar serve`` runs as its own process on a SQLite file,
and its owner data source is an HTTP platform on 127.0.0.1 (the default protocol of
docs/registry.md) whose owners each run of the machine sets. In a pytest suite, expose
``TestOverHttp = OverHttp.TestCase`` instead of calling run_state_machine_as_test.

Run: python examples/host_http_property_suite.py
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from movecar_adapters.crypto import KeyRing
from movecar_adapters.http import MoveCarClient
from movecar_core.commands import CaseCommands
from movecar_core.testing.service_machine import CaseReader, CaseServiceMachine

#: The owner platform's data: what the machine's current run knows (plate -> phone).
OWNERS: dict[str, str] = {}


class OwnerPlatform(BaseHTTPRequestHandler):
    """``GET /vehicles/{plate}``: the owner's number, or 404."""

    def do_GET(self) -> None:
        plate = urllib.parse.unquote(self.path.rpartition("/")[2])
        phone = OWNERS.get(plate)
        body = json.dumps({"plate": plate, "owner_phone": phone}).encode()
        self.send_response(200 if phone else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body) if phone else 0))
        self.end_headers()
        if phone:
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # quiet
        pass


def serve(folder: Path, registry_url: str, tokens: str) -> tuple[subprocess.Popen[str], str]:
    """``movecar serve`` on a free port of 127.0.0.1; its URL from the line saying so."""
    # The machine opens many cases from few numbers: no requester limits in this test.
    (folder / "movecar.toml").write_text("[requesters]\nper_day = 0\nper_month = 0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOVECAR_")} | {
        "MOVECAR_KEYS": f"k1={KeyRing.generate()}",
        "MOVECAR_API_TOKENS": tokens,
        "MOVECAR_REGISTRY_URL": registry_url,
        "PYTHONUNBUFFERED": "1",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "movecar_adapters.cli", "serve", "--port", "0"],
        cwd=folder,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert server.stderr is not None
    said = []
    for line in server.stderr:  # until it says where it listens (or ends)
        said.append(line)
        found = re.search(r"movecar serve: listening on (http://127\.0\.0\.1:[0-9]+)", line)
        if found is not None:
            break
    else:
        server.kill()
        raise SystemExit("movecar serve did not start:\n" + "".join(said))
    # Keep reading its log so that a full pipe never blocks it.
    threading.Thread(target=server.stderr.read, daemon=True).start()
    return server, found[1]


def main() -> None:
    platform = ThreadingHTTPServer(("127.0.0.1", 0), OwnerPlatform)
    threading.Thread(target=platform.serve_forever, daemon=True).start()
    agent, supervisor = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory() as folder:
        server, url = serve(
            Path(folder),
            f"http://127.0.0.1:{platform.server_port}",
            f"agent:seat-07={agent},supervisor:lead-01={supervisor}",
        )
        seat, lead = MoveCarClient(url, agent), MoveCarClient(url, supervisor)

        class OverHttp(CaseServiceMachine):
            def make_service(self, owners: Mapping[str, str]) -> tuple[CaseCommands, CaseReader]:
                OWNERS.clear()
                OWNERS.update(owners)
                return seat, lead

        try:
            run_state_machine_as_test(
                OverHttp,
                settings=settings(max_examples=15, stateful_step_count=20, deadline=None),
            )
        finally:
            seat.close()
            lead.close()
            server.terminate()
            stopped = server.wait(30)
            platform.shutdown()
    assert stopped == 0, f"movecar serve exited {stopped}"
    print("host HTTP property suite: 15 random command sequences over HTTP kept every invariant")


if __name__ == "__main__":
    main()
