"""What the load test shows: progress while it runs, and the report at the end."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from .stats import Counters, Histogram, merged

if TYPE_CHECKING:
    from .runner import Coordinator


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
        f"{' on one hot slot' if w['hot_slot'] else ''}, "
        + ("Server-Sent Events" if r.get("transport") == "sse" else f"protocol {r['protocol']}"),
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


def build_report(coord: Coordinator, info: dict[str, Any], plan: list[list[tuple[str, int]]],
                 procs: int, ramp: float, booking_seconds: float, until_final: float,
                 expected: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The whole run's report (what `--json` prints) from the workers' final reports."""
    args = coord.args
    reps = [coord.reports[i] for i in sorted(coord.reports) if not coord.reports[i].get("died")]
    died = len(coord.reports) - len(reps)
    counters = Counters()
    for r in reps:
        counters.merge(Counters.from_dict(r["counters"]))
    latency = merged(Histogram.from_dict(r["latency"]) for r in reps)
    connect = merged(Histogram.from_dict(coord.connected[i]["connect"]) for i in coord.connected)
    reconnect = merged(Histogram.from_dict(r["reconnect"]) for r in reps)
    final = {"lost": 0, "behind": 0, "mismatched": 0, "conflicts_missed": 0}
    for r in reps:
        for k in final:
            final[k] += int((r.get("final") or {}).get(k, 0))
    drain = max((float(r.get("drain_seconds") or 0.0) for r in reps), default=0.0)
    window = until_final + drain
    errors: dict[str, int] = {}
    for r in reps:
        for k, v in r.get("errors", {}).items():
            errors[k] = errors.get(k, 0) + v
    per_channel = {ch: 0 for ch in info["services"]}
    for share in plan:
        for ch, n in share:
            per_channel[ch] += n
    connected_at_start = sum(int(coord.connected[i].get("connected", 0)) for i in coord.connected)
    before = sum(int(r.get("before_response", 0)) for r in reps)
    ok = (
        final["lost"] == 0 and final["mismatched"] == 0 and counters.duplicated == 0
        and counters.out_of_order == 0 and died == 0
    )
    out: dict[str, Any] = {
        "ok": ok,
        "server": args.url,
        "protocol": args.protocol,
        "transport": args.transport,
        "workload": {
            "sockets": args.sockets, "channels": len(info["services"]),
            "slots": sum(len(v) for v in info["slots"].values()),
            "rate": args.rate, "duration": args.duration, "hot_slot": args.hot_slot,
            "processes": procs, "reconnect_at": args.reconnect_at,
        },
        "connect": {
            "connected": connected_at_start,
            "failed": args.sockets - connected_at_start,
            "ramp_seconds": round(ramp, 3),
            "latency": connect.summary(),
        },
        "bookings": {
            "attempted": coord.attempted,
            "sent": coord.attempted - coord.skipped,
            "succeeded": coord.booked,
            "conflicts": coord.conflicts,
            "skipped_in_flight_limit": coord.skipped,
            "errors": coord.book_errors,
            "seconds": round(booking_seconds, 3),
            "achieved_rate": round(coord.booked / booking_seconds, 1) if booking_seconds else 0,
            "http_latency": coord.http.summary(),
        },
        "delivery": {
            "latency_measured_from": "booking request sent (upper bound of commit to receipt)",
            "latency": latency.summary(),
            "delivered": counters.delivered,
            "events_per_second": round(counters.delivered / window, 1) if window > 0 else 0,
            "delivered_before_http_response": round(before / latency.count, 4)
            if latency.count else 0.0,
            "lost": final["lost"],
            "subscriber_slots_behind": final["behind"],
            "state_mismatched": final["mismatched"],
            "duplicated": counters.duplicated,
            "out_of_order": counters.out_of_order,
            "gaps_coalesced": counters.gaps,
            "skipped_versions": counters.skipped_versions,
            "conflicts_seen": counters.conflicts_seen,
            "conflicts_missed": final["conflicts_missed"],
            "error_frames": counters.error_frames,
            "unexpected_closes": counters.unexpected_closes,
            "connect_errors": counters.connect_errors,
            "unmatched_latency": counters.unmatched_latency,
            "drain_seconds": round(drain, 3),
        },
        "reconnect": None if args.reconnect_at is None else {
            "storm_seconds": max((float(r.get("storm_seconds") or 0) for r in reps),
                                 default=0.0),
            "resumed_from_cursor": counters.resumed_from_cursor,
            "resynced_by_snapshot": counters.resynced_by_snapshot,
            "latency": reconnect.summary(),
        },
        "workers": [
            {"index": r["index"], "cpu_seconds": round(r["cpu_seconds"], 2),
             "max_rss_mib": round(r["max_rss_kib"] / 1024, 1),
             "delivered": r["counters"]["delivered"]}
            for r in reps
        ],
        "workers_died": died,
        "errors": errors,
        "histograms": {
            "latency": latency.to_dict(), "connect": connect.to_dict(),
            "reconnect": reconnect.to_dict(), "http": coord.http.to_dict(),
        },
    }
    return out
