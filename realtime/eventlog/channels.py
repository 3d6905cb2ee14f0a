"""Channel names: `vendor:ID` and `service:ID`, parsed and built here and nowhere else.

Every event belongs to two channels, its vendor's and its service's. Ids are canonical
lower-case UUIDs, so `service:ABC...` and `service:abc...` are one channel.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Literal

from realtime.errors import UnknownChannel

ChannelKind = Literal["vendor", "service"]
KINDS: tuple[ChannelKind, ...] = ("vendor", "service")
# The canonical lower-case form, which is what our own ids look like: no UUID object needed.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_id(value: str) -> str:
    """The id in canonical form; ValueError if it is not a UUID."""
    if _CANONICAL_UUID.fullmatch(value):
        return value
    return str(uuid.UUID(value))


@dataclass(frozen=True, slots=True)
class Channel:
    kind: ChannelKind
    id: str

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.id}"


def parse_channel(value: str) -> Channel:
    """`vendor:UUID` or `service:UUID`; anything else is UNKNOWN_CHANNEL."""
    prefix, sep, ident = value.partition(":")
    if not sep or prefix not in KINDS:
        raise UnknownChannel(f"unknown channel {value[:80]!r}: use vendor:ID or service:ID")
    try:
        ident = canonical_id(ident)
    except ValueError:
        raise UnknownChannel(f"unknown channel {value[:80]!r}: the id is not a UUID") from None
    return Channel("vendor" if prefix == "vendor" else "service", ident)


def vendor_channel(vendor_id: str) -> str:
    return "vendor:" + vendor_id


def service_channel(service_id: str) -> str:
    return "service:" + service_id
