"""The load test's data over HTTP: the channels and slots it books, and the state it checks
against at the end."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from realtime.httpclient import Client, HttpError

from .options import LoadTestError


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _expect(resp: Any, status: int, what: str) -> Any:
    if resp.status != status:
        raise LoadTestError(
            f"{what}: HTTP {resp.status} {resp.body[:300].decode(errors='replace')}"
        )
    return resp.json()


async def setup(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    """Channels, slots and the window to read them back in."""
    try:
        await client.request("GET", "/healthz")
    except HttpError as exc:
        raise LoadTestError(f"cannot reach the server at {args.url}: {exc}") from None
    services: dict[str, str] = {}  # channel -> service id
    slots: dict[str, list[str]] = {}  # channel -> slot ids
    window: tuple[str, str] | None = None
    if args.service:
        for sid in args.service:
            data = _expect(await client.request("GET", f"/api/services/{sid}/availability"),
                           200, f"availability of service {sid}")
            ch = data.get("channel", f"service:{sid}")
            services[ch] = sid
            slots[ch] = [str(s["id"]) for s in data["slots"]]
        if not any(slots.values()):
            raise LoadTestError("the given services have no slots to book")
        return {"services": services, "slots": slots, "window": None, "vendor": None}
    run_id = uuid.uuid4().hex[:8]
    vendor = _expect(await client.request("POST", "/api/vendors", {"name": f"loadtest {run_id}"}),
                     201, "creating the load test's vendor")
    start = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    specs = [
        {"starts_at": _rfc3339(start + timedelta(hours=i)),
         "ends_at": _rfc3339(start + timedelta(hours=i + 1)),
         "capacity": args.capacity}
        for i in range(args.slots_per_channel)
    ]
    window = (_rfc3339(start), _rfc3339(start + timedelta(hours=args.slots_per_channel)))

    async def one(i: int) -> None:
        svc = _expect(await client.request("POST", f"/api/vendors/{vendor['id']}/services",
                                           {"name": f"loadtest {run_id} #{i}"}),
                      201, "creating a service")
        created = _expect(await client.request("POST", f"/api/services/{svc['id']}/slots",
                                               {"slots": specs}), 201, "creating slots")
        ch = f"service:{svc['id']}"
        services[ch] = str(svc["id"])
        slots[ch] = [str(s["id"]) for s in created["slots"]]

    # Bounded fan-out: the pool's size limits concurrent requests.
    await asyncio.gather(*(one(i) for i in range(args.channels)))
    # Dicts filled concurrently: order channels as created for a stable plan.
    order = sorted(services)
    return {"services": {c: services[c] for c in order}, "slots": {c: slots[c] for c in order},
            "window": window, "vendor": vendor["id"]}


async def read_state(client: Client, setup_info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The database's view, per channel: slot id -> (version, (booked, held, available))."""
    out: dict[str, dict[str, Any]] = {}
    window = setup_info["window"]
    query = f"?from={window[0]}&to={window[1]}" if window else ""

    async def one(ch: str, sid: str) -> None:
        path = f"/api/services/{sid}/availability{query}"
        # The server may still be busy with the run's backlog: give it time before giving up,
        # since without the final state there is no verdict at all.
        for attempt in range(3):
            try:
                resp = await client.request("GET", path)
                break
            except HttpError:
                if attempt == 2:
                    raise
                await asyncio.sleep(2.0)
        data = _expect(resp, 200, f"reading availability of {ch}")
        out[ch] = {
            str(s["id"]): (int(s["version"]), (int(s["booked"]), int(s["held"]),
                                               int(s["available"])))
            for s in data["slots"]
        }

    await asyncio.gather(*(one(ch, sid) for ch, sid in setup_info["services"].items()))
    return out
