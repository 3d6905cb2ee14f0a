"""One command, one run: this project against python-socketio and Starlette + broadcaster.

    python bench/compare.py            # the full comparison (< 10 minutes)
    python bench/compare.py --quick    # a smoke run of the harness (~2 minutes)

(`python -m bench.compare` works too.)

Each server gets a fresh PostgreSQL database, and a fresh process for every workload (no
backlog or memory carried over), and runs alone, so servers never compete for the two cores.
All receive the same workloads from the same load tester (`realtime loadtest`): fan-out to 1k,
5k and 10k subscribers, a sustained booking stream with 1k subscribers, and a reconnect
storm. Workloads run one at a time across all servers, so that if the time budget runs out,
what did run is complete for every server. Writes the raw JSON to bench/results/, a table
with ratios to docs/benchmarks-peers.md (between the markers, so the notes around it stay)
and plots to docs/img/.

PostgreSQL: BENCH_ADMIN_DSN (default postgresql://postgres@127.0.0.1:5432/postgres) must be
allowed to create and drop databases.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `realtime` and `bench` importable
    sys.path.insert(0, str(ROOT))

PY = sys.executable
ADMIN_DSN = os.environ.get("BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")

SERVERS: dict[str, dict[str, Any]] = {
    "realtime": {"cmd": [PY, "-m", "realtime", "serve"], "protocol": "native", "migrate": True,
                 "label": "realtime (this project)"},
    "socketio": {"cmd": [PY, "-m", "bench.peers.socketio_server"], "protocol": "socketio",
                 "migrate": False, "label": "python-socketio"},
    "broadcaster": {"cmd": [PY, "-m", "bench.peers.broadcaster_server"], "protocol": "native",
                    "migrate": False, "label": "Starlette + broadcaster (postgres)"},
}

# name, sockets, loadtest options. The same for every server.
# The fan-out rate offers 20k, 100k and 200k updates/s: more than one server process delivers
# on this machine at 5k and 10k, so "delivered/s" there is each server's capacity.
FULL = [
    ("fanout-1k", 1000, ["--channels", "10", "--rate", "200", "--duration", "3"]),
    ("fanout-5k", 5000, ["--channels", "10", "--rate", "200", "--duration", "3"]),
    ("fanout-10k", 10000, ["--channels", "10", "--rate", "200", "--duration", "3"]),
    ("stream-1k", 1000, ["--channels", "10", "--rate", "300", "--duration", "8"]),
    ("storm-2k", 2000, ["--channels", "10", "--rate", "20", "--duration", "8",
                        "--reconnect-at", "3"]),
]
QUICK = [
    ("fanout-1k", 500, ["--channels", "10", "--rate", "20", "--duration", "2"]),
    ("fanout-5k", 1000, ["--channels", "10", "--rate", "20", "--duration", "2"]),
    ("fanout-10k", 2000, ["--channels", "10", "--rate", "20", "--duration", "2"]),
    ("stream-1k", 500, ["--channels", "10", "--rate", "100", "--duration", "3"]),
    ("storm-2k", 500, ["--channels", "10", "--rate", "20", "--duration", "4",
                       "--reconnect-at", "2"]),
]
COMMON = ["--drain-timeout", "20", "--connect-timeout", "30", "--json", "--quiet", "--seed", "1"]
RUN_BOUND = 150.0  # one loadtest run; a server that hangs cannot stall the comparison


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dsn_for(name: str) -> str:
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{name}"


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def proc_rss_kib(pid: int, field: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Server:
    def __init__(self, name: str, log_dir: Path) -> None:
        self.name = name
        self.spec = SERVERS[name]
        self.port = free_port()
        self.db = f"bench_{name}_{uuid.uuid4().hex[:8]}"
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {**os.environ, "DATABASE_URL": dsn_for(self.db), "REALTIME_RATE_LIMIT": "0",
                "LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT)}

    def create_db(self) -> None:
        self.log_path.write_bytes(b"")  # one log per comparison, appended across workloads
        asyncio.run(_admin(f'CREATE DATABASE "{self.db}"'))
        if self.spec["migrate"]:
            subprocess.run([PY, "-m", "realtime", "migrate"], env=self.env(), cwd=ROOT,
                           check=True, capture_output=True, timeout=120)

    def drop_db(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)'))

    def start(self) -> None:
        log = open(self.log_path, "ab")  # the child keeps its own copy of the descriptor
        self.proc = subprocess.Popen([*self.spec["cmd"], "--port", str(self.port)],
                                     env=self.env(), cwd=ROOT, stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 60
        path = "/readyz" if self.name == "realtime" else "/healthz"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.url + path, timeout=1) as r:
                    if r.status == 200:
                        return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready in 60s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def run_workload(server: Server, name: str, sockets: int, opts: list[str],
                 bound: float) -> dict[str, Any]:
    assert server.proc is not None
    pid = server.proc.pid
    cpu0 = proc_cpu_seconds(pid)
    rss0 = proc_rss_kib(pid)
    cmd = [PY, "-m", "realtime", "loadtest", "--url", server.url, "--sockets", str(sockets),
           "--protocol", str(server.spec["protocol"]), *opts, *COMMON]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=bound,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        stdout, stderr, code = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired:
        stdout, stderr, code = "", f"stopped after {bound:.0f}s (the comparison's bound)", -1
    result: dict[str, Any] = {"workload": name, "server": server.name, "exit": code,
                              "wall_seconds": round(time.monotonic() - t0, 1)}
    try:
        result["report"] = json.loads(stdout)
    except ValueError:
        result["report"] = None
        result["stderr"] = stderr[-2000:]
    result["server_cpu_seconds"] = round(proc_cpu_seconds(pid) - cpu0, 2)
    result["server_rss_kib_before"] = rss0
    result["server_peak_rss_kib"] = proc_rss_kib(pid, "VmHWM")
    return result


# -- output ----------------------------------------------------------------------------------


def _get(r: Any, *path: str, default: Any = None) -> Any:
    cur = r
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return default
        cur = cur[p]
    return cur


def row_figures(res: dict[str, Any]) -> dict[str, Any]:
    rep = res.get("report")
    d = _get(rep, "delivery", default={}) or {}
    return {
        "eps": d.get("events_per_second"),
        "p50": _get(d, "latency", "p50_ms"),
        "p99": _get(d, "latency", "p99_ms"),
        "max": _get(d, "latency", "max_ms"),
        "lost": d.get("lost"),
        "dup": d.get("duplicated"),
        "ooo": d.get("out_of_order"),
        "connected": _get(rep, "connect", "connected"),
        "ramp": _get(rep, "connect", "ramp_seconds"),
        "booked": _get(rep, "bookings", "succeeded"),
        "book_rate": _get(rep, "bookings", "achieved_rate"),
        "book_p99": _get(rep, "bookings", "http_latency", "p99_ms"),
        "skipped": _get(rep, "bookings", "skipped_in_flight_limit"),
        "errors": sum((_get(rep, "bookings", "errors", default={}) or {}).values())
        + (d.get("unexpected_closes") or 0) + (d.get("error_frames") or 0),
        "storm": _get(rep, "reconnect", "storm_seconds"),
        "storm_p99": _get(rep, "reconnect", "latency", "p99_ms"),
        "cpu": res.get("server_cpu_seconds"),
        # Peak growth over the fresh process's size, per subscriber: sockets plus whatever
        # backlog the server buffered for them, so an upper bound of the per-socket cost.
        "kib_per_socket": round((res["server_peak_rss_kib"] - res["server_rss_kib_before"])
                                / rep["workload"]["sockets"], 1)
        if rep is not None and res.get("server_peak_rss_kib") else None,
        "failed": rep is None,
    }


def _fmt(v: Any, digits: int = 0) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _ratio(a: Any, b: Any, invert: bool = False) -> str:
    try:
        if invert:
            a, b = b, a
        return f"{float(a) / float(b):.2f}x" if b else "—"
    except (TypeError, ValueError):
        return "—"


def _why(res: dict[str, Any]) -> str:
    text = res.get("skipped") or res.get("error") or ""
    if not text:
        lines = (res.get("stderr") or "run failed").strip().splitlines()
        text = lines[-1] if lines else "run failed"
    return text.replace("|", "/")[:100]


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    servers = meta["servers"]
    workloads = meta["workloads"]
    raw = {(r["server"], r["workload"]): r for r in results}
    by = {k: row_figures(r) for k, r in raw.items()}
    out = [
        f"Run {meta['started']} on {meta['machine']}; `{meta['command']}`; "
        f"{meta['wall_seconds']:.0f} s wall; load average before the run "
        f"{meta.get('loadavg_before', '?')}. Raw JSON: `{meta['json']}`.",
        "",
        "| workload | server | delivered/s | p50 ms | p99 ms | max ms | lost | dup | disorder "
        "| connect ramp s | booked (/s) | booking p99 ms | skipped | errors | server CPU s "
        "| server KiB/socket |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for w in workloads:
        for s in servers:
            f = by.get((s, w))
            if f is None:
                continue
            if f["failed"]:
                out.append(f"| {w} | {s} | failed: {_why(raw[(s, w)])} ||||||||||||||")
                continue
            out.append(
                f"| {w} | {s} | {_fmt(f['eps'])} | {_fmt(f['p50'], 1)} | {_fmt(f['p99'], 1)} "
                f"| {_fmt(f['max'], 1)} | {_fmt(f['lost'])} | {_fmt(f['dup'])} | {_fmt(f['ooo'])} "
                f"| {_fmt(f['ramp'], 1)} | {_fmt(f['booked'])} ({_fmt(f['book_rate'], 0)}) "
                f"| {_fmt(f['book_p99'], 1)} | {_fmt(f['skipped'])} | {_fmt(f['errors'])} "
                f"| {_fmt(f['cpu'], 1)} | {_fmt(f['kib_per_socket'], 1)} |"
            )
    if "realtime" in servers:
        peers = [s for s in servers if s != "realtime"]
        out += ["", "Ratios of this project to each peer: throughput (delivered/s, ours / "
                "theirs) and p99 delivery latency (theirs / ours); above 1 means we are ahead.",
                "", "| workload | " + " | ".join(f"throughput vs {p} | p99 vs {p}" for p in peers)
                + " |", "|---|" + "---:|" * (2 * len(peers))]
        for w in workloads:
            me = by.get(("realtime", w))
            if me is None:
                continue
            cells = []
            for p in peers:
                other = by.get((p, w)) or {}
                cells += [_ratio(me["eps"], other.get("eps")),
                          _ratio(me["p99"], other.get("p99"), invert=True)]
            out.append(f"| {w} | " + " | ".join(cells) + " |")
    storms = [(s, by.get((s, "storm-2k"))) for s in servers]
    if any(f and f["storm"] is not None for _, f in storms):
        out += ["", "Reconnect storm (every socket drops at once and resubscribes; ours "
                "resumes from its cursor, the peers send a fresh snapshot):", ""]
        for s, f in storms:
            if f and f["storm"] is not None:
                out.append(f"- {s}: all back in {f['storm']:.1f} s, per-socket p99 "
                           f"{_fmt(f['storm_p99'], 0)} ms, lost {f['lost']}, "
                           f"duplicated {f['dup']}, out of order {f['ooo']}")
    return "\n".join(out)


def plots(results: list[dict[str, Any]], meta: dict[str, Any], img: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from realtime.loadtest.stats import Histogram

    img.mkdir(parents=True, exist_ok=True)
    written = []
    panels = [w for w in meta["workloads"] if w != "storm-2k"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), sharey=True,
                             squeeze=False)
    for ax, w in zip(axes[0], panels, strict=True):
        for r in results:
            if r["workload"] != w or not r.get("report"):
                continue
            h = Histogram.from_dict(r["report"]["histograms"]["latency"])
            if h.count == 0:
                continue
            xs, ys = zip(*h.cdf(), strict=True)
            ax.plot([x * 1e3 for x in xs], ys, label=SERVERS[r["server"]]["label"])
        ax.set_xscale("log")
        ax.set_title(w)
        ax.set_xlabel("delivery latency, ms (log)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("fraction of deliveries")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Delivery latency distributions (booking request sent -> subscriber receipt)")
    fig.tight_layout()
    path = img / "peers-latency-cdf.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(str(path.relative_to(ROOT)))

    fanouts = [w for w in meta["workloads"] if w.startswith("fanout")]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for s in meta["servers"]:
        pts = [(r["report"]["workload"]["sockets"], row_figures(r)) for r in results
               if r["server"] == s and r["workload"] in fanouts and r.get("report")]
        pts.sort(key=lambda p: p[0])
        if not pts:
            continue
        xs = [p[0] for p in pts]
        ax1.plot(xs, [p[1]["eps"] or 0 for p in pts], marker="o", label=SERVERS[s]["label"])
        ax2.plot(xs, [p[1]["p99"] or 0 for p in pts], marker="o", label=SERVERS[s]["label"])
    ax1.set_title("Delivered updates per second vs subscribers")
    ax1.set_xlabel("subscribers")
    ax1.set_ylabel("updates/s")
    ax2.set_title("p99 delivery latency vs subscribers")
    ax2.set_xlabel("subscribers")
    ax2.set_ylabel("ms (log)")
    ax2.set_yscale("log")
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = img / "peers-throughput.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(str(path.relative_to(ROOT)))
    return written


BEGIN = "<!-- bench.compare:begin -->"
END = "<!-- bench.compare:end -->"


def write_markdown(doc: Path, table: str, images: list[str]) -> None:
    body = table + "\n\n" + "\n".join(
        f"![{Path(i).stem}]({os.path.relpath(ROOT / i, doc.parent)})" for i in images
    )
    block = f"{BEGIN}\n{body}\n{END}"
    text = doc.read_text() if doc.exists() else f"# Benchmarks against peers\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + block + tail
    else:
        text += "\n" + block + "\n"
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the harness")
    parser.add_argument("--servers", default="realtime,socketio,broadcaster",
                        help="comma-separated subset of: " + ", ".join(SERVERS))
    parser.add_argument("--workloads", default=None,
                        help="comma-separated subset of the workload names")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks-peers.md"))
    parser.add_argument("--no-doc", action="store_true", help="write JSON only")
    parser.add_argument("--from-json", default=None, metavar="FILE",
                        help="only rewrite the table and plots from an earlier run's JSON")
    parser.add_argument("--budget", type=float, default=570.0,
                        help="seconds for the whole comparison; workloads that would start "
                             "later are skipped and marked (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.from_json:
        data = json.loads(Path(args.from_json).read_text())
        table = markdown(data["results"], data["meta"])
        print(table)
        write_markdown(Path(args.doc), table, plots(data["results"], data["meta"],
                                                    ROOT / "docs" / "img"))
        return 0
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for s in servers:
        if s not in SERVERS:
            parser.error(f"unknown server {s!r}")
    plan = QUICK if args.quick else FULL
    if args.workloads:
        wanted = set(args.workloads.split(","))
        plan = [w for w in plan if w[0] in wanted]
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    results_dir = ROOT / "bench" / "results"
    log_dir = results_dir / "tmp" / "logs"  # git-ignored
    log_dir.mkdir(parents=True, exist_ok=True)
    loadavg = Path("/proc/loadavg").read_text().split()[:3]
    t0 = time.monotonic()
    results: list[dict[str, Any]] = []
    instances = {s: Server(s, log_dir) for s in servers}
    try:
        for server in instances.values():
            server.create_db()
        for name, sockets, opts in plan:
            for s, server in instances.items():
                left = args.budget - (time.monotonic() - t0)
                if left < 30:
                    results.append({"workload": name, "server": s, "report": None,
                                    "skipped": "skipped: the time budget ran out"})
                    print(f"   {s:<11} {name:<11} skipped: time budget", file=sys.stderr)
                    continue
                try:
                    server.start()
                    res = run_workload(server, name, sockets, opts, min(RUN_BOUND, left - 15))
                except Exception as exc:  # one server failing must not lose the others' results
                    res = {"workload": name, "server": s, "report": None, "error": str(exc)}
                finally:
                    server.stop()
                f = row_figures(res)
                print(f"   {s:<11} {name:<11} {sockets:>6} sockets: delivered/s "
                      f"{_fmt(f['eps'])}, p99 {_fmt(f['p99'], 1)} ms, lost {f['lost']}, dup "
                      f"{f['dup']}, disorder {f['ooo']}, exit {res.get('exit')} "
                      f"({res.get('wall_seconds')}s)", file=sys.stderr, flush=True)
                results.append(res)
    finally:
        for server in instances.values():
            server.stop()
            server.drop_db()
    wall = time.monotonic() - t0
    json_path = results_dir / f"compare-{'quick-' if args.quick else ''}{stamp}.json"
    meta = {
        "started": started.isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "command": "python bench/compare.py" + (" --quick" if args.quick else ""),
        "wall_seconds": wall,
        "loadavg_before": " ".join(loadavg),
        "servers": servers,
        "workloads": [w[0] for w in plan],
        "plan": [{"name": n, "sockets": k, "options": o} for n, k, o in plan],
        "json": str(json_path.relative_to(ROOT)),
    }
    payload = json.dumps({"meta": meta, "results": results}, indent=1)
    json_path.write_text(payload)
    (results_dir / f"latest{'-quick' if args.quick else ''}.json").write_text(payload)
    table = markdown(results, meta)
    print(table)
    if not args.no_doc:
        images = plots(results, meta, ROOT / "docs" / "img")
        write_markdown(Path(args.doc), table, images)
    print(f"\n{wall:.0f}s; raw JSON in {json_path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
