"""The contract suite of the :class:`~movecar_core.incidents.IncidentStore` port.

Subclass :class:`IncidentStoreContract` in a ``Test...`` class and provide the fixture::

    class TestMyIncidentStore(IncidentStoreContract):
        @pytest.fixture
        def incident_store(self) -> IncidentStore: ...   # a new, empty log

Every adapter passes the suite unchanged: the log keeps its records in order and equal to
what was appended, refuses a stale length and every record the log's rules refuse
without writing anything, and lets exactly one of several writers take a position.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from movecar_core.calendar import SHANGHAI
from movecar_core.incidents import (
    MAX_CAUSE,
    IncidentConflict,
    IncidentError,
    IncidentRecord,
    IncidentRefused,
    IncidentStore,
    NoticeKind,
    NoticeSent,
    OutageEnded,
    OutageStarted,
    SecurityIncidentReported,
    SecurityKind,
    UnknownIncident,
    fold,
    notice_key,
)

T0 = dt.datetime(2025, 3, 14, 8, 0, 0, 123456, tzinfo=SHANGHAI)
UTC_PLUS_2 = dt.timezone(dt.timedelta(hours=2))


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def notice(incident_id: str, kind: NoticeKind, when: dt.datetime) -> NoticeSent:
    return NoticeSent(
        incident_id, kind, notice_key(incident_id, kind), when, when, "movecar", "command_centre"
    )


def a_whole_story() -> list[IncidentRecord]:
    """Every kind of record, in an order the rules allow, with text and times that test a
    store's encoding: Chinese and a 4-byte emoji, microseconds, other UTC offsets."""
    return [
        OutageStarted(
            "outage-0001", at(0), "核心交换机故障 ⚡🚧 “引号” 'quote'", at(3), "值班员-7"
        ),
        notice("outage-0001", NoticeKind.FAULT, at(12).astimezone(UTC_PLUS_2)),
        SecurityIncidentReported(
            "security-0001", SecurityKind.LEAK, "坐席导出的文件外泄" * 20, at(20), at(21), "sup-1"
        ),
        OutageEnded("outage-0001", at(95), at(96).astimezone(dt.UTC), "值班员-7"),
        notice("outage-0001", NoticeKind.RECOVERY, at(110)),
        notice("security-0001", NoticeKind.SECURITY_REPORT, at(60 * 23)),
        OutageStarted("outage-0002", at(60 * 24), "x" * MAX_CAUSE, at(60 * 24), "a"),
    ]


def append_all(store: IncidentStore, records: list[IncidentRecord]) -> None:
    for i, record in enumerate(records):
        assert store.append(record, i) == i + 1


