"""Latency histograms and per-slot delivery checks, shared by the load generator's processes.

A histogram has fixed relative precision (1%) and a bounded number of buckets, so a worker
can record millions of samples in constant memory and ship its state to the coordinator as a
small dict that merges by addition.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# 1% wide buckets over 1 µs .. ~1 hour: ln(3.6e9)/ln(1.01) ~ 2,200 buckets at most.
_GROWTH = 1.01
_LOG_GROWTH = math.log(_GROWTH)
_MIN_US = 1.0


def _bucket(value_us: float) -> int:
    if value_us <= _MIN_US:
        return 0
    return int(math.log(value_us) / _LOG_GROWTH) + 1


def _bucket_value(index: int) -> float:
    """The upper bound of a bucket, in µs: percentiles never understate a latency."""
    if index <= 0:
        return _MIN_US
    return _GROWTH**index


class Histogram:
    """Latency samples in seconds, kept as 1%-wide logarithmic buckets."""

    __slots__ = ("buckets", "count", "max", "min", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = 0.0

    def add(self, seconds: float) -> None:
        # A negative sample can only come from clock skew between processes; CLOCK_MONOTONIC
        # is system-wide on Linux, so treat it as zero rather than corrupt the buckets.
        if seconds < 0.0:
            seconds = 0.0
        b = _bucket(seconds * 1e6)
        self.buckets[b] = self.buckets.get(b, 0) + 1
        self.count += 1
        self.total += seconds
        if seconds < self.min:
            self.min = seconds
        if seconds > self.max:
            self.max = seconds

    def merge(self, other: Histogram) -> None:
        for b, n in other.buckets.items():
            self.buckets[b] = self.buckets.get(b, 0) + n
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def percentile(self, p: float) -> float:
        """The p-th percentile (0..100) in seconds, or 0.0 without samples."""
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(self.count * p / 100.0))
        seen = 0
        for b in sorted(self.buckets):
            seen += self.buckets[b]
            if seen >= rank:
                # Never report more than the largest sample actually seen.
                return min(_bucket_value(b) / 1e6, self.max)
        return self.max

    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def summary(self) -> dict[str, float | int]:
        """Milliseconds, rounded for people; the raw buckets travel in `to_dict`."""
        return {
            "count": self.count,
            "p50_ms": round(self.percentile(50) * 1e3, 3),
            "p95_ms": round(self.percentile(95) * 1e3, 3),
            "p99_ms": round(self.percentile(99) * 1e3, 3),
            "max_ms": round(self.max * 1e3, 3),
            "mean_ms": round(self.mean() * 1e3, 3),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "buckets": {str(k): v for k, v in self.buckets.items()},
            "count": self.count,
            "total": self.total,
            "min": None if self.count == 0 else self.min,
            "max": self.max,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Histogram:
        h = cls()
        h.buckets = {int(k): int(v) for k, v in data.get("buckets", {}).items()}
        h.count = int(data.get("count", 0))
        h.total = float(data.get("total", 0.0))
        h.min = math.inf if data.get("min") is None else float(data["min"])
        h.max = float(data.get("max", 0.0))
        return h

    def cdf(self) -> list[tuple[float, float]]:
        """(latency in seconds, fraction of samples at or below it), for plots."""
        out: list[tuple[float, float]] = []
        seen = 0
        for b in sorted(self.buckets):
            seen += self.buckets[b]
            out.append((min(_bucket_value(b) / 1e6, self.max), seen / self.count))
        return out


def merged(histograms: Iterable[Histogram]) -> Histogram:
    out = Histogram()
    for h in histograms:
        out.merge(h)
    return out


@dataclass
class Delivery:
    """What one subscriber saw of one channel, checked per slot version as frames arrive.

    Versions grow by one at every change of a slot, so each frame is classified on arrival:
    the next version (in order), a later one (a gap: coalesced by the server, or lost; the
    final comparison with the database decides), the same one (duplicate) or an older one
    (out of order).
    """

    versions: dict[str, int] = field(default_factory=dict)
    states: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def snapshot(self, slots: Iterable[Mapping[str, Any]]) -> None:
        for s in slots:
            self.versions[str(s["id"])] = int(s["version"])
            self.states[str(s["id"])] = (int(s["booked"]), int(s["held"]), int(s["available"]))


@dataclass
class Counters:
    """Additive counters of a worker; merged by the coordinator."""

    delivered: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    gaps: int = 0
    skipped_versions: int = 0
    conflicts_seen: int = 0
    other_frames: int = 0
    error_frames: int = 0
    unexpected_closes: int = 0
    connect_errors: int = 0
    unmatched_latency: int = 0
    resumed_from_cursor: int = 0  # resubscribes answered with the missed events
    resynced_by_snapshot: int = 0  # resubscribes answered with a snapshot

    def merge(self, other: Counters) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def to_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, int]) -> Counters:
        return cls(**{k: int(v) for k, v in data.items() if k in cls.__dataclass_fields__})


def classify(
    delivery: Delivery,
    slot_id: str,
    version: int,
    state: tuple[int, int, int],
    counters: Counters,
) -> bool:
    """Record one update frame; True when it is new (so its latency counts)."""
    last = delivery.versions.get(slot_id)
    if last is None or version == last + 1:
        # (None: a slot created after the snapshot; its first version is the start.)
        delivery.versions[slot_id] = version
        delivery.states[slot_id] = state
        counters.delivered += 1
        return True
    if version > last + 1:
        delivery.versions[slot_id] = version
        delivery.states[slot_id] = state
        counters.delivered += 1
        counters.gaps += 1
        counters.skipped_versions += version - last - 1
        return True
    if version == last:
        counters.duplicated += 1
    else:
        counters.out_of_order += 1
    return False


def compare_final(
    delivery: Delivery, expected: Mapping[str, tuple[int, tuple[int, int, int]]]
) -> tuple[int, int, int]:
    """Compare a subscriber's final view with the database's.

    Returns (lost versions, slots behind, slots whose state differs at the same version).
    `expected` maps slot id to (version, (booked, held, available)).
    """
    lost = behind = mismatched = 0
    for slot_id, (version, state) in expected.items():
        seen = delivery.versions.get(slot_id)
        if seen is None:
            lost += 1
            behind += 1
        elif seen < version:
            lost += version - seen
            behind += 1
        elif seen == version and delivery.states.get(slot_id, state) != state:
            mismatched += 1
    return lost, behind, mismatched
