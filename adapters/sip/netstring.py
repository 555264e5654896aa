"""The wire format of baresip's ``ctrl_tcp`` module: JSON objects in netstrings.

A netstring is ``<length>:<bytes>,`` (D. J. Bernstein), the length in decimal ASCII
without leading zeros. Commands go to baresip as ``{"command", "params", "token"}``;
baresip answers each with ``{"response": true, "ok", "data", "token"}`` and reports what
happens with ``{"event": true, "type", "class", "param", "id", ...}`` (baresip 1.0.0,
``modules/ctrl_tcp/ctrl_tcp.c``).

Everything read from the socket is untrusted: a malformed frame, a frame larger than
:data:`MAX_FRAME`, or JSON that is not one of the two message shapes raises
:class:`CtrlProtocolError` and nothing else (the connection is then dropped, never
half-read).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import attrs

#: The largest frame accepted. baresip's events and responses are well under 4 KiB (a
#: ``listcalls`` with many calls is the largest); anything bigger is not baresip talking.
MAX_FRAME = 64 * 1024
_MAX_DIGITS = len(str(MAX_FRAME))


class CtrlProtocolError(Exception):
    """The bytes from the control socket are not baresip's ctrl_tcp protocol."""


def encode_frame(payload: bytes) -> bytes:
    """One netstring around ``payload``."""
    if len(payload) > MAX_FRAME:
        raise CtrlProtocolError(f"a frame of {len(payload)} bytes exceeds {MAX_FRAME}")
    return b"%d:%b," % (len(payload), payload)


class FrameDecoder:
    """Netstrings out of a byte stream that arrives in arbitrary pieces.

    After an error the decoder stays broken (every later :meth:`feed` raises): a stream
    that lost its framing cannot be trusted again.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max = max_frame
        self._broken: str | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """The frames completed by ``data``, in order."""
        if self._broken is not None:
            raise CtrlProtocolError(self._broken)
        self._buffer += data
        frames: list[bytes] = []
        try:
            while (frame := self._next()) is not None:
                frames.append(frame)
        except CtrlProtocolError as exc:
            self._broken = str(exc)
            self._buffer.clear()
            raise
        return frames

    @property
    def pending(self) -> int:
        """Bytes held for a frame not yet complete."""
        return len(self._buffer)

    def _next(self) -> bytes | None:
        buffer = self._buffer
        colon = buffer.find(b":", 0, _MAX_DIGITS + 1)
        if colon < 0:
            if len(buffer) > _MAX_DIGITS or (not bytes(buffer).isdigit() and buffer):
                raise CtrlProtocolError("a netstring must start with its length and ':'")
            return None
        digits = bytes(buffer[:colon])
        if not digits or not digits.isdigit():
            raise CtrlProtocolError("a netstring length must be decimal digits")
        if len(digits) > 1 and digits.startswith(b"0"):
            raise CtrlProtocolError("a netstring length has no leading zeros")
        length = int(digits)
        if length > self._max:
            raise CtrlProtocolError(f"a frame of {length} bytes exceeds {self._max}")
        end = colon + 1 + length
        if len(buffer) <= end:
            return None
        if buffer[end] != ord(","):
            raise CtrlProtocolError("a netstring must end with ','")
        frame = bytes(buffer[colon + 1 : end])
        del buffer[: end + 1]
        return frame


@attrs.frozen
class Response:
    """baresip's answer to one command (matched by ``token``)."""

    ok: bool
    data: str
    token: str | None


@attrs.frozen
class Event:
    """One event baresip reports (``CALL_RINGING``, ``CALL_ESTABLISHED``, ``CALL_CLOSED``,
    ``TRANSFER_FAILED``...). ``call_id`` is the SIP Call-ID of the call it is about, if any."""

    type: str
    event_class: str
    param: str
    call_id: str | None
    direction: str | None


Message = Response | Event

#: Longest string field kept from a message (a reason phrase, a call id, a peer URI).
_MAX_FIELD = 4096


def _text(value: object, what: str, *, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise CtrlProtocolError(f"{what} must be a string")
    if len(value) > _MAX_FIELD:
        raise CtrlProtocolError(f"{what} is longer than {_MAX_FIELD} characters")
    return value


def _no_constant(name: str) -> object:
    raise CtrlProtocolError(f"{name} is not JSON")


def parse_message(frame: bytes) -> Message:
    """The message in one frame; :class:`CtrlProtocolError` for anything else."""
    try:
        value = json.loads(frame.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CtrlProtocolError(f"not a JSON message: {type(exc).__name__}") from None
    if not isinstance(value, Mapping):
        raise CtrlProtocolError("a message must be a JSON object")
    if value.get("response") is True:
        ok = value.get("ok")
        if not isinstance(ok, bool):
            raise CtrlProtocolError("a response must say ok: true or false")
        token = value.get("token")
        return Response(
            ok=ok,
            data=_text(value.get("data"), "data"),
            token=None if token is None else _text(token, "token"),
        )
    # baresip 1.0.0 writes "event": true; its documentation shows "true" as a string.
    if value.get("event") in (True, "true"):
        call_id = value.get("id")
        direction = value.get("direction")
        return Event(
            type=_text(value.get("type"), "type", required=True),
            event_class=_text(value.get("class"), "class"),
            param=_text(value.get("param"), "param"),
            call_id=None if call_id is None else _text(call_id, "id"),
            direction=None if direction is None else _text(direction, "direction"),
        )
    raise CtrlProtocolError("a message is either a response or an event")


def encode_command(command: str, params: str, token: str) -> bytes:
    """One command as baresip's ctrl_tcp reads it.

    baresip joins ``command`` and ``params`` with a space into one command line (its
    ``cmd_process_long``), so neither may hold a line break or a NUL.
    """
    for what, text in (("command", command), ("params", params), ("token", token)):
        if any(c in text for c in "\r\n\x00"):
            raise CtrlProtocolError(f"the {what} must be one line")
    body: dict[str, str] = {"command": command, "token": token}
    if params:
        body["params"] = params
    return encode_frame(json.dumps(body, ensure_ascii=True).encode("ascii"))
