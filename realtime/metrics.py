"""Prometheus metrics of the HTTP side and of booking outcomes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from realtime.pool import Pool

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
DB_POOL = Gauge("realtime_db_pool_connections",
                "Pooled PostgreSQL connections by state (idle, in_use)", ["state"])
DB_POOL_WAITING = Gauge("realtime_db_pool_waiting",
                        "Requests waiting for a pooled PostgreSQL connection")


def watch_pool(pool: Pool) -> None:
    """Read at scrape time: a pool that is always exhausted wants a larger REALTIME_POOL_SIZE."""
    DB_POOL.labels("idle").set_function(lambda: pool.idle_connections)
    DB_POOL.labels("in_use").set_function(
        lambda: pool.open_connections - pool.idle_connections)
    DB_POOL_WAITING.set_function(lambda: pool.waiting)
