"""One baresip user agent: its configuration folder, its process and its control socket.

baresip (Debian 12's ``baresip-core`` 1.0.0) places the calls; Python drives it through
the ``ctrl_tcp`` module (:mod:`movecar_adapters.sip.netstring`). Facts this module is
built on, each checked on that version:

- Every port is configured (SIP, control, RTP): the defaults (5060, 4444, 10000-20000)
  collide with anything else on the host, and two agents cannot share one.
- The control port has no authentication: it is bound to 127.0.0.1 only, whatever the
  SIP address.
- ``-n <address>`` binds the agent to an explicit address (``-n lo`` fails).
- ``sndfile`` reads its folder (``snd_path``) once, when it loads, and names its two files
  per call by the second (``dump-<time>-enc.wav`` sent, ``-dec.wav`` received): an agent
  therefore carries one call at a time, and the adapter moves the files away before the
  next. baresip formats those names into 128 bytes and the audio source's device into
  128 bytes too, so both are short paths relative to the agent's folder (its cwd).
- When its SIP port is taken baresip logs "ua: init failed" and exits before it loads
  ``ctrl_tcp``: a start that never opens the control port is retried on other ports.
- ``quit`` ends it (an ``SHUTDOWN`` event, no response); with a call still up it can take
  seconds, so stopping escalates to SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from movecar_adapters.sip.netstring import (
    CtrlProtocolError,
    Event,
    FrameDecoder,
    Response,
    encode_command,
    parse_message,
)

log = logging.getLogger(__name__)

#: The modules an agent loads: codecs (G.711 only: what a carrier trunk always takes),
#: the WAV file audio source (the greeting), the WAV recorder, the account file, the
#: command set (``dial``, ``hangup``, ``transfer``, ``ausrc``...) and the control socket.
#: No sound card modules: the agent has no microphone or speaker.
MODULES = ("g711.so", "aufile.so", "sndfile.so")
APP_MODULES = ("account.so", "menu.so", "ctrl_tcp.so")
#: Folder of the agent's recorder, relative to its own folder (see the module docstring).
RECORDER_FOLDER = "rec"


class UserAgentError(Exception):
    """The user agent cannot be started, or stopped answering."""


class NotSent(UserAgentError):
    """A command that never reached the user agent (it certainly did nothing)."""


def free_port(host: str, kind: int = socket.SOCK_STREAM, *, both: bool = False) -> int:
    """A port on ``host`` that nothing listens on now (UDP and TCP when ``both``).

    The port is released before it is used, so another process may take it in between:
    the caller retries a start that fails on a taken port.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind((host, 0))
            except OSError as exc:
                raise UserAgentError(f"cannot bind {host}: {exc.strerror or exc}") from None
            port: int = probe.getsockname()[1]
        if not both:
            return port
        other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, other) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        return port
    raise UserAgentError(f"no free port on {host}")


@attrs.frozen
class AgentSettings:
    """What one agent is started with."""

    #: The baresip executable.
    executable: str
    #: Where the agent's folder is made (it is removed when the agent stops).
    parent: Path
    #: The address SIP binds to (``-n``); the control port is always on 127.0.0.1.
    bind_address: str
    #: The caller ID (the account's user and display name: 合同二(六) "0519110").
    caller_id: str
    #: The host of the From URI (default: the bind address).
    from_domain: str
    #: RTP ports: baresip picks a free pair in this range for each call.
    rtp_ports: tuple[int, int]
    #: Seconds to wait for the control port after the start.
    start_timeout_s: float = 5.0
    #: Seconds to wait for a response to a command.
    command_timeout_s: float = 5.0


def _config_text(settings: AgentSettings, sip_port: int, ctrl_port: int) -> str:
    low, high = settings.rtp_ports
    lines = [
        ("poll_method", "epoll"),
        ("sip_listen", f"{settings.bind_address}:{sip_port}"),
        # baresip's own timeout does not end a ringing outgoing call (checked on 1.0.0):
        # the adapter enforces the ring timeout and hangs up itself (CANCEL, then 487).
        ("call_local_timeout", "0"),
        # One call per agent: an incoming call while it carries ours is refused (486).
        ("call_max_calls", "1"),
        # Played until the adapter names each call's greeting with ``ausrc``.
        ("audio_source", "aufile,greeting.wav"),
        ("audio_alert", "aufile,greeting.wav"),
        ("audio_path", "."),
        ("audio_buffer", "20-160"),
        ("ausrc_format", "s16"),
        ("auplay_format", "s16"),
        ("auenc_format", "s16"),
        ("audec_format", "s16"),
        ("rtp_ports", f"{low}-{high}"),
        ("rtcp_mux", "no"),
        ("jitter_buffer_delay", "5-10"),
        ("rtp_stats", "no"),
        ("module_path", "/usr/lib/baresip/modules"),
        *(("module", name) for name in MODULES),
        *(("module_app", name) for name in APP_MODULES),
        ("snd_path", RECORDER_FOLDER),
        ("ctrl_tcp_listen", f"127.0.0.1:{ctrl_port}"),
    ]
    return "".join(f"{key}\t\t{value}\n" for key, value in lines)


