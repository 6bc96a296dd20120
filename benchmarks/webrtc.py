"""WebRTC transport: mouth-to-ear beside the websocket, CPU per session beside the raw Opus floor, sessions per process.

Questions and how each is measured, all on loopback, in one run:

1. **Mouth-to-ear.** The user's speech ends at the client -> the first assistant sample
   arrives decoded at the client, for the same question ("hello") to the same local engine
   (``url: local``, in this process), over WebRTC (``pipelines/webrtc_agent.yaml``, an
   aiortc :class:`~processors.webrtc.client.PeerClient`: Opus both ways, its jitter buffer)
   and over the websocket (``pipelines/web_agent.yaml``, a websocket client sending 20 ms
   PCM16 frames at real time, as the page does). "Speech ends" is when the last speech frame
   leaves the client's paced sender; both include the server VAD's 500 ms of silence. The
   browser adds its own playout buffer to either (the page's worklet prebuffers 80 ms;
   Chromium's NetEq adapts, typically 40-80 ms on loopback): not counted here.
2. **Sessions per process.** This process serves an echo graph (``transport.webrtc.input
   -> transport.webrtc.output``: every session decodes the peer's Opus, runs the graph and
   encodes Opus back, 50 frames a second each way); a second process runs N talking aiortc
   peers. For each N: this process's event loop lag (a 10 ms sleep's lateness) p50/p99 over
   the steady window, and the largest N with p99 < 20 ms.
3. **CPU per session.** This process's CPU time (all threads: aiortc decodes on a thread per
   receiver and encodes on the default executor) over the steady window, per session,
   beside the floor: one raw Opus decode plus one encode of a 20 ms frame through the same
   PyAV calls aiortc makes, 50 times a second.

Run: ``python benchmarks/webrtc.py [--quick] [--steps 1,4,8,16] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

__all__ = ["main"]

ECHO = """\
voxpipe: 1
name: webrtc-echo
processors:
  mic: {type: transport.webrtc.input, params: {media_timeout_s: 30}}
  out: {type: transport.webrtc.output}
links:
  - mic -> out
"""


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _voice(n: int, seed: int) -> np.ndarray:
    """A voice-like 48 kHz signal: a 140 Hz harmonic buzz with a syllable envelope and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 48000
    buzz = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.15 * buzz * env + 0.01 * rng.standard_normal(n)).astype(np.float32)


# --- 1. mouth-to-ear ------------------------------------------------------------------------------


async def _webrtc_turn(url: str, speech48: np.ndarray) -> float:
    from processors.webrtc.client import PeerClient

    async with PeerClient.connect(url) as peer:
        await peer.wait_event("ready", timeout=20)
        await asyncio.sleep(0.5)
        peer.say(speech48)
        while peer.mic.queued:
            await asyncio.sleep(0.002)
        t_end = time.perf_counter()
        peer.mark()
        deadline = t_end + 20
        while peer.first_voice_at is None and time.perf_counter() < deadline:
            await asyncio.sleep(0.002)
        if peer.first_voice_at is None:
            raise RuntimeError("no answer over WebRTC")
        return 1000 * (peer.first_voice_at - t_end)


async def _websocket_turn(ws_url: str, speech24: np.ndarray) -> float:
    from websockets.asyncio.client import connect

    from pipeline.dsp import to_int16

    pcm = to_int16(speech24)
    frame = 480
    async with connect(ws_url, max_size=None) as ws:
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready" and ready["input_rate"] == 24000, ready
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        sent = 0
        t_end = None
        first = None
        silence = np.zeros(frame, np.int16).tobytes()
        chunks = [pcm[i:i + frame] for i in range(0, len(pcm), frame)]
        total = len(chunks) + 50 * 20

        async def reader() -> None:
            nonlocal first
            async for message in ws:
                if isinstance(message, bytes) and t_end is not None and first is None:
                    x = np.frombuffer(message, "<i2")
                    if x.size and int(np.abs(x).max()) > 300:
                        first = time.perf_counter()
                        return

        task = asyncio.ensure_future(reader())
        try:
            while sent < total and first is None:
                due = t0 + sent * 0.02
                await asyncio.sleep(max(0.0, due - loop.time()))
                await ws.send(chunks[sent].tobytes() if sent < len(chunks) else silence)
                sent += 1
                if sent == len(chunks):
                    t_end = time.perf_counter()
        finally:
            task.cancel()
        if first is None:
            raise RuntimeError("no answer over the websocket")
        return 1000 * (first - t_end)


