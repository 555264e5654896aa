"""The ASGI application of ``movecar serve``: the engine over HTTP, one desk per request.

Every request names its actor with a bearer token (:mod:`movecar_adapters.http.auth`);
the request runs on a :class:`~movecar_core.desk.Desk` for that actor, so the one
permission table decides, refusals are logged as ``denied:<action>``, and what is shown is
masked. Telephony callbacks are signed instead (:mod:`movecar_adapters.http.signature`).

How requests reach the engine: the engine is synchronous, so each request's engine work
runs in a worker thread, at most ``concurrency`` at once (an anyio capacity limiter) while
the event loop keeps reading and answering. The SQL stores are safe to share between
threads (each call takes its own connection from the pool, and the version check of an
append decides races), so they get several threads; the in-memory store and any store the
app does not know are not, so they get one: their requests run one after another.
"""

import datetime as dt
import enum
import logging
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import anyio
import anyio.to_thread
import attrs
from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from movecar_adapters.http import problems
from movecar_adapters.http.auth import TokenTable, parse_tokens
from movecar_adapters.http.signature import (
    HEADER,
    SignatureRefused,
    SignatureReplayed,
    Verifier,
    check_secret,
)
from movecar_adapters.http.status import HEADERS as STATUS_HEADERS
from movecar_adapters.http.status import StatusSnapshot, render_status, status_snapshot
from movecar_core.app import MoveCar, OutboundCall
from movecar_core.calls import CallEvent, CallEventRefused
from movecar_core.case import (
    CallOutcome,
    CallOutcomeRecorded,
    CallProgress,
    EscalationReason,
    TransferTo110Failed,
)
from movecar_core.codec import encode
from movecar_core.desk import Desk
from movecar_core.errors import InvalidCommand, MoveCarError, TelephonyError, redact
from movecar_core.machine import fold
from movecar_core.memory import InMemoryCaseStore
from movecar_core.roles import Action, Actor
from movecar_core.settlement import ServiceMonth
from movecar_core.views import CaseView

log = logging.getLogger("movecar.http")

#: Largest request body taken (16 KiB): every resource's body is a few hundred bytes.
MAX_BODY = 16 * 1024
#: An Idempotency-Key: 1 to 128 visible ASCII characters.
IDEMPOTENCY_KEY = re.compile(r"[!-~]{1,128}")
API_VERSION = "1"
#: The access log's actor for a request without a valid token.
ANONYMOUS = "anonymous"

T = TypeVar("T")


class ApiProblem(Exception):
    """A problem the HTTP face itself answers (see :data:`problems.PROBLEMS`)."""

    def __init__(self, name: str, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or name)
        self.name = name
        self.detail = detail
        self.extra = extra


def problem_response(name: str, detail: str | None = None, **extra: Any) -> Response:
    content = problems.body(name, detail, **extra)
    return Response(
        problems.encode(content), status_code=content["status"], media_type=problems.MEDIA_TYPE
    )


def error_response(exc: BaseException) -> Response:
    """The problem answering a library error (or anything else: 500, no detail)."""
    name = problems.name_of(exc)
    if name == "InternalError":
        log.error("internal error (%s): %s", type(exc).__name__, redact(str(exc))[:300])
    return problem_response(name, str(exc))


# --- JSON shapes -------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, ServiceMonth):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if attrs.has(type(value)):
        return {f.name: _plain(getattr(value, f.name)) for f in attrs.fields(type(value))}
    return value


def case_json(view: CaseView) -> dict[str, Any]:
    """A case as every resource shows it (:class:`~movecar_core.views.CaseView`)."""
    shown: dict[str, Any] = _plain(view)
    # The view masks its phone fields; free text (the location) may hold a number too.
    shown["location"] = redact(shown["location"])
    return shown


#: Payload fields of an event shown as they are (ids, times, digests); every other text
#: is scrubbed of phone numbers, the Idempotency-Key stored as ``command_id`` included.
_AS_STORED = frozenset({"at", "case_id", "call_id", "command_fingerprint"})


