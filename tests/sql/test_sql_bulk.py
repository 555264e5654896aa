"""The bulk path stores exactly what ``append`` stores, and fails as atomically, per chunk."""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.sql import SqlStore, StorageInputError, verify
from adapters.sql import schema as t
from movecar_core.case import Event, OwnerCallPlaced
from movecar_core.errors import ConcurrencyConflict
from movecar_core.testing.contracts import sample_history
from movecar_core.testing.strategies import case_histories

EXAMPLES = {"sqlite": 40, "postgresql": 15, "mariadb": 15}
_fresh = itertools.count()


def renamed(history: list[Event], case_id: str) -> list[Event]:
    return [attrs.evolve(e, case_id=case_id) for e in history]


def stored(store: SqlStore, case_id: str) -> dict[str, Any]:
    """What the store keeps of a case, ciphertexts opened (nonces differ) and hashes left to
    ``verify`` (they cover the case id, which differs)."""
    state = dict(store.state_row(case_id) or {})
    state.pop("seq")
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
            assert list(fresh_store.load(a[0].case_id)) == a

    check()
    assert verify(fresh_store).ok


def test_a_chunk_with_an_existing_case_writes_nothing(fresh_store: SqlStore) -> None:
    fresh_store.append("taken", sample_history("taken"), expected_version=0)
    histories = [sample_history(c) for c in ("a1", "a2", "b1", "taken", "b2")]
    with pytest.raises(ConcurrencyConflict) as caught:
        fresh_store.bulk_import(histories, chunk_cases=2)
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


def test_a_case_twice_in_one_import_is_refused(fresh_store: SqlStore) -> None:
    with pytest.raises(StorageInputError, match="appears twice"):
        fresh_store.bulk_import([sample_history("d"), sample_history("d")])
    assert fresh_store.version("d") == 0


def test_sample_history_shape() -> None:
    # the parametrised bad histories above rely on it
    assert type(sample_history("x")[2]) is OwnerCallPlaced
    assert len(sample_history("x")) == 5
