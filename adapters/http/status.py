"""The status page at ``GET /``: what an operator glances at, server-rendered, read-only.

One HTML5 page, no script and no external asset (the CSS is inline, allowed by its hash in
the Content-Security-Policy), labels in Chinese and English, refreshed by the browser every
30 seconds. It shows the open cases by state and the oldest of them (plates and requester
numbers masked: a full number never reaches the page), the cases opened today (Asia/Shanghai),
the outbox backlog and the ledger's newest checkpoint.

Every figure comes from an index the store keeps (:class:`~movecar_core.ports.OpenCases`,
:class:`~movecar_core.ports.OutboxBacklog`, ``count_opened``): the page costs the same
whether the store holds a hundred cases or ten million. A store without one of them shows
that part as unavailable instead of scanning.

Mount it with :func:`status_route` (or :func:`status_endpoint`); authentication is the
application's (the page sits behind the API's bearer tokens)::

    app = Starlette(routes=[status_route(lambda request: engine)])
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
from collections.abc import Awaitable, Callable
from typing import Final, Protocol, runtime_checkable

import attrs
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from movecar_core.app import MoveCar
from movecar_core.calendar import SHANGHAI
from movecar_core.case import TERMINAL_STATES, CaseRecord, CaseState
from movecar_core.errors import InvalidInput, InvalidPhone, InvalidPlate
from movecar_core.phones import mask_phone
from movecar_core.plates import parse_plate
from movecar_core.ports import Backlog, OpenCases, OutboxBacklog
from movecar_core.reports import ReportStore

__all__ = [
    "OPEN_STATES",
    "STATUS_LIMIT",
    "OpenCaseRow",
    "StatusSnapshot",
    "render_status",
    "status_endpoint",
    "status_route",
    "status_snapshot",
]

#: At most this many open cases are listed (the oldest); the page says when there are more.
STATUS_LIMIT: Final = 200

#: The open (non-terminal) states, in the order a case runs through them.
OPEN_STATES: Final = tuple(s for s in CaseState if s not in TERMINAL_STATES)

_STATE_LABELS: Final = {
    CaseState.RECEIVED: "已受理",
    CaseState.OWNER_LOCATED: "已查到车主",
    CaseState.OWNER_CALLED: "已通知车主",
    CaseState.DISPUTED: "车主有异议",
    CaseState.ESCALATING: "正在转 110",
}

#: Shown instead of a plate or a number that does not parse: never the text itself.
_UNREADABLE: Final = "***"


@attrs.frozen
class OpenCaseRow:
    """One open case as the page lists it: nothing in it identifies a person or a car."""

    case_id: str
    plate_masked: str
    requester_phone_masked: str
    state: CaseState
    opened_at: dt.datetime
    age: dt.timedelta

    @classmethod
    def of(cls, record: CaseRecord, now: dt.datetime) -> OpenCaseRow:
        return cls(
            record.case_id,
            _mask_plate(record.plate),
            _mask_number(record.requester_phone),
            record.state,
            record.opened_at,
            max(now - record.opened_at, dt.timedelta(0)),
        )


@attrs.frozen
class StatusSnapshot:
    """What the status page shows, read at ``taken_at``.

    ``open_counts`` has every open state (:data:`OPEN_STATES`, in order, zeros included)
    or is None when the store keeps no index of open cases; likewise ``opened_today``
    (the store counts no openings) and ``backlog`` (no outbox). ``has_ledger`` says
    whether the store keeps an evidence ledger; ``last_checkpoint_at`` is its newest
    checkpoint (None: none issued yet, or no ledger).
    """

    taken_at: dt.datetime
    open_counts: tuple[tuple[CaseState, int], ...] | None
    open_cases: tuple[OpenCaseRow, ...]
    limit: int
    opened_today: int | None
    backlog: Backlog | None
    has_ledger: bool
    last_checkpoint_at: dt.datetime | None

    @property
    def open_total(self) -> int | None:
        return None if self.open_counts is None else sum(n for _, n in self.open_counts)

    @property
    def truncated(self) -> bool:
        """More cases are open than the page lists."""
        total = self.open_total
        return total is not None and total > len(self.open_cases)


@runtime_checkable
class _Checkpoints(Protocol):
    """The SQL store's ledger (:mod:`movecar_adapters.sql.ledger`)."""

    ledger: bool

    def newest_checkpoint_at(self) -> dt.datetime | None: ...


