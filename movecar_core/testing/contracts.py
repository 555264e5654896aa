"""Port contract suites: one per port, written once, run against every adapter.

Subclass a suite in a ``Test...`` class and provide the fixture it names::

    class TestMyStore(CaseStoreContract):
        @pytest.fixture
        def store(self) -> CaseStore:
            return MyStore(...)

Every adapter of a port must pass its suite unchanged; that is what lets the engine,
the simulator and the host treat adapters as interchangeable.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from movecar_core.calls import (
    FINAL_RANK,
    CallEvent,
    CallProgress,
    TransferOutcome,
    TransferRequest,
    call_key,
    rank,
)
from movecar_core.case import (
    TERMINAL_STATES,
    CallOutcome,
    CallOutcomeRecorded,
    CaseOpened,
    CaseState,
    EscalatedTo110,
    EscalationReason,
    Event,
    OwnerCallPlaced,
    OwnerLookedUp,
)
from movecar_core.errors import (
    ConcurrencyConflict,
    InvalidInput,
    InvalidPlate,
    RegistryUnavailable,
)
from movecar_core.machine import fold
from movecar_core.outbox import (
    CALL_OUTCOME_DUE,
    FOLLOW_UP_CALL,
    NOTIFY_110,
    NOTIFY_REQUESTER,
    Claimed,
    inline_token,
    plan,
)
from movecar_core.phones import parse_phone
from movecar_core.ports import (
    Backlog,
    CaseStore,
    Clock,
    OutboundCallRequest,
    Telephony,
    VehicleRegistry,
)
from movecar_core.testing.strategies import case_histories, forbidden_texts, texts

SHANGHAI = ZoneInfo("Asia/Shanghai")
#: A full mainland mobile number: never in an error message.
_PHONE_DIGITS = re.compile(r"1[3-9][0-9]{9}")
T0 = dt.datetime(2025, 3, 1, 8, 30, tzinfo=SHANGHAI)


def sample_history(case_id: str, *, at: dt.datetime = T0) -> list[Event]:
    """A realistic five-event history: opened, owner found, called, refused, escalated."""
    s = dt.timedelta(seconds=1)
    return [
        CaseOpened(
            case_id, at, f"open-{case_id}", "苏D12345", "武进区湖塘镇花园街 8 号",
            "13800001111", "seat-1",
        ),
        OwnerLookedUp(case_id, at + 20 * s, None, "seat-1", True, "13912345678", "jsjj"),
        OwnerCallPlaced(
            case_id, at + dt.timedelta(seconds=40), "call-1", "c1", 1, "seat-1", "0519110",
            "您好，这是公安 110 挪车服务专线，您是苏D12345 车主吗？", "v1",
        ),
        CallOutcomeRecorded(case_id, at + 120 * s, None, "c1", CallOutcome.ANSWERED_REFUSED),
        EscalatedTo110(
            case_id, at + dt.timedelta(minutes=3), None, EscalationReason.OWNER_UNCOOPERATIVE,
            "车主拒绝挪车", "0519-81997327",
        ),
    ]  # fmt: skip


def _new_id() -> str:
    return uuid.uuid4().hex


class CaseStoreContract:
    """What every :class:`~movecar_core.ports.CaseStore` must do. Needs fixture ``store``."""

    def test_unknown_case_loads_empty(self, store: CaseStore) -> None:
        assert list(store.load(_new_id())) == []

    def test_round_trip_keeps_every_field(self, store: CaseStore) -> None:
        case_id = _new_id()
        events = sample_history(case_id)
        assert store.append(case_id, events[:1], expected_version=0) == 1
        assert store.append(case_id, events[1:], expected_version=1) == len(events)
        loaded = list(store.load(case_id))
        assert loaded == events
        assert [type(e) for e in loaded] == [type(e) for e in events]
        assert all(
            a.at == b.at and a.at.utcoffset() is not None
            for a, b in zip(loaded, events, strict=True)
        )

    def test_stale_version_conflicts_and_writes_nothing(self, store: CaseStore) -> None:
        case_id = _new_id()
        events = sample_history(case_id)
        store.append(case_id, events[:2], expected_version=0)
        with pytest.raises(ConcurrencyConflict) as info:
            store.append(case_id, events[2:], expected_version=1)
        assert (info.value.expected, info.value.actual) == (1, 2)
        assert list(store.load(case_id)) == events[:2]

    def test_creating_an_existing_case_conflicts(self, store: CaseStore) -> None:
        case_id = _new_id()
        events = sample_history(case_id)
        store.append(case_id, events[:1], expected_version=0)
        with pytest.raises(ConcurrencyConflict):
            store.append(case_id, events[:1], expected_version=0)
        assert list(store.load(case_id)) == events[:1]

    def test_future_version_conflicts(self, store: CaseStore) -> None:
        case_id = _new_id()
        with pytest.raises(ConcurrencyConflict):
            store.append(case_id, sample_history(case_id)[:1], expected_version=3)
        assert list(store.load(case_id)) == []

    def test_cases_are_separate_and_listed_in_creation_order(self, store: CaseStore) -> None:
        ids = [_new_id() for _ in range(3)]
        for i, case_id in enumerate(ids):
            store.append(case_id, sample_history(case_id)[: i + 1], expected_version=0)
        for i, case_id in enumerate(ids):
            assert len(store.load(case_id)) == i + 1
        listed = [c for c in store.case_ids() if c in set(ids)]
        assert listed == ids

    def test_history_folds(self, store: CaseStore) -> None:
        case_id = _new_id()
        store.append(case_id, sample_history(case_id), expected_version=0)
        assert fold(store.load(case_id)).state.value == "escalated_to_110"

    def test_racing_appenders_exactly_one_wins(self, store: CaseStore) -> None:
        case_id = _new_id()
        events = sample_history(case_id)
        store.append(case_id, events[:2], expected_version=0)
        outcomes: list[str] = []
        barrier = threading.Barrier(8)

        def racer() -> None:
            barrier.wait()
            try:
                store.append(case_id, events[2:3], expected_version=2)
                outcomes.append("won")
            except ConcurrencyConflict:
                outcomes.append("lost")

        threads = [threading.Thread(target=racer) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["lost"] * 7 + ["won"]
        assert list(store.load(case_id)) == events[:3]

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        cut=st.integers(min_value=1, max_value=4),
        text=st.tuples(texts(min_size=1), texts(max_size=200), texts(min_size=1, max_size=40)),
        seconds=st.integers(min_value=0, max_value=10**8),
    )
    def test_any_history_round_trips(
        self, store: CaseStore, cut: int, text: tuple[str, str, str], seconds: int
    ) -> None:
        """Any text the rule allows (movecar_core.text) comes back exactly as stored."""
        location, note, agent = text
        case_id = _new_id()
        at = T0 + dt.timedelta(seconds=seconds)
        events = sample_history(case_id, at=at)
        opened = events[0]
        assert isinstance(opened, CaseOpened)
        events[0] = CaseOpened(
            case_id, opened.at, opened.command_id, opened.plate, location,
            opened.requester_phone, agent,
        )  # fmt: skip
        last = events[-1]
        assert isinstance(last, EscalatedTo110)
        events[-1] = EscalatedTo110(
            case_id, last.at, None, last.reason, note or None, last.transfer_number
        )
        store.append(case_id, events[:cut], expected_version=0)
        store.append(case_id, events[cut:], expected_version=cut)
        assert list(store.load(case_id)) == events

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        bad=forbidden_texts(),
        where=st.sampled_from(["location", "agent_id", "command_id", "note", "source"]),
    )
    def test_forbidden_text_is_refused_and_nothing_written(
        self, store: CaseStore, bad: str, where: str
    ) -> None:
        """A control character, lone surrogate or noncharacter in any text field of any
        event is :class:`InvalidInput` (never a driver or encoding error), and the append
        writes nothing: the same on every store."""
        case_id = _new_id()
        events = sample_history(case_id)
        # (event index, field): every kind of text an event holds
        index, field = {
            "location": (0, "location"),
            "command_id": (0, "command_id"),
            "agent_id": (1, "agent_id"),
            "source": (1, "source"),
            "note": (4, "note"),
        }[where]
        changes: dict[str, Any] = {field: bad}
        events[index] = attrs.evolve(events[index], **changes)
        first = 0 if index == 0 else 1
        if first:
            store.append(case_id, events[:1], expected_version=0)
        with pytest.raises(InvalidInput):
            store.append(case_id, events[first:], expected_version=first)
        assert len(store.load(case_id)) == first


class VehicleRegistryContract:
    """Needs fixtures ``registry`` (knows ``苏D12345`` -> an owner, nothing about
    ``苏E99999``) and ``make_unavailable`` (a callable that takes the registry down)."""

    def test_known_plate_gives_contact(self, registry: VehicleRegistry) -> None:
        contact = registry.lookup("苏D12345")
        assert contact is not None
        assert contact.phone and contact.source

    def test_unknown_plate_gives_none(self, registry: VehicleRegistry) -> None:
        assert registry.lookup("苏E99999") is None

    def test_unavailable_raises_typed_error(
        self, registry: VehicleRegistry, make_unavailable: object
    ) -> None:
        assert callable(make_unavailable)
        make_unavailable()
        with pytest.raises(RegistryUnavailable) as info:
            registry.lookup("苏D12345")
        assert not _PHONE_DIGITS.search(str(info.value)), "no phone number in the message"

    def test_the_contact_is_canonical_and_its_source_fits_the_record(
        self, registry: VehicleRegistry
    ) -> None:
        """The engine stores and dials the phone as given (canonical, movecar_core.phones),
        and keeps the source in the look-up's event (one line, at most 100 characters)."""
        contact = registry.lookup("苏D12345")
        assert contact is not None
        assert parse_phone(contact.phone).canonical == contact.phone
        assert 0 < len(contact.source) <= 100 and contact.source.isprintable()

    def test_a_lookup_is_repeatable(self, registry: VehicleRegistry) -> None:
        assert registry.lookup("苏D12345") == registry.lookup("苏D12345")
        assert registry.lookup("苏E99999") is None

    @pytest.mark.parametrize(
        "bad", ["", "苏", "../../vehicles", "苏D12345?x=1", "苏D1234567890", "x" * 10_000]
    )
    def test_a_malformed_plate_is_none_or_invalid_plate(
        self, registry: VehicleRegistry, bad: str
    ) -> None:
        """Never a contact, never another error: an adapter may refuse it
        (:class:`~movecar_core.errors.InvalidPlate`, nothing asked) or find nothing."""
        try:
            found = registry.lookup(bad)
        except InvalidPlate:
            return
        assert found is None


