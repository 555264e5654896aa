"""``movecar_adapters.http`` over the real app on real SQLite files: resources, roles,
idempotency, problems, signed telephony callbacks (docs/http.md)."""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from http_support import (
    CASE,
    SECRET,
    T0,
    TOKEN_SPEC,
    TOKENS,
    auth,
    client,
    signed,
    sqlite_engine,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from movecar_adapters.config import ConfigError, load_settings
from movecar_adapters.http import parse_tokens
from movecar_adapters.http.problems import PROBLEMS
from movecar_core.calls import call_key
from movecar_core.clock import ManualClock
from movecar_core.codec import decode
from movecar_core.machine import fold

PHONE = re.compile(r"(?<![0-9a-f])1[3-9][0-9]{9}(?![0-9a-f])")  # not inside a hex id


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def api(tmp_path: Path, clock: ManualClock) -> Iterator[Any]:
    engine = sqlite_engine(tmp_path, clock)
    with client(engine) as c:
        c.engine = engine  # type: ignore[attr-defined]
        yield c
    engine.close()


def open_case(api: Any, key: str | None = None, **changes: str) -> str:
    headers = auth() | ({"Idempotency-Key": key} if key else {})
    r = api.post("/v1/cases", json=CASE | changes, headers=headers)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v1/cases/{r.json()['case_id']}"
    return str(r.json()["case_id"])


def accesses(api: Any) -> list[dict[str, Any]]:
    """The access log (七(三)) the SQL store keeps."""
    return [dict(row) for row in api.engine.store.access_log()]


def problem(r: Any, status: int, name: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["type"] == f"urn:movecar:error:{name}" and body["status"] == status
    assert PROBLEMS[name][0] == status
    assert "Traceback" not in r.text
    return body


# --- the lifecycle ------------------------------------------------------------------------


def test_a_case_moved_over_http_and_its_history_folds_to_its_state(api: Any) -> None:
    case_id = open_case(api)
    seen = api.get(f"/v1/cases/{case_id}", headers=auth()).json()
    assert seen["state"] == "received" and seen["requester_phone_masked"] != CASE["requester_phone"]
    assert api.post(f"/v1/cases/{case_id}/locate", headers=auth()).json()["owner_located"]
    call = api.post(f"/v1/cases/{case_id}/call", headers=auth()).json()
    assert call["caller_id"] == "0519110" and call["attempt"] == 1
    after = api.post(
        f"/v1/cases/{case_id}/outcome",
        json={"call_id": call["call_id"], "outcome": "answered_agreed"},
        headers=auth(),
    ).json()
    assert after["last_outcome"] == "answered_agreed"
    moved = api.post(f"/v1/cases/{case_id}/confirm-moved", json={}, headers=auth()).json()
    assert moved["state"] == "moved" and moved["closed_at"]
    history = api.get(f"/v1/cases/{case_id}/history", headers=auth("supervisor"))
    assert history.status_code == 200
    events = [decode(case_id, e["type"], e["payload"]) for e in history.json()["events"]]
    assert fold(events).state.value == moved["state"]
    assert fold(events).version == moved["version"]
    assert not PHONE.search(history.text), "the history shows masked numbers only"
    # seats act under their own id (the token's)
    assert history.json()["events"][0]["payload"]["agent_id"] == "seat-07"


def test_dispute_cancel_and_escalate(api: Any) -> None:
    disputed = open_case(api)
    api.post(f"/v1/cases/{disputed}/locate", headers=auth())
    call = api.post(f"/v1/cases/{disputed}/call", headers=auth()).json()
    api.post(
        f"/v1/cases/{disputed}/outcome",
        json={"call_id": call["call_id"], "outcome": "answered_refused"},
        headers=auth(),
    )
    r = api.post(f"/v1/cases/{disputed}/dispute", json={"note": "不是我的车"}, headers=auth())
    assert r.json()["state"] == "disputed"
    r = api.post(
        f"/v1/cases/{disputed}/escalate",
        json={"reason": "owner_disputes_authority"},
        headers=auth("supervisor"),
    )
    assert r.json()["state"] == "escalated_to_110", r.text
    cancelled = open_case(api, plate="苏D54321")
    r = api.post(f"/v1/cases/{cancelled}/cancel", json={"note": "已自行解决"}, headers=auth())
    assert r.json()["state"] == "cancelled"
    problem(api.post(f"/v1/cases/{cancelled}/locate", headers=auth()), 409, "CaseClosed")


def test_unknown_case_and_route(api: Any) -> None:
    problem(api.get(f"/v1/cases/{uuid.uuid4().hex}", headers=auth()), 404, "UnknownCase")
    problem(api.get("/v1/nothing", headers=auth()), 404, "NotFound")
    problem(api.delete("/v1/cases", headers=auth()), 405, "MethodNotAllowed")


def test_healthz_needs_no_token(api: Any) -> None:
    r = api.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_reports_by_month(api: Any, clock: ManualClock) -> None:
    open_case(api)
    problem(api.get("/v1/reports/2024-05", headers=auth("supervisor")), 404, "ReportNotFound")
    problem(api.get("/v1/reports/2024-13", headers=auth("supervisor")), 422, "InvalidMonth")
    problem(api.get("/v1/reports/May", headers=auth("supervisor")), 422, "InvalidMonth")
    problem(api.get("/v1/reports/2024-05", headers=auth()), 403, "PermissionDenied")
    from movecar_core.settlement import ServiceMonth

    clock.set(dt.datetime(2024, 6, 3, 9, 0, tzinfo=T0.tzinfo))
    api.engine.settle_month(ServiceMonth(2024, 5))
    r = api.get("/v1/reports/2024-05", headers=auth("command_centre"))
    assert r.status_code == 200, r.text
    assert r.json()["month"] == "2024-05" and r.json()["inbound_calls"] == 1


# --- who asks -----------------------------------------------------------------------------


def test_no_token_or_a_wrong_one_is_401_logged_without_the_token(
    api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "x" * 40
    with caplog.at_level(logging.WARNING, logger="movecar.http"):
        problem(api.post("/v1/cases", json=CASE), 401, "Unauthenticated")
        r = api.get("/v1/cases/abc", headers={"Authorization": f"Bearer {wrong}"})
        assert problem(r, 401, "Unauthenticated")
        assert r.headers["www-authenticate"].startswith("Bearer")
        problem(
            api.get("/v1/cases/abc", headers={"Authorization": TOKENS["agent"]}),
            401,
            "Unauthenticated",
        )
    logged = [e for e in accesses(api) if e["action"] == "denied:authenticate"]
    assert len(logged) == 3 and all(e["actor"] == "anonymous" for e in logged)
    assert len([r for r in caplog.records if "401" in r.getMessage()]) == 3
    text = caplog.text + repr(logged)
    assert wrong not in text and TOKENS["agent"] not in text


def test_a_role_that_may_not_is_403_and_logged(api: Any) -> None:
    case_id = open_case(api)
    problem(api.post("/v1/cases", json=CASE, headers=auth("auditor")), 403, "PermissionDenied")
    problem(
        api.post(f"/v1/cases/{case_id}/locate", headers=auth("supervisor")), 403, "PermissionDenied"
    )
    problem(api.get(f"/v1/cases/{case_id}/history", headers=auth()), 403, "PermissionDenied")
    problem(api.get(f"/v1/cases/{case_id}", headers=auth("auditor")), 403, "PermissionDenied")
    denied = [e["action"] for e in accesses(api) if e["action"].startswith("denied:")]
    assert denied == [
        "denied:case.open",
        "denied:case.locate_owner",
        "denied:case.history",
        "denied:case.read",
    ]


def test_weak_or_malformed_tokens_are_refused_without_quoting_them() -> None:
    for spec, why in [
        ("agent=short", "32"),
        ("boss=" + "a" * 40, "role"),
        ("agent" + "a" * 40, "ROLE=TOKEN"),
        ("agent=" + "a" * 39 + "!", "32"),
        (f"agent={'a' * 40},supervisor={'a' * 40}", "twice"),
        ("", "no API tokens"),
    ]:
        with pytest.raises(ConfigError, match=why) as info:
            parse_tokens(spec)
        assert "a" * 30 not in str(info.value)
    table = parse_tokens(TOKEN_SPEC)
    assert [(a.actor_id, a.role.value) for a in table.actors] == [
        ("seat-07", "agent"),
        ("seat-08", "agent"),
        ("supervisor", "supervisor"),
        ("110-desk", "command_centre"),
        ("auditor", "auditor"),
    ]
    assert TOKENS["agent"] not in repr(table)


def test_api_settings_from_the_file_and_the_environment(tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text(TOKEN_SPEC + "\n")
    (tmp_path / "secret").write_text(SECRET + "\n")
    config = tmp_path / "movecar.toml"
    config.write_text(
        '[api]\ntokens_file = "tokens"\nwebhook_secret_file = "secret"\nport = 9000\n'
    )
    found = load_settings(config, environ={})
    assert found.api_tokens_spec == TOKEN_SPEC and found.webhook_secret == SECRET
    assert found.api_port == 9000 and SECRET not in repr(found)
    env = load_settings(config, environ={"MOVECAR_API_TOKENS": "agent=" + "z" * 40})
    assert env.api_tokens_spec == "agent=" + "z" * 40
    config.write_text('[api]\ntokens = "agent=x"\n')
    with pytest.raises(ConfigError, match=r"unknown setting api\.tokens"):
        load_settings(config, environ={})


# --- idempotency --------------------------------------------------------------------------

BODIES = [CASE, CASE | {"location": "湖塘镇花园街"}, CASE | {"plate": "苏D54321"}]


@settings(max_examples=25)
@given(
    requests=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 2), st.sampled_from(["agent", "agent2"])),
        min_size=1,
        max_size=8,
    )
)
def test_an_idempotency_key_replays_the_first_response_or_is_409(
    tmp_path_factory: pytest.TempPathFactory, requests: list[tuple[int, int, str]]
) -> None:
    """For all sequences of POST /v1/cases with keys, bodies and seats: the first use of a
    key decides; the same key, body and seat again gets that first response byte for
    byte; the same key with another body (or by another seat) is 409 and writes nothing."""
    engine = _shared_engine(tmp_path_factory)
    api = client(engine)
    nonce = uuid.uuid4().hex[:8]
    first: dict[int, tuple[int, str, Any]] = {}
    for key, body, seat in requests:
        r = api.post(
            "/v1/cases",
            json=BODIES[body],
            headers=auth(seat) | {"Idempotency-Key": f"{nonce}-{key}"},
        )
        if key not in first:
            assert r.status_code == 201, r.text
            first[key] = (body, seat, r)
            continue
        body0, seat0, r0 = first[key]
        if (body0, seat0) == (body, seat):
            assert (r.status_code, r.content) == (r0.status_code, r0.content)
        else:
            problem(r, 409, "IdempotencyKeyReused")
    # per-case commands: the key is scoped to its case
    case_id = first[requests[0][0]][2].json()["case_id"]
    key = {"Idempotency-Key": f"{nonce}-cancel"}
    a = api.post(f"/v1/cases/{case_id}/cancel", json={"note": "走了"}, headers=auth() | key)
    b = api.post(f"/v1/cases/{case_id}/cancel", json={"note": "走了"}, headers=auth() | key)
    assert (a.status_code, a.content) == (b.status_code, b.content) and a.status_code == 200
    problem(
        api.post(f"/v1/cases/{case_id}/cancel", json={"note": "另一个"}, headers=auth() | key),
        409,
        "IdempotencyKeyReused",
    )
    problem(
        api.post(f"/v1/cases/{case_id}/confirm-moved", json={}, headers=auth() | key),
        409,
        "IdempotencyKeyReused",
    )


_ENGINES: dict[str, Any] = {}


def _shared_engine(factory: pytest.TempPathFactory) -> Any:
    if "engine" not in _ENGINES:
        _ENGINES["engine"] = sqlite_engine(factory.mktemp("http-idem"))
    return _ENGINES["engine"]


def test_a_keyed_command_the_switch_failed_repeats_its_failure(api: Any) -> None:
    """The engine records the failed dial (and the failed transfer) before it raises: a
    repeat of the same key answers the same problem, not the recorded result as if it
    had gone through; a new key retries."""
    case_id = open_case(api)
    assert api.post(f"/v1/cases/{case_id}/locate", json={}, headers=auth()).status_code == 200
    api.engine.telephony.failing = True
    keyed = auth() | {"Idempotency-Key": "call-refused"}
    first = problem(
        api.post(f"/v1/cases/{case_id}/call", json={}, headers=keyed), 502, "TelephonyError"
    )
    again = problem(
        api.post(f"/v1/cases/{case_id}/call", json={}, headers=keyed), 502, "TelephonyError"
    )
    assert first["type"] == again["type"]
    api.engine.telephony.failing = False
    retried = api.post(
        f"/v1/cases/{case_id}/call", json={}, headers=auth() | {"Idempotency-Key": "call-2"}
    )
    assert retried.status_code == 200 and retried.json()["attempt"] == 2

    api.engine.telephony.refuse_transfers = True
    body = {"reason": "dispute_unresolved"}
    escalate = f"/v1/cases/{case_id}/escalate"
    keyed = auth() | {"Idempotency-Key": "transfer-refused"}
    problem(api.post(escalate, json=body, headers=keyed), 502, "TelephonyError")
    problem(api.post(escalate, json=body, headers=keyed), 502, "TelephonyError")
    api.engine.telephony.refuse_transfers = False
    done = api.post(escalate, json=body, headers=auth() | {"Idempotency-Key": "transfer-2"})
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "escalated_to_110"
    again = api.post(escalate, json=body, headers=auth() | {"Idempotency-Key": "transfer-2"})
    assert (again.status_code, again.content) == (done.status_code, done.content)


def test_an_idempotency_key_is_checked(api: Any) -> None:
    for bad in ["", "a" * 129, "clé".encode(), "a b"]:
        r = api.post("/v1/cases", json=CASE, headers=auth() | {"Idempotency-Key": bad})
        problem(r, 400, "InvalidIdempotencyKey")


# --- bodies and problems ------------------------------------------------------------------


def test_bodies_are_strict_and_bounded(api: Any) -> None:
    body = problem(
        api.post("/v1/cases", json=CASE | {"extra": 1}, headers=auth()), 422, "InvalidBody"
    )
    assert body["errors"][0]["field"] == "body.extra"
    problem(
        api.post("/v1/cases", json=CASE | {"requester_phone": 13800001111}, headers=auth()),
        422,
        "InvalidBody",
    )
    problem(api.post("/v1/cases", content=b"{not json", headers=auth()), 422, "InvalidBody")
    problem(api.post("/v1/cases", json=[CASE], headers=auth()), 422, "InvalidBody")
    problem(
        api.post("/v1/cases", json=CASE | {"location": "x" * 17000}, headers=auth()),
        413,
        "BodyTooLarge",
    )
    problem(
        api.post("/v1/cases", json=CASE | {"plate": "ABC"}, headers=auth()), 422, "InvalidPlate"
    )
    case_id = open_case(api)
    problem(
        api.post(f"/v1/cases/{case_id}/escalate", json={"reason": "bored"}, headers=auth()),
        422,
        "InvalidBody",
    )
    problem(
        api.post(f"/v1/cases/{case_id}/locate", json={"x": 1}, headers=auth()), 422, "InvalidBody"
    )


phones = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)
spelled = st.builds(
    lambda p, sep: sep.join([p[:3], p[3:7], p[7:]]), phones, st.sampled_from(["", " ", "-"])
)


