"""The requester-limits contract suite: what every :class:`~movecar_core.requesters.RequesterStore`
must do, through the engine. Subclass it and provide the fixture ``requester_engine``::

    class TestMine(RequesterStoreContract):
        @pytest.fixture
        def requester_engine(self) -> RequesterEngine:
            def build(policy: RequesterPolicy, clock: ManualClock) -> MoveCar:
                return MoveCar(store=MyStore(requesters=policy, clock=clock), ...)
            return build

The engines a fixture builds may share one database: every test draws phone numbers of its
own (:func:`fresh_numbers`) and compares the month's refusals by difference.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from movecar_core.app import MoveCar
from movecar_core.clock import ManualClock
from movecar_core.errors import InvalidInput, InvalidPhone
from movecar_core.requesters import (
    BLOCK_ACTION,
    UNBLOCK_ACTION,
    RefusalCounts,
    RefusalReason,
    RequesterBlocked,
    RequesterPolicy,
    RequesterRefused,
    RequesterStore,
    RequestLimitReached,
)
from movecar_core.settlement import ServiceMonth

SHANGHAI = ZoneInfo("Asia/Shanghai")
#: Late in a month, so that a run of steps crosses days and a month's end.
T0 = dt.datetime(2025, 1, 28, 22, 0, tzinfo=SHANGHAI)
#: Builds an engine whose store enforces ``policy``, on ``clock``.
RequesterEngine = Callable[[RequesterPolicy, ManualClock], MoveCar]
#: Steps of the clock, in hours: within a day, across a night, across a month.
STEPS = (1, 3, 9, 24, 24 * 9)

_random = random.SystemRandom()


def fresh_numbers(count: int) -> list[str]:
    """``count`` mobile numbers no other test (nor example) uses, in different spellings."""
    prefix = f"139{_random.randrange(10**6):06d}"
    spellings = ("{}", "+86 {}", "{}")
    return [spellings[i % 3].format(f"{prefix}{i:02d}") for i in range(count)]


def store_of(mc: MoveCar) -> RequesterStore:
    store = mc.store
    assert isinstance(store, RequesterStore), type(store).__name__
    return store


@attrs.define
class Model:
    """What the requester limits must do, as plain counting: the specification."""

    policy: RequesterPolicy
    blocked: set[int] = attrs.field(factory=set)
    opened: Counter[tuple[int, str]] = attrs.field(factory=Counter)
    refused: Counter[tuple[str, str]] = attrs.field(factory=Counter)

    def open(self, who: int, at: dt.datetime) -> RefusalReason | None:
        day = at.astimezone(SHANGHAI).date().isoformat()
        month = day[:7]
        reason = None
        if who in self.blocked:
            reason = RefusalReason.BLOCKED
        elif self.policy.per_month is not None and self.opened[who, month] >= self.policy.per_month:
            reason = RefusalReason.MONTHLY_LIMIT
        elif self.policy.per_day is not None and self.opened[who, day] >= self.policy.per_day:
            reason = RefusalReason.DAILY_LIMIT
        if reason is None:
            self.opened[who, day] += 1
            self.opened[who, month] += 1
        else:
            self.refused[month, reason.value] += 1
        return reason


limits = st.one_of(st.none(), st.integers(1, 4))
steps = st.lists(
    st.one_of(
        st.tuples(st.just("open"), st.integers(0, 2)),
        st.tuples(st.just("repeat"), st.integers(0, 30)),
        st.tuples(st.just("close"), st.integers(0, 30)),
        st.tuples(st.just("block"), st.integers(0, 2)),
        st.tuples(st.just("unblock"), st.integers(0, 2)),
        st.tuples(st.just("wait"), st.sampled_from(STEPS)),
    ),
    max_size=40,
)


class _Run:
    """One sequence of :data:`steps` against an engine and the model, side by side."""

    def __init__(self, mc: MoveCar, clock: ManualClock, model: Model, phones: list[str]):
        self.mc, self.clock, self.model, self.phones = mc, clock, model, phones
        self.store = store_of(mc)
        self.commands: list[tuple[str, int, bool]] = []  # command id, who, admitted
        self.cases: list[str] = []
        month = ServiceMonth.of(T0.date())
        # the month's refusals before: a database may be shared with other examples
        self.before = {month: self.store.requester_refusals(month)}

    def _attempt(self, command: str, who: int, admitted: bool) -> None:
        expected = None if admitted else self.model.open(who, self.clock.now())
        outcome: RequesterRefused | str
        try:
            outcome = self.mc.open_case(
                plate="苏D12345",
                location="湖塘镇花园街",
                requester_phone=self.phones[who],
                command_id=command,
            )
        except RequesterRefused as refused:
            outcome = refused
        if isinstance(outcome, RequesterRefused):
            assert expected is not None, f"refused ({outcome.reason}), the model admits"
            assert outcome.reason is expected
            kind = RequesterBlocked if expected is RefusalReason.BLOCKED else RequestLimitReached
            assert isinstance(outcome, kind)
            assert self.phones[who][-8:] not in str(outcome)  # masked
        else:
            assert expected is None, f"admitted, the model refuses ({expected})"
            if not admitted:
                self.cases.append(outcome)
        entry = (command, who, admitted or expected is None)
        known = [i for i, c in enumerate(self.commands) if c[0] == command]
        if known:
            self.commands[known[0]] = entry
        else:
            self.commands.append(entry)

    def open(self, who: int) -> None:
        self._attempt(uuid.uuid4().hex, who, False)

    def repeat(self, which: int) -> None:
        """The same ``open_case`` again (its command id): one request if it was admitted,
        a new attempt if it was refused."""
        if self.commands:
            self._attempt(*self.commands[which % len(self.commands)])

    def close(self, which: int) -> None:
        if self.cases:  # closing gives nothing back
            self.mc.cancel(self.cases.pop(which % len(self.cases)), note="求助人自行离开")

    def block(self, who: int) -> None:
        if who in self.model.blocked:
            with pytest.raises(InvalidInput, match="blocked already"):
                self.store.block_requester(self.phones[who], reason="恶意挪车", actor="sup-1")
            return
        self.store.block_requester(self.phones[who], reason="恶意挪车", actor="sup-1")
        self.model.blocked.add(who)

    def unblock(self, who: int) -> None:
        if who not in self.model.blocked:
            with pytest.raises(InvalidInput, match="not blocked"):
                self.store.unblock_requester(self.phones[who], reason="误判", actor="sup-2")
            return
        self.store.unblock_requester(self.phones[who], reason="误判", actor="sup-2")
        self.model.blocked.discard(who)

    def wait(self, hours: int) -> None:
        self.clock.advance(hours=hours)
        month = ServiceMonth.of(self.clock.now().astimezone(SHANGHAI).date())
        if month not in self.before:
            self.before[month] = self.store.requester_refusals(month)

    def check(self) -> None:
        policy, model = self.model.policy, self.model
        day = self.clock.now().astimezone(SHANGHAI).date()
        for who, phone in enumerate(self.phones):
            usage = self.store.requester_usage(phone, day)
            assert usage.blocked == (who in model.blocked)
            if policy.per_day is not None:
                assert usage.opened_today == model.opened[who, day.isoformat()]
            if policy.per_month is not None:
                assert usage.opened_this_month == model.opened[who, day.isoformat()[:7]]
        for month, was in self.before.items():
            got = self.store.requester_refusals(month).as_dict()
            for reason in RefusalReason:
                grew = got[reason.value] - was.as_dict()[reason.value]
                assert grew == model.refused[str(month), reason.value], (month, reason)


class RequesterStoreContract:
    """What every store that enforces requester limits must do. Needs ``requester_engine``."""

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(per_day=limits, per_month=limits, script=steps)
    def test_refusals_are_the_models_for_every_sequence(
        self,
        requester_engine: RequesterEngine,
        per_day: int | None,
        per_month: int | None,
        script: list[tuple[str, int]],
    ) -> None:
        """For all sequences of opens (new and repeated), closes, blocks, unblocks and
        waits over days and months: each open is refused exactly when the model refuses
        it, for the model's reason; the counts and the month's refusals are the model's."""
        policy = RequesterPolicy(per_day=per_day, per_month=per_month)
        clock = ManualClock(T0)
        run = _Run(requester_engine(policy, clock), clock, Model(policy), fresh_numbers(3))
        try:
            for kind, arg in script:
                getattr(run, kind)(arg)
            run.check()
        finally:
            run.mc.close()

    def test_the_month_report_counts_and_seals_the_refusals(
        self, requester_engine: RequesterEngine
    ) -> None:
        clock = ManualClock(dt.datetime(2024, 4, 30, 20, 0, tzinfo=SHANGHAI))
        mc = requester_engine(RequesterPolicy(per_day=1, per_month=2), clock)
        store = store_of(mc)
        a, b = fresh_numbers(2)
        try:
            store.block_requester(b, reason="骚扰", actor="sup-1")
            opened = mc.open_case(plate="苏D12345", location="x", requester_phone=a)
            for phone in (a, b, b):
                with pytest.raises(RequesterRefused):
                    mc.open_case(plate="苏D12345", location="x", requester_phone=phone)
            clock.set(dt.datetime(2024, 5, 1, 9, 0, tzinfo=SHANGHAI))
            mc.open_case(plate="苏D12345", location="x", requester_phone=a)  # a new month
            settled = mc.settle_month(ServiceMonth(2024, 4))
        finally:
            mc.close()
        report = settled.report
        assert report.billable_calls == 1 and opened
        assert report.refusals == RefusalCounts(blocked=2, daily_limit=1, monthly_limit=0)
        assert report.refused == report.refusals
        assert store.requester_refusals(ServiceMonth(2024, 4)) == report.refusals

    def test_every_change_to_the_block_list_is_kept(
        self, requester_engine: RequesterEngine
    ) -> None:
        clock = ManualClock(T0)
        mc = requester_engine(RequesterPolicy(), clock)
        store = store_of(mc)
        (phone,) = fresh_numbers(1)
        digits = phone.replace("+86 ", "")
        try:
            first = store.block_requester(phone, reason="一天 12 次恶意挪车", actor="sup-wang")
            clock.advance(hours=2)
            removed = store.unblock_requester(f"+86 {digits}", reason="书面道歉", actor="sup-li")
            clock.advance(hours=2)
            store.block_requester(digits, reason="again", actor="sup-wang")
            mine = [c for c in store.block_history() if c.masked == first.masked]
            listed = [b for b in store.blocked_requesters() if b.masked == first.masked]
        finally:
            mc.close()
        assert first.masked == f"{digits[:3]}****{digits[-4:]}"
        assert removed.reason == "一天 12 次恶意挪车" and removed.actor == "sup-wang"
        assert [(c.action, c.reason, c.actor) for c in mine][-3:] == [
            (BLOCK_ACTION, "一天 12 次恶意挪车", "sup-wang"),
            (UNBLOCK_ACTION, "书面道歉", "sup-li"),
            (BLOCK_ACTION, "again", "sup-wang"),
        ]
        assert mine[-1].at - mine[-3].at == dt.timedelta(hours=4)
        assert [(b.reason, b.actor) for b in listed] == [("again", "sup-wang")]

    @settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        phone=st.one_of(
            st.text(max_size=30),
            st.sampled_from(["", "110", "0519110", "+1 202 555 0100", "1380000111", "１"]),
            st.integers(),
            st.none(),
        ),
        reason=st.one_of(
            st.sampled_from(["", " ", "a\nb", "x" * 201, "\x00", "\u2028"]), st.integers()
        ),
    )
    def test_hostile_input_is_refused_with_a_typed_error_and_nothing_kept(
        self, requester_engine: RequesterEngine, phone: Any, reason: Any
    ) -> None:
        clock = ManualClock(T0)
        mc = requester_engine(RequesterPolicy(), clock)
        store = store_of(mc)
        (good,) = fresh_numbers(1)
        try:
            before = len(store.block_history())
            with pytest.raises(InvalidInput):
                store.block_requester(good, reason=reason, actor="sup-1")
            with pytest.raises(InvalidInput):
                store.block_requester(good, reason="ok", actor=reason)
            try:
                store.block_requester(phone, reason="ok", actor="sup-1")
            except InvalidPhone:
                pass
            else:  # it was a number after all (some text is one): take it off again
                store.unblock_requester(phone, reason="test", actor="sup-1")
                before += 2
            with pytest.raises(InvalidInput):
                store.requester_usage(good, "2025-01-01")  # type: ignore[arg-type]
            with pytest.raises(InvalidInput):
                store.requester_refusals("2025-01")  # type: ignore[arg-type]
            assert len(store.block_history()) == before
            assert not store.requester_usage(good, T0.date()).blocked
        finally:
            mc.close()

    def test_a_repeated_open_is_one_request(self, requester_engine: RequesterEngine) -> None:
        clock = ManualClock(T0)
        mc = requester_engine(RequesterPolicy(per_day=1, per_month=None), clock)
        (phone,) = fresh_numbers(1)
        try:
            first = mc.open_case(
                plate="苏D12345", location="x", requester_phone=phone, command_id="c"
            )
            again = mc.open_case(
                plate="苏D12345", location="x", requester_phone=phone, command_id="c"
            )
            with pytest.raises(RequestLimitReached) as refused:
                mc.open_case(plate="苏D12345", location="x", requester_phone=phone)
            usage = store_of(mc).requester_usage(phone, T0.date())
        finally:
            mc.close()
        assert first == again and refused.value.limit == 1
        assert usage.opened_today == 1

    def test_racing_seats_cannot_both_take_the_last_request(
        self, requester_engine: RequesterEngine
    ) -> None:
        """Eight seats open for one number at the same moment, with 3 requests a day: 3
        are opened, 5 refused (each round a new number)."""
        clock = ManualClock(T0)
        mc = requester_engine(RequesterPolicy(per_day=3, per_month=None), clock)
        store = store_of(mc)
        try:
            for _ in range(3):
                (phone,) = fresh_numbers(1)
                outcomes = _race(mc, phone, seats=8)
                assert sorted(outcomes) == ["opened"] * 3 + ["refused"] * 5, outcomes
                assert store.requester_usage(phone, T0.date()).opened_today == 3
        finally:
            mc.close()

    def test_limits_apply_to_every_spelling_of_a_number(
        self, requester_engine: RequesterEngine
    ) -> None:
        clock = ManualClock(T0)
        mc = requester_engine(RequesterPolicy(per_day=2, per_month=None), clock)
        (phone,) = fresh_numbers(1)
        digits = phone.replace("+86 ", "")
        spaced = f"{digits[:3]} {digits[3:7]} {digits[7:]}"
        try:
            mc.open_case(plate="苏D12345", location="x", requester_phone=digits)
            mc.open_case(plate="苏D12345", location="x", requester_phone=f"0086-{spaced}")
            with pytest.raises(RequestLimitReached):
                mc.open_case(plate="苏D12345", location="x", requester_phone=f"＋８６{digits}")
        finally:
            mc.close()

    def test_without_limits_only_the_block_list_refuses(
        self, requester_engine: RequesterEngine
    ) -> None:
        clock = ManualClock(T0)
        mc = requester_engine(RequesterPolicy(per_day=None, per_month=None), clock)
        store = store_of(mc)
        phone, blocked = fresh_numbers(2)
        month = ServiceMonth.of(T0.date())
        try:
            before = store.requester_refusals(month)
            for _ in range(7):
                mc.open_case(plate="苏D12345", location="x", requester_phone=phone)
            store.block_requester(blocked, reason="骚扰", actor="sup-1")
            with pytest.raises(RequesterBlocked):
                mc.open_case(plate="苏D12345", location="x", requester_phone=blocked)
            assert store.requester_usage(phone, T0.date()).opened_today == 0  # not counted
            after = store.requester_refusals(month)
        finally:
            mc.close()
        assert after.blocked - before.blocked == 1
        assert (after.daily_limit, after.monthly_limit) == (
            before.daily_limit,
            before.monthly_limit,
        )


def _race(mc: MoveCar, phone: str, *, seats: int) -> list[str]:
    """``seats`` threads open a case for ``phone`` at the same moment: what each got."""
    start = threading.Barrier(seats)
    outcomes: list[str] = []
    lock = threading.Lock()

    def seat(n: int) -> None:
        start.wait()
        try:
            mc.open_case(plate="苏D12345", location=f"seat {n}", requester_phone=phone)
            what = "opened"
        except RequestLimitReached:
            what = "refused"
        except Exception as exc:  # any other outcome fails the test, named
            what = f"{type(exc).__name__}: {exc}"
        with lock:
            outcomes.append(what)

    threads = [threading.Thread(target=seat, args=(n,)) for n in range(seats)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes
