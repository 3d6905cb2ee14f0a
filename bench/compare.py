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
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `realtime` and `bench` importable
    sys.path.insert(0, str(ROOT))

from bench.lib import pg, server  # noqa: E402
from bench.lib.cpu import proc_cpu, proc_rss_kib  # noqa: E402
from bench.lib.net import free_port  # noqa: E402
from bench.lib.peers_report import fmt, markdown, plots, row_figures, write_markdown  # noqa: E402
from realtime.db.connect import dsn_for_database  # noqa: E402

PY = sys.executable
ADMIN_DSN = pg.admin_dsn()

SERVERS: dict[str, dict[str, Any]] = {
    "realtime": {"cmd": [PY, "-m", "realtime", "serve"], "protocol": "native", "migrate": True,
                 "label": "realtime (this project)"},
    "socketio": {"cmd": [PY, "-m", "bench.peers.socketio_server"], "protocol": "socketio",
                 "migrate": False, "label": "python-socketio"},
    "broadcaster": {"cmd": [PY, "-m", "bench.peers.broadcaster_server"], "protocol": "native",
                    "migrate": False, "label": "Starlette + broadcaster (postgres)"},
}
LABELS = {name: spec["label"] for name, spec in SERVERS.items()}

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
        return server.server_env(dsn_for_database(ADMIN_DSN, self.db), {"PYTHONPATH": str(ROOT)})

    def create_db(self) -> None:
        self.log_path.write_bytes(b"")  # one log per comparison, appended across workloads
        asyncio.run(pg.create_database(ADMIN_DSN, self.db))
        if self.spec["migrate"]:
            subprocess.run([PY, "-m", "realtime", "migrate"], env=self.env(), cwd=ROOT,
                           check=True, capture_output=True, timeout=120)

    def drop_db(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run(pg.drop_databases(ADMIN_DSN, self.db))

    def start(self) -> None:
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = server.start(self.port, self.env(), log=log, argv=self.spec["cmd"])
        path = "/readyz" if self.name == "realtime" else "/healthz"
        try:
            asyncio.run(server.until_ready(self.proc, self.port, path))
        except RuntimeError as exc:
            raise RuntimeError(f"{self.name}: {exc}: {self.log_path.read_text()[-2000:]}") from None

    def stop(self) -> None:
        server.stop(self.proc, within=10)
        self.proc = None


def run_workload(server: Server, name: str, sockets: int, opts: list[str],
                 bound: float) -> dict[str, Any]:
    assert server.proc is not None
    pid = server.proc.pid
    cpu0 = proc_cpu(pid) or 0.0
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
    result["server_cpu_seconds"] = round((proc_cpu(pid) or 0.0) - cpu0, 2)
    result["server_rss_kib_before"] = rss0
    result["server_peak_rss_kib"] = proc_rss_kib(pid, "VmHWM")
    return result



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
                                                    ROOT / "docs" / "img", LABELS))
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
                      f"{fmt(f['eps'])}, p99 {fmt(f['p99'], 1)} ms, lost {f['lost']}, dup "
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
        images = plots(results, meta, ROOT / "docs" / "img", LABELS)
        write_markdown(Path(args.doc), table, images)
    print(f"\n{wall:.0f}s; raw JSON in {json_path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
