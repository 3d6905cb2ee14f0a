"""The HTTP request metrics kept as plain numbers and exported at scrape time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from realtime.metrics import RequestStats


def scrape(stats: RequestStats) -> str:
    registry = CollectorRegistry()
    registry.register(stats)
    return generate_latest(registry).decode()


def test_counts_and_cumulative_buckets():
    """Counts per (method, route, status); a latency on a bound falls in that bound's bucket."""
    stats = RequestStats(buckets=(0.001, 0.01, 1.0))
    for seconds in (0.0005, 0.001, 0.002, 3.0):
        stats.observe("POST", "create_booking", 201, seconds)
    stats.observe("POST", "create_booking", 409, 0.02)
    text = scrape(stats)
    assert 'realtime_http_requests_total{method="POST",route="create_booking",status="201"} 4.0' in text
    assert 'realtime_http_requests_total{method="POST",route="create_booking",status="409"} 1.0' in text
    expected = {"0.001": 2.0, "0.01": 3.0, "1.0": 4.0, "+Inf": 5.0}
    for bound, count in expected.items():
        line = (f'realtime_http_request_seconds_bucket{{le="{bound}",method="POST",'
                f'route="create_booking"}} {count}')
        assert line in text, (line, text)
    assert 'realtime_http_request_seconds_count{method="POST",route="create_booking"} 5.0' in text
    total = next(line for line in text.splitlines()
                 if line.startswith("realtime_http_request_seconds_sum"))
    assert abs(float(total.split()[-1]) - 3.0235) < 1e-9
