"""Concurrent sessions: how many demo graphs one process runs at real time without falling behind.

Question: how many concurrent sessions of ``pipelines/demo.yaml`` (capture paced at real
time, the local realtime server in another process) does one client process sustain with
no playback underrun and a frame latency under 20 ms at p99? Target: at least 50 on the
2-core reference machine.

Setup. One ``voxpipe realtime-server`` process (model delay 200 ms, the benchmark rules of
:mod:`_demo_session`); in this process, N instrumented demo graphs, each with its own
runner, media clock and websocket, all on one event loop. Each caller asks "tell me a
joke" and listens to the 4.7 s answer while its capture runs on, twice (about 17 s; once
with ``--quick``): audio flows both ways for most of the session while the server
recognises and synthesises once per cycle, so that the server process is not what limits
N. The sessions start at seeded random offsets spread over one such cycle (about 8 s;
half of it with ``--quick``), so that every phase of a call (asking, waiting, a burst of
answer audio, listening) is under way at any moment, as in a steady state; all N run at
once for the second half. N steps up until a step fails.

What a step must show (all sessions together):

* no playback underrun caused in this process: the modelled sound card queue of a session's
  ``playback.null`` ran dry in the middle of an answer although the missing audio had left
  the model at least one playback tick (20 ms) before it was needed (``underruns_client``).
  Audio that left the model later than that, or with less margin, was late because of the
  server's streaming (the local server sends eSpeak's first block at once and the next
  160 ms just in time): ``underruns_server``, reported, not held against N;
* frame latency p99 under 20 ms, on both paths: capture due time -> past the VAD (capture
  pacing, two queues, resample and VAD work; the resampler's hold excluded) and model ->
  playback (console, tools, playback queues);
* every session ran to its end without an error, and no queue dropped a frame.

Run: ``python benchmarks/sessions.py [--quick] [--steps 10,25,50] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _demo_session as ds  # noqa: E402

__all__ = ["main", "run", "run_step", "summary", "table"]

STEPS = (10, 25, 50, 75)
QUICK_STEPS = (10, 50)
ASK = "tell me a joke"
CYCLES, QUICK_CYCLES = 2, 1
MODEL_DELAY_MS = 200.0
TARGET_SESSIONS = 50
TARGET_P99_MS = 20.0


async def run_step(n: int, url: str, wav: Path, workdir: Path, *, conversation: ds.Conversation,
                   stagger_s: float, server: ds.LocalServerProcess | None = None, seed: int = 1) -> dict:
    """Run ``n`` demo sessions at once on ``wav`` against ``url``; return the step's figures."""
    import anyio

    from pipeline.runner import Runner

    template = ds.load_demo(url, wav)
    sessions = [ds.build_session(url, wav, workdir / f"s{i:03d}", name=f"demo-{i}", template=template) for i in range(n)]
    offsets = np.sort(np.random.default_rng(seed).uniform(0.0, stagger_s, n))
    results: list = [None] * n

    async def one(i: int) -> None:
        await anyio.sleep(float(offsets[i]))
        results[i] = await Runner(sessions[i][0], realtime=True).run()

    server_cpu0 = server.cpu_s() if server is not None else None
    busy0 = ds.machine_busy_s()
    lag = _LoopLag()
    wall0, cpu0 = time.monotonic(), time.process_time()
    with anyio.fail_after(stagger_s + conversation.duration_s + 60), lag.gc_pauses():
        async with anyio.create_task_group() as outer:
            outer.start_soon(lag.run)
            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(one, i)
            outer.cancel_scope.cancel()
    wall = time.monotonic() - wall0
    cpu = time.process_time() - cpu0
    server_cpu = server.cpu_s() - server_cpu0 if server_cpu0 is not None else None
    busy = ds.machine_busy_s()
    fig = _figures(n, [rec for _, rec in sessions], results, conversation, wall, cpu, server_cpu)
    if busy is not None and busy0 is not None and server_cpu is not None:
        # other processes and the kernel (loopback TCP included), in % of one core
        fig["other_cpu_pct"] = round(100 * max(0.0, busy - busy0 - cpu - server_cpu) / wall, 1)
    else:
        fig["other_cpu_pct"] = None
    fig["loop_lag"] = ds.quantiles(lag.lags)
    fig["gc_pauses_ms"] = sorted((round(1000 * p, 1) for p in lag.pauses), reverse=True)[:5]
    return fig


