"""Peer (a): python-socketio's AsyncServer on uvicorn, one room per channel.

Run: DATABASE_URL=... python -m bench.peers.socketio_server --port 8101
"""

from __future__ import annotations

import argparse
from typing import Any

import socketio
import uvicorn

from .common import Store, database_url, make_app

store = Store(database_url())
sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*")


async def publish(channel: str, message: dict[str, Any]) -> None:
    await sio.emit("availability:updated", message, room=channel)


@sio.on("subscribe")
async def subscribe(sid: str, data: dict[str, Any]) -> None:
    channel = str(data["channel"])
    # Join first, then read: an update committed in between arrives after the snapshot.
    await sio.enter_room(sid, channel)
    slots = await store.channel_slots(channel)
    await sio.emit("subscribed", {"channel": channel, "cursor": None,
                                  "snapshot": {"slots": slots}}, to=sid)


app = socketio.ASGIApp(sio, other_asgi_app=make_app(store, publish))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", backlog=4096)


if __name__ == "__main__":
    main()
