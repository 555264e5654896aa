"""The SIP adapter's pure parts, for all inputs: the ctrl_tcp wire format (netstring JSON)
against hostile bytes, the greeting's speakable text, the dial URI and the event detail.
No baresip needed."""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from movecar_adapters.sip.greeting import DIGITS, GreetingSynthesizer, speakable
from movecar_adapters.sip.netstring import (
    MAX_FRAME,
    CtrlProtocolError,
    Event,
    FrameDecoder,
    Response,
    encode_command,
    encode_frame,
    parse_message,
)
from movecar_adapters.sip.telephony import SipConfig, safe_detail
from movecar_core.contract import WUJIN_114_2024
from movecar_core.errors import InvalidPhone
from movecar_core.testing.strategies import canonical_mobile_phones, plates
from movecar_core.text import text_problem

payloads = st.binary(max_size=300)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@given(st.lists(payloads, max_size=8), st.lists(st.integers(0, 10_000), max_size=20))
def test_frames_survive_any_split_of_the_stream(frames: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(f) for f in frames)
    decoder = FrameDecoder()
    out: list[bytes] = []
    for piece in chunked(stream, cuts):
        out += decoder.feed(piece)
    assert out == frames and decoder.pending == 0


@given(st.lists(st.binary(max_size=64), max_size=12))
def test_hostile_bytes_give_frames_or_a_protocol_error(pieces: list[bytes]) -> None:
    decoder = FrameDecoder(max_frame=1000)
    broken = False
    for piece in pieces:
        if broken:
            with pytest.raises(CtrlProtocolError):
                decoder.feed(piece)  # a stream that lost its framing stays refused
            continue
        try:
            frames = decoder.feed(piece)
        except CtrlProtocolError:
            broken = True
            continue
        assert all(len(f) <= 1000 for f in frames)
        assert decoder.pending <= len(str(1000)) + 1 + 1000 + 1


@pytest.mark.parametrize(
    "stream",
    [b"01:a,", b"1:ab", b":a,", b"x:a,", b"-1:a,", b"9999999:", b"65537:", b"1234567"],
)
def test_malformed_netstrings_are_refused(stream: bytes) -> None:
    with pytest.raises(CtrlProtocolError):
        FrameDecoder().feed(stream)


def test_an_oversized_frame_is_refused_before_it_is_buffered() -> None:
    decoder = FrameDecoder()
    with pytest.raises(CtrlProtocolError, match="exceeds"):
        decoder.feed(b"%d:" % (MAX_FRAME + 1))
    with pytest.raises(CtrlProtocolError):
        encode_frame(b"x" * (MAX_FRAME + 1))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
message_like = st.fixed_dictionaries(
    {},
    optional={
        "response": json_values,
        "event": json_values,
        "ok": json_values,
        "data": json_values,
        "token": json_values,
        "type": json_values,
        "class": json_values,
        "param": json_values,
        "id": json_values,
        "direction": json_values,
    },
)


@given(st.binary(max_size=400) | message_like.map(lambda d: json.dumps(d).encode()))
def test_any_frame_parses_to_a_message_or_a_protocol_error(frame: bytes) -> None:
    try:
        message = parse_message(frame)
    except CtrlProtocolError:
        return
    assert isinstance(message, Response | Event)
    if isinstance(message, Event):
        assert isinstance(message.type, str) and isinstance(message.param, str)
    else:
        assert isinstance(message.ok, bool) and isinstance(message.data, str)