def event_json(event: Any) -> dict[str, Any]:
    name, payload = encode(event)
    for field, value in payload.items():
        if isinstance(value, str) and field not in _AS_STORED:
            payload[field] = redact(value)
    return {"type": name, "payload": payload}


class Strict(BaseModel):
    # Unknown fields are refused, and no value is coerced ("123" is not 123).
    model_config = ConfigDict(extra="forbid", strict=True)


class OpenCase(Strict):
    plate: Annotated[str, Field(max_length=40)]
    location: Annotated[str, Field(max_length=500)]
    requester_phone: Annotated[str, Field(max_length=40)]


class Empty(Strict):
    pass


class Outcome(Strict):
    call_id: Annotated[str, Field(max_length=64)]
    outcome: Literal[tuple(o.value for o in CallOutcome)]  # type: ignore[valid-type]


class Note(Strict):
    note: Annotated[str, Field(max_length=2000)]


class OptionalNote(Strict):
    note: Annotated[str | None, Field(max_length=2000)] = None


class Escalation(Strict):
    reason: Literal[tuple(r.value for r in EscalationReason)]  # type: ignore[valid-type]
    note: Annotated[str | None, Field(max_length=2000)] = None


class TelephonyEvent(Strict):
    """One report of the switch about an outbound call (``CallEvent``)."""

    key: Annotated[str, Field(max_length=400)]
    progress: Literal[tuple(p.value for p in CallProgress)]  # type: ignore[valid-type]
    at: Annotated[str, Field(max_length=40)]
    sip_status: int | None = None
    detail: Annotated[str, Field(max_length=200)] = ""


CASE_VIEW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [f.name for f in attrs.fields(CaseView)],
    "properties": {
        "case_id": {"type": "string"},
        "state": {"type": "string"},
        "version": {"type": "integer"},
        "plate": {"type": "string"},
        "location": {"type": "string"},
        "opened_at": {"type": "string", "format": "date-time"},
        "closed_at": {"type": ["string", "null"], "format": "date-time"},
        "requester_phone_masked": {"type": "string"},
        "owner_located": {"type": "boolean"},
        "owner_phone_masked": {"type": ["string", "null"]},
        "attempts": {"type": "integer"},
        "call_in_flight": {"type": ["string", "null"]},
        "last_outcome": {"type": ["string", "null"]},
        "escalation_reason": {"type": ["string", "null"]},
        "unresolved_reason": {"type": ["string", "null"]},
    },
}
CALL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [f.name for f in attrs.fields(OutboundCall)],
    "properties": {
        "case_id": {"type": "string"},
        "call_id": {"type": "string"},
        "attempt": {"type": "integer"},
        "caller_id": {"type": "string"},
        "greeting": {"type": "string"},
        "greeting_version": {"type": "string"},
    },
}
HISTORY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["case_id", "events"],
    "properties": {
        "case_id": {"type": "string"},
        "events": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "payload"],
                "properties": {"type": {"type": "string"}, "payload": {"type": "object"}},
            },
        },
    },
}
EVENT_RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["result", "case_id"],
    "properties": {
        "result": {"type": "string", "enum": ["applied", "refused"]},
        "case_id": {"type": "string"},
        "state": {"type": "string"},
        "detail": {"type": "string"},
    },
}


def _ok(status: int, schema: dict[str, Any], what: str) -> dict[int | str, dict[str, Any]]:
    return {status: {"description": what, "content": {"application/json": {"schema": schema}}}}


#: Problems every authenticated resource can answer.
_COMMON = ["Unauthenticated", "PermissionDenied", "InternalError", "StorageError"]
_BODY = ["InvalidBody", "BodyTooLarge"]
_KEY = ["InvalidIdempotencyKey", "IdempotencyKeyReused"]
_ON_CASE = ["UnknownCase", "CasePurged", "InvalidInput", "ConcurrencyConflict"]
_REFUSED = ["CaseClosed", "IllegalTransition", "CommandRejected"]


def _doc(ok: dict[int | str, dict[str, Any]], *names: str) -> dict[int | str, dict[str, Any]]:
    merged = dict(ok)
    merged.update(problems.responses(sorted(set(names))))
    return merged


# --- the body limit and the last line of defence (plain ASGI) -----------------------------


