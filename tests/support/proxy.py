"""A TCP relay in front of PostgreSQL that a test can cut and restore (a network partition),
slow down (a delay each way), have drop its connections (a lossy link), or blackhole (a
partition that drops packets: connections stay open, nothing passes either way)."""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.delay = 0.0  # seconds added to every chunk, each way
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def start(self, port: int = 0) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port or self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def cut(self) -> None:
        """Refuse new connections and drop every open one."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self.drop()

    async def drop(self) -> None:
        """Drop every open connection (each end sees a reset); new ones are still accepted."""
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    def blackhole(self) -> None:
        """Nothing passes any more, either way, and nothing is closed: connections (new ones
        too) stay open and silent, as behind a firewall that drops packets."""
        self._flowing.clear()

    def heal(self) -> None:
        """Undo `blackhole`: what was held back flows again."""
        self._flowing.set()

    @property
    def connections(self) -> int:
        return len(self._writers) // 2

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._flowing.wait()
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except (OSError, asyncio.CancelledError):
            self._writers.discard(writer)
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._flowing.wait()
                data = await src.read(65536)
                if not data:
                    break
                if not self._flowing.is_set():
                    await self._flowing.wait()  # read as the hole opened: held back, not sent
                if self.delay:
                    # Timers of one delay fire in the order they were set: the byte order holds.
                    loop.call_at(loop.time() + self.delay, _write, dst, data)
                else:
                    dst.write(data)
                    await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(dst)
            with contextlib.suppress(Exception):
                dst.transport.abort()


def _write(dst: asyncio.StreamWriter, data: bytes) -> None:
    if not dst.transport.is_closing():
        dst.write(data)