async def mouth_to_ear(reps: int) -> dict:
    from speech_fixtures import utterance

    from processors.web.server import web_server

    os.environ.pop("VOXPIPE_REALTIME_URL", None)
    out: dict[str, list[float]] = {"webrtc": [], "websocket": []}
    for _ in range(reps):
        async with web_server(ROOT / "pipelines" / "webrtc_agent.yaml") as srv:
            out["webrtc"].append(await _webrtc_turn(srv.url + "webrtc/offer", utterance("hello", 48000)))
        async with web_server(ROOT / "pipelines" / "web_agent.yaml") as srv:
            out["websocket"].append(await _websocket_turn(srv.ws_url, utterance("hello", 24000)))
    return out


# --- 2. and 3. sessions per process, CPU per session ----------------------------------------------


def codec_floor_ms(frames: int = 500) -> float:
    """Raw Opus decode + encode of one 20 ms frame (ms), through the PyAV calls aiortc makes."""
    import av
    from aiortc.codecs.opus import OpusDecoder, OpusEncoder
    from aiortc.jitterbuffer import JitterFrame

    enc, dec = OpusEncoder(), OpusDecoder()
    x = (32767 * _voice(960 * frames, 1)).astype(np.int16)
    packets = []
    for k in range(frames):  # the packets to decode, made beforehand
        f = av.AudioFrame.from_ndarray(x[k * 960:(k + 1) * 960].reshape(1, -1), format="s16", layout="mono")
        f.sample_rate, f.pts, f.time_base = 48000, k * 960, fractions.Fraction(1, 48000)
        packets += enc.encode(f)[0]
    enc2 = OpusEncoder()
    t = time.process_time()
    for k in range(frames):
        f = av.AudioFrame.from_ndarray(x[k * 960:(k + 1) * 960].reshape(1, -1), format="s16", layout="mono")
        f.sample_rate, f.pts, f.time_base = 48000, k * 960, fractions.Fraction(1, 48000)
        enc2.encode(f)
        dec.decode(JitterFrame(packets[k % len(packets)], k * 960))
    return 1000 * (time.process_time() - t) / frames


async def _clients_main(url: str, n: int, seconds: float) -> None:
    """The peer process: n talking clients for ``seconds``; prints what they received."""
    from processors.webrtc.client import PeerClient

    received: list[int] = []

    async def one(i: int) -> None:
        async with PeerClient.connect(url, seed=i) as peer:
            await peer.wait_event("ready", timeout=30)
            peer.say(_voice(int(48000 * seconds), i))
            await asyncio.sleep(seconds)
            received.append(peer.received_samples)

    await asyncio.gather(*(one(i) for i in range(n)))
    print(json.dumps({"received_s": [r / 48000 for r in received]}), flush=True)


