"""Channel names: `vendor:ID` and `service:ID`, parsed and built here and nowhere else.

Every event belongs to two channels, its vendor's and its service's. Ids are canonical
lower-case UUIDs, so `service:ABC...` and `service:abc...` are one channel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from realtime.errors import UnknownChannel

ChannelKind = Literal["vendor", "service"]
KINDS: tuple[ChannelKind, ...] = ("vendor", "service")
_UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_ID = re.compile(_UUID)
# The documents' statement of what `parse_channel` accepts.
CHANNEL_PATTERN = f"^(?:vendor|service):{_UUID}$"


def canonical_id(value: str) -> str:
    """The id in canonical (lower-case, hyphenated) form; ValueError if it is not a UUID."""
    if not _ID.fullmatch(value):
        raise ValueError(value)
    return value.lower()


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
        raise UnknownChannel(f"channel: {value[:80]!r} is not vendor:ID or service:ID",
                             field="channel")
    try:
        ident = canonical_id(ident)
    except ValueError:
        raise UnknownChannel(f"channel: the id in {value[:80]!r} is not a UUID",
                             field="channel") from None
    return Channel("vendor" if prefix == "vendor" else "service", ident)


def vendor_channel(vendor_id: str) -> str:
    return "vendor:" + vendor_id


def service_channel(service_id: str) -> str:
    return "service:" + service_id
