"""Garbage-collector pauses: measured, and kept short with many sockets.

A full collection walks every tracked object; with 10,000 sockets that is about a million
(uvicorn's, websockets' and ours), and a pause of half a second or more (measured: growing
from 24 to 566 ms while 10,000 sockets connected; 0.55-0.70 s in a peer, docs/design-notes.md), during
which no frame goes out. So after every full collection the survivors, live by definition,
are frozen (`gc.freeze()`): later collections walk only what is newer (pauses stayed under
65 ms in the same test).

Two more things keep collections away from the fan-out. A dispatch runs with automatic
collection paused (`paused`): the objects it allocates per socket die with it, so counting them
only triggers collections that walk live sockets' objects in the middle of the writes. And
once a burst of sockets has opened, their objects are frozen at the next presence tick
(`maybe_freeze`), before the first full collection would walk them all during a broadcast
(measured: a 52 ms pause 0.6 s after 4,000 sockets opened).

The price: a cycle among frozen objects that becomes garbage is not collected. A closed
socket used to leave such cycles (in uvicorn's, websockets' and our objects), so memory
followed the reconnect rate until a thaw: 20,000 connect-subscribe-close cycles with 500
sockets open took a process from 66 to 357 MiB. Now a socket's references to itself are cut
when it closes (`Subscriber.detach`, wsprotocol.py), and reference counting frees it at once,
frozen or not (tests/channels/test_churn.py). Thawing stays as a safety net for cycles made
elsewhere: once many sockets closed since the last time, or after many freezes, everything is
thawed and collected once (`maybe_thaw`). Each thaw walks every live object (hundreds of ms
with 10,000 sockets), so after closes it comes a minute after the last one only if closed
sockets are seen to outlive their close (a sample of them is watched through weak
references); otherwise it waits four minutes at first, then twice as long after every thaw
that finds next to nothing, up to the many-freezes interval, and a minute after one that
finds garbage. The
policy never asks how many objects are frozen on its timer: `gc.get_freeze_count()` walks
the whole frozen list, which blocked the loop for about 58 ms every second with 10,000
sockets.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
import weakref
from collections import deque
from collections.abc import Iterator
from typing import Any

from realtime.channels import metrics

log = logging.getLogger("realtime.channels.gc")

FREEZE_AFTER_OPENED = 200
THAW_AFTER_CLOSED = 2000
THAW_AFTER_FREEZES = 200
THAW_MIN_INTERVAL = 60.0
THAW_FREEZES_INTERVAL = 600.0
# The wait after closes while no closed socket is seen to outlive its close, at first.
THAW_UNSEEN_INTERVAL = 240.0
# Objects a thaw must collect per socket closed since the last one for closes to count as
# leaving garbage (a socket whose cycles were not cut left about a hundred).
GARBAGE_PER_CLOSED = 10
# One closed socket in WATCH_EVERY is watched; one still alive LEAK_AFTER seconds after its
# close was not freed by reference counting.
WATCH_EVERY = 50
WATCHED = 64
LEAK_AFTER = 2.0

_started = 0.0
_longest = 0.0
_closed = 0
_opened = 0
_freezes = 0
_last_thaw = time.monotonic()
_closed_interval = THAW_UNSEEN_INTERVAL
_watched: deque[tuple[float, weakref.ref[object]]] = deque(maxlen=WATCHED)


def _freeze() -> None:
    global _freezes
    gc.freeze()
    _freezes += 1


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
        _freeze()


def install() -> None:
    if _callback not in gc.callbacks:
        gc.callbacks.append(_callback)


def settle() -> None:
    """After start-up: collect once (and so freeze what the process lives with)."""
    gc.collect()
    gc.freeze()
    # Counting walks the whole frozen list (tens of ms with 10k sockets), so it is done only
    # here and after a thaw, never on a timer.
    metrics.GC_FROZEN.set(gc.get_freeze_count())


def opened() -> None:
    global _opened
    _opened += 1


def closed(owner: object | None = None) -> None:
    """A socket closed; `owner`, its object, may be watched to see that it goes."""
    global _closed
    _closed += 1
    if owner is not None and _closed % WATCH_EVERY == 0:
        _watched.append((time.monotonic(), weakref.ref(owner)))


def leaking(now: float | None = None) -> bool:
    """Whether a watched socket is still alive well after its close: closed sockets are not
    freed by reference counting, and wait for a collection (frozen: for a thaw)."""
    now = time.monotonic() if now is None else now
    return any(ref() is not None for at, ref in _watched if now - at >= LEAK_AFTER)


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No automatic collection inside: for a dispatch, whose temporaries die at its end."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def maybe_freeze() -> bool:
    """Freeze what a burst of new sockets allocated, without walking it in a full collection.

    The young generations are collected first, so that what gets frozen is what lives; the
    rest (garbage of the old generation, if any) is collected by the next thaw.
    """
    global _opened
    if _opened < FREEZE_AFTER_OPENED:
        return False
    _opened = 0
    gc.collect(1)
    _freeze()
    return True


def maybe_thaw(open_sockets: int) -> bool:
    """Collect the garbage frozen since the last thaw: after many sockets closed, or after
    many freezes (each may have frozen cycles of short-lived objects that were alive then)."""
    global _closed, _freezes, _last_thaw, _closed_interval
    now = time.monotonic()
    many_closed = _closed >= max(THAW_AFTER_CLOSED, open_sockets // 2)
    many_freezes = _freezes >= THAW_AFTER_FREEZES
    wait = THAW_MIN_INTERVAL if many_closed and leaking(now) else _closed_interval
    if not (many_closed and now - _last_thaw >= wait) and not (
        many_freezes and now - _last_thaw >= THAW_FREEZES_INTERVAL
    ):
        return False
    closed = _closed
    _closed = 0
    _last_thaw = now
    started = time.perf_counter()
    gc.unfreeze()
    collected = gc.collect()  # a full collection: the callback freezes the survivors again
    _freezes = 0
    _watched.clear()
    if many_closed:
        found = collected >= GARBAGE_PER_CLOSED * closed
        _closed_interval = (THAW_MIN_INTERVAL if found
                            else min(2 * _closed_interval, THAW_FREEZES_INTERVAL))
    metrics.GC_FROZEN.set(gc.get_freeze_count())
    metrics.GC_THAWS.inc()
    log.info("gc thaw: %d objects collected in %.0f ms", collected,
             (time.perf_counter() - started) * 1000)
    return True