@settings(max_examples=40)
@given(
    phone=spelled,
    field=st.sampled_from(["plate", "location", "requester_phone", "extra"]),
    padding=st.text(max_size=20),
)
def test_no_response_ever_holds_a_full_phone_number(
    tmp_path_factory: pytest.TempPathFactory, phone: str, field: str, padding: str
) -> None:
    """For all bodies holding a phone number anywhere (a valid case, a bad plate, a note,
    an unknown field): no response holds it."""
    api = client(_shared_engine(tmp_path_factory))
    body = CASE | {field: f"{padding}{phone}"}
    digits = phone.replace(" ", "").replace("-", "")
    responses = [api.post("/v1/cases", json=body, headers=auth())]
    if responses[0].status_code == 201:
        case_id = responses[0].json()["case_id"]
        responses.append(
            api.post(
                f"/v1/cases/{case_id}/cancel", json={"note": f"{padding}{phone}"}, headers=auth()
            )
        )
        responses.append(api.get(f"/v1/cases/{case_id}/history", headers=auth("supervisor")))
    responses.append(api.post(f"/v1/cases/{phone}/dispute", json={"note": phone}, headers=auth()))
    for r in responses:
        assert r.status_code < 500, r.text
        assert digits not in r.text.replace(" ", "").replace("-", ""), r.text


