"""Prometheus metrics of the event pipeline (listener, sequencer, reader)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SEQUENCER_CALLS = Counter(
    "realtime_sequencer_calls_total",
    "rt_sequence_events() transactions run by this process (each one a WAL flush when it numbers)",
)
EVENTS_NUMBERED = Counter(
    "realtime_events_numbered_total", "Events given their log position by this process"
)
EVENTS_READ = Counter("realtime_events_read_total", "Events read from rt_events and dispatched")
LISTENER_RECONNECTS = Counter(
    "realtime_listener_reconnects_total", "Times the LISTEN connection was re-established"
)
LISTENER_CONNECTED = Gauge("realtime_listener_connected", "1 while the LISTEN connection is up")
# The read replica (DATABASE_READ_URL; realtime/eventlog/replica.py).
REPLICA_USABLE = Gauge(
    "realtime_replica_usable",
    "1 while the log's reads go to the read replica, 0 while the primary serves them",
)
REPLICA_LAG = Gauge(
    "realtime_replica_lag_seconds",
    "Age of the oldest log position the primary announced that the read replica has not replayed",
)
REPLICA_READS = Counter(
    "realtime_replica_reads_total",
    "Snapshots, resumes, existence checks and availability reads the read replica served",
)
REPLICA_FALLBACKS = Counter(
    "realtime_replica_fallbacks_total",
    "Such reads the primary served instead, by reason (behind, ahead, absent, unavailable, "
    "error)",
    ["reason"],
)