class Guard:
    """Refuses bodies over ``max_body`` bytes (413, before the app sees any of it) and
    answers any exception that escaped the app with a 500 problem, no detail."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            declared = dict(scope.get("headers") or []).get(b"content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
                await self._reply(scope, receive, watch, "BodyTooLarge")
                return
            chunks: list[bytes] = []
            size = 0
            more = True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    await self._reply(scope, receive, watch, "BodyTooLarge")
                    return
                chunks.append(chunk)
                more = message.get("more_body", False)
            whole = b"".join(chunks)
            delivered = False

            async def replay() -> Message:
                nonlocal delivered
                if not delivered:
                    delivered = True
                    return {"type": "http.request", "body": whole, "more_body": False}
                return await receive()

            await self.app(scope, replay, watch)
        except Exception as exc:
            log.error("internal error (%s): %s", type(exc).__name__, redact(str(exc))[:300])
            if not started:
                await problem_response("InternalError")(scope, receive, send)

    async def _reply(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        detail = f"larger than {self.max_body} bytes" if name == "BodyTooLarge" else None
        response = problem_response(name, detail)
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


# --- the application ---------------------------------------------------------------------


def _thread_safe(engine: MoveCar) -> bool:
    try:
        from movecar_adapters.sql.store import SqlStore
    except ModuleNotFoundError:  # pragma: no cover - without the [sql] extra
        return False
    return isinstance(engine.store, SqlStore) and not isinstance(engine.store, InMemoryCaseStore)


class Context:
    """What every route of one app shares: the engine, the tokens, the limiter."""

    def __init__(
        self,
        engine: MoveCar,
        tokens: TokenTable,
        verifier: Verifier | None,
        limiter: anyio.CapacityLimiter,
    ) -> None:
        self.engine = engine
        self.tokens = tokens
        self.verifier = verifier
        self.limiter = limiter

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn`` in a worker thread, at most ``concurrency`` at once (see the module)."""
        return await anyio.to_thread.run_sync(fn, limiter=self.limiter)

    def desk(self, who: Actor) -> Desk:
        return Desk(self.engine, who)

    def unauthenticated(self, request: Request, why: str) -> ApiProblem:
        # 七(三): attempts are records too; never the token, the path bounded and masked.
        where = redact(f"{request.method} {request.url.path}")[:200]
        log.warning("401 %s: %s", where, why)
        self.engine.access_log.log_access(ANONYMOUS, "denied:authenticate", None, where)
        return ApiProblem("Unauthenticated", why)


def _context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


async def _actor(
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Actor:
    context = _context(request)
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise await context.run(lambda: context.unauthenticated(request, "no bearer token"))
    found = context.tokens.actor_of(token.strip())
    if found is None:
        raise await context.run(lambda: context.unauthenticated(request, "unknown bearer token"))
    return found


#: The actor of a request, from its bearer token.
Who = Annotated[Actor, Depends(_actor)]
#: The Idempotency-Key header (checked by :func:`key_of`).
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Becomes the command id: the same key and body return the first "
        "response; another body is 409 IdempotencyKeyReused.",
    ),
]


def key_of(value: str | None) -> str | None:
    if value is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(value):
        raise ApiProblem("InvalidIdempotencyKey", "must be 1 to 128 visible ASCII characters")
    return value


