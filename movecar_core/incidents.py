"""Outages and security incidents: their records, the contract's notice deadlines, the
findings when a notice is late or missing, and the days without the 24-hour service.

The contract's words:

* 二(五) "乙方因技术故障暂停服务的，应该在故障发生后的 30 分钟内通知公安 110 接警台，并在排除
  故障恢复服务 30 分钟内通知公安 110 接警台。" — an outage (start, end, cause) needs two
  notices to the 110 desk: within 30 minutes of the fault
  (:attr:`~movecar_core.contract.Contract.outage_notice_minutes`) and within 30 minutes of
  the recovery (:attr:`~movecar_core.contract.Contract.recovery_notice_minutes`).
* Annex 2 (网络及信息安全承诺书) 十六 "发生重大安全事故或发生或者可能发生个人信息等数据泄露、
  篡改、丢失时，立即采取应急措施，保留有关原始记录，在 24 小时内向有关部门报告并书面通知
  贵公司。" — a security incident (a leak, tampering, a loss, a failed audit, a major
  accident) is reported in writing within 24 hours
  (:attr:`~movecar_core.contract.Contract.incident_report_hours`). The clause names "有关部门"
  and the other party; the library sends the written report through the same
  :class:`~movecar_core.ports.CommandCentre` port as the outage notices (Party A, the
  public security bureau, is the authority over this service), and a deployment that must
  also write to China Telecom gives that port an adapter that does both.
* 五(二) "乙方未按要求 24 小时提供挪车服务，乙方按万分之五/天向甲方支付违约金" — a day touched
  by an outage is a day without the 24-hour service, counted by the penalty engine's one
  rule (:func:`movecar_core.penalties.service_gap_dates`).

The log is append-only: every fact is a record (:class:`OutageStarted`,
:class:`OutageEnded`, :class:`SecurityIncidentReported`, :class:`NoticeSent`), and the
state (:class:`IncidentLog`) is their fold, checked record by record by the same rules
that refuse a command (an end before its start, a second start while an outage is open, a
notice for an unknown incident...). A notice is due until its ``NoticeSent`` record
exists: nothing else marks it done, so a failed send stays pending and is retried, and a
crash between the send and its record repeats the send under the same key, which the
receiver drops (:class:`~movecar_core.ports.CommandCentre`).

Everything here is pure: time comes in as an argument or through the
:class:`~movecar_core.ports.Clock` port, storage through :class:`IncidentStore`.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol, TypeVar, runtime_checkable

import attrs

from movecar_core.calendar import SHANGHAI
from movecar_core.contract import WUJIN_114_2024, Contract
from movecar_core.errors import InvalidInput, MoveCarError, PortError, excerpt, redact
from movecar_core.findings import Finding
from movecar_core.ledger import utc_text
from movecar_core.penalties import service_gap_dates, service_gap_penalty
from movecar_core.ports import Clock, CommandCentre
from movecar_core.settlement import ServiceMonth
from movecar_core.text import text_problem

E = TypeVar("E", bound=enum.StrEnum)

#: The clause of the outage notices.
OUTAGE_CLAUSE = "二(五)"
#: The clause of the security incident report (附件二《网络及信息安全承诺书》第十六条).
SECURITY_CLAUSE = "附件二 十六"
#: The clause of the service-gap penalty.
GAP_CLAUSE = "五(二)"

#: Longest cause of an outage, summary of a security incident, actor id (characters).
MAX_CAUSE = 500
MAX_SUMMARY = 2000
MAX_ACTOR = 100
MAX_CHANNEL = 40
#: Incident ids, as the log hands them out: ``outage-0001``, ``security-0001`` (numbered per
#: kind; never more than 9 digits, so no id can read as a phone number).
INCIDENT_ID = re.compile(r"(?:outage|security)-[0-9]{4,9}\Z")


# --- errors ------------------------------------------------------------------------------


class IncidentError(MoveCarError):
    """Base of the incident log's refusals."""


class InvalidIncident(IncidentError, InvalidInput):
    """A malformed argument of an incident command: a naive or future time, an empty or
    oversized cause or summary, text with a phone number or a control character, an
    unknown kind. Names the field; nothing is written."""

    def __init__(self, field: str, value: object, why: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"{field}={excerpt(value)}: {why}")


class UnknownIncident(IncidentError, KeyError):
    """No incident with that id (an end or a notice for an incident never started)."""

    def __init__(self, incident_id: object) -> None:
        self.incident_id = incident_id
        super().__init__(f"no incident with incident_id={excerpt(incident_id)}")

    def __str__(self) -> str:  # KeyError would quote the message again
        return str(IncidentError.__str__(self))


class IncidentRefused(IncidentError):
    """The incident log's rules refuse the record: a second start while an outage is
    open, an end with none open or before its start, an outage overlapping the previous
    one, a notice already recorded or for the wrong kind of incident."""


class IncidentConflict(IncidentError):
    """Another writer appended to the incident log first, as many times as the service
    retries: nothing was written; run the command again."""

    def __init__(self, expected: int, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"incident log: expected {expected} records, the store has {actual} "
            "(another writer came first)"
        )


class CorruptIncidentLog(IncidentError):
    """The stored incident log does not decode, or does not replay under its own rules
    (a record changed or inserted behind the library's back): run ``movecar audit
    verify``. Nothing is written on top of it."""


# --- kinds ---------------------------------------------------------------------------------


