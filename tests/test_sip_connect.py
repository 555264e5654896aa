"""The composition root chooses the SIP switch from configuration (issue 12).

``[telephony]`` (or ``$MOVECAR_SIP_TRUNK``) gives the engine a real SIP switch whose
recordings go into the encrypted store of ``[recordings]``, with their SHA-256 in the
case's evidence (二(四)); ``[engine] calls_per_seat``/``calls_in_flight`` set the caps of
annex 2 十三(四). The end-to-end test places a real call from 0519110 to a sipp phone.
"""

from __future__ import annotations

import re
import time
import wave
from io import BytesIO
from pathlib import Path

import pytest
from sip_support import Sipp, require_tools

from movecar_adapters import connect
from movecar_adapters.config import ConfigError, load_settings
from movecar_adapters.crypto import KeyRing
from movecar_adapters.recordings_fs import FileRecordingStore
from movecar_adapters.sip import SipConfig, SipTelephony
from movecar_adapters.sql.store import SqlStore
from movecar_core import CallLimits, CallProgress, CallProgressed, call_key
from movecar_core.contract import WUJIN_114_2024
from movecar_core.roles import Actor, PermissionDenied, Role

KEYS = KeyRing([("k1", KeyRing.generate())])


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "movecar.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_caps_and_the_sip_switch_are_read_from_the_file(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        """
[engine]
calls_per_seat = 1
calls_in_flight = 40
[telephony]
kind = "sip"
trunk = "sbc.internal:5070"
rtp_ports = [31000, 31099]
ring_timeout_s = 25
greeting_cache = "greetings"
[recordings]
dir = "rec"
""",
    )
    settings = load_settings(path, environ={})
    assert settings.call_limits == CallLimits(per_seat=1, total=40)
    assert settings.sip is not None
    assert (settings.sip.trunk, settings.sip.rtp_ports) == ("sbc.internal:5070", (31000, 31099))
    assert settings.sip.ring_timeout_s == 25
    assert settings.sip.greeting_cache == tmp_path / "greetings"
    assert settings.recordings_dir == tmp_path / "rec"


def test_the_environment_names_a_trunk_and_a_folder() -> None:
    settings = load_settings(
        None, environ={"MOVECAR_SIP_TRUNK": "10.0.0.9", "MOVECAR_RECORDINGS": "/srv/rec"}
    )
    assert settings.sip is not None and settings.sip.trunk == "10.0.0.9"
    assert settings.recordings_dir == Path("/srv/rec")
    assert load_settings(None, environ={}).sip is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[telephony]\nkind = "sip"\n', "needs a trunk"),
        ('[telephony]\nkind = "h323"\ntrunk = "x"\n', "must be 'memory' or 'sip'"),
        ('[telephony]\ntrunk = "x"\n', "kind is not 'sip'"),
        ('[telephony]\nkind = "sip"\ntrunk = "bad host!"\n', "[telephony]"),
        ('[telephony]\nkind = "sip"\ntrunk = "x"\nrtp_ports = [1, 2, 3]\n', "rtp_ports"),
        ('[telephony]\nkind = "sip"\ntrunk = "x"\nrtp_ports = [40000, 40001]\n', "16 ports"),
        ('[telephony]\nkind = "sip"\ntrunk = "x"\nring_timeout_s = -1\n', "[telephony]"),
        ("[engine]\ncalls_per_seat = 1\n", "go together"),
        ("[engine]\ncalls_per_seat = 0\ncalls_in_flight = 5\n", "calls_per_seat"),
        ("[recordings]\nfolder = 1\n", "unknown setting"),
    ],
)
def test_bad_telephony_settings_are_config_errors(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_settings(_config(tmp_path, text), environ={})


def test_sip_without_a_recordings_folder_is_refused(tmp_path: Path) -> None:
    path = _config(tmp_path, '[telephony]\nkind = "sip"\ntrunk = "127.0.0.1:5999"\n')
    url = f"sqlite:///{tmp_path / 'm.db'}"
    with pytest.raises(ConfigError, match="二\\(四\\)"):
        connect(url, keys=KEYS, config=path, environ={})
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match="does not exist"):
        connect(url, keys=KEYS, config=path, environ={"MOVECAR_RECORDINGS": str(missing)})


def _wait(predicate: object, timeout_s: float = 30.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_real_call_from_the_engine_is_reported_and_recorded(tmp_path: Path) -> None:
    """open → locate → call_owner dials through baresip to sipp; the reports come back
    through run_due; the recording lands encrypted with its SHA-256 in the evidence, and
    only the command centre may extract it."""
    require_tools()
    greetings = tmp_path / "greetings"
    plate = "苏D12345"
    with SipTelephony(SipConfig("127.0.0.1:5060", greeting_cache=greetings)) as probe:
        spoken = probe.greetings.prepare(
            WUJIN_114_2024.greeting.render(plate),
            version=WUJIN_114_2024.greeting.version,
            plate=plate,
        ).spoken_s
    # The owner hangs up 0.7 s after the greeting (before the adapter would).
    sipp = Sipp("contract.xml", tmp_path / "sipp", calls=1, HOLD_MS=round(spoken * 1000) + 700)
    records = tmp_path / "recordings"
    records.mkdir()
    path = _config(
        tmp_path,
        f"""
[engine]
calls_per_seat = 1
calls_in_flight = 4
[telephony]
kind = "sip"
trunk = "{sipp.trunk}"
rtp_ports = [36000, 36199]
ring_timeout_s = 10
listen_after_greeting_s = 5
greeting_cache = "{greetings}"
[recordings]
dir = "{records}"
""",
    )
    mc = connect(f"sqlite:///{tmp_path / 'movecar.db'}", keys=KEYS, config=path, environ={})
    try:
        assert isinstance(mc.telephony, SipTelephony)
        assert mc.call_limits == CallLimits(per_seat=1, total=4)
        mc.registry.add(plate, "13912345678")  # type: ignore[attr-defined]
        case_id = mc.open_case(
            plate=plate, location="湖塘镇花园街 8 号", requester_phone="13800001111"
        )
        mc.locate_owner(case_id, agent_id="seat-1")
        call = mc.call_owner(case_id, agent_id="seat-1")
        key = call_key(case_id, call.attempt)

        def heard() -> list[CallProgress]:
            mc.run_due()
            return [e.progress for e in mc.history(case_id) if isinstance(e, CallProgressed)]

        _wait(lambda: CallProgress.ENDED in heard())
        assert heard() == [CallProgress.RINGING, CallProgress.ANSWERED, CallProgress.ENDED]
        mc.record_call_outcome(case_id, call.call_id, "answered_agreed")
        mc.confirm_moved(case_id)
        result = sipp.finish()
        assert result.status == 0, result.errors
        assert all('"0519110"' in f or "0519110@" in f for f in result.header("INVITE", "From"))

        store = mc.store
        assert isinstance(store, SqlStore)
        files = FileRecordingStore(records, store.keys, evidence=store, clock=store.clock)
        _wait(lambda: files.exists(case_id, key))
        ref = files.metadata(case_id, key)
        [row] = store.recordings(case_id)
        assert row.checksum_sha256 == ref.sha256
        audio = files.extract(case_id, key, Actor("desk-1", Role.COMMAND_CENTRE))
        with wave.open(BytesIO(audio)) as heard_audio:
            assert heard_audio.getframerate() == 8000 and heard_audio.getnframes() > 8000
        with pytest.raises(PermissionDenied):
            files.extract(case_id, key, Actor("seat-1", Role.AGENT))
    finally:
        mc.close()
        sipp.stop()
