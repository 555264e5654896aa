"""The ``Telephony`` port over SIP: real calls placed by baresip user agents.

Every call is placed by one baresip process (a *user agent*, :mod:`.baresip`) that
carries one call at a time, from the caller ID of 合同二(六) ("统一使用“0519110”为主叫
号码"), playing the greeting of 二(六) (:mod:`.greeting`) and recording both directions
(二(四), :mod:`.recording`). Agents are started when calls need them, kept for the next
call, and stopped by :meth:`SipTelephony.close`.

What the port promises, and how it is kept here:

- At most one dial per idempotency key: the key is reserved before the dial, under the
  adapter's lock; a repeated key returns at once.
- Events come in order, once each: a report whose rank is not above the call's latest is
  dropped (baresip reports 180 and 183 both as ringing, for instance).
- The ring timeout is the adapter's: baresip's ``call_local_timeout`` does not end a
  ringing outgoing call (1.0.0), so the adapter hangs up (CANCEL, answered 487) and reports
  ``NO_ANSWER``, or ``FAILED`` when the far end never even rang.
- ``HUNG_UP_IN_GREETING``: the far end hung up before the greeting's speech had been
  played out (the greeting starts when the call is answered).
- Annex 2 十三(四) "不采取自动语音群呼方式进行外呼": a cap on the calls in flight, per seat
  and in total (:class:`~movecar_core.calls.CallLimits`), enforced here too.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from movecar_adapters.clock import SystemClock
from movecar_adapters.sip.baresip import AgentSettings, NotSent, UserAgent, UserAgentError
from movecar_adapters.sip.greeting import GreetingAudio, GreetingError, GreetingSynthesizer
from movecar_adapters.sip.netstring import Event
from movecar_adapters.sip.recording import RecordingError, mix_call, wait_closed
from movecar_core.calls import (
    FINAL_RANK,
    MAX_DETAIL,
    CallEvent,
    CallLimits,
    CallProgress,
    CallsInFlight,
    TransferOutcome,
    TransferRequest,
    rank,
)
from movecar_core.contract import WUJIN_114_2024
from movecar_core.errors import InvalidPhone, TelephonyError, redact
from movecar_core.phones import parse_phone
from movecar_core.ports import Clock, OutboundCallRequest, Telephony
from movecar_core.text import one_line

log = logging.getLogger(__name__)

#: A host name, an IPv4 address or a bracketed IPv6 address, and an optional port.
_HOST_PORT = re.compile(
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::(?P<port>\d{1,5}))?"
)
_STATUS = re.compile(r"([1-6][0-9]{2}) ")
#: baresip's CALL_CLOSED reasons that are its own doing, not the far end's.
_TRANSFERRED = "Call transfered"  # sic, baresip 1.0.0 src/call.c
_END_OF_GREETING = "end of file"  # aufile reached the end of the greeting's file
#: Final statuses that are the owner's answer rather than a failure.
_BUSY = frozenset({486, 600})  # Busy Here, Busy Everywhere
_DECLINED = frozenset({603})


def _seconds(low: float, high: float) -> Callable[[object, attrs.Attribute[float], float], None]:
    def check(_: object, attribute: attrs.Attribute[float], value: float) -> None:
        if not isinstance(value, int | float) or not low <= value <= high:
            raise ValueError(f"{attribute.name}={value!r}: from {low:g} to {high:g} seconds")

    return check


def _trunk(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    match = _HOST_PORT.fullmatch(value) if isinstance(value, str) else None
    if match is None or (match["port"] is not None and not 0 < int(match["port"]) < 65536):
        raise ValueError(f"{attribute.name}={value!r}: expected host or host:port")


def _ports(_: object, attribute: attrs.Attribute[tuple[int, int]], value: tuple[int, int]) -> None:
    low, high = value
    if not 1024 <= low < high <= 65535 or high - low < 16:
        raise ValueError(f"{attribute.name}={value!r}: a range of at least 16 ports in 1024-65535")


def _caller_id(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        raise ValueError(f"{attribute.name}={value!r}: a caller ID is digits")


@attrs.frozen
class SipConfig:
    """Where and how the SIP adapter calls.

    ``trunk`` is the carrier's (or the test's) SIP address: a call to 13912345678 is an
    INVITE to ``sip:13912345678@<trunk>``, a transfer to 110 a REFER to
    ``sip:051981997327@<trunk>``.
    """

    trunk: str = attrs.field(validator=_trunk)
    #: The address the agents bind SIP and RTP to (baresip ``-n``).
    bind_address: str = "127.0.0.1"
    #: 合同二(六) "统一使用“0519110”为主叫号码": the From of every call.
    caller_id: str = attrs.field(default=WUJIN_114_2024.caller_id, validator=_caller_id)
    #: The host of the From URI; default the bind address.
    from_domain: str | None = None
    #: Ring this long, then hang up (CANCEL) and report NO_ANSWER.
    ring_timeout_s: float = attrs.field(default=30.0, validator=_seconds(0.1, 600))
    #: Wait this long for the far end's verdict on a transfer (202, then NOTIFY 200).
    transfer_timeout_s: float = attrs.field(default=10.0, validator=_seconds(0.1, 120))
    #: Silence after the greeting, to record the owner's answer; then the agent hangs up.
    listen_after_greeting_s: float = attrs.field(default=10.0, validator=_seconds(0, 600))
    #: RTP ports of all agents (each call takes a free pair in the range).
    rtp_ports: tuple[int, int] = attrs.field(default=(30000, 30999), validator=_ports)
    #: Most agents (processes) at once; default the cap on calls in flight.
    max_agents: int | None = None
    #: Agents' folders; default a temporary folder removed by ``close()``.
    work_dir: Path | None = None
    #: Synthesised greetings (kept across runs when given).
    greeting_cache: Path | None = None
    #: Calls' recordings (``<folder>/<call>/call.wav``) when no ``on_recording`` takes them.
    recordings_dir: Path | None = None
    baresip: str = "baresip"
    espeak: str = "espeak-ng"
    sox: str = "sox"

    def uri_for(self, number: str) -> str:
        """The SIP URI of a phone number on the trunk (digits only: nothing else reaches
        baresip's command line)."""
        return f"sip:{parse_phone(number).digits}@{self.trunk}"


@attrs.frozen
class CallTiming:
    """When a call got where, in seconds after its dial was sent (monotonic clock)."""

    ringing_s: float | None
    answered_s: float | None
    ended_s: float | None


#: ``on_recording(key, path, duration_ms)``: the finished recording of the call ``key``.
#: The host owns the file from then on (it moves or encrypts it); it is not removed.
RecordingHandler = Callable[[str, Path, int], None]


@attrs.define(eq=False)
class _Transfer:
    done: threading.Event = attrs.field(factory=threading.Event)
    outcome: TransferOutcome | None = None


@attrs.define(eq=False)
class _Call:
    key: str
    agent_id: str
    latest: CallEvent
    greeting: GreetingAudio | None = None
    #: Silence played until the answer (early media), then the greeting.
    waiting: Path | None = None
    agent: UserAgent | None = None
    sip_call_id: str | None = None
    dialled_at: float = 0.0
    ringing_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    #: When the greeting started (it is switched on once the call is answered).
    greeting_at: float | None = None
    #: Answered, and the greeting not switched on yet.
    greeting_due: bool = False
    #: Why the adapter hung up (ring timeout, the seat, closing), if it did.
    hangup: str | None = None
    transfer: _Transfer | None = None

    @property
    def final(self) -> bool:
        return rank(self.latest.progress) >= FINAL_RANK


def _stop_all(agents: set[UserAgent], work_dir: Path | None) -> None:
    for agent in list(agents):
        agent.stop(grace_s=0.5)
    if work_dir is not None:
        shutil.rmtree(work_dir, ignore_errors=True)


def safe_detail(text: str) -> str:
    """A reason from the far end, safe to store: no phone number (masked), one line."""
    return one_line(redact(text), MAX_DETAIL)


class SipTelephony:
    """:class:`~movecar_core.ports.Telephony` through baresip user agents.

    Use it as a context manager, or call :meth:`close`: it ends the agents' processes.
    """

    def __init__(
        self,
        config: SipConfig,
        *,
        limits: CallLimits | None = None,
        clock: Clock | None = None,
        on_recording: RecordingHandler | None = None,
    ) -> None:
        self.config = config
        self.limits = limits or CallLimits()
        self.clock: Clock = clock or SystemClock()
        self.on_recording = on_recording
        self._own_work = config.work_dir is None
        self.work_dir = Path(config.work_dir or tempfile.mkdtemp(prefix="movecar-sip-"))
        self.recordings_dir = config.recordings_dir or self.work_dir / "recordings"
        self.greetings = GreetingSynthesizer(
            config.greeting_cache or self.work_dir / "greetings",
            listen_s=config.listen_after_greeting_s,
            espeak=config.espeak,
            sox=config.sox,
        )
        self._max_agents = config.max_agents or self.limits.total
        self._settings = AgentSettings(
            executable=config.baresip,
            parent=self.work_dir / "agents",
            bind_address=config.bind_address,
            caller_id=config.caller_id,
            from_domain=config.from_domain or config.bind_address,
            rtp_ports=config.rtp_ports,
        )
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._calls: dict[str, _Call] = {}
        self._events: list[CallEvent] = []
        self._live: dict[str, _Call] = {}  # key -> a call not ended yet
        self._idle: list[UserAgent] = []
        self._agents: set[UserAgent] = set()
        self._starting = 0
        self._current: dict[UserAgent, _Call] = {}  # the call each agent carries
        self._finishers: set[threading.Thread] = set()
        self._closed = False
        self._supervisor = threading.Thread(target=self._supervise, name="sip-ring", daemon=True)
        self._supervisor.start()
        # An adapter never closed (a host that forgot, a test that failed) still ends its
        # agents when the interpreter exits: no baresip outlives the process.
        self._finalizer = weakref.finalize(
            self, _stop_all, self._agents, self.work_dir if self._own_work else None
        )

    def __enter__(self) -> SipTelephony:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the port -----------------------------------------------------------------------

    def place_call(self, request: OutboundCallRequest) -> None:
        key = request.key
        if request.caller_id != self.config.caller_id:
            # Annex 2 十三(四) "传送真实号码": the agents send only the number they were
            # set up with; another caller ID is a bug upstream, not something to dial.
            raise TelephonyError(
                f"call {request.call_id}: caller ID {request.caller_id!r} is not this "
                f"switch's {self.config.caller_id!r}"
            )
        try:
            uri = self.config.uri_for(request.callee)
        except InvalidPhone as exc:
            raise TelephonyError(f"call {request.call_id}: {exc}") from None
        with self._lock:
            if self._closed:
                raise TelephonyError("the SIP adapter is closed")
            if key in self._calls:
                return  # the same call again: never a second dial
            refusal = self.limits.refusal(request.agent_id, self._count())
            if refusal is not None:
                raise TelephonyError(f"call {request.call_id}: refused: {refusal}")
            call = _Call(
                key, request.agent_id, CallEvent(key, CallProgress.DIALLING, self.clock.now())
            )
            self._calls[key] = call
            self._live[key] = call
        try:
            call.greeting = self.greetings.prepare(
                request.greeting, version=request.greeting_version, plate=request.plate
            )
            call.waiting = self.greetings.silence(self.config.ring_timeout_s + 10)
            agent = self._take_agent()
        except (GreetingError, UserAgentError, TelephonyError) as exc:
            self._forget(call)
            raise TelephonyError(f"call {request.call_id}: cannot be placed: {exc}") from None
        self._dial(call, agent, uri, request.call_id)

    def call_status(self, key: str) -> CallEvent | None:
        with self._lock:
            call = self._calls.get(key)
            return None if call is None else call.latest

    def drain_events(self) -> Sequence[CallEvent]:
        with self._lock:
            events, self._events = self._events, []
        return events

    def in_flight(self) -> CallsInFlight:
        with self._lock:
            return self._count()

    def transfer_to_110(self, request: TransferRequest) -> TransferOutcome:
        """REFER the live call to the 110 desk's line (合同二(五) "及时转接至公安 110 指挥
        中心处理", 0519-81997327): ACCEPTED when the far end took it (202, then a NOTIFY
        200), REFUSED when it said no, FAILED when there is no live call to transfer,
        the agent is gone, or no verdict came within ``transfer_timeout_s``."""
        try:
            uri = self.config.uri_for(request.number)
        except InvalidPhone as exc:
            raise TelephonyError(f"transfer of case {request.case_id}: {exc}") from None
        with self._lock:
            call = self._calls.get(request.call_key or "")
            if (
                call is None
                or call.final
                or call.answered_at is None
                or call.agent is None
                or call.transfer is not None
            ):
                return TransferOutcome.FAILED
            transfer = call.transfer = _Transfer()
            agent = call.agent
        try:
            answer = agent.command("transfer", uri)
        except UserAgentError:
            answer = None
        if answer is None or not answer.ok:
            with self._lock:
                call.transfer = None
            return TransferOutcome.FAILED
        transfer.done.wait(self.config.transfer_timeout_s)
        with self._lock:
            if call.transfer is transfer:
                call.transfer = None
            return transfer.outcome or TransferOutcome.FAILED

    # --- beyond the port ----------------------------------------------------------------

    def hang_up(self, key: str) -> bool:
        """The seat ends the call ``key`` (a BYE, or CANCEL while it rings). False when
        there is no live call with that key. The call's last event says how it ended."""
        return self._hang_up(key, "the seat hung up")

    def call_timing(self, key: str) -> CallTiming | None:
        """How long the call ``key`` took to ring, be answered and end (None if unknown)."""
        with self._lock:
            call = self._calls.get(key)
            if call is None or not call.dialled_at:
                return None

            def since(at: float | None) -> float | None:
                return None if at is None else at - call.dialled_at

            return CallTiming(since(call.ringing_at), since(call.answered_at), since(call.ended_at))

    def agent_pids(self) -> list[int]:
        """The process ids of the running user agents (for monitoring)."""
        with self._lock:
            return sorted(a.pid for a in self._agents if a.pid is not None and a.alive)

    def wait_final(self, key: str, timeout_s: float) -> CallEvent | None:
        """Block until the call ``key`` has its final event (or ``timeout_s``); its latest
        event. Does not drain: the events are still there for :meth:`drain_events`."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                call = self._calls.get(key)
                if call is None or call.final:
                    return None if call is None else call.latest
                left = deadline - time.monotonic()
                if left <= 0:
                    return call.latest
                self._changed.wait(left)

    def wait_recordings(self, timeout_s: float = 10.0) -> bool:
        """Block until every ended call's recording has been handed over (True) or
        ``timeout_s`` passed (False)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                finishers = list(self._finishers)
            if not finishers:
                return True
            for thread in finishers:
                thread.join(max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                with self._lock:
                    return not self._finishers

    def close(self, grace_s: float = 3.0) -> None:
        """Hang up the calls still up, hand over their recordings, stop every agent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            live = list(self._live)
            self._changed.notify_all()
        for key in live:
            self._hang_up(key, "the SIP adapter closed")
        deadline = time.monotonic() + grace_s
        with self._changed:
            while self._live and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())
        self.wait_recordings(grace_s)
        with self._lock:
            agents = list(self._agents)
            self._agents.clear()
            self._idle.clear()
        for agent in agents:
            agent.stop()
        self._finalizer.detach()
        self._supervisor.join(2.0)
        with self._lock:
            # A call whose agent never reported its end: nobody can tell what became of it.
            for call in list(self._live.values()):
                self._emit(call, CallProgress.UNKNOWN, detail="the SIP adapter closed")
        if self._own_work:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # --- dialling -------------------------------------------------------------------------

    def _count(self) -> CallsInFlight:
        per_seat: dict[str, int] = {}
        for call in self._live.values():
            per_seat[call.agent_id] = per_seat.get(call.agent_id, 0) + 1
        return CallsInFlight(total=len(self._live), per_seat=per_seat)

    def _forget(self, call: _Call) -> None:
        """Undo a reservation: nothing was dialled, the key may be placed again."""
        with self._lock:
            self._calls.pop(call.key, None)
            self._live.pop(call.key, None)
            agent = call.agent
            if agent is not None:
                self._current.pop(agent, None)
                self._release(agent)
            self._changed.notify_all()

    def _take_agent(self) -> UserAgent:
        """An idle agent, or a new one; waits a little when the agents are all busy
        handing over recordings."""
        deadline = time.monotonic() + 10.0
        with self._changed:
            while True:
                if self._closed:
                    raise TelephonyError("the SIP adapter is closed")
                while self._idle:
                    agent = self._idle.pop()
                    if agent.alive:
                        return agent
                if len(self._agents) + self._starting < self._max_agents:
                    self._starting += 1
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TelephonyError(f"all {self._max_agents} user agents are busy")
                self._changed.wait(left)
        agent = UserAgent(self._settings, self._on_agent_event, self._on_agent_gone)
        try:
            agent.start()
        finally:
            with self._lock:
                self._starting -= 1
        with self._lock:
            if not self._is_closed():  # close() may have run while the agent started
                self._agents.add(agent)
                return agent
        agent.stop()
        raise TelephonyError("the SIP adapter is closed")

    def _is_closed(self) -> bool:
        return self._closed

    def _release(self, agent: UserAgent) -> None:
        """Back to the pool (the lock is held)."""
        if agent.alive and agent in self._agents and not self._closed:
            self._idle.append(agent)
        self._changed.notify_all()

    def _dial(self, call: _Call, agent: UserAgent, uri: str, call_id: str) -> None:
        assert call.greeting is not None and call.waiting is not None
        # The agent's audio: silence while the call rings (early media), then the greeting
        # once it is answered (_supervise switches). Short relative names: baresip keeps
        # at most 127 bytes of a device name.
        for name, target in (("waiting.wav", call.waiting), ("greeting.wav", call.greeting.path)):
            staged = agent.folder / f"{name}.new"
            staged.unlink(missing_ok=True)
            os.symlink(target.resolve(), staged)
            os.replace(staged, agent.folder / name)
        for leftover in agent.recorder_folder.glob("dump-*.wav"):
            leftover.unlink(missing_ok=True)
        with self._lock:
            call.agent = agent
            self._current[agent] = call
        try:
            answer = agent.command("ausrc", "aufile,waiting.wav")
            if not answer.ok:
                raise NotSent(f"baresip refused the audio source: {answer.data.strip()}")
            call.dialled_at = time.monotonic()
            answer = agent.command("dial", uri)
        except UserAgentError as exc:
            self._drop_agent(agent)  # it stopped answering: no call of ours goes on it
            if isinstance(exc, NotSent) or not call.dialled_at:
                self._forget(call)
                raise TelephonyError(f"call {call_id}: cannot be placed: {exc}") from None
            # The dial was sent and nothing came back: the INVITE may have left. Never
            # dialled again blindly: a person looks at a call whose outcome is unknown.
            with self._lock:
                self._emit(call, CallProgress.UNKNOWN, detail=safe_detail(f"dial: {exc}"))
            return
        if not answer.ok:
            self._forget(call)
            why = safe_detail(answer.data.strip() or "refused")
            raise TelephonyError(f"call {call_id}: baresip did not dial: {why}")

    def _drop_agent(self, agent: UserAgent) -> None:
        with self._lock:
            self._agents.discard(agent)
            with contextlib.suppress(ValueError):
                self._idle.remove(agent)
        threading.Thread(target=agent.stop, name="sip-stop", daemon=True).start()

    def _hang_up(self, key: str, why: str) -> bool:
        with self._lock:
            call = self._live.get(key)
            if call is None or call.agent is None or call.hangup is not None:
                return False
            call.hangup = why
            agent = call.agent
        with contextlib.suppress(UserAgentError):  # gone: _on_agent_gone ends the call
            agent.command("hangup")
        return True

    def _supervise(self) -> None:
        """Start the greeting of each call just answered, and enforce the ring timeout
        (baresip does not: its call_local_timeout leaves a ringing outgoing call ringing).

        Both need a command to the agent, which cannot be sent from the agent's reader
        thread (the answer is read by that thread): they are sent from here."""
        timeout = self.config.ring_timeout_s
        while True:
            due: list[str] = []
            greet: list[_Call] = []
            with self._changed:
                if self._closed:
                    return
                now = time.monotonic()
                wake = now + 1.0
                for call in self._live.values():
                    if call.greeting_due:
                        call.greeting_due = False
                        greet.append(call)
                    if not call.dialled_at or call.answered_at is not None or call.hangup:
                        continue
                    expires = call.dialled_at + timeout
                    if expires <= now:
                        due.append(call.key)
                    else:
                        wake = min(wake, expires)
                if not due and not greet:
                    self._changed.wait(max(0.005, wake - now))
                    continue
            for call in greet:
                self._start_greeting(call)
            for key in due:
                self._hang_up(key, "ring timeout")

    def _start_greeting(self, call: _Call) -> None:
        agent = call.agent
        if agent is None:
            return
        try:
            answer = agent.command("ausrc", "aufile,greeting.wav")
        except UserAgentError:
            return  # the agent is gone: _on_agent_gone ends the call
        with self._lock:
            if answer.ok:
                call.greeting_at = time.monotonic()
            else:
                log.error(
                    "user agent %d: the greeting did not start: %s",
                    agent.number,
                    safe_detail(answer.data),
                )

    # --- what the agents report -----------------------------------------------------------

    def _on_agent_event(self, agent: UserAgent, event: Event) -> None:
        if event.direction == "incoming":
            log.info("user agent %d: ignored an incoming call", agent.number)
            return
        with self._lock:
            call = self._current.get(agent)
            if call is None or call.final:
                return
            if event.call_id is not None:
                if call.sip_call_id is None:
                    call.sip_call_id = event.call_id
                elif call.sip_call_id != event.call_id:
                    return  # not this call's
            now = time.monotonic()
            match event.type:
                case "CALL_RINGING" | "CALL_PROGRESS":
                    call.ringing_at = call.ringing_at or now
                    self._emit(call, CallProgress.RINGING)
                case "CALL_ESTABLISHED":
                    call.ringing_at = call.ringing_at or now
                    call.answered_at = now
                    call.greeting_due = True  # _supervise switches the audio to it
                    self._emit(call, CallProgress.ANSWERED)
                case "CALL_CLOSED":
                    call.ended_at = now
                    progress, status, detail = self._closed_as(call, event.param, now)
                    if event.param == _TRANSFERRED:
                        # baresip's verdict on a NOTIFY 200 (sipfrag): the far end took
                        # the transfer, and baresip ends its leg of the call.
                        self._settle(call, TransferOutcome.ACCEPTED)
                    self._emit(call, progress, sip_status=status, detail=detail)
                case "TRANSFER_FAILED":
                    # baresip 1.0.0 hangs the call up after a refused transfer (a BYE,
                    # and no CALL_CLOSED): the call ends here.
                    call.ended_at = now
                    self._settle(call, TransferOutcome.REFUSED)
                    self._emit(
                        call,
                        CallProgress.ENDED,
                        sip_status=self._status_of(event.param),
                        detail=safe_detail(
                            f"transfer to 110 refused ({event.param}); the call was ended"
                        ),
                    )
                case _:
                    return

    def _closed_as(
        self, call: _Call, reason: str, now: float
    ) -> tuple[CallProgress, int | None, str]:
        status = self._status_of(reason)
        if reason == _TRANSFERRED:
            return CallProgress.ENDED, None, "transferred to 110"
        if call.answered_at is not None:
            if call.hangup is not None:
                return CallProgress.ENDED, None, safe_detail(call.hangup)
            if reason == _END_OF_GREETING:  # the audio's file ended: baresip hung up
                if call.greeting_at is None:
                    return CallProgress.ENDED, None, "the greeting did not start; hung up"
                return CallProgress.ENDED, None, "greeting played, the caller hung up"
            spoken = call.greeting.spoken_s if call.greeting is not None else 0.0
            if call.greeting_at is None or now - call.greeting_at < spoken:
                # Hung up before the greeting started, or before its speech ended.
                return CallProgress.HUNG_UP_IN_GREETING, None, safe_detail(reason)
            return CallProgress.ENDED, None, safe_detail(reason)
        if call.hangup is not None:
            if call.ringing_at is not None:
                return CallProgress.NO_ANSWER, None, safe_detail(f"{call.hangup}: not answered")
            return CallProgress.FAILED, None, safe_detail(f"{call.hangup}: the far end never rang")
        if status in _BUSY:
            return CallProgress.BUSY, status, safe_detail(reason)
        if status in _DECLINED:
            return CallProgress.DECLINED, status, safe_detail(reason)
        return CallProgress.FAILED, status, safe_detail(reason or "the call failed")

    @staticmethod
    def _status_of(reason: str) -> int | None:
        match = _STATUS.match(reason + " ")
        return int(match.group(1)) if match else None

    @staticmethod
    def _settle(call: _Call, outcome: TransferOutcome) -> None:
        """The verdict on the call's transfer under way, if any (the first one counts)."""
        transfer = call.transfer
        if transfer is not None and transfer.outcome is None:
            transfer.outcome = outcome
            transfer.done.set()

    def _emit(
        self,
        call: _Call,
        progress: CallProgress,
        *,
        sip_status: int | None = None,
        detail: str = "",
    ) -> None:
        """Record one event of ``call`` (the lock is held): in order, once."""
        if rank(progress) <= rank(call.latest.progress):
            return
        event = CallEvent(call.key, progress, self.clock.now(), sip_status, detail)
        call.latest = event
        self._events.append(event)
        if rank(progress) >= FINAL_RANK:
            self._live.pop(call.key, None)
            self._settle(call, TransferOutcome.FAILED)
            agent = call.agent
            if agent is not None and self._current.get(agent) is call:
                finisher = threading.Thread(
                    target=self._finish, args=(call, agent), name="sip-recording", daemon=True
                )
                self._finishers.add(finisher)
                finisher.start()
        self._changed.notify_all()

    def _finish(self, call: _Call, agent: UserAgent) -> None:
        """Hand over the call's recording, then free its agent for the next call."""
        try:
            folder = agent.recorder_folder
            if not wait_closed(lambda: agent.files_open_in(folder)):
                log.warning("user agent %d: the recorder kept its files open", agent.number)
            name = hashlib.sha256(call.key.encode()).hexdigest()[:24]
            try:
                recording = mix_call(folder, self.recordings_dir / name, sox=self.config.sox)
            except (RecordingError, OSError) as exc:
                log.error("the recording of a call could not be made: %s", exc)
                recording = None
            if recording is not None and self.on_recording is not None:
                try:
                    self.on_recording(call.key, recording.path, recording.duration_ms)
                except Exception:
                    log.exception("on_recording failed; the file stays at %s", recording.path)
        finally:
            with self._lock:
                if self._current.get(agent) is call:
                    del self._current[agent]
                self._release(agent)
                self._finishers.discard(threading.current_thread())
            if not agent.alive:
                agent.stop()  # reap the process and remove its folder, after the legs

    def _on_agent_gone(self, agent: UserAgent, why: str) -> None:
        with self._lock:
            self._agents.discard(agent)
            with contextlib.suppress(ValueError):
                self._idle.remove(agent)
            call = self._current.get(agent)
            if call is not None and not call.final:
                # The agent died with the call up: what the far end saw is unknown. The
                # call's finisher stops the agent once it has taken the recorder's files.
                self._emit(
                    call, CallProgress.UNKNOWN, detail=safe_detail(f"user agent lost: {why}")
                )
            elif call is None:
                threading.Thread(target=agent.stop, name="sip-stop", daemon=True).start()
            self._changed.notify_all()


if TYPE_CHECKING:

    def _implements_the_port(switch: SipTelephony) -> Telephony:
        return switch  # mypy checks that the adapter is a Telephony
