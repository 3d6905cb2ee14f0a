"""py-spy samples of the server, summarised: self time by area and function, and the share of
samples with each part of a booking's path on the stack."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

AREAS = [
    ("asyncpg (driver)", ("asyncpg/",)),
    ("uvicorn / httptools (HTTP parsing, ASGI glue)", ("uvicorn/", "httptools/")),
    ("starlette (routing, request, response)", ("starlette/",)),
    ("prometheus_client (metrics)", ("prometheus_client/",)),
    ("logging", ("logging/",)),
    ("realtime.channels and realtime.eventlog (listener, hub)",
     ("realtime/channels/", "realtime/eventlog/")),
    ("realtime (http, booking, db)", ("realtime/",)),
    ("orjson / json", ("orjson", "json/")),
    ("asyncio / uvloop (event loop, tasks)", ("asyncio/", "uvloop/")),
]


# Inclusive buckets: the share of busy samples with a matching frame on the stack. They
# overlap, so they do not add up to 100%. A statement runs in the handler's task when a
# connection is free, else in a pool worker task (realtime/db/pool.py), outside the handler.
BUCKETS = [
    ("the whole HTTP request in the ASGI app (uvicorn run_asgi and below)",
     ("RequestResponseCycle.run_asgi (",)),
    ("handler create_booking (validation, service call, response)", ("create_booking (",)),
    ("asyncpg: the rt_book statement (bind, execute, decode)", ("Connection._do_execute (",)),
    ("pool: checkout, return and job queue (realtime/db/pool.py)",
     ("Pool._take_idle (", "Pool._release (", "Pool._next_job (")),
    ("response send (uvicorn RequestResponseCycle.send, socket write)",
     ("RequestResponseCycle.send (",)),
    ("request parsing (httptools callbacks, task creation)",
     ("HttpToolsProtocol.data_received (",)),
    ("reading the request body (Request.stream)", ("read_json (",)),
    ("JSON response rendering (orjson)", ("JSONResponse.render (",)),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("request id", ("new_request_id (",)),
    ("logging", ("(logging/",)),
    ("event pipeline (listener, sequencer, reader, hub)",
     ("realtime/channels/", "realtime/eventlog/")),
    ("hold sweeper", ("sweeper.py",)),
]

# The profile in bench/results/booking.json was sampled before the tree's redesign: its
# functions are named where they live now, so that the document points at code that exists.
MOVED = [
    ("RequestContext.__call__ (realtime/app.py)",
     "RequestContext.__call__ (realtime/http/context.py)"),
    ("create_booking (realtime/api.py)", "create_booking (realtime/http/routes.py)"),
    ("read_json (realtime/api.py)", "read_json (realtime/http/responses.py)"),
    ("realtime/pool.py)", "realtime/db/pool.py)"),
    ("realtime (api, service, app, validation)", "realtime (http, booking, db)"),
    ("realtime.channels (listener, hub)", "realtime.channels and realtime.eventlog (listener, hub)"),
]


def where_now(name: str) -> str:
    """A sampled function or bucket label, with the module it lives in today."""
    for old, new in MOVED:
        name = name.replace(old, new)
    return name


def _frame_parts(frame: str) -> tuple[str, str]:
    # "function (path/to/file.py:123)"
    name, _, loc = frame.rpartition(" (")
    path = loc.rstrip(")").rsplit(":", 1)[0]
    return name or frame, path


def _area(path: str) -> str:
    for area, needles in AREAS:
        if any(n in path for n in needles):
            return area
    return "other (stdlib, C extensions)"


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3", f"{ROOT}/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return path.split("/", 1)[1] if path.startswith(".") else path


def summarize_profile(text: str) -> dict[str, Any]:
    """The summary of py-spy's raw output (one "frame;frame;... count" line per stack)."""
    self_fn: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    self_area: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    loop_only = 0
    total = 0
    for line in text.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = [f for f in stack.split(";") if " (" in f and not f.startswith(("process ",
                                                                                "thread "))]
        if not frames:
            continue
        total += count
        for bucket, needles in BUCKETS:
            if any(n in stack for n in needles):
                buckets[bucket] += count
        if "runners.py" in frames[-1] or "uvicorn/server.py" in frames[-1]:
            loop_only += count
        name, path = _frame_parts(frames[-1])
        self_fn[f"{name} ({_short(path)})"] += count
        self_area[_area(path)] += count
        seen = set()
        for f in frames:
            n, p = _frame_parts(f)
            key = f"{n} ({_short(p)})"
            if key not in seen:
                seen.add(key)
                incl_fn[key] += count
    pct = (lambda c: round(100 * c / total, 1)) if total else (lambda c: 0.0)
    return {
        "samples": total,
        "self_by_area": [(a, pct(c)) for a, c in self_area.most_common()],
        "buckets": [(b, pct(buckets[b])) for b, _ in BUCKETS],
        "event_loop_only": pct(loop_only),
        "top_self": [(f, pct(c)) for f, c in self_fn.most_common(15)],
        "top_inclusive": [(f, pct(c)) for f, c in incl_fn.most_common(40)],
    }


def find_pyspy() -> str | None:
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


async def start_pyspy(pyspy: str, pid: int, seconds: int) -> tuple[Any, Path]:
    """py-spy recording a process at 200 Hz for `seconds`, and the file it writes."""
    raw = Path(tempfile.mkdtemp(prefix="rt-bench-pyspy-")) / "server.txt"
    spy = await asyncio.create_subprocess_exec(
        pyspy, "record", "--pid", str(pid), "--duration", str(seconds),
        "--rate", "200", "--format", "raw", "--nonblocking", "-o", str(raw),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    return spy, raw