def status_snapshot(
    engine: MoveCar, *, now: dt.datetime | None = None, limit: int = STATUS_LIMIT
) -> StatusSnapshot:
    """Read the status of ``engine``'s store at ``now`` (default: the engine's clock),
    listing at most ``limit`` open cases, the oldest first."""
    at = engine.clock.now() if now is None else now
    if not isinstance(at, dt.datetime) or at.utcoffset() is None:
        raise InvalidInput(f"status_snapshot: now must be an aware datetime, got {at!r:.60}")
    if type(limit) is not int or limit < 0:
        raise InvalidInput(f"status_snapshot: limit must be an int >= 0, got {limit!r:.40}")
    store = engine.store
    counts: tuple[tuple[CaseState, int], ...] | None = None
    rows: tuple[OpenCaseRow, ...] = ()
    if isinstance(store, OpenCases):
        found = store.open_counts()
        counts = tuple((state, found.get(state, 0)) for state in OPEN_STATES)
        rows = tuple(OpenCaseRow.of(r, at) for r in store.open_cases(limit))
    opened_today = None
    if isinstance(store, ReportStore):
        start = dt.datetime.combine(at.astimezone(SHANGHAI).date(), dt.time(), SHANGHAI)
        opened_today = store.count_opened(start, start + dt.timedelta(days=1))
    backlog = store.outbox_backlog(at) if isinstance(store, OutboxBacklog) else None
    has_ledger, checkpoint = False, None
    if isinstance(store, _Checkpoints) and store.ledger:
        has_ledger, checkpoint = True, store.newest_checkpoint_at()
    return StatusSnapshot(at, counts, rows, limit, opened_today, backlog, has_ledger, checkpoint)


def _mask_plate(plate: str) -> str:
    try:
        return parse_plate(plate).masked()
    except InvalidPlate:
        return _UNREADABLE


def _mask_number(phone: str) -> str:
    try:
        return mask_phone(phone)
    except InvalidPhone:
        return _UNREADABLE


# --- the page ---------------------------------------------------------------------------

_CSS: Final = """
body{font-family:system-ui,"Noto Sans CJK SC","PingFang SC",sans-serif;margin:0;
background:#f5f6f8;color:#1d2330}
header{background:#123a6b;color:#fff;padding:12px 24px}
header h1{margin:0;font-size:1.4rem}
header p{margin:4px 0 0;opacity:.85}
main{padding:16px 24px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:16px}
.card{background:#fff;border-radius:6px;padding:12px 16px;min-width:180px;
box-shadow:0 1px 2px rgba(0,0,0,.12)}
.card h2{font-size:.9rem;margin:0 0 6px;color:#4a5468}
.card .figure{font-size:1.8rem;font-weight:600}
.card p{margin:4px 0 0;font-size:.85rem;color:#4a5468}
section{background:#fff;border-radius:6px;padding:12px 16px;margin-bottom:16px;
box-shadow:0 1px 2px rgba(0,0,0,.12)}
section h2{font-size:1.05rem;margin:0 0 8px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e3e6eb}
td.n{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:.85rem}
.note{color:#8a4b00}
footer{padding:0 24px 16px;color:#4a5468;font-size:.8rem}
"""
_CSS_HASH: Final = base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()

