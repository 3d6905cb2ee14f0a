"""Webhook delivery throughput: one server process to one fast local receiver.

    python bench/webhooks.py               # 5,000 events live, then a 5,000-event backlog
    python bench/webhooks.py --events 20000

On a scratch database (created and dropped again), with `realtime serve` started fresh:
1. live: the receiver is up while slots are created in bulk (one `POST .../slots` of 1,000
   slots is 1,000 `slot.created` events); the rate is events delivered per second from the
   first delivery to the last.
2. backlog: the receiver refuses connections while as many events are made, then comes back;
   the rate is the backlog drained per second after the first retry succeeds.
The receiver is an asyncio HTTP/1.1 server in this process that answers 204 at once and
counts; every delivery is in log order or the run fails. Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.lib import pg, server  # noqa: E402
from bench.lib.net import free_port, require_loopback  # noqa: E402
from realtime.db.connect import dsn_for_database  # noqa: E402
from realtime.db.migrate import migrate  # noqa: E402
from realtime.httpclient import Client  # noqa: E402

PER_REQUEST = 500  # slots per POST: 1,000 would pass the 64 KiB body limit


class Receiver:
    """Answers every POST with 204 and records the event cursors in arrival order."""

    def __init__(self) -> None:
        self.cursors: list[int] = []
        self.times: list[float] = []
        self._server: asyncio.Server | None = None
        self.port = free_port()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.cursors.append(int(json.loads(body)["cursor"].split("@")[0]))
                self.times.append(time.perf_counter())
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def make_events(http: Client, service_id: str, count: int) -> None:
    slot = {"starts_at": "2031-01-01T00:00:00Z", "ends_at": "2031-01-01T01:00:00Z", "capacity": 1}
    made = 0
    while made < count:
        n = min(PER_REQUEST, count - made)
        response = await http.request("POST", f"/api/services/{service_id}/slots",
                                      {"slots": [slot] * n})
        if response.status != 201:
            raise SystemExit(f"creating slots: HTTP {response.status} {response.body[:200]!r}")
        made += n


async def wait_for(receiver: Receiver, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while len(receiver.cursors) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(receiver.cursors)} of {count} events arrived in {within}s")
        await asyncio.sleep(0.05)


def rate(times: list[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")


async def run(events: int) -> dict[str, float]:
    admin = pg.admin_dsn()
    require_loopback(admin)
    name = f"rt_bench_hooks_{uuid.uuid4().hex[:8]}"
    await pg.create_database(admin, name)
    dsn = dsn_for_database(admin, name)
    port = free_port()
    proc = None
    receiver = Receiver()
    http = Client(f"http://127.0.0.1:{port}", size=4, timeout=60)
    try:
        await migrate(dsn, echo=lambda _line: None)
        proc = server.start(port, server.server_env(dsn, {"REALTIME_WEBHOOKS_ALLOW_PRIVATE": "1"}))
        await server.until_ready(proc, port)
        vendor = (await http.request("POST", "/api/vendors", {"name": "bench"})).json()
        service = (await http.request("POST", f"/api/vendors/{vendor['id']}/services",
                                      {"name": "bench"})).json()
        await http.request("POST", "/api/webhooks", {
            "url": f"http://127.0.0.1:{receiver.port}/hook", "events": ["slot.created"]})
        await receiver.start()
        await make_events(http, service["id"], events)
        await wait_for(receiver, events, 300)
        live = rate(receiver.times)
        await receiver.stop()
        await make_events(http, service["id"], events)
        await asyncio.sleep(1.0)
        before = len(receiver.times)
        await receiver.start()
        await wait_for(receiver, 2 * events, 900)
        backlog = rate(receiver.times[before:])
        if receiver.cursors != sorted(receiver.cursors):
            raise SystemExit("deliveries out of log order")
        return {"events": events, "live_per_second": live, "backlog_per_second": backlog}
    finally:
        http.close()
        await receiver.stop()
        server.stop(proc)
        await pg.drop_databases(admin, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000, help="events per phase (default 5000)")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.events))
    print(f"webhooks: {result['events']:,} events per phase to one local receiver")
    print(f"  live     {result['live_per_second']:,.0f} events/s")
    print(f"  backlog  {result['backlog_per_second']:,.0f} events/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
