"""bench/compare.py's output: the table of docs/benchmarks-peers.md (between its markers, so
that the notes around it stay) and the plots in docs/img/."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


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


def fmt(v: Any, digits: int = 0) -> str:
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
                f"| {w} | {s} | {fmt(f['eps'])} | {fmt(f['p50'], 1)} | {fmt(f['p99'], 1)} "
                f"| {fmt(f['max'], 1)} | {fmt(f['lost'])} | {fmt(f['dup'])} | {fmt(f['ooo'])} "
                f"| {fmt(f['ramp'], 1)} | {fmt(f['booked'])} ({fmt(f['book_rate'], 0)}) "
                f"| {fmt(f['book_p99'], 1)} | {fmt(f['skipped'])} | {fmt(f['errors'])} "
                f"| {fmt(f['cpu'], 1)} | {fmt(f['kib_per_socket'], 1)} |"
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
                           f"{fmt(f['storm_p99'], 0)} ms, lost {f['lost']}, "
                           f"duplicated {f['dup']}, out of order {f['ooo']}")
    return "\n".join(out)


def plots(results: list[dict[str, Any]], meta: dict[str, Any], img: Path,
          labels: dict[str, str]) -> list[str]:
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
            ax.plot([x * 1e3 for x in xs], ys, label=labels[r["server"]])
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
        ax1.plot(xs, [p[1]["eps"] or 0 for p in pts], marker="o", label=labels[s])
        ax2.plot(xs, [p[1]["p99"] or 0 for p in pts], marker="o", label=labels[s])
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
