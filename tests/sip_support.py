"""What the SIP tests share: sipp as the owner's phone, on 127.0.0.1 with free ports.

A :class:`Sipp` runs one scenario of ``tests/sipp/`` as a UAS (with RTP echo, so the
caller's recording has sound both ways) and reports what it saw: its exit status (0 when
every call passed the scenario, caller-ID check included), the SIP messages it logged.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import time
import wave
from array import array
from pathlib import Path

import attrs
import pytest

from movecar_adapters.sip.baresip import free_port

SCENARIOS = Path(__file__).parent / "sipp"
TOOLS = ("baresip", "sipp", "espeak-ng", "sox")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def require_tools() -> None:
    """Skip, naming what is missing (CI installs them: see .ci/run)."""
    missing = missing_tools()
    if missing:
        pytest.skip(
            f"needs {', '.join(missing)} (apt-get install baresip-core sip-tester espeak-ng sox)"
        )


def render(name: str, folder: Path, **values: object) -> Path:
    """The scenario ``name`` with its ``@@KEY@@`` placeholders filled, written to ``folder``."""
    text = (SCENARIOS / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", str(value))
    left = re.findall(r"@@\w+@@", text)
    assert not left, f"{name}: no value for {left}"
    target = folder / name
    target.write_text(text, encoding="utf-8")
    return target


def free_udp_pair(host: str = "127.0.0.1") -> int:
    """An even port with itself and the port 2 above it free (sipp's RTP echo binds both)."""
    for _ in range(100):
        port = free_port(host, socket.SOCK_DGRAM)
        if port % 2 or port > 65000:
            continue
        with contextlib.ExitStack() as stack:
            try:
                for p in (port, port + 2):
                    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                    sock.bind((host, p))
            except OSError:
                continue
        return port
    raise RuntimeError("no free UDP pair")


@attrs.frozen
class SippResult:
    status: int
    messages: str
    errors: str

    def messages_of(self) -> list[tuple[str, str]]:
        """Every SIP message in sipp's log: ``("received" | "sent", text)``, in order."""
        found = []
        for block in re.split(r"^-{10,}.*$", self.messages, flags=re.MULTILINE):
            # "UDP message received [856] bytes :" and "UDP message sent (333 bytes):"
            head = re.search(r"message (received|sent) [\[(]\d+[\])]? bytes\)? ?:\n", block)
            if head:
                found.append((head.group(1), block[head.end() :].strip()))
        return found

    def requests(self, method: str) -> list[str]:
        """The ``method`` requests sipp received or sent, each as its text."""
        return [text for _, text in self.messages_of() if text.startswith(f"{method} sip:")]

    def responses(self) -> list[str]:
        """The status lines of every response, in order (``SIP/2.0 487 Request ...``)."""
        return [
            text.splitlines()[0] for _, text in self.messages_of() if text.startswith("SIP/2.0 ")
        ]

    def header(self, method: str, name: str) -> list[str]:
        """The ``name`` header of every ``method`` request in the log."""
        values = []
        for request in self.requests(method):
            match = re.search(rf"^{name}:\s*(.*)$", request, re.MULTILINE | re.IGNORECASE)
            if match:
                values.append(match.group(1).strip())
        return values


class Sipp:
    """One sipp UAS playing ``scenario`` for ``calls`` calls (None: until stopped)."""

    def __init__(
        self, scenario: str, folder: Path, *, calls: int | None = 1, **values: object
    ) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        values.setdefault("RING_MS", 200)
        self.scenario = render(scenario, folder, **values)
        self.port = free_port("127.0.0.1", socket.SOCK_DGRAM, both=True)
        self.media_port = free_udp_pair()
        self.trunk = f"127.0.0.1:{self.port}"
        argv = [
            "sipp",
            *("-sf", str(self.scenario)),
            *("-i", "127.0.0.1", "-p", str(self.port)),
            *("-mi", "127.0.0.1", "-mp", str(self.media_port), "-rtp_echo"),
            *("-trace_msg", "-message_file", str(folder / "messages.log")),
            *("-trace_err", "-error_file", str(folder / "errors.log")),
            *("-trace_logs", "-log_file", str(folder / "actions.log")),
            *("-timeout", "120", "-nostdin"),
        ]
        if calls is not None:
            argv += ["-m", str(calls)]
        self._process = subprocess.Popen(
            argv,
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(folder / "sipp.err", "wb"),  # noqa: SIM115 - closed by the child
        )
        self._wait_listening()

    def _wait_listening(self) -> None:
        # sipp binds its SIP port at once; a UDP bind that fails means it is up.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"sipp exited: {(self.folder / 'sipp.err').read_text()[-500:]}")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                try:
                    probe.bind(("127.0.0.1", self.port))
                except OSError:
                    return
            time.sleep(0.01)
        raise RuntimeError("sipp did not bind its port")

    def uri(self, number: str = "13912345678") -> str:
        return f"sip:{number}@{self.trunk}"

    def finish(self, timeout_s: float = 20.0) -> SippResult:
        """Wait for sipp to end (after its calls), or stop it; what it saw."""
        try:
            status = self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            status = -1
        return self.result(status)

    def result(self, status: int) -> SippResult:
        def read(name: str) -> str:
            path = self.folder / name
            return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

        return SippResult(status, read("messages.log"), read("errors.log"))

    def stop(self) -> int:
        """End sipp now (SIGUSR1 is its graceful quit, then SIGKILL)."""
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGUSR1)
            try:
                self._process.wait(3)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        return self._process.returncode


def rms(path: Path) -> float:
    """The RMS level of a 16-bit WAV file, 0.0 (silence) to 1.0 (full scale)."""
    with wave.open(str(path), "rb") as audio:
        assert audio.getsampwidth() == 2, "16-bit expected"
        samples = array("h", audio.readframes(audio.getnframes()))
    if not samples:
        return 0.0
    return (sum(s * s for s in samples) / len(samples)) ** 0.5 / 32768


def sox_rms(path: Path) -> float:
    """The RMS amplitude ``sox stat`` reports (a second opinion on :func:`rms`)."""
    done = subprocess.run(
        ["sox", str(path), "-n", "stat"], capture_output=True, text=True, check=True, timeout=30
    )
    match = re.search(r"RMS\s+amplitude:\s+([0-9.]+)", done.stderr)
    assert match, done.stderr
    return float(match.group(1))
