"""Garbage-collector pauses: measured, and kept short with many sockets.

A full collection walks every tracked object; with 10,000 sockets that is about a million
(uvicorn's, websockets' and ours), and a pause of half a second or more (measured: growing
from 24 to 566 ms while 10,000 sockets connected; FACTS.md: 0.55-0.70 s in a peer), during
which no frame goes out. So after every full collection the survivors, live by definition,
are frozen (`gc.freeze()`): later collections walk only what is newer (pauses stayed under
65 ms in the same test).

The price: a cycle among frozen objects that becomes garbage is not collected (a closed
socket leaves such cycles in uvicorn's and asyncio's objects). So once many sockets closed
since the last time, everything is thawed and collected once (`maybe_thaw`), which is one
longer pause after a wave of disconnections instead of ever longer ones all the time.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from realtime.channels import metrics

log = logging.getLogger("realtime.channels.gc")

THAW_AFTER_CLOSED = 2000
THAW_MIN_BASELINE = 200_000
THAW_MIN_INTERVAL = 60.0
THAW_GROWTH_INTERVAL = 600.0

_started = 0.0
_longest = 0.0
_closed = 0
_baseline = THAW_MIN_BASELINE
_last_thaw = time.monotonic()


def _callback(phase: str, info: dict[str, Any]) -> None:
    global _started, _longest
    if phase == "start":
        _started = time.perf_counter()
        return
    pause = time.perf_counter() - _started
    generation = info.get("generation")
    metrics.GC_PAUSE.labels(str(generation)).observe(pause)
    if pause > _longest:
        _longest = pause
        metrics.GC_PAUSE_MAX.set(pause)
    if generation == 2:
        gc.freeze()


def install() -> None:
    if _callback not in gc.callbacks:
        gc.callbacks.append(_callback)


def settle() -> None:
    """After start-up: collect once (and so freeze what the process lives with)."""
    global _baseline
    gc.collect()
    gc.freeze()
    _baseline = max(THAW_MIN_BASELINE, gc.get_freeze_count())


def closed() -> None:
    global _closed
    _closed += 1


def maybe_thaw(open_sockets: int) -> bool:
    """Collect the garbage frozen since the last thaw: after many sockets closed, or when the
    frozen set grew by half (cycles of other short-lived objects that happened to be frozen)."""
    global _closed, _baseline, _last_thaw
    frozen = gc.get_freeze_count()
    metrics.GC_FROZEN.set(frozen)
    now = time.monotonic()
    many_closed = _closed >= max(THAW_AFTER_CLOSED, open_sockets // 2)
    # Growth alone is mostly new sockets (nothing to collect), so it thaws rarely.
    grown = frozen >= 1.5 * _baseline and now - _last_thaw >= THAW_GROWTH_INTERVAL
    if not (many_closed and now - _last_thaw >= THAW_MIN_INTERVAL) and not grown:
        return False
    _closed = 0
    _last_thaw = now
    started = time.perf_counter()
    gc.unfreeze()
    collected = gc.collect()  # a full collection: the callback freezes the survivors again
    _baseline = max(THAW_MIN_BASELINE, gc.get_freeze_count())
    metrics.GC_THAWS.inc()
    log.info("gc thaw: %d objects collected in %.0f ms", collected,
             (time.perf_counter() - started) * 1000)
    return True
