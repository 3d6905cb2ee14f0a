"""Constrained field types: every limit an input field has, declared here once.

Each type is an `Annotated` msgspec type whose `Meta` holds the limits that decoding enforces
and the JSON Schema shows; `extra["expects"]` is the project's own wording for an error
message ("slot_id: must be an id (a UUID)"), used instead of msgspec's text.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

from msgspec import Meta

from realtime.schema.channels import CHANNEL_PATTERN


def python_pattern(pattern: str) -> str:
    """A JSON Schema (ECMA-262) pattern for Python's `re`, which msgspec uses: there `$` also
    matches before a final newline, so an id with a trailing `\\n` would pass. The documents
    turn it back (`ecma_pattern`)."""
    assert pattern.endswith("$"), pattern
    return pattern[:-1] + "\\Z"


def ecma_pattern(pattern: str) -> str:
    return pattern[:-2] + "$" if pattern.endswith("\\Z") else pattern


# -- ids ----------------------------------------------------------------------------------------

_HEX = "[0-9a-fA-F]"
UUID_PATTERN = f"^{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}$"
# What the server itself serves: canonical lower case.
SERVED_UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

# Accepted in any case; decoding lower-cases it (see `canonical`), so that one slot is one
# key everywhere (the slot gates, idempotency hashes, channel names).
Id = Annotated[str, Meta(pattern=python_pattern(UUID_PATTERN),
                         extra_json_schema={"format": "uuid"},
                         extra={"expects": "an id (a UUID)"})]
ServedId = Annotated[str, Meta(pattern=python_pattern(SERVED_UUID_PATTERN),
                               extra_json_schema={"format": "uuid"})]


def canonical(value: str) -> str:
    """An `Id` as the database prints it. The pattern already checked the shape."""
    return value.lower()


# -- text ---------------------------------------------------------------------------------------

MAX_NAME = 200
# Not blank, no NUL (PostgreSQL text cannot hold it). Written so that matching stays linear.
NAME_PATTERN = "^[\\t\\n\\r ]*[^\\x00\\t\\n\\r ][^\\x00]*$"
Name = Annotated[str, Meta(
    min_length=1, max_length=MAX_NAME, pattern=python_pattern(NAME_PATTERN),
    extra={"expects": f"1 to {MAX_NAME} characters, not blank, without NUL"})]
CustomerId = Name

# Printable ASCII, no space at either end (HTTP strips those from a header value).
IDEMPOTENCY_KEY_PATTERN = "^[\\x21-\\x7e](?:[\\x20-\\x7e]{0,253}[\\x21-\\x7e])?$"
IdempotencyKey = Annotated[str, Meta(
    pattern=python_pattern(IDEMPOTENCY_KEY_PATTERN), min_length=1, max_length=255,
    extra={"expects": "1 to 255 printable ASCII characters, not starting or ending with a space"})]

MAX_MESSAGE_ID = 64
MessageId = Annotated[str, Meta(max_length=MAX_MESSAGE_ID,
                                extra={"expects": f"a string of at most {MAX_MESSAGE_ID} characters"})]
Cursor = Annotated[str, Meta(max_length=200, extra={
    "expects": "a cursor string received from this server"})]
Token = Annotated[str, Meta(min_length=1, max_length=8192, extra={"expects": "a token (a JWT)"})]
# The shape is checked by realtime.schema.channels.parse_channel (UNKNOWN_CHANNEL, not
# BAD_MESSAGE); the pattern is stated for the documents.
ChannelName = Annotated[str, Meta(max_length=200, extra_json_schema={"pattern": CHANNEL_PATTERN},
                                  extra={"expects": "a channel name, vendor:ID or service:ID"})]

# -- numbers ------------------------------------------------------------------------------------

MAX_UNITS = 1_000_000
Quantity = Annotated[int, Meta(ge=1, le=MAX_UNITS)]
Capacity = Annotated[int, Meta(ge=1, le=MAX_UNITS)]
NewCapacity = Annotated[int, Meta(ge=0, le=MAX_UNITS)]
TtlSeconds = Annotated[int, Meta(ge=1, le=3600)]
Count = Annotated[int, Meta(ge=0)]
Version = Annotated[int, Meta(ge=1)]

# -- times --------------------------------------------------------------------------------------

MIN_YEAR, MAX_YEAR = 1970, 9999
TIME_EXAMPLE = "2030-01-07T09:00:00Z"
TIME_EXPECTS = f"an RFC 3339 time with an offset, such as {TIME_EXAMPLE}"
RANGE_EXPECTS = f"within years {MIN_YEAR}-{MAX_YEAR} in UTC"

_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))")


class Time(datetime):
    """An RFC 3339 time with an offset, decoded into UTC; 1970-9999 after conversion.

    A class of its own so that msgspec hands its text to `parse_time` (see decode.py) instead
    of its own parser, which also takes forms RFC 3339 does not (a space for the `T`, `+0100`).
    """


def parse_time(value: Any) -> Time:
    """The `Time` for a JSON value; ValueError with the project's message otherwise."""
    match = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"must be {TIME_EXPECTS}")
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    try:
        offset = timedelta(0)
        if sign is not None:
            if int(off_h) > 23 or int(off_m) > 59:
                raise ValueError
            offset = timedelta(hours=int(off_h), minutes=int(off_m)) * (-1 if sign == "-" else 1)
        micro = int((fraction or "")[:6].ljust(6, "0"))  # truncated: never past the range's end
        local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                         micro, tzinfo=timezone(offset))
    except ValueError:
        raise ValueError(f"must be {TIME_EXPECTS}") from None
    try:
        utc = local.astimezone(UTC)
    except OverflowError:  # past year 1 or 9999 in UTC
        raise ValueError(f"must be {RANGE_EXPECTS}") from None
    if not MIN_YEAR <= utc.year <= MAX_YEAR:
        raise ValueError(f"must be {RANGE_EXPECTS}")
    return Time(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond,
                tzinfo=UTC)


