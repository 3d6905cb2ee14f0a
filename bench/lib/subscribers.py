"""Many WebSocket (or Server-Sent Events) subscribers in a few worker processes, for
bench/fanout.py, bench/ssefanout.py and bench/scaleout.py.

Each process connects from its own loopback address (127.0.0.2, 127.0.0.3, ...) and speaks
just enough WebSocket, or HTTP/1.1 chunked SSE, on plain asyncio protocols (no task per
socket), so that the load generator costs as little as it can on the shared cores. The parent
commands them over pipes: open N sockets on a channel, watch a slot (record when each version
arrived), report frames. `open-on` opens sockets of any kind on any server, each counted
under a label of its own (`counts`), so that one set of processes can serve several servers
and transports taking turns; its `ws-count` kind parses no frame at all once subscribed (it
counts a marker per received chunk), the cheapest reader of the three.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import time
from typing import Any

from realtime.loadtest.wsclient import frame_bounds

WORKERS = 4


def worker_main(conn: Any, src: str, port: int, path: str) -> None:
    import uvloop

    from realtime.cli import raise_open_files

    raise_open_files()  # thousands of sockets a process: past the usual soft limit of 1,024
    uvloop.install()
    asyncio.run(_worker(conn, src, port, path))


async def _worker(pipe: Any, src: str, port: int, path: str) -> None:
    import orjson

    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {"frames": 0, "watch": None, "seen": {}, "subscribed": 0}
    counts: dict[str, int] = {}
    clients: list[Any] = []
    upgrade = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode()

    def client_frame(opcode: int, payload: bytes) -> bytes:
        # Client frames must be masked; an all-zero key leaves the payload as it is.
        n = len(payload)
        head = bytes([0x80 | opcode, 0x80 | n]) if n < 126 else (
            bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big"))
        return head + b"\0\0\0\0" + payload

    def past_head(opened: asyncio.Future[None], buf: bytes, status: bytes) -> int | None:
        """Where the body starts, once the response head is in: `opened` is then resolved, or
        failed when the status line lacks `status`. None while the head is incomplete."""
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            return None
        if status not in buf[:head_end].split(b"\r\n", 1)[0]:
            opened.set_exception(ConnectionError(buf[:200].decode("latin-1")))
        else:
            opened.set_result(None)
        return head_end + 4

    class Client(asyncio.Protocol):
        """A minimal WebSocket client: handshake, unmasked server frames, pongs.

        The bench measures the server; a full client library would spend more CPU per frame
        than the server does, on the same two cores.
        """

        def __init__(self) -> None:
            self.opened: asyncio.Future[None] = loop.create_future()
            self.transport: Any = None
            self.buf = b""

        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            transport.write(upgrade)

        def send(self, text: str) -> None:
            self.transport.write(client_frame(1, text.encode()))

        def body_start(self, buf: bytes) -> int | None:
            """Where frames start in `buf`: past the handshake's response head, 0 once open;
            None when there is nothing to read yet (the head is incomplete: kept) or the
            handshake was refused."""
            if self.opened.done():
                return 0
            start = past_head(self.opened, buf, b" 101 ")
            if start is None:
                self.buf = buf
                return None
            return None if self.opened.exception() is not None else start

        def data_received(self, data: bytes) -> None:
            buf = self.buf + data if self.buf else data
            i = self.body_start(buf)
            if i is None:
                return
            n = len(buf)
            while (bounds := frame_bounds(buf, i)) is not None:
                start, end = bounds
                if end > n:
                    break
                opcode = buf[i] & 0x0F
                if opcode == 1:
                    self.on_text(buf[start:end])
                elif opcode == 9:
                    self.transport.write(client_frame(10, buf[start:end]))
                i = end
            self.buf = buf[i:] if i < n else b""

        def on_text(self, data: bytes) -> None:
            on_text(data)

        def connection_lost(self, exc: Exception | None) -> None:
            if not self.opened.done():
                self.opened.set_exception(ConnectionError("closed before open"))

    class SseClient(asyncio.Protocol):
        """A minimal SSE reader: the response head, then chunked framing; counts the events
        that carry an id (updates and conflicts), not `subscribed` events or pings."""

        def __init__(self, label: str, request: bytes) -> None:
            self.opened: asyncio.Future[None] = loop.create_future()
            self.transport: Any = None
            self.buf = b""
            self.label = label
            self.request = request
            counts.setdefault(label, 0)

        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            transport.write(self.request)

        def data_received(self, data: bytes) -> None:
            buf = self.buf + data if self.buf else data
            i = 0
            if not self.opened.done():
                start = past_head(self.opened, buf, b" 200 ")
                if start is None:
                    self.buf = buf
                    return
                if self.opened.exception() is not None:
                    return
                i = start
            n = len(buf)
            events = 0
            while (line_end := buf.find(b"\r\n", i)) >= 0:
                size = int(buf[i:line_end], 16)
                end = line_end + 2 + size
                if size == 0 or end + 2 > n:
                    break
                chunk = buf[line_end + 2:end]
                if chunk.startswith(b"event: subscribed"):
                    state["subscribed"] += 1
                events += chunk.count(b"\nid: ")
                i = end + 2
            counts[self.label] += events
            self.buf = buf[i:] if i < n else b""

        def connection_lost(self, exc: Exception | None) -> None:
            if not self.opened.done():
                self.opened.set_exception(ConnectionError("closed before open"))

    async def open_on(n: int, label: str, kind: str, to_port: int, channel: str) -> float:
        """`n` subscribers of `kind` ("ws", "ws-count" or "sse") on `channel` of the server at
        `to_port`."""
        started = time.monotonic()
        target = state["subscribed"] + n
        ws_request = (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{to_port}\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode()
        sse_request = (f"GET /sse?channel={channel} HTTP/1.1\r\nHost: 127.0.0.1:{to_port}\r\n"
                       "Accept: text/event-stream\r\n\r\n").encode()
        sub = orjson.dumps({"type": "subscribe", "channel": channel}).decode()
        make: Any = CountingClient if kind == "ws-count" else LabelledClient
        for i in range(n):
            if kind == "sse":
                _, sse = await loop.create_connection(
                    lambda: SseClient(label, sse_request), "127.0.0.1", to_port,
                    local_addr=(src, 0))
                await sse.opened
                clients.append(sse)
            else:
                _, client = await loop.create_connection(
                    lambda: make(label, ws_request), "127.0.0.1", to_port,
                    local_addr=(src, 0))
                await client.opened
                client.send(sub)
                clients.append(client)
            if i % 200 == 199:
                await asyncio.sleep(0)
        while state["subscribed"] < target:  # noqa: ASYNC110 - counted in a protocol callback
            await asyncio.sleep(0.01)
        return time.monotonic() - started

    class LabelledClient(Client):
        """A WebSocket client whose update frames count under `label`."""

        def __init__(self, label: str, request: bytes) -> None:
            super().__init__()
            self.label = label
            self.request = request
            counts.setdefault(label, 0)

        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            transport.write(self.request)

        def on_text(self, data: bytes) -> None:
            if data.startswith(b'{"type":"subscribed"'):
                state["subscribed"] += 1
            elif b'"cursor"' in data:
                counts[self.label] += 1

    marker = b'"type":"availability:updated"'

    class CountingClient(LabelledClient):
        """The leanest WebSocket reader: after the handshake and the `subscribed` reply, no
        frame is parsed. Each update frame carries the marker once, so one C-level count per
        received chunk counts them (its last len(marker) - 1 bytes are kept in case a marker
        straddles two chunks). It answers no ping: the server is started with pings far apart."""

        def __init__(self, label: str, request: bytes) -> None:
            super().__init__(label, request)
            self.subscribed = False

        def data_received(self, data: bytes) -> None:
            buf = self.buf + data
            if self.subscribed:
                counts[self.label] += buf.count(marker)
                self.buf = buf[1 - len(marker):]
                return
            start = self.body_start(buf)
            if start is None:
                return
            buf = buf[start:]
            at = buf.find(b'{"type":"subscribed"')
            if at < 0:
                self.buf = buf
                return
            # The reply is one frame: whatever follows its end is updates.
            long_head = at >= 4 and buf[at - 4] == 0x81 and buf[at - 3] == 126
            bounds = frame_bounds(buf, at - 4 if long_head else at - 2)
            if bounds is None or bounds[1] > len(buf):
                self.buf = buf
                return
            self.subscribed = True
            state["subscribed"] += 1
            rest = buf[bounds[1]:]
            counts[self.label] += rest.count(marker)
            self.buf = rest[1 - len(marker):]

    watch_marker = b""

    def on_text(data: bytes) -> None:
        state["frames"] += 1
        if data.startswith(b'{"type":"subscribed"'):
            state["subscribed"] += 1
            return
        watch = state["watch"]
        if watch is not None and watch_marker in data:
            msg = orjson.loads(data)
            version = msg["slot"]["version"]
            now = time.monotonic()
            seen = state["seen"]
            count, _ = seen.get(version, (0, 0.0))
            seen[version] = (count + 1, now)

    async def open_many(n: int, channel: str) -> float:
        started = time.monotonic()
        target = state["subscribed"] + n
        sub = orjson.dumps({"type": "subscribe", "channel": channel}).decode()
        for i in range(n):
            _, client = await loop.create_connection(
                Client, "127.0.0.1", port, local_addr=(src, 0))
            await client.opened
            client.send(sub)
            clients.append(client)
            if i % 200 == 199:
                await asyncio.sleep(0)
        while state["subscribed"] < target:  # noqa: ASYNC110 - counted in a protocol callback
            await asyncio.sleep(0.01)
        return time.monotonic() - started

    class ChurnClient(Client):
        """A subscriber that says when its `subscribed` frame came, and closes as a browser
        tab does: a close frame, then the TCP connection."""

        def __init__(self) -> None:
            super().__init__()
            self.ready: asyncio.Future[None] = loop.create_future()

        def on_text(self, data: bytes) -> None:
            if data.startswith(b'{"type":"subscribed"') and not self.ready.done():
                self.ready.set_result(None)

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            if not self.ready.done():
                self.ready.set_exception(ConnectionError("closed before subscribed"))

        def leave(self) -> None:
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(client_frame(8, (1000).to_bytes(2, "big")))
                self.transport.close()

    async def churn(rate: float, cycles: int, live: int, channel: str) -> dict[str, Any]:
        """`cycles` connect-subscribe-close cycles at `rate` a second, with `live` sockets open
        throughout: each new subscriber replaces the oldest one."""
        sub = orjson.dumps({"type": "subscribe", "channel": channel}).decode()
        sockets: list[ChurnClient] = []
        failed = 0

        async def one() -> ChurnClient | None:
            nonlocal failed
            try:
                _, c = await loop.create_connection(ChurnClient, "127.0.0.1", port,
                                                    local_addr=(src, 0))
                await asyncio.wait_for(c.opened, 30)
                c.send(sub)
                await asyncio.wait_for(c.ready, 30)
                return c
            except (OSError, TimeoutError):
                failed += 1
                return None

        async def cycle() -> None:
            if sockets:
                sockets.pop(0).leave()
            c = await one()
            if c is not None:
                sockets.append(c)

        for c in await asyncio.gather(*(one() for _ in range(live))):
            if c is not None:
                sockets.append(c)
        pipe.send(len(sockets))  # open: the parent measures the steady state now
        await loop.run_in_executor(None, pipe.recv)
        started = time.monotonic()
        pending: set[asyncio.Task[None]] = set()
        begun = 0
        while begun < cycles:
            due = min(cycles, int((time.monotonic() - started) * rate) + 1)
            # A bound on cycles in flight: a server that cannot keep up slows the rate down
            # rather than being handed an ever longer queue.
            while begun < due and len(pending) < 200:
                task = asyncio.ensure_future(cycle())
                pending.add(task)
                task.add_done_callback(pending.discard)
                begun += 1
            await asyncio.sleep(0.005)
        if pending:
            await asyncio.wait(pending)
        elapsed = time.monotonic() - started
        for c in sockets:
            c.leave()
        return {"cycles": begun, "seconds": round(elapsed, 2), "failed": failed,
                "live": len(sockets)}

    while True:
        cmd, *args = await loop.run_in_executor(None, pipe.recv)
        if cmd == "open":
            pipe.send(await open_many(*args))
        elif cmd == "watch":
            state["watch"] = args[0]
            watch_marker = args[0].encode()
            state["seen"] = {}
            pipe.send(True)
        elif cmd == "seen":
            pipe.send(state["seen"])
        elif cmd == "frames":
            pipe.send(state["frames"])
        elif cmd == "open-on":
            pipe.send(await open_on(*args))
        elif cmd == "churn":
            pipe.send(await churn(*args))
        elif cmd == "counts":
            pipe.send(dict(counts))
        elif cmd == "open-sockets":  # of one label: still open (the server closes none)
            pipe.send(sum(1 for c in clients if getattr(c, "label", None) == args[0]
                          and c.transport is not None and not c.transport.is_closing()))
        elif cmd == "broadcast-frames":
            pipe.send(state["frames"])
        elif cmd == "close":
            for c in clients:
                if c.transport is not None:
                    c.transport.abort()
            clients.clear()
            await asyncio.sleep(0.2)
            pipe.send(True)
        elif cmd == "exit":
            pipe.send(True)
            return


class Workers:
    def __init__(self, port: int, path: str, count: int = WORKERS) -> None:
        ctx = mp.get_context("spawn")
        self.pipes = []
        self.procs = []
        for i in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child, f"127.0.0.{i + 2}", port, path),
                               daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def call(self, *cmd: Any, split: int | None = None) -> list[Any]:
        for i, pipe in enumerate(self.pipes):
            if split is not None:
                share = split // len(self.pipes) + (1 if i < split % len(self.pipes) else 0)
                pipe.send((cmd[0], share, *cmd[1:]))
            else:
                pipe.send(cmd)
        return [pipe.recv() for pipe in self.pipes]

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.call("exit")
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
