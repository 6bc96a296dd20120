"""Per-hop slopes of ``hops.py``'s loads, each the minimum over several interleaved rounds.

Question: on a loaded machine, what does one hop cost when the noise is taken out? Each
round runs, at N = 1 and N = 20 hops, the queued and inline chains of ``hops.py`` and their
floors (bare ``asyncio.Queue`` tasks, plain ``await`` calls), interleaved: closed-loop
median latency (1,000 frames) and burst CPU per frame (3,000 frames). The per-hop figure
is (min over rounds at N = 20 - min at N = 1) / 19: other load only ever adds time, so the
minimum is the figure least disturbed by it. Run: ``python benchmarks/hop_slopes.py [--rounds 7]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hops  # noqa: E402


def _median_us(samples: list[float]) -> float:
    return sorted(samples)[len(samples) // 2] * 1e6


async def measure(rounds: int) -> dict[str, float]:
    got: dict[tuple[str, int], list[float]] = {}

    def add(key: str, n: int, value: float) -> None:
        got.setdefault((key, n), []).append(value)

    for _ in range(rounds):
        for n in (1, 20):
            _, c = await hops.voxpipe_load(n, "burst", 3000, inline=True)
            add("inline_cpu", n, c / 3000 * 1e6)
            _, c = await hops.direct_load(n, "burst", 3000)
            add("direct_cpu", n, c / 3000 * 1e6)
            _, c = await hops.voxpipe_load(n, "burst", 3000)
            add("queued_cpu", n, c / 3000 * 1e6)
            _, c = await hops.queue_load(n, "burst", 3000)
            add("queue_floor_cpu", n, c / 3000 * 1e6)
            s, _ = await hops.voxpipe_load(n, "closed", 1000)
            add("queued_latency", n, _median_us(s))
            s, _ = await hops.queue_load(n, "closed", 1000)
            add("queue_floor_latency", n, _median_us(s))
            s, _ = await hops.voxpipe_load(n, "closed", 1000, inline=True)
            add("inline_latency", n, _median_us(s))
            s, _ = await hops.direct_load(n, "closed", 1000)
            add("direct_latency", n, _median_us(s))
    keys = {k for k, _ in got}
    return {k: (min(got[(k, 20)]) - min(got[(k, 1)])) / 19 for k in sorted(keys)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    s = asyncio.run(measure(args.rounds))
    print(f"per hop, min of {args.rounds} rounds (us):")
    print(f"  queued latency {s['queued_latency']:.2f} vs asyncio.Queue floor {s['queue_floor_latency']:.2f}"
          f" -> {s['queued_latency'] / s['queue_floor_latency']:.2f}x (target <= 1.0x)")
    print(f"  queued CPU     {s['queued_cpu']:.3f} vs floor {s['queue_floor_cpu']:.3f}"
          f" -> {s['queued_cpu'] / s['queue_floor_cpu']:.2f}x")
    print(f"  inline latency {s['inline_latency']:.3f} (target <= 0.35) vs direct await {s['direct_latency']:.3f}")
    print(f"  inline CPU     {s['inline_cpu']:.3f} (target <= 0.4) vs direct await {s['direct_cpu']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
