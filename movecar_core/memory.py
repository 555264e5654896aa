"""Complete in-memory implementations of every port.

Real implementations, not mocks: the simulator, the examples and the tests run the
engine on them, and each passes the same contract suite as the SQL adapters
(:mod:`movecar_core.testing.contracts`). Thread-safe, so concurrency tests can use them.
They do no I/O, so they live in the core, beside the ports they implement (as
``eventsourcing`` keeps its plain-Python recorders beside the abstractions).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence

import attrs

from movecar_core.case import Event
from movecar_core.errors import (
    ConcurrencyConflict,
    InvalidInput,
    RegistryUnavailable,
    TelephonyError,
)
from movecar_core.plates import parse_plate
from movecar_core.ports import OutboundCallRequest, OwnerContact

__all__ = [
    "InMemoryCaseStore",
    "InMemoryCommandCentre",
    "InMemoryNotifier",
    "InMemoryTelephony",
    "InMemoryVehicleRegistry",
]


class InMemoryCaseStore:
    """Event streams in a dict, appended under a lock with optimistic concurrency."""

    def __init__(self) -> None:
        self._streams: dict[str, list[Event]] = {}
        self._lock = threading.Lock()

    def load(self, case_id: str) -> Sequence[Event]:
        with self._lock:
            return tuple(self._streams.get(case_id, ()))

    def append(self, case_id: str, events: Sequence[Event], expected_version: int) -> int:
        if not events:
            raise InvalidInput(f"append to case {case_id}: no events to append")
        strangers = [e for e in events if e.case_id != case_id]
        if strangers:
            raise InvalidInput(f"append to case {case_id}: events of case {strangers[0].case_id}")
        with self._lock:
            stream = self._streams.get(case_id)
            actual = 0 if stream is None else len(stream)
            if actual != expected_version:
                raise ConcurrencyConflict(case_id, expected_version, actual)
            if stream is None:
                stream = self._streams[case_id] = []
            stream.extend(events)
            return len(stream)

    def case_ids(self) -> Iterator[str]:
        with self._lock:
            ids = list(self._streams)
        return iter(ids)


class InMemoryVehicleRegistry:
    """Plate -> owner phone, with a switch to simulate the platform being down."""

    def __init__(self, owners: Mapping[str, str] | None = None, source: str = "memory") -> None:
        self.source = source
        self.available = True
        self.lookups: list[str] = []
        self._owners = {parse_plate(p).canonical: phone for p, phone in (owners or {}).items()}

    def add(self, plate: str, phone: str) -> None:
        self._owners[parse_plate(plate).canonical] = phone

    def lookup(self, plate: str) -> OwnerContact | None:
        if not self.available:
            raise RegistryUnavailable(f"registry {self.source!r} is unavailable")
        self.lookups.append(plate)
        phone = self._owners.get(plate)
        return None if phone is None else OwnerContact(phone=phone, source=self.source)


@attrs.frozen
class Transfer:
    case_id: str
    number: str
    reason: str


class InMemoryTelephony:
    """Records every call placed and every transfer; can be told to fail."""

    def __init__(self) -> None:
        self.calls: list[OutboundCallRequest] = []
        self.transfers: list[Transfer] = []
        self.failing = False
        self._lock = threading.Lock()

    def place_call(self, request: OutboundCallRequest) -> None:
        if self.failing:
            raise TelephonyError(f"call {request.call_id}: the switch refused the call")
        with self._lock:
            if all(c.call_id != request.call_id for c in self.calls):
                self.calls.append(request)

    def transfer_to_110(self, case_id: str, number: str, reason: str) -> None:
        if self.failing:
            raise TelephonyError(f"case {case_id}: transfer to {number} failed")
        with self._lock:
            self.transfers.append(Transfer(case_id, number, reason))


@attrs.frozen
class Notification:
    case_id: str
    phone: str
    message: str


class InMemoryNotifier:
    """Keeps every message sent to a requester."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def notify(self, case_id: str, requester_phone: str, message: str) -> None:
        self.sent.append(Notification(case_id, requester_phone, message))


@attrs.frozen
class Notice:
    key: str
    subject: str
    message: str


class InMemoryCommandCentre:
    """The 110 desk's inbox: keeps each notice once, by key (a repeat is dropped)."""

    def __init__(self) -> None:
        self.notices: list[Notice] = []
        self._keys: set[str] = set()
        self._lock = threading.Lock()

    def notify(self, key: str, subject: str, message: str) -> None:
        with self._lock:
            if key not in self._keys:
                self._keys.add(key)
                self.notices.append(Notice(key, subject, message))