# --- telephony callbacks ------------------------------------------------------------------


def _dialled(api: Any) -> tuple[str, str]:
    case_id = open_case(api)
    api.post(f"/v1/cases/{case_id}/locate", headers=auth())
    call = api.post(f"/v1/cases/{case_id}/call", headers=auth()).json()
    return case_id, call["call_id"]


def _event(case_id: str, progress: str, at: dt.datetime, **more: Any) -> dict[str, Any]:
    return {"key": call_key(case_id, 1), "progress": progress, "at": at.isoformat()} | more


def test_signed_events_are_applied_once_even_twice_or_out_of_order(
    api: Any, clock: ManualClock
) -> None:
    case_id, _ = _dialled(api)
    # twice each, and ringing after answered (out of order)
    deliveries = ["ringing", "ringing", "answered", "ringing", "answered"]
    results = []
    for i, progress in enumerate(deliveries):
        clock.advance(dt.timedelta(seconds=1))  # a fresh signature each delivery
        raw, headers = signed(_event(case_id, progress, T0, sip_status=180 + i), clock.now())
        r = api.post("/v1/telephony/events", content=raw, headers=headers)
        assert r.status_code == 200, r.text
        results.append(r.json()["result"])
    assert results == ["applied", "applied", "applied", "refused", "applied"]
    history = api.get(f"/v1/cases/{case_id}/history", headers=auth("supervisor")).json()
    progressed = [
        e["payload"]["progress"] for e in history["events"] if e["type"] == "CallProgressed"
    ]
    assert progressed == ["ringing", "answered"]


