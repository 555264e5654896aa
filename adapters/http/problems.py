"""Errors over HTTP: ``application/problem+json`` (RFC 9457), one stable ``type`` per error.

``type`` is ``urn:movecar:error:<Name>``: the library error's class name (the nearest
class of its ancestry that :data:`PROBLEMS` lists, so a new subclass keeps its parent's
type until it gets a row), or one of the HTTP face's own (``Unauthenticated``,
``BodyTooLarge``, ``InvalidBody``, ...). ``detail`` is the error's message, which the
library already keeps free of full phone numbers; it is redacted once more here (it may
quote what was sent), bounded, and left out for an internal error (500), which never
shows a stack trace.
"""

from __future__ import annotations

import json
from typing import Any

from movecar_core.errors import MoveCarError, redact

MEDIA_TYPE = "application/problem+json"
PREFIX = "urn:movecar:error:"
MAX_DETAIL = 800

#: Every problem type: its HTTP status and title. The library's errors first (most
#: specific before their bases; any other MoveCarError is InternalError), then the HTTP
#: face's own.
PROBLEMS: dict[str, tuple[int, str]] = {
    # --- who asks ---------------------------------------------------------------------
    "Unauthenticated": (401, "No valid bearer token"),
    "PermissionDenied": (403, "The role may not do this"),
    "SignatureRefused": (401, "The callback's signature is missing, wrong or stale"),
    "SignatureReplayed": (409, "The callback's signature was accepted before"),
    # --- what was sent ----------------------------------------------------------------
    "InvalidBody": (422, "The body is not what this resource takes"),
    "BodyTooLarge": (413, "The body is larger than the server takes"),
    "InvalidIdempotencyKey": (400, "The Idempotency-Key header is malformed"),
    "IdempotencyKeyReused": (409, "The Idempotency-Key was used for another request"),
    "InvalidPlate": (422, "Not a mainland-China plate"),
    "InvalidPhone": (422, "Not a phone number"),
    "InvalidCommand": (422, "A command's argument is malformed"),
    "InvalidInput": (422, "A value is malformed"),
    "InvalidMonth": (422, "Not a month as YYYY-MM"),
    # --- the case ---------------------------------------------------------------------
    "UnknownCase": (404, "No such case"),
    "CasePurged": (410, "The case was purged under the retention of 二(四)"),
    "CaseClosed": (409, "The case is closed"),
    "IllegalTransition": (409, "The case's state does not allow this"),
    "OwnerNotLocated": (409, "The owner is not located"),
    "CallAttemptsExhausted": (409, "Every call attempt was used"),
    "CallInFlight": (409, "A call is waiting for its outcome"),
    "NoCallInFlight": (409, "No call is waiting for an outcome"),
    "UnknownCall": (409, "Not the call in flight"),
    "CommandRejected": (409, "The case refuses the command"),
    "CallLimitReached": (409, "Too many calls in flight (annex 2 十三(四))"),
    "ConcurrencyConflict": (409, "Another writer changed the case first; try again"),
    "RequesterBlocked": (422, "The requester's number is blocked"),
    "RequestLimitReached": (422, "The requester's number reached its limit"),
    "RequesterRefused": (422, "The requester's number is refused"),
    # --- reports ----------------------------------------------------------------------
    "ReportNotFound": (404, "No report recorded for that month"),
    # --- the deployment ---------------------------------------------------------------
    "NotFound": (404, "No such resource"),
    "MethodNotAllowed": (405, "The resource does not take that method"),
    "WebhookNotConfigured": (404, "No webhook secret is configured"),
    "RegistryUnavailable": (502, "The owner data source cannot be reached"),
    "TelephonyError": (502, "The switch refused or failed"),
    "PortError": (502, "A port behind the engine failed"),
    "StorageError": (503, "The database cannot do it now"),
    "InternalError": (500, "Internal error"),
}


def type_of(name: str) -> str:
    return PREFIX + name


def name_of(exc: BaseException) -> str:
    """The problem type's name for ``exc`` (see the module)."""
    if isinstance(exc, MoveCarError):
        if type(exc).__name__ == "CommandIdReused":
            # Over HTTP a command id is only ever an Idempotency-Key.
            return "IdempotencyKeyReused"
        for cls in type(exc).__mro__:
            if cls.__name__ in PROBLEMS:
                return cls.__name__
    return "InternalError"


def body(name: str, detail: str | None = None, **extra: Any) -> dict[str, Any]:
    status, title = PROBLEMS[name]
    problem: dict[str, Any] = {"type": type_of(name), "title": title, "status": status}
    if detail and status != 500:
        text = " ".join(redact(detail).split())
        problem["detail"] = text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"
    problem.update(extra)
    return problem


def encode(problem: dict[str, Any]) -> bytes:
    return json.dumps(problem, ensure_ascii=False).encode("utf-8")


def schema(names: list[str]) -> dict[str, Any]:
    """The JSON schema of a problem whose type is one of ``names``."""
    return {
        "type": "object",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {"type": "string", "enum": [type_of(n) for n in names]},
            "title": {"type": "string"},
            "status": {"type": "integer", "enum": sorted({PROBLEMS[n][0] for n in names})},
            "detail": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"field": {"type": "string"}, "problem": {"type": "string"}},
                },
            },
        },
    }


def responses(names: list[str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the problem types ``names``, grouped by status."""
    by_status: dict[int, list[str]] = {}
    for name in names:
        by_status.setdefault(PROBLEMS[name][0], []).append(name)
    return {
        status: {
            "description": "; ".join(f"{n}: {PROBLEMS[n][1]}" for n in group),
            "content": {MEDIA_TYPE: {"schema": schema(group)}},
        }
        for status, group in sorted(by_status.items())
    }
