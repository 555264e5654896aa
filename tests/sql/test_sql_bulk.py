"""The bulk path stores exactly what ``append`` stores, and fails as atomically, per chunk."""

from __future__ import annotations

import itertools
import os
import pickle
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from movecar_adapters.crypto import KeyRing
from movecar_adapters.sql import SqlStore, StorageError, StorageInputError, verify
from movecar_adapters.sql import schema as t
from movecar_core.case import Event, OwnerCallPlaced
from movecar_core.errors import ConcurrencyConflict
from movecar_core.integrity import canonical_json
from movecar_core.testing.contracts import sample_history
from movecar_core.testing.strategies import case_histories

EXAMPLES = {"sqlite": 40, "postgresql": 15, "mariadb": 15}
_fresh = itertools.count()


def renamed(history: list[Event], case_id: str) -> list[Event]:
    return [attrs.evolve(e, case_id=case_id) for e in history]


def stored(store: SqlStore, case_id: str) -> dict[str, Any]:
    """What the store keeps of a case, ciphertexts opened (nonces differ) and hashes left to
    ``verify`` (they cover the case id, which differs). An append keeps the case's record
    in the state row, an import leaves it to the case's next append: both read back the
    same record."""
    state = dict(store.state_row(case_id) or {})
    state.pop("seq")
    state.pop("folded")
    record = store.load_folded(case_id)[1]
    assert record is not None
    with store.engine.connect() as conn:
        events = conn.execute(
            sa.select(t.events.c.version, t.events.c.type_name)
            .where(t.events.c.case_id == case_id)
            .order_by(t.events.c.version)
        ).all()
    lookups = [{k: v for k, v in x.items() if k != "id"} for x in store.owner_lookups(case_id)]
    return {
        "state": {
            k: v for k, v in state.items() if k not in ("case_id", "opened_hash", "head_hash")
        },
        "events": [tuple(e) for e in events],
        "loaded": [attrs.evolve(e, case_id="-") for e in store.load(case_id)],
        "record": attrs.evolve(record, case_id="-"),
        "lookups": [{k: v for k, v in x.items() if k != "case_id"} for x in lookups],
    }


def test_bulk_import_stores_what_append_stores(fresh_store: SqlStore, backend: str) -> None:
    @settings(
        max_examples=EXAMPLES[backend],
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(case_histories(), min_size=1, max_size=6), st.integers(1, 4))
    def check(histories: list[list[Event]], chunk: int) -> None:
        run = next(_fresh)
        bulk = [renamed(h, f"bulk-{run}-{i}") for i, h in enumerate(histories)]
        one_by_one = [renamed(h, f"append-{run}-{i}") for i, h in enumerate(histories)]
        assert fresh_store.bulk_import(bulk, chunk_cases=chunk) == (
            len(histories),
            sum(map(len, histories)),
        )
        for history in one_by_one:
            fresh_store.append(history[0].case_id, history, expected_version=0)
        for a, b in zip(bulk, one_by_one, strict=True):
            assert stored(fresh_store, a[0].case_id) == stored(fresh_store, b[0].case_id)
            assert fresh_store.state_row(a[0].case_id)["folded"] is None  # type: ignore[index]
            assert fresh_store.state_row(b[0].case_id)["folded"] is not None  # type: ignore[index]
            assert list(fresh_store.load(a[0].case_id)) == a

    check()
    assert verify(fresh_store).ok


@pytest.mark.parametrize("writer", ["inline", "process"])
def test_a_chunk_with_an_existing_case_writes_nothing(fresh_store: SqlStore, writer: str) -> None:
    fresh_store.append("taken", sample_history("taken"), expected_version=0)
    histories = [sample_history(c) for c in ("a1", "a2", "b1", "taken", "b2")]
    with pytest.raises(ConcurrencyConflict) as caught:
        fresh_store.bulk_import(histories, chunk_cases=2, writer=writer)
    assert caught.value.case_id == "taken"
    # chunks of two: [a1 a2] stored before the failing [b1 taken]; b2 never reached
    assert [fresh_store.version(c) for c in ("a1", "a2", "b1", "b2")] == [5, 5, 0, 0]
    assert verify(fresh_store).ok


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (lambda h: [*h[:2], attrs.evolve(h[2], attempt="1"), *h[3:]], "events[2]"),
        (lambda h: [*h[:2], *h[3:]], "events"),  # an outcome with no call in flight
        (lambda h: [], "history"),
        (lambda h: [attrs.evolve(h[0], plate="苏" + "D" * 40), *h[1:]], "CaseOpened.plate"),
        (lambda h: [*h[:4], attrs.evolve(h[4], note="x" * 4001)], "EscalatedTo110.note"),
    ],
)
def test_bad_history_fails_its_chunk_and_writes_nothing_of_it(
    fresh_store: SqlStore, bad: Any, field: str
) -> None:
    histories = [sample_history("ok"), bad(sample_history("bad")), sample_history("late")]
    with pytest.raises(StorageInputError) as caught:
        fresh_store.bulk_import(histories, chunk_cases=10)
    assert caught.value.field == field
    assert [fresh_store.version(c) for c in ("ok", "bad", "late")] == [0, 0, 0]