def create_app(
    engine: MoveCar,
    *,
    tokens: TokenTable | str,
    webhook_secret: str | None = None,
    max_body: int = MAX_BODY,
    concurrency: int | None = None,
) -> Guard:
    """The ASGI application serving ``engine`` (see docs/http.md).

    ``tokens``: a :class:`~movecar_adapters.http.auth.TokenTable` or its text
    (``ROLE=TOKEN`` / ``ROLE:NAME=TOKEN`` entries). ``webhook_secret``: the telephony
    gateway's shared secret (None: ``POST /v1/telephony/events`` answers
    ``WebhookNotConfigured``). ``max_body``: the largest body taken, in bytes.
    ``concurrency``: requests run on the engine at once (default 8 on a SQL store, 1 on
    any other, see the module). The engine stays the caller's to close.

    Returns the ASGI application (its FastAPI app is ``.app``).
    """
    table = tokens if isinstance(tokens, TokenTable) else parse_tokens(tokens, "tokens")
    secret = check_secret(webhook_secret, "webhook_secret")
    verifier = Verifier(secret, engine.clock) if secret is not None else None
    if concurrency is None:
        concurrency = 8 if _thread_safe(engine) else 1
    if type(concurrency) is not int or not 1 <= concurrency <= 64:
        raise InvalidCommand("concurrency", concurrency, "must be 1 to 64")
    if type(max_body) is not int or not 256 <= max_body <= 1 << 24:
        raise InvalidCommand("max_body", max_body, "must be 256 bytes to 16 MiB")
    context = Context(engine, table, verifier, anyio.CapacityLimiter(concurrency))
    app = FastAPI(
        title="movecar",
        version=API_VERSION,
        description="The 114 move-car engine over HTTP (docs/http.md).",
        docs_url=None,
        redoc_url=None,
        # No 307 to the path without its trailing slash: an id ending in an (escaped)
        # slash is no resource, answered as a problem like every other.
        redirect_slashes=False,
    )
    app.state.context = context
    _handlers(app)
    _health(app, context)
    _case_routes(app, context)
    _command_routes(app, context)
    _report_routes(app, context)
    _telephony_route(app, context)
    _status_route(app, context)
    _finish_schema(app, TelephonyEvent)
    return Guard(app, max_body)


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> Response:
        response = problem_response(exc.name, exc.detail, **exc.extra)
        if exc.name == "Unauthenticated":
            response.headers["WWW-Authenticate"] = 'Bearer realm="movecar"'
        return response

    @app.exception_handler(MoveCarError)
    async def _library_error(request: Request, exc: MoveCarError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ())),
                # pydantic's message, never the value given (it may be a phone number)
                "problem": str(e.get("msg", "invalid"))[:200],
            }
            for e in exc.errors()[:20]
        ]
        where = "header" if any(e["field"].startswith("header") for e in errors) else "body"
        return problem_response("InvalidBody", f"the {where} is not valid", errors=errors)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            return problem_response("MethodNotAllowed")
        if exc.status_code == 404:
            return problem_response("NotFound")
        return problem_response("InternalError")


def _health(app: FastAPI, context: Context) -> None:
    up = {"type": "object", "properties": {"status": {"type": "string"}}}

    @app.get(
        "/healthz",
        responses=_doc(_ok(200, up, "up"), "StorageError", "InternalError"),
        tags=["health"],
    )
    async def healthz() -> Response:
        """The store answers (no token needed)."""

        def probe() -> None:
            # Any read that reaches the database: a case id that is never used.
            context.engine.store.load("0" * 32)

        await context.run(probe)
        return JSONResponse({"status": "ok"})


def _status_route(app: FastAPI, context: Context) -> None:
    page: dict[int | str, dict[str, Any]] = {
        200: {"description": "the status page", "content": {"text/html": {}}}
    }

    @app.get(
        "/",
        responses=_doc(page, *_COMMON),
        tags=["status"],
        response_class=HTMLResponse,
    )
    async def status(who: Who) -> Response:
        """The status page (server-rendered HTML, numbers and plates masked): open cases
        by state, today's volume, the outbox backlog, the last checkpoint. Behind the
        bearer token like every resource, for the roles that read cases (it lists them)."""

        def snapshot() -> StatusSnapshot:
            context.desk(who).check(Action.READ_CASE)
            return status_snapshot(context.engine)

        # Through the limiter: the in-memory store must not be read while a command runs.
        taken = await context.run(snapshot)
        return HTMLResponse(render_status(taken), headers=STATUS_HEADERS)


def _first_view(engine: MoveCar, case_id: str, command_id: str | None) -> CaseView:
    """The case as the open_case command left it: the same on every repeat."""
    events = engine.history(case_id)
    if command_id is None:
        upto = 1
    else:
        upto = max(i for i, e in enumerate(events) if e.command_id == command_id) + 1
    return CaseView.of(fold(events[:upto]))


