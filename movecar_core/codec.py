"""Events to and from plain JSON-safe dicts, for adapters that store or send them.

The stored form is ``(type name, payload)``; the type name is the event class's name
(see :data:`~movecar_core.case.EVENT_TYPES`) and the payload holds every field except
``case_id`` (the stream it is stored in says that). Datetimes are ISO 8601 with offset.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Callable, Iterable
from json.encoder import encode_basestring
from typing import Any

import attrs

from movecar_core.case import EVENT_TYPES, CaseRecord, Event
from movecar_core.errors import MoveCarError
from movecar_core.integrity import canonical_json
from movecar_core.text import FORBIDDEN, text_problem


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


def _text(v: Any) -> str:
    if type(v) is not str:
        raise _RejectError(f"expected str, found {type(v).__name__}")
    problem = text_problem(v)
    if problem is not None:
        raise _RejectError(problem)
    return v


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
    if tp is str:
        # Written text follows the core's character rule (movecar_core.text; a store
        # bounds lengths by its columns); read text is only type-checked, so a history
        # stored before the rule still loads.
        return _text, _exactly(str)
    if tp in (int, bool):
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


_OPTIONAL: dict[type[Any], frozenset[str]] = {}


def _optional(cls: type[Any]) -> frozenset[str]:
    """Fields added to a stored event class after its first release: they have a default,
    and a payload stored before them may lack them (it reads as the default)."""
    found = _OPTIONAL.get(cls)
    if found is None:
        found = frozenset(a.name for a in attrs.fields(cls) if a.default is not attrs.NOTHING)
        _OPTIONAL[cls] = found
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
    if payload.keys() != fields.keys() and not (
        payload.keys() <= fields.keys() and fields.keys() - payload.keys() <= _optional(cls)
    ):
        raise MalformedEvent(
            f"case {case_id}: {type_name} payload has fields {sorted(payload)!r:.200}, "
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


# --- a case's record, for a store that keeps it beside the events ------------------------


class MalformedRecord(MoveCarError):
    """A kept case record that does not fit :class:`~movecar_core.case.CaseRecord`."""


def _record_codecs() -> list[tuple[str, Convert, Convert]]:
    attrs.resolve_types(CaseRecord)
    out = []
    for a in attrs.fields(CaseRecord):
        if a.name == "case_id":  # the row it is kept in says that
            continue
        to_json, from_json = _field_codec(a.type)
        if a.type is str or a.type == str | None:
            # Type-checked only, both ways: a record folds histories stored before the
            # core's character rule, which must still load and append.
            to_json = from_json
        out.append((a.name, to_json, from_json))
    return out


_RECORD = _record_codecs()
#: The fewest fields a kept record may have: fields added to CaseRecord after the first
#: release come last and have defaults, so a record kept before them reads as those.
_RECORD_FIELDS_AT_FIRST_RELEASE = 13


#: JSON without spaces, non-ASCII kept (plates, locations): one encoder, made once.
_RECORD_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode_record(record: CaseRecord) -> str:
    """``record`` as one JSON array, its fields in :class:`~movecar_core.case.CaseRecord`'s
    order (``case_id`` left out): what a store keeps beside the case's events.

    Every field goes through the same check :func:`decode_record` makes (a record a store
    could not read back is never written); an append pays for it once per command.
    """
    try:
        values = [out(getattr(record, name)) for name, out, _ in _RECORD]
    except _RejectError as exc:
        raise MalformedRecord(f"case {record.case_id}: {exc}") from None
    return _RECORD_JSON(values)


def decode_record(case_id: str, text: str) -> CaseRecord:
    """The record :func:`encode_record` wrote for case ``case_id``; every field is checked
    as strictly as an event's (:class:`MalformedRecord` otherwise)."""
    try:
        values = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MalformedRecord(f"case {case_id}: kept record is not JSON") from exc
    if type(values) is not list or not (
        _RECORD_FIELDS_AT_FIRST_RELEASE <= len(values) <= len(_RECORD)
    ):
        raise MalformedRecord(f"case {case_id}: kept record is not a list of {len(_RECORD)}")
    kwargs: dict[str, Any] = {}
    for (name, _, back), value in zip(_RECORD, values, strict=False):
        try:
            kwargs[name] = back(value)
        except _RejectError as exc:
            raise MalformedRecord(f"case {case_id}: kept record's {name}: {exc}") from None
    return CaseRecord(case_id=case_id, **kwargs)


# --- canonical JSON straight from an event (the bulk path) -------------------------------

#: ``seal(value, field name)``: the stored form of one sealed field's value. The field name
#: is given so that the seal can bind the value to its place (the SQL store's associated
#: data names the case, the event and the field).
Seal = Callable[[str, str], str]