class _LoopLag:
    """How late a 10 ms sleep wakes (the event loop's responsiveness), and the GC's pauses."""

    def __init__(self, period_s: float = 0.01) -> None:
        self.period_s = period_s
        self.lags: list[float] = []
        self.pauses: list[float] = []

    async def run(self) -> None:
        import anyio

        while True:
            t = time.monotonic()
            await anyio.sleep(self.period_s)
            self.lags.append(time.monotonic() - t - self.period_s)

    @contextmanager
    def gc_pauses(self):
        started = [0.0]

        def on_gc(phase: str, info: dict) -> None:
            if info.get("generation") != 2:
                return
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                self.pauses.append(time.perf_counter() - started[0])

        gc.callbacks.append(on_gc)
        try:
            yield
        finally:
            gc.callbacks.remove(on_gc)


def _figures(n: int, recs: list[ds.Recorder], results: list, conversation: ds.Conversation, wall: float,
             cpu: float, server_cpu: float | None) -> dict:
    def cat(attr: str) -> list[float]:
        return [v for r in recs for v in getattr(r, attr)]

    errors = [f"{e.processor}: {e.message}" for res in results if res is not None for e in res.errors]
    ended = sum(1 for res in results if res is not None and res.ended == "end")
    dropped = sum(s.get("dropped", 0) for res in results if res is not None for s in res.stats.values())
    expected = len(conversation.utterances)
    ttfb = [v / 1000 for r in recs for v in r.ttfb_ms.values()]
    fig = {
        "sessions": n,
        "ended": ended,
        "errors": len(errors),
        "first_errors": errors[:3],
        "dropped_frames": dropped,
        "answers_played": sum(len(r.first_audio) for r in recs),
        "answers_expected": n * expected,
        "barge_ins": sum(1 for r in recs for c in r.interruptions if c.playing),
        "capture_lateness": ds.quantiles(cat("capture_latency")),
        "input_latency": ds.quantiles(cat("in_latency")),
        "output_latency": ds.quantiles(cat("out_latency")),
        "underruns_client": sum(r.underruns_client for r in recs),
        "underruns_server": sum(r.underruns_server for r in recs),
        "client_underruns": [u for r in recs for u in r.underrun_log if u["cause"] == "client"][:10],
        "ttfb": ds.quantiles(ttfb),
        "wall_s": round(wall, 1),
        "client_cpu_pct": round(100 * cpu / wall, 1),
        "server_cpu_pct": None if server_cpu is None else round(100 * server_cpu / wall, 1),
    }
    fig["frame_p99_ms"] = max(fig["input_latency"]["p99"], fig["output_latency"]["p99"])
    fig["met"] = bool(
        ended == n and not errors and dropped == 0 and fig["underruns_client"] == 0
        and fig["frame_p99_ms"] < TARGET_P99_MS
    )
    return fig


def run(quick: bool = False, *, steps: tuple[int, ...] | None = None, seed: int = 1) -> dict:
    """Step N up until a step fails; return the figures per N (``voxpipe bench`` calls this)."""
    import anyio

    steps = steps or (QUICK_STEPS if quick else STEPS)
    conversation = ds.make_listener(ASK, cycles=QUICK_CYCLES if quick else CYCLES)
    cycle_s = (conversation.duration_s - ds.LEAD_S) / len(conversation.utterances)
    stagger_s = cycle_s / (2 if quick else 1)
    rows: list[dict] = []
    started = time.monotonic()
    with ds.LocalServerProcess(model_delay_ms=MODEL_DELAY_MS) as server, \
            tempfile.TemporaryDirectory(prefix="voxpipe-bench-sessions-") as tmp:
        wav = conversation.write(Path(tmp) / "caller.wav")
        for n in steps:
            workdir = Path(tmp) / f"n{n}"
            step = functools.partial(run_step, n, server.url, wav, workdir, conversation=conversation,
                                     stagger_s=stagger_s, server=server, seed=seed + n)
            row = anyio.run(step)
            rows.append(row)
            if not row["met"]:
                break
    best = max((r["sessions"] for r in rows if r["met"]), default=0)
    return {
        "setup": {"pipeline": str(ds.DEMO.relative_to(ds.ROOT)), "conversation_s": round(conversation.duration_s, 2),
                  "stagger_s": round(stagger_s, 2), "cycles": QUICK_CYCLES if quick else CYCLES, "model_delay_ms": MODEL_DELAY_MS, "steps": list(steps), "seed": seed,
                  "wall_s": round(time.monotonic() - started, 1)},
        "rows": rows,
        "max_sessions": best,
        "target_sessions": TARGET_SESSIONS,
        "target_p99_ms": TARGET_P99_MS,
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine(),
                     "cpus": os.cpu_count()},
    }


