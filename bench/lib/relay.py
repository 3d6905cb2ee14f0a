"""A tiny TCP balancer for bench/scaleout.py's rolling restart: one port in front of several
`realtime serve` processes, each on its own port.

Each accepted connection goes to the next backend in turn; a backend that refuses (stopping,
or not listening yet) is skipped for that connection, so that a client reconnecting during a
restart reaches whichever process is up: what a load balancer's connect-failure retry does.
No health checks, no stickiness, no parsing: bytes both ways, with each side's reading paused
while the other side's write buffer is full.

    python -m bench.lib.relay LISTEN_PORT BACKEND_PORT [BACKEND_PORT ...]
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from typing import Any

HIGH_WATER = 256 * 1024


class Half(asyncio.Protocol):
    """One side of a relayed connection; `peer` is the other side's transport."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.peer: Any = None
        self.pending: list[bytes] = []  # what came before the peer was connected

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            self.pending.append(data)
            if sum(map(len, self.pending)) > HIGH_WATER:
                self.transport.pause_reading()
            return
        self.peer.write(data)

    def attach(self, peer: Any) -> None:
        self.peer = peer
        for data in self.pending:
            peer.write(data)
        self.pending.clear()
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and not self.peer.is_closing():
            self.peer.close()

    def pause_writing(self) -> None:  # our buffer is full: stop reading the peer
        if self.peer is not None:
            self.peer.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.resume_reading()


async def serve(listen: int, backends: list[int]) -> None:
    loop = asyncio.get_running_loop()
    turn = itertools.cycle(range(len(backends)))

    async def connect(front: Half) -> None:
        first = next(turn)
        for k in range(len(backends)):
            port = backends[(first + k) % len(backends)]
            try:
                _, back = await loop.create_connection(Half, "127.0.0.1", port)
            except OSError:
                continue
            if front.transport.is_closing():  # the client left meanwhile
                back.transport.close()
                return
            back.peer = front.transport
            front.attach(back.transport)
            return
        front.transport.abort()  # nobody listens: the client retries

    tasks: set[asyncio.Task[None]] = set()

    def accepted() -> Half:
        front = Half()
        loop.call_soon(start, front)
        return front

    def start(front: Half) -> None:
        task = loop.create_task(connect(front))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await loop.create_server(accepted, "127.0.0.1", listen, backlog=4096,
                                      reuse_address=True)
    print(f"relay listening on {listen} for {backends}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    import uvloop

    listen, *backends = (int(a) for a in sys.argv[1:])
    uvloop.install()
    asyncio.run(serve(listen, backends))


if __name__ == "__main__":
    main()
