"""Serving at scale: sessions per worker at real time, N-worker scaling, the cost of --otel and of /metrics.

Questions and how each is measured, each against its floor in the same run:

1. **Sessions per worker at real time.** One ``voxpipe serve --workers 1`` process serves a
   pipeline with real DSP per session (page 24 kHz -> gain -> energy VAD -> page: per-frame
   numpy work, no re-chunking, so that each echoed chunk has one due time). A client process (this file, ``--client``) opens N sessions,
   each streaming 20 ms PCM16 frames at real time, and measures every echoed chunk's
   *lateness*: when it arrived minus when its last sample was due on the session's media
   clock (start + samples / rate), minus the lateness of the quickest 1% (the loopback's floor). N steps up; the figure is the largest N whose p99
   lateness stays under 20 ms with no session lost. The local realtime model is not in this
   loop (it has its own benchmark, benchmarks/local_model.py): this is the worker's share.
2. **Scaling.** The same with ``--workers N`` (one per core) on one port (SO_REUSEPORT):
   ratio = sessions(N workers) / sessions(1 worker); the issue's target is >= 0.9 x cores.
   The client process shares the machine, so on a 2-core machine it takes CPU the workers
   would have: the table shows the client's CPU share beside each step.
3. **--otel per turn.** One scripted turn's events, at 20 turns a second over 20 live sessions
   (a busy worker), on an asyncio loop, through the session observer's sinks: the metrics
   sink alone (what ``voxpipe serve`` always does) against the metrics sink plus the
   OpenTelemetry session tracer, turns interleaved in the same run, spans exported over
   OTLP/HTTP to a collector in another process. Timed: the turn's critical path (user speech
   detected, response start, a tool call and its result, first audio), the rest of the turn,
   and the tracer's deferred span work. Two phases: ``--otel`` as shipped (spans exported from
   a child process) and the SDK's in-process BatchSpanProcessor, for comparison. Target: the
   tracer adds < 1 ms p99 to the critical path.
4. **/metrics per hop.** benchmarks/hops.py's chains of 1, 5, 10 and 20 hops, bursts of
   2,000 frames, CPU per frame: the bare chain against the same chain with the session
   observer and its Prometheus sink inserted, and /metrics rendered every 100 ms meanwhile;
   asyncio.Queue chains are the floor. Per hop is the slope over the number of hops (target:
   < 2% more); the observer is one inline node per session, not per hop, so its own cost is
   the difference of the intercepts, reported per frame.

Run: ``python benchmarks/serving.py [--quick] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

DSP_PIPELINE = """\
voxpipe: 1
name: serving-bench
processors:
  mic: {type: transport.websocket.input, params: {sample_rate: 24000, frame_ms: 20}}
  gain: {type: audio.gain, params: {db: -3}}
  vad: {type: vad.energy}
  page: {type: transport.websocket.output}
links:
  - mic -> gain -> vad -> page
