"""What a load-generator process checks of every message its subscribers receive: each
update against the subscriber's view of its slot (lost, duplicated, out of order), latency
from the booking's send time, and `subscribed` replies (snapshots and resumes).

Messages are the native protocol's JSON objects, whether a WebSocket frame or the `data` of
a Server-Sent Event carried them (wsclient.py, sseclient.py).
"""

from __future__ import annotations

import time
from typing import Any

from .stats import Counters, Delivery, Histogram, classify
from .wsclient import CONFLICT, CONTROL, ERROR, SUBSCRIBED, UPDATE, Dialect, Parsed, parse_message

# Frames identical across subscribers parse once; the bound keeps memory flat on long runs.
_CACHE_MAX = 4096
# Receive times waiting for their booking's send time; past this, samples are dropped and
# counted as `unmatched_latency` rather than growing memory without bound.
_PENDING_MAX = 2_000_000
_PENDING_AGE = 30.0
_REFS_AGE = 120.0
_MAX_ERROR_KINDS = 20


class Checker:
    """The checks and their counters; a worker is one (worker.py)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.counters = Counters()
        self.latency = Histogram()
        self.before_response = 0
        self.cache: dict[bytes, Parsed] = {}
        self.refs: dict[tuple[str, int], tuple[float, float]] = {}
        self.pending: dict[tuple[str, int], list[float]] = {}
        self.pending_count = 0
        self.errors: dict[str, int] = {}

    # -- bookkeeping ----------------------------------------------------------------------

    def error(self, text: str) -> None:
        if text in self.errors or len(self.errors) < _MAX_ERROR_KINDS:
            self.errors[text] = self.errors.get(text, 0) + 1
        else:
            self.errors["(other errors)"] = self.errors.get("(other errors)", 0) + 1

    def _sample(self, key: tuple[str, int], now: float) -> None:
        ref = self.refs.get(key)
        if ref is not None:
            self.latency.add(now - ref[0])
            if now < ref[1]:
                self.before_response += 1
            return
        if self.pending_count >= _PENDING_MAX:
            self.counters.unmatched_latency += 1
            return
        samples = self.pending.get(key)
        if samples is None:
            self.pending[key] = [now]
        else:
            samples.append(now)
        self.pending_count += 1

    def _on_refs(self, batch: list[tuple[str, int, float, float]]) -> None:
        for slot_id, version, sent, answered in batch:
            key = (slot_id, version)
            self.refs[key] = (sent, answered)
            samples = self.pending.pop(key, None)
            if samples:
                self.pending_count -= len(samples)
                for t in samples:
                    self.latency.add(t - sent)
                    if t < answered:
                        self.before_response += 1

    def _prune(self) -> None:
        # Both dicts are in insertion order, which is time order: stop at the first young key.
        now = time.monotonic()
        old: list[tuple[str, int]] = []
        for k, (sent, _) in self.refs.items():
            if now - sent <= _REFS_AGE:
                break
            old.append(k)
        for k in old:
            del self.refs[k]
        stale: list[tuple[str, int]] = []
        for k, samples in self.pending.items():
            if now - samples[0] <= _PENDING_AGE:
                break
            stale.append(k)
        for k in stale:
            n = len(self.pending.pop(k))
            self.pending_count -= n
            self.counters.unmatched_latency += n

    # -- frames ---------------------------------------------------------------------------

    def on_message(self, sub: Any, payload: bytes) -> None:
        parsed = self.cache.get(payload)
        if parsed is None:
            try:
                parsed, cacheable = self.dialect.parse(sub, payload)
            except Exception as exc:  # a frame we cannot read is an error to report, not a crash
                self.counters.error_frames += 1
                self.error(f"unreadable frame: {exc!r}"[:200])
                return
            if cacheable:
                if len(self.cache) >= _CACHE_MAX:
                    self.cache.clear()
                self.cache[payload] = parsed
        kind = parsed[0]
        if kind == UPDATE:
            if classify(sub.delivery, parsed[1], parsed[2], parsed[3], self.counters):
                self._sample((parsed[1], parsed[2]), time.monotonic())
            if parsed[4] is not None:
                sub.cursor = parsed[4]
        elif kind == CONFLICT:
            self.counters.conflicts_seen += 1
            sub.conflicts += 1
            if parsed[4] is not None:
                sub.cursor = parsed[4]
        elif kind == SUBSCRIBED:
            self._on_subscribed(sub, parsed[5])
        elif kind == ERROR:
            self.counters.error_frames += 1
            err = parsed[5] if isinstance(parsed[5], dict) else {}
            text = f"error frame {err.get('code')}: {err.get('message')}"
            self.error(text[:200])
            if not sub.subscribed.done():
                sub.subscribed.set_exception(ConnectionError(text))
        elif kind != CONTROL:
            self.counters.other_frames += 1

    def _on_subscribed(self, sub: Any, msg: dict[str, Any]) -> None:
        delivery: Delivery = sub.delivery
        snapshot = msg.get("snapshot")
        if sub.cursor is not None or delivery.versions:
            # A resubscribe (after a reconnect): did the server resume or resend the state?
            if isinstance(snapshot, dict):
                self.counters.resynced_by_snapshot += 1
            else:
                self.counters.resumed_from_cursor += 1
        if isinstance(snapshot, dict):
            for s in snapshot.get("slots", []):
                slot_id = str(s["id"])
                version = int(s["version"])
                seen = delivery.versions.get(slot_id)
                if seen is not None and version < seen:
                    # A snapshot older than what this socket already saw: a stale state.
                    self.counters.out_of_order += 1
                    continue
                delivery.versions[slot_id] = version
                delivery.states[slot_id] = (int(s["booked"]), int(s["held"]), int(s["available"]))
        now = time.monotonic()
        for event in msg.get("events") or []:
            p = parse_message(event)
            if p[0] == UPDATE:
                if classify(delivery, p[1], p[2], p[3], self.counters):
                    self._sample((p[1], p[2]), now)
            elif p[0] == CONFLICT:
                self.counters.conflicts_seen += 1
                sub.conflicts += 1
        if msg.get("cursor") is not None:
            sub.cursor = msg["cursor"]
        if not sub.subscribed.done():
            sub.subscribed.set_result(None)

