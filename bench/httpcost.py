"""What a request costs the load generator: client CPU per request of realtime.httpclient.

    python bench/httpcost.py                        # ~30 s
    python bench/httpcost.py --rounds 9 --requests 40000 --connections 16

The benchmarks' generators and `realtime loadtest` share the cores with the server they
measure, so every microsecond the client spends per request is taken from the server. This
measures this process's CPU (user + system) per request through the client's three paths:
`Connection.cycle` (pre-encoded requests written from the protocol as each answer arrives:
bench/booking.py's generators), `Connection.exchange` (one pre-encoded request, awaited) and
`Connection.request` (JSON encoding, a timeout, idle-connection checks: the load tester's
booker), on uvloop, against a minimal server in another process that answers every request
with the same 201 and a booking-sized JSON body. The paths take turns (order rotated every
round); the figures are medians over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.lib.net import free_port  # noqa: E402
from realtime.httpclient import Connection, Response  # noqa: E402

BODY = b'{"booking":{"id":"' + b"0" * 36 + b'"},"slot":{' + b'"x":0,' * 78 + b'"id":"s"}}'
ANSWER = (b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
          b"date: Sat, 21 Nov 2026 10:00:00 GMT\r\nserver: uvicorn\r\n\r\n%s"
          % (len(BODY), BODY))
PAYLOAD = {"slot_id": "9b7c1e2a-5d4f-4c3b-8a1e-0f2d3c4b5a69", "customer_id": "bench"}

Loop = Callable[[Connection, int], Awaitable[None]]


class _Answering(asyncio.Protocol):
    """Answers each complete request (head plus content-length body) with ANSWER."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        while (end := buf.find(b"\r\n\r\n")) >= 0:
            head = buf[:end].lower()
            i = head.find(b"content-length:")
            length = int(head[i + 15:head.find(b"\r\n", i) if head.find(b"\r\n", i) > 0
                              else len(head)]) if i >= 0 else 0
            if len(buf) < end + 4 + length:
                break
            buf = buf[end + 4 + length:]
            self.transport.write(ANSWER)
        self.buf = buf


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Answering, "127.0.0.1", port)
    print("ready", flush=True)
    await server.serve_forever()


async def cycle_loop(conn: Connection, n: int) -> None:
    raw = conn.encode("POST", "/api/bookings", PAYLOAD)
    left = [n]

    def next_request(resp: Response | None) -> bytes | None:
        if resp is not None:
            assert resp.status == 201
        left[0] -= 1
        return raw if left[0] >= 0 else None

    await conn.cycle(next_request)


async def exchange_loop(conn: Connection, n: int) -> None:
    raw = conn.encode("POST", "/api/bookings", PAYLOAD)
    for _ in range(n):
        resp = await conn.exchange(raw)
        assert resp.status == 201


async def request_loop(conn: Connection, n: int) -> None:
    for _ in range(n):
        resp = await conn.request("POST", "/api/bookings", PAYLOAD)
        assert resp.status == 201


VARIANTS: dict[str, Loop] = {
    "cycle (pre-encoded, callback per answer: bench/booking.py)": cycle_loop,
    "exchange (pre-encoded, await per request)": exchange_loop,
    "request (JSON, timeout: realtime loadtest)": request_loop,
}


async def measure(port: int, args: argparse.Namespace,
                  variants: dict[str, Loop]) -> dict[str, list[float]]:
    """Client CPU µs per request of each variant, one figure per round."""
    conns = [await Connection("127.0.0.1", port).open() for _ in range(args.connections)]
    per = args.requests // args.connections
    names = list(variants)
    for name in names:  # warm up
        await asyncio.gather(*(variants[name](c, 200) for c in conns))
    cost: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        print(f"  round {r + 1}/{args.rounds}", end="\r", file=sys.stderr, flush=True)
        for name in names[r % len(names):] + names[:r % len(names)]:
            c0 = time.process_time()
            await asyncio.gather(*(variants[name](c, per) for c in conns))
            cost[name].append((time.process_time() - c0) / (per * len(conns)) * 1e6)
    for c in conns:
        c.close()
    return cost


def run(args: argparse.Namespace, variants: dict[str, Loop] = VARIANTS) -> None:
    import uvloop

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)],
                              stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"ready":
            raise SystemExit("the answering server did not start")
        cost = uvloop.run(measure(port, args, variants))
    finally:
        server.terminate()
        server.wait(10)
    print(f"\n{args.requests} requests per variant and round over {args.connections} "
          f"keep-alive connections, {args.rounds} rounds; medians:\n")
    print("| client path | client CPU per request | spread over rounds |")
    print("|---|---:|---:|")
    for name, values in cost.items():
        print(f"| {name} | {statistics.median(values):.1f} µs | "
              f"{min(values):.1f}-{max(values):.1f} µs |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        import uvloop

        uvloop.run(serve(args.serve))
        return
    run(args)


if __name__ == "__main__":
    main()
