"""Events to and from plain JSON-safe dicts, for adapters that store or send them.

The stored form is ``(type name, payload)``; the type name is the event class's name
(see :data:`~movecar_core.case.EVENT_TYPES`) and the payload holds every field except
``case_id`` (the stream it is stored in says that). Datetimes are ISO 8601 with offset.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import attrs

from movecar_core.case import EVENT_TYPES, Event
from movecar_core.errors import MoveCarError


class UnknownEventType(MoveCarError):
    """A stored event whose type this version of the library does not know."""


class MalformedEvent(MoveCarError):
    """A stored event whose payload does not fit its type."""


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise MalformedEvent(f"naive datetime {value!r}: events need aware times")
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return value


def encode(event: Event) -> tuple[str, dict[str, Any]]:
    """``(type name, payload)`` for ``event``."""
    payload = {
        a.name: _plain(getattr(event, a.name))
        for a in attrs.fields(type(event))
        if a.name != "case_id"
    }
    return type(event).__name__, payload


_CONVERTERS: dict[type[Any], Any] = {}


def _field_converter(tp: Any) -> Any:
    """How to rebuild a field of (resolved) type ``tp`` from its plain form."""
    if tp is dt.datetime:
        return dt.datetime.fromisoformat
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp
    # Optional enums: ``X | None``
    args = getattr(tp, "__args__", ())
    for arg in args:
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            enum_type = arg
            return lambda v: None if v is None else enum_type(v)
    return None


def _converters(cls: type[Any]) -> dict[str, Any]:
    found = _CONVERTERS.get(cls)
    if found is None:
        attrs.resolve_types(cls)
        found = {
            a.name: conv for a in attrs.fields(cls) if (conv := _field_converter(a.type)) is not None
        }
        _CONVERTERS[cls] = found
    result: dict[str, Any] = found
    return result


def decode(case_id: str, type_name: str, payload: dict[str, Any]) -> Event:
    """The event stored as ``(type_name, payload)`` in case ``case_id``."""
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise UnknownEventType(f"case {case_id}: unknown event type {type_name!r}")
    names = {a.name for a in attrs.fields(cls)} - {"case_id"}
    if set(payload) != names:
        raise MalformedEvent(
            f"case {case_id}: {type_name} payload has fields {sorted(payload)}, "
            f"expected {sorted(names)}"
        )
    converters = _converters(cls)
    try:
        kwargs = {k: (converters[k](v) if k in converters else v) for k, v in payload.items()}
        event: Event = cls(case_id=case_id, **kwargs)
    except (TypeError, ValueError) as exc:
        raise MalformedEvent(f"case {case_id}: {type_name} payload {payload!r}: {exc}") from exc
    return event