"""
RATE = 24000
FRAME = RATE // 50
TARGET_LATE_MS = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _p(xs, q) -> float:
    return float(np.percentile(np.asarray(xs), q)) if len(xs) else float("nan")


# --- 1 and 2: sessions at real time ---------------------------------------------------------------


async def _client_session(url: str, seconds: float, out: list, errors: list, start_at: float) -> None:
    from websockets.asyncio.client import connect

    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    noise = (np.random.default_rng(len(out)).normal(0, 300, FRAME * 50)).astype("<i2")
    try:
        async with connect(url, open_timeout=30, max_size=2**22) as ws:
            ready = json.loads(await ws.recv())
            assert ready["type"] == "ready"
            t0 = time.monotonic()
            received = [0]
            late: list[float] = []

            async def reader() -> None:
                async for message in ws:
                    if isinstance(message, bytes):
                        received[0] += len(message) // 2
                        due = t0 + received[0] / RATE
                        late.append(time.monotonic() - due)

            task = asyncio.create_task(reader())
            n = int(seconds * 50)
            for i in range(n):
                await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.02 - time.monotonic()))
                j = (i % 50) * FRAME
                await ws.send(noise[j:j + FRAME].tobytes())
            await asyncio.sleep(0.3)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            out.append(late[25:])  # the first half second: warm-up
    except Exception as exc:  # a lost session fails the step
        errors.append(f"{type(exc).__name__}: {exc}")


async def _client(url: str, n: int, seconds: float) -> dict:
    out: list = []
    errors: list = []
    c0, w0 = time.process_time(), time.monotonic()
    start = time.monotonic() + 0.5
    await asyncio.gather(*(_client_session(url, seconds, out, errors, start + 0.5 * i / n) for i in range(n)))
    cpu = (time.process_time() - c0) / (time.monotonic() - w0)
    lates = [x for session in out for x in session]
    floor = _p(lates, 1) if lates else 0.0
    rel = [1000 * (x - floor) for x in lates]
    return {"sessions": n, "completed": len(out), "errors": errors[:3], "frames": len(rel),
            "p50_ms": round(_p(rel, 50), 2), "p99_ms": round(_p(rel, 99), 2), "floor_ms": round(1000 * floor, 2),
            "client_cpu": round(cpu, 2)}


def _serve(workers: int, pipeline: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", str(pipeline), "--workers", str(workers),
                             "--port", str(port), "--max-sessions", "2000", "--idle-timeout", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            time.sleep(1.0 if workers > 1 else 0.2)  # every worker listening
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the worker did not listen")


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def capacity(workers: int, steps: list[int], seconds: float, pipeline: Path) -> dict:
    """Largest N of ``steps`` at p99 lateness < 20 ms with every session kept, on ``workers`` workers."""
    port = _free_port()
    proc = _serve(workers, pipeline, port)
    rows, best = [], 0
    try:
        for n in steps:
            done = subprocess.run([sys.executable, __file__, "--client", f"ws://127.0.0.1:{port}/ws", str(n),
                                   str(seconds)], capture_output=True, text=True, timeout=seconds + 120)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            ok = row["completed"] == n and not row["errors"] and row["p99_ms"] < TARGET_LATE_MS
            row["ok"] = ok
            rows.append(row)
            print(f"  workers={workers} sessions={n:>4}: p50 {row['p50_ms']:6.2f} ms, p99 {row['p99_ms']:6.2f} ms, "
                  f"kept {row['completed']}/{n}, client CPU {row['client_cpu']:.2f} -> {'ok' if ok else 'FAIL'}",
                  flush=True)
            if not ok:
                break
            best = n
    finally:
        _stop(proc)
    return {"workers": workers, "max_sessions": best, "steps": rows}


# --- 3: --otel per turn ---------------------------------------------------------------------------


#: Turns per second the --otel measurement replays: a busy worker (20 sessions, a turn each every second).
TURN_RATE = 20.0
OTEL_SESSIONS = 20  # sessions alive at once; each ends after OTEL_SESSION_TURNS turns and a new one starts
OTEL_SESSION_TURNS = 10
WARM_UP_TICKS = 40  # not counted

#: A local OTLP/HTTP collector for the measurement: a child process that answers 200 and counts spans.
OTLP_SINK = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
count = [0, 0]
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/count":
            self.send_response(200); self.end_headers(); self.wfile.write(f"{count[0]} {count[1]}".encode()); return
        r = ExportTraceServiceRequest(); r.ParseFromString(body)
        count[0] += 1
        count[1] += sum(len(ss.spans) for rs in r.resource_spans for ss in rs.scope_spans)
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
srv = HTTPServer(("127.0.0.1", 0), H)
print(srv.server_port, flush=True)
srv.serve_forever()
"""


def _sink_count(port: int) -> tuple[int, int]:
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/count", data=b"", method="POST"),
                                timeout=10) as r:
        requests, spans = r.read().decode().split()
    return int(requests), int(spans)


