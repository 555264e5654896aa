"""The HTTP resources on every SQL backend (SQLite file, PostgreSQL, MariaDB): the
lifecycle, idempotent repeats, and concurrent requests through the thread limiter."""

from __future__ import annotations

import concurrent.futures
import warnings
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the http extra")

from http_support import CASE, auth, client, sqlite_engine

from movecar_core.codec import decode
from movecar_core.machine import fold


@pytest.fixture
def api(fresh_url: str, tmp_path: Any) -> Any:
    engine = sqlite_engine(tmp_path, url=fresh_url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with client(engine) as c:
            yield c
    engine.close()


def test_the_lifecycle_and_repeats_on_every_backend(api: Any) -> None:
    key = {"Idempotency-Key": "open-1"}
    first = api.post("/v1/cases", json=CASE, headers=auth() | key)
    assert first.status_code == 201, first.text
    again = api.post("/v1/cases", json=CASE, headers=auth() | key)
    assert (again.status_code, again.content) == (201, first.content)
    case_id = first.json()["case_id"]
    assert api.post(f"/v1/cases/{case_id}/locate", headers=auth()).status_code == 200
    call = api.post(f"/v1/cases/{case_id}/call", headers=auth() | {"Idempotency-Key": "c1"})
    repeat = api.post(f"/v1/cases/{case_id}/call", headers=auth() | {"Idempotency-Key": "c1"})
    assert repeat.content == call.content
    r = api.post(
        f"/v1/cases/{case_id}/outcome",
        headers=auth(),
        json={"call_id": call.json()["call_id"], "outcome": "answered_agreed"},
    )
    assert r.status_code == 200, r.text
    moved = api.post(f"/v1/cases/{case_id}/confirm-moved", json={"note": "已挪"}, headers=auth())
    assert moved.json()["state"] == "moved"
    events = api.get(f"/v1/cases/{case_id}/history", headers=auth("supervisor")).json()["events"]
    assert fold([decode(case_id, e["type"], e["payload"]) for e in events]).state.value == "moved"


def test_concurrent_requests_with_one_key_open_one_case(api: Any) -> None:
    def post(_: int) -> tuple[int, bytes]:
        r = api.post("/v1/cases", json=CASE, headers=auth() | {"Idempotency-Key": "race"})
        return r.status_code, r.content

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = set(pool.map(post, range(16)))
    assert len(answers) == 1 and next(iter(answers))[0] == 201
