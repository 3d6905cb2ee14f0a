"""What the load test shows: progress while it runs, and the report at the end."""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.last_line = 0.0

    def show(self, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        if self.tty:
            sys.stderr.write("\r\x1b[K" + text)
            sys.stderr.flush()
        elif force or time.monotonic() - self.last_line >= 5.0:
            self.last_line = time.monotonic()
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def format_report(r: dict[str, Any]) -> str:
    w, c, b, d = r["workload"], r["connect"], r["bookings"], r["delivery"]
    lat, http = d["latency"], b["http_latency"]
    lines = [
        f"realtime loadtest: {w['sockets']} sockets on {w['channels']} channels "
        f"({w['processes']} client processes), {w['rate']:g} bookings/s for {w['duration']:g}s"
        f"{' on one hot slot' if w['hot_slot'] else ''}, protocol {r['protocol']}",
        "",
        f"connect      {c['connected']} connected, {c['failed']} failed, ramp {c['ramp_seconds']}s;"
        f" per socket p50 {c['latency']['p50_ms']} ms, p99 {c['latency']['p99_ms']} ms",
        f"bookings     {b['succeeded']} booked, {b['conflicts']} conflicts, "
        f"{sum(b['errors'].values())} errors, {b['skipped_in_flight_limit']} skipped; "
        f"{b['achieved_rate']}/s; HTTP p50 {http['p50_ms']} ms, p99 {http['p99_ms']} ms",
        f"latency      p50 {lat['p50_ms']} ms  p95 {lat['p95_ms']} ms  p99 {lat['p99_ms']} ms  "
        f"max {lat['max_ms']} ms  (from {d['latency_measured_from']})",
        f"delivered    {d['delivered']:,} updates, {d['events_per_second']:,.0f}/s; "
        f"{d['delivered_before_http_response']:.0%} before the booker's HTTP response",
        f"lost         {d['lost']}   duplicated {d['duplicated']}   out of order "
        f"{d['out_of_order']}   state mismatched {d['state_mismatched']}",
        f"other        conflicts seen {d['conflicts_seen']} (missed "
        f"{d['conflicts_missed']}), coalesced gaps "
        f"{d['gaps_coalesced']}, error frames {d['error_frames']}, unexpected closes "
        f"{d['unexpected_closes']}, drain {d['drain_seconds']}s",
    ]
    if r.get("reconnect"):
        rc = r["reconnect"]
        lines.append(
            f"reconnect    storm {rc['storm_seconds']:.2f}s; per socket p50 "
            f"{rc['latency']['p50_ms']} ms, p99 {rc['latency']['p99_ms']} ms; "
            f"{rc['resumed_from_cursor']} resumed from their cursor, "
            f"{rc['resynced_by_snapshot']} got a snapshot"
        )
    for wk in r["workers"]:
        lines.append(
            f"worker {wk['index']}     cpu {wk['cpu_seconds']}s, rss {wk['max_rss_mib']} MiB"
        )
    if r["errors"] or b["errors"]:
        lines.append("errors:")
        for k, v in list(b["errors"].items()) + list(r["errors"].items()):
            lines.append(f"  {v:>7}  {k}")
    lines.append("")
    lines.append("OK: nothing lost, duplicated or out of order" if r["ok"]
                 else "FAILED: see lost / duplicated / out of order above")
    return "\n".join(lines)
