"""Every generated history is one the machine accepts, and survives the codec."""

from __future__ import annotations

from hypothesis import given

from movecar_core import codec
from movecar_core.case import Event
from movecar_core.machine import fold
from movecar_core.testing.strategies import case_histories


@given(case_histories())
def test_generated_histories_fold(history: list[Event]) -> None:
    case = fold(history)
    assert case.version == len(history)
    assert (case.closed_at is not None) == case.state.is_terminal
    assert case.attempts <= 3


@given(case_histories())
def test_codec_round_trips_every_history(history: list[Event]) -> None:
    for event in history:
        name, payload = codec.encode(event)
        assert codec.decode(event.case_id, name, payload) == event


def test_encode_refuses_what_decode_could_not_read_back() -> None:
    import datetime as dt

    import attrs
    import pytest

    from movecar_core.case import CallOutcomeRecorded
    from movecar_core.codec import MalformedEvent, UnknownEventType
    from movecar_core.testing.contracts import sample_history

    placed, outcome = sample_history("c1")[2:4]
    with pytest.raises(MalformedEvent, match="attempt"):
        codec.encode(attrs.evolve(placed, attempt="1"))
    with pytest.raises(MalformedEvent, match="naive"):
        codec.encode(attrs.evolve(placed, at=dt.datetime(2025, 1, 1)))
    assert isinstance(outcome, CallOutcomeRecorded)
    with pytest.raises(MalformedEvent, match="CallOutcome"):
        codec.encode(attrs.evolve(outcome, outcome="answered_agreed"))
    with pytest.raises(UnknownEventType):
        codec.encode(object())  # type: ignore[arg-type]
