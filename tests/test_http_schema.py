"""schemathesis over every operation of /openapi.json, with valid tokens: no 5xx for any
generated request, and every response (status, content type, body) is in the schema."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from http_support import SECRET, TOKENS, client, sqlite_engine

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
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    engine = sqlite_engine(tmp_path_factory.mktemp("schema"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield client(engine).app
    engine.close()


def test_every_operation_answers_within_its_schema(app: Any) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) == 13
    failures: list[str] = []
    for operation in operations:
        strategy = operation.as_strategy()

        @settings(
            max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        @_given(strategy)
        def run(case: Any) -> None:
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