def summary(result: dict) -> list[dict]:
    """Rows for the ``voxpipe bench`` summary."""
    rows = []
    best = result["max_sessions"]
    rows.append({"figure": "sessions: max concurrent, no underrun, p99 < 20 ms", "unit": "sessions", "n": len(result["rows"]),
                 "median": best, "p99": None, "max": None, "floor": None, "ratio": None,
                 "target": f">= {result['target_sessions']}", "met": best >= result["target_sessions"]})
    at = next((r for r in result["rows"] if r["sessions"] == best), None)
    if at is not None:
        for key, label in (("input_latency", "capture -> past vad"), ("output_latency", "model -> playback")):
            q = at[key]
            rows.append({"figure": f"sessions @{best}: frame {label}", "unit": "ms", "n": q["n"], "median": q["median"],
                         "p99": q["p99"], "max": q["max"], "floor": None, "ratio": None,
                         "target": f"p99 < {result['target_p99_ms']:g} ms", "met": q["p99"] < result["target_p99_ms"]})
    return rows


def table(result: dict) -> str:
    """The figures per N as text."""
    s = result["setup"]
    lines = [f"sessions: N x {s['pipeline']} in one process ({s['conversation_s']:.1f} s of conversation each, "
             f"starts spread over {s['stagger_s']:g} s), local server in another process",
             f"{'N':>4} | {'in p50':>6} {'p99':>6} {'max':>6} | {'out p50':>7} {'p99':>6} {'max':>6} | "
             f"{'underruns':>9} {'srv':>4} | {'answers':>9} | {'ttfb p50':>8} {'p99':>6} | {'cpu %':>5} {'srv %':>5} "
             f"{'other %':>7} | {'lag p99':>7} {'gc max':>6} | {'errors':>6} | met"]
    for r in result["rows"]:
        i, o, t = r["input_latency"], r["output_latency"], r["ttfb"]
        srv = "-" if r["server_cpu_pct"] is None else f"{r['server_cpu_pct']:.0f}"
        gc_max = r["gc_pauses_ms"][0] if r["gc_pauses_ms"] else 0.0
        other = "-" if r.get("other_cpu_pct") is None else f"{r['other_cpu_pct']:.0f}"
        lines.append(f"{r['sessions']:>4} | {i['median']:>6.2f} {i['p99']:>6.2f} {i['max']:>6.1f} | {o['median']:>7.2f} "
                     f"{o['p99']:>6.2f} {o['max']:>6.1f} | {r['underruns_client']:>9} {r['underruns_server']:>4} | "
                     f"{r['answers_played']:>4}/{r['answers_expected']:<4} | {t['median']:>8.0f} {t['p99']:>6.0f} | "
                     f"{r['client_cpu_pct']:>5.0f} {srv:>5} {other:>7} | {r['loop_lag']['p99']:>7.1f} {gc_max:>6.1f} | "
                     f"{r['errors']:>6} | {'yes' if r['met'] else 'NO'}")
        for e in r["first_errors"]:
            lines.append(f"       error: {e}")
    lines.append("(in: capture due -> past vad; out: model -> playback; ms. underruns: this process's / the server's; "
                 "answers: played / expected; ttfb: the client's speech end -> first delta, ms; cpu: % of one core "
                 "over the step, this process / the server / everything else incl. the kernel; lag: how late a "
                 "10 ms sleep woke, ms; gc max: longest full collection, ms)")
    best, target = result["max_sessions"], result["target_sessions"]
    lines.append(f"max sessions with no underrun and frame p99 < {result['target_p99_ms']:g} ms: {best} "
                 f"(target >= {target}): {'met' if best >= target else 'MISSED'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"steps {QUICK_STEPS}, {QUICK_CYCLES} cycle per session")
    ap.add_argument("--steps", default=None, help="comma-separated N to try in order, e.g. 10,50,100")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default=None, metavar="FILE", help="write the figures and versions as JSON")
    args = ap.parse_args(argv)
    steps = tuple(int(x) for x in args.steps.split(",")) if args.steps else None
    result = run(args.quick, steps=steps, seed=args.seed)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
