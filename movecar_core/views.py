"""Read models of a case, one per audience.

Privacy is by construction: :class:`RequesterView` has no field that could hold anything
about the owner, and the requester's notifications are rendered from it alone. The seat's
:class:`CaseView` shows phone numbers masked; the full numbers stay in the audited history.
"""

from __future__ import annotations

import datetime as dt

import attrs

from movecar_core.case import (
    CallOutcome,
    CaseRecord,
    CaseState,
    EscalationReason,
    UnresolvedReason,
)
from movecar_core.phones import mask_phone


@attrs.frozen
class CaseView:
    """What a 114 seat sees of a case."""

    case_id: str
    state: CaseState
    version: int
    plate: str
    location: str
    opened_at: dt.datetime
    closed_at: dt.datetime | None
    requester_phone_masked: str
    owner_located: bool
    owner_phone_masked: str | None
    attempts: int
    call_in_flight: str | None
    last_outcome: CallOutcome | None
    escalation_reason: EscalationReason | None
    unresolved_reason: UnresolvedReason | None

    @classmethod
    def of(cls, case: CaseRecord) -> CaseView:
        owner = case.owner_phone
        # Positional, in field order: every command returns a view, and keywords cost a
        # third more here.
        return cls(
            case.case_id,
            case.state,
            case.version,
            case.plate,
            case.location,
            case.opened_at,
            case.closed_at,
            mask_phone(case.requester_phone),
            owner is not None,
            None if owner is None else mask_phone(owner),
            case.attempts,
            case.call_in_flight,
            case.last_outcome,
            case.escalation_reason,
            case.unresolved_reason,
        )


_STATUS = {
    CaseState.RECEIVED: "已受理，正在查询车主信息",
    CaseState.OWNER_LOCATED: "已查询到车主，正在联系",
    CaseState.OWNER_CALLED: "已电话通知车主挪车",
    CaseState.MOVED: "车辆已挪走，感谢您的耐心等待",
    CaseState.DISPUTED: "车主有异议，正在协调处理",
    CaseState.ESCALATING: "正在转接公安 110 指挥中心",
    CaseState.ESCALATED_TO_110: "已转公安 110 指挥中心处理",
    CaseState.CANCELLED: "已按您的要求取消",
    CaseState.UNRESOLVED: "暂未能联系到车主，如有紧急情况请拨打 110",
}


@attrs.frozen
class RequesterView:
    """What the requester (求助人) may see of their case: nothing about the owner."""

    case_id: str
    state: CaseState
    plate: str
    location: str
    opened_at: dt.datetime
    closed_at: dt.datetime | None
    status: str

    @classmethod
    def of(cls, case: CaseRecord) -> RequesterView:
        return cls(
            case_id=case.case_id,
            state=case.state,
            plate=case.plate,
            location=case.location,
            opened_at=case.opened_at,
            closed_at=case.closed_at,
            status=_STATUS[case.state],
        )


#: The states the requester hears about, with what they are told (a table: the outbox
#: asks on every append). Not news: received and owner located (nothing to act on yet),
#: nor escalating: the requester hears once the transfer went through (or not at all while
#: the seat retries a failed one), not twice.
_NEWS: dict[CaseState, str] = {
    state: status
    for state, status in _STATUS.items()
    if state not in (CaseState.RECEIVED, CaseState.OWNER_LOCATED, CaseState.ESCALATING)
}


def requester_status(state: CaseState) -> str | None:
    """What the requester is told when their case reaches ``state``; None: not news."""
    return _NEWS.get(state)


def requester_message(plate: str, state: CaseState) -> str | None:
    """The notification text for the requester, or None when the state is not news."""
    status = requester_status(state)
    return None if status is None else f"【114挪车】您反映的{plate}挪车求助：{status}。"