async def capacity_step(n: int, seconds: float) -> dict:
    from processors.web.server import web_server

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "echo.yaml"
        path.write_text(ECHO)
        async with web_server(path, max_sessions=max(16, n + 1)) as srv:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--client", srv.url + "webrtc/offer", "--clients", str(n),
                "--seconds", str(seconds), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            try:
                with_all = time.perf_counter() + 60
                while len(srv.webrtc.sessions) < n or any(s.connected_at is None for s in srv.webrtc.sessions.values()):
                    if time.perf_counter() > with_all:
                        raise RuntimeError(f"only {len(srv.webrtc.sessions)} of {n} peers connected")
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1.0)  # settle: every peer talking
                lag: list[float] = []
                cpu0, t0 = _cpu(), time.perf_counter()
                window = max(2.0, seconds - 3.0)
                while time.perf_counter() - t0 < window:
                    t = time.perf_counter()
                    await asyncio.sleep(0.01)
                    lag.append(time.perf_counter() - t - 0.01)
                cpu, wall = _cpu() - cpu0, time.perf_counter() - t0
                frames = sum(s.media_frames for s in srv.webrtc.sessions.values())
                out, _ = await asyncio.wait_for(proc.communicate(), timeout=seconds + 60)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    lag_ms = np.array(lag) * 1000
    got = json.loads(out.decode().strip().splitlines()[-1])["received_s"] if out.strip() else []
    return {"sessions": n, "lag_p50_ms": float(np.percentile(lag_ms, 50)), "lag_p99_ms": float(np.percentile(lag_ms, 99)),
            "cpu_per_session_pct": 100 * cpu / wall / n, "process_cpu_pct": 100 * cpu / wall,
            "frames_in": frames, "echo_received_s_min": min(got) if got else 0.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and steps, shorter windows")
    ap.add_argument("--steps", default=None, help="session counts, e.g. 1,4,8,16")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--client", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--clients", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=10.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.ERROR)
    if args.client:
        asyncio.run(_clients_main(args.client, args.clients, args.seconds))
        return 0
    steps = [int(s) for s in args.steps.split(",")] if args.steps else ([1, 4, 8] if args.quick else [1, 2, 4, 8, 12, 16])
    seconds = 8.0 if args.quick else 12.0
    reps = 2 if args.quick else 5

    m2e = asyncio.run(mouth_to_ear(reps))
    print("\nmouth-to-ear on loopback (speech end at the client -> first answer sample decoded at the client), ms")
    print(f"{'transport':<10} {'median':>8} {'min':>8} {'max':>8}  runs")
    for name, xs in m2e.items():
        print(f"{name:<10} {np.median(xs):8.1f} {min(xs):8.1f} {max(xs):8.1f}  {len(xs)}")
    diff = float(np.median(m2e["webrtc"]) - np.median(m2e["websocket"]))
    print(f"webrtc - websocket: {diff:+.1f} ms (median)")

    floor = codec_floor_ms()
    floor_pct = floor * 50 / 10  # ms per 20 ms frame -> % of one core (50 frames/s)
    rows = []
    print("\nsessions per process (echo graph: Opus decode + graph + Opus encode per session; peers in another process)")
    print(f"{'sessions':>8} {'lag p50 ms':>10} {'lag p99 ms':>10} {'CPU/session %':>14} {'floor %':>8} {'ratio':>6} "
          f"{'process CPU %':>13}")
    for n in steps:
        r = asyncio.run(capacity_step(n, seconds))
        r["floor_pct"] = floor_pct
        rows.append(r)
        print(f"{n:>8} {r['lag_p50_ms']:10.1f} {r['lag_p99_ms']:10.1f} {r['cpu_per_session_pct']:14.2f} "
              f"{floor_pct:8.2f} {r['cpu_per_session_pct'] / floor_pct:6.1f} {r['process_cpu_pct']:13.1f}")
        if r["lag_p99_ms"] >= 20 and n != steps[-1]:
            print("(p99 passed 20 ms: stopping)")
            break
    ok = [r["sessions"] for r in rows if r["lag_p99_ms"] < 20]
    print(f"\nsessions per process with loop lag p99 < 20 ms: {max(ok) if ok else 0} (of steps {steps[:len(rows)]})")
    print(f"raw Opus decode + encode floor: {floor:.3f} ms per 20 ms frame = {floor_pct:.2f} % of a core per session")
    if args.json:
        import aiortc
        import av

        Path(args.json).write_text(json.dumps({
            "mouth_to_ear_ms": m2e, "capacity": rows, "codec_floor_ms_per_frame": floor,
            "versions": {"python": platform.python_version(), "aiortc": aiortc.__version__, "av": av.__version__},
            "load": os.getloadavg()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
