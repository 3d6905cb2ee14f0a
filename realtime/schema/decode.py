"""Decoding with the schema's types, and the project's own error messages.

The fast path is msgspec decoding bytes straight into a Struct. When that fails, the slow path
finds out what is wrong in the project's own words: it reads the JSON again, walks the
declared type down the path msgspec reported, and words the message from that field's type
and limits (`extra["expects"]`, ranges, lengths). msgspec's text is never shown; only its
`- at `$.path`` suffix and the name of a missing field are read from it.

JSON Schema counts 2.0 as an integer, so the slow path also turns integral floats into ints
where an integer is declared and decodes once more: 2.0 is accepted as 2, 2.5 is refused.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from msgspec import inspect as mi

from realtime import errors
from realtime.schema.types import TIME_EXPECTS, Time, parse_time

T = TypeVar("T")

# Well-formed JSON the server will not read: nested deeper than the decoders go, or a number
# with more digits than Python converts to an int.
UNREADABLE = "cannot be read: nested too deeply or a number too long"
_AT = re.compile(r"(.*?)(?: - at `\$(.*)`)?", re.S)
_MISSING = re.compile(r"Object missing required field `(.*)`")
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def dec_hook(type_: type, value: Any) -> Any:
    if type_ is Time:
        return parse_time(value)
    raise NotImplementedError(type_)


def decoder(type_: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(type_, dec_hook=dec_hook)


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong with a message, worded by the project."""

    field: str  # "slots[0].ends_at"; the root's name when it is the whole message
    message: str  # "must be an integer from 1 to 1000000", "is required"
    wrong_type: bool  # missing, or another JSON type: the message could not be read at all
    unknown_tag: bool = False  # a tagged union's tag that names no member (`type` on /ws)

    def error(self) -> errors.ValidationError:
        return errors.ValidationError(self.field, self.message)


class Invalid(Exception):
    """A message that decodes as JSON but not as its type."""

    def __init__(self, problem: Problem, document: Any) -> None:
        super().__init__(f"{problem.field}: {problem.message}")
        self.problem = problem
        self.document = document  # the JSON as read again by the slow path


def decode(dec: msgspec.json.Decoder[T], raw: bytes | str, root: str) -> T:
    """Decode `raw` with `dec`; msgspec.DecodeError for what is not JSON, Invalid otherwise.

    The project's own errors raised by a Struct's `__post_init__` pass through unchanged.
    """
    try:
        return dec.decode(raw)
    except msgspec.ValidationError as exc:
        first = exc
    except RecursionError:  # well-formed JSON nested deeper than msgspec reads
        raise Invalid(Problem(root, UNREADABLE, True), None) from None
    try:
        # msgspec may refuse the type before it reads the rest: what is not JSON at all raises
        # DecodeError here.
        document = msgspec.json.decode(raw)
    except msgspec.ValidationError:  # a number past a float's range: well-formed JSON still
        try:
            document = json.loads(raw)
        except (ValueError, RecursionError):  # more digits than Python converts, or too deep
            raise Invalid(_unreadable(first, root), None) from None
    except RecursionError:  # well-formed JSON nested deeper than msgspec reads
        raise Invalid(_unreadable(first, root), None) from None
    return _settle(document, dec.type, first, root)


def _unreadable(exc: msgspec.ValidationError, root: str) -> Problem:
    """A message whose JSON cannot be read back as a whole: named by the path msgspec gave."""
    path = _AT.fullmatch(str(exc)).groups()[1]  # type: ignore[union-attr]
    segments: list[str | int] = [name if name else int(index)
                                 for name, index in _SEGMENT.findall(path or "")]
    return Problem(_name(segments, root), UNREADABLE, True)


