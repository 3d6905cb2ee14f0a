"""Ports and the rule that the benchmarks only ever talk to this machine."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_loopback(url: str) -> None:
    """Exits unless the DSN or URL names this machine: the benchmarks create and drop
    databases and saturate what they talk to."""
    host = urlsplit(url).hostname or "127.0.0.1"
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise SystemExit(f"refusing a non-loopback database host {host!r}: this benchmark only "
                     "talks to 127.0.0.1")