class SecurityKind(enum.StrEnum):
    """What happened, in the words of annex 2 十六 (and a failed audit, which is the
    evidence of tampering: 七(三) "防止 ... 篡改、丢失")."""

    #: 数据泄露 (or a leak that may have happened: "可能发生").
    LEAK = "leak"
    #: 数据篡改.
    TAMPERING = "tampering"
    #: 数据丢失.
    LOSS = "loss"
    #: ``movecar audit verify`` found tampering or inconsistencies.
    AUDIT_FAILURE = "audit_failure"
    #: 重大安全事故.
    MAJOR_ACCIDENT = "major_accident"

    @property
    def label(self) -> str:
        """The kind in Chinese, as the report names it."""
        return _SECURITY_LABELS[self]


_SECURITY_LABELS = {
    SecurityKind.LEAK: "个人信息等数据泄露（或可能泄露）",
    SecurityKind.TAMPERING: "数据篡改",
    SecurityKind.LOSS: "数据丢失",
    SecurityKind.AUDIT_FAILURE: "审计校验未通过（数据可能被篡改）",
    SecurityKind.MAJOR_ACCIDENT: "重大安全事故",
}


class NoticeKind(enum.StrEnum):
    """Which notice: the fault's and the recovery's (二(五)), the security report (annex
    2 十六). Stored: never rename one."""

    FAULT = "fault"
    RECOVERY = "recovery"
    SECURITY_REPORT = "security_report"


def notice_allowance(kind: NoticeKind, contract: Contract = WUJIN_114_2024) -> dt.timedelta:
    """How long after the event its notice may be sent: 30 minutes for the fault and the
    recovery (二(五) "故障发生后的 30 分钟内", "恢复服务 30 分钟内"), 24 hours for a
    security incident (annex 2 十六 "在 24 小时内向有关部门报告")."""
    if kind is NoticeKind.FAULT:
        return dt.timedelta(minutes=contract.outage_notice_minutes)
    if kind is NoticeKind.RECOVERY:
        return dt.timedelta(minutes=contract.recovery_notice_minutes)
    if kind is NoticeKind.SECURITY_REPORT:
        return dt.timedelta(hours=contract.incident_report_hours)
    raise InvalidIncident("kind", kind, "not a NoticeKind")


def notice_key(incident_id: str, kind: NoticeKind) -> str:
    """The notice's idempotency key, unique per notice: a repeat after a crash carries
    the same key, and the receiver drops it."""
    return f"incident:{incident_id}:{kind.value}"


# --- field checks --------------------------------------------------------------------------


def _aware(field: str, value: object) -> dt.datetime:
    if not isinstance(value, dt.datetime) or value.utcoffset() is None:
        raise InvalidIncident(field, value, "must be a timezone-aware datetime")
    return value


def _text(field: str, value: object, limit: int) -> str:
    """One line of text, not empty, at most ``limit`` characters, without a phone number:
    every notice to 110 quotes it, and a notice never carries a phone number."""
    if not isinstance(value, str):
        raise InvalidIncident(field, value, "must be a string")
    if not value.strip():
        raise InvalidIncident(field, value, "must not be empty")
    if value != value.strip():
        raise InvalidIncident(field, value, "surrounding spaces")
    if len(value) > limit:
        raise InvalidIncident(field, value, f"longer than {limit} characters")
    problem = text_problem(value)
    if problem is not None:
        raise InvalidIncident(field, value, problem)
    if redact(value) != value:
        raise InvalidIncident(
            field, value, "contains a phone number (notices to 110 never carry one)"
        )
    return value