def _call_request(agent_id: str = "seat-1", attempt: int = 1) -> OutboundCallRequest:
    case_id = _new_id()
    return OutboundCallRequest(
        call_id=_new_id(),
        case_id=case_id,
        agent_id=agent_id,
        caller_id="0519110",
        callee="13912345678",
        greeting="您好，这是公安 110 挪车服务专线，您是苏D12345 车主吗？",
        attempt=attempt,
        plate="苏D12345",
        greeting_version="v1",
    )


class FarEnd(Protocol):
    """The other end of the line, as a contract test drives it: the owner's phone."""

    def answer(self, key: str) -> None:
        """Make the call ``key`` ring and be answered (no-op where the far end always
        answers by itself)."""
        ...

    def hang_up(self, key: str) -> None:
        """The owner hangs up the answered call ``key``."""
        ...


class InMemoryFarEnd:
    """The far end behind an :class:`~movecar_core.memory.InMemoryTelephony`: answering
    and hanging up are reports the switch queues for the engine."""

    def __init__(self, switch: Any) -> None:
        self.switch = switch

    def answer(self, key: str) -> None:
        self.switch.report(key, CallProgress.RINGING)
        self.switch.report(key, CallProgress.ANSWERED)

    def hang_up(self, key: str) -> None:
        self.switch.report(key, CallProgress.ENDED)


