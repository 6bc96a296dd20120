"""Latency histograms: bounded-memory per-processor timing for ``voxpipe run --stats``.

Buckets are quarter-octaves of microseconds (about 19% wide), so a histogram is a fixed
array whatever the run length; percentiles are read at the bucket's upper edge.
"""

from __future__ import annotations

import math

__all__ = ["LatencyHistogram", "percentile"]

_BUCKETS = 160  # 2**(160/4) us: far beyond any frame


class LatencyHistogram:
    """Counts of durations in log-spaced buckets; ``add`` takes seconds."""

    __slots__ = ("counts", "total", "n", "max")

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self.total = 0.0
        self.n = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        us = seconds * 1e6
        i = int(4 * math.log2(us)) + 1 if us >= 1.0 else 0
        self.counts[i if i < _BUCKETS else _BUCKETS - 1] += 1
        self.total += seconds
        self.n += 1
        if seconds > self.max:
            self.max = seconds

    def quantile(self, q: float) -> float:
        """Upper edge of the bucket holding quantile ``q``, in microseconds."""
        if self.n == 0:
            return 0.0
        target = q * self.n
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= target and c:
                return min(2 ** (i / 4), self.max * 1e6)
        return self.max * 1e6

    def summary(self) -> dict[str, float]:
        """Count, mean, median, p99 and max in microseconds."""
        return {
            "frames": self.n,
            "mean_us": (self.total / self.n * 1e6) if self.n else 0.0,
            "p50_us": self.quantile(0.5),
            "p99_us": self.quantile(0.99),
            "max_us": self.max * 1e6,
        }


def percentile(values, q: float) -> float:
    """The ``q`` percentile (0..100) of a sequence, by linear interpolation."""
    data = sorted(values)
    if not data:
        return float("nan")
    k = (len(data) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)
