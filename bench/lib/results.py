"""bench/booking.py's figures: one phase's, merged from its worker processes, and the run's
summary (the HTTP / database ratio of each workload's median round)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from .stats import percentile

TARGET_UNCONTENDED = 0.5
TARGET_HOT = 0.8
OK = ("booked", "201", "200")


def merge_phase(label: str, duration: float, outputs: list[dict[str, Any]],
                cores: dict[str, float], xacts: int) -> dict[str, Any]:
    """One phase's figures from what each worker process reported (see bench/lib/load.py)."""
    lat: list[float] = []
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    bodies: dict[str, str] = {}
    total = 0
    for out in outputs:
        lat.extend(out["latencies"])
        statuses.update(out["statuses"])
        errors.update(out["errors"])
        bodies.update(out["bodies"])
        total += out["total_bookings"]
    lat.sort()
    ok = sum(statuses.get(k, 0) for k in OK)
    result = {
        "label": label,
        "duration_s": duration,
        "requests": len(lat),
        "bookings": ok,
        "bookings_per_s": round(ok / duration, 1),
        "p50_ms": round(percentile(lat, 0.50), 2),
        "p99_ms": round(percentile(lat, 0.99), 2),
        "max_ms": round(lat[-1], 2) if lat else None,
        "other_outcomes": {k: v for k, v in statuses.items() if k not in OK},
        "errors": dict(errors),
        "cores": cores,
        "transactions_per_booking": round(xacts / total, 2) if total else None,
    }
    if any(k not in ("200", "201") for k in bodies):
        result["sample_bodies"] = {k: v for k, v in bodies.items() if k not in ("200", "201")}
    return result


def summarize(phases: list[dict[str, Any]], rounds: int) -> dict[str, Any]:
    """Per workload: each round's HTTP / best-ceiling ratio, and the median round's figures."""
    summary = {}
    for workload in ("uncontended", "hot"):
        each = []
        for k in range(1, rounds + 1):
            plain = [p for p in phases if p["layer"] == "db"
                     and p["variant"] == "plain" and p["workload"] == workload
                     and p["round"] == k]
            http = next((p for p in phases if p["layer"] == "http"
                         and p["workload"] == workload and p["round"] == k), None)
            if not plain or http is None or not max(p["bookings_per_s"] for p in plain):
                continue
            best = max(plain, key=lambda p: p["bookings_per_s"])
            each.append({"round": k, "db_ceiling_per_s": best["bookings_per_s"],
                         "db_ceiling_clients": best["clients"],
                         "http_per_s": http["bookings_per_s"],
                         "http_steal": http["cores"].get("steal"),
                         "ratio": round(http["bookings_per_s"] / best["bookings_per_s"], 3)})
        if not each:
            continue
        # The median round (the lower middle one when their number is even).
        mid = sorted(each, key=lambda r: r["ratio"])[(len(each) - 1) // 2]
        target = TARGET_UNCONTENDED if workload == "uncontended" else TARGET_HOT
        summary[workload] = {
            **{k: mid[k] for k in ("db_ceiling_per_s", "db_ceiling_clients", "http_per_s",
                                   "ratio")},
            "median_round": mid["round"], "rounds": each,
            "target": target, "met": mid["ratio"] >= target,
        }
    return summary


def find_phase(res: dict[str, Any], layer: str, variant: str, workload: str,
               clients: int | None = None) -> dict[str, Any] | None:
    """The phase, from the workload's median round when it ran in several."""
    matches = [p for p in res["phases"]
               if (p["layer"], p["variant"], p["workload"]) == (layer, variant, workload)
               and (clients is None or p["clients"] == clients)]
    want = res["summary"].get(workload, {}).get("median_round")
    return next((p for p in matches if p.get("round") == want), matches[0] if matches else None)