def collect_events(
    telephony: Telephony,
    key: str,
    done: Callable[[list[CallEvent]], bool],
    *,
    timeout_s: float = 10.0,
) -> list[CallEvent]:
    """Drain the switch until the events of ``key`` satisfy ``done`` (a real switch reports
    asynchronously); every event drained is checked to be a well-formed CallEvent."""
    seen: list[CallEvent] = []
    deadline = time.monotonic() + timeout_s
    while True:
        for event in telephony.drain_events():
            assert isinstance(event, CallEvent)
            if event.key == key:
                seen.append(event)
        if done(seen) or time.monotonic() > deadline:
            return seen
        time.sleep(0.01)


def _has(progress: CallProgress) -> Callable[[list[CallEvent]], bool]:
    return lambda events: any(e.progress is progress for e in events)


class TelephonyContract:
    """What every :class:`~movecar_core.ports.Telephony` must do. Needs fixtures
    ``telephony`` (a fresh switch, no call in flight, no cap below 2 calls per seat) and
    ``far_end`` (a :class:`FarEnd` on the line behind it)."""

    def test_a_placed_call_is_known_and_in_flight(self, telephony: Telephony) -> None:
        request = _call_request()
        telephony.place_call(request)
        status = telephony.call_status(request.key)
        assert status is not None and status.key == request.key
        assert rank(status.progress) < FINAL_RANK or status.progress is CallProgress.ENDED
        now = telephony.in_flight()
        assert now.total >= 1 and now.of("seat-1") >= 1

    def test_a_call_never_placed_is_unknown(self, telephony: Telephony) -> None:
        assert telephony.call_status(call_key(_new_id(), 1)) is None

    def test_a_repeated_key_is_one_call(self, telephony: Telephony) -> None:
        request = _call_request()
        telephony.place_call(request)
        telephony.place_call(request)  # the same call again: no error, no second dial
        telephony.place_call(attrs.evolve(request, call_id=_new_id()))  # same key, too
        assert telephony.in_flight().of("seat-1") == 1

    def test_events_come_in_order_and_end_the_call(
        self, telephony: Telephony, far_end: FarEnd
    ) -> None:
        request = _call_request()
        telephony.place_call(request)
        far_end.answer(request.key)
        events = collect_events(telephony, request.key, _has(CallProgress.ANSWERED))
        far_end.hang_up(request.key)
        events += collect_events(telephony, request.key, _has(CallProgress.ENDED))
        progress = [e.progress for e in events]
        assert CallProgress.ANSWERED in progress and progress[-1] is CallProgress.ENDED
        assert [rank(p) for p in progress] == sorted(rank(p) for p in progress)
        assert len(set(progress)) == len(progress), "a report delivered twice"
        assert all("13912345678" not in e.detail for e in events)
        status = telephony.call_status(request.key)
        assert status is not None and status.progress is CallProgress.ENDED
        assert telephony.in_flight().of("seat-1") == 0

    def test_the_live_call_transfers_to_110(self, telephony: Telephony, far_end: FarEnd) -> None:
        request = _call_request()
        telephony.place_call(request)
        far_end.answer(request.key)
        collect_events(telephony, request.key, _has(CallProgress.ANSWERED))
        outcome = telephony.transfer_to_110(
            TransferRequest(request.case_id, "0519-81997327", "owner_uncooperative", request.key)
        )
        assert outcome is TransferOutcome.ACCEPTED

    def test_a_transfer_of_no_live_call_is_not_accepted(self, telephony: Telephony) -> None:
        case_id = _new_id()
        outcome = telephony.transfer_to_110(
            TransferRequest(case_id, "0519-81997327", "owner_uncooperative", call_key(case_id, 1))
        )
        assert outcome in (TransferOutcome.FAILED, TransferOutcome.REFUSED)


