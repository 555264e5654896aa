"""The service-level stateful machine, against the engine behind two desks (a seat's and
a supervisor's): what a host of ``movecar serve`` runs against HTTP, here in-process so a
failure points at the machine or the engine, not the transport."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import HealthCheck, settings

from movecar_core import Actor, Desk, MoveCar, Role
from movecar_core.commands import CaseCommands
from movecar_core.testing.service_machine import CaseReader, CaseServiceMachine


class BehindDesks(CaseServiceMachine):
    def make_service(self, owners: Mapping[str, str]) -> tuple[CaseCommands, CaseReader]:
        engine = MoveCar.in_memory(owners)
        return Desk(engine, Actor("seat-1", Role.AGENT)), Desk(
            engine, Actor("lead-1", Role.SUPERVISOR)
        )


BehindDesks.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestBehindDesks = BehindDesks.TestCase


class ShowsTheOwner(BehindDesks):
    """A broken integration: its history shows the owner's number unmasked."""

    def make_service(self, owners: Mapping[str, str]) -> tuple[CaseCommands, CaseReader]:
        seat, _ = super().make_service(owners)
        assert isinstance(seat, Desk)
        return seat, seat.engine


def test_the_machine_catches_an_integration_that_shows_the_owner() -> None:
    import pytest

    ShowsTheOwner.TestCase.settings = settings(
        max_examples=200,
        stateful_step_count=25,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    with pytest.raises(AssertionError, match="the seat is shown"):
        ShowsTheOwner.TestCase().runTest()