def _two_digits(low: int, high: int) -> str | None:
    """A regex for the zero-padded numbers low..high, or None when there are none."""
    if low > high:
        return None
    parts = []
    for tens in range(low // 10, high // 10 + 1):
        first = max(low, tens * 10) % 10
        last = min(high, tens * 10 + 9) % 10
        parts.append(f"{tens}{first}" if first == last else f"{tens}[{first}-{last}]")
    return "(?:" + "|".join(parts) + ")"


def _time_pattern() -> str:
    """The JSON Schema pattern of a `Time`: RFC 3339 within 1970-9999 after conversion to UTC.

    A regular expression cannot compare a time of day with its offset minute by minute
    without thousands of branches, so on the first and last day of the range it compares
    hours (and the cases where either minute field is 00): it admits a subset of what the
    server accepts, never more, so that a value it admits is never refused. What it leaves
    out: a few hours of 1969-12-31 and of those two days written with an offset that crosses
    the day boundary (e.g. 1970-01-01T05:30:00+05:30).
    """
    ms = "[0-5][0-9]"
    sec = f":{ms}(?:\\.[0-9]+)?"
    hour = _two_digits(0, 23)
    day = "(?:0[1-9]|[12][0-9]|3[01])"
    month = "(?:0[1-9]|1[0-2])"
    any_time = f"{hour}:{ms}{sec}(?:[Zz]|[+-]{hour}:{ms})"
    years = "(?:197[1-9]|19[89][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
    branches = [
        f"{years}-{month}-{day}[Tt]{any_time}",
        f"1970-(?:01-(?:0[2-9]|[12][0-9]|3[01])|(?:0[2-9]|1[0-2])-{day})[Tt]{any_time}",
        f"9999-(?:(?:0[1-9]|1[01])-{day}|12-(?:0[1-9]|[12][0-9]|30))[Tt]{any_time}",
    ]
    # 1970-01-01: a positive offset must not reach back past midnight UTC.
    first = [f"{hour}:{ms}{sec}(?:[Zz]|[+-]00:00|-{hour}:{ms})"]
    for h in range(1, 24):
        first.append(f"{h:02d}:{ms}{sec}\\+(?:{_two_digits(0, h - 1)}:{ms}|{h:02d}:00)")
    branches.append("1970-01-01[Tt](?:" + "|".join(first) + ")")
    # 9999-12-31: a negative offset must not reach past midnight UTC.
    last = [f"{hour}:{ms}{sec}(?:[Zz]|[+-]00:00|\\+{hour}:{ms})"]
    for h in range(24):
        within = _two_digits(0, 22 - h)
        if within:
            last.append(f"{h:02d}:{ms}{sec}-(?:{within}:{ms}|{23 - h:02d}:00)")
        last.append(f"{h:02d}:00{sec}-{23 - h:02d}:{ms}")
    branches.append("9999-12-31[Tt](?:" + "|".join(last) + ")")
    return "^(?:" + "|".join(branches) + ")$"


TIME_PATTERN = _time_pattern()
TIME_SCHEMA: dict[str, Any] = {
    "type": "string", "format": "date-time", "pattern": TIME_PATTERN,
    "description": f"RFC 3339 with an offset (Z for UTC), {RANGE_EXPECTS}: converted to UTC, "
                   "the year must be 1970 to 9999",
}
# How the server writes a time: always UTC, always `Z`.
SERVED_TIME_PATTERN = (
    "^(?:19[7-9][0-9]|[2-9][0-9]{3})-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    "T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,6})?Z$")
ServedTime = Annotated[str, Meta(pattern=python_pattern(SERVED_TIME_PATTERN),
                                 extra_json_schema={"format": "date-time"})]