#: The page runs no script, loads nothing, and may not be framed.
HEADERS: Final = {
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

_REFRESH_SECONDS: Final = 30


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _local(at: dt.datetime) -> str:
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def _time(at: dt.datetime) -> str:
    return f'<time datetime="{_e(at.isoformat())}">{_e(_local(at))}</time>'


def _age(age: dt.timedelta) -> str:
    minutes = int(age.total_seconds()) // 60
    if minutes < 1:
        return "<1 min"
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min"


def _state(state: CaseState) -> str:
    label = _STATE_LABELS.get(state)
    return _e(state.value) if label is None else f"{_e(label)} <small>{_e(state.value)}</small>"


def _card(key: str, title: str, figure: str, detail: str = "") -> str:
    more = f"<p>{detail}</p>" if detail else ""
    return (
        f'<div class="card" id="{_e(key)}"><h2>{title}</h2>'
        f'<div class="figure">{figure}</div>{more}</div>'
    )


def _cards(s: StatusSnapshot) -> str:
    unavailable = "—"
    total = s.open_total
    cards = [
        _card("card-open", "待处理案件 Open cases", unavailable if total is None else _e(total)),
        _card(
            "card-today",
            "今日受理 Opened today",
            unavailable if s.opened_today is None else _e(s.opened_today),
            f"{_e(s.taken_at.astimezone(SHANGHAI).date().isoformat())} (Asia/Shanghai)",
        ),
    ]
    b = s.backlog
    if b is None:
        cards.append(_card("card-outbox", "待执行任务 Outbox backlog", unavailable))
    else:
        oldest = "无 none" if b.oldest_due_at is None else _time(b.oldest_due_at)
        cards.append(
            _card(
                "card-outbox",
                "待执行任务 Outbox backlog",
                _e(b.pending),
                f"已到期 due now: {_e(b.due)}<br>最早到期 oldest due: {oldest}",
            )
        )
    if not s.has_ledger or s.last_checkpoint_at is None:
        checkpoint = "无 none"
    else:
        checkpoint = _time(s.last_checkpoint_at)
    cards.append(_card("card-checkpoint", "最近检查点 Last checkpoint", checkpoint))
    return f'<div class="cards">{"".join(cards)}</div>'


def _by_state(s: StatusSnapshot) -> str:
    head = "<h2>按状态统计 Open cases by state</h2>"
    if s.open_counts is None:
        unavailable = '<p class="note">此存储不提供 not available from this store</p>'
        return f'<section id="by-state">{head}{unavailable}</section>'
    rows = "".join(
        f'<tr data-state="{_e(state.value)}"><th scope="row">{_state(state)}</th>'
        f'<td class="n">{_e(n)}</td></tr>'
        for state, n in s.open_counts
    )
    return (
        f'<section id="by-state">{head}<table id="open-counts">'
        '<thead><tr><th scope="col">状态 State</th><th scope="col">件数 Cases</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></section>"
    )


def _open_cases(s: StatusSnapshot) -> str:
    head = "<h2>待处理案件 Open cases (最早的 oldest first)</h2>"
    if s.open_counts is None:
        return ""
    if s.truncated:
        note = (
            f'<p class="note" id="truncated">仅列出最早的 {_e(len(s.open_cases))} 件，'
            f"共 {_e(s.open_total)} 件 · Showing the {_e(len(s.open_cases))} oldest of "
            f"{_e(s.open_total)} open cases.</p>"
        )
    else:
        note = f"<p>最多列出 {_e(s.limit)} 件 · At most {_e(s.limit)} cases are listed.</p>"
    if not s.open_cases:
        return f'<section id="open-cases">{head}<p id="none-open">无 none</p></section>'
    rows = "".join(
        f'<tr data-case="{_e(r.case_id)}"><td><code>{_e(r.case_id)}</code></td>'
        f"<td>{_e(r.plate_masked)}</td><td>{_e(r.requester_phone_masked)}</td>"
        f"<td>{_state(r.state)}</td><td>{_time(r.opened_at)}</td>"
        f'<td class="n">{_e(_age(r.age))}</td></tr>'
        for r in s.open_cases
    )
    columns = (
        "案件 Case", "车牌 Plate", "求助人电话 Requester", "状态 State", "受理时间 Opened at",
        "时长 Age",
    )  # fmt: skip
    header = "".join(f'<th scope="col">{c}</th>' for c in columns)
    return (
        f'<section id="open-cases">{head}{note}<table id="open-cases-table">'
        f"<thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table></section>"
    )


TITLE: Final = "114挪车 运行状态 · movecar status"


def render_status(snapshot: StatusSnapshot) -> str:
    """The complete HTML5 page of ``snapshot``: every value escaped, no script, no asset
    loaded from anywhere, times in Asia/Shanghai."""
    s = snapshot
    return (
        '<!DOCTYPE html>\n<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="refresh" content="{_REFRESH_SECONDS}">\n'
        f"<title>{_e(TITLE)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>114挪车 运行状态 <small>movecar status</small></h1>"
        f"<p>截至 As of {_time(s.taken_at)} (Asia/Shanghai) · "
        f"每 {_REFRESH_SECONDS} 秒刷新 refreshed every {_REFRESH_SECONDS} s</p></header>\n"
        f"<main>\n{_cards(s)}\n{_by_state(s)}\n{_open_cases(s)}\n</main>\n"
        "<footer>只读页面，车牌与电话号码已脱敏 · Read-only; plates and phone numbers are "
        "masked.</footer>\n</body>\n</html>\n"
    )


EngineGetter = Callable[[Request], MoveCar]


def status_endpoint(
    get_engine: EngineGetter, *, limit: int = STATUS_LIMIT
) -> Callable[[Request], Awaitable[Response]]:
    """An async Starlette endpoint serving the page of ``get_engine(request)``'s store.

    The store's queries block, so they run in Starlette's thread pool, not on the event
    loop."""

    async def status_page(request: Request) -> Response:
        engine = get_engine(request)
        snapshot = await run_in_threadpool(status_snapshot, engine, limit=limit)
        return HTMLResponse(render_status(snapshot), headers=HEADERS)

    return status_page


def status_route(get_engine: EngineGetter, *, path: str = "/", limit: int = STATUS_LIMIT) -> Route:
    """``GET path`` (and ``HEAD``) serving :func:`status_endpoint`, named ``"status"``."""
    return Route(path, status_endpoint(get_engine, limit=limit), methods=["GET"], name="status")
