"""Prometheus metrics of the HTTP side and of booking outcomes."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter("realtime_http_requests_total", "HTTP requests by route and status",
                        ["method", "route", "status"])
HTTP_LATENCY = Histogram("realtime_http_request_seconds", "HTTP request latency by route",
                         ["method", "route"],
                         buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
BOOKINGS = Counter("realtime_bookings_total",
                   "Booking operations by operation and outcome (ok, conflict, error code)",
                   ["operation", "outcome"])
HOLDS_EXPIRED = Counter("realtime_holds_expired_total", "Holds expired by the sweeper")
RATE_LIMITED = Counter("realtime_rate_limited_total", "Requests refused with 429")
TASK_RESTARTS = Counter(
    "realtime_task_restarts_total", "Background tasks restarted after a crash", ["task"]
)