_OPEN = [
    *_COMMON, *_BODY, *_KEY, "InvalidPlate", "InvalidPhone", "InvalidCommand", "InvalidInput",
    "RequesterBlocked", "RequestLimitReached", "RequesterRefused", "CasePurged",
    "ConcurrencyConflict",
]  # fmt: skip


def _case_routes(app: FastAPI, context: Context) -> None:
    opened = _ok(201, CASE_VIEW_SCHEMA, "the case opened (Location: its URL)")

    @app.post("/v1/cases", status_code=201, responses=_doc(opened, *_OPEN), tags=["cases"])
    async def open_case(
        body: OpenCase, who: Who, idempotency_key: IdempotencyKey = None
    ) -> Response:
        """呼入: a requester's report becomes a case (agent, supervisor)."""
        cid = key_of(idempotency_key)

        def do() -> CaseView:
            case_id = context.desk(who).open_case(
                plate=body.plate,
                location=body.location,
                requester_phone=body.requester_phone,
                command_id=cid,
            )
            return _first_view(context.engine, case_id, cid)

        view = await context.run(do)
        return JSONResponse(
            case_json(view), status_code=201, headers={"Location": f"/v1/cases/{view.case_id}"}
        )

    shown = _ok(200, CASE_VIEW_SCHEMA, "the case, numbers masked")

    @app.get("/v1/cases/{case_id}", responses=_doc(shown, *_COMMON, *_ON_CASE), tags=["cases"])
    async def get_case(case_id: str, who: Who) -> Response:
        """The case, phone numbers masked (agent, supervisor, command_centre)."""
        return JSONResponse(case_json(await context.run(lambda: context.desk(who).case(case_id))))

    record = _ok(200, HISTORY_SCHEMA, "every event, numbers masked")

    @app.get(
        "/v1/cases/{case_id}/history",
        responses=_doc(record, *_COMMON, *_ON_CASE),
        tags=["cases"],
    )
    async def get_history(case_id: str, who: Who) -> Response:
        """案件记录: every event of the case, oldest first, every phone number masked
        (supervisor, command_centre; logged). Each event is ``{"type", "payload"}`` as
        ``movecar_core.codec.encode`` writes it, so ``codec.decode`` and ``fold`` read it."""

        def do() -> list[dict[str, Any]]:
            return [event_json(event) for event in context.desk(who).history(case_id)]

        return JSONResponse({"case_id": case_id, "events": await context.run(do)})


#: A command on a case: (the desk, the case id, the body, the command id) -> the answer.
Command = Callable[[Desk, str, Any, str | None], Response]


def _command(
    app: FastAPI,
    context: Context,
    *,
    path: str,
    model: type[Strict] | None,
    ok: dict[int | str, dict[str, Any]],
    extra: list[str],
    fn: Command,
) -> None:
    """Register ``POST /v1/cases/{case_id}/<path>`` running ``fn`` on the actor's desk."""
    responses = _doc(ok, *_COMMON, *_BODY, *_KEY, *_ON_CASE, *_REFUSED, *extra)
    endpoint: Callable[..., Any]
    if model is None:

        async def endpoint_empty(
            case_id: str,
            who: Who,
            idempotency_key: IdempotencyKey = None,
            body: Empty | None = None,
        ) -> Response:
            cid = key_of(idempotency_key)
            return await context.run(lambda: fn(context.desk(who), case_id, body, cid))

        endpoint = endpoint_empty
    else:
        chosen = model

        async def endpoint_body(
            case_id: str,
            who: Who,
            body: chosen,  # type: ignore[valid-type]
            idempotency_key: IdempotencyKey = None,
        ) -> Response:
            cid = key_of(idempotency_key)
            return await context.run(lambda: fn(context.desk(who), case_id, body, cid))

        endpoint = endpoint_body
    endpoint.__doc__ = fn.__doc__
    app.post(f"/v1/cases/{{case_id}}/{path}", responses=responses, tags=["cases"], name=path)(
        endpoint
    )


def _locate(d: Desk, case_id: str, body: Any, cid: str | None) -> Response:
    """四: look the owner up in the traffic police's data (agent)."""
    return JSONResponse(case_json(d.locate_owner(case_id, command_id=cid)))


