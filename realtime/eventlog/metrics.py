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
