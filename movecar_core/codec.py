"""Events to and from plain JSON-safe dicts, for adapters that store or send them.

The stored form is ``(type name, payload)``; the type name is the event class's name
(see :data:`~movecar_core.case.EVENT_TYPES`) and the payload holds every field except
``case_id`` (the stream it is stored in says that). Datetimes are ISO 8601 with offset.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from typing import Any

import attrs

from movecar_core.case import EVENT_TYPES, Event
from movecar_core.errors import MoveCarError


class UnknownEventType(MoveCarError):
    """A stored event whose type this version of the library does not know."""


class MalformedEvent(MoveCarError):
    """A stored event whose payload does not fit its type."""


class _RejectError(Exception):
    """Internal: a value of the wrong type (turned into MalformedEvent with its context)."""


Convert = Callable[[Any], Any]


def _exactly(tp: type[Any]) -> Convert:
    def same(v: Any) -> Any:
        if type(v) is not tp:
            raise _RejectError(f"expected {tp.__name__}, found {type(v).__name__}")
        return v

    return same


def _to_iso(v: Any) -> str:
    if not isinstance(v, dt.datetime) or v.utcoffset() is None:
        raise _RejectError("naive or not a datetime: events need aware times")
    return v.isoformat()


def _from_iso(v: Any) -> dt.datetime:
    if not isinstance(v, str):
        raise _RejectError(f"expected an ISO 8601 string, found {type(v).__name__}")
    try:
        parsed = dt.datetime.fromisoformat(v)
    except ValueError as exc:
        raise _RejectError(str(exc)) from exc
    if parsed.tzinfo is None:
        raise _RejectError("a datetime without offset: events need aware times")
    return parsed


def _field_codec(tp: Any) -> tuple[Convert, Convert]:
    """``(to JSON, from JSON)`` for a field of (resolved) type ``tp``.

    Both directions check as strictly: only what can be read back is ever written, and a
    stored ``attempt`` of ``"1"`` or a ``found`` of ``1`` is malformed, not accepted.
    """
    args = getattr(tp, "__args__", None)
    if args is not None:  # ``X | None``
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1 or len(args) != 2:
            raise MoveCarError(f"codec: unsupported field type {tp!r}")
        out, back = _field_codec(inner[0])
        return (
            lambda v: None if v is None else out(v),
            lambda v: None if v is None else back(v),
        )
    if tp is dt.datetime:
        return _to_iso, _from_iso
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        members: type[enum.Enum] = tp

        def to_value(v: Any) -> Any:
            if not isinstance(v, members):
                raise _RejectError(f"expected a {members.__name__}, found {v!r:.40}")
            return v.value

        def to_member(v: Any) -> Any:
            if not isinstance(v, str):
                raise _RejectError(f"expected a {members.__name__} string")
            try:
                return members(v)
            except ValueError as exc:
                raise _RejectError(f"{v!r} is not a {members.__name__}") from exc

        return to_value, to_member
    if tp in (str, int, bool):
        check = _exactly(tp)
        return check, check
    raise MoveCarError(f"codec: unsupported field type {tp!r}")


_FIELDS: dict[type[Any], dict[str, tuple[Convert, Convert]]] = {}


def _fields(cls: type[Any]) -> dict[str, tuple[Convert, Convert]]:
    """Field name -> (to JSON, from JSON) of an event class (``case_id`` excepted)."""
    found = _FIELDS.get(cls)
    if found is None:
        attrs.resolve_types(cls)
        found = {a.name: _field_codec(a.type) for a in attrs.fields(cls) if a.name != "case_id"}
        _FIELDS[cls] = found
    return found


def encode(event: Event) -> tuple[str, dict[str, Any]]:
    """``(type name, payload)`` for ``event``.

    Raises :class:`UnknownEventType` for an object that is not a movecar event and
    :class:`MalformedEvent` for a field holding a value of the wrong type.
    """
    cls = type(event)
    name = cls.__name__
    if EVENT_TYPES.get(name) is not cls:
        raise UnknownEventType(f"{event!r:.80} is not a movecar event")
    payload: dict[str, Any] = {}
    for field, (out, _) in _fields(cls).items():
        value = getattr(event, field)
        try:
            payload[field] = out(value)
        except _RejectError as exc:
            raise MalformedEvent(f"{name}.{field}={value!r:.80}: {exc}") from None
    return name, payload


def decode(case_id: str, type_name: str, payload: dict[str, Any]) -> Event:
    """The event stored as ``(type_name, payload)`` in case ``case_id``.

    Raises :class:`UnknownEventType` for a type this library does not know and
    :class:`MalformedEvent` for a payload that is not a dict, lacks or adds a field, or
    holds a value of the wrong type for its field.
    """
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise UnknownEventType(f"case {case_id}: unknown event type {type_name!r}")
    if not isinstance(payload, dict):
        raise MalformedEvent(
            f"case {case_id}: {type_name} payload must be an object, not {type(payload).__name__}"
        )
    fields = _fields(cls)
    if payload.keys() != fields.keys():
        raise MalformedEvent(
            f"case {case_id}: {type_name} payload has fields {sorted(payload)}, "
            f"expected {sorted(fields)}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in payload.items():
        try:
            kwargs[name] = fields[name][1](value)
        except _RejectError as exc:
            raise MalformedEvent(
                f"case {case_id}: {type_name}.{name}={value!r:.80}: {exc}"
            ) from None
    try:
        event: Event = cls(case_id=case_id, **kwargs)
    except (TypeError, ValueError) as exc:
        raise MalformedEvent(f"case {case_id}: {type_name} payload {payload!r}: {exc}") from exc
    return event