class CanonicalEncoder:
    """``(type name, plain, sealed)``: an event's payload as canonical JSON, fast.

    ``plain`` is ``canonical_json(encode(event)[1])`` (what the hash chain covers) and
    ``sealed`` the same payload with the non-null value of every field named in ``sealed``
    replaced by ``seal(value, field)`` (the stored form, phones encrypted); without ``seal`` the two
    are the same string. The definition is :func:`encode` followed by
    :func:`~movecar_core.integrity.canonical_json`; this class computes the same strings
    with one generated function per event class, which writes the JSON text directly
    (a third of the time of building the dict and running ``json``'s encoder, the bulk
    path's largest cost). Anything the generated function does not accept goes the defining
    way, so errors are exactly :func:`encode`'s, and ``tests/test_codec.py`` checks both
    ways agree for every generated event, good or bad.
    """

    def __init__(self, sealed: Iterable[str] = ()) -> None:
        self.sealed = frozenset(sealed)
        #: The writer of each event class, ``writers[type(event)](event, seal)``: what
        #: :meth:`__call__` does, minus a call (for loops over millions of events).
        self.writers = _Writers(self)

    def __call__(self, event: Event, seal: Seal | None = None) -> tuple[str, str, str]:
        return self.writers[type(event)](event, seal)

    def defining(self, event: Event, seal: Seal | None = None) -> tuple[str, str, str]:
        """The same result by the defining way (slow; raises :func:`encode`'s errors)."""
        name, payload = encode(event)
        plain = canonical_json(payload)
        if seal is None or not self.sealed.intersection(payload):
            return name, plain, plain
        stored = {
            k: seal(v, k) if k in self.sealed and type(v) is str else v for k, v in payload.items()
        }
        return name, plain, canonical_json(stored)


Writer = Callable[[Any, Seal | None], tuple[str, str, str]]


class _Writers(dict[type[Any], Writer]):
    """Writers by event class, each compiled on first use; other classes get the defining
    way, which raises :class:`UnknownEventType` (they are not kept)."""

    def __init__(self, encoder: CanonicalEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def __missing__(self, cls: type[Any]) -> Writer:
        if EVENT_TYPES.get(cls.__name__) is not cls:
            return self.encoder.defining
        writer = self[cls] = _compile(cls, self.encoder.sealed, self.encoder.defining)
        return writer


def _compile(cls: type[Any], sealed: frozenset[str], defining: Writer) -> Writer:
    """Source of ``(event, seal) -> (type name, plain, stored)`` for ``cls``, compiled once.

    Each field is checked as :func:`_field_codec` checks it (exact ``str``/``int``/``bool``,
    aware ``datetime``, a member of its enum) and any doubt sends the event to ``defining``
    (the defining way, which raises the precise error or gives the same result). The JSON
    text is written as ``json`` would with sorted keys, no spaces and UTF-8 kept:
    ``encode_basestring`` is ``json``'s own string escaper; ISO datetimes need no escaping.
    """
    _fields(cls)  # resolves the annotations, and refuses types the codec does not know
    names: dict[str, Any] = {
        "ebs": encode_basestring,
        "datetime": dt.datetime,
        "R": _RejectError,
        "defining": defining,
        "bad": FORBIDDEN.search,
    }
    lines = []
    plain, stored, seal_lines = [], [], []
    fields = sorted((a for a in attrs.fields(cls) if a.name != "case_id"), key=lambda a: a.name)
    for i, field in enumerate(fields):
        tp, optional = field.type, False
        args = getattr(tp, "__args__", None)
        if args is not None:
            tp, optional = next(a for a in args if a is not type(None)), True
        raw, text = f"r{i}", f"v{i}"
        quoted = False  # ISO datetimes need no escaping: the quotes go in the template
        lines.append(f"    {raw} = e.{field.name}")
        pad = "    "
        if optional:
            lines += [f"    if {raw} is None:", f"        {text} = 'null'", "    else:"]
            pad = "        "
        if tp is str:  # the text rule as _text checks it; a refusal goes the defining way
            lines += [
                f"{pad}if type({raw}) is not str or bad({raw}): raise R",
                f"{pad}{text} = ebs({raw})",
            ]
        elif tp is int:
            lines += [f"{pad}if type({raw}) is not int: raise R", f"{pad}{text} = repr({raw})"]
        elif tp is bool:
            lines += [
                f"{pad}if {raw} is True: {text} = 'true'",
                f"{pad}elif {raw} is False: {text} = 'false'",
                f"{pad}else: raise R",
            ]
        elif tp is dt.datetime:
            check = f"if not isinstance({raw}, datetime) or {raw}.utcoffset() is None: raise R"
            quoted = not optional  # else the quotes must not go around "null"
            iso = f"{raw}.isoformat()" if quoted else f"'\"' + {raw}.isoformat() + '\"'"
            lines += [f"{pad}{check}", f"{pad}{text} = {iso}"]
        elif isinstance(tp, type) and issubclass(tp, enum.Enum) and issubclass(tp, str):
            names[f"E{i}"] = tp
            lines += [
                f"{pad}if not isinstance({raw}, E{i}): raise R",
                f"{pad}{text} = ebs({raw}.value)",
            ]
        else:  # a type :func:`_field_codec` knows but this writer does not: the defining way
            lines.append("    raise R")
        plain.append(f'"{field.name}":"{{{text}}}"' if quoted else f'"{field.name}":{{{text}}}')
        if field.name in sealed and tp is str:
            seal_lines.append(
                f"    s{i} = {text} if {raw} is None else ebs(seal({raw}, {field.name!r}))"
            )
            stored.append(f'"{field.name}":{{s{i}}}')
        else:
            stored.append(plain[-1])
    name = cls.__name__
    lines.append(f"    plain = f'{{{{{','.join(plain)}}}}}'")
    if seal_lines:
        lines += ["    if seal is None:", f"        return '{name}', plain, plain", *seal_lines]
        lines.append(f"    return '{name}', plain, f'{{{{{','.join(stored)}}}}}'")
    else:
        lines.append(f"    return '{name}', plain, plain")
    body = "\n".join("    " + line for line in lines)
    source = f"def encode_fast(e, seal):\n  try:\n{body}\n  except R:\n    return defining(e, seal)"
    exec(compile(source, f"<movecar canonical {cls.__name__}>", "exec"), names)
    fn: Writer = names["encode_fast"]
    return fn
