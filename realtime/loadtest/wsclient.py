"""A minimal WebSocket client on `asyncio.Protocol`, built to hold thousands of subscribers.

Why not the `websockets` client: a load generator that shares two cores with the server
must spend as little as possible per received frame. Here a frame costs a header parse and,
because a server broadcasts the same bytes to every subscriber of a channel, usually one dict
lookup (see `Worker.on_message`). No compression is offered, so servers that would negotiate
permessage-deflate with a browser send plain frames to every client alike.

Dialects translate a server's framing into the same parsed tuples:
`native` is this project's protocol (also spoken by the broadcaster peer in bench/peers);
`socketio` is Engine.IO v4 / Socket.IO v5 over a plain WebSocket.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from typing import Any

import orjson

from .stream import Stream

# Parsed message kinds.
UPDATE = 1
CONFLICT = 2
SUBSCRIBED = 3
ERROR = 4
OTHER = 5
CONTROL = 6  # handled inside the dialect (Engine.IO ping, open); nothing for the worker

# A snapshot of a few hundred slots is tens of KiB; anything past this is a broken server.
MAX_MESSAGE = 16 * 1024 * 1024
MAX_HANDSHAKE = 16 * 1024

# (kind, slot_id, version, (booked, held, available), cursor, extra)
Parsed = tuple[int, str, int, tuple[int, int, int], str | None, Any]
_NOTHING: Parsed = (OTHER, "", 0, (0, 0, 0), None, None)


def frame_bounds(data: bytes, pos: int) -> tuple[int, int] | None:
    """(payload start, payload end) of the server frame at `pos` once its header is in, else
    None. The payload may still be incomplete: the caller compares `end` with `len(data)`."""
    n = len(data)
    if n - pos < 2:
        return None
    length = data[pos + 1] & 0x7F
    head = 2
    if length == 126:
        if n - pos < 4:
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        head = 4
    elif length == 127:
        if n - pos < 10:
            return None
        length = int.from_bytes(data[pos + 2 : pos + 10], "big")
        head = 10
    return pos + head, pos + head + length


def mask_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A client frame (masked, as RFC 6455 requires of clients), FIN set."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = os.urandom(4)
    if n:
        # XOR as one big integer: far cheaper in Python than a byte loop.
        stream = (key * (n // 4 + 1))[:n]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(
            n, "big"
        )
    return header + key + payload


def _state(slot: dict[str, Any]) -> tuple[int, int, int]:
    return (int(slot.get("booked", 0)), int(slot.get("held", 0)), int(slot.get("available", 0)))


def parse_message(msg: dict[str, Any]) -> Parsed:
    """Classify one decoded message object of the native protocol."""
    kind = msg.get("type")
    if kind == "availability:updated":
        slot = msg["slot"]
        version = int(slot["version"])
        return (UPDATE, str(slot["id"]), version, _state(slot), msg.get("cursor"), None)
    if kind == "conflict:detected":
        slot = msg.get("slot") or {}
        return (CONFLICT, str(slot.get("id", "")), 0, (0, 0, 0), msg.get("cursor"), None)
    if kind == "subscribed":
        return (SUBSCRIBED, "", 0, (0, 0, 0), msg.get("cursor"), msg)
    if kind == "error":
        return (ERROR, "", 0, (0, 0, 0), None, msg.get("error"))
    return _NOTHING


class Dialect:
    name = "base"

    def handshake_path(self, path: str) -> str:
        return path

    def on_open(self, sub: Subscriber) -> None:
        raise NotImplementedError

    def parse(self, sub: Subscriber, payload: bytes) -> tuple[Parsed, bool]:
        """(parsed, cacheable): cacheable when identical bytes mean the same to every socket."""
        raise NotImplementedError


class NativeDialect(Dialect):
    name = "native"

    def on_open(self, sub: Subscriber) -> None:
        msg: dict[str, Any] = {"type": "subscribe", "channel": sub.channel, "id": "lt"}
        if sub.cursor is not None:
            msg["since"] = sub.cursor
        sub.send(orjson.dumps(msg))

    def parse(self, sub: Subscriber, payload: bytes) -> tuple[Parsed, bool]:
        msg = orjson.loads(payload)
        if not isinstance(msg, dict):
            return _NOTHING, False
        parsed = parse_message(msg)
        return parsed, parsed[0] in (UPDATE, CONFLICT)


class SocketIODialect(Dialect):
    """Engine.IO v4 over a WebSocket, no polling: what a socket.io-client sends when told
    `transports: ["websocket"]`. The peer server joins a room on a `subscribe` event and
    answers with a `subscribed` event carrying the snapshot."""

    name = "socketio"

    def handshake_path(self, path: str) -> str:
        return "/socket.io/?EIO=4&transport=websocket"

    def on_open(self, sub: Subscriber) -> None:
        pass  # wait for the Engine.IO open packet

    def parse(self, sub: Subscriber, payload: bytes) -> tuple[Parsed, bool]:
        if payload[:2] == b"42":
            data = orjson.loads(payload[2:])
            if not isinstance(data, list) or len(data) < 2 or not isinstance(data[1], dict):
                return _NOTHING, False
            msg = dict(data[1])
            msg["type"] = data[0]
            parsed = parse_message(msg)
            return parsed, parsed[0] in (UPDATE, CONFLICT)
        if payload == b"2":  # Engine.IO ping: answer or the server drops us
            sub.send(b"3")
        elif payload[:1] == b"0":  # Engine.IO open: connect to the default namespace
            sub.send(b"40")
        elif payload[:2] == b"40":  # namespace connected: now subscribe
            sub.send(b'42["subscribe",' + orjson.dumps({"channel": sub.channel}) + b"]")
        elif payload[:2] == b"41":
            sub.abort()
        return (CONTROL, "", 0, (0, 0, 0), None, None), False


DIALECTS: dict[str, Callable[[], Dialect]] = {
    "native": NativeDialect,
    "socketio": SocketIODialect,
}


class Subscriber(Stream):
    """One WebSocket subscribed to one channel. Frames go to `on_message(sub, payload)`."""

    def __init__(
        self,
        *,
        channel: str,
        host: str,
        path: str,
        dialect: Dialect,
        on_message: Callable[[Subscriber, bytes], None],
        on_lost: Callable[[Subscriber, Exception | None], None],
    ) -> None:
        super().__init__(channel=channel, host=host, path=path, on_message=on_message,
                         on_lost=on_lost)
        self.dialect = dialect
        self.buf = b""
        self.fragments: list[bytes] | None = None

    def request(self) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        return (
            f"GET {self.dialect.handshake_path(self.path)} HTTP/1.1\r\n"
            f"Host: {self.host}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()

    # -- asyncio.Protocol ---------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
            self.buf = b""
        if not self.open:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) > MAX_HANDSHAKE:
                    self._fail(ConnectionError("handshake response too long"))
                else:
                    self.buf = data
                return
            status = data[: data.find(b"\r\n")]
            if not status.startswith(b"HTTP/1.1 101"):
                self._fail(ConnectionError(f"handshake refused: {status.decode(errors='replace')}"))
                return
            data = data[end + 4 :]
            self.open = True
            self.dialect.on_open(self)
        self._frames(data)

    # -- framing --------------------------------------------------------------------------

    def _frames(self, data: bytes) -> None:
        pos = 0
        n = len(data)
        while (bounds := frame_bounds(data, pos)) is not None:
            start, end = bounds
            b0 = data[pos]
            if data[pos + 1] & 0x80:
                self._fail(ConnectionError("server sent a masked frame"))
                return
            if end - start > MAX_MESSAGE:
                self._fail(ConnectionError(f"frame of {end - start} bytes exceeds the client's bound"))
                return
            if end > n:
                break
            payload = data[start:end]
            pos = end
            opcode = b0 & 0x0F
            if opcode == 0x1 or opcode == 0x2:
                if b0 & 0x80:
                    self.on_message(self, payload)
                else:
                    self.fragments = [payload]
            elif opcode == 0x0:
                if self.fragments is None:
                    self._fail(ConnectionError("continuation frame without a start"))
                    return
                self.fragments.append(payload)
                if sum(map(len, self.fragments)) > MAX_MESSAGE:
                    self._fail(ConnectionError("fragmented message exceeds the client's bound"))
                    return
                if b0 & 0x80:
                    message = b"".join(self.fragments)
                    self.fragments = None
                    self.on_message(self, message)
            elif opcode == 0x9:
                self._write(mask_frame(payload, 0xA))
            elif opcode == 0x8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self._write(mask_frame(payload[:2], 0x8))
                if not self.closing:
                    self._fail(ConnectionError(f"server closed the connection with code {code}"))
                elif self.transport is not None:
                    self.transport.close()
                return
            # 0xA (pong) and reserved opcodes: nothing to do
            if self.transport is None or self.transport.is_closing():
                return
        if pos < n:
            self.buf = data[pos:]

    # -- sending ----------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send(self, text: bytes) -> None:
        self._write(mask_frame(text))

    def close(self) -> None:
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self._write(mask_frame((1000).to_bytes(2, "big"), 0x8))
            self.transport.close()
