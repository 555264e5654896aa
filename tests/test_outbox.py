"""What a store may skip when it cancels timers: ``may_be_pending`` never misses one."""

from __future__ import annotations

import itertools

import attrs
from hypothesis import given
from hypothesis import strategies as st

from movecar_core.case import Event
from movecar_core.memory import InMemoryCaseStore
from movecar_core.outbox import TIMERS, EffectPolicy, may_be_pending
from movecar_core.testing.strategies import case_histories


@given(
    history=case_histories(),
    cuts=st.lists(st.integers(1, 11), max_size=6),
    follow_up=st.booleans(),
)
def test_every_pending_timer_is_one_that_may_be_pending(
    history: list[Event], cuts: list[int], follow_up: bool
) -> None:
    """Any valid history, appended in batches of any size: after each append, the timers
    the store holds pending for the case are among those its record says may be."""
    policy = EffectPolicy(follow_up_after=None) if not follow_up else EffectPolicy()
    store = InMemoryCaseStore(effects=policy)
    case_id = history[0].case_id
    bounds = sorted({c for c in cuts if c < len(history)} | {0, len(history)})
    for start, end in itertools.pairwise(bounds):
        record, _ = store.append_folded(case_id, history[start:end], expected_version=start)
        pending = {e.kind for e in store.pending(case_id)} & TIMERS
        assert pending <= may_be_pending(record), (pending, attrs.asdict(record))