def otel_cost(turns: int) -> dict:
    """The tracer's cost on a turn's critical path, with the spans exported to a real OTLP/HTTP collector.

    Two phases, each against its own no-tracer turns interleaved in the same run: ``process``
    (what ``--otel`` does: :func:`tracer_provider`, spans exported from a child process) and
    ``thread`` (the SDK's in-process BatchSpanProcessor with the OTLP exporter, the usual
    setup, for comparison). A child process (the "model") writes its clock to a pipe at
    2 x ``TURN_RATE`` ticks a second on average (irregularly); at each tick the loop wakes and makes one turn's
    critical-path calls (user speech detected, response start, a tool call and its result,
    first audio), every other one with the tracer, and the rest of the turn (response end,
    metrics, playback) right after. Timed per turn: tick written -> those calls done, so a
    loop held up (by the GIL, by other sessions' span work) counts. The tracer's deferred
    span work runs on the loop's timers and is timed on its own.
    """
    env = dict(os.environ)
    sink = subprocess.Popen([sys.executable, "-c", OTLP_SINK], stdout=subprocess.PIPE, text=True)
    try:
        port = int(sink.stdout.readline())
        endpoint = f"http://127.0.0.1:{port}"
        os.environ.update({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_TRACES_EXPORTER": "otlp"})
        out = {"turns": turns, "turn_rate": TURN_RATE, "sessions": OTEL_SESSIONS, "target_ms": 1.0}
        for phase in ("process", "thread"):
            before = _sink_count(port)
            out[phase] = asyncio.run(_otel_phase(phase, turns, endpoint))
            requests, spans = (a - b for a, b in zip(_sink_count(port), before))
            out[phase].update(exported_requests=requests, exported_spans=spans)
        return out
    finally:
        os.environ.clear()
        os.environ.update(env)
        sink.kill()
        sink.wait()


#: The "model": a child process that writes its monotonic clock to a pipe at each tick (a first audio arriving).
TICKER = """
import os, random, sys, time
fd, n, rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
rng = random.Random(7)  # irregular ticks: the tracer's timers land anywhere between them, as other sessions' would
t = time.monotonic() + 0.5
for _ in range(n):
    t += rng.uniform(0.5, 1.5) / rate
    time.sleep(max(0.0, t - time.monotonic()))
    os.write(fd, time.clock_gettime_ns(time.CLOCK_MONOTONIC).to_bytes(8, "big"))
"""


async def _otel_phase(phase: str, turns: int, endpoint: str) -> dict:
    from processors.serving.host import _MetricsSink
    from processors.serving.metrics import ServingMetrics
    from processors.serving.tracing import SessionTracer, tracer_provider

    if phase == "process":
        provider = tracer_provider()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from processors.serving.tracing import _resource

        provider = TracerProvider(resource=_resource())
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces")))
    tracer = provider.get_tracer("bench")
    metrics = ServingMetrics()
    flushes: list[float] = []

    steps: list[float] = []  # each time a timer's flush step held the loop, ms

    class Timed(SessionTracer):
        def flush(self) -> None:
            t0 = time.perf_counter()
            super().flush()
            flushes.append(1000 * (time.perf_counter() - t0))

        def _flush_soon(self) -> None:
            t0 = time.perf_counter()
            super()._flush_soon()
            flushes.append(dt := 1000 * (time.perf_counter() - t0))
            if state["k"] > WARM_UP_TICKS:
                steps.append(dt)

    loop = asyncio.get_running_loop()
    live: list = [None] * OTEL_SESSIONS
    done = [0] * OTEL_SESSIONS
    lat = {False: [], True: []}  # tick written -> the turn's first-audio calls done, ms
    own: list[float] = []  # the tracer's own calls on the critical path, ms
    ticks = 2 * turns + WARM_UP_TICKS  # a turn without the tracer and one with it, alternately
    finished = loop.create_future()
    r, w = os.pipe()
    os.set_blocking(r, False)
    state = {"k": 0}

    def rest(sinks, k: int, t: float) -> None:  # after the first audio
        for s in sinks:
            s.response_end(k, "completed", t + 2.0)
            s.turn_metrics({"turn": k, "status": "completed", "ttfb_ms": 300.0, "first_audio_ms": 250.0,
                            "input_tokens": 12, "output_tokens": 40}, t + 2.0)
            s.playback(f"i{k}", t + 1.3, t + 3.0, 1700, False)

    def on_tick() -> None:
        try:
            data = os.read(r, 8 * 64)
        except BlockingIOError:
            return
        for i in range(0, len(data) - 7, 8):
            stamp = int.from_bytes(data[i:i + 8], "big")
            k = state["k"] = state["k"] + 1
            with_otel = bool(k % 2)
            slot = (k // 2) % OTEL_SESSIONS
            sinks = [_MetricsSink(metrics)]
            if with_otel:
                if live[slot] is None or done[slot] >= OTEL_SESSION_TURNS:
                    if live[slot] is not None:
                        live[slot].end("client_closed", 3.0 * done[slot] + 0.5)
                    live[slot], done[slot] = Timed(tracer, f"s{k}", {}), 0
                sinks.append(live[slot])
                t = 3.0 * done[slot]
                done[slot] += 1
            else:
                t = 3.0 * k
            for s in sinks:  # speech end detected ... first audio: the turn's latency
                c0 = time.perf_counter()
                s.user_speech(t, t + 1.0, t + 1.02)
                s.response_start(k, f"r{k}", t + 1.05)
                s.tool_call("get_weather", f"c{k}", t + 1.1)
                s.tool_result("get_weather", f"c{k}", False, t + 1.2)
                s.first_audio(f"i{k}", k, t + 1.3)
                if s is not sinks[0] and k > WARM_UP_TICKS:
                    own.append(1000 * (time.perf_counter() - c0))
            if k > WARM_UP_TICKS:  # the first turns pay for the SDK's first use
                lat[with_otel].append((time.clock_gettime_ns(time.CLOCK_MONOTONIC) - stamp) / 1e6)
            loop.call_soon(rest, sinks, k, t)
            if k >= ticks and not finished.done():
                finished.set_result(None)

    loop.add_reader(r, on_tick)
    ticker = await asyncio.create_subprocess_exec(sys.executable, "-c", TICKER, str(w), str(ticks),
                                                  str(2 * TURN_RATE), pass_fds=(w,))
    try:
        await asyncio.wait_for(finished, timeout=ticks / TURN_RATE + 60)
    finally:
        loop.remove_reader(r)
        await ticker.wait()
        os.close(r)
        os.close(w)
    for tracer_ in live:
        if tracer_ is not None:
            tracer_.end("client_closed", 100.0)
    await asyncio.sleep(0.1)
    t0 = time.perf_counter()
    provider.shutdown()
    base, traced = lat[False], lat[True]
    return {"metrics_p50_ms": round(_p(base, 50), 4), "metrics_p99_ms": round(_p(base, 99), 4),
            "otel_p50_ms": round(_p(traced, 50), 4), "otel_p99_ms": round(_p(traced, 99), 4),
            "added_p50_ms": round(_p(traced, 50) - _p(base, 50), 4),
            "added_p99_ms": round(_p(traced, 99) - _p(base, 99), 4),
            "tracer_calls_p50_ms": round(_p(own, 50), 4), "tracer_calls_p99_ms": round(_p(own, 99), 4),
            "tracer_calls_max_ms": round(max(own), 4),
            "deferred_per_turn_ms": round(sum(flushes) / turns, 4), "flush_p99_ms": round(_p(flushes, 99), 4),
            "flush_step_p99_ms": round(_p(steps, 99), 4), "flush_step_max_ms": round(max(steps, default=0.0), 4),
            "flushes": len(flushes), "shutdown_s": round(time.perf_counter() - t0, 2)}


# --- 4: /metrics per hop --------------------------------------------------------------------------


async def _chain(n_hops: int, n_frames: int, observed: bool) -> float:
    import hops

    from pipeline.graph import Graph
    from pipeline.runner import Runner
    from processors.serving.host import _MetricsSink
    from processors.serving.metrics import ServingMetrics
    from processors.serving.observer import NAME, _Null, _session_observer_class

    driver, sink = hops._Driver("burst", n_frames), hops._Sink()
    driver.sink = sink
    graph = Graph.chain(driver, *[hops.Passthrough() for _ in range(n_hops)], sink)
    for spec in list(graph.nodes.values())[1:]:
        spec.queue_size = n_frames + 1
    graph.check()
    scraper = None
    if observed:
        metrics = ServingMetrics()
        observer = _session_observer_class()({"latency": False}, name=NAME, stream=_Null(),
                                             sinks=(_MetricsSink(metrics),))
        first = graph.outputs("driver")[0]
        graph.insert(NAME, observer, between=("driver", first), type="debug.console")

        async def scrape() -> None:
            while True:
                metrics.render()
                await asyncio.sleep(0.1)

        scraper = asyncio.create_task(scrape())
    try:
        await Runner(graph, realtime=False).run()
    finally:
        if scraper is not None:
            scraper.cancel()
            await asyncio.gather(scraper, return_exceptions=True)
    return driver.cpu / n_frames / n_hops * 1e6  # CPU us per frame per hop


def metrics_cost(rounds: int) -> dict:
    """Per hop (the slope of CPU per frame over 1, 5, 10, 20 hops) and per frame (the observer's own node)."""
    import hops

    ns, n_frames = (1, 5, 10, 20), 2000
    bare = {n: [] for n in ns}
    observed = {n: [] for n in ns}
    floor = {n: [] for n in ns}
    for _ in range(rounds):
        for n in ns:  # interleaved, so that the machine's load falls on all three alike
            bare[n].append(asyncio.run(_chain(n, n_frames, False)) * n)
            observed[n].append(asyncio.run(_chain(n, n_frames, True)) * n)
            _, cpu = asyncio.run(hops.queue_load(n, "burst", n_frames))
            floor[n].append(cpu / n_frames * 1e6)

    def fit(series):
        ys = [statistics.median(series[n]) for n in ns]
        slope, intercept = np.polyfit(np.asarray(ns, float), np.asarray(ys, float), 1)
        return float(slope), float(intercept), ys

    (bs, bi, by), (os_, oi, oy), (fs, _, _) = fit(bare), fit(observed), fit(floor)
    return {"hops": list(ns), "frames": n_frames, "rounds": rounds,
            "bare_us_per_hop": round(bs, 3), "with_metrics_us_per_hop": round(os_, 3),
            "asyncio_queue_us_per_hop": round(fs, 3), "overhead_pct": round(100 * (os_ / bs - 1), 2),
            "observer_us_per_frame": round(oi - bi, 3),
            "ten_hop_chain_us_per_frame": {"bare": round(by[2], 2), "with_metrics": round(oy[2], 2)},
            "target_pct": 2.0}


# --- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, shorter runs")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    parser.add_argument("--client", nargs=3, metavar=("URL", "N", "SECONDS"), help=argparse.SUPPRESS)
    parser.add_argument("--only", action="append", choices=["capacity", "scaling", "otel", "metrics"], default=None)
    args = parser.parse_args(argv)
    if args.client:
        url, n, seconds = args.client
        print(json.dumps(asyncio.run(_client(url, int(n), float(seconds)))))
        return 0
    only = set(args.only or ["capacity", "scaling", "otel", "metrics"])
    seconds = 5.0 if args.quick else 8.0
    steps = [10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 125, 150, 200]
    cores = os.cpu_count() or 1
    report: dict = {"machine": {"cpus": cores, "python": platform.python_version(), "load": os.getloadavg()}}
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = Path(tmp) / "serving_bench.yaml"
        pipeline.write_text(DSP_PIPELINE)
        if "capacity" in only or "scaling" in only:
            print("sessions per worker at real time (p99 lateness < 20 ms):", flush=True)
            one = capacity(1, steps, seconds, pipeline)
            report["one_worker"] = one
            if "scaling" in only and cores > 1:
                many = capacity(cores, [s for s in steps if s >= one["max_sessions"] // 2] or steps, seconds, pipeline)
                report["n_workers"] = many
                ratio = many["max_sessions"] / one["max_sessions"] if one["max_sessions"] else float("nan")
                report["scaling"] = {"workers": cores, "ratio": round(ratio, 2), "target": round(0.9 * cores, 2)}
                print(f"scaling: {cores} workers {many['max_sessions']} sessions / 1 worker {one['max_sessions']} = "
                      f"{ratio:.2f} (target >= {0.9 * cores:.1f})", flush=True)
    if "otel" in only:
        print(f"--otel per turn (load {os.getloadavg()[0]:.2f}):", flush=True)
        report["otel"] = o = otel_cost(300 if args.quick else 2000)
        for phase, label in (("process", "export from a child process (--otel)"),
                             ("thread", "in-process BatchSpanProcessor (comparison)")):
            r = o[phase]
            print(f"  {label}: first audio in -> its turn's calls done, without the tracer p50 {r['metrics_p50_ms']:.3f} "
                  f"p99 {r['metrics_p99_ms']:.3f} ms, with it p50 {r['otel_p50_ms']:.3f} p99 {r['otel_p99_ms']:.3f} ms: "
                  f"{r['added_p99_ms']:+.3f} ms p99 ({r['added_p50_ms']:+.3f} ms p50; target < 1 ms); the tracer's own "
                  f"calls on that path p50 {r['tracer_calls_p50_ms']:.4f} p99 {r['tracer_calls_p99_ms']:.4f} max "
                  f"{r['tracer_calls_max_ms']:.3f} ms; deferred span work "
                  f"{r['deferred_per_turn_ms']:.3f} ms a turn (a step of it holds the loop p99 "
                  f"{r['flush_step_p99_ms']:.3f} ms, max {r['flush_step_max_ms']:.3f} ms); exported "
                  f"{r['exported_spans']} spans in {r['exported_requests']} requests", flush=True)
    if "metrics" in only:
        report["metrics"] = m = metrics_cost(3 if args.quick else 7)
        print(f"/metrics per hop: bare {m['bare_us_per_hop']:.3f} us, with the observer and scrapes "
              f"{m['with_metrics_us_per_hop']:.3f} us ({m['overhead_pct']:+.2f}%, target < 2%); asyncio.Queue floor "
              f"{m['asyncio_queue_us_per_hop']:.3f} us; the observer's own node: {m['observer_us_per_frame']:.2f} us "
              f"per frame (10 hops: {m['ten_hop_chain_us_per_frame']})", flush=True)
    report["machine"]["load_after"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