class ClockContract:
    """Needs fixture ``clock``: aware, non-decreasing time."""

    def test_aware_and_monotone(self, clock: Clock) -> None:
        first = clock.now()
        second = clock.now()
        assert first.tzinfo is not None and first.utcoffset() is not None
        assert second >= first


class OutboxStoreContract:
    """What every :class:`~movecar_core.outbox.OutboxStore` (a case store that keeps an
    outbox) must do. Needs fixture ``outbox_store``: a fresh store, both a
    :class:`~movecar_core.ports.CaseStore` and an ``OutboxStore``, with the default
    :class:`~movecar_core.outbox.EffectPolicy`."""

    NOW = dt.datetime(2025, 3, 1, 9, 0, tzinfo=SHANGHAI)

    def test_effects_are_planned_with_the_events(self, outbox_store: Any) -> None:
        case_id = _new_id()
        history = sample_history(case_id)
        outbox_store.append(case_id, history[:3], expected_version=0)  # a call in flight
        kinds = sorted(e.kind for e in outbox_store.pending(case_id))
        assert kinds == [CALL_OUTCOME_DUE, NOTIFY_REQUESTER]
        [due] = [e for e in outbox_store.pending(case_id) if e.kind == CALL_OUTCOME_DUE]
        assert due.due_at == history[2].at + outbox_store.effects.call_outcome_timeout
        assert due.payload["call_id"] == "c1"

    def test_closing_cancels_every_timer(self, outbox_store: Any) -> None:
        case_id = _new_id()
        history = sample_history(case_id)
        outbox_store.append(case_id, history[:3], expected_version=0)
        outbox_store.append(case_id, history[3:], expected_version=3)  # refused, escalated
        kinds = sorted(e.kind for e in outbox_store.pending(case_id))
        assert CALL_OUTCOME_DUE not in kinds and FOLLOW_UP_CALL not in kinds
        assert NOTIFY_110 in kinds

    def test_a_refused_append_plans_nothing(self, outbox_store: Any) -> None:
        case_id = _new_id()
        history = sample_history(case_id)
        outbox_store.append(case_id, history[:2], expected_version=0)
        before = list(outbox_store.pending(case_id))
        with pytest.raises(ConcurrencyConflict):
            outbox_store.append(case_id, history[2:3], expected_version=1)
        assert list(outbox_store.pending(case_id)) == before

    def test_a_claim_leases_each_effect_to_one_worker(self, outbox_store: Any) -> None:
        case_id = _new_id()
        outbox_store.append(case_id, sample_history(case_id), expected_version=0)
        mine = {e.key for e in outbox_store.pending(case_id)}
        claimed = outbox_store.claim("w1", limit=10, now=self.NOW, keys=mine)
        assert {c.effect.key for c in claimed} == mine
        assert outbox_store.claim("w2", limit=10, now=self.NOW, keys=mine) == []
        assert all(outbox_store.complete(c) for c in claimed)
        assert not outbox_store.complete(claimed[0])  # done once
        assert list(outbox_store.pending(case_id)) == []

    def test_an_expired_lease_is_claimed_again(self, outbox_store: Any) -> None:
        case_id = _new_id()
        outbox_store.append(case_id, sample_history(case_id), expected_version=0)
        key = f"{case_id}:5:{NOTIFY_110}"
        [first] = outbox_store.claim("crashed", now=self.NOW, keys=[key])
        later = self.NOW + dt.timedelta(minutes=1)
        assert outbox_store.claim("w2", now=later, keys=[key]) == []
        [again] = outbox_store.claim("w2", now=self.NOW + dt.timedelta(hours=1), keys=[key])
        assert (again.effect.key, again.attempts) == (key, first.attempts + 1)
        assert not outbox_store.complete(first)  # its lease was lost
        assert outbox_store.complete(again)

    def test_inline_sends_are_born_leased_to_their_writer(self, outbox_store: Any) -> None:
        """With inline delivery (the default policy) a send is written leased to the
        engine that wrote it: no worker takes it before the lease runs out, and the
        writer completes it by its key with :func:`inline_token`."""
        case_id = _new_id()
        history = sample_history(case_id)
        outbox_store.append(case_id, history, expected_version=0)
        [notice] = [e for e in outbox_store.pending(case_id) if e.kind == NOTIFY_110]
        soon = notice.due_at + outbox_store.lease - dt.timedelta(seconds=1)
        assert outbox_store.claim("w", now=soon, keys=[notice.key]) == []
        held = Claimed(0, inline_token(notice.key), notice, 1, notice.due_at)
        assert outbox_store.complete(held)
        assert notice.key not in {e.key for e in outbox_store.pending(case_id)}
        assert not outbox_store.complete(held)

    def test_nothing_is_claimed_before_it_is_due(self, outbox_store: Any) -> None:
        case_id = _new_id()
        history = sample_history(case_id)
        outbox_store.append(case_id, history[:3], expected_version=0)
        placed = history[2].at
        keys = [e.key for e in outbox_store.pending(case_id) if e.kind == CALL_OUTCOME_DUE]
        assert outbox_store.claim("w", now=placed, keys=keys) == []
        timeout = outbox_store.effects.call_outcome_timeout
        [claimed] = outbox_store.claim("w", now=placed + timeout, keys=keys)
        assert claimed.effect.kind == CALL_OUTCOME_DUE


