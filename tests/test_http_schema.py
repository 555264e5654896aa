"""schemathesis over every operation of /openapi.json, with valid tokens: no 5xx for any
generated request, and every response (status, content type, body) is in the schema."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from http_support import CASE, SECRET, TOKENS, auth, client, sqlite_engine

schemathesis = pytest.importorskip(
    "schemathesis", reason="schemathesis: pip install 'movecar[all]'"
)

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, list[str]]]:
    """The app, and cases of its store in several states (opened, owner located, called),
    so that generated requests reach real cases too, not only 404s."""
    engine = sqlite_engine(tmp_path_factory.mktemp("schema"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        http = client(engine)
        cases: list[str] = []
        for steps in ([], ["locate"], ["locate", "call"]):
            opened = http.post("/v1/cases", json=CASE, headers=auth())
            assert opened.status_code == 201, opened.text
            case_id = opened.json()["case_id"]
            for step in steps:
                done = http.post(f"/v1/cases/{case_id}/{step}", json={}, headers=auth())
                assert done.status_code == 200, done.text
            cases.append(case_id)
        yield http.app, cases
    engine.close()


def test_every_operation_answers_within_its_schema(app: tuple[Any, list[str]]) -> None:
    asgi, cases = app
    schema = schemathesis.openapi.from_asgi("/openapi.json", asgi)
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) == 14
    failures: list[str] = []
    for operation in operations:
        strategy = operation.as_strategy()

        @settings(
            max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        @_given(strategy)
        def run(case: Any) -> None:
            path = case.path_parameters or {}
            if "case_id" in path and isinstance(path["case_id"], str):
                # Two generated ids in three become a real case's (the id's length picks).
                pick = len(path["case_id"]) % 3
                if pick < 2:
                    path["case_id"] = cases[(pick + len(case.path)) % len(cases)]
            role = "command_centre" if case.method == "GET" and "history" in case.path else "agent"
            case.headers = dict(case.headers or {}) | {"Authorization": f"Bearer {TOKENS[role]}"}
            case.call_and_validate(
                checks=[
                    not_a_server_error,
                    status_code_conformance,
                    content_type_conformance,
                    response_schema_conformance,
                ],
            )

        try:
            run()
        except Exception as exc:  # every operation is tried; all failures reported at once
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}"[:2000])
    assert not failures, "\n\n".join(failures)
    assert SECRET


def _given(strategy: Any) -> Any:
    from hypothesis import given

    return given(case=strategy)
