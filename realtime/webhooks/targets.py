"""Where deliveries may go: http(s) URLs on public addresses, unless private ones are allowed.

A server that POSTs to URLs its admins type in must not become a way into its own network
(cloud metadata at 169.254.169.254, a database on 10.0.0.5, its own loopback). Checked when
the endpoint is registered and again before every attempt, on the addresses the name
resolves to then (a name may resolve elsewhere later).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from realtime.errors import ValidationError

MAX_URL = 2048


class Refused(Exception):
    """A URL deliveries may not go to; the message says why."""


def check_url(url: str) -> str:
    """The URL if it is one a webhook may have; ValidationError naming `url` otherwise."""
    if len(url) > MAX_URL:
        raise ValidationError("url", f"must be at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # .port raises on a port that is not a number
    except ValueError:
        raise ValidationError("url", "must be an http or https URL with a host") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValidationError("url", "must be an http or https URL with a host")
    if parts.username or parts.password:
        raise ValidationError("url", "must not carry a user name or password")
    return url


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def check_address(url: str, allow_private: bool) -> None:
    """Raise Refused if the URL's host is, or resolves to, a private or loopback address."""
    if allow_private:
        return
    host = urlsplit(url).hostname or ""
    port = urlsplit(url).port or (443 if url.startswith("https") else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise Refused(f"cannot resolve {host}") from None
    addresses = {str(info[4][0]) for info in infos}
    if not addresses or not all(_public(a) for a in addresses):
        raise Refused(f"{host} is a private, loopback or reserved address "
                      "(REALTIME_WEBHOOKS_ALLOW_PRIVATE=1 allows it)")
