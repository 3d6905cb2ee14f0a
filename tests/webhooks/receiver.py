"""A webhook receiver for tests: a real HTTP server that records what it gets, checks every
signature, notices a delivery of an event that is already in flight, and can be told to
fail, redirect, hang or go away."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from realtime.webhooks.signing import verify


@dataclass
class Received:
    event: dict[str, Any]
    headers: dict[str, str]
    signed: bool
    at: float


@dataclass
class Receiver:
    secret: str = ""
    mode: str = "ok"  # ok | fail | redirect | hang
    hang_seconds: float = 12.0
    received: list[Received] = field(default_factory=list)
    in_flight: set[str] = field(default_factory=set)
    overlaps: list[str] = field(default_factory=list)  # ids delivered twice at the same time
    attempts: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                outer._handle(self, body)

            def log_message(self, *args: Any) -> None:
                pass

        self._handler = Handler
        self._httpd: ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> None:
        if self._httpd is None:
            self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
            self._httpd.daemon_threads = True
            self.port = self._httpd.server_address[1]
            threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Go away: connections are refused until `start`."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        event = json.loads(body)
        with self._lock:
            self.attempts += 1
            if event["id"] in self.in_flight:
                self.overlaps.append(event["id"])
            self.in_flight.add(event["id"])
        try:
            if self.mode == "hang":
                time.sleep(self.hang_seconds)
            if self.mode == "fail":
                self._answer(handler, 500)
                return
            if self.mode == "redirect":
                self._answer(handler, 307, {"location": "http://127.0.0.1:9/elsewhere"})
                return
            headers = {k.lower(): v for k, v in handler.headers.items()}
            signed = verify(self.secret, body, headers.get("realtime-signature", ""))
            with self._lock:
                self.received.append(Received(event, headers, signed, time.monotonic()))
            self._answer(handler, 204)
        finally:
            with self._lock:
                self.in_flight.discard(event["id"])

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int,
                headers: dict[str, str] | None = None) -> None:
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("content-length", "0")
        handler.end_headers()

    # -- what the tests ask -------------------------------------------------------------------

    def ids(self) -> list[str]:
        with self._lock:
            return [r.event["id"] for r in self.received]

    def first_arrivals(self) -> list[Received]:
        seen: set[str] = set()
        out = []
        with self._lock:
            for r in self.received:
                if r.event["id"] not in seen:
                    seen.add(r.event["id"])
                    out.append(r)
        return out