def _account_text(settings: AgentSettings) -> str:
    # The From of every call: "0519110" <sip:0519110@host> (合同二(六) "统一使用“0519110”
    # 为主叫号码"); regint=0: no registration, the trunk trusts the address.
    # call_transfer=no: a REFER *from* the far end is refused. baresip would otherwise dial
    # whatever the owner's side names, from 0519110 (annex 2 forbids calls we did not
    # decide to make); our own REFER to 110 is not affected.
    cid = settings.caller_id
    params = "regint=0;audio_codecs=PCMU,PCMA;answermode=manual;call_transfer=no;mwi=no"
    return f'"{cid}" <sip:{cid}@{settings.from_domain}>;{params}\n'


EventHandler = Callable[["UserAgent", Event], None]
GoneHandler = Callable[["UserAgent", str], None]


class UserAgent:
    """One running baresip process and the connection to its control port.

    Events are delivered to ``on_event`` from this agent's reader thread, in the order
    baresip sent them; ``on_gone`` is called once when the connection is lost (the process
    died or was stopped).
    """

    _numbers = itertools.count(1)

    def __init__(
        self,
        settings: AgentSettings,
        on_event: EventHandler,
        on_gone: GoneHandler,
    ) -> None:
        self.settings = settings
        self.number = next(self._numbers)
        self.folder = Path(settings.parent, f"ua-{self.number}")
        self.sip_port = 0
        self.ctrl_port = 0
        self._on_event = on_event
        self._on_gone = on_gone
        self._process: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._send_lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._waiting: dict[str, tuple[threading.Event, list[Response]]] = {}
        self._state_lock = threading.Lock()
        self._gone: str | None = None
        self._stopping = False
        self._started = False

    # --- life cycle ---------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def alive(self) -> bool:
        return self._gone is None and self._process is not None

    @property
    def recorder_folder(self) -> Path:
        return self.folder / RECORDER_FOLDER

    def start(self, attempts: int = 3) -> None:
        """Start the process and connect to it; :class:`UserAgentError` when it cannot."""
        self.folder.mkdir(parents=True, exist_ok=False)
        self.recorder_folder.mkdir()
        Path(self.folder, "contacts").write_text("", encoding="utf-8")
        Path(self.folder, "accounts").write_text(_account_text(self.settings), encoding="utf-8")
        why = "not started"
        for _ in range(attempts):
            self.sip_port = free_port(self.settings.bind_address, both=True)
            self.ctrl_port = free_port("127.0.0.1")
            Path(self.folder, "config").write_text(
                _config_text(self.settings, self.sip_port, self.ctrl_port), encoding="utf-8"
            )
            try:
                self._spawn_and_connect()
            except UserAgentError as exc:
                why = str(exc)
                self._kill()
                if self._reader is not None:
                    self._reader.join(2.0)
                continue
            self._started = True
            return
        self._remove_folder()
        raise UserAgentError(why)

    def _spawn_and_connect(self) -> None:
        executable = self.settings.executable
        self._gone = None
        with open(self.folder / "baresip.log", "ab") as out:
            try:
                self._process = subprocess.Popen(
                    [executable, "-f", str(self.folder), "-n", self.settings.bind_address],
                    cwd=self.folder,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    # Its own session: a Ctrl-C meant for the host does not kill calls
                    # half-way, and stop() can signal the agent alone.
                    start_new_session=True,
                )
            except OSError as exc:
                raise UserAgentError(f"cannot run {executable}: {exc.strerror}") from None
        deadline = time.monotonic() + self.settings.start_timeout_s
        process = self._process
        while True:
            if process.poll() is not None:
                raise UserAgentError(
                    f"baresip exited at start (status {process.returncode}): "
                    f"{self._log_tail() or 'no output'}"
                )
            try:
                sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise UserAgentError(
                        f"baresip did not open its control port in "
                        f"{self.settings.start_timeout_s:g} s: {self._log_tail() or 'no output'}"
                    ) from None
                time.sleep(0.01)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._reader = threading.Thread(
            target=self._read, args=(sock,), name=f"baresip-{self.number}", daemon=True
        )
        self._reader.start()
        # The control port opens only after the account's agent exists; ask for it anyway:
        # a start that failed half-way must not carry calls.
        aor = f"sip:{self.settings.caller_id}@{self.settings.from_domain}"
        answer = self.command("uafind", aor)
        if not answer.ok or aor not in answer.data:
            raise UserAgentError(f"baresip has no agent for {aor}: {answer.data.strip()[:200]}")

    def _log_tail(self) -> str:
        try:
            text = Path(self.folder, "baresip.log").read_bytes()[-4000:]
        except OSError:
            return ""
        lines = [
            line.strip()
            for line in text.decode("utf-8", "replace").replace("\x1b[31m", "").splitlines()
            if "failed" in line or "error" in line.lower()
        ]
        return "; ".join(lines[-3:]).replace("\x1b[;m", "")[:300]

    def stop(self, grace_s: float = 2.0) -> None:
        """End the process: ``quit``, then SIGTERM, then SIGKILL; remove the folder."""
        self._stopping = True
        process = self._process
        if process is not None and process.poll() is None and self.alive:
            with contextlib.suppress(UserAgentError):
                self.send_only("quit")
        if process is not None:
            try:
                process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGTERM)
                try:
                    process.wait(1.0)
                except subprocess.TimeoutExpired:
                    self._kill()
        self._close_socket()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(2.0)
        self._remove_folder()

    def _signal(self, which: signal.Signals) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, which)

    def _kill(self) -> None:
        process = self._process
        if process is None:
            return
        self._signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5.0)
        self._close_socket()

    def _close_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _remove_folder(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- commands -----------------------------------------------------------------------

    def command(self, name: str, params: str = "", timeout_s: float | None = None) -> Response:
        """Run one command and return baresip's response.

        :class:`UserAgentError` when the agent is gone or does not answer in time.
        """
        token = f"t{next(self._tokens)}"
        done = threading.Event()
        answer: list[Response] = []
        with self._state_lock:
            if self._gone is not None:
                raise NotSent(self._gone)
            self._waiting[token] = (done, answer)
        try:
            self._send(name, params, token)
            if not done.wait(timeout_s or self.settings.command_timeout_s):
                raise UserAgentError(f"baresip did not answer {name!r} in time")
            if not answer:
                raise UserAgentError(self._gone or "the control connection was lost")
            return answer[0]
        finally:
            with self._state_lock:
                self._waiting.pop(token, None)

    def send_only(self, name: str, params: str = "") -> None:
        """Send a command whose answer nobody waits for (``quit`` has none)."""
        self._send(name, params, f"t{next(self._tokens)}")

    def _send(self, name: str, params: str, token: str) -> None:
        frame = encode_command(name, params, token)
        with self._send_lock:
            sock = self._sock
            if sock is None:
                raise NotSent(self._gone or "not connected")
            try:
                sock.sendall(frame)
            except OSError as exc:
                # Part of the frame may have left; baresip only acts on a whole frame,
                # and the connection is dead after this.
                raise NotSent(f"the control connection failed: {exc}") from None

    # --- the reader thread --------------------------------------------------------------

    def _read(self, sock: socket.socket) -> None:
        decoder = FrameDecoder()
        why = "baresip closed its control connection"
        quick_ack = getattr(socket, "TCP_QUICKACK", None)
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                if quick_ack is not None:
                    # baresip writes each event as its own small segment without
                    # TCP_NODELAY: Nagle holds the next one until this one is acknowledged,
                    # and a delayed ACK (40 ms on Linux) would add that to every event.
                    # Linux clears QUICKACK by itself, so it is set after every read.
                    sock.setsockopt(socket.IPPROTO_TCP, quick_ack, 1)
                for frame in decoder.feed(data):
                    message = parse_message(frame)
                    if isinstance(message, Response):
                        self._answer(message)
                    else:
                        self._deliver(message)
        except CtrlProtocolError as exc:
            why = f"baresip's control connection broke its protocol: {exc}"
            log.warning("user agent %d: %s", self.number, why)
        except OSError as exc:
            why = f"the control connection failed: {exc.strerror or exc}"
        self._lost(why)

    def _answer(self, response: Response) -> None:
        with self._state_lock:
            waiting = self._waiting.get(response.token or "")
        if waiting is not None:
            done, answer = waiting
            answer.append(response)
            done.set()

    def _deliver(self, event: Event) -> None:
        try:
            self._on_event(self, event)
        except Exception:  # a bug in a handler must not stop this agent's events
            log.exception("user agent %d: handling %s failed", self.number, event.type)

    def _lost(self, why: str) -> None:
        with self._state_lock:
            if self._gone is not None:
                return
            self._gone = "the user agent stopped" if self._stopping else why
            waiting = list(self._waiting.values())
        for done, _ in waiting:
            done.set()
        if not self._started:
            return  # a failed start: start() reports it
        try:
            self._on_gone(self, self._gone)
        except Exception:
            log.exception("user agent %d: handling its loss failed", self.number)

    def files_open_in(self, folder: Path) -> bool:
        """Whether the process still holds a file of ``folder`` open (Linux /proc): the
        recorder closes its WAV files, writing their headers, after the call has ended."""
        pid = self.pid
        if pid is None or self._process is None or self._process.poll() is not None:
            return False
        target = str(folder.resolve())
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            return False
        for fd in descriptors:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(target + os.sep):
                    return True
        return False
