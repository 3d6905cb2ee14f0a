"""Peer (b): a plain Starlette server on the `broadcaster` package's PostgreSQL backend.

The socket handler is the pattern of broadcaster's README: one subscription per socket, a
receiver and a sender in a task group. The frames are this project's (`subscribe`,
`subscribed`, `availability:updated`), so the same load tester drives it.

broadcaster's PostgreSQL backend runs LISTEN, UNLISTEN and NOTIFY on one asyncpg connection,
so concurrent first subscribes or publishes fail with "another operation is in progress"
(and the failed subscribe then raises KeyError in its cleanup). And two sockets subscribing
at once to a new channel both see it empty and the second registration replaces the first:
that socket silently never receives anything. With BROADCASTER_PLAIN=1 this server runs
exactly the README code and shows both; by default it adds the fixes a user would make after
seeing them: a lock around the backend's operations and around a subscription's registration.

Run: DATABASE_URL=... python -m bench.peers.broadcaster_server --port 8102
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn
from broadcaster import Broadcast
from broadcaster._backends.postgres import PostgresBackend
from broadcaster._base import Event, Subscriber
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .common import Store, database_url, dumps, make_app


class LockedPostgresBackend(PostgresBackend):
    """The user's fix: never run two statements at once on the shared connection."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._lock = asyncio.Lock()

    async def subscribe(self, channel: str) -> None:
        async with self._lock:
            await super().subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        async with self._lock:
            await super().unsubscribe(channel)

    async def publish(self, channel: str, message: str) -> None:
        async with self._lock:
            await super().publish(channel, message)


class LockedBroadcast(Broadcast):
    """broadcaster's own subscribe(), with its check-then-register made atomic."""

    def __init__(self, url: str) -> None:
        super().__init__(backend=LockedPostgresBackend(url))
        self._register = asyncio.Lock()

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscriber]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        try:
            async with self._register:
                if not self._subscribers.get(channel):
                    await self._backend.subscribe(channel)
                    self._subscribers[channel] = {queue}
                else:
                    self._subscribers[channel].add(queue)
            yield Subscriber(queue)
        finally:
            async with self._register:
                self._subscribers.get(channel, set()).discard(queue)
                if channel in self._subscribers and not self._subscribers[channel]:
                    del self._subscribers[channel]
                    await self._backend.unsubscribe(channel)
            await queue.put(None)


PLAIN = os.environ.get("BROADCASTER_PLAIN", "") in ("1", "true", "yes")
store = Store(database_url())
broadcast = Broadcast(database_url()) if PLAIN else LockedBroadcast(database_url())


async def publish(channel: str, message: dict[str, Any]) -> None:
    await broadcast.publish(channel=channel, message=dumps({"type": "availability:updated",
                                                            **message}))


async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        first = json.loads(await websocket.receive_text())
    except WebSocketDisconnect:
        return
    channel = str(first.get("channel", ""))
    async with broadcast.subscribe(channel=channel) as subscriber:
        slots = await store.channel_slots(channel)
        await websocket.send_text(dumps({"type": "subscribed", "id": first.get("id"),
                                         "channel": channel, "cursor": None,
                                         "snapshot": {"slots": slots}}))

        async def receiver() -> None:
            try:
                while True:
                    await websocket.receive_text()
            except WebSocketDisconnect:
                pass
            tg.cancel_scope.cancel()

        async def sender() -> None:
            async for event in subscriber:  # type: ignore[union-attr]
                await websocket.send_text(event.message)

        async with anyio.create_task_group() as tg:
            tg.start_soon(receiver)
            tg.start_soon(sender)


inner = make_app(store, publish, [WebSocketRoute("/ws", ws)])


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await broadcast.connect()
    async with inner.router.lifespan_context(app):
        try:
            yield
        finally:
            await broadcast.disconnect()


app = Starlette(routes=inner.routes, lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8102)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", backlog=4096)


if __name__ == "__main__":
    main()
