"""Prometheus metrics of webhook deliveries."""

from __future__ import annotations

from prometheus_client import Counter

DELIVERED = Counter("realtime_webhook_deliveries_total", "Webhook events delivered (answered 2xx)")
FAILED = Counter("realtime_webhook_failures_total",
                 "Webhook delivery attempts that failed (not 2xx, timeout, refused address)")