def _call(d: Desk, case_id: str, body: Any, cid: str | None) -> Response:
    """二(六) 外呼: call the owner from the contract's caller ID (agent)."""
    call = d.call_owner(case_id, command_id=cid)
    if cid is not None and _switch_failed(d.engine, case_id, f"{call.call_id}:dial"):
        # A repeat of a keyed call whose dial the switch refused: the first answer was
        # that refusal (the engine recorded the attempt as failed), so this one is too.
        raise TelephonyError(
            f"case {case_id}: the switch refused call {call.attempt}; it is recorded as failed"
        )
    return JSONResponse(_plain(call))


def _switch_failed(engine: MoveCar, case_id: str, command_id: str) -> bool:
    """Whether the switch failed the command that wrote ``command_id``'s events: the
    dial's ``failed`` outcome (``<call id>:dial``) or a transfer that failed."""
    return any(
        isinstance(event, CallOutcomeRecorded | TransferTo110Failed)
        and event.command_id == command_id
        for event in engine.history(case_id)
    )


def _outcome(d: Desk, case_id: str, body: Outcome, cid: str | None) -> Response:
    """What became of the call in flight (agent, supervisor)."""
    view = d.record_call_outcome(case_id, body.call_id, body.outcome, command_id=cid)
    return JSONResponse(case_json(view))


def _moved(d: Desk, case_id: str, body: OptionalNote, cid: str | None) -> Response:
    """The car was moved: the case is done (agent, supervisor)."""
    return JSONResponse(case_json(d.confirm_moved(case_id, note=body.note, command_id=cid)))


def _dispute(d: Desk, case_id: str, body: Note, cid: str | None) -> Response:
    """The owner disputes the request (agent, supervisor)."""
    return JSONResponse(case_json(d.dispute(case_id, note=body.note, command_id=cid)))


def _cancel(d: Desk, case_id: str, body: Note, cid: str | None) -> Response:
    """The requester withdrew (agent, supervisor)."""
    return JSONResponse(case_json(d.cancel(case_id, note=body.note, command_id=cid)))


def _escalate(d: Desk, case_id: str, body: Escalation, cid: str | None) -> Response:
    """二(五): transfer the case to the 110 command centre (agent, supervisor)."""
    view = d.escalate(case_id, body.reason, body.note, command_id=cid)
    if cid is not None and _switch_failed(d.engine, case_id, cid):
        # A repeat of a keyed escalation whose transfer failed: answered as the first was.
        raise TelephonyError(
            f"case {case_id}: the transfer to 110 failed; escalate again with a new key"
        )
    return JSONResponse(case_json(view))


def _command_routes(app: FastAPI, context: Context) -> None:
    viewed = _ok(200, CASE_VIEW_SCHEMA, "the case after the command (a repeat: its first run)")
    called = _ok(200, CALL_SCHEMA, "the outbound call placed")
    ports = ["TelephonyError", "PortError"]
    calling = ["OwnerNotLocated", "CallAttemptsExhausted", "CallInFlight", "CallLimitReached"]
    for path, model, ok, extra, fn in [
        ("locate", None, viewed, ["RegistryUnavailable", "PortError"], _locate),
        ("call", None, called, calling + ports, _call),
        ("outcome", Outcome, viewed, ["NoCallInFlight", "UnknownCall", "InvalidCommand"], _outcome),
        # The machine's guard no_call_in_flight: first the outcome, then these.
        ("confirm-moved", OptionalNote, viewed, ["InvalidCommand", "CallInFlight"], _moved),
        ("dispute", Note, viewed, ["InvalidCommand", "CallInFlight"], _dispute),
        ("cancel", Note, viewed, ["InvalidCommand"], _cancel),
        ("escalate", Escalation, viewed, ["InvalidCommand", *ports], _escalate),
    ]:
        _command(app, context, path=path, model=model, ok=ok, extra=extra, fn=fn)


