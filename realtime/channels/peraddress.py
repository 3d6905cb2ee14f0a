"""The cap on open sockets per client address: `/ws` sockets and `/sse` streams together.

One address must not be able to hold sockets until the process runs out of file descriptors
(each open socket also costs its memory). `REALTIME_MAX_SOCKETS_PER_ADDRESS` sets the cap, 0
turns it off (the default, docs/configuration.md says why). The count is per process, in
memory: behind a balancer each process counts what reaches it, with or without Redis.

The address is the ASGI scope's `client`: the peer of the TCP connection, which behind a proxy
is the proxy's unless the server trusts its forwarded headers (docs/deployment.md).
"""

from __future__ import annotations

from typing import Any

from realtime.channels import metrics

UNKNOWN = "unknown"  # no peer address (a Unix socket): one address, as the HTTP rate limit has


def address_of(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    return str(client[0]) if client else UNKNOWN


class AddressCap:
    """Open sockets per address; bounded by the open sockets themselves (an address leaves
    the table when its last socket closes)."""

    __slots__ = ("_open", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def take(self, scope: dict[str, Any], door: str) -> bool:
        """Count a socket that is opening; False (counted as refused, and not held) when its
        address already has `limit` open. Synchronous, so two sockets opening at once cannot
        both take the last place."""
        if self.limit <= 0:
            return True
        address = address_of(scope)
        held = self._open.get(address, 0)
        if held >= self.limit:
            metrics.SOCKETS_REFUSED.labels(door).inc()
            return False
        self._open[address] = held + 1
        return True

    def give(self, scope: dict[str, Any]) -> None:
        """A socket that `take` counted is gone."""
        if self.limit <= 0:
            return
        address = address_of(scope)
        held = self._open.get(address, 0) - 1
        if held > 0:
            self._open[address] = held
        else:
            self._open.pop(address, None)

    def held(self, address: str) -> int:
        return self._open.get(address, 0)

    def __len__(self) -> int:
        return len(self._open)