class FoldedCaseStoreContract:
    """What every :class:`~movecar_core.ports.FoldedCaseStore` must do: the record it keeps
    and hands back is always the fold of the history it holds, and the plan it hands back
    is the plan of the batch. Needs fixture ``folded_store``: a fresh store with the
    default :class:`~movecar_core.outbox.EffectPolicy`."""

    def test_unknown_case_has_no_record(self, folded_store: Any) -> None:
        events, record = folded_store.load_folded(_new_id())
        assert (list(events), record) == ([], None)

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(history=case_histories(), cuts=st.lists(st.integers(1, 11), max_size=6))
    def test_the_record_is_the_fold_after_every_append(
        self, folded_store: Any, history: list[Event], cuts: list[int]
    ) -> None:
        """Any valid history, appended in batches of any size: after each append the
        store hands back ``fold`` of what it holds, and the plan of that batch."""
        case_id = _new_id()  # the store is shared by the examples
        history = [attrs.evolve(e, case_id=case_id) for e in history]
        bounds = sorted({c for c in cuts if c < len(history)} | {0, len(history)})
        before = None
        for start, end in itertools.pairwise(bounds):
            batch = history[start:end]
            record, planned = folded_store.append_folded(case_id, batch, expected_version=start)
            assert record == fold(history[:end])
            assert planned == plan(
                batch,
                start + 1,
                folded_store.effects,
                before=None if before is None else before.state,
                after=record.state,
            )
            events, kept = folded_store.load_folded(case_id)
            assert list(events) == history[:end] == list(folded_store.load(case_id))
            assert kept == record == fold(events)
            before = record

    def test_a_refused_append_leaves_the_record(self, folded_store: Any) -> None:
        case_id = _new_id()
        history = sample_history(case_id)
        record, _ = folded_store.append_folded(case_id, history[:3], expected_version=0)
        kept = attrs.evolve(record)
        with pytest.raises(ConcurrencyConflict):
            folded_store.append_folded(case_id, history[3:], expected_version=2)
        with pytest.raises(InvalidInput):  # a second look-up: not a valid history
            folded_store.append_folded(case_id, [*history[3:4], history[1]], expected_version=3)
        events, record_now = folded_store.load_folded(case_id)
        assert (list(events), record_now) == (history[:3], kept)
        assert record == kept  # the record handed out was not changed in place