_SLOW = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class IncidentStoreContract:
    """The behaviour every :class:`~movecar_core.incidents.IncidentStore` adapter has."""

    @pytest.fixture
    def incident_store(self) -> IncidentStore:
        raise NotImplementedError  # pragma: no cover - each adapter's class provides it

    def test_a_new_log_is_empty(self, incident_store: IncidentStore) -> None:
        assert list(incident_store.records()) == []
        assert fold(incident_store.records()).size == 0

    def test_every_kind_of_record_comes_back_equal_and_in_order(
        self, incident_store: IncidentStore
    ) -> None:
        story = a_whole_story()
        append_all(incident_store, story)
        back = list(incident_store.records())
        assert back == story  # equal instants, whatever the offset they came back in
        assert [type(r) for r in back] == [type(r) for r in story]
        log = fold(back)
        assert [o.incident_id for o in log.outages()] == ["outage-0001", "outage-0002"]
        assert log.open_outage is not None and log.open_outage.incident_id == "outage-0002"

    def test_a_stale_length_is_a_conflict_and_writes_nothing(
        self, incident_store: IncidentStore
    ) -> None:
        story = a_whole_story()
        append_all(incident_store, story[:2])
        for stale in (0, 1, 3):
            with pytest.raises(IncidentConflict):
                incident_store.append(story[2], stale)
        assert list(incident_store.records()) == story[:2]

    def test_what_the_rules_refuse_is_refused_and_nothing_is_written(
        self, incident_store: IncidentStore
    ) -> None:
        start = OutageStarted("outage-0001", at(0), "停电", at(0), "op")
        append_all(incident_store, [start])
        refused: list[tuple[IncidentRecord, type[IncidentError]]] = [
            # a second start while one is open
            (OutageStarted("outage-0002", at(5), "又停电", at(5), "op"), IncidentRefused),
            # an end before (or at) its start
            (OutageEnded("outage-0001", at(-1), at(1), "op"), IncidentRefused),
            (OutageEnded("outage-0001", at(0), at(1), "op"), IncidentRefused),
            # a notice for an incident never started
            (notice("outage-0009", NoticeKind.FAULT, at(2)), UnknownIncident),
            # a recovery notice before the recovery, a notice before the fault
            (notice("outage-0001", NoticeKind.RECOVERY, at(2)), IncidentRefused),
            (notice("outage-0001", NoticeKind.FAULT, at(-5)), IncidentRefused),
            # a security report for an outage
            (notice("outage-0001", NoticeKind.SECURITY_REPORT, at(2)), IncidentRefused),
            # the same id twice
            (
                SecurityIncidentReported(
                    "outage-0001", SecurityKind.LOSS, "丢失", at(1), at(1), "op"
                ),
                IncidentRefused,
            ),
        ]
        for record, error in refused:
            with pytest.raises(error):
                incident_store.append(record, 1)
        assert list(incident_store.records()) == [start]
        append_all(incident_store, [])  # still usable
        assert incident_store.append(notice("outage-0001", NoticeKind.FAULT, at(2)), 1) == 2
        with pytest.raises(IncidentRefused):  # the same notice twice
            incident_store.append(notice("outage-0001", NoticeKind.FAULT, at(3)), 2)

    def test_of_several_writers_at_one_position_exactly_one_wins(
        self, incident_store: IncidentStore
    ) -> None:
        writers = 6
        gate = threading.Barrier(writers)
        won: list[int] = []
        lost: list[BaseException] = []

        def write(i: int) -> None:
            record = SecurityIncidentReported(
                "security-0001", SecurityKind.TAMPERING, f"writer {i}", at(i), at(10), "op"
            )
            gate.wait()
            try:
                incident_store.append(record, 0)
                won.append(i)
            except IncidentConflict as exc:
                lost.append(exc)

        threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(won) == 1 and len(lost) == writers - 1
        (record,) = incident_store.records()
        assert isinstance(record, SecurityIncidentReported)
        assert record.summary == f"writer {won[0]}"

    @_SLOW
    @given(
        gaps=st.lists(
            st.tuples(st.integers(1, 10**9), st.integers(1, 10**9)), min_size=1, max_size=4
        ),
        micros=st.integers(0, 999_999),
    )
    def test_outages_at_any_times_come_back_as_they_went_in(
        self, incident_store: IncidentStore, gaps: list[tuple[int, int]], micros: int
    ) -> None:
        have = len(incident_store.records())  # the fixture is the same across examples
        log = fold(incident_store.records())
        last = log.outages()[-1].ended_at if log.outages() else T0
        assert last is not None
        when = last + dt.timedelta(microseconds=micros)
        records: list[IncidentRecord] = []
        n = len(log.outages())
        for pause, length in gaps:
            n += 1
            start = when + dt.timedelta(microseconds=pause)
            end = start + dt.timedelta(microseconds=length)
            oid = f"outage-{n:04d}"
            records.append(OutageStarted(oid, start, "故障", end, "op"))
            records.append(OutageEnded(oid, end, end, "op"))
            when = end
        for i, record in enumerate(records, start=have):
            incident_store.append(record, i)
        assert list(incident_store.records())[have:] == records
