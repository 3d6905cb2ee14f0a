"""Prometheus metrics of the channels layer, in the default registry that /metrics serves."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONNECTIONS = Gauge("realtime_ws_connections", "Open WebSocket connections")
SUBSCRIPTIONS = Gauge("realtime_ws_subscriptions", "Channel subscriptions over all connections")
FRAMES_SENT = Counter("realtime_ws_frames_sent_total", "Frames written to WebSocket connections")
FRAMES_COALESCED = Counter(
    "realtime_ws_frames_coalesced_total",
    "Frames replaced by a newer frame about the same slot (slow readers, conflict storms)",
)
FRAMES_DROPPED = Counter(
    "realtime_ws_frames_dropped_total", "Frames discarded when a slow reader was closed with 1013"
)
SLOW_CLOSES = Counter("realtime_ws_slow_closes_total", "Connections closed with 1013 for lag")
MESSAGES_RECEIVED = Counter(
    "realtime_ws_messages_received_total", "Client messages by type", ["type"]
)
ERRORS_SENT = Counter("realtime_ws_errors_total", "error frames sent, by code", ["code"])
DELIVERY_LATENCY = Histogram(
    "realtime_ws_delivery_seconds",
    "From the notification that woke the reader to the frame written to a socket (sampled)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0),
)
GC_PAUSE = Histogram(
    "realtime_gc_pause_seconds",
    "Garbage collector pauses of this process, by generation",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
GC_PAUSE_MAX = Gauge("realtime_gc_pause_max_seconds", "Longest garbage collector pause so far")
GC_FROZEN = Gauge("realtime_gc_frozen_objects",
                  "Objects kept out of collections (gc.freeze), as of start-up or the last thaw")
GC_THAWS = Counter("realtime_gc_thaws_total", "Times frozen objects were thawed and collected")
SOCKETS_REFUSED = Counter(
    "realtime_sockets_refused_total",
    "WebSockets and SSE streams refused because their client address already had "
    "REALTIME_MAX_SOCKETS_PER_ADDRESS open in this process, by door (ws, sse)",
    ["door"],
)