class OpenCasesContract:
    """What every :class:`~movecar_core.ports.OpenCases` store must do: count and list
    exactly the cases whose state is not terminal, the oldest first, each as the fold of
    its history. Needs fixture ``open_cases_store``: a fresh, empty case store."""

    def test_an_empty_store_has_nothing_open(self, open_cases_store: Any) -> None:
        assert open_cases_store.open_counts() == {}
        assert open_cases_store.open_cases(10) == []

    def test_open_cases_oldest_first_and_closed_ones_left_out(self, open_cases_store: Any) -> None:
        store = open_cases_store
        late, early, closed = _new_id(), _new_id(), _new_id()
        minute = dt.timedelta(minutes=1)
        store.append(late, sample_history(late, at=T0 + 2 * minute)[:1], expected_version=0)
        store.append(early, sample_history(early, at=T0)[:3], expected_version=0)
        store.append(closed, sample_history(closed, at=T0 - minute), expected_version=0)
        assert store.open_counts() == {CaseState.RECEIVED: 1, CaseState.OWNER_CALLED: 1}
        listed = store.open_cases(10)
        assert [r.case_id for r in listed] == [early, late]
        assert listed[0] == fold(store.load(early))
        assert [r.case_id for r in store.open_cases(1)] == [early]
        assert store.open_cases(0) == []
        store.append(early, sample_history(early, at=T0)[3:], expected_version=3)  # escalated
        assert store.open_counts() == {CaseState.RECEIVED: 1}
        assert [r.case_id for r in store.open_cases(10)] == [late]

    def test_a_negative_limit_is_refused(self, open_cases_store: Any) -> None:
        with pytest.raises(InvalidInput):
            open_cases_store.open_cases(-1)

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(histories=st.lists(case_histories(), max_size=4))
    def test_counts_and_records_follow_any_histories(
        self, open_cases_store: Any, histories: list[list[Event]]
    ) -> None:
        """Whatever cases are added (the store is shared by the examples): the counts grow
        by the new open cases' states, and each open case is listed as its fold, in order."""
        store = open_cases_store
        before = Counter(store.open_counts())
        added: dict[str, Any] = {}
        for drawn in histories:
            case_id = _new_id()
            history = [attrs.evolve(e, case_id=case_id) for e in drawn]
            store.append(case_id, history, expected_version=0)
            added[case_id] = fold(history)
        opened = Counter(r.state for r in added.values() if r.state not in TERMINAL_STATES)
        after = store.open_counts()
        assert Counter(after) == before + opened
        assert all(n > 0 for n in after.values())
        listed = store.open_cases(sum(after.values()))
        assert len(listed) == sum(after.values())
        assert [r.opened_at for r in listed] == sorted(r.opened_at for r in listed)
        mine = {r.case_id: r for r in listed if r.case_id in added}
        assert mine == {k: r for k, r in added.items() if r.state not in TERMINAL_STATES}


