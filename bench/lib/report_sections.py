"""The sections of docs/benchmarks-booking.md that explain the figures: the event pipeline's
cost, where the server's time goes, and what limits the rate."""

from __future__ import annotations

from typing import Any

from realtime.booking.gate import WIDTH as GATE_WIDTH
from realtime.eventlog.listener import MIN_DRAIN_SPACING

from .profile import where_now
from .results import TARGET_UNCONTENDED, find_phase


def doc_pipeline(res: dict[str, Any], w: Any) -> None:
    """The event pipeline and the booking rate: plain, one NOTIFY per booking, sequencer."""
    w("## The event pipeline and the booking rate")
    w("")
    top = max(res["settings"]["db_clients"])
    w(f"Direct calls, {top} clients, back to back:")
    w("")
    w("| workload | plain | one NOTIFY per booking | with doorbell + sequencer + reader | "
      "doorbells/s | sequencer calls/s | events per call | transactions per booking | "
      "unnumbered when the load stopped |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    notes = []
    for workload in ("uncontended", "hot"):
        plain = find_phase(res, "db", "plain", workload, top)
        notify = find_phase(res, "db", "notify", workload)
        seq = find_phase(res, "db", "sequencer", workload)
        if not (plain and notify and seq):
            continue
        pr = plain["bookings_per_s"] or 1
        pl = seq.get("pipeline", {})
        per_call = pl.get("numbered_per_s", 0) / max(pl.get("drains_per_s", 0), 1e-9)
        w(f"| {workload} | {pr:,.0f}/s | {notify['bookings_per_s']:,.0f}/s "
          f"({notify['bookings_per_s'] / pr:.0%}) | {seq['bookings_per_s']:,.0f}/s "
          f"({seq['bookings_per_s'] / pr:.0%}) | {pl.get('doorbells_per_s', 0):,.0f} | "
          f"{pl.get('drains_per_s', 0):,.0f} | {per_call:,.1f} | "
          f"{seq.get('transactions_per_booking')} | {pl.get('unnumbered_at_stop', '?')} "
          f"(numbered {pl.get('drained_after_stop_ms', '?')} ms later) |")
        pg_plain = plain["cores"]["postgres"] / pr * 1e6
        pg_seq = seq["cores"]["postgres"] / (seq["bookings_per_s"] or 1) * 1e6
        if per_call >= 3:
            notes.append(
                f"{workload.capitalize()}: PostgreSQL spent {pg_plain:,.0f} µs per booking "
                f"plain and {pg_seq:,.0f} µs with the pipeline; the difference is numbering "
                "(an UPDATE of every event row, with its index entries) and reading each "
                "event once. The sequencer kept up (nothing left unnumbered when the load "
                f"stopped) at {pl.get('doorbells_per_s', 0):,.0f} doorbells/s: it does not cap "
                "the rate, it costs CPU, and on two shared cores that CPU comes out of the "
                f"booking rate ({seq['bookings_per_s'] / pr:.0%} of plain here).")
        if per_call < 3:
            notes.append(
                f"On the {workload} workload the sequencer drained after nearly every booking "
                f"({per_call:.1f} events per call): at {seq['bookings_per_s']:,.0f} bookings/s "
                "it is fast enough to empty the log before the next booking commits, so each "
                "drain re-arms the doorbell, the next booking rings it again "
                f"({pl.get('doorbells_per_s', 0):,.0f} NOTIFYs/s on `rt_doorbell`, plus one on "
                "`rt_events` per non-empty drain), and every booking brings about "
                f"{(seq.get('transactions_per_booking') or 1) - 1:.1f} more transactions. "
                "The notification rate is bounded by the drain rate, as designed, and drains "
                f"are at least {MIN_DRAIN_SPACING * 1000:.0f} ms apart, so this happens only "
                "while the booking rate is low enough for a drain to empty the log.")
    w("")
    w("A booking rings the doorbell only when `rt_doorbell.rung` is false, and the sequencer "
      "clears it once per drain: the notification rate follows the drain rate, not the "
      "booking rate, and no NOTIFY is taken by most booking commits. The sequencer, "
      "LISTEN connection and reader ran in the benchmark process the way the server runs "
      f"them (drain on each doorbell and every 0.25 s, at most once per "
      f"{MIN_DRAIN_SPACING * 1000:.0f} ms, once more after a drain that numbered something; "
      "read on each `rt_events` not yet read).")
    w("")
    for note in notes:
        w(note)
        w("")
    up = find_phase(res, "db", "plain", "uncontended", top)
    if up and up["bookings_per_s"] < 2_500:
        w(f"At {up['bookings_per_s']:,.0f} bookings/s the plain run stayed below the rate where "
          "one NOTIFY per commit becomes the limit (it serializes notifying commits on a "
          "cluster-wide lock, which caps them near 3,000/s on this kind of machine), so the notify variant shows "
          "only part of its cost here.")
        w("")


def doc_profile(res: dict[str, Any], w: Any) -> None:
    """Where the time goes: CPU per booking by party, and the py-spy summary."""
    prof = res.get("profile")
    w("## Where the time goes")
    w("")
    up_http = find_phase(res, "http", "api", "uncontended")
    up_db = find_phase(res, "db", "plain", "uncontended",
                   res["summary"].get("uncontended", {}).get("db_ceiling_clients"))
    if up_http and up_db:
        c, r = up_http["cores"], up_http["bookings_per_s"] or 1
        cd, rd = up_db["cores"], up_db["bookings_per_s"] or 1

        def row(name: str, cc: dict[str, float], rate: float) -> str:
            ours = cc.get("server", 0) + cc["load"] + cc["postgres"] + cc.get("bench", 0)
            server = f"{cc['server'] / rate * 1e6:,.0f} µs" if "server" in cc else "-"
            return (f"| {name} | {server} | {cc['load'] / rate * 1e6:,.0f} µs | "
                    f"{cc['postgres'] / rate * 1e6:,.0f} µs | {ours / rate * 1e6:,.0f} µs | "
                    f"{cc['other']:.2f} | {cc.get('steal', 0):.2f} |")

        w("CPU per booking, from the CPU time each party used during the measured window "
          "(`/proc`), divided by the bookings in it:")
        w("")
        w("| | server process | load (generators / drivers) | PostgreSQL (this database's "
          "backends) | all of ours | cores used by others meanwhile | cores stolen |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        w(row(f"HTTP uncontended ({r:,.0f}/s)", c, r))
        w(row(f"direct, uncontended, {up_db['clients']} clients ({rd:,.0f}/s)", cd, rd))
        hz = find_phase(res, "http", "healthz", "healthz")
        if hz and hz["bookings_per_s"]:
            ch, rh = hz["cores"], hz["bookings_per_s"]
            w(row(f"GET /healthz, no database ({rh:,.0f} requests/s)", ch, rh))
            w("")
            w(f"`GET /healthz` is the server's floor per request (uvicorn, httptools, Starlette, "
              f"the request-id/metrics middleware; no database): {ch['server'] / rh * 1e6:,.0f} "
              f"µs, against {c['server'] / r * 1e6:,.0f} µs for a booking. The difference, "
              f"{(c['server'] / r - ch['server'] / rh) * 1e6:,.0f} µs, is the booking path "
              "proper: body parsing and validation, the pool, the asyncpg round trip(s), the "
              "result's JSON, and the event pipeline's share.")
        w("")
        w(f"During the HTTP uncontended run the server process used {c['server']:.2f} of a "
          f"core ({c.get('server_kernel', 0):.2f} of it in the kernel), the generators "
          f"{c['load']:.2f}, PostgreSQL {c['postgres']:.2f}; the machine as a whole was busy "
          f"{c['machine']:.2f} of its {res['machine']['cpus']} cores.")
        w("")
    if not prof:
        w("(No py-spy profile in this run.)")
        w("")
        return
    w(f"py-spy sampled the server at 200 Hz for the profile phase (uncontended HTTP load, "
      f"{prof['load_bookings_per_s']:,.0f} bookings/s while sampled, {prof['samples']:,} "
      "non-idle samples). Self time by area (the innermost Python frame; time in C "
      "extensions counts towards the Python function that called them):")
    w("")
    w("| area | share of busy samples |")
    w("|---|---:|")
    for area, pct in prof["self_by_area"]:
        w(f"| {where_now(area)} | {pct}% |")
    w("")
    w("Top functions by self time:")
    w("")
    w("| function | self |")
    w("|---|---:|")
    for f, pct in prof["top_self"][:12]:
        w(f"| `{where_now(f)}` | {pct}% |")
    w("")
    w("What the server is doing (share of busy samples with it on the stack; the rows "
      "overlap; a statement runs in the handler's task when a pool connection is free, "
      "else in a pool worker task, outside the handler):")
    w("")
    w("| part | inclusive |")
    w("|---|---:|")
    for bucket, pct in prof.get("buckets", []):
        w(f"| {where_now(bucket)} | {pct}% |")
    w(f"| event loop itself, no handler on the stack (uvloop: epoll, socket reads, "
      f"callbacks) | {prof.get('event_loop_only', 0)}% |")
    w("")


def doc_limits(res: dict[str, Any], w: Any) -> None:
    """Whether the targets are met, and what limits the rate."""
    s = res["summary"]
    cpus = res["machine"]["cpus"]
    w("## Are the targets met, and what limits the rate")
    w("")
    for workload, row in s.items():
        w(f"- {workload}: {row['http_per_s']:,.0f}/s through HTTP is {row['ratio']:.1%} of the "
          f"database's {row['db_ceiling_per_s']:,.0f}/s; the target is "
          f"{row['target']:.0%}: **{'met' if row['met'] else 'not met'}**.")
    w("")
    before = res.get("busy_cores_before_start")
    if before is not None and before >= 0.3:
        w(f"**Caution:** {before:.2f} cores were busy with other work before this run "
          "started; every figure is lower than on a quiet machine (the `other` column of "
          "the phase table shows how much each phase lost).")
        w("")
    up_http = find_phase(res, "http", "api", "uncontended")
    up_db = find_phase(res, "db", "plain", "uncontended", s.get("uncontended", {}).get(
        "db_ceiling_clients"))
    if up_http and up_db:
        c, r = up_http["cores"], up_http["bookings_per_s"] or 1
        cd, rd = up_db["cores"], up_db["bookings_per_s"] or 1
        server_us = c.get("server", 0) / r * 1e6
        http_total = (c.get("server", 0) + c["load"] + c["postgres"]) / r * 1e6
        db_total = (cd["load"] + cd["postgres"]) / rd * 1e6
        w(f"**Uncontended.** A booking through HTTP cost {http_total:,.0f} µs of CPU in all "
          f"(server {server_us:,.0f}, PostgreSQL {c['postgres'] / r * 1e6:,.0f}, generators "
          f"{c['load'] / r * 1e6:,.0f}); a booking called directly cost {db_total:,.0f} µs "
          f"(PostgreSQL {cd['postgres'] / rd * 1e6:,.0f}, driver {cd['load'] / rd * 1e6:,.0f}). "
          f"When both are CPU-bound on the same {cpus} cores, the HTTP / direct ratio cannot "
          f"exceed the inverse ratio of these costs, **{db_total / http_total:.2f}**, however "
          "quiet the machine: that, not the run's noise, is the first limit on the uncontended "
          f"target ({TARGET_UNCONTENDED:.0%}). ")
        if c.get("server", 0) >= 0.85:
            w(f"The server process was CPU-bound ({c['server']:.2f} of a core; one Python "
              "process cannot use more than one), so one process cannot pass "
              f"~{1e6 / server_us:,.0f}/s at this cost per booking even with a core of its own.")
        else:
            w(f"The server process used {c['server']:.2f} of a core (of which "
              f"{c.get('server_kernel', 0):.2f} in the kernel: socket I/O): it was not "
              "pinned at 100% of a core because it competes for the two cores with "
              "PostgreSQL and the generators; with a core of its own it would reach about "
              f"{1e6 / server_us:,.0f}/s at this cost per booking.")
        w("")
        seq = find_phase(res, "db", "sequencer", "uncontended")
        if seq and seq["bookings_per_s"]:
            w(f"The server also runs the event pipeline (sequencer, reader), which the plain "
              f"direct run does not: against the direct run with the pipeline beside it "
              f"({seq['bookings_per_s']:,.0f}/s), HTTP reached "
              f"**{r / seq['bookings_per_s']:.0%}**. PostgreSQL spent "
              f"{c['postgres'] / r * 1e6:,.0f} µs per HTTP booking, "
              f"{cd['postgres'] / rd * 1e6:,.0f} µs per plain direct one and "
              f"{seq['cores']['postgres'] / seq['bookings_per_s'] * 1e6:,.0f} µs per direct "
              "one with the pipeline: most of the database-side difference is the pipeline.")
            w("")
        tx_http, tx_db = up_http.get("transactions_per_booking"), up_db.get(
            "transactions_per_booking")
        if tx_http and tx_db:
            w(f"PostgreSQL counted {tx_http:.2f} transactions per HTTP booking against "
              f"{tx_db:.2f} per direct call.")
            if tx_http >= 1.6 * tx_db:
                w(" A reset query on every pool release would explain the extra one "
                  "(asyncpg's pool runs `SELECT pg_advisory_unlock_all(); CLOSE ALL; "
                  "UNLISTEN *; RESET ALL;` by default); `realtime/db/pool.py` runs none, so "
                  "look for a new per-booking statement in the server.")
            w("")
    hot = s.get("hot")
    if hot:
        pool = res["settings"]["server_env"].get("REALTIME_POOL_SIZE")
        hot_db = [p for p in res["phases"] if p["layer"] == "db" and p["variant"] == "plain"
                  and p["workload"] == "hot" and p.get("round") == hot.get("median_round")]
        trend = ", ".join(f"{p['clients']} clients {p['bookings_per_s']:,.0f}/s "
                          f"(p99 {p['p99_ms']:.0f} ms)" for p in hot_db)
        w("**Hot slot.** Every booking updates the same row, so bookings are serialized by "
          "its row lock, held from the `FOR UPDATE` until the commit's WAL flush: the rate "
          "is bounded by commit latency (an fsync per commit, shared with every other "
          f"writer on this PostgreSQL), not by CPU. Direct: {trend}. The server (pool size "
          f"{pool}) sends at most {GATE_WIDTH} writes per slot at a time "
          "(`realtime/booking/gate.py`): one holds the row, the next ones wait behind it in "
          "the database, so that a commit hands the lock on at once; the rest wait in the "
          "server, which keeps its p99 below the direct runs' at 16 and 32 clients. Its "
          "event pipeline drains once per "
          f"{MIN_DRAIN_SPACING * 1000:.0f} ms on average: each drain is a transaction whose WAL flush "
          "queues with the bookings' own.")
        w("")
    w("The database ceiling is measured with asyncpg driver processes on the same cores, so "
      "it too is below what PostgreSQL alone would reach on this machine; the ratios compare "
      "like with like (one client stack each, same cores).")
    w("")
