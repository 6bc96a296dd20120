"""Per-hop cost of the framework against a bare asyncio.Queue chain, measured in one run.

Question: what does one processor hop cost a 20 ms, 24 kHz int16 frame?

Three loads through N = 1, 5, 10, 20 passthrough processors, interleaved with the same
load through a chain of N bare ``asyncio.Queue`` tasks (the floor):

* closed loop: one frame in flight; latency source -> sink (median, p99);
* burst: 2,000 frames queued at once; CPU time per frame per hop;
* paced: one frame every 20 ms; latency (what a live call sees).

The per-hop figure is the slope of closed-loop median latency over N (least squares),
so the fixed cost at both ends cancels. Run: ``python benchmarks/hops.py [--quick] [--json F]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.frames import AudioFrame, Direction, Frame  # noqa: E402
from pipeline.graph import Graph  # noqa: E402
from pipeline.processor import Processor  # noqa: E402
from pipeline.runner import Runner  # noqa: E402

NS = (1, 5, 10, 20)
FRAME = np.zeros(480, dtype=np.int16)


class Passthrough(Processor):
    """Pushes every frame on unchanged (the default process)."""


class _Driver(Processor):
    """Source that runs a load and times it against the sink."""

    def __init__(self, load: str, n_frames: int) -> None:
        super().__init__(name="driver")
        self.load, self.n_frames = load, n_frames
        self.samples: list[float] = []
        self.cpu = 0.0
        self.sink: _Sink | None = None

    async def produce(self) -> None:
        sink = self.sink
        loop = asyncio.get_running_loop()
        if self.load == "closed":
            for i in range(self.n_frames):
                sink.waiter = loop.create_future()
                t0 = time.perf_counter()
                await self.push(AudioFrame(FRAME, 24000, pts=i * 480))
                await sink.waiter
                self.samples.append(time.perf_counter() - t0)
        elif self.load == "burst":
            sink.expect = self.n_frames
            sink.waiter = loop.create_future()
            c0 = time.process_time()
            for i in range(self.n_frames):
                await self.push(AudioFrame(FRAME, 24000, pts=i * 480))
            await sink.waiter
            self.cpu = time.process_time() - c0
        else:  # paced
            start = time.perf_counter()
            for i in range(self.n_frames):
                due = start + i * 0.02
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                sink.waiter = loop.create_future()
                t0 = time.perf_counter()
                await self.push(AudioFrame(FRAME, 24000, pts=i * 480))
                await sink.waiter
                self.samples.append(time.perf_counter() - t0)


class _Sink(Processor):
    def __init__(self) -> None:
        super().__init__(name="sink")
        self.waiter: asyncio.Future | None = None
        self.expect = 1
        self.got = 0

    async def process(self, frame: Frame, direction: Direction) -> None:
        self.got += 1
        if self.got >= self.expect and self.waiter is not None and not self.waiter.done():
            self.got = 0
            self.waiter.set_result(None)


async def voxpipe_load(n: int, load: str, n_frames: int, inline: bool = False):
    driver, sink = _Driver(load, n_frames), _Sink()
    driver.sink = sink
    hops = [Passthrough() for _ in range(n)]
    graph = Graph.chain(driver, *hops, sink)
    for spec in list(graph.nodes.values())[1:]:
        if inline and spec.processor is not sink:
            spec.inline = True
        if load == "burst":
            spec.queue_size = n_frames + 1
    graph.check()
    await Runner(graph, realtime=False).run()
    return driver.samples, driver.cpu


async def queue_load(n: int, load: str, n_frames: int):
    queues = [asyncio.Queue() for _ in range(n + 1)]

    async def hop(qin: asyncio.Queue, qout: asyncio.Queue) -> None:
        while True:
            qout.put_nowait(await qin.get())

    tasks = [asyncio.create_task(hop(queues[i], queues[i + 1])) for i in range(n)]
    first, last = queues[0], queues[-1]
    samples, cpu = [], 0.0
    try:
        if load == "closed":
            for i in range(n_frames):
                t0 = time.perf_counter()
                first.put_nowait(AudioFrame(FRAME, 24000, pts=i * 480))
                await last.get()
                samples.append(time.perf_counter() - t0)
        elif load == "burst":
            c0 = time.process_time()
            for i in range(n_frames):
                first.put_nowait(AudioFrame(FRAME, 24000, pts=i * 480))
            for _ in range(n_frames):
                await last.get()
            cpu = time.process_time() - c0
        else:
            start = time.perf_counter()
            for i in range(n_frames):
                await asyncio.sleep(max(0.0, start + i * 0.02 - time.perf_counter()))
                t0 = time.perf_counter()
                first.put_nowait(AudioFrame(FRAME, 24000, pts=i * 480))
                await last.get()
                samples.append(time.perf_counter() - t0)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return samples, cpu


async def direct_load(n: int, load: str, n_frames: int):
    """The inline floor: N plain ``await f(frame)`` calls, each passing the frame on."""

    async def sink(frame):
        return None

    call = sink
    for _ in range(n):
        async def ahop(frame, _next=call):
            await _next(frame)

        call = ahop
    samples, cpu = [], 0.0
    if load == "closed":
        for i in range(n_frames):
            t0 = time.perf_counter()
            await call(AudioFrame(FRAME, 24000, pts=i * 480))
            samples.append(time.perf_counter() - t0)
    elif load == "burst":
        c0 = time.process_time()
        for i in range(n_frames):
            await call(AudioFrame(FRAME, 24000, pts=i * 480))
        cpu = time.process_time() - c0
    return samples, cpu


def _q(xs, p):
    return float(np.percentile(np.asarray(xs) * 1e6, p)) if xs else float("nan")


def _slope(ns, ys):
    return float(np.polyfit(np.asarray(ns, float), np.asarray(ys, float), 1)[0])


async def measure(quick: bool = False) -> dict:
    closed_n = 300 if quick else 2000
    burst_n = 2000
    paced_n = 25 if quick else 100
    rounds = 2 if quick else 3
    rows = []
    for n in NS:
        row = {"n": n}
        closed_v, closed_q, closed_i, closed_d, cpu_v, cpu_q, cpu_i, cpu_d = [], [], [], [], [], [], [], []
        for _ in range(rounds):  # interleave case and floor so drift hits both
            s, _ = await voxpipe_load(n, "closed", closed_n)
            closed_v += s
            s, _ = await queue_load(n, "closed", closed_n)
            closed_q += s
            s, _ = await voxpipe_load(n, "closed", closed_n, inline=True)
            closed_i += s
            s, _ = await direct_load(n, "closed", closed_n)
            closed_d += s
            _, c = await voxpipe_load(n, "burst", burst_n, inline=True)
            cpu_i.append(c)
            _, c = await direct_load(n, "burst", burst_n)
            cpu_d.append(c)
            _, c = await voxpipe_load(n, "burst", burst_n)
            cpu_v.append(c)
            _, c = await queue_load(n, "burst", burst_n)
            cpu_q.append(c)
        paced_v, _ = await voxpipe_load(n, "paced", paced_n)
        paced_q, _ = await queue_load(n, "paced", paced_n)
        row.update(
            closed_p50_us=_q(closed_v, 50), closed_p99_us=_q(closed_v, 99),
            floor_closed_p50_us=_q(closed_q, 50), floor_closed_p99_us=_q(closed_q, 99),
            inline_closed_p50_us=_q(closed_i, 50), floor_inline_closed_p50_us=_q(closed_d, 50),
            inline_burst_cpu_us_per_frame=min(cpu_i) / burst_n * 1e6,
            floor_inline_burst_cpu_us_per_frame=min(cpu_d) / burst_n * 1e6,
            burst_cpu_us_per_frame=min(cpu_v) / burst_n * 1e6,
            floor_burst_cpu_us_per_frame=min(cpu_q) / burst_n * 1e6,
            paced_p50_us=_q(paced_v, 50), paced_p99_us=_q(paced_v, 99),
            floor_paced_p50_us=_q(paced_q, 50), floor_paced_p99_us=_q(paced_q, 99),
        )
        rows.append(row)
    ns = [r["n"] for r in rows]
    hop = _slope(ns, [r["closed_p50_us"] for r in rows])
    hop_floor = _slope(ns, [r["floor_closed_p50_us"] for r in rows])
    hop_inline = _slope(ns, [r["inline_closed_p50_us"] for r in rows])
    hop_inline_floor = _slope(ns, [r["floor_inline_closed_p50_us"] for r in rows])
    cpu_inline = _slope(ns, [r["inline_burst_cpu_us_per_frame"] for r in rows])
    cpu_inline_floor = _slope(ns, [r["floor_inline_burst_cpu_us_per_frame"] for r in rows])
    cpu_hop = _slope(ns, [r["burst_cpu_us_per_frame"] for r in rows])
    cpu_hop_floor = _slope(ns, [r["floor_burst_cpu_us_per_frame"] for r in rows])
    return {
        "rows": rows,
        "per_hop_us": hop,
        "floor_per_hop_us": hop_floor,
        "ratio": hop / hop_floor if hop_floor > 0 else float("nan"),
        "inline_per_hop_us": hop_inline,
        "floor_inline_per_hop_us": hop_inline_floor,
        "inline_cpu_per_frame_per_hop_us": cpu_inline,
        "floor_inline_cpu_per_frame_per_hop_us": cpu_inline_floor,
        "cpu_per_frame_per_hop_us": cpu_hop,
        "floor_cpu_per_frame_per_hop_us": cpu_hop_floor,
        "cpu_ratio": cpu_hop / cpu_hop_floor if cpu_hop_floor > 0 else float("nan"),
    }


def startup_time(repeats: int = 5) -> dict:
    """Wall time of ``import pipeline`` and of ``voxpipe --help`` in fresh interpreters (median)."""
    import subprocess

    root = str(Path(__file__).resolve().parent.parent)

    def timed(args: list[str]) -> float:
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, *args], cwd=root, check=True, capture_output=True)
            runs.append(time.perf_counter() - t0)
        return statistics.median(runs)

    return {
        "python_s": timed(["-c", "pass"]),
        "import_pipeline_s": timed(["-c", "import pipeline"]),
        "help_s": timed(["-m", "pipeline.cli", "--help"]),
    }


def run(quick: bool = False) -> dict:
    """Measure and return the figures (used by ``voxpipe bench``)."""
    result = asyncio.run(measure(quick))
    result["startup"] = startup_time(3 if quick else 5)
    result["versions"] = {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine()}
    return result


def table(result: dict) -> str:
    lines = [
        "hops: 20 ms 24 kHz int16 frames through N passthrough processors vs N bare asyncio.Queue tasks",
        f"{'N':>3} | {'closed p50 us':>13} {'p99':>8} | {'floor p50':>9} {'p99':>8} | {'inline p50':>10} |"
        f" {'burst cpu us/frame':>18} {'floor':>7} | {'paced p50':>9} {'p99':>8} {'floor p50':>9}",
    ]
    for r in result["rows"]:
        lines.append(
            f"{r['n']:>3} | {r['closed_p50_us']:>13.1f} {r['closed_p99_us']:>8.1f} | {r['floor_closed_p50_us']:>9.1f}"
            f" {r['floor_closed_p99_us']:>8.1f} | {r['inline_closed_p50_us']:>10.1f} | {r['burst_cpu_us_per_frame']:>18.1f}"
            f" {r['floor_burst_cpu_us_per_frame']:>7.1f} | {r['paced_p50_us']:>9.1f} {r['paced_p99_us']:>8.1f}"
            f" {r['floor_paced_p50_us']:>9.1f}"
        )
    lines.append(
        f"per hop (closed-loop slope): {result['per_hop_us']:.2f} us vs floor {result['floor_per_hop_us']:.2f} us"
        f" -> ratio {result['ratio']:.2f}x (target <= 1.5x); inline hop {result['inline_per_hop_us']:.2f} us"
    )
    lines.append(
        f"inline hop: {result['inline_per_hop_us']:.3f} us latency (target <= 0.35 us), "
        f"{result['inline_cpu_per_frame_per_hop_us']:.3f} us CPU (target <= 0.4 us) vs direct await floor "
        f"{result['floor_inline_per_hop_us']:.3f} us / {result['floor_inline_cpu_per_frame_per_hop_us']:.3f} us"
    )
    lines.append(
        f"CPU per frame per hop (burst slope): {result['cpu_per_frame_per_hop_us']:.2f} us (target <= 2 us)"
        f" vs floor {result['floor_cpu_per_frame_per_hop_us']:.2f} us -> {result['cpu_ratio']:.2f}x"
    )
    if "startup" in result:
        st = result["startup"]
        lines.append(
            f"startup: voxpipe --help {st['help_s'] * 1000:.0f} ms, import pipeline {st['import_pipeline_s'] * 1000:.0f} ms"
            f" (bare python {st['python_s'] * 1000:.0f} ms; target < 500 ms)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    result = run(args.quick)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