class OutboxBacklogContract:
    """What every :class:`~movecar_core.ports.OutboxBacklog` store must do: count the
    pending effects and tell the earliest due time. Needs fixture ``backlog_store``: a
    fresh, empty store with an outbox and the default
    :class:`~movecar_core.outbox.EffectPolicy`."""

    def test_an_empty_outbox_has_no_backlog(self, backlog_store: Any) -> None:
        assert backlog_store.outbox_backlog(T0) == Backlog(0, 0, None)

    def test_the_backlog_is_the_pending_effects(self, backlog_store: Any) -> None:
        store = backlog_store
        for case_id in (_new_id(), _new_id()):
            store.append(case_id, sample_history(case_id)[:3], expected_version=0)
        dues = sorted(e.due_at for e in store.pending())
        assert len(dues) >= 2
        before = dues[0] - dt.timedelta(seconds=1)
        assert store.outbox_backlog(before) == Backlog(len(dues), 0, dues[0])
        assert store.outbox_backlog(dues[-1]) == Backlog(len(dues), len(dues), dues[0])
        middle = store.outbox_backlog(dues[0])
        assert middle.due == sum(1 for d in dues if d <= dues[0])

    def test_completed_effects_leave_the_backlog(self, backlog_store: Any) -> None:
        store = backlog_store
        case_id = _new_id()
        store.append(case_id, sample_history(case_id), expected_version=0)
        pending = list(store.pending())
        far = T0 + dt.timedelta(days=1)
        claimed = store.claim("w", limit=len(pending), now=far)
        assert store.outbox_backlog(far).pending == len(pending)  # leased is still pending
        for c in claimed:
            assert store.complete(c)
        left = list(store.pending())
        oldest = min((e.due_at for e in left), default=None)
        assert store.outbox_backlog(far) == Backlog(len(left), len(left), oldest)
