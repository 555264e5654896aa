"""Clocks. The wall clock is the one thing tested against a frozen wall clock (freezegun);
everything else takes a ManualClock."""

from __future__ import annotations

import datetime as dt

import pytest
from freezegun import freeze_time

from movecar_adapters.clock import SystemClock
from movecar_core.calendar import SHANGHAI
from movecar_core.clock import ManualClock


@freeze_time("2024-03-31T16:00:00Z")  # midnight in Changzhou: the contract's first day
def test_system_clock_is_shanghai_time() -> None:
    now = SystemClock().now()
    assert now.utcoffset() == dt.timedelta(hours=8)
    assert (now.date(), now.hour) == (dt.date(2024, 4, 1), 0)


def test_manual_clock_moves_only_forward_and_only_when_told() -> None:
    clock = ManualClock(dt.datetime(2025, 1, 1, 8, tzinfo=SHANGHAI))
    assert clock.now() == clock.now()
    assert clock.advance(minutes=30) == dt.datetime(2025, 1, 1, 8, 30, tzinfo=SHANGHAI)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(minutes=-1)
    with pytest.raises(ValueError, match="aware"):
        ManualClock(dt.datetime(2025, 1, 1))