def test_deep_json_is_a_protocol_error_not_a_crash() -> None:
    with pytest.raises(CtrlProtocolError):
        parse_message(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(CtrlProtocolError):
        parse_message(b'{"event": true, "type": NaN}')


def test_baresip_messages_as_they_come() -> None:
    # Captured from baresip 1.0.0 (ctrl_tcp) on Debian 12.
    closed = parse_message(
        b'{"event":true,"type":"CALL_CLOSED","class":"call","accountaor":'
        b'"sip:0519110@127.0.0.1","direction":"outgoing","peeruri":'
        b'"sip:13912345678@127.0.0.1:25070","id":"2ab371960b7b9904",'
        b'"param":"486 Busy Here"}'
    )
    assert closed == Event("CALL_CLOSED", "call", "486 Busy Here", "2ab371960b7b9904", "outgoing")
    answer = parse_message(b'{"response":true,"ok":false,"data":"Invalid argument","token":"t1"}')
    assert answer == Response(ok=False, data="Invalid argument", token="t1")


@given(
    st.text(alphabet=st.characters(blacklist_characters="\r\n\x00"), max_size=40),
    st.text(alphabet=st.characters(blacklist_characters="\r\n\x00"), max_size=80),
    st.text(alphabet=st.characters(blacklist_characters="\r\n\x00"), min_size=1, max_size=8),
)
def test_commands_round_trip(command: str, params: str, token: str) -> None:
    [frame] = FrameDecoder().feed(encode_command(command, params, token))
    body = json.loads(frame)
    assert body["command"] == command and body["token"] == token
    assert body.get("params", "") == params


@pytest.mark.parametrize("bad", ["dial\nquit", "x\r", "a\x00b"])
def test_a_command_is_one_line(bad: str) -> None:
    with pytest.raises(CtrlProtocolError):
        encode_command("dial", bad, "t1")
    with pytest.raises(CtrlProtocolError):
        encode_command(bad, "", "t1")


# --- the greeting ----------------------------------------------------------------------

_DIGIT_OF = {c: str(i) for i, c in enumerate(DIGITS)}
_ATOM = set(DIGITS) | set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def test_the_contracts_greeting_is_read_digit_by_digit() -> None:
    text = WUJIN_114_2024.greeting.render("苏D12345")
    assert (
        speakable(text) == "您好，这是公安 幺 幺 零 挪车服务专线，您是苏 D 幺 二 三 四 五 车主吗？"
    )
    assert speakable("114") == "幺 幺 四"
    assert speakable("苏D·8Q7K2") == "苏 D 八 Q 七 K 二"
    assert speakable("１１０") == "幺 幺 零"  # full width, as a form may hold it


@given(st.text(max_size=80).filter(lambda t: not set(t) & set(DIGITS)))
def test_speakable_keeps_every_digit_in_order_and_apart(text: str) -> None:
    spoken = speakable(text)
    digits_in = [
        plain
        for char in text
        if len(plain := unicodedata.normalize("NFKC", char)) == 1 and "0" <= plain <= "9"
    ]
    assert [_DIGIT_OF[c] for c in spoken if c in _DIGIT_OF] == digits_in
    assert not re.search(r"[0-9a-z]", spoken)  # no digit, no letter left for the voice
    for left, right in itertools.pairwise(spoken):
        assert not (left in _ATOM and right in _ATOM), spoken  # each read on its own
    assert spoken == " ".join(spoken.split()) and text_problem(spoken) is None
    assert speakable(spoken) == spoken


@given(plates())
def test_every_plate_reads_as_characters(plate: str) -> None:
    spoken = speakable(WUJIN_114_2024.greeting.render(plate))
    assert not re.search(r"[0-9]", spoken)


def test_cached_greetings_are_named_by_version_plate_and_text(tmp_path: Path) -> None:
    synth = GreetingSynthesizer(tmp_path, listen_s=1.0)
    text = WUJIN_114_2024.greeting.render("苏D12345")
    name = synth.name_for(text, "v1", "苏D12345")
    assert synth.name_for(text, "v1", "苏D12345") == name
    assert synth.name_for(text, "v2", "苏D12345") != name
    assert synth.name_for(WUJIN_114_2024.greeting.render("苏D12346"), "v1", "苏D12346") != name
    assert re.fullmatch(r"greeting-[0-9a-f]{20}\.wav", name)
    assert not list(tmp_path.iterdir())  # naming writes nothing


# --- what reaches baresip and what is stored ------------------------------------------


@given(st.text(max_size=30))
def test_only_digits_reach_the_dial_command(callee: str) -> None:
    config = SipConfig("trunk.example:5060")
    try:
        uri = config.uri_for(callee)
    except InvalidPhone:
        return
    assert re.fullmatch(r"sip:[0-9]{3,20}@trunk\.example:5060", uri)


@pytest.mark.parametrize("trunk", ["", "a b", "host:0", "host:70000", "sip:host", "h;x=1", "h\n"])
def test_a_malformed_trunk_is_refused(trunk: str) -> None:
    with pytest.raises(ValueError, match="trunk"):
        SipConfig(trunk)


@given(canonical_mobile_phones(), st.text(max_size=40), st.text(max_size=40))
def test_an_event_detail_never_holds_a_phone_number(phone: str, before: str, after: str) -> None:
    assume(not before[-1:].isdecimal() and not after[:1].isdecimal())
    assume(not before[-1:].isascii() or not before[-1:].isalpha())
    assume(not after[:1].isascii() or not after[:1].isalpha())
    detail = safe_detail(f"{before}sip:{phone}@127.0.0.1{after}")
    assert phone not in detail and len(detail) <= 200 and text_problem(detail) is None
