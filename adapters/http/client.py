"""A Python client of ``movecar serve``: one actor's commands and reads over HTTP.

The reference integration for hosts that run the engine as a service beside them (and
what the test kit's :class:`~movecar_core.testing.service_machine.CaseServiceMachine` and
the HTTP benchmark drive): :class:`MoveCarClient` satisfies
:class:`~movecar_core.commands.CaseCommands` and
:class:`~movecar_core.testing.service_machine.CaseReader`, so code written against a
:class:`~movecar_core.desk.Desk` runs against the service unchanged.

* ``command_id`` is sent as the ``Idempotency-Key``: a retry after a lost answer returns
  the first result (docs/http.md).
* A problem answer (``application/problem+json``) is raised as a typed error of the
  library's families, keeping its ``type``: bad input (400, 413, 422) as
  :class:`ServiceInputRefused` (an ``InvalidInput``), a refusal about a case (404, 409,
  410) as :class:`ServiceCaseRefused` (a ``CaseError``), a missing token or role (401,
  403) as :class:`ServiceAccessRefused`, and the service or its ports failing (5xx, no
  connection, a timeout, an answer that is not the API's) as :class:`ServiceUnavailable`
  (a ``PortError``). Messages keep the service's detail, which it already masks; a token
  never appears in one.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Mapping
from typing import Any

import httpx

from movecar_core.app import OutboundCall
from movecar_core.case import (
    CallOutcome,
    CaseState,
    EscalationReason,
    Event,
    UnresolvedReason,
)
from movecar_core.codec import decode
from movecar_core.errors import CaseError, InvalidInput, MoveCarError, PortError, excerpt
from movecar_core.views import CaseView

__all__ = [
    "MoveCarClient",
    "ServiceAccessRefused",
    "ServiceCaseRefused",
    "ServiceInputRefused",
    "ServiceProblem",
    "ServiceUnavailable",
]

#: Prefix of every problem type the service answers (movecar_adapters.http.problems).
_PREFIX = "urn:movecar:error:"
#: Longest answer read: the service's own bodies are a few kilobytes.
MAX_ANSWER = 1 << 20


class ServiceProblem(MoveCarError):
    """``movecar serve`` answered a problem (or could not be reached): ``problem`` is the
    type's name (``CaseClosed``, ``Unauthenticated``...), ``status`` the HTTP status."""

    def __init__(self, problem: str, status: int, detail: str) -> None:
        self.problem = problem
        self.status = status
        self.detail = detail
        super().__init__(f"{problem} ({status}): {detail}" if detail else f"{problem} ({status})")


class ServiceInputRefused(ServiceProblem, InvalidInput):
    """The service refused a value as malformed (400, 413, 422)."""


class ServiceCaseRefused(ServiceProblem, CaseError):
    """The service refused the command because of its case (404, 409, 410)."""


class ServiceAccessRefused(ServiceProblem):
    """No valid token (401), or the token's role may not do it (403)."""


class ServiceUnavailable(ServiceProblem, PortError):
    """The service or a port behind it failed (5xx), or it could not be reached, or it
    answered something that is not the API's."""


def _problem_of(answer: httpx.Response) -> ServiceProblem:
    status = answer.status_code
    name, detail = f"HTTP{status}", ""
    if answer.headers.get("content-type", "").startswith("application/problem+json"):
        try:
            body = answer.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            kind = body.get("type")
            if isinstance(kind, str) and kind.startswith(_PREFIX):
                name = kind[len(_PREFIX) :][:60]
            if isinstance(body.get("detail"), str):
                detail = body["detail"]
    if status in (400, 413, 422):
        return ServiceInputRefused(name, status, detail)
    if status in (404, 409, 410):
        return ServiceCaseRefused(name, status, detail)
    if status in (401, 403):
        return ServiceAccessRefused(name, status, detail)
    return ServiceUnavailable(name, status, detail)


def _invalid(what: str) -> ServiceUnavailable:
    """An answer that is not the API's (a proxy's page, another service, a bug)."""
    return ServiceUnavailable("InvalidAnswer", 200, what)


def _time(value: Any) -> dt.datetime:
    try:
        at = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise _invalid(f"not a time: {excerpt(value)}") from None
    if at.tzinfo is None:
        raise _invalid(f"a time without offset: {excerpt(value)}")
    return at


def _optional(kind: Any, value: Any) -> Any:
    return None if value is None else kind(value)


