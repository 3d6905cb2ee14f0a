"""A minimal Server-Sent Events reader on `asyncio.Protocol`, for thousands of subscribers.

One stream per subscriber: `GET <path>?channel=<channel>` with `Accept: text/event-stream`,
and `Last-Event-ID: <cursor>` when it resumes (what a browser's EventSource resends by itself
when it reconnects). The body is HTTP/1.1 chunked (or, from a server that does not chunk,
delimited by the connection's close); events are `field: value` lines ending with a blank
line. Each event's `data` is the same JSON object as the WebSocket frame, so it goes to the
same `on_message(sub, payload)` as wsclient.py's frames (and, the bytes being identical
across subscribers of a channel, to the same parse cache). Comments (`: ping`) are skipped.

What the worker uses of it, it shares with wsclient.Subscriber (stream.py), so a worker
holds either kind alike.
"""

from __future__ import annotations

from urllib.parse import quote

from .stream import Stream
from .wsclient import MAX_HANDSHAKE, MAX_MESSAGE

_MAX_CHUNK_LINE = 64  # hex digits and extensions: anything longer is not HTTP


class SseSubscriber(Stream):
    """One SSE stream of one channel. Event data go to `on_message(sub, payload)`."""

    # Immutable starting values, so no __init__ of its own: a stream sets its own on change.
    head = b""  # the response head until it is complete
    buf = b""  # undecoded body bytes (an incomplete chunk)
    text = b""  # decoded body bytes not yet a whole event
    chunked = True
    _last_id: bytes | None = None
    events = 0  # events with data, of every type

    def request(self) -> bytes:
        sep = "&" if "?" in self.path else "?"
        lines = [f"GET {self.path}{sep}channel={quote(self.channel, safe=':')} HTTP/1.1",
                 f"Host: {self.host}", "Accept: text/event-stream", "Cache-Control: no-cache"]
        if self.cursor is not None:
            lines.append(f"Last-Event-ID: {self.cursor}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    # -- asyncio.Protocol ---------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if not self.open:
            data = self._response_head(data)
            if not data:
                return
        if self.chunked:
            data = self._dechunk(data)
        if data:
            self._events(self.text + data if self.text else data)

    def eof_received(self) -> bool | None:
        return None  # close our side too: connection_lost follows

    # -- the response ---------------------------------------------------------------------

    def _response_head(self, data: bytes) -> bytes:
        """The body bytes after the head once it is complete; b"" until then."""
        data = self.head + data
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > MAX_HANDSHAKE:
                self._fail(ConnectionError("response head too long"))
            else:
                self.head = data
            return b""
        self.head = b""
        lines = data[:end].split(b"\r\n")
        status = lines[0]
        if not status.startswith(b"HTTP/1.1 200"):
            body = data[end + 4:end + 4 + 300].decode(errors="replace")
            self._fail(ConnectionError(f"stream refused: {status.decode(errors='replace')} {body}"))
            return b""
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        if not headers.get(b"content-type", b"").startswith(b"text/event-stream"):
            self._fail(ConnectionError("the response is not text/event-stream"))
            return b""
        self.chunked = headers.get(b"transfer-encoding") == b"chunked"
        self.open = True
        return data[end + 4:]

    def _dechunk(self, data: bytes) -> bytes:
        """The payload of every complete chunk in what has come so far."""
        if self.buf:
            data = self.buf + data
            self.buf = b""
        out: list[bytes] = []
        pos = 0
        n = len(data)
        while True:
            line_end = data.find(b"\r\n", pos)
            if line_end < 0:
                if n - pos > _MAX_CHUNK_LINE:
                    self._fail(ConnectionError("malformed chunk"))
                    return b""
                break
            try:
                size = int(data[pos:line_end], 16)
            except ValueError:
                try:  # chunk extensions (`;name=value`), which nothing needs here
                    size = int(data[pos:line_end].split(b";", 1)[0], 16)
                except ValueError:
                    self._fail(ConnectionError("malformed chunk size"))
                    return b""
            if size == 0:
                # The last chunk: the server ended the stream.
                self._fail(ConnectionError("the server ended the stream"))
                return b"".join(out)
            if size > MAX_MESSAGE:
                self._fail(ConnectionError(f"chunk of {size} bytes exceeds the client's bound"))
                return b""
            end = line_end + 2 + size
            if end + 2 > n:
                break
            if data[end:end + 2] != b"\r\n":
                self._fail(ConnectionError("malformed chunk end"))
                return b""
            out.append(data[line_end + 2:end])
            pos = end + 2
        if pos < n:
            self.buf = data[pos:]
        return out[0] if len(out) == 1 else b"".join(out)

    def _events(self, text: bytes) -> None:
        pos = 0
        while (end := text.find(b"\n\n", pos)) >= 0:
            block = text[pos:end]
            pos = end + 2
            if block[:1] == b":":
                continue  # a comment (ping)
            lines = block.split(b"\n")
            if lines[-1][:6] == b"data: " and (len(lines) == 1 or lines[-2][:5] != b"data:"):
                # What this server sends: `event:`, maybe `id:`, then one `data:` line last.
                if len(lines) > 1 and lines[-2][:4] == b"id: ":
                    self._last_id = lines[-2][4:]
                self.events += 1
                self.on_message(self, lines[-1][6:])
            else:
                self._fields(lines)
            if self.transport is None or self.transport.is_closing():
                return
        rest = text[pos:]
        if len(rest) > MAX_MESSAGE:
            self._fail(ConnectionError("an event exceeds the client's bound"))
            return
        self.text = rest

    def _fields(self, lines: list[bytes]) -> None:
        """Any other event: fields in any order, data over several lines."""
        data: list[bytes] = []
        for line in lines:
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"id":
                self._last_id = value
        if data:
            self.events += 1
            self.on_message(self, data[0] if len(data) == 1 else b"\n".join(data))

    @property
    def last_id(self) -> str | None:
        """The id of the last event that had one (kept as bytes: decoded only if asked)."""
        return None if self._last_id is None else self._last_id.decode()
