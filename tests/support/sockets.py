"""Which process holds a TCP connection, from /proc: the kernel's own answer, so that tests and
benchmarks can tell which worker of `realtime serve --workers N` accepted each client without
the server saying anything about itself.

Workers share one listening socket; an accepted connection is a socket (an inode) open in
exactly one of them. /proc/net/tcp maps a connection's ports to its inode, /proc/PID/fd maps
inodes to processes.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path

ESTABLISHED = "01"
LISTEN = "0A"


def children(pid: int) -> list[int]:
    """The direct children of a process."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def workers(parent: int) -> list[int]:
    """The worker processes of a `realtime serve --workers N` parent (multiprocessing's spawned
    children; not a resource tracker or anything else it may start)."""
    return sorted(p for p in children(parent) if "spawn_main" in cmdline(p)
                  and "resource_tracker" not in cmdline(p))


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _address(hex_address: str) -> tuple[str, int]:
    """An address of /proc/net/tcp ("0100007F:1F90") as (host, port); IPv4 only, else the
    host stays hex."""
    host, port = hex_address.rsplit(":", 1)
    if len(host) == 8:
        host = socket.inet_ntoa(bytes.fromhex(host)[::-1])
    return host, int(port, 16)


def _rows() -> Iterator[list[str]]:
    """The fields of every row of /proc/net/tcp and /proc/net/tcp6."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            yield line.split()


def _accepted(port: int) -> dict[tuple[str, int], int]:
    """Established connections whose local port is `port` (accepted by a server there):
    the peer's (host, port) -> the socket's inode."""
    out: dict[tuple[str, int], int] = {}
    for fields in _rows():
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if state == ESTABLISHED and int(local.rsplit(":", 1)[1], 16) == port:
            out[_address(remote)] = int(inode)
    return out


def listening(pid: int) -> set[int]:
    """The TCP ports that the process `pid` listens on."""
    inodes = _inodes(pid)
    return {_address(fields[1])[1] for fields in _rows()
            if fields[3] == LISTEN and int(fields[9]) in inodes}


def _inodes(pid: int) -> set[int]:
    found: set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def holders(port: int, pids: Iterable[int]) -> dict[tuple[str, int], int]:
    """For the connections accepted on `port`: the client's (host, port) -> the pid, among
    `pids`, that holds the server's end."""
    by_inode = {inode: pid for pid in pids for inode in _inodes(pid)}
    return {peer: by_inode[inode] for peer, inode in _accepted(port).items() if inode in by_inode}