def _incident_id(_: object, __: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not INCIDENT_ID.match(value):
        raise InvalidIncident("incident_id", value, "not an incident id (outage-0001...)")


def _time_field(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    _aware(attribute.name, value)


def _text_field(limit: int) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    def check(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        _text(attribute.name, value, limit)

    return check


def _member(kind: type[E], value: object) -> E:
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            pass
    options = ", ".join(k.value for k in kind)
    raise InvalidIncident("kind", value, f"not one of {options}")


def _security_kind(value: object) -> SecurityKind:
    return _member(SecurityKind, value)


def _notice_kind(value: object) -> NoticeKind:
    return _member(NoticeKind, value)


# --- records -------------------------------------------------------------------------------


@attrs.frozen
class OutageStarted:
    """二(五) a technical fault stopped the service at ``at`` (recorded at ``recorded_at``
    by ``actor``)."""

    incident_id: str = attrs.field(validator=_incident_id)
    at: dt.datetime = attrs.field(validator=_time_field)
    cause: str = attrs.field(validator=_text_field(MAX_CAUSE))
    recorded_at: dt.datetime = attrs.field(validator=_time_field)
    actor: str = attrs.field(validator=_text_field(MAX_ACTOR))


@attrs.frozen
class OutageEnded:
    """二(五) the fault was removed and the service restored at ``at``."""

    incident_id: str = attrs.field(validator=_incident_id)
    at: dt.datetime = attrs.field(validator=_time_field)
    recorded_at: dt.datetime = attrs.field(validator=_time_field)
    actor: str = attrs.field(validator=_text_field(MAX_ACTOR))


@attrs.frozen
class SecurityIncidentReported:
    """Annex 2 十六: a security incident of ``kind`` happened (or was found) at ``at``."""

    incident_id: str = attrs.field(validator=_incident_id)
    kind: SecurityKind = attrs.field(converter=_security_kind)
    summary: str = attrs.field(validator=_text_field(MAX_SUMMARY))
    at: dt.datetime = attrs.field(validator=_time_field)
    recorded_at: dt.datetime = attrs.field(validator=_time_field)
    actor: str = attrs.field(validator=_text_field(MAX_ACTOR))


@attrs.frozen
class NoticeSent:
    """A notice was given at ``at``: through the :class:`~movecar_core.ports.CommandCentre`
    port (``channel`` ``"command_centre"``), or otherwise and recorded by a person
    (``"phone"``, say)."""

    incident_id: str = attrs.field(validator=_incident_id)
    notice: NoticeKind = attrs.field(converter=_notice_kind)
    key: str
    at: dt.datetime = attrs.field(validator=_time_field)
    recorded_at: dt.datetime = attrs.field(validator=_time_field)
    actor: str = attrs.field(validator=_text_field(MAX_ACTOR))
    channel: str = attrs.field(validator=_text_field(MAX_CHANNEL))

    def __attrs_post_init__(self) -> None:
        if self.key != notice_key(self.incident_id, self.notice):
            raise InvalidIncident("key", self.key, "is not the notice's key")


IncidentRecord = OutageStarted | OutageEnded | SecurityIncidentReported | NoticeSent

#: Stored type names: never rename one.
RECORD_TYPES: Mapping[str, type[IncidentRecord]] = {
    "outage_started": OutageStarted,
    "outage_ended": OutageEnded,
    "security_incident_reported": SecurityIncidentReported,
    "notice_sent": NoticeSent,
}
_TYPE_NAMES = {cls: name for name, cls in RECORD_TYPES.items()}


def type_name(record: IncidentRecord) -> str:
    """The stored name of the record's type."""
    return _TYPE_NAMES[type(record)]


def encode_record(record: IncidentRecord) -> dict[str, Any]:
    """The record's fields as JSON-ready values (times as UTC text, one spelling)."""
    out: dict[str, Any] = {}
    for field in attrs.fields(type(record)):
        value = getattr(record, field.name)
        if isinstance(value, dt.datetime):
            value = utc_text(value)
        elif isinstance(value, enum.Enum):
            value = value.value
        out[field.name] = value
    return out


def decode_record(name: str, payload: Mapping[str, Any]) -> IncidentRecord:
    """A stored record back; :class:`CorruptIncidentLog` for anything that is not one."""
    cls = RECORD_TYPES.get(name)
    if cls is None:
        raise CorruptIncidentLog(f"unknown incident record type {excerpt(name)}")
    if not isinstance(payload, Mapping):
        raise CorruptIncidentLog(f"{name}: payload is not an object")
    names = [f.name for f in attrs.fields(cls)]
    if set(payload) != set(names):
        raise CorruptIncidentLog(f"{name}: fields {sorted(payload)[:10]!r:.200} are not {names}")
    values: dict[str, Any] = {}
    for field in attrs.fields(cls):
        value = payload[field.name]
        if field.name in ("at", "recorded_at"):
            try:
                value = dt.datetime.fromisoformat(value)
            except (TypeError, ValueError):
                raise CorruptIncidentLog(f"{name}.{field.name}: not a time") from None
        values[field.name] = value
    try:
        return cls(**values)
    except (InvalidInput, TypeError) as exc:
        raise CorruptIncidentLog(f"{name}: {exc}") from None


# --- the fold --------------------------------------------------------------------------------


@attrs.frozen
class SentNotice:
    """A notice given: which, its key, when, how."""

    kind: NoticeKind
    key: str
    sent_at: dt.datetime
    channel: str


@attrs.frozen
class Outage:
    """An outage as its records tell it (``ended_at`` None while it lasts)."""

    incident_id: str
    cause: str
    started_at: dt.datetime
    ended_at: dt.datetime | None
    recorded_at: dt.datetime
    actor: str
    notices: tuple[SentNotice, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.ended_at is None

    def span(self, as_of: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        """``[start, end)``; an open outage lasts until ``as_of``."""
        return self.started_at, self.ended_at if self.ended_at is not None else as_of


@attrs.frozen
class SecurityIncident:
    """A security incident as its records tell it."""

    incident_id: str
    kind: SecurityKind
    summary: str
    at: dt.datetime
    recorded_at: dt.datetime
    actor: str
    notices: tuple[SentNotice, ...] = ()


Incident = Outage | SecurityIncident


@attrs.frozen
class RequiredNotice:
    """A notice the contract requires: of which incident, which, about the event at
    ``occurred_at``, due by ``due_by``; ``sent`` once given."""

    incident_id: str
    kind: NoticeKind
    key: str
    occurred_at: dt.datetime
    due_by: dt.datetime
    sent: SentNotice | None

    @property
    def delay(self) -> dt.timedelta | None:
        """From the event to the notice (None while it is not sent)."""
        return None if self.sent is None else self.sent.sent_at - self.occurred_at


class IncidentLog:
    """The fold of the incident records: every outage and security incident, in order.

    :meth:`apply` checks a record against the log before taking it (and takes nothing
    when it refuses), so the rules that refuse a command are the rules a stored log is
    replayed under (:func:`fold`).
    """

    def __init__(self, contract: Contract = WUJIN_114_2024) -> None:
        self.contract = contract
        self._incidents: dict[str, Incident] = {}
        self._open: str | None = None
        #: The outage that started last (the next may not start before it ended).
        self._last_outage: str | None = None
        #: How many records were applied: the next record's position is this plus one.
        self.size = 0

    # --- reading ------------------------------------------------------------------------

    def __contains__(self, incident_id: object) -> bool:
        return incident_id in self._incidents

    def get(self, incident_id: str) -> Incident:
        found = self._incidents.get(incident_id)
        if found is None:
            raise UnknownIncident(incident_id)
        return found

    @property
    def open_outage(self) -> Outage | None:
        """The outage under way, if any (one at a time: the service is down or up)."""
        if self._open is None:
            return None
        found = self._incidents[self._open]
        assert isinstance(found, Outage)
        return found

    def outages(self) -> tuple[Outage, ...]:
        return tuple(i for i in self._incidents.values() if isinstance(i, Outage))

    def security_incidents(self) -> tuple[SecurityIncident, ...]:
        return tuple(i for i in self._incidents.values() if isinstance(i, SecurityIncident))

    def incidents(self) -> tuple[Incident, ...]:
        return tuple(self._incidents.values())

    def required_notices(self) -> Iterator[RequiredNotice]:
        """Every notice the contract requires so far, in the order of the incidents: an
        outage's fault notice, and its recovery notice once it ended; a security
        incident's report."""
        for incident in self._incidents.values():
            sent = {n.kind: n for n in incident.notices}
            if isinstance(incident, Outage):
                wanted = [(NoticeKind.FAULT, incident.started_at)]
                if incident.ended_at is not None:
                    wanted.append((NoticeKind.RECOVERY, incident.ended_at))
            else:
                wanted = [(NoticeKind.SECURITY_REPORT, incident.at)]
            for kind, occurred in wanted:
                yield RequiredNotice(
                    incident.incident_id,
                    kind,
                    notice_key(incident.incident_id, kind),
                    occurred,
                    occurred + notice_allowance(kind, self.contract),
                    sent.get(kind),
                )

    def pending(self) -> list[RequiredNotice]:
        """The notices still to send, in order. A recovery notice waits for its outage's
        fault notice: the desk hears of the fault before it hears of the recovery."""
        out: list[RequiredNotice] = []
        for need in self.required_notices():
            if need.sent is not None:
                continue
            if need.kind is NoticeKind.RECOVERY and any(
                n.kind is NoticeKind.FAULT and n.incident_id == need.incident_id for n in out
            ):
                continue
            out.append(need)
        return out

    # --- the rules ----------------------------------------------------------------------

    def apply(self, record: IncidentRecord) -> None:
        """Take ``record`` after the log's records, or refuse it (typed) taking nothing."""
        if isinstance(record, OutageStarted):
            self._start(record)
        elif isinstance(record, OutageEnded):
            self._end(record)
        elif isinstance(record, SecurityIncidentReported):
            self._report(record)
        elif isinstance(record, NoticeSent):
            self._notice(record)
        else:
            raise InvalidIncident("record", record, "not an incident record")
        self.size += 1

    @staticmethod
    def _not_after_recording(record: IncidentRecord) -> None:
        if record.at > record.recorded_at:
            raise InvalidIncident(
                "at",
                record.at.isoformat(),
                f"is after the record was written ({record.recorded_at.isoformat()}): "
                "nothing is recorded before it happened",
            )

    def _new_id(self, incident_id: str) -> None:
        if incident_id in self._incidents:
            raise IncidentRefused(f"incident {incident_id} exists already")

    def _start(self, record: OutageStarted) -> None:
        self._new_id(record.incident_id)
        self._not_after_recording(record)
        if self._open is not None:
            raise IncidentRefused(
                f"outage {self._open} is still open: end it before another starts "
                "(the service is down once at a time)"
            )
        if self._last_outage is not None:
            last = self._incidents[self._last_outage]
            assert isinstance(last, Outage) and last.ended_at is not None
            if record.at < last.ended_at:
                raise IncidentRefused(
                    f"outage {record.incident_id} would start at {record.at.isoformat()}, "
                    f"before outage {last.incident_id} ended ({last.ended_at.isoformat()})"
                )
        self._incidents[record.incident_id] = Outage(
            record.incident_id, record.cause, record.at, None, record.recorded_at, record.actor
        )
        self._open = self._last_outage = record.incident_id

    def _end(self, record: OutageEnded) -> None:
        outage = self.get(record.incident_id)
        if not isinstance(outage, Outage):
            raise IncidentRefused(f"incident {record.incident_id} is not an outage")
        if outage.ended_at is not None:
            raise IncidentRefused(
                f"outage {record.incident_id} ended already ({outage.ended_at.isoformat()})"
            )
        self._not_after_recording(record)
        if record.at <= outage.started_at:
            raise IncidentRefused(
                f"outage {record.incident_id} cannot end at {record.at.isoformat()}: not "
                f"after its start ({outage.started_at.isoformat()})"
            )
        self._incidents[record.incident_id] = attrs.evolve(outage, ended_at=record.at)
        self._open = None

    def _report(self, record: SecurityIncidentReported) -> None:
        self._new_id(record.incident_id)
        self._not_after_recording(record)
        self._incidents[record.incident_id] = SecurityIncident(
            record.incident_id,
            record.kind,
            record.summary,
            record.at,
            record.recorded_at,
            record.actor,
        )

    def _notice(self, record: NoticeSent) -> None:
        incident = self.get(record.incident_id)
        self._not_after_recording(record)
        if isinstance(incident, Outage):
            occurred = {NoticeKind.FAULT: incident.started_at}
            if incident.ended_at is not None:
                occurred[NoticeKind.RECOVERY] = incident.ended_at
        else:
            occurred = {NoticeKind.SECURITY_REPORT: incident.at}
        if record.notice not in occurred:
            raise IncidentRefused(
                f"incident {record.incident_id} has no {record.notice.value} notice to give"
                + (" (not ended yet)" if record.notice is NoticeKind.RECOVERY else "")
            )
        if record.at < occurred[record.notice]:
            raise IncidentRefused(
                f"{record.notice.value} notice of {record.incident_id} dated "
                f"{record.at.isoformat()}, before what it reports "
                f"({occurred[record.notice].isoformat()})"
            )
        if any(n.kind is record.notice for n in incident.notices):
            raise IncidentRefused(
                f"the {record.notice.value} notice of {record.incident_id} is recorded already"
            )
        sent = SentNotice(record.notice, record.key, record.at, record.channel)
        self._incidents[record.incident_id] = attrs.evolve(
            incident, notices=(*incident.notices, sent)
        )


def fold(records: Iterable[IncidentRecord], contract: Contract = WUJIN_114_2024) -> IncidentLog:
    """The log of ``records`` (stored ones: a record its rules refuse means the store was
    changed behind the library's back, :class:`CorruptIncidentLog` naming its position)."""
    log = IncidentLog(contract)
    for position, record in enumerate(records, start=1):
        try:
            log.apply(record)
        except IncidentError as exc:
            raise CorruptIncidentLog(f"incident record {position} does not replay: {exc}") from None
    return log


# --- deadlines, findings, days ---------------------------------------------------------------


def is_late(
    kind: NoticeKind,
    occurred_at: dt.datetime,
    sent_at: dt.datetime,
    contract: Contract = WUJIN_114_2024,
) -> bool:
    """Whether a notice sent at ``sent_at`` about an event at ``occurred_at`` is late:
    more than the allowance after it ("30 分钟内": at exactly 30 minutes it is on time)."""
    return sent_at - _aware("occurred_at", occurred_at) > notice_allowance(kind, contract)


def duration_text(delta: dt.timedelta) -> str:
    """``1 h 05 min``, ``45 min``, ``30 min 01 s``: a delay as a person reads it."""
    seconds = int(delta.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h"] if hours else []
    parts.append(f"{minutes:02d} min" if hours else f"{minutes} min")
    if secs:
        parts.append(f"{secs:02d} s")
    return sign + " ".join(parts)


_WHAT = {
    NoticeKind.FAULT: ("fault notice to 110", "the fault"),
    NoticeKind.RECOVERY: ("recovery notice to 110", "the recovery"),
    NoticeKind.SECURITY_REPORT: ("security incident report", "the incident"),
}


def notice_finding(
    kind: NoticeKind,
    incident_id: str,
    occurred_at: dt.datetime,
    sent_at: dt.datetime | None,
    *,
    as_of: dt.datetime,
    contract: Contract = WUJIN_114_2024,
) -> Finding | None:
    """The finding for one required notice, or None when there is none: sent late (its
    ``delay`` is from the event to the notice), or not sent and already overdue at
    ``as_of`` (its ``delay`` is from the event to ``as_of``, and grows)."""
    _aware("occurred_at", occurred_at)
    _aware("as_of", as_of)
    allowance = notice_allowance(kind, contract)
    clause = SECURITY_CLAUSE if kind is NoticeKind.SECURITY_REPORT else OUTAGE_CLAUSE
    what, event = _WHAT[kind]
    due = f"due within {duration_text(allowance)}"
    if sent_at is not None:
        delay = _aware("sent_at", sent_at) - occurred_at
        if delay <= allowance:
            return None
        return Finding(
            clause,
            occurred_at.isoformat(),
            f"{incident_id}: {what} sent {duration_text(delay)} after {event} ({due})",
            None,
            delay,
        )
    delay = as_of - occurred_at
    if delay <= allowance:
        return None
    return Finding(
        clause,
        occurred_at.isoformat(),
        f"{incident_id}: {what} not sent {duration_text(delay)} after {event} ({due})",
        None,
        delay,
    )


def late_notices(
    log: IncidentLog, as_of: dt.datetime, contract: Contract | None = None
) -> Iterator[tuple[RequiredNotice, Finding]]:
    """Each required notice of the log that is late or missing as of ``as_of``, with its
    finding (:func:`notice_finding`), in the log's order."""
    terms = contract or log.contract
    for need in log.required_notices():
        found = notice_finding(
            need.kind,
            need.incident_id,
            need.occurred_at,
            None if need.sent is None else need.sent.sent_at,
            as_of=as_of,
            contract=terms,
        )
        if found is not None:
            yield need, found


def notice_findings(
    log: IncidentLog, as_of: dt.datetime, contract: Contract | None = None
) -> list[Finding]:
    """Every late or missing notice of the log, as of ``as_of``, in the log's order."""
    return [f for _, f in late_notices(log, as_of, contract)]


def interrupted_days(
    outages: Iterable[Outage], *, as_of: dt.datetime, month: ServiceMonth | None = None
) -> tuple[dt.date, ...]:
    """The Asia/Shanghai days without the 24-hour service (五(二)), by the penalty
    engine's rule (:func:`~movecar_core.penalties.service_gap_dates`): every day an
    outage touched, an open one counted until ``as_of``; only ``month``'s when given."""
    _aware("as_of", as_of)
    spans = [o.span(as_of) for o in outages]
    days = service_gap_dates(s for s in spans if s[1] > s[0])
    if month is not None:
        days = frozenset(d for d in days if ServiceMonth.of(d) == month)
    return tuple(sorted(days))


@attrs.frozen
class IncidentMonth:
    """A month of incidents for the penalty engine and the monthly report: the days
    without the 24-hour service and the minutes of outage in the month, and the late or
    missing notices of events in the month."""

    month: ServiceMonth
    interrupted_days: tuple[dt.date, ...]
    outage_minutes: int
    findings: tuple[Finding, ...]

    def service_gap_penalty(
        self, base: Decimal, cap_base: Decimal | None = None, *, contract: Contract
    ) -> Decimal:
        """五(二)'s penalty for the month's days (:func:`~movecar_core.penalties.
        service_gap_penalty`: ``base`` x 0.05 % a day, capped at 30 %)."""
        return service_gap_penalty(base, len(self.interrupted_days), cap_base, contract=contract)


def month_of_incidents(log: IncidentLog, month: ServiceMonth, as_of: dt.datetime) -> IncidentMonth:
    """``month``'s :class:`IncidentMonth` from ``log`` as of ``as_of``."""
    start, end = month.bounds()
    seconds = 0.0
    for outage in log.outages():
        a, b = outage.span(as_of)
        lo, hi = max(a, start), min(b, end)
        if hi > lo:
            seconds += (hi - lo).total_seconds()
    findings = tuple(f for need, f in late_notices(log, as_of) if start <= need.occurred_at < end)
    return IncidentMonth(
        month,
        interrupted_days(log.outages(), as_of=as_of, month=month),
        int(seconds // 60),
        findings,
    )


# --- notices -------------------------------------------------------------------------------


def _local(at: dt.datetime) -> str:
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S") + "（北京时间）"


def render_notice(incident: Incident, kind: NoticeKind) -> tuple[str, str]:
    """The notice's subject and text, in Chinese: the incident's id, its times, its cause
    or summary, and the clause. Never a phone number (the texts are refused with one,
    and the result is checked again)."""
    if isinstance(incident, Outage) and kind is NoticeKind.FAULT:
        subject = f"114 挪车服务技术故障告知（{incident.incident_id}）"
        body = (
            f"公安 110 接警台：114 挪车服务因技术故障暂停服务。事件编号：{incident.incident_id}；"
            f"故障发生时间：{_local(incident.started_at)}；故障原因：{incident.cause}。"
            "依合同二(五)，于故障发生后 30 分钟内通知。恢复服务后另行告知。"
        )
    elif isinstance(incident, Outage) and kind is NoticeKind.RECOVERY:
        assert incident.ended_at is not None
        minutes = int((incident.ended_at - incident.started_at).total_seconds() // 60)
        subject = f"114 挪车服务恢复告知（{incident.incident_id}）"
        body = (
            f"公安 110 接警台：114 挪车服务已排除故障、恢复服务。事件编号：{incident.incident_id}；"
            f"故障发生时间：{_local(incident.started_at)}；恢复服务时间：{_local(incident.ended_at)}；"
            f"中断约 {minutes} 分钟；故障原因：{incident.cause}。"
            "依合同二(五)，于恢复服务后 30 分钟内通知。"
        )
    elif isinstance(incident, SecurityIncident) and kind is NoticeKind.SECURITY_REPORT:
        subject = f"114 挪车服务信息安全事件报告（{incident.incident_id}）"
        body = (
            f"114 挪车服务发生信息安全事件。事件编号：{incident.incident_id}；"
            f"类型：{incident.kind.label}；发生（发现）时间：{_local(incident.at)}；"
            f"概况：{incident.summary}。已采取应急措施并保留有关原始记录；"
            "依《网络及信息安全承诺书》第十六条，于 24 小时内书面报告。"
        )
    else:
        raise InvalidIncident("kind", kind, f"no such notice for incident {incident.incident_id}")
    if redact(subject + body) != subject + body:  # pragma: no cover - the fields refuse them
        raise InvalidIncident("notice", incident.incident_id, "would carry a phone number")
    return subject, body


# --- storage ---------------------------------------------------------------------------------


@runtime_checkable
class IncidentStore(Protocol):
    """The incident log, append-only, with optimistic concurrency on its length.

    Every adapter keeps the log in the order of its records, never changes or removes
    one, and refuses a record the log's rules refuse (:meth:`IncidentLog.apply`), so a
    stored log always replays.
    """

    def records(self) -> Sequence[IncidentRecord]:
        """Every record, oldest first (record ``n`` is at index ``n - 1``)."""
        ...

    def append(self, record: IncidentRecord, expected: int) -> int:
        """Append ``record`` after exactly ``expected`` records, atomically; the new
        length. :class:`IncidentConflict` (nothing written) when the store holds another
        number; the log's typed refusals when its rules refuse the record."""
        ...


class InMemoryIncidentStore:
    """The incident log in a list: complete, thread-safe, for tests, demos and
    simulations."""

    def __init__(self, contract: Contract = WUJIN_114_2024) -> None:
        self._records: list[IncidentRecord] = []
        self._log = IncidentLog(contract)
        self._lock = threading.Lock()

    def records(self) -> Sequence[IncidentRecord]:
        with self._lock:
            return tuple(self._records)

    def append(self, record: IncidentRecord, expected: int) -> int:
        with self._lock:
            if expected != len(self._records):
                raise IncidentConflict(expected, len(self._records))
            self._log.apply(record)  # refuses, taking nothing, what the rules refuse
            self._records.append(record)
            return len(self._records)


# --- the service -----------------------------------------------------------------------------


@attrs.frozen
class NoticeRun:
    """What :meth:`Incidents.run_due` did with one notice: ``sent`` (and recorded),
    ``failed`` (still pending: retried after the service's ``retry_after``), or ``sent,
    not recorded`` (the port took it; its record is retried without sending again)."""

    key: str
    incident_id: str
    kind: NoticeKind
    outcome: str
    error: str | None = None
    late: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


#: The actor of the notices the service sends itself.
SERVICE_ACTOR = "movecar"
#: The channel of a notice sent through the CommandCentre port.
PORT_CHANNEL = "command_centre"


class Incidents:
    """Outages and security incidents of one deployment: commands that write records,
    queries that fold them, and :meth:`run_due`, which sends the due notices to the 110
    desk through ``centre`` (the worker calls it every round).

    ``clock`` is the deployment's (the engine's): every record's ``recorded_at`` is its
    reading. ``centre`` may be None (nothing is sent: every notice stays pending, and
    :meth:`run_due` says why). ``retry_after``: how long a notice whose send failed waits
    before the next try (30 seconds: the fault's deadline is 30 minutes).
    """

    def __init__(
        self,
        store: IncidentStore,
        *,
        clock: Clock,
        centre: CommandCentre | None = None,
        contract: Contract = WUJIN_114_2024,
        retry_after: dt.timedelta = dt.timedelta(seconds=30),
        max_retries: int = 5,
    ) -> None:
        if not isinstance(contract, Contract):
            raise InvalidIncident("contract", contract, "not a Contract")
        if not isinstance(retry_after, dt.timedelta) or retry_after < dt.timedelta(0):
            raise InvalidIncident("retry_after", retry_after, "a timedelta >= 0")
        if type(max_retries) is not int or not 1 <= max_retries <= 100:
            raise InvalidIncident("max_retries", max_retries, "a whole number from 1 to 100")
        self.store = store
        self.clock = clock
        self.centre = centre
        self.contract = contract
        self.retry_after = retry_after
        self.max_retries = max_retries
        self._lock = threading.Lock()
        #: key -> when the next try of a notice whose send failed is due
        self._retry_at: dict[str, dt.datetime] = {}
        #: key -> the notice the port took and the time it did, not yet recorded (the
        #: record is retried with that time: a storage hiccup must not make it later)
        self._unrecorded: dict[str, tuple[RequiredNotice, dt.datetime]] = {}

    def __repr__(self) -> str:
        return f"Incidents(store={type(self.store).__name__}, clock={self.clock!r})"

    # --- queries ------------------------------------------------------------------------

    def log(self) -> IncidentLog:
        """The log folded from the store (:class:`CorruptIncidentLog` if it does not
        replay)."""
        return fold(self.store.records(), self.contract)

    def outages(self) -> tuple[Outage, ...]:
        return self.log().outages()

    def findings(self, as_of: dt.datetime | None = None) -> list[Finding]:
        """Every late or missing notice, as of ``as_of`` (default: now)."""
        return notice_findings(self.log(), as_of or self.clock.now(), self.contract)

    def month(self, month: ServiceMonth, as_of: dt.datetime | None = None) -> IncidentMonth:
        """``month``'s days without the 24-hour service, outage minutes and findings."""
        return month_of_incidents(self.log(), month, as_of or self.clock.now())

    # --- commands -----------------------------------------------------------------------

    def _when(self, at: dt.datetime | None, now: dt.datetime) -> dt.datetime:
        if at is None:
            return now
        _aware("at", at)
        if at > now:
            raise InvalidIncident("at", at.isoformat(), f"is later than now ({now.isoformat()})")
        oldest = now - dt.timedelta(days=366 * self.contract.retention_years)
        if at < oldest:
            raise InvalidIncident(
                "at",
                at.isoformat(),
                f"is more than the {self.contract.retention_years} years the records are "
                "kept (二(四)) in the past",
            )
        return at

    def _decide(self, make: Callable[[IncidentLog, dt.datetime], IncidentRecord]) -> Incident:
        """Fold, decide, append at the length read; again when another writer came
        first (at most ``max_retries`` times)."""
        for _ in range(self.max_retries):
            records = self.store.records()
            log = fold(records, self.contract)
            record = make(log, self.clock.now())
            log.apply(record)  # the typed refusal, before anything is written
            try:
                self.store.append(record, len(records))
            except IncidentConflict as exc:
                conflict = exc
                continue
            return log.get(record.incident_id)
        raise conflict

    def start_outage(
        self, cause: str, *, at: dt.datetime | None = None, actor: str = "operator"
    ) -> Outage:
        """二(五): the service stopped for a technical fault at ``at`` (default now).

        Refused: a naive or future time, an empty, oversized or multi-line cause or one
        with a phone number (:class:`InvalidIncident`); an outage already open, or a
        start before the previous outage ended (:class:`IncidentRefused`). The fault's
        notice to 110 is then due within 30 minutes of ``at``.
        """
        _text("cause", cause, MAX_CAUSE)
        _text("actor", actor, MAX_ACTOR)

        def make(log: IncidentLog, now: dt.datetime) -> IncidentRecord:
            return OutageStarted(
                f"outage-{len(log.outages()) + 1:04d}", self._when(at, now), cause, now, actor
            )

        found = self._decide(make)
        assert isinstance(found, Outage)
        return found

    def end_outage(
        self,
        *,
        at: dt.datetime | None = None,
        actor: str = "operator",
        incident_id: str | None = None,
    ) -> Outage:
        """二(五): the fault was removed and the service restored at ``at`` (default now).

        Ends the open outage (``incident_id`` must name it when given). Refused: none open
        (:class:`IncidentRefused`), an unknown id (:class:`UnknownIncident`), an end not
        after the start. The recovery notice is then due within 30 minutes of ``at``.
        """
        _text("actor", actor, MAX_ACTOR)

        def make(log: IncidentLog, now: dt.datetime) -> IncidentRecord:
            target = incident_id
            if target is None:
                current = log.open_outage
                if current is None:
                    raise IncidentRefused("no outage is open")
                target = current.incident_id
            return OutageEnded(target, self._when(at, now), now, actor)

        found = self._decide(make)
        assert isinstance(found, Outage)
        return found

    def report_security_incident(
        self,
        kind: SecurityKind | str,
        summary: str,
        *,
        at: dt.datetime | None = None,
        actor: str = "operator",
    ) -> SecurityIncident:
        """Annex 2 十六: a security incident of ``kind`` happened (or was found) at ``at``
        (default now); its written report is due within 24 hours of ``at``."""
        chosen = _security_kind(kind)
        _text("summary", summary, MAX_SUMMARY)
        _text("actor", actor, MAX_ACTOR)

        def make(log: IncidentLog, now: dt.datetime) -> IncidentRecord:
            return SecurityIncidentReported(
                f"security-{len(log.security_incidents()) + 1:04d}",
                chosen,
                summary,
                self._when(at, now),
                now,
                actor,
            )

        found = self._decide(make)
        assert isinstance(found, SecurityIncident)
        return found

    def record_notice(
        self,
        incident_id: str,
        kind: NoticeKind | str,
        *,
        at: dt.datetime | None = None,
        channel: str = "phone",
        actor: str = "operator",
    ) -> Incident:
        """Record a notice given outside the port (by phone to the 110 desk, say) at
        ``at`` (default now): it is then not sent again. :class:`UnknownIncident` for an
        id the log does not hold; :class:`IncidentRefused` for a notice recorded already,
        one the incident does not have, or dated before what it reports."""
        chosen = _notice_kind(kind)
        _text("channel", channel, MAX_CHANNEL)
        _text("actor", actor, MAX_ACTOR)
        if not isinstance(incident_id, str):
            raise UnknownIncident(incident_id)

        def make(log: IncidentLog, now: dt.datetime) -> IncidentRecord:
            log.get(incident_id)
            return NoticeSent(
                incident_id,
                chosen,
                notice_key(incident_id, chosen),
                self._when(at, now),
                now,
                actor,
                channel,
            )

        return self._decide(make)

    # --- delivery -----------------------------------------------------------------------

    def run_due(self) -> list[NoticeRun]:
        """Send every pending notice through the port and record each one sent.

        A send that fails leaves the notice pending (tried again after ``retry_after``);
        a notice the port took whose record failed is recorded on the next call, with the
        time it was sent, without sending it again. Runs one at a time per service.
        """
        with self._lock:
            runs = self._record_unrecorded()
            tried: set[str] = set()
            while True:  # again after a round that sent a fault notice: its recovery's turn
                log = self.log()
                now = self.clock.now()
                todo = [
                    need
                    for need in log.pending()
                    if need.key not in tried
                    and need.key not in self._unrecorded
                    and self._retry_at.get(need.key, now) <= now
                ]
                if not todo:
                    return runs
                for need in todo:
                    tried.add(need.key)
                    runs.append(self._send(log, need))

    def _send(self, log: IncidentLog, need: RequiredNotice) -> NoticeRun:
        subject, message = render_notice(log.get(need.incident_id), need.kind)
        try:
            if self.centre is None:
                raise PortError("no 110 desk (CommandCentre) is configured")
            self.centre.notify(need.key, subject, message)
        except Exception as exc:  # whatever the port raised, the notice was not taken
            self._retry_at[need.key] = self.clock.now() + self.retry_after
            return NoticeRun(
                need.key, need.incident_id, need.kind, "failed", f"{type(exc).__name__}: {exc}"
            )
        sent_at = self.clock.now()
        self._retry_at.pop(need.key, None)
        self._unrecorded[need.key] = (need, sent_at)
        return self._record(need, sent_at)

    def _record(self, need: RequiredNotice, sent_at: dt.datetime) -> NoticeRun:
        # A worker whose clock is behind the one that recorded the event could read a
        # send time before it: the notice cannot precede what it reports (no delay).
        when = max(sent_at, need.occurred_at)
        late = is_late(need.kind, need.occurred_at, when, self.contract)

        def make(log: IncidentLog, now: dt.datetime) -> IncidentRecord:
            return NoticeSent(
                need.incident_id,
                need.kind,
                need.key,
                when,
                max(now, when),
                SERVICE_ACTOR,
                PORT_CHANNEL,
            )

        try:
            self._decide(make)
        except IncidentRefused as exc:
            # Recorded meanwhile (another worker sent it too; the key made it one notice)?
            incident = self.log().get(need.incident_id)
            if not any(n.kind is need.kind for n in incident.notices):
                return NoticeRun(
                    need.key, need.incident_id, need.kind, "sent, not recorded", str(exc), late
                )
        except MoveCarError as exc:
            return NoticeRun(
                need.key,
                need.incident_id,
                need.kind,
                "sent, not recorded",
                f"{type(exc).__name__}: {exc}",
                late,
            )
        self._unrecorded.pop(need.key, None)
        return NoticeRun(need.key, need.incident_id, need.kind, "sent", None, late)

    def _record_unrecorded(self) -> list[NoticeRun]:
        return [self._record(need, sent_at) for need, sent_at in list(self._unrecorded.values())]


__all__ = [
    "GAP_CLAUSE",
    "OUTAGE_CLAUSE",
    "SECURITY_CLAUSE",
    "CorruptIncidentLog",
    "InMemoryIncidentStore",
    "Incident",
    "IncidentConflict",
    "IncidentError",
    "IncidentLog",
    "IncidentMonth",
    "IncidentRecord",
    "IncidentRefused",
    "IncidentStore",
    "Incidents",
    "InvalidIncident",
    "NoticeKind",
    "NoticeRun",
    "NoticeSent",
    "Outage",
    "OutageEnded",
    "OutageStarted",
    "RequiredNotice",
    "SecurityIncident",
    "SecurityIncidentReported",
    "SecurityKind",
    "SentNotice",
    "UnknownIncident",
    "decode_record",
    "encode_record",
    "fold",
    "interrupted_days",
    "is_late",
    "late_notices",
    "month_of_incidents",
    "notice_allowance",
    "notice_finding",
    "notice_findings",
    "notice_key",
    "render_notice",
    "type_name",
]