def case_view(body: Mapping[str, Any]) -> CaseView:
    """A :class:`~movecar_core.views.CaseView` from the service's JSON of a case."""
    try:
        return CaseView(
            case_id=str(body["case_id"]),
            state=CaseState(body["state"]),
            version=int(body["version"]),
            plate=str(body["plate"]),
            location=str(body["location"]),
            opened_at=_time(body["opened_at"]),
            closed_at=None if body["closed_at"] is None else _time(body["closed_at"]),
            requester_phone_masked=str(body["requester_phone_masked"]),
            owner_located=bool(body["owner_located"]),
            owner_phone_masked=_optional(str, body["owner_phone_masked"]),
            attempts=int(body["attempts"]),
            call_in_flight=_optional(str, body["call_in_flight"]),
            last_outcome=_optional(CallOutcome, body["last_outcome"]),
            escalation_reason=_optional(EscalationReason, body["escalation_reason"]),
            unresolved_reason=_optional(UnresolvedReason, body["unresolved_reason"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise _invalid(f"not a case: {excerpt(exc)}") from None


class MoveCarClient:
    """One actor's client of ``movecar serve`` at ``base_url`` (``http://127.0.0.1:8114``),
    as the bearer ``token`` names it (see the module).

    ``transport``: an httpx transport (an ASGI app's, in tests); ``timeout`` in seconds.
    A context manager; :meth:`close` releases the connections.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not isinstance(token, str) or not token.strip():
            raise InvalidInput("token: must be a non-empty string")
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )

    def __repr__(self) -> str:  # never the token
        return f"MoveCarClient({str(self._http.base_url)!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MoveCarClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport ----------------------------------------------------------------------

    def _send(
        self, method: str, path: str, body: Mapping[str, Any] | None, command_id: str | None
    ) -> Any:
        headers = {} if command_id is None else {"Idempotency-Key": command_id}
        try:
            answer = self._http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable("Unreachable", 0, type(exc).__name__) from None
        if len(answer.content) > MAX_ANSWER:
            raise ServiceUnavailable("InvalidAnswer", answer.status_code, "answer too large")
        if answer.status_code >= 300:
            raise _problem_of(answer)
        try:
            return answer.json()
        except ValueError:
            raise ServiceUnavailable("InvalidAnswer", answer.status_code, "not JSON") from None

    def _case(self, path: str, body: Mapping[str, Any], command_id: str | None) -> CaseView:
        answer = self._send("POST", path, body, command_id)
        return case_view(answer if isinstance(answer, dict) else {})

    # --- commands (CaseCommands) --------------------------------------------------------

    def open_case(
        self, *, plate: str, location: str, requester_phone: str, command_id: str | None = None
    ) -> str:
        body = {"plate": plate, "location": location, "requester_phone": requester_phone}
        return self._case("/v1/cases", body, command_id).case_id

    def locate_owner(self, case_id: str, *, command_id: str | None = None) -> CaseView:
        return self._case(f"/v1/cases/{_id(case_id)}/locate", {}, command_id)

    def call_owner(self, case_id: str, *, command_id: str | None = None) -> OutboundCall:
        answer = self._send("POST", f"/v1/cases/{_id(case_id)}/call", {}, command_id)
        try:
            return OutboundCall(
                case_id=str(answer["case_id"]),
                call_id=str(answer["call_id"]),
                attempt=int(answer["attempt"]),
                caller_id=str(answer["caller_id"]),
                greeting=str(answer["greeting"]),
                greeting_version=str(answer["greeting_version"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _invalid(f"not a call: {excerpt(exc)}") from None

    def record_call_outcome(
        self,
        case_id: str,
        call_id: str,
        outcome: CallOutcome | str,
        *,
        command_id: str | None = None,
    ) -> CaseView:
        body = {"call_id": call_id, "outcome": _value(outcome)}
        return self._case(f"/v1/cases/{_id(case_id)}/outcome", body, command_id)

    def confirm_moved(
        self, case_id: str, *, note: str | None = None, command_id: str | None = None
    ) -> CaseView:
        return self._case(f"/v1/cases/{_id(case_id)}/confirm-moved", {"note": note}, command_id)

    def dispute(self, case_id: str, *, note: str, command_id: str | None = None) -> CaseView:
        return self._case(f"/v1/cases/{_id(case_id)}/dispute", {"note": note}, command_id)

    def cancel(self, case_id: str, *, note: str, command_id: str | None = None) -> CaseView:
        return self._case(f"/v1/cases/{_id(case_id)}/cancel", {"note": note}, command_id)

    def escalate(
        self,
        case_id: str,
        reason: EscalationReason | str,
        note: str | None = None,
        *,
        command_id: str | None = None,
    ) -> CaseView:
        body = {"reason": _value(reason), "note": note}
        return self._case(f"/v1/cases/{_id(case_id)}/escalate", body, command_id)

    # --- reads (CaseReader) -------------------------------------------------------------

    def case(self, case_id: str) -> CaseView:
        answer = self._send("GET", f"/v1/cases/{_id(case_id)}", None, None)
        return case_view(answer if isinstance(answer, dict) else {})

    def history(self, case_id: str) -> tuple[Event, ...]:
        """The case's events as the service shows them to this actor (numbers masked)."""
        answer = self._send("GET", f"/v1/cases/{_id(case_id)}/history", None, None)
        try:
            return tuple(
                decode(answer["case_id"], event["type"], event["payload"])
                for event in answer["events"]
            )
        except (KeyError, TypeError) as exc:
            raise _invalid(f"not a history: {excerpt(exc)}") from None
        except MoveCarError as exc:
            raise _invalid(str(exc)) from None

    def report(self, month: str) -> dict[str, Any]:
        """The month's recorded volume report (``YYYY-MM``), as the service answers it."""
        answer = self._send("GET", f"/v1/reports/{_id(month)}", None, None)
        if not isinstance(answer, dict):
            raise _invalid("not a report")
        return answer


def _id(value: object) -> str:
    """A path segment: what the service takes as an id, never a path of its own (a slash,
    a query, and the dots of ``.``/``..``, which a URL would resolve, all escaped)."""
    if not isinstance(value, str) or not value or len(value) > 200:
        raise InvalidInput(f"id {excerpt(value)}: must be a non-empty string of <= 200 chars")
    return urllib.parse.quote(value, safe="").replace(".", "%2E")


def _value(choice: object) -> object:
    return choice.value if isinstance(choice, CallOutcome | EscalationReason) else choice
