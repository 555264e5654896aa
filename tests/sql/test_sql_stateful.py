"""The library's stateful machine with the SQL store: random command sequences on a real
database keep every invariant (and every case still folds to its state row)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test
from sqlsupport import BACKENDS, KEY_1, Databases

from movecar_adapters.crypto import KeyRing
from movecar_adapters.sql import SqlStore, make_engine, verify
from movecar_core import CasePolicy, MoveCar, fold
from movecar_core.clock import ManualClock
from movecar_core.memory import (
    InMemoryCommandCentre,
    InMemoryTelephony,
    InMemoryVehicleRegistry,
)
from movecar_core.testing.stateful import MoveCarStateMachine, RecordingNotifier


@pytest.fixture(params=BACKENDS)
def shared_store(request: pytest.FixtureRequest, databases: Databases) -> Iterator[SqlStore]:
    # One database for every example of the run: each example opens cases of its own.
    store = SqlStore(make_engine(databases.new(str(request.param))), KeyRing([("k1", KEY_1)]))
    yield store
    store.engine.dispose()


def test_random_command_sequences_on_sql(shared_store: SqlStore) -> None:
    class SqlMachine(MoveCarStateMachine):
        def make_engine(self, owners: Mapping[str, str], notifier: RecordingNotifier) -> MoveCar:
            # One clock for the engine and its store (as connect() wires them); the
            # database is shared by every example.
            clock = ManualClock()
            return MoveCar(
                store=SqlStore(shared_store.engine, shared_store.keys, clock=clock),
                registry=InMemoryVehicleRegistry(owners),
                telephony=InMemoryTelephony(),
                clock=clock,
                notifier=notifier,
                command_centre=InMemoryCommandCentre(),
                policy=CasePolicy(max_call_attempts=2),
            )

        def teardown(self) -> None:
            for case_id in self.opened:
                row = shared_store.state_row(case_id)
                assert row is not None
                record = fold(shared_store.load(case_id))
                assert (row["state"], row["version"]) == (record.state.value, record.version)

    run_state_machine_as_test(
        SqlMachine, settings=settings(max_examples=25, stateful_step_count=25, deadline=None)
    )
    assert verify(shared_store).ok
