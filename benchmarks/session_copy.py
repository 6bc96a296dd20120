"""What one session's graph costs to make: ``Graph.copy()`` of pipelines/demo.yaml vs loading it.

Question: how long does a host (phone call, browser tab, server connection) wait for a fresh
graph? The floor is the YAML load + check that per-session re-parsing used to pay, measured
in the same run. Target: copy under 3 ms. Run: ``python benchmarks/session_copy.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.loader import load  # noqa: E402

DEMO = ROOT / "pipelines" / "demo.yaml"
OVERRIDES = ["model.url=ws://127.0.0.1:9/v1", "model.api_key=sk-bench"]


def measure(quick: bool = False) -> dict:
    """Median and p99 of copy() and of load() (ms), interleaved."""
    template = load(DEMO, overrides=OVERRIDES)
    reps = 30 if quick else 200
    copies, loads = [], []
    for i in range(reps):
        t0 = time.perf_counter()
        template.copy()
        copies.append(time.perf_counter() - t0)
        if i % 10 == 0:  # a load is ~100x slower: sample it less
            t0 = time.perf_counter()
            load(DEMO, overrides=OVERRIDES)
            loads.append(time.perf_counter() - t0)
    c, l = np.asarray(copies) * 1e3, np.asarray(loads) * 1e3
    return {"nodes": len(template.nodes), "copy_p50_ms": float(np.median(c)), "copy_p99_ms": float(np.percentile(c, 99)),
            "load_p50_ms": float(np.median(l)), "ratio": float(np.median(l) / np.median(c)),
            "versions": {"python": platform.python_version(), "numpy": np.__version__}}


def table(r: dict) -> str:
    return (f"session copy: pipelines/demo.yaml ({r['nodes']} nodes)\n"
            f"copy() p50 {r['copy_p50_ms']:.3f} ms, p99 {r['copy_p99_ms']:.3f} ms (target < 3 ms) | "
            f"load+check p50 {r['load_p50_ms']:.1f} ms (floor it replaces) -> {r['ratio']:.0f}x faster")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    result = measure(args.quick)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
