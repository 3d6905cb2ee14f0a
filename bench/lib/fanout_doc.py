"""docs/benchmarks-channels.md from bench/fanout.py's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .subscribers import WORKERS

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "benchmarks-channels.md"


def _owed_note(s: dict[str, Any]) -> str:
    """Said when every frame owed arrived: the rate is then the one asked for, a lower bound
    of what the server sends (bench/scaleout.py owes more)."""
    if s.get("frames", 0) < s["bookings"] * s["subscribers"]:
        return ""
    return ("\nEvery frame owed arrived, none coalesced: the realtime row is the rate the "
            "bookings asked for, a lower bound of what one process sends ([benchmarks-"
            "scaleout.md](benchmarks-scaleout.md) owes more, with one and two processes).")


def write_doc(results: dict[str, Any], command: str) -> None:
    mem = "\n".join(f"| {m['sockets']:,} | {m['rss_mib']} | {m['kib_per_socket']} |"
                    for m in results["memory"])
    lat = "\n".join(
        f"| {x['subscribers']:,} | {x['bookings']} | {x['p50_ms']} | {x['p99_ms']} | "
        f"{x['max_ms']} | {x['incomplete']} | {x.get('gc_collections', '-')} "
        f"({x.get('gc_pause_ms', '-')} ms) |" for x in results["latency"])
    s, f, gc_ = results["sustained"], results["floor"], results["gc"]
    sustained_rows = (
        f"| realtime: bookings at {s['booking_rate']:.0f}/s for {s['seconds']} s "
        f"({s['bookings']} bookings, {s['bookings'] * s['subscribers']:,} frames owed) | "
        f"{s['subscribers']:,} | {s['frames_per_s']:,} |\n"
        f"| floor: bare `websockets.broadcast()` of the same {results['frame_bytes']}-byte "
        f"frame, back to back | {f['subscribers']:,} | {f['frames_per_s']:,} |"
    )
    DOC.write_text(f"""# Benchmarks: WebSocket fan-out

Command: `{command}` (one run, {results['started']}; raw figures in
`bench/results/fanout.json`). One server process (`python -m realtime serve`: uvicorn, uvloop,
permessage-deflate off), PostgreSQL 15, and {WORKERS} subscriber processes on loopback addresses
127.0.0.2-{WORKERS + 1}, all on the same {results['machine']['cpus']} cores. The machine is
shared: load average {results['load_before'][0]} before the run, {results['load_after'][0]}
after; figures from runs on a busy machine vary by tens of percent. What is measured and how
is described at the top of `bench/fanout.py`.

## Memory per idle subscribed socket

Server RSS growth over its RSS before the first socket, divided by the sockets open (each
subscribed to one channel).

| sockets | server RSS (MiB) | KiB per socket |
|---|---|---|
{mem}

Target: 18 KiB or less per socket at 10,000 (a bare `websockets` server needs about 14.5).
Most of it is uvicorn's and websockets' per-connection state (the protocol object, the ASGI
scope, the handshake task's coroutine, the keepalive timer, the transport); the channels layer
keeps per socket one small object, two lists, no `asyncio.Event` and no task while idle (see
`realtime/channels/connection.py`), and runs uvicorn's protocol without its per-socket queue,
event deque and handshake headers (`realtime/channels/wsprotocol.py`). What each object costs,
and this tree against another side by side: `python bench/fanout.py --memory --baseline DIR
--breakdown`, in [benchmarks-memory.md](benchmarks-memory.md).

## Time until the last subscriber has a booking

One booking at a time (spaced so that each is measured alone) on a slot of the channel every
subscriber watches, `rt_book` called directly; time from just before the call to the moment the
last subscriber process has decoded the frame with the new version. "incomplete" counts
bookings some subscriber never got (must be 0). The last column counts the server's garbage
collections during the phase and their total pause.

| subscribers | bookings | p50 (ms) | p99 (ms) | max (ms) | incomplete | collections (pause) |
|---|---|---|---|---|---|---|
{lat}

Target: p99 under 150 ms at 5,000 subscribers. Where the time goes: from the commit to the
start of the dispatch takes 2-4 ms (doorbell, sequencer, one read of the log); then nearly all
of it is the kernel's loopback `write`s (py-spy, 5k phase: 66% of the server's samples on the
`os.write` line; about 25 µs each on this virtual machine, against the 15 µs the design assumed),
which is why large channels are written from two threads, and the subscriber processes, which
need the same two cores to read what was written. The figures therefore depend on what else
runs on the machine (see the load average above).

The tail was the garbage collector's and our own: earlier runs gave a p99 of 157-213 ms at 5,000.
Three stalls of the event loop landed in some fan-outs: a full collection walking the objects
of sockets that had just connected (about 50 ms), younger collections triggered by the
fan-out's own temporaries (5-25 ms), and `gc.get_freeze_count()`, called once a second for a
metric, which walks the whole frozen list (about 58 ms with 10,000 sockets). Dispatches now
run with automatic collection paused, new sockets' objects are frozen at the next tick, and
the frozen list is counted only at start-up and at a thaw (`realtime/channels/gcwatch.py`).

## Sustained fan-out against the floor

| | subscribers | frames delivered per second |
|---|---|---|
{sustained_rows}

realtime / floor: **{results['fanout_vs_floor']:.0%}** (target: at least 80%).{_owed_note(s)}

Frames are counted as the subscribers receive them. Why realtime is above the floor: the
floor, like any `broadcast()` loop, makes one socket write per frame per subscriber. realtime
builds each WebSocket frame once and writes everything a socket owes in one write (several
frames when bookings arrive faster than a round of writes takes), from several threads for
large channels (the kernel's share of a write runs without the GIL). When subscribers fall
behind, what they owe is coalesced to the newest state per slot (bounded outboxes), as in
production under overload.

## Garbage collection

Longest collector pause in the server during the run: {gc_['max_pause_ms']} ms; full
(generation 2) collections: {gc_['full_collections']}; thaws: {gc_.get('thaws', 0)}. The
longest pauses come while thousands of sockets connect, between the measured phases (see the
latency table's last column for the phases themselves). Survivors of each full collection are frozen so that
the next one walks only newer objects (`realtime/channels/gcwatch.py`), and the fan-out
allocates no task, future or dict per frame per subscriber.
""")