def convert(value: Mapping[str, Any], type_: type[T], root: str) -> T:
    """`decode` for values already out of their JSON (query parameters)."""
    try:
        return msgspec.convert(value, type_, dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        return _settle(dict(value), type_, exc, root)


@functools.cache
def _info(type_: Any) -> mi.Type:
    return mi.type_info(type_)


def _settle(document: Any, type_: Any, exc: msgspec.ValidationError, root: str) -> Any:
    info = _info(type_)
    coerced = _coerce(document, info)
    if coerced is not document:
        try:
            return msgspec.convert(coerced, type_, dec_hook=dec_hook)
        except msgspec.ValidationError as again:
            exc = again
    raise Invalid(explain(exc, info, coerced, root), document)


# -- explaining a failure -----------------------------------------------------------------------


def explain(exc: msgspec.ValidationError, info: mi.Type, document: Any, root: str) -> Problem:
    text, path = _AT.fullmatch(str(exc)).groups()  # type: ignore[union-attr]
    segments: list[str | int] = [name if name else int(index)
                                 for name, index in _SEGMENT.findall(path or "")]
    missing = _MISSING.fullmatch(text)
    if missing:
        return Problem(_name([*segments, missing.group(1)], root), "is required", True)
    declared, parent = _walk(info, document, segments)
    value = _value_at(document, segments)
    name = _name(segments, root)
    if _is_tag(parent, segments):
        return Problem(name, "must name a message type", not isinstance(value, str),
                       unknown_tag=isinstance(value, str))
    if declared is None:
        return Problem(name, "is not valid", True)
    inner = _unwrap(declared)
    if isinstance(inner, mi.CustomType) and inner.cls is Time:
        # parse_time's ValueError: the project's own words.
        message = text if text.startswith("must be") else f"must be {TIME_EXPECTS}"
        return Problem(name, message, not isinstance(value, str))
    return Problem(name, "must be " + expects(declared), not _json_type_matches(value, declared))


def _name(segments: list[str | int], root: str) -> str:
    out = ""
    for seg in segments:
        out += f"[{seg}]" if isinstance(seg, int) else (f".{seg}" if out else seg)
    return out or root


def _unwrap(info: mi.Type) -> mi.Type:
    return info.type if isinstance(info, mi.Metadata) else info


def _members(info: mi.Type) -> list[mi.Type]:
    """The types a value may take, optional markers (None, UNSET) left out."""
    info = _unwrap(info)
    if isinstance(info, mi.UnionType):
        return [t for t in info.types if not isinstance(_unwrap(t), mi.NoneType)]
    return [info]


def _struct_for(info: mi.Type, value: Any) -> mi.StructType | None:
    structs = [t for t in map(_unwrap, _members(info)) if isinstance(t, mi.StructType)]
    if len(structs) > 1 and isinstance(value, dict):
        tag = value.get(structs[0].tag_field or "")
        return next((s for s in structs if s.tag == tag), None)
    return structs[0] if structs else None


def _walk(info: mi.Type, document: Any, segments: list[str | int]
          ) -> tuple[mi.Type | None, mi.Type | None]:
    """(the declared type at the path, the type of its parent)"""
    current: mi.Type | None = info
    parent: mi.Type | None = None
    value = document
    for seg in segments:
        if current is None:
            return None, None
        parent = current
        if isinstance(seg, int):
            lists = [t for t in map(_unwrap, _members(current)) if isinstance(t, mi.ListType)]
            current = lists[0].item_type if lists else None
            value = value[seg] if isinstance(value, list) and seg < len(value) else None
            continue
        struct = _struct_for(current, value)
        field = next((f for f in struct.fields if f.encode_name == seg), None) if struct else None
        current = field.type if field else None
        value = value.get(seg) if isinstance(value, dict) else None
    return current, parent


def _is_tag(parent: mi.Type | None, segments: list[str | int]) -> bool:
    if parent is None or not segments or not isinstance(segments[-1], str):
        return False
    structs = [t for t in map(_unwrap, _members(parent)) if isinstance(t, mi.StructType)]
    return bool(structs) and structs[0].tag_field == segments[-1]


def _value_at(document: Any, segments: list[str | int]) -> Any:
    value = document
    for seg in segments:
        try:
            value = value[seg]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def expects(info: mi.Type) -> str:
    """What a value of this declared type must be, in words."""
    if isinstance(info, mi.Metadata) and info.extra and "expects" in info.extra:
        return str(info.extra["expects"])
    members = _members(info)
    if len(members) != 1:
        return " or ".join(expects(m) for m in members)
    t = _unwrap(members[0])
    if isinstance(t, mi.IntType):
        low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else None)
        high = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else None)
        if low is not None and high is not None:
            return f"an integer from {low} to {high}"
        return f"an integer of at least {low}" if low is not None else "an integer"
    if isinstance(t, mi.StrType):
        if t.max_length is not None:
            return f"a string of {t.min_length or 0} to {t.max_length} characters"
        return "a string"
    if isinstance(t, mi.BoolType):
        return "true or false"
    if isinstance(t, mi.ListType):
        if t.max_length is not None:
            return f"a list of {t.min_length or 0} to {t.max_length} items"
        return "a list"
    if isinstance(t, mi.StructType | mi.DictType):
        return "a JSON object"
    if isinstance(t, mi.CustomType) and t.cls is Time:
        return TIME_EXPECTS
    if isinstance(t, mi.LiteralType):
        return "one of " + ", ".join(map(str, t.values))
    return "a valid value"


def _json_type_matches(value: Any, info: mi.Type) -> bool:
    for member in _members(info):
        t = _unwrap(member)
        if isinstance(t, mi.IntType | mi.FloatType):
            if isinstance(value, int | float) and not isinstance(value, bool):
                # A number, but 2.5 is no integer: wrong type, as JSON Schema sees it.
                return isinstance(t, mi.FloatType) or isinstance(value, int)
        elif isinstance(t, mi.StrType | mi.CustomType | mi.LiteralType):
            if isinstance(value, str):
                return True
        elif isinstance(t, mi.BoolType):
            if isinstance(value, bool):
                return True
        elif isinstance(t, mi.ListType):
            if isinstance(value, list):
                return True
        elif isinstance(t, mi.StructType | mi.DictType) and isinstance(value, dict):
            return True
    return False


def _coerce(value: Any, info: mi.Type) -> Any:
    """`value` with integral floats turned into ints wherever an int is declared; the same
    object when nothing changed."""
    members = [_unwrap(m) for m in _members(info)]
    if isinstance(value, float) and value.is_integer():
        if any(isinstance(m, mi.IntType) for m in members):
            return int(value)
        return value
    if isinstance(value, list):
        lists = [m for m in members if isinstance(m, mi.ListType)]
        if lists:
            items = [_coerce(v, lists[0].item_type) for v in value]
            if any(a is not b for a, b in zip(items, value, strict=True)):
                return items
        return value
    if isinstance(value, dict):
        struct = _struct_for(info, value)
        if struct is None:
            return value
        changed = dict(value)
        for f in struct.fields:
            if f.encode_name in value:
                changed[f.encode_name] = _coerce(value[f.encode_name], f.type)
        if any(changed[k] is not value[k] for k in value):
            return changed
    return value