@pytest.mark.parametrize("writer", ["inline", "process"])
def test_bad_input_after_some_chunks_keeps_exactly_the_chunks_before(
    fresh_store: SqlStore, writer: str
) -> None:
    good = [sample_history(f"g{i}") for i in range(7)]
    placed = sample_history("bad")[2]
    bad = [*sample_history("bad")[:2], attrs.evolve(placed, attempt="1")]
    with pytest.raises(StorageInputError, match="attempt"):
        fresh_store.bulk_import([*good, bad, sample_history("late")], chunk_cases=3, writer=writer)
    # chunks [g0 g1 g2] [g3 g4 g5] are stored; [g6 bad ...] and after are not
    assert [fresh_store.version(f"g{i}") for i in range(7)] == [5] * 6 + [0]
    assert fresh_store.version("late") == 0
    assert verify(fresh_store).ok


def test_process_writer_stores_the_same_rows_as_inline(fresh_store: SqlStore) -> None:
    @settings(
        max_examples=2,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],  # a process per run: no shrinking
    )
    @given(st.lists(case_histories(), min_size=30, max_size=30))
    def check(histories: list[list[Event]]) -> None:
        run = next(_fresh)
        inline = [renamed(h, f"in-{run}-{i}") for i, h in enumerate(histories)]
        child = [renamed(h, f"pr-{run}-{i}") for i, h in enumerate(histories)]
        fresh_store.bulk_import(inline, chunk_cases=7, with_effects=True)
        fresh_store.bulk_import(child, chunk_cases=7, with_effects=True, writer="process")
        for a, b in zip(inline, child, strict=True):
            assert stored(fresh_store, a[0].case_id) == stored(fresh_store, b[0].case_id)
            assert effects(fresh_store, a[0].case_id) == effects(fresh_store, b[0].case_id)

    check()
    assert verify(fresh_store).ok


def effects(store: SqlStore, case_id: str) -> list[tuple[str, object, str]]:
    return sorted(
        (e.kind, e.due_at, canonical_json(dict(e.payload))) for e in store.pending(case_id)
    )


def test_process_writer_needs_an_engine_it_can_rebuild(fresh_url: str, keys: KeyRing) -> None:
    engine = sa.create_engine(fresh_url)  # not through make_engine: no recipe for a child
    store = SqlStore(engine, keys)
    with pytest.raises(StorageInputError, match="make_engine"):
        store.bulk_import([sample_history("x")], writer="process")
    with pytest.raises(StorageInputError, match="inline"):
        store.bulk_import([sample_history("x")], writer="threads")  # type: ignore[arg-type]
    assert store.version("x") == 0
    engine.dispose()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the child in /proc")
def test_a_writer_process_that_dies_is_a_storage_error(fresh_store: SqlStore) -> None:
    def histories() -> Iterator[list[Event]]:
        for i in range(40):
            if i == 20:  # two chunks sent: kill the writer
                for child in children_running("movecar_adapters.sql.bulk_child"):
                    os.kill(child, signal.SIGKILL)
            yield sample_history(f"k{i}")

    with pytest.raises(StorageError, match="bulk writer process ended"):
        fresh_store.bulk_import(histories(), chunk_cases=5, writer="process")
    stored_versions = [fresh_store.version(f"k{i}") for i in range(40)]
    kept = stored_versions.count(5)
    assert stored_versions == [5] * kept + [0] * (40 - kept)  # a prefix of whole chunks
    assert kept % 5 == 0
    assert verify(fresh_store).ok


def children_running(module: str) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and module in cmdline:
            found.append(int(stat.parent.name))
    return found


def test_a_case_twice_in_one_import_is_refused(fresh_store: SqlStore) -> None:
    with pytest.raises(StorageInputError, match="appears twice"):
        fresh_store.bulk_import([sample_history("d"), sample_history("d")])
    assert fresh_store.version("d") == 0


def test_sample_history_shape() -> None:
    # the parametrised bad histories above rely on it
    assert type(sample_history("x")[2]) is OwnerCallPlaced
    assert len(sample_history("x")) == 5


@given(
    st.lists(st.text()) | st.lists(st.none() | st.integers() | st.text(), min_size=1),
)
def test_columns_cross_the_pipe_unchanged(values: list[object]) -> None:
    from movecar_adapters.sql.bulk import _pack, _unpack

    packed = _pack(values)
    assert list(_unpack(pickle.loads(pickle.dumps(packed)))) == values
    if values and all(type(v) is str and "\0" not in v for v in values):
        assert packed[0] == "text"  # the cheap form whenever it is safe