def _report_routes(app: FastAPI, context: Context) -> None:
    report = _ok(200, {"type": "object"}, "the month's recorded volume report (话务量报表)")

    @app.get(
        "/v1/reports/{month}",
        responses=_doc(report, *_COMMON, "InvalidMonth", "ReportNotFound"),
        tags=["reports"],
    )
    async def get_report(month: str, who: Who) -> Response:
        """三: the monthly volume report as recorded when the month was settled
        (supervisor, command_centre)."""
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}", month):
            raise ApiProblem("InvalidMonth", "expected YYYY-MM")
        try:
            which = ServiceMonth.parse(month)
        except MoveCarError as exc:
            raise ApiProblem("InvalidMonth", str(exc)) from None
        found = await context.run(lambda: context.desk(who).report(which))
        if found is None:
            raise ApiProblem("ReportNotFound", f"{which}: not settled yet")
        return JSONResponse(_plain(found))


_EVENTS = [
    *_BODY, "SignatureRefused", "SignatureReplayed", "WebhookNotConfigured", "UnknownCase",
    "CasePurged", "InvalidCommand", "InvalidInput", "CaseClosed", "IllegalTransition",
    "CommandRejected", "ConcurrencyConflict", "IdempotencyKeyReused", "InternalError",
    "StorageError",
]  # fmt: skip
_SIGNATURE_PARAMETER = {
    "name": HEADER,
    "in": "header",
    "required": True,
    "schema": {"type": "string"},
    "description": "t=<unix time>,v1=<hex HMAC-SHA256(secret, t.body)>",
}


def _telephony_route(app: FastAPI, context: Context) -> None:
    answered = _ok(200, EVENT_RESULT_SCHEMA, "applied (a repeat too), or refused as late")

    @app.post(
        "/v1/telephony/events",
        responses=_doc(answered, *_EVENTS),
        openapi_extra={"parameters": [_SIGNATURE_PARAMETER]},
        tags=["telephony"],
    )
    async def telephony_event(request: Request) -> Response:
        """二(六): the switch's report about an outbound call, signed by the gateway."""
        if context.verifier is None:
            raise ApiProblem("WebhookNotConfigured", "the server has no webhook secret")
        raw = await request.body()
        try:
            context.verifier.verify(request.headers.get(HEADER), raw)
        except (SignatureRefused, SignatureReplayed) as exc:
            log.warning("telephony callback refused: %s", exc)
            raise ApiProblem(type(exc).__name__, str(exc)) from None
        event = _call_event(raw)

        def apply() -> dict[str, Any]:
            try:
                view = context.engine.apply_call_event(event)
            except CallEventRefused as exc:
                case_id = event.key.rpartition(":call:")[0]
                detail = redact(str(exc))
                return {"result": "refused", "case_id": case_id, "detail": detail}
            return {"result": "applied", "case_id": view.case_id, "state": view.state.value}

        return JSONResponse(await context.run(apply))


def _call_event(raw: bytes) -> CallEvent:
    from pydantic import ValidationError

    try:
        body = TelephonyEvent.model_validate_json(raw)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"][:200]}
            for e in exc.errors()[:20]
        ]
        raise ApiProblem("InvalidBody", "the body is not a call event", errors=errors) from None
    try:
        at = dt.datetime.fromisoformat(body.at)
    except ValueError:
        raise InvalidCommand("at", body.at, "not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise InvalidCommand("at", body.at, "needs a UTC offset")
    return CallEvent(
        key=body.key, progress=body.progress, at=at, sip_status=body.sip_status,
        detail=body.detail,
    )  # fmt: skip


def _finish_schema(app: FastAPI, event_model: type[BaseModel]) -> None:
    """The telephony event's body is read raw (the signature covers its bytes): its schema
    is declared by hand, and ``Idempotency-Key``'s pattern added."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        operation = schema["paths"]["/v1/telephony/events"]["post"]
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": event_model.model_json_schema()}},
        }
        for item in schema["paths"].values():
            for op in item.values():
                for parameter in op.get("parameters", []):
                    if parameter["name"] == "Idempotency-Key":
                        parameter["schema"] = {"type": "string", "pattern": "^[!-~]{1,128}$"}
        schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        for path, item in schema["paths"].items():
            if path.startswith("/v1/cases") or path.startswith("/v1/reports"):
                for op in item.values():
                    op["security"] = [{"bearer": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
