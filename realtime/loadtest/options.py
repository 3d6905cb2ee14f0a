"""The load test's command line: its options, their bounds and the plan they give."""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import socket

from realtime.httpclient import split_url

# Bounds that keep a typo from turning into a runaway process.
MAX_SOCKETS = 200_000
MAX_RATE = 50_000.0
MAX_DURATION = 3600.0
MAX_SOCKETS_PER_PROCESS = 19_000  # ulimit -n is 20,000 on the reference machine
PORTS_PER_SOURCE = 25_000  # ~28k ephemeral ports per destination; keep a margin


class LoadTestError(Exception):
    """A run that could not start or complete; the message says why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Open N WebSocket (or Server-Sent Events) subscribers across C channels of a local "
        "server, book at R per second over HTTP, and check that every subscriber receives "
        "every change once and in order. Exit status: 0 when nothing was lost, duplicated or "
        "out of order; 1 when something was; 2 when the run could not be carried out."
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000",
                        help="base http:// URL of the server (loopback only); the socket URL "
                             "is derived from it (default: %(default)s)")
    parser.add_argument("--sockets", type=int, default=1000,
                        help="subscribers to open (default: %(default)s)")
    parser.add_argument("--channels", type=int, default=10,
                        help="channels to spread them over, one service each "
                             "(default: %(default)s)")
    parser.add_argument("--rate", type=float, default=50.0,
                        help="bookings per second, open loop (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds of booking (default: %(default)s)")
    parser.add_argument("--hot-slot", action="store_true",
                        help="book one slot only (contention) instead of random slots")
    parser.add_argument("--json", action="store_true",
                        help="print the report as JSON on stdout")
    parser.add_argument("--processes", type=int, default=0,
                        help="client processes holding the sockets (default: one per 10,000 "
                             "sockets; one process holds at most 19,000)")
    parser.add_argument("--slots-per-channel", type=int, default=10,
                        help="slots created per channel by the setup (default: %(default)s)")
    parser.add_argument("--capacity", type=int, default=100_000,
                        help="capacity of each created slot; small values make conflicts "
                             "(default: %(default)s)")
    parser.add_argument("--service", action="append", default=[], metavar="ID",
                        help="use this existing service as a channel instead of creating "
                             "data (repeat for several); --channels is then ignored")
    parser.add_argument("--token", default=os.environ.get("REALTIME_LOADTEST_TOKEN"),
                        help="bearer token (an admin JWT when auth is on) for the setup, the "
                             "bookings and the sockets (default: $REALTIME_LOADTEST_TOKEN)")
    parser.add_argument("--reconnect-at", type=float, default=None, metavar="SECONDS",
                        help="a reconnect storm: this many seconds into the booking phase every "
                             "socket drops at once and reconnects with its last cursor")
    parser.add_argument("--drain-timeout", type=float, default=10.0,
                        help="seconds to wait after the last booking for every subscriber to "
                             "reach the database's state (default: %(default)s)")
    parser.add_argument("--connect-timeout", type=float, default=15.0,
                        help="seconds for one socket to connect and get its snapshot "
                             "(default: %(default)s)")
    parser.add_argument("--connect-concurrency", type=int, default=200,
                        help="handshakes in flight per process (default: %(default)s)")
    parser.add_argument("--max-in-flight", type=int, default=64,
                        help="bookings in flight at once; a booking due while this many are "
                             "pending is skipped and counted (default: %(default)s)")
    parser.add_argument("--source-addresses", default="auto",
                        help="comma-separated loopback source addresses for the workers' "
                             "sockets, 'auto' (127.0.0.2... past 25,000 sockets) or 'none' "
                             "(default: %(default)s)")
    parser.add_argument("--protocol", choices=("native", "socketio"), default="native",
                        help="socket protocol: this server's (default) or Socket.IO, for the "
                             "peer benchmark in bench/peers")
    parser.add_argument("--ws-path", default="/ws", help="socket path (default: %(default)s)")
    parser.add_argument("--transport", choices=("websocket", "sse"), default="websocket",
                        help="what each subscriber is: a WebSocket subscribed to its channel "
                             "(default), or a Server-Sent Events stream of it (GET "
                             "--sse-path?channel=..., resumed with Last-Event-ID)")
    parser.add_argument("--sse-path", default="/sse",
                        help="Server-Sent Events path (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    parser.add_argument("--seed", type=int, default=None, help="random seed for slot choice")


# -- planning -------------------------------------------------------------------------------


def check_args(args: argparse.Namespace) -> None:
    host, _, _ = split_url(args.url)
    try:
        resolved = socket.gethostbyname(host)
    except OSError as exc:
        raise LoadTestError(f"cannot resolve {host!r}: {exc}") from None
    if not ipaddress.ip_address(resolved).is_loopback:
        raise LoadTestError(
            f"{args.url} is not a loopback address: the load tester only targets a server on "
            "this machine (it can open tens of thousands of sockets)"
        )
    if not 1 <= args.sockets <= MAX_SOCKETS:
        raise LoadTestError(f"--sockets must be between 1 and {MAX_SOCKETS}")
    if not args.service and not 1 <= args.channels <= 10_000:
        raise LoadTestError("--channels must be between 1 and 10000")
    if not 0 <= args.rate <= MAX_RATE:
        raise LoadTestError(f"--rate must be between 0 and {MAX_RATE:g}")
    if not 0 < args.duration <= MAX_DURATION:
        raise LoadTestError(f"--duration must be more than 0 and at most {MAX_DURATION:g}")
    if not 1 <= args.slots_per_channel <= 1000:
        raise LoadTestError("--slots-per-channel must be between 1 and 1000")
    if args.capacity < 1:
        raise LoadTestError("--capacity must be at least 1")
    if not 0 < args.drain_timeout <= 600 or not 0 < args.connect_timeout <= 600:
        raise LoadTestError("--drain-timeout and --connect-timeout must be in (0, 600]")
    if not 1 <= args.connect_concurrency <= 5000 or not 1 <= args.max_in_flight <= 1024:
        raise LoadTestError("--connect-concurrency must be 1..5000, --max-in-flight 1..1024")
    if args.reconnect_at is not None and not 0 <= args.reconnect_at < args.duration:
        raise LoadTestError("--reconnect-at must fall within the booking phase")
    if args.transport == "sse" and args.protocol != "native":
        raise LoadTestError("--transport sse speaks this server's protocol only (--protocol "
                            "native)")


def plan_processes(args: argparse.Namespace) -> int:
    procs = args.processes or max(1, math.ceil(args.sockets / 10_000))
    if procs < 1 or procs > 64:
        raise LoadTestError("--processes must be between 1 and 64")
    if math.ceil(args.sockets / procs) > MAX_SOCKETS_PER_PROCESS:
        raise LoadTestError(
            f"{args.sockets} sockets over {procs} processes is more than "
            f"{MAX_SOCKETS_PER_PROCESS} per process (open files limit): raise --processes"
        )
    return procs


def source_addresses(args: argparse.Namespace, procs: int) -> list[str | None]:
    if args.source_addresses == "none":
        return [None] * procs
    if args.source_addresses != "auto":
        addrs = [a.strip() for a in args.source_addresses.split(",") if a.strip()]
        for a in addrs:
            if not ipaddress.ip_address(a).is_loopback:
                raise LoadTestError(f"source address {a} is not a loopback address")
        return [addrs[i % len(addrs)] for i in range(procs)]
    if args.sockets <= PORTS_PER_SOURCE:
        return [None] * procs
    per_source = math.ceil(args.sockets / procs)
    if per_source > PORTS_PER_SOURCE:
        raise LoadTestError("too many sockets per process for one source address")
    return [f"127.0.0.{2 + i % 250}" for i in range(procs)]


def split_sockets(total: int, channels: list[str], procs: int) -> list[list[tuple[str, int]]]:
    """Per process, (channel, sockets): channels evenly loaded, processes evenly loaded."""
    per_channel = [total // len(channels) + (1 if i < total % len(channels) else 0)
                   for i in range(len(channels))]
    plan: list[list[tuple[str, int]]] = [[] for _ in range(procs)]
    turn = 0
    for ch, n in zip(channels, per_channel, strict=True):
        shares = [n // procs + (1 if (i - turn) % procs < n % procs else 0) for i in range(procs)]
        turn = (turn + n % procs) % procs
        for p, k in enumerate(shares):
            if k:
                plan[p].append((ch, k))
    return plan
