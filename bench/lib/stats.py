"""Order statistics of the benchmarks' samples."""

from __future__ import annotations


def percentile(sorted_values: list[float], q: float) -> float:
    """The sample nearest to quantile `q` (0..1) of already sorted values; NaN when empty."""
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]
