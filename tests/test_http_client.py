"""``MoveCarClient`` against ``movecar serve``'s application on a real socket: the same
results as a desk in-process, problems raised as the library's typed families, nothing of
the token in what it shows."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("uvicorn", reason="movecar serve needs the http extra")

from http_support import CASE, OWNERS, SECRET, TOKEN_SPEC, TOKENS, live, sqlite_engine

from movecar_adapters.http import (
    MoveCarClient,
    ServiceAccessRefused,
    ServiceCaseRefused,
    ServiceInputRefused,
    ServiceUnavailable,
    create_app,
)
from movecar_core import Actor, CaseState, Desk, MoveCar, Role
from movecar_core.commands import CaseCommands
from movecar_core.errors import CaseError, InvalidInput, PortError
from movecar_core.machine import fold


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[MoveCar, str]]:
    engine = sqlite_engine(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        app = create_app(engine, tokens=TOKEN_SPEC, webhook_secret=SECRET)
    with live(app) as url:
        yield engine, url
    engine.close()


def test_a_lifecycle_over_http_is_the_lifecycle_in_process(served: tuple[MoveCar, str]) -> None:
    engine, url = served
    with (
        MoveCarClient(url, TOKENS["agent"]) as seat,
        MoveCarClient(url, TOKENS["supervisor"]) as lead,
    ):
        assert isinstance(seat, CaseCommands)
        case_id = seat.open_case(**CASE, command_id="open-1")
        assert seat.open_case(**CASE, command_id="open-1") == case_id  # a retry: same case
        located = seat.locate_owner(case_id)
        assert located.owner_located and located.owner_phone_masked == "139****1111"
        call = seat.call_owner(case_id, command_id="call-1")
        assert seat.call_owner(case_id, command_id="call-1") == call
        assert call.caller_id == "0519110"
        seat.record_call_outcome(case_id, call.call_id, "answered_agreed")
        moved = seat.confirm_moved(case_id, note="车主已挪车")
        assert moved.state is CaseState.MOVED
        # What the service shows is what a desk in-process shows, events and all.
        desk = Desk(engine, Actor("lead-1", Role.SUPERVISOR))
        assert lead.case(case_id) == desk.case(case_id) == moved
        history = lead.history(case_id)
        assert [type(e) for e in history] == [type(e) for e in desk.history(case_id)]
        assert fold(history).state is CaseState.MOVED
        assert history[0].agent_id == "seat-07"  # type: ignore[attr-defined]
        assert OWNERS["苏D12345"] not in repr(history)


def test_problems_are_the_library_families(served: tuple[MoveCar, str]) -> None:
    _, url = served
    with MoveCarClient(url, TOKENS["agent"]) as seat:
        with pytest.raises(ServiceInputRefused, match="InvalidPlate") as bad:
            seat.open_case(plate="苏I12345", location="x", requester_phone="13800001111")
        assert isinstance(bad.value, InvalidInput) and bad.value.status == 422
        with pytest.raises(ServiceCaseRefused, match="UnknownCase") as unknown:
            seat.confirm_moved("0" * 32)
        assert isinstance(unknown.value, CaseError) and unknown.value.status == 404
        case_id = seat.open_case(**CASE)
        with pytest.raises(ServiceCaseRefused, match="OwnerNotLocated"):
            seat.call_owner(case_id)
        seat.open_case(**CASE, command_id="k")
        with pytest.raises(ServiceCaseRefused, match="IdempotencyKeyReused"):
            seat.open_case(**{**CASE, "location": "别处"}, command_id="k")
        with pytest.raises(ServiceInputRefused):
            seat.cancel(case_id, note="   ")
        with pytest.raises(ServiceAccessRefused, match="PermissionDenied") as denied:
            seat.history(case_id)  # a seat reads no case record
        assert denied.value.status == 403
    with (
        MoveCarClient(url, "x" * 40) as stranger,
        pytest.raises(ServiceAccessRefused, match="Unauthenticated"),
    ):
        stranger.case(case_id)


def test_a_path_in_an_id_stays_an_id(served: tuple[MoveCar, str]) -> None:
    _, url = served
    with MoveCarClient(url, TOKENS["agent"]) as seat:
        # Never another resource: a malformed id, no such case, or no such route.
        for odd in ("../reports/2024-05", "a/b", "x?y=1", "%2e%2e", "..", "."):
            with pytest.raises((ServiceCaseRefused, ServiceInputRefused)) as refused:
                seat.case(odd)
            assert refused.value.problem in {"InvalidInput", "UnknownCase", "NotFound"}, odd
        with pytest.raises(InvalidInput):
            seat.case("")


def test_a_service_that_is_not_there_is_a_port_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    seat = MoveCarClient(f"http://127.0.0.1:{port}", TOKENS["agent"], timeout=2)
    with seat, pytest.raises(ServiceUnavailable, match="Unreachable") as down:
        seat.case("0" * 32)
    assert isinstance(down.value, PortError)
    assert TOKENS["agent"] not in repr(seat) + str(down.value)


def test_for_all_ids_the_answer_is_a_typed_refusal(served: tuple[MoveCar, str]) -> None:
    """Any text as an id reaches the case resource as that id (a refusal about input or
    the case), never another resource, never a 5xx."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    _, url = served
    with MoveCarClient(url, TOKENS["agent"]) as seat:

        @settings(max_examples=150, deadline=None, database=None)
        @given(st.text(min_size=1, max_size=80))
        def check(odd: str) -> None:
            with pytest.raises((ServiceCaseRefused, ServiceInputRefused)) as refused:
                seat.case(odd)
            # NotFound: a slash in the id, decoded by the server's router, found no route.
            assert refused.value.problem in {"InvalidInput", "UnknownCase", "NotFound"}, odd

        check()