def test_signatures_are_checked_against_the_engine_clock(api: Any, clock: ManualClock) -> None:
    case_id, _ = _dialled(api)
    body = _event(case_id, "ringing", T0)
    raw, headers = signed(body, clock.now() - dt.timedelta(minutes=6))
    problem(api.post("/v1/telephony/events", content=raw, headers=headers), 401, "SignatureRefused")
    raw, headers = signed(body, clock.now(), secret="another-" + "q" * 40)
    problem(api.post("/v1/telephony/events", content=raw, headers=headers), 401, "SignatureRefused")
    raw, headers = signed(body, clock.now())
    problem(
        api.post("/v1/telephony/events", content=raw + b" ", headers=headers),
        401,
        "SignatureRefused",
    )
    problem(api.post("/v1/telephony/events", content=raw, headers={}), 401, "SignatureRefused")
    assert api.post("/v1/telephony/events", content=raw, headers=headers).status_code == 200
    problem(
        api.post("/v1/telephony/events", content=raw, headers=headers), 409, "SignatureReplayed"
    )
    raw, headers = signed(body | {"extra": 1}, clock.now() + dt.timedelta(seconds=2))
    problem(api.post("/v1/telephony/events", content=raw, headers=headers), 422, "InvalidBody")
    raw, headers = signed(body | {"sip_status": "180"}, clock.now() + dt.timedelta(seconds=3))
    problem(api.post("/v1/telephony/events", content=raw, headers=headers), 422, "InvalidBody")
    raw, headers = signed(body | {"key": "nope"}, clock.now() + dt.timedelta(seconds=4))
    problem(api.post("/v1/telephony/events", content=raw, headers=headers), 422, "InvalidCommand")


def test_without_a_secret_callbacks_are_refused(tmp_path: Path) -> None:
    from movecar_adapters.http import create_app

    engine = sqlite_engine(tmp_path)
    from fastapi.testclient import TestClient

    with TestClient(create_app(engine, tokens=TOKEN_SPEC)) as api:
        problem(api.post("/v1/telephony/events", json={}), 404, "WebhookNotConfigured")
    engine.close()
    with pytest.raises(ConfigError, match="at least 32"):
        create_app(engine, tokens=TOKEN_SPEC, webhook_secret="short")
