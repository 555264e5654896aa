"""The ``Telephony`` port's contract suite, run against the SIP adapter and a sipp UAS.

The far end (sipp, ``tests/sipp/contract.xml``) answers every call by itself, accepts a
REFER (202, NOTIFY 200), and otherwise hangs up once the greeting has been played: so
:class:`SipFarEnd` has nothing to do when the suite asks it to answer or hang up, it only
waits as a phone would. Skipped where baresip, sipp, espeak-ng or sox are missing.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from sip_support import Sipp, require_tools

from movecar_adapters.sip import SipConfig, SipTelephony
from movecar_core.calls import CallLimits
from movecar_core.contract import WUJIN_114_2024
from movecar_core.testing.contracts import TelephonyContract

#: The greeting of the contract suite's requests (plate 苏D12345).
_GREETING = WUJIN_114_2024.greeting.render("苏D12345")


@pytest.fixture(scope="module")
def greetings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tools()
    return tmp_path_factory.mktemp("greetings")


@pytest.fixture(scope="module")
def hold_ms(greetings: Path) -> int:
    """When the far end hangs up: 0.7 s after the greeting's speech (a hang-up before it
    would be ``HUNG_UP_IN_GREETING``, and the suite expects a call that ``ENDED``)."""
    with SipTelephony(SipConfig("127.0.0.1:5060", greeting_cache=greetings)) as probe:
        audio = probe.greetings.prepare(_GREETING, version="v1", plate="苏D12345")
    return round(audio.spoken_s * 1000) + 700


class SipFarEnd:
    """The owner's phone behind the SIP adapter: sipp, which answers and hangs up by its
    scenario."""

    def answer(self, key: str) -> None:
        """sipp answers every call itself."""

    def hang_up(self, key: str) -> None:
        """sipp hangs up after the greeting itself (``HOLD_MS``)."""


class TestSipTelephony(TelephonyContract):
    @pytest.fixture
    def telephony(self, tmp_path: Path, greetings: Path, hold_ms: int) -> Iterator[SipTelephony]:
        sipp = Sipp("contract.xml", tmp_path / "sipp", calls=None, HOLD_MS=hold_ms)
        low = random.randrange(20000, 59000, 2)
        config = SipConfig(
            sipp.trunk,
            rtp_ports=(low, low + 199),
            greeting_cache=greetings,
            listen_after_greeting_s=5.0,
            ring_timeout_s=10.0,
        )
        switch = SipTelephony(config, limits=CallLimits(per_seat=2, total=10))
        try:
            yield switch
        finally:
            switch.close()
            sipp.stop()

    @pytest.fixture
    def far_end(self) -> SipFarEnd:
        return SipFarEnd()
