"""Ports: what the core needs from the outside world, as ``typing.Protocol``s.

Each port has a complete in-memory adapter in :mod:`movecar_core.memory` and a contract test
suite in :mod:`movecar_core.testing.contracts` that every adapter of the port must pass.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

import attrs

from movecar_core.calls import (
    CallEvent,
    CallsInFlight,
    TransferOutcome,
    TransferRequest,
    call_key,
)
from movecar_core.case import CaseRecord, CaseState, Event
from movecar_core.outbox import OutboxStore, Plan


@runtime_checkable
class Clock(Protocol):
    """Time comes in through this port: the core never reads a global clock."""

    def now(self) -> dt.datetime:
        """The current time, timezone-aware."""
        ...


@runtime_checkable
class CaseStore(Protocol):
    """Cases as append-only event streams with optimistic concurrency.

    A case's version is the number of its stored events.

    A store that purges under the 3-year retention of 二(四) keeps a tombstone of each
    purged case (its id, no personal data): :meth:`load` and :meth:`append` then raise
    :class:`~movecar_core.errors.CasePurged`, so the id is never taken for a new or an
    unknown case. A store that never purges never raises it.
    """

    def load(self, case_id: str) -> Sequence[Event]:
        """The case's events in order; empty when there is no such case.

        Raises :class:`~movecar_core.errors.CasePurged` for a purged case.
        """
        ...

    def append(self, case_id: str, events: Sequence[Event], expected_version: int) -> int:
        """Append ``events`` after exactly ``expected_version`` stored events, atomically.

        Returns the new version. Raises
        :class:`~movecar_core.errors.ConcurrencyConflict` (and writes nothing) when the
        store holds a different number of events, e.g. because another writer got there
        first. Appending to version 0 creates the case. Raises
        :class:`~movecar_core.errors.CasePurged` (and writes nothing) for a purged case.
        """
        ...

    def case_ids(self) -> Iterator[str]:
        """Every stored case's id, in the order the cases were created (purged cases
        excluded)."""
        ...


@runtime_checkable
class FoldedCaseStore(CaseStore, OutboxStore, Protocol):
    """A store with an outbox that also keeps each case's record, the fold of its events,
    beside its stream, and hands back what each append computed (optional; the in-memory
    store does).

    Such a store folds the case on every append anyway (to refuse a batch no command
    sequence could produce) and plans the batch's effects: handing both back saves the
    engine a fold of the history and a second plan on every command. The engine does that
    work itself for a store without these methods.
    """

    def load_folded(self, case_id: str) -> tuple[Sequence[Event], CaseRecord | None]:
        """The case's events and their record, read together: the record always equals
        ``fold(events)`` (``((), None)`` when there is no such case). The record is the
        store's own: read it, never change it. Raises
        :class:`~movecar_core.errors.CasePurged` as :meth:`~CaseStore.load` does."""
        ...

    def append_folded(
        self, case_id: str, events: Sequence[Event], expected_version: int
    ) -> tuple[CaseRecord, Plan]:
        """:meth:`~CaseStore.append`, returning the case's record after ``events`` (its
        ``version`` is the new version; the store's own, read-only) and the effects
        planned for them (:func:`~movecar_core.outbox.plan` with the store's ``effects``)."""
        ...


@runtime_checkable
class OpenCases(Protocol):
    """The cases still open, read from an index the store keeps (optional; both stores
    have it): what an operator's overview shows without reading any case's history.

    A case is open while its state is not terminal (:data:`~movecar_core.case.TERMINAL_STATES`).
    Neither method reads events: the in-memory store keeps the open cases' records apart,
    the SQL store reads the state rows of open cases (``closed_at`` is NULL, indexed).
    """

    def open_counts(self) -> dict[CaseState, int]:
        """How many cases are open in each state (states with none are left out)."""
        ...

    def open_cases(self, limit: int) -> list[CaseRecord]:
        """The ``limit`` oldest open cases' records (by ``opened_at``, then creation),
        oldest first. The records are the store's own: read them, never change them."""
        ...


@attrs.frozen
class Backlog:
    """The outbox's pending effects at a moment: how many, how many are due, and the
    earliest due time (None: nothing pending)."""

    pending: int
    due: int
    oldest_due_at: dt.datetime | None


@runtime_checkable
class OutboxBacklog(Protocol):
    """How far the outbox is behind, from its due-time index (optional; both stores)."""

    def outbox_backlog(self, now: dt.datetime) -> Backlog:
        """The pending effects (done and cancelled ones are not), counting as due those
        with ``due_at <= now``; a leased effect is pending until it is completed."""
        ...


@attrs.frozen
class OwnerContact:
    """What the vehicle-owner data source tells about a plate."""

    phone: str
    source: str


class VehicleRegistry(Protocol):
    """二(二): owner data from the Jiangsu traffic-police platform.

    四: "未经甲方同意，不得将机动车信息用于除挪车服务以外任何用途" — the facade calls
    this only for an open case, and records every look-up as an event.
    """

    def lookup(self, plate: str) -> OwnerContact | None:
        """The owner's contact for a canonical plate, or None when the plate is unknown.

        Raises :class:`~movecar_core.errors.RegistryUnavailable` when the source cannot be
        reached.
        """
        ...


@attrs.frozen
class OutboundCallRequest:
    """One human-initiated outbound call to an owner (二(六)): the ``attempt``-th of the
    case, from ``caller_id`` (0519110), opening with ``greeting``."""

    call_id: str
    case_id: str
    agent_id: str
    caller_id: str
    callee: str
    greeting: str
    attempt: int
    plate: str = ""
    greeting_version: str = ""

    @property
    def key(self) -> str:
        """The call's idempotency key (:func:`~movecar_core.calls.call_key`)."""
        return call_key(self.case_id, self.attempt)


class Telephony(Protocol):
    """The phone switch: outbound calls to owners, and transfers to 110.

    Progress comes back as :class:`~movecar_core.calls.CallEvent` values, drained by the
    engine (:meth:`~movecar_core.app.MoveCar.pump_call_events`) or pushed by a gateway's
    callback into :meth:`~movecar_core.app.MoveCar.apply_call_event`.
    """

    def place_call(self, request: OutboundCallRequest) -> None:
        """Start dialling ``request.callee`` from ``request.caller_id``.

        At most one dial per ``request.key``: a key placed before is the same call, not
        dialled again. Raises :class:`~movecar_core.errors.TelephonyError` when the call
        cannot be placed at all (nothing was dialled).
        """
        ...

    def call_status(self, key: str) -> CallEvent | None:
        """The latest the switch knows of the call placed with ``key`` (``DIALLING`` when
        nothing was heard yet), or None when this switch never placed it: the engine
        reconciles a dial whose outcome was lost with this, and never redials blindly."""
        ...

    def drain_events(self) -> Sequence[CallEvent]:
        """The call events reported since the last drain, in the order they happened."""
        ...

    def in_flight(self) -> CallsInFlight:
        """The calls placed and not yet ended, in total and per seat (agent id)."""
        ...

    def transfer_to_110(self, request: TransferRequest) -> TransferOutcome:
        """Transfer the case's live call to the 110 command centre's line (二(五)), by
        REFER on SIP: accepted, refused by the far end, or failed (no live call, the
        switch down). Raises :class:`~movecar_core.errors.TelephonyError` only when the
        switch cannot be asked at all."""
        ...


class RequesterNotifier(Protocol):
    """Messages to the requester (e.g. SMS). Never carries the owner's contact."""

    def notify(self, case_id: str, requester_phone: str, message: str) -> None: ...


class CommandCentre(Protocol):
    """Written notices to the 110 command centre's desk (公安 110 接警台).

    二(五): escalations go to 110, and an outage must be notified within 30 minutes of the
    fault and of the recovery. ``key`` is unique per notice, so the receiving side can drop
    a repeat (a worker that crashed after sending, before marking the notice done).
    """

    def notify(self, key: str, subject: str, message: str) -> None: ...


@attrs.frozen
class FollowUpReminder:
    """Time to call the owner again: a reminder for the seat, never a dial.

    Annex 2 十三(四) "不采取自动语音群呼方式进行外呼": every outbound call is placed by a
    person, so the engine only reminds the seat application that a follow-up is due.
    """

    key: str
    case_id: str
    plate: str
    due_at: dt.datetime
    attempts_used: int
    attempts_left: int


class SeatReminders(Protocol):
    """Reminders for the seat application (坐席): follow-up calls that are due.

    ``reminder.key`` is unique per reminder, so a repeat after a crash can be dropped.
    """

    def follow_up(self, reminder: FollowUpReminder) -> None: ...
