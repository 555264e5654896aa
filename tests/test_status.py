"""The status page's snapshot and HTML (movecar_adapters.http.status) on the in-memory
store with a manual clock: what it counts, what it lists, and that no full plate or phone
number ever reaches the page."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from movecar_adapters.http.status import (
    HEADERS,
    OPEN_STATES,
    TITLE,
    OpenCaseRow,
    StatusSnapshot,
    render_status,
    status_snapshot,
)
from movecar_core.app import MoveCar
from movecar_core.calendar import SHANGHAI
from movecar_core.case import CaseState, Event
from movecar_core.clock import ManualClock
from movecar_core.errors import InvalidInput
from movecar_core.memory import InMemoryCaseStore, InMemoryTelephony, InMemoryVehicleRegistry
from movecar_core.phones import parse_phone
from movecar_core.plates import parse_plate
from movecar_core.ports import Backlog
from movecar_core.testing.strategies import phones, plates

T0 = dt.datetime(2025, 3, 14, 9, 0, tzinfo=SHANGHAI)
MINUTE = dt.timedelta(minutes=1)
#: A full mainland mobile number, or a fixed line's area code and local number together.
FULL_NUMBER = re.compile(r"(?<![0-9])(1[3-9][0-9]{9}|0[1-9][0-9]{1,2}-?[2-9][0-9]{6,7})(?![0-9])")


def _engine(clock: ManualClock, owners: dict[str, str] | None = None) -> MoveCar:
    return MoveCar.in_memory(owners or {}, clock)


def _counts(snapshot: StatusSnapshot) -> dict[CaseState, int]:
    assert snapshot.open_counts is not None
    return dict(snapshot.open_counts)


def test_counts_rows_ages_and_todays_volume() -> None:
    clock = ManualClock(dt.datetime(2025, 3, 13, 23, 58, tzinfo=SHANGHAI))
    mc = _engine(clock, {"苏D12345": "13912345678"})
    yesterday = mc.open_case(plate="苏D12345", location="湖塘镇", requester_phone="13800001111")
    clock.set(T0 - 30 * MINUTE)
    located = mc.open_case(plate="苏D·12345", location="花园街", requester_phone="13800002222")
    mc.locate_owner(located)
    clock.set(T0 - 10 * MINUTE)
    cancelled = mc.open_case(plate="苏E54321", location="x", requester_phone="0519-81997327")
    mc.cancel(cancelled, note="车已开走")
    clock.set(T0)

    s = status_snapshot(mc)
    assert s.taken_at == T0
    assert [state for state, _ in s.open_counts or ()] == list(OPEN_STATES)
    counts = _counts(s)
    assert counts[CaseState.RECEIVED] == 1 and counts[CaseState.OWNER_LOCATED] == 1
    assert sum(counts.values()) == s.open_total == 2 and not s.truncated
    assert [r.case_id for r in s.open_cases] == [yesterday, located]  # oldest first
    first, second = s.open_cases
    assert (first.plate_masked, first.requester_phone_masked) == ("苏D***45", "138****1111")
    assert first.age == T0 - dt.datetime(2025, 3, 13, 23, 58, tzinfo=SHANGHAI)
    assert (second.state, second.age) == (CaseState.OWNER_LOCATED, 30 * MINUTE)
    # The day is Asia/Shanghai's: the case of 23:58 the day before is not today's.
    assert s.opened_today == 2
    assert s.backlog is not None and s.backlog.pending >= 0
    assert (s.has_ledger, s.last_checkpoint_at) == (False, None)


def test_the_page_shows_what_the_snapshot_holds() -> None:
    clock = ManualClock(T0 - 2 * dt.timedelta(hours=1, minutes=5))
    mc = _engine(clock)
    case_id = mc.open_case(plate="浙A1234学", location="x", requester_phone="13800001111")
    clock.set(T0)
    page = render_status(status_snapshot(mc))
    assert page.startswith('<!DOCTYPE html>\n<html lang="zh-CN">')
    assert f"<title>{TITLE}</title>" in page
    assert 'data-state="received"><th scope="row">已受理 <small>received</small></th>' in page
    assert '<td class="n">1</td>' in page
    assert f'data-case="{case_id}"' in page
    assert "浙A***4学" in page and "138****1111" in page and "2 h 10 min" in page
    assert "2025-03-14 06:50" in page  # opened at, Asia/Shanghai
    assert "最近检查点 Last checkpoint" in page and "无 none" in page
    assert "At most 200 cases are listed." in page


def test_the_page_runs_nothing_and_loads_nothing() -> None:
    page = render_status(status_snapshot(_engine(ManualClock(T0))))
    lowered = page.lower()
    for forbidden in ("<script", "src=", "href=", "http://", "https://", "url(", "@import"):
        assert forbidden not in lowered, forbidden
    [css] = re.findall(r"<style>(.*?)</style>", page, re.S)
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in HEADERS["Content-Security-Policy"]
    assert "default-src 'none'" in HEADERS["Content-Security-Policy"]
    assert 'id="none-open"' in page


def test_the_list_is_limited_and_says_so() -> None:
    clock = ManualClock(T0)
    mc = _engine(clock)
    ids = []
    for i in range(5):
        ids.append(
            mc.open_case(plate=f"苏D1234{i}", location="x", requester_phone=f"1380000111{i}")
        )
        clock.advance(MINUTE)
    s = status_snapshot(mc, limit=3)
    assert [r.case_id for r in s.open_cases] == ids[:3]
    assert (s.open_total, s.truncated) == (5, True)
    page = render_status(s)
    assert "Showing the 3 oldest of 5 open cases." in page
    assert "仅列出最早的 3 件，共 5 件" in page


def test_every_value_is_escaped() -> None:
    hostile = '<script>alert("x")</script>&'
    row = OpenCaseRow(hostile, hostile, hostile, CaseState.RECEIVED, T0, MINUTE)
    counts = tuple((s, 1 if s is CaseState.RECEIVED else 0) for s in OPEN_STATES)
    snapshot = StatusSnapshot(T0, counts, (row,), 200, 1, Backlog(1, 0, T0), True, T0)
    page = render_status(snapshot)
    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page


def test_a_naive_time_or_a_bad_limit_is_refused() -> None:
    mc = _engine(ManualClock(T0))
    with pytest.raises(InvalidInput):
        status_snapshot(mc, now=dt.datetime(2025, 3, 14, 9, 0))
    for limit in (-1, 2.5, True):
        with pytest.raises(InvalidInput):
            status_snapshot(mc, limit=limit)  # type: ignore[arg-type]


class _BareStore:
    """A case store and nothing else: no open-case index, no outbox, no report counts."""

    def __init__(self) -> None:
        self._inner = InMemoryCaseStore()

    def load(self, case_id: str) -> Sequence[Event]:
        return self._inner.load(case_id)

    def append(self, case_id: str, events: Sequence[Event], expected_version: int) -> int:
        return self._inner.append(case_id, events, expected_version)

    def case_ids(self) -> Iterator[str]:
        return self._inner.case_ids()


def test_a_store_without_the_indexes_shows_them_unavailable() -> None:
    clock = ManualClock(T0)
    mc = MoveCar(
        store=_BareStore(),
        registry=InMemoryVehicleRegistry(),
        telephony=InMemoryTelephony(clock=clock),
        clock=clock,
    )
    mc.open_case(plate="苏D12345", location="x", requester_phone="13800001111")
    s = status_snapshot(mc)
    assert (s.open_counts, s.open_cases, s.opened_today, s.backlog) == (None, (), None, None)
    page = render_status(s)
    assert "not available from this store" in page and "苏D***45" not in page


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cases=st.lists(
        st.tuples(plates(), phones(), st.booleans(), st.integers(0, 600)),
        max_size=8,
        unique_by=lambda c: parse_phone(c[1]).canonical,
    ),
    owner=phones(),
)
def test_no_full_plate_or_number_reaches_the_page(
    cases: list[tuple[str, str, bool, int]], owner: str
) -> None:
    """For any cases (plates and numbers as anyone spells them, some with the owner
    found), the page shows each masked and never a full plate, number or its digits."""
    clock = ManualClock(T0)
    mc = _engine(clock, {plate: owner for plate, *_ in cases})
    ids = []
    for plate, phone, locate, minutes in cases:
        case_id = mc.open_case(plate=plate, location="花园街 8 号", requester_phone=phone)
        ids.append(case_id)
        if locate:
            mc.locate_owner(case_id)
        clock.advance(dt.timedelta(minutes=minutes))
    page = render_status(status_snapshot(mc))
    for plate, phone, *_ in cases:
        canonical = parse_plate(plate).canonical
        number = parse_phone(phone)
        assert canonical not in page
        assert number.canonical not in page and number.digits not in page
        assert parse_plate(plate).masked() in page and number.masked() in page
    assert parse_phone(owner).digits not in page
    # Nothing else that looks like a number either (a case id is hex: its digits may).
    for case_id in ids:
        page = page.replace(case_id, "")
    assert FULL_NUMBER.search(page) is None
