"""Input checks at the edge: shapes and ranges, with the field named in every error."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from realtime.errors import NotFound, ValidationError

MAX_NAME = 200
# The canonical lower-case form, which is what our own ids look like: no UUID object needed.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _canonical_id(value: str) -> str:
    """The id in canonical form; ValueError if it is not a UUID."""
    if _CANONICAL_UUID.fullmatch(value):
        return value
    return str(uuid.UUID(value))


def parse_id(value: str, not_found: type[NotFound]) -> str:
    """A path id that is not a UUID cannot name anything: 404, never a 500."""
    try:
        return _canonical_id(value)
    except (ValueError, AttributeError, TypeError):
        raise not_found() from None


def body_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationError("body", "must be a JSON object")
    return body


def uuid_field(body: dict[str, Any], field: str, required: bool = True) -> str | None:
    value = body.get(field)
    if value is None:
        if required:
            raise ValidationError(field, "is required")
        return None
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string id")
    try:
        return _canonical_id(value)
    except ValueError:
        raise ValidationError(field, "is not a valid id") from None


def int_field(body: dict[str, Any], field: str, default: int | None, lo: int, hi: int,
              required: bool = False) -> int | None:
    value = body.get(field)
    if value is None:
        if required:
            raise ValidationError(field, "is required")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, "must be an integer")
    if not lo <= value <= hi:
        raise ValidationError(field, f"must be from {lo} to {hi}")
    return value


def str_field(body: dict[str, Any], field: str, required: bool = True,
              max_len: int = MAX_NAME) -> str | None:
    value = body.get(field)
    if value is None:
        if required:
            raise ValidationError(field, "is required")
        return None
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string")
    value = value.strip()
    if not value or len(value) > max_len:
        raise ValidationError(field, f"must be 1 to {max_len} characters")
    if "\x00" in value:
        raise ValidationError(field, "must not contain NUL characters")
    return value


def bool_field(body: dict[str, Any], field: str, default: bool) -> bool:
    value = body.get(field, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ValidationError(field, "must be true or false")
    return value


def timestamp(value: Any, field: str) -> datetime:
    """RFC 3339 with an explicit offset; naive times are ambiguous and refused."""
    if not isinstance(value, str) or len(value) > 40:
        raise ValidationError(field, "must be an RFC 3339 timestamp such as 2026-11-21T09:00:00Z")
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValidationError(field, "must be an RFC 3339 timestamp such as 2026-11-21T09:00:00Z") from None
    if parsed.tzinfo is None:
        raise ValidationError(field, "must carry a time zone offset (Z for UTC)")
    if not 1970 <= parsed.year <= 9999:
        raise ValidationError(field, "is out of range")
    return parsed


def optional_timestamp(value: Any, field: str) -> datetime | None:
    if value is None or value == "":
        return None
    return timestamp(value, field)


def window(from_: Any, to: Any) -> tuple[datetime | None, datetime | None]:
    start = optional_timestamp(from_, "from")
    end = optional_timestamp(to, "to")
    if start and end and end <= start:
        raise ValidationError("to", "must be after from")
    return start, end


def slots_body(body: dict[str, Any]) -> list[dict[str, Any]]:
    items = body.get("slots")
    if not isinstance(items, list) or not items:
        raise ValidationError("slots", "must be a non-empty array")
    if len(items) > 1000:
        raise ValidationError("slots", "at most 1000 slots per request")
    out = []
    for i, item in enumerate(items):
        name = f"slots[{i}]"
        if not isinstance(item, dict):
            raise ValidationError(name, "must be an object")
        starts = timestamp(item.get("starts_at"), f"{name}.starts_at")
        ends = timestamp(item.get("ends_at"), f"{name}.ends_at")
        if ends <= starts:
            raise ValidationError(f"{name}.ends_at", "must be after starts_at")
        capacity = int_field(item, "capacity", None, 1, 1_000_000, required=True)
        out.append({"starts_at": starts.isoformat(), "ends_at": ends.isoformat(),
                    "capacity": capacity})
    return out
