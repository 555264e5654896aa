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


def _plain_for(tp: Any, name: str) -> Callable[[Any], Any]:
    """How to check a field of (resolved) type ``tp`` and turn its value into JSON.

    Checked on the way out as strictly as :func:`decode` checks on the way in, so only
    what can be read back is ever written.
    """
    args = getattr(tp, "__args__", None)
    if args is not None:  # ``X | None``
        inner = _plain_for(next(a for a in args if a is not type(None)), name)
        return lambda v: None if v is None else inner(v)
    if tp is dt.datetime:

        def iso(v: Any) -> str:
            if not isinstance(v, dt.datetime) or v.utcoffset() is None:
                raise MalformedEvent(
                    f"{name}={v!r:.80}: naive or not a datetime; need an aware one"
                )
            return v.isoformat()

        return iso
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        enum_type = tp

        def member(v: Any) -> Any:
            if not isinstance(v, enum_type):
                raise MalformedEvent(f"{name}={v!r:.80}: expected a {enum_type.__name__}")
            return v.value

        return member
    exact: type[Any] = tp

    def same(v: Any) -> Any:
        if type(v) is not exact:
            raise MalformedEvent(f"{name}={v!r:.80}: expected {exact.__name__}")
        return v

    return same


_ENCODERS: dict[type[Any], tuple[tuple[str, Callable[[Any], Any]], ...]] = {}


def _encoders(cls: type[Any]) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
    found = _ENCODERS.get(cls)
    if found is None:
        attrs.resolve_types(cls)
        found = tuple(
            (a.name, _plain_for(a.type, f"{cls.__name__}.{a.name}"))
            for a in attrs.fields(cls)
            if a.name != "case_id"
        )
        _ENCODERS[cls] = found
    return found


def encode(event: Event) -> tuple[str, dict[str, Any]]:
    """``(type name, payload)`` for ``event``.

    Raises :class:`UnknownEventType` for an object that is not a movecar event and
    :class:`MalformedEvent` for a field holding a value of the wrong type.
    """
    cls = type(event)
    if EVENT_TYPES.get(cls.__name__) is not cls:
        raise UnknownEventType(f"{event!r:.80} is not a movecar event")
    return cls.__name__, {name: plain(getattr(event, name)) for name, plain in _encoders(cls)}


_CONVERTERS: dict[type[Any], dict[str, Any]] = {}


class _RejectError(Exception):
    """Internal: a payload value of the wrong type (turned into MalformedEvent)."""


def _datetime(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise _RejectError(f"expected an ISO 8601 string, found {type(value).__name__}")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise _RejectError(str(exc)) from exc
    if parsed.tzinfo is None:
        raise _RejectError("a datetime without offset: events need aware times")
    return parsed


def _field_converter(tp: Any) -> Any:
    """How to check and rebuild a field of (resolved) type ``tp`` from its plain form.

    Every value is checked against its field's type: a stored ``attempt`` of ``"1"`` or a
    ``found`` of ``1`` is malformed, not silently accepted.
    """
    args = getattr(tp, "__args__", None)
    if args is not None:  # ``X | None``
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1 or len(args) != 2:
            raise MoveCarError(f"codec: unsupported field type {tp!r}")
        convert = _field_converter(inner[0])
        return lambda v: None if v is None else convert(v)
    if tp is dt.datetime:
        return _datetime
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        enum_type = tp

        def to_enum(v: Any) -> Any:
            if not isinstance(v, str):
                found = type(v).__name__
                raise _RejectError(f"expected a {enum_type.__name__} string, found {found}")
            try:
                return enum_type(v)
            except ValueError as exc:
                raise _RejectError(f"{v!r} is not a {enum_type.__name__}") from exc

        return to_enum
    if tp is bool:

        def to_bool(v: Any) -> bool:
            if type(v) is not bool:
                raise _RejectError(f"expected a bool, found {type(v).__name__}")
            return v

        return to_bool
    if tp is int:

        def to_int(v: Any) -> int:
            if type(v) is not int:
                raise _RejectError(f"expected an int, found {type(v).__name__}")
            return v

        return to_int
    if tp is str:

        def to_str(v: Any) -> str:
            if type(v) is not str:
                raise _RejectError(f"expected a string, found {type(v).__name__}")
            return v

        return to_str
    raise MoveCarError(f"codec: unsupported field type {tp!r}")


def _converters(cls: type[Any]) -> dict[str, Any]:
    found = _CONVERTERS.get(cls)
    if found is None:
        attrs.resolve_types(cls)
        found = {a.name: _field_converter(a.type) for a in attrs.fields(cls) if a.name != "case_id"}
        _CONVERTERS[cls] = found
    return found


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
    converters = _converters(cls)
    if payload.keys() != converters.keys():
        raise MalformedEvent(
            f"case {case_id}: {type_name} payload has fields {sorted(payload)}, "
            f"expected {sorted(converters)}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in payload.items():
        try:
            kwargs[name] = converters[name](value)
        except _RejectError as exc:
            raise MalformedEvent(
                f"case {case_id}: {type_name}.{name}={value!r:.80}: {exc}"
            ) from None
    try:
        event: Event = cls(case_id=case_id, **kwargs)
    except (TypeError, ValueError) as exc:
        raise MalformedEvent(f"case {case_id}: {type_name} payload {payload!r}: {exc}") from exc
    return event
